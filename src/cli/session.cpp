#include "session.hpp"

#include <boost/program_options.hpp>

#include "mics/log/log.hpp"
#include "mics/util/error.hpp"

namespace mics::cli {

namespace po = boost::program_options;

MpiSession::MpiSession() {
  int provided = 0;
  MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  log::init(rank_);
}

MpiSession::~MpiSession() {
  log::flush();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

CommandLine split_command_line(const Args& args) {
  po::options_description known("options");
  known.add_options()("deck", po::value<std::string>(), "input deck")("help,h", "help");
  CommandLine out;
  po::parsed_options parsed = po::command_line_parser(args)
                                  .options(known)
                                  .style(po::command_line_style::default_style &
                                         ~po::command_line_style::allow_guessing)
                                  .allow_unregistered()
                                  .run();
  for (const po::option& opt : parsed.options) {
    if (opt.string_key == "deck" && !opt.unregistered) {
      if (opt.value.empty()) throw Error("--deck needs a file name");
      out.deck = opt.value.front();
    } else if (opt.string_key == "help" && !opt.unregistered) {
      out.help = true;
    } else {
      for (const std::string& token : opt.original_tokens) {
        // --section.key=value is a deck override; anything else belongs to the subcommand.
        if (token.rfind("--", 0) == 0 && token.find('.') != std::string::npos &&
            token.find('.') < token.find('=')) {
          out.overrides.push_back(token.substr(2));
        } else {
          out.rest.push_back(token);
        }
      }
    }
  }
  return out;
}

config::Config load_config(const CommandLine& command_line) {
  config::Config cfg = config::load(MPI_COMM_WORLD, command_line.deck, command_line.overrides);
  log::Options options;
  options.level = log::parse_severity(cfg.get_string("log.level"));
  options.all_ranks = cfg.get_bool("log.all_ranks");
  options.file_pattern = cfg.get_string("log.file");
  try {
    log::configure(options);
  } catch (const Error& e) {
    fatal_one(e.what(), kExitUsage);
  }
  return cfg;
}

}  // namespace mics::cli
