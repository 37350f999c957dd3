// mics sample: text from a checkpoint or an llm.c model file, on one process (cpu, or cuda when built
// with it), with a key/value cache (model/generate.hpp).
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "command_line.hpp"
#include "commands.hpp"
#include "mics/backends/backend.hpp"
#include "mics/checkpoint/tools.hpp"
#include "mics/data/tokenizer.hpp"
#include "mics/model/generate.hpp"
#include "mics/model/llmc_file.hpp"
#include "mics/util/error.hpp"

namespace mics::cli {

namespace {
CommandSpec sample_spec() {
  CommandSpec spec(
      "mics sample",
      "mics sample PATH [--prompt TEXT | --prompt-ids 1,2,3] [-n TOKENS] [--temperature T] [--top-k K]\n"
      "                        [--seed S] [--tokenizer FILE] [--device cpu|cuda] [--threads N] [--ids] [--verify]",
      "Generates TOKENS tokens after the prompt from the model in PATH. One process, a key/value cache.\n"
      "Byte-level models print text directly; GPT-2 vocabularies print text with --tokenizer, else the ids.");
  spec.positional("PATH",
                  "a checkpoint (step_<N> directory or its state.h5), a run's checkpoint directory (its\n"
                  "`latest`), or an llm.c model file (train.save_final, `mics export --format llmc`)");
  spec.options()
      ("prompt", po::value<std::string>()->value_name("TEXT"),
       "byte-level models (vocab <= 256, `mics data prepare`): the text's bytes")
      ("prompt-ids", po::value<std::string>()->value_name("LIST"),
       "token ids, comma separated (any vocabulary; GPT-2 BPE encoding is not built in). Without either "
       "prompt: the end-of-text token (GPT-2 vocabularies, or the tokenizer's), else a newline")
      ("tokens,n", po::value<int>()->value_name("TOKENS")->default_value(64), "tokens to generate")
      ("temperature", po::value<double>()->value_name("T")->default_value(1.0), "softmax temperature; 0 = greedy (argmax)")
      ("top-k", po::value<int>()->value_name("K")->default_value(0), "sample among the K most likely tokens only (0 = all)")
      ("seed", po::value<std::uint64_t>()->value_name("S")->default_value(1337), "the same seed gives the same text")
      ("tokenizer", po::value<std::string>()->value_name("FILE"),
       "llm.c tokenizer file (gpt2_tokenizer.bin) to decode a GPT-2 vocabulary")
      ("device", po::value<std::string>()->value_name("cpu|cuda")->default_value("cpu"), "backend")
      ("threads", po::value<int>()->value_name("N")->default_value(0), "cpu threads (0: OpenMP's default)")
      ("ids", po::bool_switch(), "also print the generated token ids")
      ("verify", po::bool_switch(),
       "(greedy only) check that every generated token is the argmax of the plain forward pass (no cache) "
       "over the whole sequence; exit 1 if one differs");
  return spec;
}

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
  const CommandSpec spec = sample_spec();
  const ParsedCommand parsed = spec.parse(args);
  if (parsed.help) {
    std::fputs(spec.usage().c_str(), stdout);
    return kExitOk;
  }
  std::optional<std::string> prompt, prompt_ids, tokenizer_path;
  if (parsed.has("prompt")) prompt = parsed.get<std::string>("prompt");
  if (parsed.has("prompt-ids")) prompt_ids = parsed.get<std::string>("prompt-ids");
  if (parsed.has("tokenizer")) tokenizer_path = parsed.get<std::string>("tokenizer");
  const int count = parsed.get<int>("tokens");
  if (count < 1) spec.fail("-n must be at least 1");
  model::SamplingOptions sampling;
  sampling.temperature = parsed.get<double>("temperature");
  sampling.top_k = parsed.get<int>("top-k");
  sampling.seed = parsed.get<std::uint64_t>("seed");
  config::BackendOptions backend_options;
  backend_options.matmul = config::Matmul::fp32;  // generation is tiny: exact fp32 GEMMs on either device
  const std::string device = parsed.get<std::string>("device");
  if (device != "cpu" && device != "cuda") spec.fail("--device " + device + " (expected cpu or cuda)");
  backend_options.device = device == "cuda" ? config::Device::cuda : config::Device::cpu;
  backend_options.threads = parsed.get<int>("threads");
  const bool print_ids = parsed.get<bool>("ids"), verify = parsed.get<bool>("verify");
  if (prompt && prompt_ids) throw InputError("mics sample: give --prompt or --prompt-ids, not both");
  if (verify && sampling.temperature > 0)
    throw InputError("mics sample: --verify checks greedy generation: add --temperature 0");

  // The weights, on the host, one flat buffer per unit.
  const std::string& path = parsed.positional[0];
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
