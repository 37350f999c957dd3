// mics sample: text from a checkpoint or an llm.c model file, on one process (cpu, or cuda when built
// with it), with a key/value cache (model/generate.hpp).
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "commands.hpp"
#include "mics/backends/backend.hpp"
#include "mics/checkpoint/tools.hpp"
#include "mics/data/tokenizer.hpp"
#include "mics/model/generate.hpp"
#include "mics/model/llmc_file.hpp"
#include "mics/util/error.hpp"

namespace mics::cli {

namespace {
constexpr const char* kSampleUsage =
    "usage: mics sample PATH [--prompt TEXT | --prompt-ids 1,2,3] [-n TOKENS] [--temperature T] [--top-k K]\n"
    "                        [--seed S] [--tokenizer FILE] [--device cpu|cuda] [--threads N] [--ids] [--verify]\n"
    "\n"
    "Generates TOKENS tokens (default 64) after the prompt from the model in PATH: a checkpoint (step_<N>\n"
    "directory or its state.h5), a run's checkpoint directory (its `latest`), or an llm.c model file\n"
    "(as written by train.save_final or `mics export --format llmc`). One process, a key/value cache.\n"
    "\n"
    "  --prompt TEXT        byte-level models (vocab <= 256, `mics data prepare`): the text's bytes\n"
    "  --prompt-ids LIST    token ids, comma separated (any vocabulary; GPT-2 BPE encoding is not built in)\n"
    "                       without either: the end-of-text token (GPT-2 vocabularies, or the tokenizer's),\n"
    "                       else a newline\n"
    "  --temperature T      softmax temperature (default 1.0); 0 = greedy (argmax)\n"
    "  --top-k K            sample among the K most likely tokens only (default 0 = all)\n"
    "  --seed S             the same seed gives the same text (default 1337)\n"
    "  --tokenizer FILE     llm.c tokenizer file (gpt2_tokenizer.bin) to decode a GPT-2 vocabulary\n"
    "  --device cpu|cuda    backend (default cpu); --threads N: cpu threads (default: OpenMP's)\n"
    "  --ids                also print the generated token ids\n"
    "  --verify             (greedy only) check that every generated token is the argmax of the plain\n"
    "                       forward pass (no cache) over the whole sequence; exit 1 if one differs\n"
    "\n"
    "Byte-level models print text directly; GPT-2 vocabularies print text with --tokenizer, else the ids.\n";

std::vector<std::int32_t> parse_ids(const std::string& text) {
  std::vector<std::int32_t> ids;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    char* end = nullptr;
    const long value = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || value < 0 || value > 0x7fffffff)
      throw InputError("--prompt-ids: '" + item + "' is not a token id");
    ids.push_back(static_cast<std::int32_t>(value));
  }
  return ids;
}

bool is_llmc_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::int32_t magic = 0;
  return in.read(reinterpret_cast<char*>(&magic), sizeof(magic)) && magic == model::kLlmcModelMagic;
}

}  // namespace

int sample_command(const Args& args) {
  std::vector<std::string> positional;
  std::optional<std::string> prompt, prompt_ids, tokenizer_path;
  int count = 64;
  model::SamplingOptions sampling;
  config::BackendOptions backend_options;
  backend_options.matmul = config::Matmul::fp32;  // generation is tiny: exact fp32 GEMMs on either device
  bool print_ids = false, verify = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const auto value = [&]() -> const std::string& {
      if (i + 1 >= args.size()) throw InputError("mics sample: " + a + " needs a value\n" + kSampleUsage);
      return args[++i];
    };
    const auto number = [&](const std::string& text) {
      char* end = nullptr;
      const double v = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0') throw InputError("mics sample: " + a + " " + text + " is not a number");
      return v;
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kSampleUsage, stdout);
      return kExitOk;
    } else if (a == "--prompt") {
      prompt = value();
    } else if (a == "--prompt-ids") {
      prompt_ids = value();
    } else if (a == "-n" || a == "--tokens") {
      count = static_cast<int>(number(value()));
      if (count < 1) throw InputError("mics sample: -n must be at least 1");
    } else if (a == "--temperature") {
      sampling.temperature = number(value());
    } else if (a == "--top-k") {
      sampling.top_k = static_cast<int>(number(value()));
    } else if (a == "--seed") {
      sampling.seed = static_cast<std::uint64_t>(number(value()));
    } else if (a == "--tokenizer") {
      tokenizer_path = value();
    } else if (a == "--device") {
      const std::string& d = value();
      if (d != "cpu" && d != "cuda") throw InputError("mics sample: --device " + d + " (expected cpu or cuda)");
      backend_options.device = d == "cuda" ? config::Device::cuda : config::Device::cpu;
    } else if (a == "--threads") {
      backend_options.threads = static_cast<int>(number(value()));
    } else if (a == "--ids") {
      print_ids = true;
    } else if (a == "--verify") {
      verify = true;
    } else if (a.rfind("-", 0) == 0) {
      throw InputError("mics sample: unknown option '" + a + "'\n" + kSampleUsage);
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 1) throw InputError(std::string("mics sample: expected one PATH\n") + kSampleUsage);
  if (prompt && prompt_ids) throw InputError("mics sample: give --prompt or --prompt-ids, not both");
  if (verify && sampling.temperature > 0)
    throw InputError("mics sample: --verify checks greedy generation: add --temperature 0");

  // The weights, on the host, one flat buffer per unit.
  const std::string& path = positional[0];
  std::vector<std::vector<float>> units;
  model::GptShape shape;
  if (is_llmc_file(path)) {
    shape = model::read_llmc_header(path);
    const model::ParamLayout layout(shape);
    units.resize(layout.units().size());
    for (std::size_t u = 0; u < units.size(); ++u) units[u].assign(layout.units()[u].numel, 0.0f);
    model::load_llmc_weights(path, layout, [&](int u) { return units[static_cast<std::size_t>(u)].data(); });
  } else {
    shape = checkpoint::read_parameters(path, units);
  }

  std::optional<data::Tokenizer> tokenizer;
  if (tokenizer_path) {
    tokenizer = data::Tokenizer::load(*tokenizer_path);
    if (tokenizer->vocab() < shape.vocab)
      throw InputError("--tokenizer " + *tokenizer_path + " has " + std::to_string(tokenizer->vocab()) +
                       " tokens, the model " + std::to_string(shape.vocab));
  } else if (shape.vocab <= 256) {
    tokenizer = data::Tokenizer::bytes(shape.vocab);
  }

  std::vector<std::int32_t> prompt_tokens;
  if (prompt_ids) {
    prompt_tokens = parse_ids(*prompt_ids);
  } else if (prompt) {
    if (shape.vocab > 256)
      throw InputError("mics sample: --prompt TEXT needs a byte-level model (vocab <= 256); this one has " +
                       std::to_string(shape.vocab) + " tokens: give --prompt-ids");
    for (unsigned char c : *prompt) prompt_tokens.push_back(c);
  } else if (tokenizer && tokenizer->end_of_text()) {
    prompt_tokens = {*tokenizer->end_of_text()};
  } else if (shape.vocab == 50257) {
    prompt_tokens = {50256};
  } else {
    prompt_tokens = {shape.vocab > '\n' ? '\n' : 0};
  }
  if (prompt_tokens.empty()) throw InputError("mics sample: the prompt is empty");
  for (std::int32_t t : prompt_tokens)
    if (t >= shape.vocab)
      throw InputError("mics sample: prompt token " + std::to_string(t) + " is outside the vocabulary [0, " +
                       std::to_string(shape.vocab) + ")");

  std::unique_ptr<backends::Backend> backend = backends::make_backend(backend_options);
  std::vector<backends::Buffer<float>> device_units;
  model::UnitParams params;
  for (const std::vector<float>& u : units) {
    device_units.push_back(backend->alloc<float>(u.size()));
    backend->copy_from_host(device_units.back().data(), u.data(), u.size() * sizeof(float));
    params.push_back(device_units.back().data());
  }
  // The last generated token is never fed: prompt + count - 1 positions.
  const int wanted = static_cast<int>(prompt_tokens.size()) + count - 1;
  const int max_len = std::min(wanted, shape.max_seq_len);
  if (wanted > shape.max_seq_len)
    std::fprintf(stderr, "mics sample: the model takes %d positions: generating %d tokens, not %d\n",
                 shape.max_seq_len, shape.max_seq_len - static_cast<int>(prompt_tokens.size()) + 1, count);
  model::Generator generator(shape, *backend, params, max_len);
  model::TokenSampler sampler(sampling);

  if (tokenizer) std::cout << tokenizer->decode(prompt_tokens) << std::flush;
  const std::vector<std::int32_t> generated =
      model::generate(generator, prompt_tokens, count, sampler, [&](std::int32_t token) {
        if (tokenizer) std::cout << tokenizer->decode(token) << std::flush;
      });
  if (tokenizer) std::cout << '\n';
  if (print_ids || !tokenizer) {
    std::cout << "ids:";
    for (std::int32_t t : generated) std::cout << ' ' << t;
    std::cout << '\n';
  }

  if (verify) {
    std::vector<std::int32_t> sequence = prompt_tokens;
    sequence.insert(sequence.end(), generated.begin(), generated.end() - 1);
    const std::vector<float> logits = model::forward_logits(shape, *backend, params, sequence);
    const std::size_t V = static_cast<std::size_t>(shape.vocab);
    for (std::size_t i = 0; i < generated.size(); ++i) {
      const std::size_t position = prompt_tokens.size() - 1 + i;
      const std::int32_t expected =
          model::argmax(std::span<const float>(logits).subspan(position * V, V));
      if (expected != generated[i]) {
        std::fprintf(stderr,
                     "verify: FAILED at generated token %zu (position %zu): the cache gave %d, the full forward's "
                     "argmax is %d\n",
                     i, position, generated[i], expected);
        return kExitFailure;
      }
    }
    std::fprintf(stderr, "verify: all %zu generated tokens equal the argmax of the plain forward pass\n",
                 generated.size());
  }
  return kExitOk;
}

}  // namespace mics::cli
