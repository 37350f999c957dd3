#include "command_line.hpp"

#include <algorithm>
#include <sstream>

#include "mics/util/error.hpp"

namespace mics::cli {

namespace {
constexpr const char* kPositionalKey = "mics-positional";  // hidden: collects the positional arguments
constexpr unsigned kLineLength = 110;

// --section.key=value (or --section.key value, refused later by the deck): a deck override.
bool is_override(const std::string& token) {
  if (token.rfind("--", 0) != 0) return false;
  const std::size_t dot = token.find('.');
  return dot != std::string::npos && dot < token.find('=');
}
}  // namespace

CommandSpec::CommandSpec(std::string command, std::string synopsis, std::string description)
    : command_(std::move(command)),
      synopsis_(std::move(synopsis)),
      description_(std::move(description)),
      options_("options", kLineLength, kLineLength / 2) {
  options_.add_options()("help,h", "print this help and exit");
}

CommandSpec& CommandSpec::positional(std::string name, std::string help, bool required) {
  positionals_.push_back({std::move(name), std::move(help), required});
  return *this;
}

CommandSpec& CommandSpec::takes_deck() {
  deck_ = true;
  options_.add_options()("deck", po::value<std::vector<std::string>>()->value_name("FILE"),
                         "the input deck (INI); every key can be overridden as --section.key=value");
  return *this;
}

CommandSpec& CommandSpec::epilog(std::string text) {
  epilog_ = std::move(text);
  return *this;
}

std::string CommandSpec::usage() const {
  std::ostringstream out;
  out << "usage: " << synopsis_ << "\n";
  if (!description_.empty()) out << "\n" << description_ << "\n";
  if (!positionals_.empty()) {
    std::size_t width = 0;
    for (const Positional& p : positionals_) width = std::max(width, p.name.size());
    out << "\narguments:\n";
    for (const Positional& p : positionals_) {
      out << "  " << p.name << std::string(width - p.name.size() + 3, ' ');
      // Continuation lines of the help keep its column.
      std::string help = p.help;
      for (std::size_t at = help.find('\n'); at != std::string::npos; at = help.find('\n', at + 1))
        help.insert(at + 1, std::string(width + 5, ' '));
      out << help << (p.required ? "" : " (optional)") << "\n";
    }
  }
  out << "\n" << options_;
  if (deck_) out << "  --section.key=value" << std::string(8, ' ') << "override one key of the deck (`mics config` lists them)\n";
  if (!epilog_.empty()) out << "\n" << epilog_ << "\n";
  return out.str();
}

void CommandSpec::fail(const std::string& what) const {
  throw InputError(command_ + ": " + what + "\n\n" + usage());
}

ParsedCommand CommandSpec::parse(const Args& args) const {
  ParsedCommand parsed;
  Args rest;
  for (const std::string& token : args) {
    if (deck_ && is_override(token)) parsed.overrides.push_back(token.substr(2));
    else rest.push_back(token);
  }
  po::options_description all(options_);
  all.add_options()(kPositionalKey, po::value<std::vector<std::string>>());
  po::positional_options_description positional;
  positional.add(kPositionalKey, -1);
  try {
    po::store(po::command_line_parser(rest)
                  .options(all)
                  .positional(positional)
                  .style(po::command_line_style::default_style & ~po::command_line_style::allow_guessing)
                  .run(),
              parsed.values);
    parsed.help = parsed.values.count("help") > 0;
    if (parsed.help) return parsed;
    po::notify(parsed.values);  // required options, defaults
  } catch (const po::unknown_option& e) {
    fail("unknown option '" + e.get_option_name() + "'");
  } catch (const po::error& e) {
    fail(e.what());
  }
  if (parsed.values.count(kPositionalKey)) parsed.positional = parsed.values[kPositionalKey].as<Args>();
  if (parsed.values.count("deck")) {
    const Args& decks = parsed.values["deck"].as<Args>();
    if (decks.size() > 1)
      fail("--deck is given twice ('" + decks[0] + "' and '" + decks[1] +
           "'): give one deck and override its keys with --section.key=value");
    parsed.deck = decks.front();
  }
  std::size_t required = 0;
  for (const Positional& p : positionals_) required += p.required ? 1 : 0;
  if (parsed.positional.size() > positionals_.size())
    fail("unexpected argument '" + parsed.positional[positionals_.size()] + "'");
  if (parsed.positional.size() < required) {
    std::string names;
    for (const Positional& p : positionals_)
      if (p.required) names += (names.empty() ? "" : " ") + p.name;
    fail("expected " + names + ", got " + std::to_string(parsed.positional.size()) + " argument" +
         (parsed.positional.size() == 1 ? "" : "s"));
  }
  return parsed;
}

}  // namespace mics::cli
