// How the mics command ends the process: the only place that decides the exit status, prints the error
// and stops MPI (docs/architecture.md#errors).
#pragma once
#include <string_view>

#include "mics/util/error.hpp"

namespace mics::cli {

// An error that reached the command's top level. all_ranks: rank 0 prints it, every rank finalizes MPI
// and exits with its status. this_rank: this rank prints it with its rank and aborts the whole job.
[[noreturn]] void stop(const Error& error);
// Something other than a mics::Error escaped (std::bad_alloc, ...): this rank's, the job is aborted.
[[noreturn]] void abort_job(std::string_view reason);
// std::terminate (an error escaping a destructor, a thread that cannot report otherwise) prints the
// exception and aborts the job.
void install_terminate_handler();
// For a thread that must end the process while the main thread is stuck (MPI forbids calls from it):
// prints the reason and exits without MPI; the launcher then ends the job.
[[noreturn]] void exit_now(std::string_view reason);

}  // namespace mics::cli
