// load()'s collective part: rank 0 reads and parses, every rank ends with the same outcome.
#include <mpi.h>
#include <unistd.h>

#include "catch.hpp"

#include <filesystem>
#include <fstream>
#include <string>
#include <variant>
#include <vector>

#include "mics/config/config.hpp"
#include "mpi_world.hpp"

using mics::config::Config;

namespace {


// Rank 0's copy of `text`, on every rank.
std::string from_rank0(std::string text) {
  int size = static_cast<int>(text.size());
  MPI_Bcast(&size, 1, MPI_INT, 0, MPI_COMM_WORLD);
  text.resize(static_cast<std::size_t>(size));
  MPI_Bcast(text.data(), size, MPI_CHAR, 0, MPI_COMM_WORLD);
  return text;
}

// A deck file only rank 0 writes (only rank 0 reads it); the name is unique per job, the same on every rank.
class DeckFile {
 public:
  DeckFile(const std::string& name, const std::string& text) {
    const std::string unique = from_rank0(std::to_string(::getpid()));
    path_ = (std::filesystem::temp_directory_path() / ("mics_config_" + unique + "_" + name)).string();
    if (mics::test::world_rank() == 0) std::ofstream(path_) << text;
    MPI_Barrier(MPI_COMM_WORLD);
  }
  ~DeckFile() {
    MPI_Barrier(MPI_COMM_WORLD);
    if (mics::test::world_rank() == 0) std::filesystem::remove(path_);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace

TEST_CASE("try_load: every rank gets the same configuration, overrides included", "[config][mpi]") {
  const DeckFile deck("good.ini", "[train]\nsteps = 12 # short\nlr = 2e-4\n[model]\npreset = gpt2-124m\n");
  // Only rank 0's overrides count: give the others different ones to prove it.
  const std::vector<std::string> overrides =
      mics::test::world_rank() == 0 ? std::vector<std::string>{"train.steps=20", "log.all_ranks=yes"}
                        : std::vector<std::string>{"train.steps=999"};
  auto outcome = mics::config::try_load(MPI_COMM_WORLD, deck.path(), overrides);
  REQUIRE(std::holds_alternative<Config>(outcome));
  const Config& config = std::get<Config>(outcome);
  CHECK(config.get_int("train.steps") == 20);
  CHECK(config.get_float("train.lr") == Approx(2e-4));
  CHECK(config.get_string("model.preset") == "gpt2-124m");
  CHECK(config.get_bool("log.all_ranks"));
  CHECK(config.is_set("train.lr"));
  CHECK_FALSE(config.is_set("train.micro_batch"));
  CHECK(config.to_deck() == from_rank0(config.to_deck()));
}

TEST_CASE("try_load without a deck file uses defaults and overrides", "[config][mpi]") {
  auto outcome = mics::config::try_load(MPI_COMM_WORLD, std::nullopt, {"run.name=nodeck"});
  REQUIRE(std::holds_alternative<Config>(outcome));
  CHECK(std::get<Config>(outcome).get_string("run.name") == "nodeck");
  CHECK(std::get<Config>(outcome).get_int("train.steps") == 100);
}

TEST_CASE("try_load: a bad deck gives the same message on every rank", "[config][mpi]") {
  const DeckFile deck("bad.ini", "[train]\nsteps = 3\n\nstpes = 4\n");
  auto outcome = mics::config::try_load(MPI_COMM_WORLD, deck.path(), {});
  REQUIRE(std::holds_alternative<std::string>(outcome));
  CHECK(std::get<std::string>(outcome) ==
        deck.path() + ":4: unknown key 'train.stpes' (did you mean 'train.steps'?)");
}

TEST_CASE("try_load: a bad override gives the same message on every rank", "[config][mpi]") {
  auto outcome = mics::config::try_load(MPI_COMM_WORLD, std::nullopt, {"train.lr=fast"});
  REQUIRE(std::holds_alternative<std::string>(outcome));
  CHECK(std::get<std::string>(outcome) == "command line: train.lr = fast is not a number");
}

TEST_CASE("try_load: a missing or unreadable deck names the path", "[config][mpi]") {
  const std::string missing = from_rank0(
      (std::filesystem::temp_directory_path() / ("mics_config_" + std::to_string(::getpid()) + "_missing.ini"))
          .string());
  auto outcome = mics::config::try_load(MPI_COMM_WORLD, missing, {});
  REQUIRE(std::holds_alternative<std::string>(outcome));
  CHECK(std::get<std::string>(outcome) == "input deck '" + missing + "' does not exist");

  const std::string directory = std::filesystem::temp_directory_path().string();
  auto dir_outcome = mics::config::try_load(MPI_COMM_WORLD, directory, {});
  REQUIRE(std::holds_alternative<std::string>(dir_outcome));
  CHECK(std::get<std::string>(dir_outcome) == "input deck '" + directory + "' is a directory");
}

TEST_CASE("load returns the configuration on every rank", "[config][mpi]") {
  const DeckFile deck("load.ini", "[parallel]\npartition_size = 2\n");
  const Config config = mics::config::load(MPI_COMM_WORLD, deck.path(), {"parallel.strategy=zero3"});
  CHECK(config.get_int_or_auto("parallel.partition_size") == 2);
  CHECK(config.get_string("parallel.strategy") == "zero3");
}
