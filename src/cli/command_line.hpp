// The one command-line parser of every subcommand: each declares its table once (Boost.Program_options
// options, positional arguments, whether it reads a deck), and both parse() and usage() (its --help)
// come from that table.
#pragma once
#include <boost/program_options.hpp>
#include <optional>
#include <string>
#include <vector>

#include "commands.hpp"

namespace mics::cli {

namespace po = boost::program_options;

struct ParsedCommand {
  po::variables_map values;
  std::vector<std::string> positional;  // in order
  std::optional<std::string> deck;      // --deck FILE (commands that take a deck)
  std::vector<std::string> overrides;   // "section.key=value", from --section.key=value
  bool help = false;                    // --help / -h: nothing else was checked

  bool has(const std::string& name) const { return values.count(name) > 0 && !values[name].defaulted(); }
  template <class T>
  T get(const std::string& name) const {
    return values[name].as<T>();
  }
};

class CommandSpec {
 public:
  // command: "mics export"; synopsis: the usage lines after "usage: " (the first names the command).
  CommandSpec(std::string command, std::string synopsis, std::string description = {});

  // spec.options()("format", po::value<std::string>()->value_name("FMT")->required(), "help text")
  po::options_description_easy_init options() { return options_.add_options(); }
  // A positional argument (in order); the optional ones come last.
  CommandSpec& positional(std::string name, std::string help, bool required = true);
  // --deck FILE and the deck overrides --section.key=value.
  CommandSpec& takes_deck();
  // Text printed after the options (exit statuses, examples).
  CommandSpec& epilog(std::string text);

  const std::string& command() const { return command_; }
  std::string usage() const;
  // Throws InputError naming the option or argument at fault, followed by usage(). With --help it
  // returns at once (help = true) without checking required options or arguments.
  ParsedCommand parse(const Args& args) const;
  // An InputError about this command's arguments: "<command>: <what>", then the usage.
  [[noreturn]] void fail(const std::string& what) const;

 private:
  struct Positional {
    std::string name, help;
    bool required;
  };
  std::string command_, synopsis_, description_, epilog_;
  po::options_description options_;
  std::vector<Positional> positionals_;
  bool deck_ = false;
};

}  // namespace mics::cli
