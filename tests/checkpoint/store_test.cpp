// Unit tests of the checkpoint area's pieces: flat-range hyperslab selection against brute force,
// checkpoint directory listing and retention, and the agreement of ranks on the first error.
#include <mpi.h>

#include "catch.hpp"
#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

#include "h5.hpp"
#include "mics/checkpoint/checkpoint.hpp"
#include "mics/comm/agreement.hpp"
#include "store.hpp"
#include "temp_dir.hpp"
#include "mpi_world.hpp"

namespace fs = std::filesystem;
using namespace mics::checkpoint;

namespace {

// The flat indices a selection covers, from its hyperslab blocks.
std::set<std::size_t> selected(hid_t space, const std::vector<hsize_t>& dims) {
  std::set<std::size_t> out;
  if (H5Sget_select_type(space) != H5S_SEL_HYPERSLABS) return out;
  const hssize_t blocks = H5Sget_select_hyper_nblocks(space);
  const std::size_t rank = dims.size();
  std::vector<hsize_t> corners(static_cast<std::size_t>(blocks) * 2 * rank);
  H5Sget_select_hyper_blocklist(space, 0, static_cast<hsize_t>(blocks), corners.data());
  for (hssize_t b = 0; b < blocks; ++b) {
    const hsize_t* start = &corners[static_cast<std::size_t>(b) * 2 * rank];
    const hsize_t* end = start + rank;  // inclusive
    if (rank == 1) {
      for (hsize_t i = start[0]; i <= end[0]; ++i) REQUIRE(out.insert(i).second);
    } else {
      for (hsize_t r = start[0]; r <= end[0]; ++r)
        for (hsize_t c = start[1]; c <= end[1]; ++c) REQUIRE(out.insert(r * dims[1] + c).second);
    }
  }
  return out;
}


}  // namespace

TEST_CASE("select_flat_range selects exactly [begin, end) of 1-D and 2-D datasets", "[checkpoint]") {
  for (const std::vector<hsize_t>& dims : {std::vector<hsize_t>{11}, std::vector<hsize_t>{7, 5},
                                           std::vector<hsize_t>{1, 9}, std::vector<hsize_t>{6, 1}}) {
    const std::size_t n = dims.size() == 1 ? dims[0] : dims[0] * dims[1];
    for (std::size_t begin = 0; begin <= n; ++begin) {
      for (std::size_t end = begin; end <= n; ++end) {
        h5::Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
        h5::select_flat_range(space.get(), dims, begin, end);
        REQUIRE(H5Sget_select_npoints(space.get()) == static_cast<hssize_t>(end - begin));
        std::set<std::size_t> want;
        for (std::size_t i = begin; i < end; ++i) want.insert(i);
        REQUIRE(selected(space.get(), dims) == want);
      }
    }
  }
}

TEST_CASE("list_checkpoints, latest and retention", "[checkpoint]") {
  if (mics::test::world_rank() != 0) return;
  const mics::test::TempDir dir("ckpt-store");
  for (int step = 1; step <= 10; ++step) fs::create_directories(dir.path() / step_dir_name(step));
  fs::create_directories(dir.path() / "step_3.partial");
  fs::create_directories(dir.path() / "step_12.partial");
  fs::create_directories(dir.path() / "step_x");
  fs::create_directories(dir.path() / "other");
  std::ofstream(dir.path() / kLatestFileName) << "step_10\n";

  const std::vector<Entry> entries = list_checkpoints(dir.path());
  REQUIRE(entries.size() == 12);
  CHECK(entries.front().step == 1);
  CHECK(entries[2].step == 3);
  CHECK(entries[2].committed);  // committed sorts before partial of the same step
  CHECK(entries[3].step == 3);
  CHECK_FALSE(entries[3].committed);
  CHECK(entries.back().step == 12);
  CHECK_FALSE(entries.back().committed);
  REQUIRE(read_latest(dir.path()));
  CHECK(*read_latest(dir.path()) == dir.path() / "step_10");

  store::prune(dir.path(), Retention{2, 4}, 10);
  std::set<std::string> left;
  for (const auto& item : fs::directory_iterator(dir.path())) left.insert(item.path().filename().string());
  // The last two, the multiples of 4, the partial newer than the commit, and what is not a checkpoint.
  CHECK(left == std::set<std::string>{"step_4", "step_8", "step_9", "step_10", "step_12.partial", "step_x", "other",
                                      "latest"});
}

TEST_CASE("latest that names no step directory is ignored", "[checkpoint]") {
  if (mics::test::world_rank() != 0) return;
  const mics::test::TempDir dir("ckpt-store");
  CHECK_FALSE(read_latest(dir.path()));
  std::ofstream(dir.path() / kLatestFileName) << "step_5.partial\n";
  CHECK_FALSE(read_latest(dir.path()));
  std::ofstream(dir.path() / kLatestFileName) << "../elsewhere\n";
  CHECK_FALSE(read_latest(dir.path()));
}

TEST_CASE("comm::first_error: every rank gets the lowest failing rank's message", "[checkpoint][mpi]") {
  const int rank = mics::test::world_rank(), size = mics::test::world_size();
  CHECK(mics::comm::first_error(MPI_COMM_WORLD, "").empty());
  const int failing = size / 2;
  const std::string mine = rank >= failing ? "rank " + std::to_string(rank) + " failed" : "";
  CHECK(mics::comm::first_error(MPI_COMM_WORLD, mine) == "rank " + std::to_string(failing) + " failed");
}
