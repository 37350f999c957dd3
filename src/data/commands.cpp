#include "mics/data/commands.hpp"

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iterator>
#include <span>
#include <sstream>
#include <string_view>

#include "mics/data/markov.hpp"
#include "mics/data/token_shard.hpp"
#include "mics/util/error.hpp"

namespace mics::data {

namespace {

namespace fs = std::filesystem;

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

}  // namespace

void prepare_text(const std::string& text_path, const std::string& out_dir, const ShardOptions& shards,
                  std::ostream& out) {
  const fs::path dir = out_dir;
  std::ifstream in(text_path, std::ios::binary);
  if (!in) throw InputError("text file " + text_path + ": cannot open");
  const std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) throw InputError("text file " + text_path + ": read failed");
  if (bytes.empty()) throw InputError("text file " + text_path + ": empty");
  std::vector<std::uint32_t> tokens(bytes.size());
  for (std::size_t i = 0; i < bytes.size(); ++i) tokens[i] = static_cast<unsigned char>(bytes[i]);

  prepare_output_dir(dir, shards.force);
  write_splits(dir, tokens, shards.val_fraction, shards.shard_tokens, out);
  out << "vocab: 256 (byte-level)\n";
}

void synth_markov(const std::string& out_dir, const SynthOptions& synth, const ShardOptions& shards,
                  std::ostream& out) {
  const fs::path dir = out_dir;
  const MarkovChain chain(synth.vocab, synth.branching, synth.seed);
  // The sample uses a stream apart from the chain's so the two never share random numbers.
  const std::vector<std::uint32_t> corpus = chain.sample(synth.tokens, synth.seed ^ 0x5EED5A3D1E5ull);
  prepare_output_dir(dir, shards.force);
  write_splits(dir, corpus, shards.val_fraction, shards.shard_tokens, out);
  out << "vocab: " << synth.vocab << ", branching: " << synth.branching << ", seed: " << synth.seed << "\n";
  out << "entropy floor: " << std::fixed << std::setprecision(6) << chain.entropy_rate() << " nats/token\n";
}

}  // namespace mics::data
