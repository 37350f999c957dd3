// Private: the directory side of checkpoints (commit by rename, the `latest` pointer, retention) and
// the agreement of ranks on an outcome.
#pragma once
#include <mpi.h>

#include <filesystem>
#include <string>

#include "mics/checkpoint/checkpoint.hpp"

namespace mics::checkpoint::store {

// fsync a file or directory; throws mics::Error naming it.
void sync_path(const std::filesystem::path& path);

// step_<N>.partial -> step_<N> after syncing the state file and both directories, then `latest`
// replaced atomically (latest.tmp, fsync, rename, fsync the run directory). Throws mics::Error.
void commit(const std::filesystem::path& partial_dir, const std::filesystem::path& final_dir,
            const std::filesystem::path& run_dir);

// Removes committed checkpoints beyond retention (never `keep_this`) and abandoned .partial directories
// older than it. Failures are logged, not thrown: a checkpoint kept too long is harmless.
void prune(const std::filesystem::path& run_dir, const Retention& retention, std::int64_t keep_this);

}  // namespace mics::checkpoint::store
