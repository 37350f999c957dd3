// Logging on Boost.Log: severity, timestamp and rank on every line. Rank 0 writes to the console by
// default; log.all_ranks = true lets every rank write; log.file = PATTERN adds a file per rank ("%r" in
// the pattern becomes the rank). Boost stays inside log.cpp so this header is cheap to include.
#pragma once
#include <sstream>
#include <string>
#include <string_view>

namespace mics::log {

enum class Severity { trace, debug, info, warning, error, fatal };

struct Options {
  Severity level = Severity::info;
  bool all_ranks = false;
  std::string file_pattern;  // empty: no files
};

// Call once after MPI_Init: console sink for rank 0 at info level.
void init(int rank);
// Apply the deck's log section (collective-free; every rank calls it).
void configure(const Options& options);
bool enabled(Severity severity);
void flush();
Severity parse_severity(std::string_view text);  // throws mics::Error on an unknown name
std::string_view to_string(Severity severity);

// One log record; emitted when it goes out of scope.
class Line {
 public:
  explicit Line(Severity severity) : severity_(severity) {}
  Line(const Line&) = delete;
  Line& operator=(const Line&) = delete;
  ~Line();
  std::ostringstream& stream() { return stream_; }

 private:
  Severity severity_;
  std::ostringstream stream_;
};

// Turns the streamed expression into void so the macro is one expression: safe after an unbraced if.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace mics::log

#define MICS_LOG(sev)                                                          \
  !::mics::log::enabled(::mics::log::Severity::sev)                            \
      ? (void)0                                                                \
      : ::mics::log::Voidify() & ::mics::log::Line(::mics::log::Severity::sev).stream()
