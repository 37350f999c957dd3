#include "mics/data/commands.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iterator>
#include <map>
#include <set>
#include <span>
#include <sstream>
#include <string_view>

#include "mics/data/markov.hpp"
#include "mics/data/token_shard.hpp"
#include "mics/util/error.hpp"

namespace mics::data {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kUsage =
    "usage: mics data <command> ...\n"
    "\n"
    "  prepare TEXT OUTDIR [options]   tokenize a text file at byte level (vocab 256: token = byte)\n"
    "  synth OUTDIR [options]          sample a corpus from a seeded random order-1 Markov chain and\n"
    "                                  print its entropy rate, the loss a perfect model reaches\n"
    "\n"
    "Both write OUTDIR/train_000000.bin ... and OUTDIR/val_000000.bin ... (llm.c token shards).\n"
    "\n"
    "options:\n"
    "  --val-fraction F   share of the tokens (the tail) kept for validation, 0 <= F < 1 (default 0.1)\n"
    "  --shard-tokens N   tokens per shard file (default 100000000)\n"
    "  --force            replace token shards already in OUTDIR\n"
    "synth only:\n"
    "  --tokens N         tokens to sample, train and val together (default 1000000)\n"
    "  --vocab V          states of the chain = vocabulary size (default 256)\n"
    "  --branching K      successors per state (default 4)\n"
    "  --seed S           seed of the chain and the sample (default 1234)\n";

// Positional arguments and --name value (or --name=value) options of one subcommand.
struct ParsedArgs {
  std::vector<std::string> positional;
  std::map<std::string, std::string, std::less<>> options;
  bool force = false;
};

ParsedArgs parse_args(const std::vector<std::string>& args, std::string_view command,
                      const std::set<std::string, std::less<>>& known) {
  ParsedArgs parsed;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--force") {
      parsed.force = true;
    } else if (arg.starts_with("--")) {
      std::string name = arg.substr(2), value;
      if (const auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name.resize(eq);
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        throw InputError("mics data " + std::string(command) + ": option --" + name + " needs a value");
      }
      if (!known.contains(name))
        throw InputError("mics data " + std::string(command) + ": unknown option --" + name + " (see mics data --help)");
      parsed.options[name] = value;
    } else {
      parsed.positional.push_back(arg);
    }
  }
  return parsed;
}

template <typename Number>
Number option_or(const ParsedArgs& parsed, std::string_view name, Number fallback, Number min, Number max) {
  const auto it = parsed.options.find(name);
  if (it == parsed.options.end()) return fallback;
  const std::string& text = it->second;
  Number value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size())
    throw InputError("option --" + std::string(name) + ": '" + text + "' is not a number");
  if (value < min || value > max) {
    std::ostringstream message;
    message << "option --" << name << ": " << text << " is outside [" << min << ", " << max << "]";
    throw InputError(message.str());
  }
  return value;
}

// Makes OUTDIR and refuses to mix a new data set with shards already there (a glob would read both).
void prepare_output_dir(const fs::path& dir, bool force) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw InputError("output directory " + dir.string() + ": cannot create: " + ec.message());
  std::vector<fs::path> existing;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if ((name.starts_with("train_") || name.starts_with("val_")) && name.ends_with(".bin"))
      existing.push_back(entry.path());
  }
  if (existing.empty()) return;
  if (!force)
    throw InputError("output directory " + dir.string() + " already holds token shards (" +
                existing.front().filename().string() + "); pass --force to replace them");
  for (const fs::path& path : existing) fs::remove(path);
}

// Writes the train head and val tail of the token stream; prints what went where.
void write_splits(const fs::path& dir, const std::vector<std::uint32_t>& tokens, double val_fraction,
                  std::size_t shard_tokens, std::ostream& out) {
  const auto val_tokens = static_cast<std::size_t>(std::llround(val_fraction * static_cast<double>(tokens.size())));
  if (val_fraction > 0.0 && val_tokens == 0)
    throw InputError("output directory " + dir.string() + ": " + std::to_string(tokens.size()) +
                " tokens leave none for a validation fraction of " + std::to_string(val_fraction));
  const std::size_t train_tokens = tokens.size() - val_tokens;
  if (train_tokens == 0) throw InputError("output directory " + dir.string() + ": no tokens left for training");
  const std::span<const std::uint32_t> all(tokens);
  const auto train = write_token_shards((dir / "train").string(), all.first(train_tokens), shard_tokens);
  out << "wrote " << train_tokens << " train tokens to " << (dir / "train_*.bin").string() << " (" << train.size()
      << " shard" << (train.size() == 1 ? "" : "s") << ")\n";
  if (val_tokens > 0) {
    const auto val = write_token_shards((dir / "val").string(), all.subspan(train_tokens), shard_tokens);
    out << "wrote " << val_tokens << " val tokens to " << (dir / "val_*.bin").string() << " (" << val.size()
        << " shard" << (val.size() == 1 ? "" : "s") << ")\n";
  }
}

int prepare_command(const std::vector<std::string>& args, std::ostream& out) {
  const ParsedArgs parsed = parse_args(args, "prepare", {"val-fraction", "shard-tokens"});
  if (parsed.positional.size() != 2)
    throw InputError("mics data prepare: expected TEXT OUTDIR, got " + std::to_string(parsed.positional.size()) +
                " arguments (see mics data --help)");
  const std::string& text_path = parsed.positional[0];
  const fs::path dir = parsed.positional[1];
  const double val_fraction = option_or(parsed, "val-fraction", 0.1, 0.0, 0.999999);
  const auto shard_tokens = option_or<std::size_t>(parsed, "shard-tokens", 100000000, 1, INT32_MAX);

  std::ifstream in(text_path, std::ios::binary);
  if (!in) throw InputError("text file " + text_path + ": cannot open");
  const std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) throw InputError("text file " + text_path + ": read failed");
  if (bytes.empty()) throw InputError("text file " + text_path + ": empty");
  std::vector<std::uint32_t> tokens(bytes.size());
  for (std::size_t i = 0; i < bytes.size(); ++i) tokens[i] = static_cast<unsigned char>(bytes[i]);

  prepare_output_dir(dir, parsed.force);
  write_splits(dir, tokens, val_fraction, shard_tokens, out);
  out << "vocab: 256 (byte-level)\n";
  return kExitOk;
}

int synth_command(const std::vector<std::string>& args, std::ostream& out) {
  const ParsedArgs parsed =
      parse_args(args, "synth", {"tokens", "vocab", "branching", "seed", "val-fraction", "shard-tokens"});
  if (parsed.positional.size() != 1)
    throw InputError("mics data synth: expected OUTDIR, got " + std::to_string(parsed.positional.size()) +
                " arguments (see mics data --help)");
  const fs::path dir = parsed.positional[0];
  const auto tokens = option_or<std::size_t>(parsed, "tokens", 1000000, 2, std::size_t{1} << 36);
  const auto vocab = option_or<std::uint32_t>(parsed, "vocab", 256, 1, 1u << 24);
  const auto branching = option_or<std::uint32_t>(parsed, "branching", 4, 1, vocab);
  const auto seed = option_or<std::uint64_t>(parsed, "seed", 1234, 0, UINT64_MAX);
  const double val_fraction = option_or(parsed, "val-fraction", 0.1, 0.0, 0.999999);
  const auto shard_tokens = option_or<std::size_t>(parsed, "shard-tokens", 100000000, 1, INT32_MAX);

  const MarkovChain chain(vocab, branching, seed);
  // The sample uses a stream apart from the chain's so the two never share random numbers.
  const std::vector<std::uint32_t> corpus = chain.sample(tokens, seed ^ 0x5EED5A3D1E5ull);
  prepare_output_dir(dir, parsed.force);
  write_splits(dir, corpus, val_fraction, shard_tokens, out);
  out << "vocab: " << vocab << ", branching: " << branching << ", seed: " << seed << "\n";
  out << "entropy floor: " << std::fixed << std::setprecision(6) << chain.entropy_rate() << " nats/token\n";
  return kExitOk;
}

}  // namespace

int data_command(const std::vector<std::string>& args, std::ostream& out) {
  if (args.empty()) {
    out << kUsage;
    return kExitUsage;
  }
  const std::string& command = args[0];
  for (const std::string& arg : args) {
    if (arg == "--help" || arg == "-h") {
      out << kUsage;
      return kExitOk;
    }
  }
  if (command == "prepare") return prepare_command(args, out);
  if (command == "synth") return synth_command(args, out);
  throw InputError("mics data: unknown command '" + command + "' (expected prepare or synth; see mics data --help)");
}

}  // namespace mics::data
