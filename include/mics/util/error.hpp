// The error policy (docs/architecture.md#errors). Library code only throws; the mics command's top level
// (src/cli/stop.cpp) alone decides the exit status, prints, and either ends every rank cleanly or aborts
// the job. Every error says two things besides its message:
//   kind:  what went wrong, which fixes the exit status
//          input     bad deck, option, shape, file or value the user gave       -> kExitUsage (2)
//          failure   a peer, collective, device or file operation failed at run  -> kExitFailure (1)
//          internal  an invariant of the code broke: a bug                        -> kExitFailure (1)
//          checkpoint a checkpoint could not be written (disk full, not writable) -> kExitCheckpoint (74)
//   scope: who raised it
//          this_rank  only this rank knows: the job is aborted (MPI_Abort), or a peer would wait forever
//          all_ranks  every rank raised the same error (identical inputs, or after comm::agree):
//                     every rank ends cleanly with the status
// No MPI here: the kernels and single-process tools use this header too.
#pragma once
#include <stdexcept>
#include <string>

namespace mics {

// Exit statuses of the mics command (documented in the README).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;   // a rank failed; the job was aborted
inline constexpr int kExitUsage = 2;     // bad deck, option or shape; every rank exits with it
inline constexpr int kExitCheckpoint = 74;  // a checkpoint could not be written (EX_IOERR)
inline constexpr int kExitRequeue = 75;  // checkpoint written after a signal: requeue me (EX_TEMPFAIL)

enum class ErrorKind { input, failure, internal, checkpoint };
enum class ErrorScope { this_rank, all_ranks };

class Error : public std::runtime_error {
 public:
  ErrorKind kind() const { return kind_; }
  ErrorScope scope() const { return scope_; }
  int exit_status() const {
    switch (kind_) {
      case ErrorKind::input: return kExitUsage;
      case ErrorKind::checkpoint: return kExitCheckpoint;
      default: return kExitFailure;
    }
  }

 protected:
  Error(const std::string& message, ErrorKind kind, ErrorScope scope)
      : std::runtime_error(message), kind_(kind), scope_(scope) {}

 private:
  ErrorKind kind_;
  ErrorScope scope_;
};

// Bad input: the message names the key, file, line or value at fault.
class InputError : public Error {
 public:
  explicit InputError(const std::string& message, ErrorScope scope = ErrorScope::this_rank)
      : Error(message, ErrorKind::input, scope) {}
};

// A collective, a peer, a device or an I/O operation failed while running.
class PeerError : public Error {
 public:
  explicit PeerError(const std::string& message, ErrorScope scope = ErrorScope::this_rank)
      : Error(message, ErrorKind::failure, scope) {}
};

// A checkpoint that could not be written: nothing new was committed, `latest` names the previous one.
class CheckpointError : public Error {
 public:
  explicit CheckpointError(const std::string& message, ErrorScope scope = ErrorScope::this_rank)
      : Error(message, ErrorKind::checkpoint, scope) {}
};

// A broken invariant (MICS_CHECK): a bug in mics.
class InternalError : public Error {
 public:
  explicit InternalError(const std::string& message, ErrorScope scope = ErrorScope::this_rank)
      : Error(message, ErrorKind::internal, scope) {}
};

// Throws the error of that kind and scope (to raise again an error received from another rank).
[[noreturn]] void throw_error(ErrorKind kind, const std::string& message, ErrorScope scope);

// Runs `work`, which every rank runs on identical inputs (the broadcast deck, the plan): any mics::Error it
// throws is raised again as an all-ranks error.
template <class Work>
decltype(auto) on_every_rank(Work&& work) {
  try {
    return work();
  } catch (const Error& e) {
    throw_error(e.kind(), e.what(), ErrorScope::all_ranks);
  }
}

namespace detail {
[[noreturn]] void check_failed(const char* file, int line, const char* expr, const std::string& message);
[[noreturn]] void mpi_failed(const char* file, int line, const char* call, int code);
}  // namespace detail

}  // namespace mics

// Internal invariants: a failure is a bug (InternalError, this rank).
#define MICS_CHECK(cond, msg)                                                         \
  do {                                                                                \
    if (!(cond)) ::mics::detail::check_failed(__FILE__, __LINE__, #cond, (msg));      \
  } while (0)

// An MPI call that returns an error code (PeerError, this rank). Implemented in the comm area.
#define MICS_MPI_CHECK(call)                                                          \
  do {                                                                                \
    int mics_mpi_rc_ = (call);                                                        \
    if (mics_mpi_rc_ != 0) ::mics::detail::mpi_failed(__FILE__, __LINE__, #call, mics_mpi_rc_); \
  } while (0)
