#include "mics/checkpoint/tools.hpp"

#include <hdf5.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "h5.hpp"
#include "pieces.hpp"
#include "sharded_file.hpp"
#include "mics/checkpoint/checkpoint.hpp"
#include "mics/model/llmc_file.hpp"
#include "mics/util/error.hpp"
#include "mics/util/printable.hpp"

namespace mics::checkpoint {

namespace fs = std::filesystem;

namespace {

std::string human_bytes(std::uintmax_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  std::ostringstream os;
  os << std::fixed << std::setprecision(unit == 0 ? 0 : 1) << value << ' ' << units[unit];
  return os.str();
}

// Reads elements [begin, end) of a float dataset (row-major) into `out`.
void read_range(hid_t dataset, const std::vector<hsize_t>& dims, std::size_t begin, std::size_t end,
                std::vector<float>& out, const std::string& where) {
  out.resize(end - begin);
  h5::Handle file_space = h5::checked(H5Dget_space(dataset), H5Sclose, where + ": H5Dget_space");
  h5::select_flat_range(file_space.get(), dims, begin, end);
  h5::Handle memory = h5::memory_space(end - begin);
  if (H5Dread(dataset, H5T_NATIVE_FLOAT, memory.get(), file_space.get(), H5P_DEFAULT, out.data()) < 0)
    throw InputError(where + " cannot be read (checksum mismatch or I/O error)");
}

std::uintmax_t directory_bytes(const fs::path& dir) {
  std::uintmax_t total = 0;
  std::error_code ec;
  for (const auto& item : fs::recursive_directory_iterator(dir, ec))
    if (item.is_regular_file(ec)) total += item.file_size(ec);
  return total;
}

std::size_t element_count(const std::vector<hsize_t>& dims) {
  std::size_t n = 1;
  for (hsize_t d : dims) n *= d;
  return n;
}

// A format-3 index dataset must be a virtual dataset that maps exactly the plan's pieces of its tensor:
// the same source files and datasets, onto the same rectangles, in the plan's order. (mics reads the
// pieces directly; this is what a user's h5py or h5dump reads.)
void check_virtual_mappings(hid_t dataset, const PieceReader& pieces, int kind, const std::string& tensor_name,
                            const std::string& where) {
  const int index = pieces.tensor_index(tensor_name, where);
  const model::TensorInfo* const tensor = &pieces.layout().tensors()[static_cast<std::size_t>(index)];
  std::vector<const Piece*> want;
  for (const Piece& piece : pieces.plan())
    if (piece.kind == kind && piece.tensor == index) want.push_back(&piece);
  h5::Handle create = h5::checked(H5Dget_create_plist(dataset), H5Pclose, where + ": H5Dget_create_plist");
  if (H5Pget_layout(create.get()) != H5D_VIRTUAL)
    throw InputError(where + " is not a virtual dataset over the rank files (format 3)");
  std::size_t count = 0;
  h5::check(H5Pget_virtual_count(create.get(), &count), where + ": H5Pget_virtual_count");
  if (count != want.size())
    throw InputError(where + " maps " + std::to_string(count) + " pieces, the plan has " + std::to_string(want.size()));
  const bool matrix = tensor->shape.size() == 2;
  for (std::size_t i = 0; i < count; ++i) {
    const Piece& piece = *want[i];
    char file[256] = {}, name[512] = {};
    H5Pget_virtual_filename(create.get(), i, file, sizeof(file));
    H5Pget_virtual_dsetname(create.get(), i, name, sizeof(name));
    h5::Handle space = h5::checked(H5Pget_virtual_vspace(create.get(), i), H5Sclose, where + ": H5Pget_virtual_vspace");
    hsize_t start[2] = {0, 0}, end[2] = {0, 0};
    h5::check(H5Sget_select_bounds(space.get(), start, end), where + ": H5Sget_select_bounds");
    const hsize_t want_start[2] = {matrix ? piece.row : piece.column, piece.column};
    const hsize_t want_end[2] = {matrix ? piece.row + piece.rows - 1 : piece.column + piece.columns - 1,
                                 piece.column + piece.columns - 1};
    const bool place = start[0] == want_start[0] && end[0] == want_end[0] &&
                       (!matrix || (start[1] == want_start[1] && end[1] == want_end[1]));
    if (file != rank_file_name(piece.writer) || name != piece_dataset_name(piece, pieces.layout()) || !place)
      throw InputError(where + ": mapping " + std::to_string(i) + " (" + file + ":" + name +
                       ") is not the plan's piece " + rank_file_name(piece.writer) + ":" +
                       piece_dataset_name(piece, pieces.layout()));
  }
}

// A state file opened for a tool, with its metadata and the model layout it describes.
struct OpenCheckpoint {
  std::string path;
  h5::Handle file;
  Metadata metadata;
  std::optional<PieceReader> pieces;  // format 3: tensors are read from the rank files, each piece verified
  explicit OpenCheckpoint(const fs::path& checkpoint)
      : path(state_file(checkpoint).string()),
        file(h5::open_file_read(path)),
        metadata(read_metadata_from(file.get(), path)) {
    if (metadata.format_version >= 3) pieces.emplace(fs::path(path).parent_path(), metadata);
  }
  // Elements [0, count) of a tensor of kind `kind`: from its pieces (format 3; a virtual dataset would read
  // a missing file as zeros) or from the dataset itself (Fletcher32 checked by HDF5).
  void read(hid_t dataset, const std::vector<hsize_t>& dims, int kind, const model::TensorInfo& tensor,
            std::size_t count, std::vector<float>& out, const std::string& where) {
    if (!pieces) {
      read_range(dataset, dims, 0, count, out, where);
      return;
    }
    out.resize(count);
    pieces->read(kind, pieces->tensor_index(tensor.name, where), 0, count, out.data());
  }
};

void write_or_throw(std::ofstream& out, const void* data, std::size_t bytes, const std::string& where) {
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  if (!out) throw InputError(where + ": write failed");
}

}  // namespace

void list_run(const fs::path& run_dir, std::ostream& out) {
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec)) throw InputError(run_dir.string() + ": not a directory");
  const std::vector<Entry> entries = list_checkpoints(run_dir);
  const std::optional<fs::path> latest = read_latest(run_dir);
  // A `latest` that names nothing usable: resume ignores it and takes the newest committed checkpoint.
  std::string latest_problem;
  if (const std::optional<std::string> garbage = malformed_latest(run_dir)) {
    latest_problem = "holds '" + printable(*garbage) + "', not the name of a checkpoint (step_<N>)";
  } else if (latest && std::none_of(entries.begin(), entries.end(),
                                    [&](const Entry& e) { return e.committed && e.path == *latest; })) {
    latest_problem = "names " + latest->filename().string() + ", which is missing";
  }
  if (!latest_problem.empty())
    out << "warning: " << (run_dir / kLatestFileName).string() << ' ' << latest_problem
        << ": resume ignores it and takes the newest committed checkpoint\n";
  const auto newest_committed = std::find_if(entries.rbegin(), entries.rend(), [](const Entry& e) { return e.committed; });
  if (entries.empty()) {
    out << "no checkpoints in " << run_dir.string() << '\n';
    return;
  }
  out << std::left << std::setw(10) << "step" << std::setw(12) << "state" << std::setw(12) << "size" << "path\n";
  for (const Entry& e : entries) {
    const std::string state = e.committed ? "committed" : "partial";
    out << std::left << std::setw(10) << e.step << std::setw(12) << state << std::setw(12) << human_bytes(directory_bytes(e.path))
        << e.path.string() << (latest && *latest == e.path ? "  <- latest" : "")
        << (!latest_problem.empty() && newest_committed != entries.rend() && &*newest_committed == &e
                ? "  <- resume (latest is unusable)"
                : "")
        << '\n';
  }
}

void inspect(const fs::path& checkpoint, std::ostream& out) {
  h5::QuietErrors quiet;
  OpenCheckpoint ckpt(checkpoint);
  const Metadata& m = ckpt.metadata;
  out << "checkpoint " << ckpt.path << '\n'
      << "  format_version    " << m.format_version << '\n'
      << "  step              " << m.step << '\n'
      << "  tokens_seen       " << m.tokens_seen << '\n'
      << "  sampler_position  " << m.sampler_position << '\n'
      << "  seed              " << m.seed << '\n'
      << "  schedule          lr " << m.schedule_lr << ", warmup " << m.schedule_warmup_steps << ", steps "
      << m.schedule_total_steps << ", min_lr_ratio " << m.schedule_min_lr_ratio << '\n'
      << "  model             L=" << m.model.layers << " NH=" << m.model.heads << " C=" << m.model.channels
      << " V=" << m.model.vocab << " Vp=" << m.model.padded_vocab << " maxT=" << m.model.max_seq_len << '\n'
      << "  saved by          " << m.world << " ranks, strategy " << m.strategy << ", p=" << m.partition_size
      << ", r=" << m.replicas << ", ranks_per_node=" << m.ranks_per_node << '\n';

  out << "\ntensors (every one also in /adam_m and /adam_v with the same shape):\n";
  out << std::left << std::setw(34) << "  name" << std::setw(16) << "shape" << std::setw(12) << "elements"
      << std::setw(16) << "chunk" << "filters\n";
  h5::Handle params = h5::open_group(ckpt.file.get(), "params", ckpt.path);
  const model::ParamLayout layout(m.model);
  std::vector<std::string> mismatches;
  std::size_t total = 0, found = 0;
  for (const std::string& name : h5::link_names(params.get(), ckpt.path + ": /params")) {
    const std::string where = ckpt.path + ": /params/" + name;
    h5::Handle dataset = h5::open_dataset(params.get(), name, ckpt.path + ": /params");
    const std::vector<hsize_t> dims = h5::dataset_dims(dataset.get(), where);
    const auto known = std::find_if(layout.tensors().begin(), layout.tensors().end(),
                                    [&](const model::TensorInfo& t) { return t.name == name; });
    if (known == layout.tensors().end()) {
      mismatches.push_back(where + " is not a tensor of the model the metadata describes");
    } else {
      ++found;
      try {
        tensor_dims(dataset.get(), *known, where);
      } catch (const Error& e) {
        mismatches.push_back(e.what());
      }
    }
    h5::Handle create = h5::checked(H5Dget_create_plist(dataset.get()), H5Pclose, where + ": H5Dget_create_plist");
    std::vector<hsize_t> chunk(dims.size());
    const bool chunked = H5Pget_layout(create.get()) == H5D_CHUNKED;
    if (chunked) H5Pget_chunk(create.get(), static_cast<int>(chunk.size()), chunk.data());
    std::string filters;
    for (int i = 0; i < H5Pget_nfilters(create.get()); ++i) {
      unsigned flags = 0;
      std::size_t count = 0;
      std::array<char, 64> filter_name{};
      const H5Z_filter_t id =
          H5Pget_filter2(create.get(), static_cast<unsigned>(i), &flags, &count, nullptr, filter_name.size(),
                         filter_name.data(), nullptr);
      if (!filters.empty()) filters += ',';
      filters += id == H5Z_FILTER_FLETCHER32 ? "fletcher32" : filter_name.data();
    }
    total += element_count(dims);
    const bool is_virtual = H5Pget_layout(create.get()) == H5D_VIRTUAL;
    if (is_virtual) {
      std::size_t mappings = 0;
      H5Pget_virtual_count(create.get(), &mappings);
      filters = std::to_string(mappings) + " pieces, xxh64 each";
    }
    out << "  " << std::left << std::setw(32) << name << std::setw(16) << h5::dims_text(dims) << std::setw(12)
        << element_count(dims) << std::setw(16)
        << (is_virtual ? std::string("virtual") : chunked ? h5::dims_text(chunk) : "contiguous")
        << (filters.empty() ? "none" : filters) << '\n';
  }
  out << "  total " << total << " parameters\n\neffective deck at save time:\n" << m.deck;
  if (found < layout.tensors().size())
    mismatches.push_back(ckpt.path + ": /params holds " + std::to_string(found) + " of the model's " +
                         std::to_string(layout.tensors().size()) + " tensors");
  if (!mismatches.empty()) {
    std::string text = "the checkpoint does not match the model its metadata describes:";
    for (const std::string& problem : mismatches) text += "\n  " + problem;
    throw InputError(text + "\n(`mics ckpt verify` lists every problem)");
  }
}

std::vector<std::string> verify(const fs::path& checkpoint, std::ostream& progress) {
  h5::QuietErrors quiet;
  OpenCheckpoint ckpt(checkpoint);  // the metadata and its checksum: a mismatch throws, naming it
  const model::ParamLayout layout(ckpt.metadata.model);
  std::vector<std::string> problems;
  const auto compare_names = [&](const std::vector<std::string>& found, std::vector<std::string> expected,
                                 const char* kind, const std::string& prefix) {
    std::sort(expected.begin(), expected.end());
    std::vector<std::string> missing, extra;
    std::set_difference(expected.begin(), expected.end(), found.begin(), found.end(), std::back_inserter(missing));
    std::set_difference(found.begin(), found.end(), expected.begin(), expected.end(), std::back_inserter(extra));
    for (const std::string& name : missing) problems.push_back(ckpt.path + ": " + kind + prefix + name + " is missing");
    for (const std::string& name : extra)
      problems.push_back(ckpt.path + ": " + kind + prefix + name +
                         " is not part of the checkpoint the metadata describes");
  };
  // Every attribute and every object, against what the metadata's format and model say must be there.
  const std::vector<std::string> attributes = h5::attribute_names(ckpt.file.get(), ckpt.path);
  compare_names(attributes, metadata_attribute_names(ckpt.metadata.format_version), "root attribute ", "");
  compare_names(h5::link_names(ckpt.file.get(), ckpt.path),
                std::vector<std::string>(std::begin(kTensorGroups), std::end(kTensorGroups)), "object ", "/");
  std::vector<std::string> tensor_names;
  for (const model::TensorInfo& tensor : layout.tensors()) tensor_names.push_back(tensor.name);

  std::vector<float> buffer;
  std::size_t datasets = 0;
  for (int kind = 0; kind < 3; ++kind) {
    const char* group_name = kTensorGroups[kind];
    const std::string group_where = ckpt.path + ": /" + group_name;
    if (H5Lexists(ckpt.file.get(), group_name, H5P_DEFAULT) <= 0) continue;  // reported above
    h5::Handle group;
    try {
      group = h5::open_group(ckpt.file.get(), group_name, ckpt.path);
      compare_names(h5::link_names(group.get(), group_where), tensor_names, "dataset ",
                    std::string("/") + group_name + "/");
    } catch (const Error& e) {
      problems.push_back(e.what());
      continue;
    }
    for (const model::TensorInfo& tensor : layout.tensors()) {
      const std::string where = ckpt.path + ": dataset /" + group_name + "/" + tensor.name;
      if (H5Lexists(group.get(), tensor.name.c_str(), H5P_DEFAULT) <= 0) continue;  // reported as missing
      try {
        h5::Handle dataset = h5::open_dataset(group.get(), tensor.name, group_where);
        const std::vector<hsize_t> dims = tensor_dims(dataset.get(), tensor, where);
        ++datasets;
        if (ckpt.pieces) {  // its pieces are checked below, each against its checksum
          check_virtual_mappings(dataset.get(), *ckpt.pieces, kind, tensor.name, where);
          continue;
        }
        read_range(dataset.get(), dims, 0, element_count(dims), buffer, where);
        const auto bad = std::count_if(buffer.begin(), buffer.end(), [](float x) { return !std::isfinite(x); });
        if (bad > 0)
          throw InputError(where + " holds " + std::to_string(bad) + " values that are not finite");
      } catch (const Error& e) {
        problems.push_back(e.what());
      }
    }
  }
  std::size_t pieces = 0;
  if (ckpt.pieces) {
    for (const Piece& piece : ckpt.pieces->plan()) {
      try {
        ckpt.pieces->check(piece);
        ++pieces;
      } catch (const Error& e) {
        problems.push_back(e.what());
      }
    }
  }
  const std::size_t expected = std::size(kTensorGroups) * layout.tensors().size();
  progress << "checked " << datasets << " of " << expected << " datasets";
  if (ckpt.pieces) progress << " (" << pieces << " of " << ckpt.pieces->plan().size() << " pieces in rank files)";
  progress << " and " << attributes.size()
           << " attributes of " << ckpt.path << " (format " << ckpt.metadata.format_version
           << (ckpt.metadata.format_version >= 2 ? ", metadata checksum verified" : ", no metadata checksum")
           << "): " << (problems.empty() ? "every checksum verified, every shape as the metadata describes" : std::to_string(problems.size()) + " problems")
           << '\n';
  return problems;
}

ExportFormat parse_export_format(const std::string& text) {
  if (text == "safetensors") return ExportFormat::safetensors;
  if (text == "llmc") return ExportFormat::llmc;
  throw InputError("--format " + text + " is not known (expected safetensors or llmc)");
}

std::string huggingface_name(const std::string& mics_name) { return "transformer." + mics_name; }

bool huggingface_transposed(const std::string& mics_name) {
  for (const char* suffix : {"attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"})
    if (mics_name.ends_with(suffix)) return true;
  return false;
}

namespace {

void export_llmc(OpenCheckpoint& ckpt, hid_t params, std::ofstream& out, const std::string& out_where) {
  const model::GptShape& s = ckpt.metadata.model;
  const model::ParamLayout layout(s);
  const std::array<std::int32_t, 256> header = model::llmc_header(s, model::kLlmcVersionFp32);
  write_or_throw(out, header.data(), sizeof(header), out_where);
  std::vector<float> buffer;
  for (const auto& [suffix, layered] : model::kLlmcFileOrder) {
    for (int layer = 0; layer < (layered ? s.layers : 1); ++layer) {
      const std::string name = layered ? "h." + std::to_string(layer) + "." + std::string(suffix) : std::string(suffix);
      const std::string where = ckpt.path + ": dataset /params/" + name;
      h5::Handle dataset = h5::open_dataset(params, name, ckpt.path + ": /params");
      const std::vector<hsize_t> dims = tensor_dims(dataset.get(), layout.tensor(name), where);
      ckpt.read(dataset.get(), dims, 0, layout.tensor(name), element_count(dims), buffer, where);
      write_or_throw(out, buffer.data(), buffer.size() * sizeof(float), out_where);
    }
  }
}

void export_safetensors(OpenCheckpoint& ckpt, hid_t params, std::ofstream& out, const std::string& out_where) {
  const model::ParamLayout layout(ckpt.metadata.model);
  const std::size_t vocab = static_cast<std::size_t>(ckpt.metadata.model.vocab);
  struct Planned {
    const model::TensorInfo* tensor;
    std::vector<std::int64_t> shape;  // as Hugging Face stores it
    std::size_t numel;
  };
  std::vector<Planned> plan;
  for (const model::TensorInfo& tensor : layout.tensors()) {
    std::vector<std::int64_t> shape = tensor.shape;
    if (tensor.name == "wte.weight") shape[0] = static_cast<std::int64_t>(vocab);  // padding rows dropped
    if (huggingface_transposed(tensor.name)) std::swap(shape[0], shape[1]);
    std::size_t numel = 1;
    for (std::int64_t d : shape) numel *= static_cast<std::size_t>(d);
    plan.push_back({&tensor, shape, numel});
  }
  // The safetensors header: __metadata__ (string values only) first, then every tensor in file order.
  nlohmann::ordered_json json;
  json["__metadata__"] = {{"format", "pt"}, {"source", "mics"}, {"step", std::to_string(ckpt.metadata.step)}};
  std::size_t offset = 0;
  for (const Planned& p : plan) {
    json[huggingface_name(p.tensor->name)] = {
        {"dtype", "F32"}, {"shape", p.shape}, {"data_offsets", {offset, offset + p.numel * sizeof(float)}}};
    offset += p.numel * sizeof(float);
  }
  std::string header = json.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // the data buffer starts 8-byte aligned
  const std::uint64_t header_length = header.size();
  write_or_throw(out, &header_length, sizeof(header_length), out_where);
  write_or_throw(out, header.data(), header.size(), out_where);

  std::vector<float> buffer, transposed;
  for (const Planned& p : plan) {
    const std::string where = ckpt.path + ": dataset /params/" + p.tensor->name;
    h5::Handle dataset = h5::open_dataset(params, p.tensor->name, ckpt.path + ": /params");
    const std::vector<hsize_t> dims = tensor_dims(dataset.get(), *p.tensor, where);
    ckpt.read(dataset.get(), dims, 0, *p.tensor, p.numel, buffer, where);
    if (huggingface_transposed(p.tensor->name)) {
      const std::size_t rows = dims[0], columns = dims[1];  // nn.Linear (out, in) -> Conv1D (in, out)
      transposed.resize(buffer.size());
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < columns; ++c) transposed[c * rows + r] = buffer[r * columns + c];
      buffer.swap(transposed);
    }
    write_or_throw(out, buffer.data(), buffer.size() * sizeof(float), out_where);
  }
}

}  // namespace

std::string huggingface_config(const model::GptShape& s) {
  nlohmann::ordered_json json;
  json["architectures"] = {"GPT2LMHeadModel"};
  json["model_type"] = "gpt2";
  json["vocab_size"] = s.vocab;
  json["n_positions"] = s.max_seq_len;
  json["n_ctx"] = s.max_seq_len;
  json["n_embd"] = s.channels;
  json["n_layer"] = s.layers;
  json["n_head"] = s.heads;
  json["n_inner"] = nullptr;
  json["activation_function"] = "gelu_new";
  json["layer_norm_epsilon"] = 1e-05;
  json["resid_pdrop"] = 0.0;
  json["embd_pdrop"] = 0.0;
  json["attn_pdrop"] = 0.0;
  json["initializer_range"] = 0.02;
  json["scale_attn_weights"] = true;
  json["tie_word_embeddings"] = true;
  // GPT-2's <|endoftext|> is its last token; other vocabularies have none that mics knows of.
  json["bos_token_id"] = s.vocab == 50257 ? nlohmann::ordered_json(50256) : nlohmann::ordered_json(nullptr);
  json["eos_token_id"] = json["bos_token_id"];
  json["torch_dtype"] = "float32";
  return json.dump(2) + "\n";
}

model::GptShape read_parameters(const fs::path& path, std::vector<std::vector<float>>& units) {
  h5::QuietErrors quiet;
  fs::path checkpoint = path;
  std::error_code ec;
  if (fs::is_directory(path, ec) && !fs::exists(state_file(path), ec)) {
    const std::optional<fs::path> latest = read_latest(path);
    if (!latest)
      throw InputError(path.string() + ": neither a checkpoint (no " + state_file(path).string() +
                       ") nor a run directory with a `latest` checkpoint");
    checkpoint = *latest;
  }
  OpenCheckpoint ckpt(checkpoint);
  const model::ParamLayout layout(ckpt.metadata.model);
  h5::Handle params = h5::open_group(ckpt.file.get(), "params", ckpt.path);
  units.assign(layout.units().size(), {});
  for (std::size_t u = 0; u < units.size(); ++u) units[u].assign(layout.units()[u].numel, 0.0f);
  std::vector<float> buffer;
  for (const model::TensorInfo& tensor : layout.tensors()) {
    const std::string where = ckpt.path + ": dataset /params/" + tensor.name;
    h5::Handle dataset = h5::open_dataset(params.get(), tensor.name, ckpt.path + ": /params");
    const std::vector<hsize_t> dims = tensor_dims(dataset.get(), tensor, where);
    ckpt.read(dataset.get(), dims, 0, tensor, tensor.numel, buffer, where);
    std::copy(buffer.begin(), buffer.end(),
              units[static_cast<std::size_t>(tensor.unit)].begin() + static_cast<std::ptrdiff_t>(tensor.offset));
  }
  return ckpt.metadata.model;
}

void export_parameters(const fs::path& checkpoint, ExportFormat format, const fs::path& out_path) {
  h5::QuietErrors quiet;
  OpenCheckpoint ckpt(checkpoint);
  h5::Handle params = h5::open_group(ckpt.file.get(), "params", ckpt.path);
  if (out_path.has_parent_path()) fs::create_directories(out_path.parent_path());
  const fs::path temp = out_path.string() + ".tmp";
  try {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) throw InputError(temp.string() + ": cannot open for writing");
    if (format == ExportFormat::llmc)
      export_llmc(ckpt, params.get(), out, temp.string());
    else
      export_safetensors(ckpt, params.get(), out, temp.string());
    out.close();
    if (!out) throw InputError(temp.string() + ": write failed");
  } catch (...) {
    std::error_code ignored;
    fs::remove(temp, ignored);
    throw;
  }
  fs::rename(temp, out_path);
  if (format == ExportFormat::safetensors) {
    const fs::path config = (out_path.has_parent_path() ? out_path.parent_path() : fs::path(".")) / "config.json";
    std::ofstream out(config, std::ios::trunc);
    out << huggingface_config(ckpt.metadata.model);
    out.close();
    if (!out) throw InputError(config.string() + ": write failed");
  }
}

}  // namespace mics::checkpoint
