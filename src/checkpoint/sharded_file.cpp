#include "sharded_file.hpp"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <thread>

#include "mics/util/error.hpp"
#include "store.hpp"

namespace mics::checkpoint {

namespace fs = std::filesystem;

namespace {

constexpr const char* kChecksumAttribute = "xxh64";

std::vector<hsize_t> piece_dims(const Piece& piece, const model::TensorInfo& tensor) {
  if (tensor.shape.size() == 2) return {piece.rows, piece.columns};
  return {piece.columns};
}

int write_delay_ms() {
  const char* text = std::getenv(kWriteDelayEnv);
  return text ? std::max(0, std::atoi(text)) : 0;
}

bool injected_write_failure(int writer) {
  const char* text = std::getenv(kWriteFailRankEnv);
  return text != nullptr && std::atoi(text) == writer;
}

// Pieces of at least this size skip HDF5's write path: their space is allocated at creation, page-aligned,
// and the bytes go straight from the (page-aligned) staging buffer to the disk with O_DIRECT, bypassing
// the page cache, whose copy is the bottleneck on small machines (about a quarter of the disk's rate).
constexpr std::size_t kDirectBytes = std::size_t{1} << 20;
constexpr std::size_t kPage = 4096;

// A piece whose bytes are written after HDF5 has closed the file, at `offset`.
struct DirectPiece {
  const float* data;
  std::size_t bytes;
  haddr_t offset;
  std::string name;
};

struct Fd {
  int fd = -1;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  explicit Fd(int value) : fd(value) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void write_all(int fd, const void* data, std::size_t bytes, off_t offset, const std::string& where) {
  const auto* p = static_cast<const unsigned char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::pwrite(fd, p, std::min<std::size_t>(bytes, std::size_t{1} << 30), offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw CheckpointError(where + ": write failed: " + std::strerror(errno));
    }
    p += n;
    bytes -= static_cast<std::size_t>(n);
    offset += n;
  }
}

// The direct pieces' bytes: whole pages with O_DIRECT (where the file system takes it; tmpfs does not),
// each piece's last partial page, and everything when O_DIRECT is refused, through the page cache.
void write_direct_pieces(const fs::path& path, const std::vector<DirectPiece>& pieces) {
  if (pieces.empty()) return;
  const std::string where = path.string();
  const Fd buffered(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (buffered.fd < 0) throw CheckpointError(where + ": cannot reopen to write: " + std::strerror(errno));
  const Fd direct(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_DIRECT));
  for (const DirectPiece& piece : pieces) {
    std::size_t done = 0;
    const bool aligned = piece.offset % kPage == 0 && reinterpret_cast<std::uintptr_t>(piece.data) % kPage == 0;
    if (direct.fd >= 0 && aligned) {
      done = piece.bytes / kPage * kPage;
      write_all(direct.fd, piece.data, done, static_cast<off_t>(piece.offset), where + ": " + piece.name);
    }
    write_all(buffered.fd, reinterpret_cast<const unsigned char*>(piece.data) + done, piece.bytes - done,
              static_cast<off_t>(piece.offset + done), where + ": " + piece.name);
  }
}

h5::Handle create_groups_file(const fs::path& path, bool align_large = false) {
  h5::Handle access = h5::checked(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5Pcreate(file access)");
  if (align_large) h5::check(H5Pset_alignment(access.get(), kDirectBytes, kPage), "H5Pset_alignment");
  h5::disable_file_locking(access.get());
  // Closing the file closes whatever is still open in it: after a failed write nothing is left for the
  // library to flush at exit.
  h5::check(H5Pset_fclose_degree(access.get(), H5F_CLOSE_STRONG), "H5Pset_fclose_degree");
  // The default (earliest) object-header format: attributes stay compact in the object header. With the
  // newest format the index's 22 attributes go to dense storage (a fractal heap), where a corrupted file
  // made HDF5 1.10.8 read freed memory (found by `make fuzz`). HDF5 still uses the newer layout message a
  // virtual dataset needs.
  h5::Handle file = h5::checked(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access.get()), H5Fclose,
                                "creating " + path.string());
  for (const char* name : kTensorGroups)
    h5::checked(H5Gcreate2(file.get(), name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose,
                path.string() + ": creating group " + name);
  return file;
}

}  // namespace

namespace {

void write_pieces(hid_t file, const std::string& where, const float* staging, const std::vector<Piece>& pieces,
                  const model::ParamLayout& layout, std::vector<DirectPiece>& direct);

}  // namespace

void write_rank_file(const fs::path& path, const float* staging, const std::vector<Piece>& pieces,
                     const model::ParamLayout& layout) {
  const std::string where = path.string();
  h5::Handle file = create_groups_file(path, true);
  std::vector<DirectPiece> direct;
  try {
    write_pieces(file.get(), where, staging, pieces, layout, direct);
  } catch (...) {
    file.close();  // serial and this rank's own: closed here, not abandoned (h5::Handle)
    throw;
  }
  if (!file.close()) throw CheckpointError(where + ": closing the file failed (no space left, or an I/O error)");
  write_direct_pieces(path, direct);
  store::sync_path(path);
}

namespace {

void write_pieces(hid_t file, const std::string& where, const float* staging, const std::vector<Piece>& pieces,
                  const model::ParamLayout& layout, std::vector<DirectPiece>& direct) {
  // Allocated when created, never filled: HDF5 writes none of the raw data of a direct piece.
  h5::Handle early = h5::checked(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "H5Pcreate(dataset create)");
  h5::check(H5Pset_layout(early.get(), H5D_CONTIGUOUS), "H5Pset_layout");
  h5::check(H5Pset_alloc_time(early.get(), H5D_ALLOC_TIME_EARLY), "H5Pset_alloc_time");
  h5::check(H5Pset_fill_time(early.get(), H5D_FILL_TIME_NEVER), "H5Pset_fill_time");
  const int delay_ms = write_delay_ms();
  const bool fail = !pieces.empty() && injected_write_failure(pieces.front().writer);
  for (const Piece& piece : pieces) {
    const model::TensorInfo& tensor = layout.tensors()[static_cast<std::size_t>(piece.tensor)];
    const std::string name = piece_dataset_name(piece, layout);
    const float* data = staging + piece.staging_offset;
    // A state that is not finite is never committed: it could only resume into the same failure. Counted
    // without branches (NaN fails the comparison too), so the loop vectorizes.
    std::size_t bad = 0;
    for (std::size_t i = 0; i < piece.numel(); ++i) bad += !(std::fabs(data[i]) <= std::numeric_limits<float>::max());
    if (bad != 0)
      throw CheckpointError(where + ": " + name + " holds " + std::to_string(bad) + " values that are not finite (" +
                            tensor.name + ")");
    const std::vector<hsize_t> dims = piece_dims(piece, tensor);
    h5::Handle space = h5::checked(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose,
                                   "H5Screate_simple");
    const std::size_t bytes = piece.numel() * sizeof(float);
    const bool large = bytes >= kDirectBytes;
    h5::Handle dataset = h5::checked(H5Dcreate2(file, name.c_str(), H5T_IEEE_F32LE, space.get(), H5P_DEFAULT,
                                                large ? early.get() : H5P_DEFAULT, H5P_DEFAULT),
                                     H5Dclose, where + ": creating dataset " + name);
    const haddr_t offset = large ? H5Dget_offset(dataset.get()) : HADDR_UNDEF;
    if (offset != HADDR_UNDEF)
      direct.push_back(DirectPiece{data, bytes, offset, name});
    else
      h5::check(H5Dwrite(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
                where + ": writing dataset " + name);
    h5::write_attribute(dataset.get(), kChecksumAttribute,
                        static_cast<std::int64_t>(xxh64(data, piece.numel() * sizeof(float))));
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    if (fail) throw CheckpointError(where + ": injected write failure (" + kWriteFailRankEnv + ")");
  }
}

}  // namespace

void write_index_file(const fs::path& path, const Metadata& metadata, const std::vector<Piece>& plan,
                      const model::ParamLayout& layout) {
  const std::string where = path.string();
  h5::Handle file = create_groups_file(path);
  write_metadata(file.get(), metadata);
  // Pieces by (kind, tensor): each tensor's virtual dataset maps all of its pieces.
  std::vector<std::vector<const Piece*>> by_tensor(3 * layout.tensors().size());
  for (const Piece& piece : plan)
    by_tensor[static_cast<std::size_t>(piece.kind) * layout.tensors().size() + static_cast<std::size_t>(piece.tensor)]
        .push_back(&piece);
  for (int kind = 0; kind < 3; ++kind) {
    for (std::size_t t = 0; t < layout.tensors().size(); ++t) {
      const model::TensorInfo& tensor = layout.tensors()[t];
      const std::vector<hsize_t> dims(tensor.shape.begin(), tensor.shape.end());
      h5::Handle space = h5::checked(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                                     H5Sclose, "H5Screate_simple");
      h5::Handle create = h5::checked(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "H5Pcreate(dataset create)");
      for (const Piece* piece : by_tensor[static_cast<std::size_t>(kind) * layout.tensors().size() + t]) {
        const std::vector<hsize_t> shape = piece_dims(*piece, tensor);
        h5::Handle source = h5::checked(H5Screate_simple(static_cast<int>(shape.size()), shape.data(), nullptr),
                                        H5Sclose, "H5Screate_simple");
        std::vector<hsize_t> start = {piece->row, piece->column};
        if (dims.size() == 1) start = {piece->column};
        h5::check(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start.data(), nullptr, shape.data(), nullptr),
                  "H5Sselect_hyperslab");
        // The source file by its name alone: found next to the index file, wherever the directory moves.
        h5::check(H5Pset_virtual(create.get(), space.get(), rank_file_name(piece->writer).c_str(),
                                 piece_dataset_name(*piece, layout).c_str(), source.get()),
                  where + ": mapping " + piece_dataset_name(*piece, layout));
      }
      h5::check(H5Sselect_all(space.get()), "H5Sselect_all");
      const std::string name = std::string(kTensorGroups[kind]) + "/" + tensor.name;
      h5::checked(H5Dcreate2(file.get(), name.c_str(), H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, create.get(),
                             H5P_DEFAULT),
                  H5Dclose, where + ": creating virtual dataset " + name);
    }
  }
  if (!file.close()) throw CheckpointError(where + ": closing the file failed (no space left, or an I/O error)");
}

PieceReader::PieceReader(const fs::path& directory, const Metadata& metadata)
    : directory_(directory),
      layout_(metadata.model),
      plan_(piece_plan(layout_, static_cast<int>(metadata.partition_size), static_cast<int>(metadata.replicas))) {
  if (metadata.partition_size < 1 || metadata.replicas < 1 ||
      metadata.partition_size * metadata.replicas != metadata.world)
    throw InputError(directory.string() + ": the metadata's topology (world " + std::to_string(metadata.world) +
                     ", partition_size " + std::to_string(metadata.partition_size) + ", replicas " +
                     std::to_string(metadata.replicas) + ") does not describe how the checkpoint was written");
}

int PieceReader::tensor_index(const std::string& name, const std::string& where) const {
  const std::vector<model::TensorInfo>& tensors = layout_.tensors();
  const auto found =
      std::find_if(tensors.begin(), tensors.end(), [&](const model::TensorInfo& t) { return t.name == name; });
  if (found == tensors.end()) throw InputError(where + ": not a tensor of the checkpoint's model");
  return static_cast<int>(found - tensors.begin());
}

hid_t PieceReader::file(int writer) {
  auto found = files_.find(writer);
  if (found == files_.end())
    found = files_.emplace(writer, h5::open_file_read((directory_ / rank_file_name(writer)).string())).first;
  return found->second.get();
}

std::vector<float> PieceReader::read_piece(const Piece& piece) {
  const std::string file_name = (directory_ / rank_file_name(piece.writer)).string();
  const std::string name = piece_dataset_name(piece, layout_);
  const std::string where = file_name + ": dataset " + name;
  const hid_t handle = file(piece.writer);
  if (H5Lexists(handle, name.c_str(), H5P_DEFAULT) <= 0) throw InputError(where + " is missing");
  h5::Handle dataset = h5::open_dataset(handle, name, file_name);
  const model::TensorInfo& tensor = layout_.tensors()[static_cast<std::size_t>(piece.tensor)];
  const std::vector<hsize_t> want = piece_dims(piece, tensor);
  const std::vector<hsize_t> dims = h5::dataset_dims(dataset.get(), where);
  if (dims != want)
    throw InputError(where + " has shape " + h5::dims_text(dims) + ", but the checkpoint's plan needs " +
                     h5::dims_text(want));
  if (!h5::is_float32(dataset.get(), where)) throw InputError(where + " does not store 32-bit floats");
  std::vector<float> values(piece.numel());
  if (H5Dread(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) < 0)
    throw InputError(where + " cannot be read (I/O error or a truncated file)");
  const auto stored = static_cast<std::uint64_t>(h5::read_int_attribute(dataset.get(), kChecksumAttribute, where));
  if (stored != xxh64(values.data(), values.size() * sizeof(float)))
    throw InputError(where + " fails its xxh64 checksum: the data was changed after it was written");
  return values;
}

void PieceReader::read(int kind, int tensor, std::size_t begin, std::size_t end, float* out) {
  for (const Piece& piece : plan_) {
    if (piece.kind != kind || piece.tensor != tensor || piece.end <= begin || piece.begin >= end) continue;
    const std::vector<float> values = read_piece(piece);
    const std::size_t lo = std::max(begin, piece.begin), hi = std::min(end, piece.end);
    std::copy(values.begin() + static_cast<std::ptrdiff_t>(lo - piece.begin),
              values.begin() + static_cast<std::ptrdiff_t>(hi - piece.begin), out + (lo - begin));
  }
}

void PieceReader::check(const Piece& piece) {
  const std::vector<float> values = read_piece(piece);
  const auto bad = std::count_if(values.begin(), values.end(), [](float x) { return !std::isfinite(x); });
  if (bad > 0)
    throw InputError((directory_ / rank_file_name(piece.writer)).string() + ": dataset " +
                     piece_dataset_name(piece, layout_) + " holds " + std::to_string(bad) +
                     " values that are not finite");
}

}  // namespace mics::checkpoint
