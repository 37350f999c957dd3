// The device transports against the MPI transport on the same data, through the typed layer: host-staged on
// any rank count (ranks share the GPU), NCCL when every rank has a GPU of its own (one rank on a one-GPU
// machine; skipped otherwise). Values are small integers, so every sum is exact whatever the reduction
// order and results must be bit-identical; averages too, for the rank counts run here (1, 2, 4: NCCL
// multiplies each input by 1/n, exact for a power of two, and the inputs are multiples of n). Also: the
// host channel stays MPI under a device transport, an operation is ordered before compute-stream work
// queued after its wait(), make_data_transport follows backend.collectives, and a NCCL operation that
// times out raises PeerError on the calling thread (the watchdog makes no MPI call and ends nothing).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "mics/backends/cpu/cpu_backend.hpp"
#include "mics/backends/cuda/check.hpp"
#include "mics/backends/cuda/cuda_backend.hpp"
#include "mics/backends/cuda/data_transport.hpp"
#include "mics/backends/cuda/device.hpp"
#include "mics/backends/cuda/host_staged_transport.hpp"
#include "mics/backends/cuda/nccl_transport.hpp"
#include "mics/backends/transport.hpp"
#include "mics/comm/mpi_transport.hpp"
#include "mics/topology/topology.hpp"
#include "mpi_harness.hpp"

using namespace mics;
using backends::Buffer;
using backends::cuda::CudaBackend;
using comm::ReduceOp;
using config::DeviceCollectives;

namespace {

struct World {
  topology::Topology topology;
  comm::MpiTransport mpi;
  comm::Collectives host{mpi, mpi};  // the reference: MPI on host copies
  CudaBackend gpu;
  World() : topology(make()) {}
  static topology::Topology make() {
    int n = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    // One partition group over the world. n = 4: two emulated nodes of two ranks (J = 2, L = 2); n = 2: two
    // nodes of one (J = 2, L = 1).
    return topology::Topology::create(topology::validate_shape(n, n == 4 ? 2 : 1, n));
  }
};

World& world() {
  static World* w = new World();  // kept to exit, like the backend in the kernel tests
  return *w;
}

// make_data_transport's own test: NCCL only when no two ranks share a GPU. The same on every rank.
bool gpus_shared() {
  static const bool shared = backends::cuda::ranks_share_gpus(world().gpu.device(), MPI_COMM_WORLD);
  return shared;
}
void require_nccl() {
  if (gpus_shared()) SKIP_CASE("ranks share GPUs here and NCCL needs one GPU per rank (runs with fewer ranks)");
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
std::span<T> all(Buffer<T>& b) {
  return {b.data(), b.size()};
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

// Every operation of `transport` against MPI on host copies of the same data.
void check_against_mpi(comm::Transport& transport) {
  World& w = world();
  comm::Collectives dev(transport, w.mpi);
  const comm::Group& part = w.topology.partition();
  const int n = part.size();
  const std::size_t count = 1000;

  {  // all-gather, fp32 and bf16 (raw bits travel unchanged)
    const auto shard = values(count, 1);
    std::vector<float> want(count * n);
    w.host.all_gather<float>(shard, want, part).wait();
    auto d_shard = upload(shard);
    auto d_full = w.gpu.alloc<float>(count * n);
    dev.all_gather<float>(all(d_shard), all(d_full), part).wait();
    CHECK(same_bits(download(d_full), want));

    std::vector<bf16> half(count), half_want(count * n);
    for (std::size_t i = 0; i < count; ++i) half[i] = bf16(shard[i] * 0.37f);
    w.host.all_gather<bf16>(half, half_want, part).wait();
    auto d_half = upload(half);
    auto d_half_full = w.gpu.alloc<bf16>(count * n);
    dev.all_gather<bf16>(all(d_half), all(d_half_full), part).wait();
    CHECK(same_bits(download(d_half_full), half_want));
  }
  if (w.topology.shape().spans_nodes()) {  // hierarchical equals the flat gather
    const comm::Group& inter = w.topology.inter_node();
    const comm::Group& intra = w.topology.intra_node();
    const auto shard = values(count, 2);
    std::vector<float> want(count * n);
    w.host.all_gather<float>(shard, want, part).wait();
    auto d_shard = upload(shard);
    auto d_full = w.gpu.alloc<float>(count * n);
    dev.hierarchical_all_gather<float>(all(d_shard), all(d_full), inter, intra).wait();
    CHECK(same_bits(download(d_full), want));

    // bf16, completed by polling test() as the engine's prefetch is (the staged second stage starts there)
    std::vector<bf16> half(count), half_want(count * n);
    for (std::size_t i = 0; i < count; ++i) half[i] = bf16(shard[i] * 0.37f);
    w.host.all_gather<bf16>(half, half_want, part).wait();
    auto d_half = upload(half);
    auto d_half_full = w.gpu.alloc<bf16>(count * n);
    comm::Request r = dev.hierarchical_all_gather<bf16>(all(d_half), all(d_half_full), inter, intra);
    while (!r.test()) dev.progress();
    CHECK(same_bits(download(d_half_full), half_want));
  }
  for (const ReduceOp op : {ReduceOp::sum, ReduceOp::average, ReduceOp::max}) {
    auto full = values(count * n, 3);
    for (float& x : full) x *= static_cast<float>(n);  // the average of multiples of n is exact
    std::vector<float> want(count);
    w.host.reduce_scatter<float>(full, want, op, part).wait();
    auto d_full = upload(full);
    auto d_out = w.gpu.alloc<float>(count);
    dev.reduce_scatter<float>(all(d_full), all(d_out), op, part).wait();
    CHECK(same_bits(download(d_out), want));

    std::vector<float> reduced = full;
    w.host.all_reduce<float>(reduced, op, part).wait();
    auto d_in_place = upload(full);
    dev.all_reduce<float>(all(d_in_place), op, part).wait();
    CHECK(same_bits(download(d_in_place), reduced));
  }
  {  // integer and double all-reduce, replication group (size r), broadcast
    std::vector<std::int32_t> ints(257);
    for (std::size_t i = 0; i < ints.size(); ++i) ints[i] = static_cast<std::int32_t>(i) + w.topology.placement().world_rank;
    auto want = ints;
    w.host.all_reduce<std::int32_t>(want, ReduceOp::sum, w.topology.world()).wait();
    auto d_ints = upload(ints);
    dev.all_reduce<std::int32_t>(all(d_ints), ReduceOp::sum, w.topology.world()).wait();  // the world: made on first use
    CHECK(download(d_ints) == want);

    std::vector<double> doubles(33, 0.5 * (w.topology.placement().world_rank + 1));
    auto dwant = doubles;
    w.host.all_reduce<double>(dwant, ReduceOp::sum, w.topology.replication()).wait();
    auto d_doubles = upload(doubles);
    dev.all_reduce<double>(all(d_doubles), ReduceOp::sum, w.topology.replication()).wait();
    CHECK(download(d_doubles) == dwant);

    const int root = 1 % n;
    auto b = values(count, 4);
    auto bwant = b;
    w.host.broadcast<float>(bwant, root, part).wait();
    auto d_b = upload(b);
    dev.broadcast<float>(all(d_b), root, part).wait();
    CHECK(same_bits(download(d_b), bwant));
  }
  {  // the host channel stays MPI under a device transport (the engine's loss and norm scalars)
    double scalar = 1.0 + w.topology.placement().world_rank;
    dev.host_all_reduce<double>(std::span<double>(&scalar, 1), ReduceOp::sum, w.topology.world());
    CHECK(scalar == w.topology.world().size() * (w.topology.world().size() + 1) / 2.0);
    dev.barrier(w.topology.world());
  }
  {  // ordering: compute-stream work queued after wait() sees the gathered data
    const std::size_t big = 1 << 20;
    const auto shard = values(big, 6);
    std::vector<float> want(big * n);
    w.host.all_gather<float>(shard, want, part).wait();
    for (float& x : want) x *= 2.0f;
    auto d_shard = upload(shard);
    auto d_full = w.gpu.alloc<float>(big * n);
    w.gpu.fill(d_full.data(), big * n, 0.0f);  // queued before the gather: must not overwrite it
    comm::Request r = dev.all_gather<float>(all(d_shard), all(d_full), part);
    r.wait();
    w.gpu.scale(d_full.data(), 2.0f, big * n);
    CHECK(same_bits(download(d_full), want));
  }
}

// The error make_data_transport throws, or "" when it returns; a transport it returns is checked for its
// name (nullptr: "none").
std::string made(backends::Backend& backend, DeviceCollectives choice, std::string& name) {
  try {
    std::unique_ptr<comm::Transport> t =
        backends::make_data_transport(backend, world().topology, world().mpi, choice);
    name = t ? std::string(t->name()) : "none";
    return {};
  } catch (const InputError& e) {
    name.clear();
    CHECK(e.scope() == ErrorScope::all_ranks);  // a clean stop on every rank
    return e.what();
  }
}

}  // namespace

GPU_TEST(host_staged_matches_mpi) {
  backends::cuda::HostStagedTransport staged(world().gpu.stream(), world().mpi);
  CHECK(staged.name() == "staged");
  check_against_mpi(staged);
}

GPU_TEST(nccl_matches_mpi) {
  require_nccl();
  backends::cuda::NcclTransport nccl(world().topology, world().gpu.device(), world().gpu.stream());
  CHECK(nccl.name() == "nccl");
  check_against_mpi(nccl);
}

// backend.collectives: auto is NCCL exactly when no two ranks share a GPU; staged always works; nccl on
// shared GPUs, or any choice but auto for the cpu backend, is an all-ranks InputError; the environment
// variable of earlier versions is refused, not ignored.
GPU_TEST(make_data_transport_follows_the_deck) {
  World& w = world();
  const bool shared = gpus_shared();
  // Independent of the UUID comparison: the test's ranks run on one machine, so more ranks than GPUs share.
  if (backends::cuda::device_count() < w.topology.world().size()) CHECK(shared);
  std::string name;
  CHECK(made(w.gpu, DeviceCollectives::automatic, name).empty());
  CHECK(name == (shared ? "staged" : "nccl"));
  CHECK(made(w.gpu, DeviceCollectives::staged, name).empty());
  CHECK(name == "staged");
  const std::string nccl_error = made(w.gpu, DeviceCollectives::nccl, name);
  CHECK(shared ? nccl_error.find("share a GPU") != std::string::npos : name == "nccl");

  backends::cpu::CpuBackend cpu(1);
  CHECK(made(cpu, DeviceCollectives::automatic, name).empty());
  CHECK(name == "none");
  CHECK(made(cpu, DeviceCollectives::nccl, name).find("backend.device = cuda") != std::string::npos);

  setenv("MICS_CUDA_COLLECTIVES", "staged", 1);
  CHECK(made(w.gpu, DeviceCollectives::automatic, name).find("backend.collectives") != std::string::npos);
  unsetenv("MICS_CUDA_COLLECTIVES");
}

// Last: the compute stream is held by a host function for 300 ms, so a gather (which waits for it) cannot
// finish within a 1 ms timeout on any rank. The error must reach the caller as PeerError (from the enqueue
// or from test(), once the watchdog recorded it), and every later operation must raise it again instead of
// using the aborted communicators.
GPU_TEST(nccl_timeout_raises_on_the_calling_thread) {
  require_nccl();
  World& w = world();
  backends::cuda::NcclOptions options;
  options.timeout = std::chrono::milliseconds(1);
  options.on_unrecoverable = [](const std::string& reason) {  // must not be reached: the test raises in time
    std::fprintf(stderr, "FAILED: the last resort ran: %s\n", reason.c_str());
    std::_Exit(1);
  };
  backends::cuda::NcclTransport nccl(w.topology, w.gpu.device(), w.gpu.stream(), options);
  comm::Collectives dev(nccl, w.mpi);
  const comm::Group& part = w.topology.partition();
  const std::size_t count = 256;
  auto d_shard = upload(values(count, 7));
  auto d_full = w.gpu.alloc<float>(count * static_cast<std::size_t>(part.size()));
  CUDA_CHECK(cudaLaunchHostFunc(
      w.gpu.stream(), [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(300)); }, nullptr));
  std::string first;
  try {
    comm::Request r = dev.all_gather<float>(all(d_shard), all(d_full), part);
    while (!r.test()) std::this_thread::yield();  // throws once the watchdog saw the timeout
  } catch (const PeerError& e) {
    first = e.what();
  }
  CHECK(first.find("within 1 ms") != std::string::npos);  // not finished, or not even enqueued
  const auto raises_again = [&](const auto& call) {
    try {
      call();
    } catch (const PeerError& e) {
      return std::string(e.what()) == first;
    }
    return false;
  };
  CHECK(raises_again([&] { dev.all_gather<float>(all(d_shard), all(d_full), part).wait(); }));
  CHECK(raises_again([&] { dev.all_reduce<float>(all(d_full), ReduceOp::sum, part).wait(); }));
  w.gpu.synchronize();  // the held stream drains behind the aborted gather: nothing hangs
}

int main(int argc, char** argv) { return mics::cuda_test::run_mpi_tests(argc, argv); }
