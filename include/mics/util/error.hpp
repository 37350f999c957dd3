// Errors and the two ways a job stops (after LAMMPS): an error every rank sees the same way (bad deck,
// bad shape) ends every rank cleanly with kExitUsage; an error only one rank sees aborts the whole job
// with MPI_Abort so no peer waits forever in a collective.
#pragma once
#include <stdexcept>
#include <string>
#include <string_view>

namespace mics {

// Exit statuses of the mics command (documented in the README).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // a rank failed; the job was aborted
inline constexpr int kExitUsage = 2;    // bad deck, option or shape; every rank exits with it
inline constexpr int kExitRequeue = 75; // checkpoint written after a signal: requeue me (EX_TEMPFAIL)

// A user-facing error: the message names the key, file, line or value at fault.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Every rank reached the same error: rank 0 prints it, all ranks finalize MPI and exit(code).
[[noreturn]] void fatal_all(std::string_view message, int code = kExitUsage);
// Only this rank saw the error: print it with the rank, then MPI_Abort the world.
[[noreturn]] void fatal_one(std::string_view message, int code = kExitFailure);

namespace detail {
[[noreturn]] void check_failed(const char* file, int line, const char* expr, const std::string& message);
[[noreturn]] void mpi_failed(const char* file, int line, const char* call, int code);
}  // namespace detail

}  // namespace mics

// Internal invariants: a failure is a bug or a broken peer, so it stops the whole job.
#define MICS_CHECK(cond, msg)                                                         \
  do {                                                                                \
    if (!(cond)) ::mics::detail::check_failed(__FILE__, __LINE__, #cond, (msg));      \
  } while (0)

#define MICS_MPI_CHECK(call)                                                          \
  do {                                                                                \
    int mics_mpi_rc_ = (call);                                                        \
    if (mics_mpi_rc_ != 0) ::mics::detail::mpi_failed(__FILE__, __LINE__, #call, mics_mpi_rc_); \
  } while (0)
