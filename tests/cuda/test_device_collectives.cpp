// The device collectives against MpiCollectives on the same data: host-staged on any rank count (ranks
// share the GPU), NCCL when every rank has a GPU of its own (one rank on a one-GPU machine). Values are
// small integers, so every sum is exact whatever the reduction order and results must be bit-identical;
// averages too, for the rank counts run here (1, 2, 4: NCCL multiplies each input by 1/n, exact for a
// power of two, and the inputs are multiples of n). Also: host buffers pass through to MPI, traffic
// counters match MPI's, a non-blocking gather is ordered before compute-stream work that reads it, and a
// NCCL collective that times out raises mics::Error on the calling thread (no MPI_Abort from the watchdog).
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "mics/backends/cuda/check.hpp"
#include "mics/backends/cuda/cuda_backend.hpp"
#include "mics/backends/cuda/device.hpp"
#include "mics/backends/cuda/device_collectives.hpp"
#include "mics/backends/cuda/host_staged_collectives.hpp"
#include "mics/backends/cuda/nccl_collectives.hpp"
#include "mics/topology/topology.hpp"
#include "mpi_harness.hpp"

using namespace mics;
using backends::Buffer;
using backends::cuda::CudaBackend;
using comm::DataType;
using comm::ReduceOp;

namespace {

struct World {
  topology::Topology topology;
  comm::MpiCollectives mpi;
  CudaBackend gpu;
  World() : topology(make()) {}
  static topology::Topology make() {
    int n = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    // n = 4: two emulated nodes of two ranks (J = 2, L = 2); n = 2: two nodes of one (J = 2, L = 1).
    return topology::Topology::create({n == 4 ? 2 : 1, n});
  }
};

World& world() {
  static World* w = new World();  // kept to exit, like the backend in the kernel tests
  return *w;
}

// The trainer's own test (choose_device_collectives): NCCL only when no two ranks share a GPU.
bool nccl_possible() {
  static const bool possible = [] {
    if (!backends::cuda::ranks_share_gpus(world().gpu.device(), MPI_COMM_WORLD)) return true;
    if (world().topology.placement().world_rank == 0)
      std::printf("note: ranks share GPUs here; NCCL needs one GPU per rank (checked with fewer ranks)\n");
    return false;
  }();
  return possible;
}

template <class T>
Buffer<T> upload(const std::vector<T>& host) {
  Buffer<T> b = world().gpu.alloc<T>(host.size());
  world().gpu.copy_from_host(b.data(), host.data(), host.size() * sizeof(T));
  return b;
}
template <class T>
std::vector<T> download(const Buffer<T>& b) {
  std::vector<T> host(b.size());
  world().gpu.copy_to_host(host.data(), b.data(), host.size() * sizeof(T));
  return host;
}
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

std::vector<float> values(std::size_t n, int salt) {
  const int rank = world().topology.placement().world_rank;
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(static_cast<int>((i * 7 + rank * 13 + salt) % 97) - 48);
  return v;
}

// Every collective on `c` against MPI on host copies of the same data.
void check_against_mpi(comm::Collectives& c) {
  World& w = world();
  comm::Communicator& part = w.topology.partition();
  const int n = part.size();
  const std::size_t count = 1000;

  {  // all-gather, blocking and not, fp32 and bf16 (raw bits travel unchanged)
    const auto shard = values(count, 1);
    std::vector<float> want(count * n);
    w.mpi.all_gather(shard.data(), want.data(), count, DataType::f32, part);
    auto d_shard = upload(shard);
    auto d_full = w.gpu.alloc<float>(count * n);
    c.all_gather(d_shard.data(), d_full.data(), count, DataType::f32, part);
    CHECK(same_bits(download(d_full), want));
    w.gpu.fill(d_full.data(), count * n, -1.0f);
    comm::Request r = c.iall_gather(d_shard.data(), d_full.data(), count, DataType::f32, part);
    r.wait();
    CHECK(same_bits(download(d_full), want));

    std::vector<bf16> half(count), half_want(count * n);
    for (std::size_t i = 0; i < count; ++i) half[i] = bf16(shard[i] * 0.37f);
    w.mpi.all_gather(half.data(), half_want.data(), count, DataType::bf16, part);
    auto d_half = upload(half);
    auto d_half_full = w.gpu.alloc<bf16>(count * n);
    c.iall_gather(d_half.data(), d_half_full.data(), count, DataType::bf16, part).wait();
    CHECK(same_bits(download(d_half_full), half_want));
  }
  if (w.topology.shape().spans_nodes()) {  // hierarchical equals the flat gather
    comm::Communicator& inter = w.topology.inter_node();
    comm::Communicator& intra = w.topology.intra_node();
    const auto shard = values(count, 2);
    std::vector<float> want(count * n);
    w.mpi.all_gather(shard.data(), want.data(), count, DataType::f32, part);
    auto d_shard = upload(shard);
    auto d_full = w.gpu.alloc<float>(count * n);
    c.ihierarchical_all_gather(d_shard.data(), d_full.data(), count, DataType::f32, inter, intra).wait();
    CHECK(same_bits(download(d_full), want));
    w.gpu.fill(d_full.data(), count * n, -1.0f);
    c.hierarchical_all_gather(d_shard.data(), d_full.data(), count, DataType::f32, inter, intra);
    CHECK(same_bits(download(d_full), want));

    // bf16, completed by polling test() as the engine's prefetch is (the staged second stage starts there)
    std::vector<bf16> half(count), half_want(count * n);
    for (std::size_t i = 0; i < count; ++i) half[i] = bf16(shard[i] * 0.37f);
    w.mpi.all_gather(half.data(), half_want.data(), count, DataType::bf16, part);
    auto d_half = upload(half);
    auto d_half_full = w.gpu.alloc<bf16>(count * n);
    comm::Request r =
        c.ihierarchical_all_gather(d_half.data(), d_half_full.data(), count, DataType::bf16, inter, intra);
    while (!r.test()) std::this_thread::yield();
    CHECK(same_bits(download(d_half_full), half_want));
  }
  for (const ReduceOp op : {ReduceOp::sum, ReduceOp::average, ReduceOp::max}) {
    auto full = values(count * n, 3);
    for (float& x : full) x *= static_cast<float>(n);  // the average of multiples of n is exact
    std::vector<float> want(count), got_host(count);
    w.mpi.reduce_scatter(full.data(), want.data(), count, DataType::f32, op, part);
    auto d_full = upload(full);
    auto d_out = w.gpu.alloc<float>(count);
    c.ireduce_scatter(d_full.data(), d_out.data(), count, DataType::f32, op, part).wait();
    CHECK(same_bits(download(d_out), want));
    w.gpu.fill(d_out.data(), count, -1.0f);
    c.reduce_scatter(d_full.data(), d_out.data(), count, DataType::f32, op, part);
    CHECK(same_bits(download(d_out), want));

    std::vector<float> reduced = full;
    w.mpi.all_reduce(reduced.data(), reduced.data(), reduced.size(), DataType::f32, op, part);
    auto d_in_place = upload(full);
    c.iall_reduce(d_in_place.data(), d_in_place.data(), full.size(), DataType::f32, op, part).wait();
    CHECK(same_bits(download(d_in_place), reduced));
    auto d_src = upload(full);
    auto d_dst = w.gpu.alloc<float>(full.size());
    c.all_reduce(d_src.data(), d_dst.data(), full.size(), DataType::f32, op, part);
    CHECK(same_bits(download(d_dst), reduced));
  }
  {  // integer and double all-reduce, replication group (size r), broadcast
    std::vector<std::int32_t> ints(257);
    for (std::size_t i = 0; i < ints.size(); ++i) ints[i] = static_cast<std::int32_t>(i) + w.topology.placement().world_rank;
    auto want = ints;
    w.mpi.all_reduce(want.data(), want.data(), want.size(), DataType::i32, ReduceOp::sum, w.topology.world());
    auto d_ints = upload(ints);
    c.all_reduce(d_ints.data(), d_ints.data(), ints.size(), DataType::i32, ReduceOp::sum, w.topology.world());
    CHECK(download(d_ints) == want);

    std::vector<double> doubles(33, 0.5 * (w.topology.placement().world_rank + 1));
    auto dwant = doubles;
    w.mpi.all_reduce(dwant.data(), dwant.data(), dwant.size(), DataType::f64, ReduceOp::sum, w.topology.replication());
    auto d_doubles = upload(doubles);
    c.iall_reduce(d_doubles.data(), d_doubles.data(), doubles.size(), DataType::f64, ReduceOp::sum,
                  w.topology.replication())
        .wait();
    CHECK(download(d_doubles) == dwant);

    const int root = 1 % n;
    auto b = values(count, 4);
    auto bwant = b;
    w.mpi.broadcast(bwant.data(), bwant.size(), DataType::f32, root, part);
    auto d_b = upload(b);
    c.broadcast(d_b.data(), b.size(), DataType::f32, root, part);
    CHECK(same_bits(download(d_b), bwant));
  }
  {  // host buffers pass through (the engine's loss and norm scalars)
    double scalar = 1.0 + w.topology.placement().world_rank;
    c.all_reduce(&scalar, &scalar, 1, DataType::f64, ReduceOp::sum, w.topology.world());
    CHECK(scalar == n * (n + 1) / 2.0);
    c.barrier(w.topology.world());
  }
  {  // traffic counters equal MPI's for the same collectives
    const auto shard = values(count, 5);
    auto d_shard = upload(shard);
    auto d_full = w.gpu.alloc<float>(count * n);
    std::vector<float> host_full(count * n);
    part.reset_counters();
    c.all_gather(d_shard.data(), d_full.data(), count, DataType::f32, part);
    c.iall_reduce(d_full.data(), d_full.data(), count * n, DataType::f32, ReduceOp::sum, part).wait();
    const comm::TrafficCounters got = part.take_counters();
    w.mpi.all_gather(shard.data(), host_full.data(), count, DataType::f32, part);
    w.mpi.all_reduce(host_full.data(), host_full.data(), count * n, DataType::f32, ReduceOp::sum, part);
    const comm::TrafficCounters want = part.take_counters();
    CHECK(got.collectives == want.collectives);
    CHECK(got.bytes_sent == want.bytes_sent);
    CHECK(got.bytes_received == want.bytes_received);
    if (w.topology.shape().spans_nodes()) {  // the hierarchical gather counts on both of its groups
      comm::Communicator& inter = w.topology.inter_node();
      comm::Communicator& intra = w.topology.intra_node();
      inter.reset_counters();
      intra.reset_counters();
      c.hierarchical_all_gather(d_shard.data(), d_full.data(), count, DataType::f32, inter, intra);
      const comm::TrafficCounters got_inter = inter.take_counters(), got_intra = intra.take_counters();
      w.mpi.hierarchical_all_gather(shard.data(), host_full.data(), count, DataType::f32, inter, intra);
      const comm::TrafficCounters want_inter = inter.take_counters(), want_intra = intra.take_counters();
      CHECK(got_inter.collectives == want_inter.collectives && got_inter.bytes_sent == want_inter.bytes_sent &&
            got_inter.bytes_received == want_inter.bytes_received);
      CHECK(got_intra.collectives == want_intra.collectives && got_intra.bytes_sent == want_intra.bytes_sent &&
            got_intra.bytes_received == want_intra.bytes_received);
    }
  }
  {  // ordering: compute-stream work queued after wait() sees the gathered data
    const std::size_t big = 1 << 20;
    const auto shard = values(big, 6);
    std::vector<float> want(big * n);
    w.mpi.all_gather(shard.data(), want.data(), big, DataType::f32, part);
    for (float& x : want) x *= 2.0f;
    auto d_shard = upload(shard);
    auto d_full = w.gpu.alloc<float>(big * n);
    w.gpu.fill(d_full.data(), big * n, 0.0f);  // queued before the gather: must not overwrite it
    comm::Request r = c.iall_gather(d_shard.data(), d_full.data(), big, DataType::f32, part);
    r.wait();
    w.gpu.scale(d_full.data(), 2.0f, big * n);
    CHECK(same_bits(download(d_full), want));
  }
}

}  // namespace

GPU_TEST(host_staged_matches_mpi) {
  backends::cuda::HostStagedCollectives staged(world().gpu.stream(), world().mpi);
  check_against_mpi(staged);
}

GPU_TEST(nccl_matches_mpi) {
  if (!nccl_possible()) return;
  backends::cuda::NcclCollectives nccl(world().topology, world().gpu.device(), world().gpu.stream(), world().mpi);
  check_against_mpi(nccl);
}

// Last: the compute stream is held by a host function for 300 ms, so a gather (which waits for it) cannot
// finish within a 1 ms timeout on any rank. The error must reach the caller as mics::Error, and every later
// call, host-memory ones included, must raise it again instead of using the aborted communicators.
GPU_TEST(nccl_timeout_raises_on_the_calling_thread) {
  if (!nccl_possible()) return;
  World& w = world();
  backends::cuda::NcclOptions options;
  options.timeout = std::chrono::milliseconds(1);
  backends::cuda::NcclCollectives nccl(w.topology, w.gpu.device(), w.gpu.stream(), w.mpi, options);
  comm::Communicator& part = w.topology.partition();
  const std::size_t count = 256;
  auto d_shard = upload(values(count, 7));
  auto d_full = w.gpu.alloc<float>(count * static_cast<std::size_t>(part.size()));
  CUDA_CHECK(cudaLaunchHostFunc(
      w.gpu.stream(), [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(300)); }, nullptr));
  std::string first;
  try {
    nccl.all_gather(d_shard.data(), d_full.data(), count, DataType::f32, part);
  } catch (const Error& e) {
    first = e.what();
  }
  CHECK(first.find("within 1 ms") != std::string::npos);  // not finished, or not even enqueued
  const auto raises_again = [&](const auto& call) {
    try {
      call();
    } catch (const Error& e) {
      return std::string(e.what()) == first;
    }
    return false;
  };
  CHECK(raises_again([&] { nccl.iall_gather(d_shard.data(), d_full.data(), count, DataType::f32, part); }));
  CHECK(raises_again([&] { nccl.barrier(w.topology.world()); }));
  w.gpu.synchronize();  // the held stream drains behind the aborted gather: nothing hangs
}

int main(int argc, char** argv) { return mics::cuda_test::run_mpi_tests(argc, argv); }
