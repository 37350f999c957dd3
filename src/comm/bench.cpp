#include "mics/comm/bench.hpp"

#include <mpi.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mics/comm/mpi_transport.hpp"
#include "mics/util/error.hpp"

namespace mics::comm {

std::size_t parse_byte_size(const std::string& option, const std::string& text) {
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  const std::string suffix = text.substr(digits);
  std::size_t multiplier = 1;
  if (suffix == "K" || suffix == "k") multiplier = std::size_t{1} << 10;
  else if (suffix == "M" || suffix == "m") multiplier = std::size_t{1} << 20;
  else if (suffix == "G" || suffix == "g") multiplier = std::size_t{1} << 30;
  else if (!suffix.empty()) digits = 0;
  if (digits == 0 || digits > 12) {
    throw InputError("option " + option + ": bad size '" + text +
                "' (expected a whole number of bytes with an optional K, M or G suffix)");
  }
  return std::stoull(text.substr(0, digits)) * multiplier;
}

void check_bench_options(const BenchOptions& options) {
  if (options.min_bytes == 0) throw InputError("option -b: the minimum size must be at least 1 byte");
  if (options.max_bytes < options.min_bytes) {
    throw InputError("option -e: the maximum size " + std::to_string(options.max_bytes) +
                " is smaller than the minimum size " + std::to_string(options.min_bytes));
  }
}

namespace {

enum class Kind { all_gather, hierarchical_all_gather, reduce_scatter, hierarchical_reduce_scatter, all_reduce };
bool hierarchical(Kind kind) { return kind == Kind::hierarchical_all_gather || kind == Kind::hierarchical_reduce_scatter; }

// The benchmark's own duplicates of the topology's groups (its traffic stays out of any training's).
Group duplicate(const Group& source, int node) {
  MPI_Comm copy = MPI_COMM_NULL;
  MICS_MPI_CHECK(MPI_Comm_dup(source.handle(), &copy));
  return Group(copy, source.kind(), node);
}

struct Table {
  Kind kind;
  std::string title;
  std::string collective;  // for the JSON: all_gather, reduce_scatter, all_reduce
  std::string group;       // world, partition, replication, intra-node, inter-node, hierarchical
  Group* comm;   // flat collectives
  Group* inter;  // hierarchical
  Group* intra;
};

// Inputs chosen so every expected output is an integer below 2^24, exact in float.
float gather_input(int rank, std::size_t k) { return static_cast<float>((static_cast<std::size_t>(rank) * 131 + k) % 1021); }
float reduce_input(int rank, std::size_t e) { return static_cast<float>((static_cast<std::size_t>(rank) + e) % 64); }
float reduce_expected(int ranks, std::size_t e) {
  std::size_t sum = 0;
  for (int i = 0; i < ranks; ++i) sum += (static_cast<std::size_t>(i) + e) % 64;
  return static_cast<float>(sum);
}

struct Row {
  std::size_t bytes;
  std::size_t count;
  double time_us;
  double algbw;
  double busbw;
  long long wrong;
};

// One buffer as the data transport sees it: the host vector itself (no BenchMemory), or a copy of it in
// the BenchMemory (RAII).
class DeviceCopy {
 public:
  explicit DeviceCopy(BenchMemory* memory) : memory_(memory) {}
  ~DeviceCopy() {
    if (memory_ && device_) memory_->release(device_);
  }
  DeviceCopy(const DeviceCopy&) = delete;
  DeviceCopy& operator=(const DeviceCopy&) = delete;

  // From now on stands for `host` (same size): its contents are copied once to the memory.
  void hold(std::vector<float>& host) {
    host_ = host.data();
    if (!memory_) return;
    device_ = memory_->allocate(std::max<std::size_t>(host.size() * sizeof(float), 1));
    put(host);
  }
  void put(const std::vector<float>& host) {
    if (memory_) memory_->copy_from_host(device_, host.data(), host.size() * sizeof(float));
  }
  void get_into(std::vector<float>& host) const {
    if (memory_) memory_->copy_to_host(host.data(), device_, host.size() * sizeof(float));
  }
  float* get() const { return static_cast<float*>(memory_ ? device_ : host_); }

 private:
  BenchMemory* memory_;
  void* device_ = nullptr;
  float* host_ = nullptr;
};

class Runner {
 public:
  Runner(const BenchOptions& options, Group& world, MpiTransport& mpi, Transport& data, BenchMemory* memory,
         std::ostream& out)
      : options_(options), world_(world), mpi_(mpi), data_(data), memory_(memory), out_(out) {}

  void run_table(const Table& table) {
    const Group& group = hierarchical(table.kind) ? *table.intra : *table.comm;
    const int n = hierarchical(table.kind) ? table.inter->size() * table.intra->size() : group.size();
    const std::string redop = (table.kind == Kind::all_gather || table.kind == Kind::hierarchical_all_gather)
                                  ? "none"
                                  : std::string(to_string(ReduceOp::sum));
    if (world_.rank() == 0) {
      out_ << "#\n# " << table.title << ": " << world_.size() / n << " group(s) of " << n << " ranks\n"
           << "#\n#        size(B)        count    type   redop    time(us)  algbw(GB/s)  busbw(GB/s)    #wrong\n";
    }
    double busbw_sum = 0;
    int rows = 0;
    nlohmann::ordered_json json_rows = nlohmann::ordered_json::array();
    for (std::size_t bytes = options_.min_bytes; bytes <= options_.max_bytes;) {
      const std::size_t elem = sizeof(float);
      const bool per_rank = table.kind != Kind::all_reduce;
      const std::size_t count = per_rank ? bytes / (elem * static_cast<std::size_t>(n)) : bytes / elem;
      if (count > 0) {
        const Row row = run_size(table, n, count);
        busbw_sum += row.busbw;
        ++rows;
        json_rows.push_back({{"bytes", row.bytes},
                             {"count", row.count},
                             {"time_us", row.time_us},
                             {"algbw", row.algbw},
                             {"busbw", row.busbw}});
        if (world_.rank() == 0) {
          char line[200];
          std::snprintf(line, sizeof line, "%16zu %12zu %7s %7s %11.2f %12.3f %12.3f %9s\n", row.bytes, row.count,
                        std::string(to_string(DataType::f32)).c_str(), redop.c_str(), row.time_us, row.algbw, row.busbw,
                        options_.check ? std::to_string(row.wrong).c_str() : "N/A");
          out_ << line;
        }
      }
      if (bytes > options_.max_bytes / options_.factor) break;
      bytes *= options_.factor;
    }
    const double average = rows > 0 ? busbw_sum / rows : 0.0;
    if (world_.rank() == 0) {
      char line[120];
      std::snprintf(line, sizeof line, "# Avg bus bandwidth    : %.3f GB/s\n", average);
      out_ << line;
    }
    busbw_total_ += busbw_sum;
    rows_total_ += rows;
    json_.push_back({{"collective", table.collective},
                     {"group", table.group},
                     {"ranks", n},
                     {"groups", world_.size() / n},
                     {"rows", std::move(json_rows)}});
  }
  const nlohmann::ordered_json& json() const { return json_; }

  long long total_wrong() const { return wrong_total_; }
  double average_busbw() const { return rows_total_ > 0 ? busbw_total_ / rows_total_ : 0.0; }

 private:
  Row run_size(const Table& table, int n, std::size_t count) {
    const Group& group = hierarchical(table.kind) ? *table.intra : *table.comm;
    // The rank's index in the gathered/scattered layout (partition rank for the hierarchical forms).
    const int me = hierarchical(table.kind) ? table.inter->rank() * table.intra->size() + table.intra->rank()
                                            : group.rank();
    const std::size_t total = count * static_cast<std::size_t>(n);
    std::vector<float> in, out;
    DeviceCopy d_in(memory_), d_out(memory_);  // the buffers `data_` moves: `in` and `out` themselves on host memory
    std::function<void()> op;
    switch (table.kind) {
      case Kind::all_gather:
      case Kind::hierarchical_all_gather:
        in.resize(count);
        out.assign(total, -1.0f);
        for (std::size_t k = 0; k < count; ++k) in[k] = gather_input(me, k);
        if (table.kind == Kind::all_gather) {
          op = [&] { data_.all_gather(d_in.get(), d_out.get(), count, DataType::f32, *table.comm).wait(); };
        } else {
          op = [&] {
            data_.hierarchical_all_gather(d_in.get(), d_out.get(), count, DataType::f32, *table.inter, *table.intra)
                .wait();
          };
        }
        break;
      case Kind::reduce_scatter:
      case Kind::hierarchical_reduce_scatter:
        in.resize(total);
        out.assign(count, -1.0f);
        for (std::size_t e = 0; e < total; ++e) in[e] = reduce_input(me, e);
        if (table.kind == Kind::reduce_scatter) {
          op = [&] {
            data_.reduce_scatter(d_in.get(), d_out.get(), count, DataType::f32, ReduceOp::sum, *table.comm).wait();
          };
        } else {
          op = [&] {
            data_.hierarchical_reduce_scatter(d_in.get(), d_out.get(), count, DataType::f32, ReduceOp::sum, *table.inter,
                                             *table.intra)
                .wait();
          };
        }
        break;
      case Kind::all_reduce:
        in.resize(count);
        out.assign(count, -1.0f);
        for (std::size_t e = 0; e < count; ++e) in[e] = reduce_input(me, e);
        // In place on `out` (as training runs it); checked below on a fresh copy of the inputs.
        out = in;
        op = [&] { data_.all_reduce(d_out.get(), count, DataType::f32, ReduceOp::sum, *table.comm).wait(); };
        break;
    }
    d_in.hold(in);
    d_out.hold(out);
    for (int i = 0; i < options_.warmup; ++i) op();
    synchronize();
    mpi_.barrier(world_);
    const double start = MPI_Wtime();
    for (int i = 0; i < options_.iters; ++i) op();
    synchronize();
    double seconds = (MPI_Wtime() - start) / options_.iters;
    MICS_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &seconds, 1, MPI_DOUBLE, MPI_SUM, world_.handle()));
    seconds /= world_.size();

    long long wrong = 0;
    if (options_.check) {
      // One more run on fresh outputs: the timed ones may have reduced in place many times over.
      if (table.kind == Kind::all_reduce) {
        out = in;
      } else {
        std::fill(out.begin(), out.end(), -1.0f);
      }
      d_out.put(out);
      op();
      synchronize();
      d_out.get_into(out);
      switch (table.kind) {
        case Kind::all_gather:
        case Kind::hierarchical_all_gather:
          for (std::size_t i = 0; i < total; ++i) wrong += out[i] != gather_input(static_cast<int>(i / count), i % count);
          break;
        case Kind::reduce_scatter:
        case Kind::hierarchical_reduce_scatter:
          for (std::size_t k = 0; k < count; ++k) {
            wrong += out[k] != reduce_expected(n, static_cast<std::size_t>(me) * count + k);
          }
          break;
        case Kind::all_reduce:
          for (std::size_t e = 0; e < count; ++e) wrong += out[e] != reduce_expected(n, e);
          break;
      }
      MICS_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_LONG_LONG, MPI_SUM, world_.handle()));
      wrong_total_ += wrong;
    }
    Row row;
    row.bytes = total * sizeof(float);
    row.count = count;
    if (table.kind == Kind::all_reduce) row.bytes = count * sizeof(float);
    row.time_us = seconds * 1e6;
    row.algbw = seconds > 0 ? static_cast<double>(row.bytes) / seconds / 1e9 : 0.0;
    const double factor = table.kind == Kind::all_reduce ? 2.0 * (n - 1) / n : static_cast<double>(n - 1) / n;
    row.busbw = row.algbw * factor;
    row.wrong = wrong;
    return row;
  }

  void synchronize() {
    if (memory_) memory_->synchronize();
  }

  const BenchOptions& options_;
  Group& world_;
  MpiTransport& mpi_;
  Transport& data_;
  BenchMemory* memory_;
  std::ostream& out_;
  nlohmann::ordered_json json_ = nlohmann::ordered_json::array();
  long long wrong_total_ = 0;
  double busbw_total_ = 0;
  int rows_total_ = 0;
};

}  // namespace

int run_comm_benchmark(const topology::Topology& topology, const BenchOptions& options, MpiTransport& mpi,
                       Transport& data, BenchMemory* memory, std::ostream& out) {
  check_bench_options(options);
  const int node = topology.placement().node;
  Group world = duplicate(topology.world(), node);
  Group partition = duplicate(topology.partition(), node);
  Group replication = duplicate(topology.replication(), node);
  const bool spans = topology.shape().spans_nodes();
  Group intra = spans ? duplicate(topology.intra_node(), node) : Group();
  Group inter = spans ? duplicate(topology.inter_node(), node) : Group();

  struct Named {
    std::string name;
    Group* comm;
    std::string key;  // the group's name in the JSON
  };
  std::vector<Named> groups;
  for (Named g : {Named{"world", &world, "world"}, Named{"partition groups", &partition, "partition"},
                  Named{"replication groups", &replication, "replication"},
                  Named{"intra-node groups", &intra, "intra-node"}, Named{"inter-node groups", &inter, "inter-node"}}) {
    if (g.comm->valid() && g.comm->size() > 1) groups.push_back(g);
  }

  Runner runner(options, world, mpi, data, memory, out);
  if (world.rank() == 0) {
    out << "# mics bench comm: " << options.min_bytes << " to " << options.max_bytes << " bytes, factor "
        << options.factor << ", " << options.warmup << " warm-up and " << options.iters
        << " timed iterations, check " << (options.check ? 1 : 0) << ", device " << (memory ? memory->name() : "cpu")
        << " (" << data.name() << ")\n";
    // describe() spans lines: keep every line a comment.
    std::string description = topology.describe();
    for (std::size_t at = description.find('\n'); at != std::string::npos; at = description.find('\n', at + 3)) {
      description.replace(at, 1, "\n# ");
    }
    out << "# " << description << "\n";
    if (groups.empty()) out << "#\n# no group has more than one rank: nothing to measure\n";
  }
  const struct {
    Kind kind;
    const char* name;
  } collectives[] = {{Kind::all_gather, "all_gather"}, {Kind::reduce_scatter, "reduce_scatter"},
                     {Kind::all_reduce, "all_reduce"}};
  for (const auto& collective : collectives) {
    for (const Named& group : groups) {
      const bool flat_and_hierarchical =
          (collective.kind == Kind::all_gather || collective.kind == Kind::reduce_scatter) && group.comm == &partition &&
          spans;
      runner.run_table({collective.kind,
                        std::string(collective.name) + " over " + group.name + (flat_and_hierarchical ? " (flat)" : ""),
                        collective.name, group.key, group.comm, nullptr, nullptr});
      if (flat_and_hierarchical && collective.kind == Kind::all_gather) {
        runner.run_table({Kind::hierarchical_all_gather,
                          std::string(collective.name) + " over partition groups (hierarchical: inter-node, then intra-node)",
                          collective.name, "hierarchical", nullptr, &inter, &intra});
      }
      if (flat_and_hierarchical && collective.kind == Kind::reduce_scatter) {
        runner.run_table({Kind::hierarchical_reduce_scatter,
                          std::string(collective.name) + " over partition groups (hierarchical: intra-node, then inter-node)",
                          collective.name, "hierarchical", nullptr, &inter, &intra});
      }
    }
  }
  if (world.rank() == 0) {
    char line[160];
    std::snprintf(line, sizeof line, "#\n# Out of bounds values : %lld %s\n# Avg bus bandwidth    : %.3f GB/s (all tables)\n",
                  runner.total_wrong(), runner.total_wrong() == 0 ? "OK" : "FAILED", runner.average_busbw());
    out << line;
    if (!options.json.empty()) {
      const topology::Shape& shape = topology.shape();
      std::ofstream file(options.json);
      // Non-finite numbers (a zero time) are written as null; `mics plan --calibration` refuses them.
      nlohmann::ordered_json json;
      json["benchmark"] = "comm";
      json["world"] = shape.world;
      json["ranks_per_node"] = shape.ranks_per_node;
      json["partition_size"] = shape.partition_size;
      json["iters"] = options.iters;
      json["device"] = options.device;
      json["tables"] = runner.json();
      file << json.dump(1) << "\n";
      if (!file) throw InputError("--json: cannot write '" + options.json + "'");
      out << "# calibration written to " << options.json << "\n";
    }
  }
  return static_cast<int>(std::min<long long>(runner.total_wrong(), INT_MAX));
}

}  // namespace mics::comm
