// The run lock's decisions, with Slurm's answer injected: live and finished jobs, no scontrol, the same
// job after a requeue, a heartbeat that went stale, and release leaving another holder's lock alone.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

#include "mics/checkpoint/run_lock.hpp"
#include "mics/util/error.hpp"
#include "mpi_world.hpp"
#include "temp_dir.hpp"

using namespace mics::checkpoint;
using mics::test::TempDir;

namespace {

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void hold(const TempDir& dir, const std::string& text) {
  std::ofstream(dir.file("lock")) << text;
}

JobQuery answer(std::optional<JobState> state) {
  return [state](const std::string&) { return state; };
}

LockHolder me(const std::string& job = "none") {
  LockHolder h = this_process();
  h.job = job;
  return h;
}

}  // namespace

TEST_CASE("run lock: taken, written, released", "[checkpoint][lock]") {
  if (mics::test::world_rank() != 0) return;
  TempDir dir("lock_basic");
  std::string note;
  {
    const RunLock lock = RunLock::acquire(dir.path(), me("12"), 3600, answer(std::nullopt), note);
    CHECK(note.empty());
    const std::optional<LockHolder> holder = parse_lock(read(dir.file("lock")));
    REQUIRE(holder);
    CHECK(holder->job == "12");
    CHECK(holder->pid == this_process().pid);
    CHECK(holder->host == this_process().host);
  }
  CHECK_FALSE(std::filesystem::exists(dir.file("lock")));
}

TEST_CASE("run lock: another Slurm job, as Slurm reports it", "[checkpoint][lock]") {
  if (mics::test::world_rank() != 0) return;
  TempDir dir("lock_slurm");
  std::string note;
  hold(dir, "job 77\nhost elsewhere\npid 1\n");
  try {
    RunLock::acquire(dir.path(), me("12"), 3600, answer(JobState::live), note);
    FAIL("a live job's lock was taken");
  } catch (const mics::InputError& e) {
    const std::string what = e.what();
    CHECK(what.find("job 77, host elsewhere, pid 1") != std::string::npos);
    CHECK(what.find("not finished") != std::string::npos);
  }
  const RunLock lock = RunLock::acquire(dir.path(), me("12"), 3600, answer(JobState::finished), note);
  CHECK(note.find("job 77") != std::string::npos);
  CHECK(note.find("finished") != std::string::npos);
  CHECK(parse_lock(read(dir.file("lock")))->job == "12");
}

TEST_CASE("run lock: no scontrol, another host: the heartbeat decides", "[checkpoint][lock]") {
  if (mics::test::world_rank() != 0) return;
  TempDir dir("lock_heartbeat");
  std::string note;
  hold(dir, "job 77\nhost elsewhere\npid 1\n");
  CHECK_THROWS_AS(RunLock::acquire(dir.path(), me("12"), 3600, answer(std::nullopt), note), mics::InputError);
  const RunLock lock = RunLock::acquire(dir.path(), me("12"), 0, answer(std::nullopt), note);  // stale at once
  CHECK(note.find("no heartbeat") != std::string::npos);
}

TEST_CASE("run lock: a requeued job takes its own lock", "[checkpoint][lock]") {
  if (mics::test::world_rank() != 0) return;
  TempDir dir("lock_requeue");
  std::string note;
  hold(dir, "job 12\nhost elsewhere\npid 1\n");
  const RunLock lock = RunLock::acquire(dir.path(), me("12"), 3600, answer(JobState::live), note);
  CHECK(note.find("same Slurm job") != std::string::npos);
}

TEST_CASE("run lock: release leaves a lock that names another holder", "[checkpoint][lock]") {
  if (mics::test::world_rank() != 0) return;
  TempDir dir("lock_release");
  std::string note;
  RunLock lock = RunLock::acquire(dir.path(), me(), 3600, answer(std::nullopt), note);
  hold(dir, "job 99\nhost elsewhere\npid 1\n");  // taken over meanwhile
  lock.release();
  CHECK(std::filesystem::exists(dir.file("lock")));
  CHECK_FALSE(parse_lock("job 1\nhost h\n"));  // no pid: not a lock
}
