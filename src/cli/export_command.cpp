// mics export: a checkpoint's parameters as a safetensors (Hugging Face GPT-2) or llm.c model file.
#include <cstdio>
#include <iostream>

#include "command_line.hpp"
#include "commands.hpp"
#include "mics/checkpoint/tools.hpp"
#include "mics/util/error.hpp"

namespace mics::cli {

namespace {
CommandSpec export_spec() {
  CommandSpec spec(
      "mics export", "mics export PATH --format safetensors|llmc OUT",
      "PATH is a checkpoint (step_<N> directory or its .h5 file). safetensors: one file with Hugging Face\n"
      "GPT-2 names (transformer.wte.weight, ...; Conv1D weights stored [in, out]) and a config.json\n"
      "(GPT2Config) beside it: name OUT DIR/model.safetensors and GPT2LMHeadModel.from_pretrained(DIR)\n"
      "loads it. llmc: an llm.c fp32 model file, usable as model.init = llmc:OUT and by mics sample.\n"
      "Tensors are streamed one at a time; the optimizer state is not read.");
  spec.positional("PATH", "the checkpoint").positional("OUT", "the file to write");
  spec.options()("format", po::value<std::string>()->value_name("safetensors|llmc")->required(), "the file format");
  return spec;
}
}  // namespace

int export_command(const Args& args) {
  const CommandSpec spec = export_spec();
  const ParsedCommand parsed = spec.parse(args);
  if (parsed.help) {
    std::fputs(spec.usage().c_str(), stdout);
    return kExitOk;
  }
  const std::string format = parsed.get<std::string>("format");
  checkpoint::ExportFormat parsed_format{};
  try {
    parsed_format = checkpoint::parse_export_format(format);
  } catch (const InputError& e) {
    spec.fail(std::string("option --format: ") + e.what());
  }
  const std::string& path = parsed.positional[0];
  const std::string& out = parsed.positional[1];
  try {
    checkpoint::export_parameters(path, parsed_format, out);
    std::cout << "exported " << path << " as " << format << " to " << out << '\n';
    return kExitOk;
  } catch (const Error& e) {
    std::cerr << "mics export: error: " << e.what() << '\n';
    return e.exit_status();  // 2 for a checkpoint that is unreadable, corrupt or of another shape
  }
}

}  // namespace mics::cli
