// Deck parsing, command-line overrides, every error message, and the to_deck round trip.
#include "catch.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "mics/config/config.hpp"
#include "mics/util/error.hpp"
#include "parse_error.hpp"

using mics::config::Config;

namespace {

using mics::test::parse_error;

std::string override_error(const std::string& override_text) { return parse_error("", {override_text}); }

}  // namespace

TEST_CASE("schema: every key is well formed and sections are contiguous", "[config]") {
  const auto& keys = mics::config::schema();
  REQUIRE(keys.size() > 30);
  std::vector<std::string> seen_sections;
  for (const auto& def : keys) {
    INFO(def.name);
    const auto dot = def.name.find('.');
    REQUIRE(dot != std::string::npos);
    CHECK_FALSE(def.help.empty());
    const std::string section = def.name.substr(0, dot);
    if (seen_sections.empty() || seen_sections.back() != section) {
      CHECK(std::find(seen_sections.begin(), seen_sections.end(), section) == seen_sections.end());
      seen_sections.push_back(section);
    }
    CHECK(mics::config::find_key(def.name) == &def);
  }
  CHECK(mics::config::sections() == seen_sections);
  // Every default passes its own checks: parsing an empty deck gives the defaults.
  const Config defaults = Config::parse("", "", {});
  for (const auto& def : keys) CHECK(defaults.get_string(def.name) == def.default_value);
}

TEST_CASE("defaults and typed getters", "[config]") {
  const Config config = Config::parse("", "", {});
  CHECK(config.get_string("run.name") == "mics");
  CHECK(config.get_int("run.seed") == 1337);
  CHECK(config.get_string("log.level") == "info");
  CHECK_FALSE(config.get_bool("log.all_ranks"));
  CHECK(config.get_int_or_auto("parallel.partition_size") == std::nullopt);
  CHECK(config.get_int_or_auto("train.steps") == 100);
  CHECK(config.get_float("train.lr") == Approx(6e-4));
  CHECK(config.get_float("train.eps") == Approx(1e-8));
  CHECK(config.get_int("checkpoint.keep") == 2);
  CHECK(config.get_string("train.resume") == "auto");
  CHECK_FALSE(config.is_set("train.steps"));
  // Reading a key the wrong way is a bug in the caller, not a user error.
  CHECK_THROWS_AS(config.get_int("train.lr"), std::logic_error);
  CHECK_THROWS_AS(config.get_int("parallel.partition_size"), std::logic_error);
  CHECK_THROWS_AS(config.get_bool("train.steps"), std::logic_error);
  CHECK_THROWS_AS(config.get_string("train.nope"), std::logic_error);
}

TEST_CASE("deck: sections, keys, comments, blank lines", "[config]") {
  const std::string deck =
      "# a whole-line comment\n"
      "\n"
      "   [train]   # trailing comment after a section\n"
      "steps = 7\n"
      "lr=3e-4   # trailing comment\n"
      "\t# indented comment\n"
      "[model]\n"
      "preset = gpt2-124m\n"
      "init = llmc:weights#3.bin\n"  // '#' not after whitespace belongs to the value
      "layers = auto\n"
      "[log]\r\n"
      "all_ranks = Yes\r\n"
      "file = logs/rank%r.log";  // no final newline
  const Config config = Config::parse(deck, "inputs/x.ini", {});
  CHECK(config.get_int("train.steps") == 7);
  CHECK(config.get_float("train.lr") == Approx(3e-4));
  CHECK(config.get_string("model.preset") == "gpt2-124m");
  CHECK(config.get_string("model.init") == "llmc:weights#3.bin");
  CHECK(config.get_int_or_auto("model.layers") == std::nullopt);
  CHECK(config.is_set("model.layers"));
  CHECK(config.get_bool("log.all_ranks"));
  CHECK(config.get_string("log.file") == "logs/rank%r.log");
  CHECK(config.is_set("train.steps"));
  CHECK_FALSE(config.is_set("train.micro_batch"));
  CHECK(config.get_int("train.micro_batch") == 4);
}

TEST_CASE("bool spellings", "[config]") {
  for (const std::string word : {"true", "yes", "on", "1", "TRUE", "On"}) {
    CHECK(Config::parse("", "", {"log.all_ranks=" + word}).get_bool("log.all_ranks"));
  }
  for (const std::string word : {"false", "no", "off", "0", "False"}) {
    CHECK_FALSE(Config::parse("[log]\nall_ranks = true\n", "", {"log.all_ranks=" + word}).get_bool("log.all_ranks"));
  }
}

TEST_CASE("command-line overrides win over the deck", "[config]") {
  const std::string deck = "[train]\nsteps = 7\nlr = 1e-3\n";
  const Config config =
      Config::parse(deck, "inputs/x.ini", {"train.steps=9", "model.layers=3", "train.steps=11"});
  CHECK(config.get_int("train.steps") == 11);  // the last override wins
  CHECK(config.get_float("train.lr") == Approx(1e-3));
  CHECK(config.get_int_or_auto("model.layers") == 3);
  CHECK(config.is_set("model.layers"));
  // A value may itself contain '='.
  CHECK(Config::parse("", "", {"run.name=a=b"}).get_string("run.name") == "a=b");
}

TEST_CASE("deck errors name the file, line, key and a suggestion", "[config]") {
  CHECK(parse_error("[train]\nstpes = 3\n") ==
        "inputs/x.ini:2: unknown key 'train.stpes' (did you mean 'train.steps'?)");
  CHECK(parse_error("[train]\nsteps = 3\n[trian]\n") ==
        "inputs/x.ini:3: unknown section '[trian]' (did you mean '[train]'?)");
  CHECK(parse_error("# deck\nsteps = 3\n") == "inputs/x.ini:2: key 'steps' comes before any [section] header");
  CHECK(parse_error("[train]\nsteps 3\n") ==
        "inputs/x.ini:2: not a [section], key = value, comment or blank line: 'steps 3'");
  CHECK(parse_error("[train\n") ==
        "inputs/x.ini:1: not a [section], key = value, comment or blank line: '[train'");
  CHECK(parse_error("[train]\n= 3\n") ==
        "inputs/x.ini:2: not a [section], key = value, comment or blank line: '= 3'");
  CHECK(parse_error("[train]\nsteps = 3\nlr = 1e-3\nsteps = 4\n") ==
        "inputs/x.ini:4: duplicate key 'train.steps' (already set on line 2)");
  CHECK(parse_error("[train]\nsteps =   # nothing\n") == "inputs/x.ini:2: train.steps has no value");
}

TEST_CASE("bad types and out-of-range values name the key and the value", "[config]") {
  CHECK(parse_error("\n\n[train]\nsteps = -3\n") ==
        "inputs/x.ini:4: train.steps = -3 is out of range (must be >= 1 and <= 2147483647)");
  CHECK(parse_error("[train]\nlr = abc\n") == "inputs/x.ini:2: train.lr = abc is not a number");
  CHECK(parse_error("[train]\nsteps = 1.5\n") == "inputs/x.ini:2: train.steps = 1.5 is not an integer");
  CHECK(parse_error("[train]\nsteps = 10abc\n") == "inputs/x.ini:2: train.steps = 10abc is not an integer");
  CHECK(parse_error("[train]\nsteps = 99999999999999999999\n") ==
        "inputs/x.ini:2: train.steps = 99999999999999999999 is out of range (too large)");
  CHECK(parse_error("[train]\nlr = 0\n") == "inputs/x.ini:2: train.lr = 0 is out of range (must be > 0 and <= 3.40282e+38)");
  CHECK(parse_error("[train]\nlr = inf\n") == "inputs/x.ini:2: train.lr = inf is not a finite number");
  CHECK(parse_error("[train]\nbeta1 = 1\n") ==
        "inputs/x.ini:2: train.beta1 = 1 is out of range (must be >= 0 and < 1)");
  CHECK(parse_error("[train]\nmin_lr_ratio = 1.5\n") ==
        "inputs/x.ini:2: train.min_lr_ratio = 1.5 is out of range (must be >= 0 and <= 1)");
  CHECK(parse_error("[log]\nall_ranks = maybe\n") ==
        "inputs/x.ini:2: log.all_ranks = maybe is not a boolean (true/false, yes/no, on/off, 1/0)");
  CHECK(parse_error("[log]\nlevel = verbose\n") ==
        "inputs/x.ini:2: log.level = verbose is not one of trace|debug|info|warning|error");
  CHECK(parse_error("[parallel]\nstrategy = auto\n") ==
        "inputs/x.ini:2: parallel.strategy = auto is not one of mics|zero3|ddp");
  // "auto" only where the key allows it.
  CHECK(parse_error("[train]\nsteps = auto\n") == "inputs/x.ini:2: train.steps = auto is not an integer");
  CHECK(parse_error("[model]\nlayers = many\n") ==
        "inputs/x.ini:2: model.layers = many is not an integer or 'auto'");
  CHECK(parse_error("[model]\nlayers = 0\n") == "inputs/x.ini:2: model.layers = 0 is out of range (must be >= 1 and <= 2147483647)");
}

TEST_CASE("command-line errors name the option", "[config]") {
  CHECK(override_error("train.stpes=3") == "command line: unknown option '--train.stpes' (did you mean '--train.steps'?)");
  CHECK(override_error("trian.steps=3") == "command line: unknown option '--trian.steps' (did you mean '--train.steps'?)");
  CHECK(override_error("train.steps") == "command line: option '--train.steps' needs a value (--section.key=value)");
  CHECK(override_error("train.steps=") == "command line: option '--train.steps' has no value");
  CHECK(override_error("train.steps=-3") == "command line: train.steps = -3 is out of range (must be >= 1 and <= 2147483647)");
  CHECK(override_error("train.lr=abc") == "command line: train.lr = abc is not a number");
  CHECK(override_error("run.name=a #b") ==
        "command line: option '--run.name': a value cannot contain a newline or ' #'");
}

TEST_CASE("closest key and section", "[config]") {
  CHECK(mics::config::closest_key("train.stpes") == "train.steps");
  CHECK(mics::config::closest_key("checkpoint.evry_steps") == "checkpoint.every_steps");
  CHECK(mics::config::closest_key("model.layer") == "model.layers");
  CHECK(mics::config::closest_section("chekpoint") == "checkpoint");
  CHECK(mics::config::closest_section("paralel") == "parallel");
}

TEST_CASE("to_deck prints every key with its help and parses to the same configuration", "[config]") {
  const Config config = Config::parse("[train]\nsteps = 12\nlr = 2.5e-4\n[log]\nall_ranks = on\n", "inputs/x.ini",
                                      {"model.layers=2", "log.file=logs/%r.log", "model.init=llmc:a b.bin"});
  const std::string deck = config.to_deck();
  for (const auto& def : mics::config::schema()) {
    const std::string key = def.name.substr(def.name.find('.') + 1);
    INFO(def.name);
    CHECK(deck.find("# " + def.help) != std::string::npos);
    CHECK(deck.find("\n" + key + " = ") + deck.find("\n# " + key + " =") != 2 * std::string::npos);
  }
  CHECK(deck.find("\nsteps = 12\n") != std::string::npos);
  CHECK(deck.find("\nall_ranks = true\n") != std::string::npos);

  const Config again = Config::parse(deck, "effective.ini", {});
  CHECK(again.values() == config.values());
  CHECK(again.to_deck() == deck);
  // The defaults alone round-trip too (log.file is empty there and stays commented).
  const Config defaults = Config::parse("", "", {});
  CHECK(Config::parse(defaults.to_deck(), "defaults.ini", {}).values() == defaults.values());
}

TEST_CASE("set_keys_deck carries exactly the keys that were set", "[config]") {
  const Config config = Config::parse("[train]\nsteps = 12\n", "inputs/x.ini", {"model.layers=auto", "log.level=debug"});
  const Config again = Config::parse(config.set_keys_deck(), "effective deck", {});
  CHECK(again.values() == config.values());
  for (const auto& def : mics::config::schema()) {
    INFO(def.name);
    CHECK(again.is_set(def.name) == config.is_set(def.name));
  }
  CHECK(again.is_set("model.layers"));
  CHECK_FALSE(again.is_set("train.lr"));
}

TEST_CASE("every example deck in inputs/ parses", "[config]") {
  const std::filesystem::path inputs = std::filesystem::path(MICS_SOURCE_DIR) / "inputs";
  REQUIRE(std::filesystem::is_directory(inputs));
  int decks = 0;
  for (const auto& entry : std::filesystem::directory_iterator(inputs)) {
    if (entry.path().extension() != ".ini") continue;
    INFO(entry.path().string());
    std::ifstream in(entry.path());
    std::ostringstream text;
    text << in.rdbuf();
    const Config config = Config::parse(text.str(), entry.path().string(), {});
    CHECK(Config::parse(config.to_deck(), "round trip", {}).values() == config.values());
    ++decks;
  }
  CHECK(decks >= 2);
}
