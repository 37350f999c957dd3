// mics export: a checkpoint's parameters as a safetensors (Hugging Face GPT-2) or llm.c model file.
#include <cstdio>
#include <iostream>

#include "commands.hpp"
#include "mics/checkpoint/tools.hpp"
#include "mics/util/error.hpp"

namespace mics::cli {

namespace {
constexpr const char* kExportUsage =
    "usage: mics export PATH --format safetensors|llmc OUT\n"
    "\n"
    "PATH is a checkpoint (step_<N> directory or its .h5 file). safetensors: one file with Hugging Face\n"
    "GPT-2 names (transformer.wte.weight, ...; Conv1D weights stored [in, out]) and a config.json\n"
    "(GPT2Config) beside it: name OUT DIR/model.safetensors and GPT2LMHeadModel.from_pretrained(DIR)\n"
    "loads it. llmc: an llm.c fp32 model file, usable as model.init = llmc:OUT and by mics sample.\n"
    "Tensors are streamed one at a time; the optimizer state is not read.\n";
}  // namespace

int export_command(const Args& args) {
  std::vector<std::string> positional;
  std::string format;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kExportUsage, stdout);
      return kExitOk;
    }
    if (a == "--format" && i + 1 < args.size()) {
      format = args[++i];
    } else if (a.rfind("--format=", 0) == 0) {
      format = a.substr(9);
    } else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "mics export: unknown option '%s'\n\n%s", a.c_str(), kExportUsage);
      return kExitUsage;
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2 || format.empty()) {
    std::fputs(kExportUsage, stderr);
    return kExitUsage;
  }
  try {
    const checkpoint::ExportFormat parsed = checkpoint::parse_export_format(format);
    checkpoint::export_parameters(positional[0], parsed, positional[1]);
    std::cout << "exported " << positional[0] << " as " << format << " to " << positional[1] << '\n';
    return kExitOk;
  } catch (const Error& e) {
    std::cerr << "mics export: error: " << e.what() << '\n';
    return kExitFailure;
  }
}

}  // namespace mics::cli
