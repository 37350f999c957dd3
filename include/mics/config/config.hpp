// The run configuration: an INI input deck ([section] key = value, # comments) plus command-line
// overrides (--section.key=value, the command line wins), checked against one schema of typed keys.
// Rank 0 reads and validates it, then broadcasts the effective configuration (after LAMMPS).
#pragma once
#include <mpi.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace mics::config {

enum class Type { Int, Float, Bool, String, Choice };

// One key of the schema. Int and Float keys may also accept the word "auto" (allow_auto).
struct KeyDef {
  std::string name;           // "section.key"
  Type type;
  std::string default_value;  // as written in a deck
  std::string help;           // one line, printed as a comment by `mics config`
  double min = -1e300;        // inclusive bounds for Int and Float
  double max = 1e300;
  std::vector<std::string> choices;  // for Choice
  bool allow_auto = false;
  bool min_exclusive = false;  // bound itself not allowed (lr > 0, beta1 < 1)
  bool max_exclusive = false;
};

// Every key mics knows, in deck order (sections grouped).
const std::vector<KeyDef>& schema();
const KeyDef* find_key(std::string_view name);
// The valid key closest to `name` (edit distance), for "did you mean" messages.
std::string closest_key(std::string_view name);
// Section names in deck order, and the one closest to `name`.
std::vector<std::string> sections();
std::string closest_section(std::string_view name);

// Validated, effective configuration: every schema key has a value (default or set).
class Config {
 public:
  // Parse deck text (may be empty) and overrides ("section.key=value"), validate every value.
  // Throws mics::Error naming the file and line (deck) or the option (command line).
  static Config parse(std::string_view deck_text, std::string_view deck_path,
                      const std::vector<std::string>& overrides);

  std::int64_t get_int(std::string_view key) const;
  std::optional<std::int64_t> get_int_or_auto(std::string_view key) const;  // nullopt for "auto"
  double get_float(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  const std::string& get_string(std::string_view key) const;  // also for Choice keys
  bool is_set(std::string_view key) const;                    // given by deck or command line

  // Every key, defaults included, as a deck that runs again (`mics config`).
  std::string to_deck() const;
  // Only the keys given by deck or command line: what rank 0 broadcasts, so is_set agrees everywhere.
  std::string set_keys_deck() const;
  // Every key's value as text ("section.key" -> value), defaults included.
  const std::map<std::string, std::string, std::less<>>& values() const { return values_; }

 private:
  std::map<std::string, std::string, std::less<>> values_;
  std::map<std::string, bool, std::less<>> explicitly_set_;
};

// The collective part of load() without exiting: rank 0 reads and parses, every rank returns the same
// outcome, the configuration or the error message.
std::variant<Config, std::string> try_load(MPI_Comm comm, const std::optional<std::string>& deck_path,
                                           const std::vector<std::string>& overrides);
// Rank 0 reads the deck file and parses it with the overrides; the outcome (the effective deck, or the
// error) is broadcast over `comm`. On error every rank throws the same InputError (all ranks).
Config load(MPI_Comm comm, const std::optional<std::string>& deck_path,
            const std::vector<std::string>& overrides);

}  // namespace mics::config
