// Rank 0 reads and validates the deck; every rank gets the same outcome through two broadcasts, so a
// bad deck stops every rank the same way and no rank waits in a collective its peers never reach.
#include <mpi.h>

#include <climits>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "mics/config/config.hpp"
#include "mics/util/error.hpp"
#include "mics/util/printable.hpp"

namespace mics::config {

namespace {

constexpr std::int64_t kStatusOk = 0;
constexpr std::int64_t kStatusError = 1;

std::string read_deck_file(const std::string& path) {
  const std::string shown = printable(path);
  std::error_code ec;
  const std::filesystem::file_status status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) throw InputError("input deck '" + shown + "' does not exist");
  if (std::filesystem::is_directory(status)) throw InputError("input deck '" + shown + "' is a directory");
  // Opening a FIFO would wait for a writer forever, on every rank that tries.
  if (!std::filesystem::is_regular_file(status))
    throw InputError("input deck '" + shown + "' is not a regular file (a FIFO, device or socket)");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("cannot read input deck '" + shown + "'");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw InputError("cannot read input deck '" + shown + "'");
  return text.str();
}

}  // namespace

std::variant<Config, std::string> try_load(MPI_Comm comm, const std::optional<std::string>& deck_path,
                                           const std::vector<std::string>& overrides) {
  int rank = 0;
  MICS_MPI_CHECK(MPI_Comm_rank(comm, &rank));

  // Rank 0's outcome: the keys that were set, as a deck, or the error message. Nothing here may
  // escape before the broadcasts, or the other ranks would wait forever.
  std::int64_t header[2] = {kStatusOk, 0};  // status, payload bytes
  std::string payload;
  if (rank == 0) {
    try {
      const std::string text = deck_path ? read_deck_file(*deck_path) : std::string();
      payload = Config::parse(text, deck_path.value_or(""), overrides).set_keys_deck();
    } catch (const std::exception& error) {
      header[0] = kStatusError;
      payload = error.what();
    }
    if (payload.size() > static_cast<std::size_t>(INT_MAX)) {
      header[0] = kStatusError;
      payload = "input deck is too large";
    }
    header[1] = static_cast<std::int64_t>(payload.size());
  }
  MICS_MPI_CHECK(MPI_Bcast(header, 2, MPI_INT64_T, 0, comm));
  payload.resize(static_cast<std::size_t>(header[1]));
  MICS_MPI_CHECK(MPI_Bcast(payload.data(), static_cast<int>(header[1]), MPI_CHAR, 0, comm));

  if (header[0] != kStatusOk) return payload;
  // Every rank, rank 0 included, builds its configuration from the same text: identical by construction.
  try {
    return Config::parse(payload, "effective deck", {});
  } catch (const Error& error) {
    return std::string(error.what());
  }
}

Config load(MPI_Comm comm, const std::optional<std::string>& deck_path,
            const std::vector<std::string>& overrides) {
  auto outcome = try_load(comm, deck_path, overrides);
  if (auto* message = std::get_if<std::string>(&outcome)) throw InputError(*message, ErrorScope::all_ranks);
  return std::get<Config>(std::move(outcome));
}

}  // namespace mics::config
