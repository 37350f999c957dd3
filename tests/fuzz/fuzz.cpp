// A seeded mutation fuzzer for the readers of untrusted input: the deck parser, the token-shard reader,
// the llm.c model reader and the checkpoint tools (inspect, verify, export). Each round mutates a seed
// (bit flips, byte changes, insertions, deletions, truncation, splices of 4-byte integers at header
// positions), hands it to the reader, and accepts only success or a mics::Error: anything else (a crash,
// an exception of another type, a sanitizer report) stops the run with the input saved. Built with
// AddressSanitizer and UBSan by `make fuzz` (not part of `make test`).
//   mics_fuzz TARGET SEED_FILE SECONDS OUT_DIR      TARGET: deck | shard | llmc | checkpoint | piece
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <typeinfo>
#include <string>
#include <vector>

#include "mics/checkpoint/tools.hpp"
#include "mics/config/config.hpp"
#include "mics/data/token_shard.hpp"
#include "mics/model/gpt.hpp"
#include "mics/model/llmc_file.hpp"
#include "mics/util/error.hpp"

namespace fs = std::filesystem;
using Bytes = std::vector<unsigned char>;

namespace {

Bytes read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

void write_file(const fs::path& path, const Bytes& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

// One to four mutations of `seed`. Header integers (the first 1 KiB holds the llm.c headers) are a
// favourite target: sizes and counts are where readers trust the file.
Bytes mutate(const Bytes& seed, std::mt19937_64& rng) {
  Bytes data = seed;
  const int rounds = 1 + static_cast<int>(rng() % 4);
  for (int r = 0; r < rounds; ++r) {
    if (data.empty()) data.push_back(0);
    const std::size_t at = rng() % data.size();
    switch (rng() % 7) {
      case 0: data[at] ^= static_cast<unsigned char>(1u << (rng() % 8)); break;
      case 1: data[at] = static_cast<unsigned char>(rng()); break;
      case 2: data.insert(data.begin() + static_cast<std::ptrdiff_t>(at), static_cast<unsigned char>(rng())); break;
      case 3: data.erase(data.begin() + static_cast<std::ptrdiff_t>(at)); break;
      case 4: data.resize(rng() % (data.size() + 1)); break;
      case 5: {  // an interesting 32-bit value at a 4-byte aligned place of the first KiB
        static const std::uint32_t values[] = {0, 1, 2, 3, 7, 255, 256, 1023, 1024, 0x7fffffff, 0x80000000u,
                                               0xffffffffu, 20240326, 20240520, 20240801, 50257, 50304};
        const std::size_t pos = (rng() % std::min<std::size_t>(256, data.size() / 4 + 1)) * 4;
        const std::uint32_t v = values[rng() % (sizeof values / sizeof values[0])];
        if (pos + 4 <= data.size())
          for (int b = 0; b < 4; ++b) data[pos + static_cast<std::size_t>(b)] = static_cast<unsigned char>(v >> (8 * b));
        break;
      }
      case 6: {  // duplicate a slice
        const std::size_t len = std::min<std::size_t>(rng() % 64 + 1, data.size() - at);
        data.insert(data.begin() + static_cast<std::ptrdiff_t>(rng() % data.size()), data.begin() + static_cast<std::ptrdiff_t>(at),
                    data.begin() + static_cast<std::ptrdiff_t>(at + len));
        break;
      }
    }
  }
  return data;
}

void run_target(const std::string& target, const fs::path& input, const fs::path& work) {
  if (target == "deck") {
    const Bytes data = read_file(input);
    (void)mics::config::Config::parse(std::string(data.begin(), data.end()), input.string(), {});
  } else if (target == "shard") {
    mics::data::TokenShard shard(input.string());
    std::vector<std::int32_t> out(std::min<std::size_t>(shard.size(), 4096));
    if (!out.empty()) shard.copy(0, out.size(), out.data());
    shard.check_vocab(50304);
    for (std::size_t i = 0; i < shard.size(); i += 997) (void)shard.token(i);
  } else if (target == "llmc") {
    const mics::model::GptShape shape = mics::model::read_llmc_header(input.string());
    mics::model::validate_shape(shape);
    if (mics::model::ParamLayout(shape).total_numel() > (std::size_t{1} << 26)) return;  // not a reader's problem
    const mics::model::ParamLayout layout(shape);
    std::vector<std::vector<float>> units(layout.units().size());
    for (std::size_t u = 0; u < units.size(); ++u) units[u].resize(layout.units()[u].numel);
    mics::model::load_llmc_weights(input.string(), layout,
                                   [&units](int unit) { return units[static_cast<std::size_t>(unit)].data(); });
  } else if (target == "checkpoint" || target == "piece") {
    // checkpoint: the index file mutated, the rank files beside it intact; piece: rank 0's file mutated,
    // read through the intact index (run.sh puts the seed checkpoint's other files in the output folder).
    const fs::path index = target == "checkpoint" ? input : work / "state.h5";
    std::ostringstream sink;
    mics::checkpoint::inspect(index, sink);
    (void)mics::checkpoint::verify(index, sink);
    mics::checkpoint::export_parameters(index, mics::checkpoint::ExportFormat::llmc, work / "out.bin");
    mics::checkpoint::export_parameters(index, mics::checkpoint::ExportFormat::safetensors, work / "out.safetensors");
  } else {
    throw std::invalid_argument("unknown target " + target);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: mics_fuzz deck|shard|llmc|checkpoint|piece SEED_FILE SECONDS OUT_DIR\n");
    return 2;
  }
  const std::string target = argv[1];
  const Bytes seed = read_file(argv[2]);
  const double seconds = std::stod(argv[3]);
  const fs::path out = argv[4];
  fs::create_directories(out);
  const fs::path input = out / (target == "checkpoint" ? "state.h5" : target == "piece" ? "shard_00000.h5" : "input.bin");
  std::mt19937_64 rng(static_cast<std::uint64_t>(::getpid()));
  const auto start = std::chrono::steady_clock::now();
  long runs = 0, rejected = 0;
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds) {
    const Bytes data = runs == 0 ? seed : mutate(seed, rng);
    write_file(input, data);
    write_file(out / "last_input", data);  // what a crash leaves behind
    try {
      run_target(target, input, out);
    } catch (const mics::Error&) {
      ++rejected;  // a clear refusal is the expected answer to a broken input
    } catch (const std::exception& e) {
      write_file(out / "crash_input", data);
      std::fprintf(stderr, "mics_fuzz %s: run %ld: a %s escaped (not a mics::Error): %s; input saved to %s\n",
                   target.c_str(), runs, typeid(e).name(), e.what(), (out / "crash_input").c_str());
      return 1;
    }
    ++runs;
  }
  std::printf("mics_fuzz %s: %ld inputs in %.0f s, %ld refused with a mics::Error, no crash\n", target.c_str(), runs,
              seconds, rejected);
  return 0;
}
