// User text in messages: mics::printable, and the deck's byte-order mark, NUL and control characters.
#include "catch.hpp"

#include <string>
#include <vector>

#include "mics/config/config.hpp"
#include "mics/util/error.hpp"
#include "parse_error.hpp"
#include "mics/util/printable.hpp"

using mics::config::Config;
using mics::printable;
using namespace std::string_literals;

namespace {

using mics::test::parse_error;

}  // namespace

TEST_CASE("printable: visible text stays, the rest becomes escapes", "[config][printable]") {
  CHECK(printable("data/train_*.bin") == "data/train_*.bin");
  CHECK(printable("") == "");
  CHECK(printable("a\0b"s) == "a\\0b");
  CHECK(printable("\xEF\xBB\xBF[run]") == "\\xEF\\xBB\\xBF[run]");
  CHECK(printable("x\xEF\xBB\xBFy") == "x\\xEF\\xBB\\xBFy");  // a BOM anywhere
  CHECK(printable("a\tb\nc\rd") == "a\\tb\\nc\\rd");
  CHECK(printable("\x1b[31mred") == "\\x1B[31mred");
  CHECK(printable("\x7f") == "\\x7F");
  CHECK(printable("back\\slash") == "back\\\\slash");  // unambiguous: "\\x41" cannot be taken for a byte
  // Well-formed UTF-8 stays; C1 controls (U+0085), lone or truncated bytes, overlong forms and surrogates
  // do not.
  CHECK(printable("caf\xC3\xA9 \xE6\x97\xA5 \xF0\x9F\x99\x82") == "caf\xC3\xA9 \xE6\x97\xA5 \xF0\x9F\x99\x82");
  CHECK(printable("\xC2\x85") == "\\xC2\\x85");
  CHECK(printable("a\xC2\xA0" "b") == "a\\xC2\\xA0" "b");                    // no-break space
  CHECK(printable("\xE2\x80\xAE" "abc") == "\\xE2\\x80\\xAE" "abc");          // right-to-left override
  CHECK(printable("\xE2\x82\xAC") == "\xE2\x82\xAC");                      // the euro sign stays
  CHECK(printable("a\xFFz") == "a\\xFFz");
  CHECK(printable("\xE6\x97") == "\\xE6\\x97");
  CHECK(printable("\xC0\xAF") == "\\xC0\\xAF");
  CHECK(printable("\xED\xA0\x80") == "\\xED\\xA0\\x80");
  CHECK(printable("\xF4\x90\x80\x80") == "\\xF4\\x90\\x80\\x80");
}

TEST_CASE("deck: a UTF-8 byte-order mark at the start is skipped", "[config][printable]") {
  const Config config = Config::parse("\xEF\xBB\xBF[run]\nname = bom\n", "inputs/x.ini", {});
  CHECK(config.get_string("run.name") == "bom");
  // Elsewhere it is not whitespace, and the message shows it.
  const std::string error = parse_error("[run]\n\xEF\xBB\xBFname = x\n");
  CHECK(error.find("inputs/x.ini:2:") != std::string::npos);
  CHECK(error.find("\\xEF\\xBB\\xBFname") != std::string::npos);
  CHECK(error.find("\xEF\xBB\xBF") == std::string::npos);
}

TEST_CASE("deck: a NUL or control character is refused with the line shown escaped", "[config][printable]") {
  const std::string nul = parse_error("[run]\nname = ab\0cd\n"s);
  INFO(printable(nul));
  CHECK(nul.find("inputs/x.ini:2: the line holds a NUL byte (\\0) at column 10: 'name = ab\\0cd'") !=
        std::string::npos);
  CHECK(nul.find('\0') == std::string::npos);
  const std::string esc = parse_error("[run]\n\nname = a\x1b[2Jb\n");
  CHECK(esc.find("inputs/x.ini:3: the line holds the control character \\x1B at column 9") != std::string::npos);
  // Tabs and CRLF line ends are whitespace as before.
  const Config crlf = Config::parse("[run]\r\nname =\tcrlf\r\n", "inputs/x.ini", {});
  CHECK(crlf.get_string("run.name") == "crlf");
  // A CR inside a line is not a line end.
  CHECK(parse_error("[run]\nname = a\rb\n").find("inputs/x.ini:2: the line holds the control character \\r") !=
        std::string::npos);
}

TEST_CASE("deck: names, keys and values in messages are escaped", "[config][printable]") {
  CHECK(parse_error("[ru\tn]\n").find("unknown section '[ru\\tn]'") != std::string::npos);
  CHECK(parse_error("[run]\nna\xFFme = x\n").find("unknown key 'run.na\\xFFme'") != std::string::npos);
  CHECK(parse_error("[train]\nsteps = 1\xC2\xA0\n").find("train.steps = 1\\xC2\\xA0 is not an integer") !=
        std::string::npos);
  CHECK(parse_error("[train]\nsteps = 1\xA0\n").find("train.steps = 1\\xA0 is not an integer") != std::string::npos);
  // The file name as well.
  try {
    Config::parse("[nope]\n", "in\x1bputs/x.ini", {});
    FAIL("parsed");
  } catch (const mics::Error& e) {
    CHECK(std::string(e.what()).find("in\\x1Bputs/x.ini:1:") != std::string::npos);
  }
}

TEST_CASE("command line: control characters in a value are refused, escaped", "[config][printable]") {
  const std::string error = parse_error("", {"run.name=a\x1b" "b"});
  CHECK(error.find("command line: option '--run.name': the value holds the control character \\x1B: 'a\\x1Bb'") !=
        std::string::npos);
  CHECK(parse_error("", {"run.nam\x01" "e=x"}).find("unknown option '--run.nam\\x01e'") != std::string::npos);
  CHECK(parse_error("", {"train.steps=\xEF\xBB\xBF" "5"}).find("train.steps = \\xEF\\xBB\\xBF5 is not an integer") !=
        std::string::npos);
}
