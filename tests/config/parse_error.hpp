// The message of the mics::Error that parsing a deck throws; fails the test when parsing succeeds.
#pragma once
#include <string>
#include <vector>

#include "catch.hpp"
#include "mics/config/config.hpp"
#include "mics/util/error.hpp"

namespace mics::test {

inline std::string parse_error(const std::string& deck, const std::vector<std::string>& overrides = {}) {
  try {
    config::Config::parse(deck, "inputs/x.ini", overrides);
  } catch (const Error& error) {
    return error.what();
  }
  FAIL("parsing succeeded, an error was expected");
  return "";
}

}  // namespace mics::test
