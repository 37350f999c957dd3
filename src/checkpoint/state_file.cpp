// The state file: writing a shard's slices with parallel HDF5, reading any layout's slices back.
#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <utility>

#include "h5.hpp"
#include "mics/checkpoint/checkpoint.hpp"
#include "mics/comm/agreement.hpp"
#include "mics/log/log.hpp"
#include "mics/util/progress_watchdog.hpp"
#include "mics/util/error.hpp"
#include "sharded_file.hpp"
#include "store.hpp"

namespace mics::checkpoint {

namespace fs = std::filesystem;

namespace {

// Elements per chunk: checksums are per chunk, and 1 MiB chunks keep both the overhead and the
// amount re-read to verify one corrupted region small.
constexpr hsize_t kChunkElements = hsize_t{1} << 18;

// The part of a tensor that a shard [shard_begin, shard_begin + shard_numel) of its unit holds, as
// element offsets within the tensor; empty when begin == end.
struct Slice {
  std::size_t begin = 0;
  std::size_t end = 0;
  std::size_t shard_offset = 0;  // where `begin` lies in the shard
};

Slice slice_of(const model::TensorInfo& tensor, const engine::UnitSharding& sharding) {
  const std::size_t lo = std::max(tensor.offset, sharding.shard_begin);
  const std::size_t hi = std::min(tensor.offset + tensor.numel, sharding.shard_begin + sharding.shard_numel);
  if (lo >= hi) return {};
  return Slice{lo - tensor.offset, hi - tensor.offset, lo - sharding.shard_begin};
}

std::vector<hsize_t> dims_of(const model::TensorInfo& tensor) {
  return std::vector<hsize_t>(tensor.shape.begin(), tensor.shape.end());
}

void check_model(const std::string& where, const model::GptShape& saved, const model::GptShape& want) {
  if (const auto d = model::first_difference(saved, want))
    throw InputError(where + ": the checkpoint's model has " + d->field + " = " + std::to_string(d->found) +
                " but the deck's model has " + std::to_string(d->expected));
}

int write_delay_ms() {
  const char* text = std::getenv(kWriteDelayEnv);
  return text ? std::max(0, std::atoi(text)) : 0;
}

bool injected_write_failure() {
  const char* text = std::getenv(kWriteFailRankEnv);
  if (!text) return false;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return std::atoi(text) == rank;
}

// Collective over the partition group: the whole state file, each rank writing its own slices.
void write_state_file(const fs::path& path, engine::Engine& engine, backends::Backend& backend, MPI_Comm partition,
                      const model::ParamLayout& layout, const Metadata& metadata, ProgressWatchdog& watchdog) {
  const std::string where = path.string();
  h5::Handle access = h5::checked(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5Pcreate(file access)");
  h5::check(H5Pset_fapl_mpio(access.get(), partition, MPI_INFO_NULL), "H5Pset_fapl_mpio");
  h5::disable_file_locking(access.get());
  h5::Handle file = h5::checked(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access.get()), H5Fclose,
                                "creating " + where);
  write_metadata(file.get(), metadata);

  h5::Handle transfer = h5::checked(H5Pcreate(H5P_DATASET_XFER), H5Pclose, "H5Pcreate(transfer)");
  // Filtered datasets can only be written collectively in parallel HDF5.
  h5::check(H5Pset_dxpl_mpio(transfer.get(), H5FD_MPIO_COLLECTIVE), "H5Pset_dxpl_mpio");
  std::vector<h5::Handle> groups;
  for (const char* name : kTensorGroups)
    groups.push_back(h5::checked(H5Gcreate2(file.get(), name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose,
                                 where + ": creating group " + name));

  const int delay_ms = write_delay_ms();
  const bool fail_after_first_dataset = injected_write_failure();
  std::vector<float> host;
  for (std::size_t u = 0; u < layout.units().size(); ++u) {
    const engine::UnitSharding& sharding = engine.sharding()[u];
    const int unit = static_cast<int>(u);
    float* const shards[3] = {engine.master_shard(unit), engine.adam_m_shard(unit), engine.adam_v_shard(unit)};
    host.resize(3 * sharding.shard_numel);
    for (int g = 0; g < 3; ++g)
      backend.copy_to_host(host.data() + g * sharding.shard_numel, shards[g], sharding.shard_numel * sizeof(float));

    for (int t : layout.units()[u].tensors) {
      const model::TensorInfo& tensor = layout.tensors()[static_cast<std::size_t>(t)];
      const std::vector<hsize_t> dims = dims_of(tensor);
      std::vector<hsize_t> chunk = dims;
      if (dims.size() == 1) {
        chunk[0] = std::min(dims[0], kChunkElements);
      } else {
        chunk[0] = std::clamp<hsize_t>(kChunkElements / dims[1], 1, dims[0]);
      }
      h5::Handle create = h5::checked(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "H5Pcreate(dataset create)");
      h5::check(H5Pset_chunk(create.get(), static_cast<int>(chunk.size()), chunk.data()), "H5Pset_chunk");
      h5::check(H5Pset_fletcher32(create.get()), "H5Pset_fletcher32");
      h5::check(H5Pset_fill_time(create.get(), H5D_FILL_TIME_NEVER), "H5Pset_fill_time");
      h5::Handle file_space = h5::checked(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                                          H5Sclose, "H5Screate_simple");
      const Slice slice = slice_of(tensor, sharding);
      h5::select_flat_range(file_space.get(), dims, slice.begin, slice.end);
      h5::Handle memory = h5::memory_space(slice.end - slice.begin);
      for (int g = 0; g < 3; ++g) {
        const std::string name = std::string("/") + kTensorGroups[g] + "/" + tensor.name;
        watchdog.advance("the collective write of dataset " + name + " over the partition group");
        h5::Handle dataset = h5::checked(H5Dcreate2(groups[static_cast<std::size_t>(g)].get(), tensor.name.c_str(),
                                                    H5T_IEEE_F32LE, file_space.get(), H5P_DEFAULT, create.get(),
                                                    H5P_DEFAULT),
                                         H5Dclose, where + ": creating dataset " + name);
        const float* source = host.data() + g * sharding.shard_numel + slice.shard_offset;
        h5::check(H5Dwrite(dataset.get(), H5T_NATIVE_FLOAT, memory.get(), file_space.get(), transfer.get(), source),
                  where + ": writing dataset " + name);
        if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
        if (fail_after_first_dataset) throw InputError(where + ": injected write failure (" + kWriteFailRankEnv + ")");
      }
    }
  }
  groups.clear();
  watchdog.advance("closing the file (collective over the partition group)");
  if (!file.close()) throw InputError(where + ": closing the file failed");
}

// This rank's shard of every unit from the file, read independently.
void read_state_file(const fs::path& path, engine::Engine& engine, backends::Backend& backend,
                     const model::ParamLayout& layout, Metadata& metadata) {
  const std::string where = path.string();
  h5::Handle file = h5::open_file_read(where);
  metadata = read_metadata_from(file.get(), where);
  check_model(where, metadata.model, layout.shape());
  std::vector<h5::Handle> groups;
  for (const char* name : kTensorGroups) groups.push_back(h5::open_group(file.get(), name, where));

  std::vector<float> host;
  for (std::size_t u = 0; u < layout.units().size(); ++u) {
    const engine::UnitSharding& sharding = engine.sharding()[u];
    // Padding past the unit's real elements stays zero, as the engine keeps it.
    host.assign(3 * sharding.shard_numel, 0.0f);
    for (int t : layout.units()[u].tensors) {
      const model::TensorInfo& tensor = layout.tensors()[static_cast<std::size_t>(t)];
      const Slice slice = slice_of(tensor, sharding);
      const std::vector<hsize_t> want = dims_of(tensor);
      for (int g = 0; g < 3; ++g) {
        const std::string name = std::string("/") + kTensorGroups[g] + "/" + tensor.name;
        const hid_t group = groups[static_cast<std::size_t>(g)].get();
        if (H5Lexists(group, tensor.name.c_str(), H5P_DEFAULT) <= 0)
          throw InputError(where + ": dataset " + name + " is missing");
        h5::Handle dataset = h5::open_dataset(group, tensor.name, where);
        tensor_dims(dataset.get(), tensor, where + ": dataset " + name);
        if (slice.begin == slice.end) continue;
        h5::Handle file_space = h5::checked(H5Dget_space(dataset.get()), H5Sclose, where + ": H5Dget_space");
        h5::select_flat_range(file_space.get(), want, slice.begin, slice.end);
        h5::Handle memory = h5::memory_space(slice.end - slice.begin);
        float* target = host.data() + g * sharding.shard_numel + slice.shard_offset;
        if (H5Dread(dataset.get(), H5T_NATIVE_FLOAT, memory.get(), file_space.get(), H5P_DEFAULT, target) < 0)
          throw InputError(where + ": dataset " + name + " cannot be read (checksum mismatch or I/O error)");
      }
    }
    const int unit = static_cast<int>(u);
    float* const shards[3] = {engine.master_shard(unit), engine.adam_m_shard(unit), engine.adam_v_shard(unit)};
    for (int g = 0; g < 3; ++g)
      backend.copy_from_host(shards[g], host.data() + g * sharding.shard_numel, sharding.shard_numel * sizeof(float));
  }
}

// Format 3: this rank's shard of every unit from the pieces that hold it, whatever layout wrote them.
void read_pieces(const fs::path& path, engine::Engine& engine, backends::Backend& backend,
                 const model::ParamLayout& layout, const Metadata& metadata) {
  check_model(path.string(), metadata.model, layout.shape());
  PieceReader reader(path.parent_path(), metadata);
  std::vector<float> host;
  for (std::size_t u = 0; u < layout.units().size(); ++u) {
    const engine::UnitSharding& sharding = engine.sharding()[u];
    host.assign(3 * sharding.shard_numel, 0.0f);  // padding stays zero, as the engine keeps it
    for (int t : layout.units()[u].tensors) {
      const Slice slice = slice_of(layout.tensors()[static_cast<std::size_t>(t)], sharding);
      if (slice.begin == slice.end) continue;
      for (int kind = 0; kind < 3; ++kind)
        reader.read(kind, t, slice.begin, slice.end, host.data() + kind * sharding.shard_numel + slice.shard_offset);
    }
    const int unit = static_cast<int>(u);
    float* const shards[3] = {engine.master_shard(unit), engine.adam_m_shard(unit), engine.adam_v_shard(unit)};
    for (int kind = 0; kind < 3; ++kind)
      backend.copy_from_host(shards[kind], host.data() + kind * sharding.shard_numel,
                             sharding.shard_numel * sizeof(float));
  }
}

}  // namespace

std::vector<hsize_t> tensor_dims(hid_t dataset, const model::TensorInfo& tensor, const std::string& where) {
  const std::vector<hsize_t> dims = h5::dataset_dims(dataset, where);
  const std::vector<hsize_t> want = dims_of(tensor);
  if (dims != want)
    throw InputError(where + " has shape " + h5::dims_text(dims) + ", but the model the metadata describes needs " +
                     h5::dims_text(want));
  if (!h5::is_float32(dataset, where)) throw InputError(where + " does not store 32-bit floats");
  return dims;
}

// Where this rank's shards hold a value that is not finite ("" when none): a state that must never be
// committed. One pass over the shard on the host; cheap next to writing it.
std::string non_finite_state(engine::Engine& engine, backends::Backend& backend, const model::ParamLayout& layout) {
  std::vector<float> host;
  for (std::size_t u = 0; u < layout.units().size(); ++u) {
    const std::size_t n = engine.sharding()[u].shard_numel;
    const int unit = static_cast<int>(u);
    float* const shards[3] = {engine.master_shard(unit), engine.adam_m_shard(unit), engine.adam_v_shard(unit)};
    host.resize(n);
    for (int g = 0; g < 3; ++g) {
      backend.copy_to_host(host.data(), shards[g], n * sizeof(float));
      for (float x : host)
        if (!std::isfinite(x)) return std::string(kTensorGroups[g]) + " of unit " + layout.units()[u].name;
    }
  }
  return {};
}

void save(engine::Engine& engine, backends::Backend& backend, const topology::Topology& topology,
          const model::ParamLayout& layout, const Metadata& metadata, const fs::path& run_dir,
          const Retention& retention, const IoPatience& patience) {
  const topology::Group& world = topology.world();
  const bool world_root = topology.placement().world_rank == 0;
  const bool writer = topology.placement().partition_group == 0;
  const fs::path final_dir = run_dir / step_dir_name(metadata.step);
  const fs::path partial_dir = run_dir / (step_dir_name(metadata.step) + kPartialSuffix);
  h5::QuietErrors quiet;

  const std::string what = "checkpoint at step " + std::to_string(metadata.step);
  Metadata single_file = metadata;
  single_file.format_version = kSingleFileFormatVersion;
  // A state that is not finite is never committed: it could only resume into the same failure.
  std::string error;
  if (writer) {
    if (const std::string where = non_finite_state(engine, backend, layout); !where.empty())
      error = "the model state holds non-finite values (" + where + ")";
  }
  const comm::Patience agreement{patience.limit, "the agreement on the " + what, {}};
  error = comm::first_error(world, error, agreement);
  if (!error.empty()) throw CheckpointError(what + " NOT written: " + error, ErrorScope::all_ranks);
  if (world_root) {
    try {
      std::error_code ec;
      fs::remove_all(partial_dir, ec);  // a leftover of a crashed attempt at the same step
      fs::create_directories(partial_dir);
    } catch (const std::exception& e) {
      error = std::string("cannot create ") + partial_dir.string() + ": " + e.what();
    }
  }
  error = comm::first_error(world, error, agreement);
  if (error.empty() && writer) {
    try {
      ProgressWatchdog watchdog(patience.limit, patience.on_stall, partial_dir,
                                what + ": writing " + (partial_dir / kStateFileName).string());
      write_state_file(partial_dir / kStateFileName, engine, backend, topology.partition().handle(), layout,
                       single_file, watchdog);
    } catch (const std::exception& e) {
      // Every HDF5 call in the file is collective over the writers: a rank that fails part-way (disk
      // full on its aggregator) would leave its peers waiting in the next one. This rank's error stops
      // the job; the .partial directory is never committed, so `latest` still names the previous one.
      throw CheckpointError(what + ": writing " + (partial_dir / kStateFileName).string() + " failed: " + e.what() +
                            "; the previous checkpoint stays the latest");
    }
  }
  // Committed only when every writer succeeded. The ranks that do not write wait here for as long as the
  // checkpoint's files keep growing.
  std::uintmax_t written = 0;
  const comm::Patience while_written{patience.limit,
                                     "waiting for the writers of the " + what + " (the files in " +
                                         partial_dir.string() + " stopped growing)",
                                     [&] {
                                       const std::uintmax_t now = directory_file_bytes(partial_dir);
                                       return std::exchange(written, now) != now;
                                     }};
  error = comm::first_error(world, error, while_written);
  if (error.empty() && world_root) {
    try {
      store::commit(partial_dir, final_dir, run_dir);
    } catch (const std::exception& e) {
      error = std::string("commit of ") + final_dir.string() + " failed: " + e.what();
    }
  }
  error = comm::first_error(world, error, agreement);
  if (!error.empty())
    throw CheckpointError(what + " NOT written: " + error + "; the previous checkpoint stays the latest",
                          ErrorScope::all_ranks);
  MICS_LOG(info) << "checkpoint written: " << final_dir.string();
  if (world_root) store::prune(run_dir, retention, metadata.step);
}

LoadResult load(const fs::path& checkpoint, engine::Engine& engine, backends::Backend& backend,
                const topology::Topology& topology, const model::ParamLayout& layout, const IoPatience& patience) {
  h5::QuietErrors quiet;
  LoadResult result;
  Metadata metadata;
  try {
    metadata = read_metadata(state_file(checkpoint));
    if (metadata.format_version >= 3)
      read_pieces(state_file(checkpoint), engine, backend, layout, metadata);
    else
      read_state_file(state_file(checkpoint), engine, backend, layout, metadata);
  } catch (const std::exception& e) {
    result.error = e.what();
  }
  result.error = comm::first_error(topology.world(), result.error,
                                   comm::Patience{patience.limit, "the agreement after reading a checkpoint", {}});
  if (result.error.empty()) result.metadata = metadata;
  return result;
}

}  // namespace mics::checkpoint
