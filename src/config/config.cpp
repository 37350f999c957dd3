// Deck parsing, value checking against the schema, typed getters and deck printing.
#include "mics/config/config.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "mics/util/error.hpp"
#include "mics/util/printable.hpp"

namespace mics::config {

namespace {

std::string_view trim(std::string_view text) {
  const auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

// A '#' starts a comment at the start of a line or after whitespace; elsewhere it is part of a value
// ("llmc:run#3.bin").
std::string_view strip_comment(std::string_view line) {
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '#' && (i == 0 || std::isspace(static_cast<unsigned char>(line[i - 1])))) {
      return line.substr(0, i);
    }
  }
  return line;
}

// The first byte a deck line or value may not hold: NUL and the other control characters but tab (a
// NUL would also end the value wherever it is passed on as a C string). npos when there is none.
std::size_t forbidden_control(std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if ((c < 0x20 && c != '\t') || c == 0x7F) return i;
  }
  return std::string_view::npos;
}

// "a NUL byte", "the control character \x1b"
std::string control_name(char c) {
  return c == '\0' ? std::string("a NUL byte (\\0)") : "the control character " + printable(std::string_view(&c, 1));
}

std::string lower(std::string_view text) {
  std::string result(text);
  for (char& c : result) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return result;
}

std::string format_number(double value) {
  // Integral bounds (the int range of integer keys) print exactly; others with 6 significant digits.
  if (value == std::floor(value) && std::fabs(value) < 1e18) return std::to_string(static_cast<long long>(value));
  std::ostringstream os;
  os << value;
  return os.str();
}

std::string type_name(const KeyDef& def) {
  switch (def.type) {
    case Type::Int: return "integer";
    case Type::Float: return "float";
    case Type::Bool: return "bool";
    case Type::String: return "string";
    case Type::Choice: return "choice";
  }
  return "value";
}

// "(must be >= 1)", "(must be >= 0 and < 1)"; empty when the key has no bounds.
std::string range_text(const KeyDef& def) {
  std::vector<std::string> parts;
  if (def.min > -1e300) parts.push_back((def.min_exclusive ? "> " : ">= ") + format_number(def.min));
  if (def.max < 1e300) parts.push_back((def.max_exclusive ? "< " : "<= ") + format_number(def.max));
  if (parts.empty()) return "";
  return "(must be " + parts[0] + (parts.size() > 1 ? " and " + parts[1] : "") + ")";
}

bool in_range(const KeyDef& def, double value) {
  if (def.min_exclusive ? !(value > def.min) : !(value >= def.min)) return false;
  if (def.max_exclusive ? !(value < def.max) : !(value <= def.max)) return false;
  return true;
}

// Checks `value` against the key's type and bounds; returns the text to store (canonical for ints and
// bools). Throws mics::Error prefixed with `where` ("file:line: " or "command line: ").
std::string check_value(const KeyDef& def, std::string_view value, const std::string& where) {
  const std::string stated = where + def.name + " = " + printable(value);
  const std::string auto_note = def.allow_auto ? " or 'auto'" : "";
  if (def.allow_auto && value == "auto") return "auto";
  switch (def.type) {
    case Type::Int: {
      std::int64_t parsed = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), parsed);
      if (ec == std::errc::result_out_of_range) throw InputError(stated + " is out of range (too large)");
      if (ec != std::errc() || end != value.data() + value.size()) {
        throw InputError(stated + " is not an integer" + auto_note);
      }
      if (!in_range(def, static_cast<double>(parsed))) throw InputError(stated + " is out of range " + range_text(def));
      return std::to_string(parsed);
    }
    case Type::Float: {
      double parsed = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), parsed);
      if (ec == std::errc::result_out_of_range) throw InputError(stated + " is out of range (too large)");
      if (ec != std::errc() || end != value.data() + value.size()) {
        throw InputError(stated + " is not a number" + auto_note);
      }
      if (!std::isfinite(parsed)) throw InputError(stated + " is not a finite number");
      if (!in_range(def, parsed)) throw InputError(stated + " is out of range " + range_text(def));
      return std::string(value);
    }
    case Type::Bool: {
      const std::string word = lower(value);
      if (word == "true" || word == "yes" || word == "on" || word == "1") return "true";
      if (word == "false" || word == "no" || word == "off" || word == "0") return "false";
      throw InputError(stated + " is not a boolean (true/false, yes/no, on/off, 1/0)");
    }
    case Type::Choice: {
      for (const auto& choice : def.choices) {
        if (value == choice) return choice;
      }
      std::string list;
      for (const auto& choice : def.choices) list += (list.empty() ? "" : "|") + choice;
      throw InputError(stated + " is not one of " + list);
    }
    case Type::String:
      return std::string(value);
  }
  throw InputError(stated + " has an unknown type");
}

[[noreturn]] void misuse(std::string_view key, const std::string& what) {
  throw std::logic_error("config: key '" + std::string(key) + "' " + what);
}

const KeyDef& key_of(std::string_view key) {
  const KeyDef* def = find_key(key);
  if (def == nullptr) misuse(key, "is not in the schema");
  return *def;
}

// One "key = value" line of a deck, with the key's help as a comment above it.
void write_key(std::ostringstream& os, const KeyDef& def, const std::string& value) {
  const std::string key = def.name.substr(def.name.find('.') + 1);
  os << "# " << def.help;
  if (def.type == Type::Choice) {
    std::string list;
    for (const auto& choice : def.choices) list += (list.empty() ? "" : "|") + choice;
    os << " [" << list << "]";
  }
  os << "\n";
  // A deck cannot hold an empty value; empty is always the default, so the key stays commented.
  if (value.empty()) {
    os << "# " << key << " =\n";
  } else {
    os << key << " = " << value << "\n";
  }
}

}  // namespace

Config Config::parse(std::string_view deck_text, std::string_view deck_path,
                     const std::vector<std::string>& overrides) {
  Config config;
  for (const auto& def : schema()) {
    config.values_[def.name] = def.default_value;
    config.explicitly_set_[def.name] = false;
  }

  const std::string path = deck_path.empty() ? std::string("deck") : printable(deck_path);
  // A UTF-8 byte-order mark, as some editors write at the start of a file, is not part of the first line.
  constexpr std::string_view kBom = "\xEF\xBB\xBF";
  if (deck_text.substr(0, kBom.size()) == kBom) deck_text.remove_prefix(kBom.size());
  const std::vector<std::string> known_sections = sections();
  std::map<std::string, int, std::less<>> line_of_key;
  std::string section;
  int line_number = 0;
  std::size_t start = 0;
  while (start <= deck_text.size()) {
    std::size_t end = deck_text.find('\n', start);
    if (end == std::string_view::npos) end = deck_text.size();
    const std::string_view raw = deck_text.substr(start, end - start);
    start = end + 1;
    ++line_number;
    const std::string where = path + ":" + std::to_string(line_number) + ": ";
    // A CR before the newline (a deck saved with CRLF line ends) is whitespace; anywhere else it is not.
    const std::string_view line = !raw.empty() && raw.back() == '\r' ? raw.substr(0, raw.size() - 1) : raw;
    if (const std::size_t bad = forbidden_control(line); bad != std::string_view::npos) {
      throw InputError(where + "the line holds " + control_name(line[bad]) + " at column " + std::to_string(bad + 1) +
                       ": '" + printable(line) + "'");
    }
    const std::string_view text = trim(strip_comment(raw));
    if (text.empty()) continue;
    const std::string shown = printable(trim(raw));

    if (text.front() == '[') {
      if (text.back() != ']') {
        throw InputError(where + "not a [section], key = value, comment or blank line: '" + shown + "'");
      }
      const std::string name(trim(text.substr(1, text.size() - 2)));
      if (std::find(known_sections.begin(), known_sections.end(), name) == known_sections.end()) {
        throw InputError(where + "unknown section '[" + printable(name) + "]' (did you mean '[" + closest_section(name) +
                    "]'?)");
      }
      section = name;
      continue;
    }

    const std::size_t equals = text.find('=');
    if (equals == std::string_view::npos || trim(text.substr(0, equals)).empty()) {
      throw InputError(where + "not a [section], key = value, comment or blank line: '" + shown + "'");
    }
    const std::string key(trim(text.substr(0, equals)));
    const std::string_view value = trim(text.substr(equals + 1));
    if (section.empty()) {
      throw InputError(where + "key '" + printable(key) + "' comes before any [section] header");
    }
    const std::string full_name = section + "." + key;
    const KeyDef* def = find_key(full_name);
    if (def == nullptr) {
      throw InputError(where + "unknown key '" + printable(full_name) + "' (did you mean '" + closest_key(full_name) +
                       "'?)");
    }
    if (const auto previous = line_of_key.find(full_name); previous != line_of_key.end()) {
      throw InputError(where + "duplicate key '" + full_name + "' (already set on line " +
                  std::to_string(previous->second) + ")");
    }
    if (value.empty()) throw InputError(where + full_name + " has no value");
    line_of_key[full_name] = line_number;
    config.values_[full_name] = check_value(*def, value, where);
    config.explicitly_set_[full_name] = true;
  }

  // The command line comes last, so it wins; a later override of the same key wins over an earlier one.
  const std::string where = "command line: ";
  for (const auto& override_text : overrides) {
    const std::size_t equals = override_text.find('=');
    if (equals == std::string::npos) {
      throw InputError(where + "option '--" + printable(override_text) + "' needs a value (--section.key=value)");
    }
    const std::string key(trim(std::string_view(override_text).substr(0, equals)));
    const std::string_view value = trim(std::string_view(override_text).substr(equals + 1));
    const KeyDef* def = find_key(key);
    if (def == nullptr) {
      throw InputError(where + "unknown option '--" + printable(key) + "' (did you mean '--" + closest_key(key) +
                       "'?)");
    }
    if (value.empty()) throw InputError(where + "option '--" + key + "' has no value");
    // The effective configuration travels as a deck, so a value must be one a deck can hold.
    if (value.find('\n') != std::string_view::npos || strip_comment(value).size() != value.size()) {
      throw InputError(where + "option '--" + key + "': a value cannot contain a newline or ' #'");
    }
    if (const std::size_t bad = forbidden_control(value); bad != std::string_view::npos) {
      throw InputError(where + "option '--" + key + "': the value holds " + control_name(value[bad]) + ": '" +
                       printable(value) + "'");
    }
    config.values_[key] = check_value(*def, value, where);
    config.explicitly_set_[key] = true;
  }
  return config;
}

std::int64_t Config::get_int(std::string_view key) const {
  const auto value = get_int_or_auto(key);
  if (!value) misuse(key, "is 'auto'; read it with get_int_or_auto");
  return *value;
}

std::optional<std::int64_t> Config::get_int_or_auto(std::string_view key) const {
  const KeyDef& def = key_of(key);
  if (def.type != Type::Int) misuse(key, "is a " + type_name(def) + ", not an integer");
  const std::string& text = values_.find(key)->second;
  if (text == "auto") return std::nullopt;
  std::int64_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

double Config::get_float(std::string_view key) const {
  const KeyDef& def = key_of(key);
  if (def.type != Type::Float && def.type != Type::Int) misuse(key, "is a " + type_name(def) + ", not a number");
  const std::string& text = values_.find(key)->second;
  if (text == "auto") misuse(key, "is 'auto'; read it with get_int_or_auto");  // only int keys take auto
  double value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

bool Config::get_bool(std::string_view key) const {
  const KeyDef& def = key_of(key);
  if (def.type != Type::Bool) misuse(key, "is a " + type_name(def) + ", not a bool");
  return values_.find(key)->second == "true";
}

const std::string& Config::get_string(std::string_view key) const {
  key_of(key);
  return values_.find(key)->second;
}

bool Config::is_set(std::string_view key) const {
  key_of(key);
  return explicitly_set_.find(key)->second;
}

std::string Config::to_deck() const {
  std::ostringstream os;
  os << "# mics input deck: every key, defaults included (mics config).\n";
  std::string section;
  for (const auto& def : schema()) {
    const std::string key_section = def.name.substr(0, def.name.find('.'));
    if (key_section != section) {
      section = key_section;
      os << "\n[" << section << "]\n";
    }
    write_key(os, def, values_.find(def.name)->second);
  }
  return os.str();
}

std::string Config::set_keys_deck() const {
  std::ostringstream os;
  std::string section;
  for (const auto& def : schema()) {
    if (!explicitly_set_.find(def.name)->second) continue;
    const std::string key_section = def.name.substr(0, def.name.find('.'));
    if (key_section != section) {
      section = key_section;
      os << "[" << section << "]\n";
    }
    os << def.name.substr(def.name.find('.') + 1) << " = " << values_.find(def.name)->second << "\n";
  }
  return os.str();
}

}  // namespace mics::config
