#include "mics/log/log.hpp"

#include <boost/core/null_deleter.hpp>
#include <boost/log/attributes/constant.hpp>
#include <boost/log/core.hpp>
#include <boost/log/expressions.hpp>
#include <boost/log/sinks/sync_frontend.hpp>
#include <boost/log/sinks/text_ostream_backend.hpp>
#include <boost/log/sources/record_ostream.hpp>
#include <boost/log/sources/severity_logger.hpp>
#include <boost/log/support/date_time.hpp>
#include <boost/log/utility/setup/common_attributes.hpp>
#include <boost/smart_ptr/make_shared.hpp>
#include <fstream>
#include <iostream>

#include "mics/util/error.hpp"

namespace mics::log {
namespace logging = boost::log;
namespace expr = boost::log::expressions;
namespace sinks = boost::log::sinks;

BOOST_LOG_ATTRIBUTE_KEYWORD(severity_attr, "Severity", Severity)
BOOST_LOG_ATTRIBUTE_KEYWORD(rank_attr, "Rank", int)
BOOST_LOG_ATTRIBUTE_KEYWORD(timestamp_attr, "TimeStamp", boost::posix_time::ptime)

namespace {
using TextSink = sinks::synchronous_sink<sinks::text_ostream_backend>;

// The logging state is the one piece of global mutable state the project allows.
struct State {
  int rank = 0;
  Options options;
  logging::sources::severity_logger_mt<Severity> logger;
  boost::shared_ptr<TextSink> console;
  boost::shared_ptr<TextSink> file;
};
State& state() {
  static State s;
  return s;
}

void format_record(const logging::record_view& rec, logging::formatting_ostream& out) {
  auto ts = rec[timestamp_attr];
  auto sev = rec[severity_attr];
  auto rank = rec[rank_attr];
  if (ts) out << boost::posix_time::to_iso_extended_string(*ts).substr(0, 23) << ' ';
  out << '[' << (sev ? to_string(*sev) : std::string_view("?")) << "] ";
  if (rank) out << "r" << *rank << ": ";
  out << rec[expr::smessage];
}

boost::shared_ptr<TextSink> make_sink(boost::shared_ptr<std::ostream> stream) {
  auto backend = boost::make_shared<sinks::text_ostream_backend>();
  backend->add_stream(stream);
  backend->auto_flush(true);
  auto sink = boost::make_shared<TextSink>(backend);
  sink->set_formatter(&format_record);
  return sink;
}

void install_filters() {
  State& s = state();
  const Severity level = s.options.level;
  const bool console_on = s.rank == 0 || s.options.all_ranks;
  if (s.console)
    s.console->set_filter([level, console_on](const logging::attribute_value_set& attrs) {
      auto sev = attrs[severity_attr];
      // Errors always reach the console, from any rank.
      return sev && (*sev >= Severity::error || (console_on && *sev >= level));
    });
  if (s.file)
    s.file->set_filter([level](const logging::attribute_value_set& attrs) {
      auto sev = attrs[severity_attr];
      return sev && *sev >= level;
    });
}
}  // namespace

std::string_view to_string(Severity severity) {
  switch (severity) {
    case Severity::trace: return "trace";
    case Severity::debug: return "debug";
    case Severity::info: return "info";
    case Severity::warning: return "warning";
    case Severity::error: return "error";
    case Severity::fatal: return "fatal";
  }
  return "?";
}

Severity parse_severity(std::string_view text) {
  for (Severity s : {Severity::trace, Severity::debug, Severity::info, Severity::warning, Severity::error,
                     Severity::fatal})
    if (text == to_string(s)) return s;
  throw InputError("unknown log level '" + std::string(text) +
              "' (expected trace, debug, info, warning, error or fatal)");
}

void init(int rank) {
  State& s = state();
  s.rank = rank;
  auto core = logging::core::get();
  core->add_global_attribute("TimeStamp", logging::attributes::local_clock());
  core->add_global_attribute("Rank", logging::attributes::constant<int>(rank));
  if (!s.console) {
    s.console = make_sink(boost::shared_ptr<std::ostream>(&std::clog, boost::null_deleter()));
    core->add_sink(s.console);
  }
  install_filters();
}

void configure(const Options& options) {
  State& s = state();
  s.options = options;
  if (s.file) {
    logging::core::get()->remove_sink(s.file);
    s.file.reset();
  }
  if (!options.file_pattern.empty()) {
    std::string path = options.file_pattern;
    const std::string rank_text = std::to_string(s.rank);
    if (auto pos = path.find("%r"); pos != std::string::npos)
      path.replace(pos, 2, rank_text);
    else
      path += "." + rank_text;
    auto stream = boost::make_shared<std::ofstream>(path, std::ios::app);
    if (!*stream) throw InputError("log.file: cannot open '" + path + "' for writing");
    s.file = make_sink(stream);
    logging::core::get()->add_sink(s.file);
  }
  install_filters();
}

bool enabled(Severity severity) {
  const State& s = state();
  if (severity >= Severity::error) return true;
  if (severity < s.options.level) return false;
  return s.rank == 0 || s.options.all_ranks || s.file;
}

void flush() { logging::core::get()->flush(); }

Line::~Line() {
  State& s = state();
  BOOST_LOG_SEV(s.logger, severity_) << stream_.str();
}

}  // namespace mics::log
