// bench_model: throughput of one full training step on the CPU backend, against the sgemm ceiling of the
// same machine measured in the same run.
//
//   bench_model [--models tiny,gpt2-124m] [--micro-batch 4] [--seq-len 64] [--warmup 2] [--steps 5]
//               [--threads 0] [--gemm-size 1024] [--recompute none|blocks|both]
//
// A step is Engine::step at world 1 (one process, p = 1, no communication): every stage of the forward
// and backward pass, gradient accumulation into the model's flat buffers, the global grad norm and AdamW
// over all parameters. Achieved FLOP/s = tokens/s * (6N + 6LCT) (Gpt::flops_per_token, the llm.c and
// PaLM convention: attention-score FLOPs counted, recompute not counted: with --recompute blocks the
// recomputed forward is extra work the rate does not credit). Each model is warmed up, then the median of
// --steps steps is reported. --recompute both runs every model twice, without and with recomputation.
//
// The ceiling is the best OpenBLAS sgemm rate of this machine, measured two ways:
//   split  - the backend's own scheme: the GEMM cut along its larger output edge, one slice per OpenMP
//            thread, each slice a single-threaded sgemm (Backend::matmul_forward without bias);
//   plain  - one cblas_sgemm call with OpenBLAS's own thread pool at the same thread count.
// Both are measured on a square GEMM (--gemm-size) and on the largest GEMM shape of the model being
// benchmarked (the MLP: B*T x 4C x C); the best of all of them is the ceiling.
//
// Reference points on this machine type (2 cores, fp32, GPT-2 124M, micro-batch 4, sequence 64):
// PyTorch 1.13 CPU training about 160 tokens/s, llm.c's CPU train_gpt2 about 90 tokens/s.
#include <cblas.h>
#include <mpi.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <random>
#include <string>
#include <vector>

#include "mics/backends/backend.hpp"
#include "mics/comm/mpi_transport.hpp"
#include "mics/engine/engine.hpp"
#include "mics/model/gpt.hpp"
#include "mics/topology/plan.hpp"
#include "mics/util/error.hpp"

using namespace mics;

namespace {

struct Options {
  std::vector<std::string> models{"tiny", "gpt2-124m"};
  int micro_batch = 4;
  int seq_len = 64;
  int warmup = 2;
  int steps = 5;
  int threads = 0;
  int gemm_size = 1024;
  std::vector<config::Recompute> recompute{config::Recompute::none};
  std::string json;  // --json FILE: the calibration file `mics plan --calibration` reads
};

[[noreturn]] void usage(const char* message) {
  std::fprintf(stderr,
               "bench_model: %s\nusage: bench_model [--models a,b] [--micro-batch B] [--seq-len T] [--warmup W]\n"
               "                   [--steps S] [--threads N] [--gemm-size M] [--recompute none|blocks|both]\n"
               "                   [--json FILE]\n",
               message);
  std::exit(2);
}

int positive_int(const char* flag, const char* text) {
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || value <= 0 || value > 1 << 20)
    usage((std::string(flag) + " needs a positive integer, got '" + text + "'").c_str());
  return static_cast<int>(value);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") usage("benchmark of one training step against the sgemm ceiling");
    if (i + 1 >= argc) usage((flag + " needs a value").c_str());
    const char* value = argv[++i];
    if (flag == "--models") {
      o.models.clear();
      std::string list = value;
      for (std::size_t start = 0; start <= list.size();) {
        const std::size_t comma = std::min(list.find(',', start), list.size());
        if (comma > start) o.models.push_back(list.substr(start, comma - start));
        start = comma + 1;
      }
      if (o.models.empty()) usage("--models needs at least one preset");
    } else if (flag == "--micro-batch") {
      o.micro_batch = positive_int("--micro-batch", value);
    } else if (flag == "--seq-len") {
      o.seq_len = positive_int("--seq-len", value);
    } else if (flag == "--warmup") {
      o.warmup = positive_int("--warmup", value);
    } else if (flag == "--steps") {
      o.steps = positive_int("--steps", value);
    } else if (flag == "--threads") {
      o.threads = positive_int("--threads", value);
    } else if (flag == "--json") {
      o.json = value;
    } else if (flag == "--gemm-size") {
      o.gemm_size = positive_int("--gemm-size", value);
    } else if (flag == "--recompute") {
      const std::string mode = value;
      if (mode == "none") {
        o.recompute = {config::Recompute::none};
      } else if (mode == "blocks") {
        o.recompute = {config::Recompute::blocks};
      } else if (mode == "both") {
        o.recompute = {config::Recompute::none, config::Recompute::blocks};
      } else {
        usage(("--recompute needs none, blocks or both, got '" + mode + "'").c_str());
      }
    } else {
      usage(("unknown option " + flag).c_str());
    }
  }
  return o;
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// GFLOP/s of out (M,N) = A (M,K) B(N,K)^T, the backend's split scheme or one plain multi-threaded sgemm.
struct GemmRate {
  double split = 0;
  double plain = 0;
};

GemmRate measure_gemm(backends::Backend& backend, int threads, int M, int N, int K) {
  std::vector<float> a(static_cast<std::size_t>(M) * K), b(static_cast<std::size_t>(N) * K),
      c(static_cast<std::size_t>(M) * N);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float& x : a) x = dist(rng);
  for (float& x : b) x = dist(rng);
  const double flops = 2.0 * M * N * K;
  // Enough repetitions for ~0.3 s per sample at 50 GFLOP/s, at least 3.
  const int reps = std::max(3, static_cast<int>(0.3 * 50e9 / flops));
  auto time_it = [&](auto&& gemm) {
    gemm();  // warm-up: page faults, OpenBLAS buffers, thread pools
    std::vector<double> samples;
    for (int s = 0; s < 3; ++s) {
      const double t0 = now();
      for (int r = 0; r < reps; ++r) gemm();
      samples.push_back((now() - t0) / reps);
    }
    return flops / median(samples) / 1e9;
  };
  GemmRate rate;
  rate.split = time_it([&] { backend.matmul_forward(c.data(), a.data(), b.data(), nullptr, M, K, N); });
  openblas_set_num_threads(threads);
  rate.plain = time_it([&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a.data(), K, b.data(), K, 0.0f, c.data(), N);
  });
  openblas_set_num_threads(1);  // back to what the backend runs with
  return rate;
}

// Seconds of the linear layers alone of one step (forward and backward of every nn.Linear and of the LM
// head, the same backend calls with the same shapes as the model): how much of the compute time is GEMM.
double gemm_only_seconds(backends::Backend& backend, const model::GptShape& s, int n, int reps) {
  const int C = s.channels;
  struct Linear {
    int in, out;
    bool bias;
    int count;
  };
  const std::vector<Linear> linears{{C, 3 * C, true, s.layers}, {C, C, true, s.layers}, {C, 4 * C, true, s.layers},
                                    {4 * C, C, true, s.layers}, {C, s.padded_vocab, false, 1}};
  std::size_t max_w = 0, max_io = 0;
  for (const Linear& l : linears) {
    max_w = std::max(max_w, static_cast<std::size_t>(l.in) * l.out);
    max_io = std::max(max_io, static_cast<std::size_t>(n) * std::max(l.in, l.out));
  }
  auto w = backend.alloc<float>(max_w), dw = backend.alloc<float>(max_w);
  auto x = backend.alloc<float>(max_io), y = backend.alloc<float>(max_io), dx = backend.alloc<float>(max_io);
  auto b = backend.alloc<float>(static_cast<std::size_t>(s.padded_vocab)),
       db = backend.alloc<float>(static_cast<std::size_t>(s.padded_vocab));
  backend.fill(w.data(), max_w, 0.01f);
  backend.fill(dw.data(), max_w, 0.0f);
  backend.fill(x.data(), max_io, 0.5f);
  backend.fill(y.data(), max_io, 0.25f);
  backend.fill(b.data(), b.size(), 0.0f);
  backend.fill(db.data(), db.size(), 0.0f);
  auto one_step = [&] {
    for (const Linear& l : linears) {
      for (int k = 0; k < l.count; ++k) {
        backend.matmul_forward(y.data(), x.data(), w.data(), l.bias ? b.data() : nullptr, n, l.in, l.out);
        backend.matmul_backward(dx.data(), dw.data(), l.bias ? db.data() : nullptr, y.data(), x.data(), w.data(), n,
                                l.in, l.out);
      }
    }
  };
  one_step();
  std::vector<double> samples;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now();
    one_step();
    samples.push_back(now() - t0);
  }
  return median(samples);
}

struct StepStats {
  double step_s = 0, compute_s = 0, optimizer_s = 0, gemm_s = 0;
  double tokens_per_s = 0, gflops = 0;
  double params = 0;
  double activation_bytes = 0;
};

StepStats bench_model(const std::string& preset, const Options& o, backends::Backend& backend,
                      comm::Collectives& collectives, const topology::Topology& topo,
                      const topology::ParallelPlan& plan, config::Recompute recompute) {
  model::GptShape shape = model::preset_shape(preset);
  if (o.seq_len > shape.max_seq_len) {
    throw InputError("--seq-len " + std::to_string(o.seq_len) + " exceeds " + preset + "'s max_seq_len " +
                std::to_string(shape.max_seq_len));
  }
  model::Gpt gpt(shape, backend, o.micro_batch, o.seq_len, recompute);
  engine::OptimizerOptions adamw;
  adamw.weight_decay = 0.1f;
  adamw.grad_clip = 1.0f;
  engine::Engine engine(gpt, backend, collectives, topo, plan, adamw);
  engine.init_parameters(1337);

  const int n = o.micro_batch * o.seq_len;
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(n) + 1);
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> dist(0, shape.vocab - 1);
  for (auto& t : tokens) t = dist(rng);
  // The same batch every step: the step's work does not depend on the tokens.
  const engine::BatchFn batch = [&](int, std::int32_t* inputs, std::int32_t* targets) {
    std::memcpy(inputs, tokens.data(), sizeof(std::int32_t) * static_cast<std::size_t>(n));
    std::memcpy(targets, tokens.data() + 1, sizeof(std::int32_t) * static_cast<std::size_t>(n));
  };

  StepStats st;
  st.params = static_cast<double>(gpt.layout().total_numel());
  st.activation_bytes = static_cast<double>(gpt.activation_bytes());
  std::vector<double> total, compute, optimizer;
  for (int s = 0; s < o.warmup + o.steps; ++s) {
    const double t0 = now();
    const engine::StepResult r = engine.step(s, 1e-4f, batch);
    const double dt = now() - t0;
    if (s < o.warmup) continue;
    total.push_back(dt);
    compute.push_back(r.times.compute);
    optimizer.push_back(r.times.optimizer);
  }
  st.gemm_s = gemm_only_seconds(backend, shape, n, o.steps);
  st.step_s = median(total);
  st.compute_s = median(compute);
  st.optimizer_s = median(optimizer);
  st.tokens_per_s = n / st.step_s;
  st.gflops = st.tokens_per_s * model::Gpt::flops_per_token(shape, o.seq_len) / 1e9;
  return st;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  int status = 0;
  try {
    if (world != 1) throw InputError("bench_model runs as one process (got a world of " + std::to_string(world) + ")");
    const Options o = parse(argc, argv);
    auto backend = backends::make_cpu_backend(o.threads);
    const int threads = omp_get_max_threads();
    comm::MpiTransport transport;
    comm::Collectives collectives(transport, transport);
    const topology::ParallelPlan plan = topology::make_plan({}, o.micro_batch, 1, 1, 1);
    const topology::Topology topo = topology::Topology::create(plan.shape);

    std::printf("bench_model: cpu backend, %d OpenMP threads (OpenBLAS single-threaded inside each), "
                "micro-batch %d, sequence %d, median of %d steps after %d warm-up\n",
                threads, o.micro_batch, o.seq_len, o.steps, o.warmup);
    std::printf("step = Engine::step at world 1: forward, backward, grad norm + clip, AdamW over all parameters\n\n");

    // --- ceiling ---------------------------------------------------------------------------------------
    struct GemmRow {
      std::string what;
      int M, N, K;
      GemmRate rate;
    };
    std::vector<GemmRow> gemms;
    gemms.push_back({"square", o.gemm_size, o.gemm_size, o.gemm_size, {}});
    for (const std::string& preset : o.models) {
      const model::GptShape s = model::preset_shape(preset);
      gemms.push_back({preset + " mlp", o.micro_batch * o.seq_len, 4 * s.channels, s.channels, {}});
    }
    double ceiling = 0;
    std::printf("%-16s %6s %6s %6s | %14s %14s\n", "sgemm", "M", "N", "K", "split GFLOP/s", "plain GFLOP/s");
    for (GemmRow& g : gemms) {
      g.rate = measure_gemm(*backend, threads, g.M, g.N, g.K);
      ceiling = std::max({ceiling, g.rate.split, g.rate.plain});
      std::printf("%-16s %6d %6d %6d | %14.1f %14.1f\n", g.what.c_str(), g.M, g.N, g.K, g.rate.split, g.rate.plain);
    }
    std::printf("ceiling (best of the above): %.1f GFLOP/s\n\n", ceiling);

    // --- training steps --------------------------------------------------------------------------------
    std::printf("%-10s %-9s %9s %9s %9s %9s %9s %10s %9s %9s %9s %9s %9s\n", "model", "recompute", "params",
                "step ms", "fwd+bwd", "gemms", "optim", "tokens/s", "GFLOP/s", "ratio", "fb ratio", "bound",
                "act MiB");
    std::string json = "{\"benchmark\": \"model\", \"backend\": \"cpu\", \"models\": [";
    bool first_row = true;
    for (const std::string& preset : o.models) {
     for (const config::Recompute recompute : o.recompute) {
      const StepStats st = bench_model(preset, o, *backend, collectives, topo, plan, recompute);
      if (recompute == config::Recompute::none) {
        // Calibration for `mics plan`: the FLOP rate of the forward and backward stages and the bytes per
        // second of the optimizer pass (28 bytes per parameter).
        const double tokens = static_cast<double>(o.micro_batch) * o.seq_len;
        char row[640];
        std::snprintf(row, sizeof row,
                      "%s{\"preset\": \"%s\", \"micro_batch\": %d, \"seq_len\": %d, \"params\": %.0f, "
                      "\"step_s\": %.6g, \"compute_s\": %.6g, \"optimizer_s\": %.6g, \"tokens_per_s\": %.6g, "
                      "\"compute_flops_per_s\": %.6g, \"optimizer_bytes_per_s\": %.6g}",
                      first_row ? "" : ", ", preset.c_str(), o.micro_batch, o.seq_len, st.params,
                      st.step_s, st.compute_s, st.optimizer_s, st.tokens_per_s,
                      tokens * model::Gpt::flops_per_token(model::preset_shape(preset), o.seq_len) / st.compute_s,
                      st.params * 28 / st.optimizer_s);
        json += row;
        first_row = false;
      }
      const double fb_gflops = st.gflops * st.step_s / st.compute_s;
      // The best ratio this step could reach with every FLOP at the ceiling and the optimizer as measured.
      const double ideal_s = st.gflops * st.step_s / ceiling;
      const double bound = ideal_s / (ideal_s + st.optimizer_s);
      std::printf("%-10s %-9s %8.2fM %9.1f %9.1f %9.1f %9.1f %10.1f %9.2f %8.1f%% %8.1f%% %8.1f%% %9.1f\n",
                  preset.c_str(), std::string(config::to_string(recompute)).c_str(), st.params / 1e6,
                  st.step_s * 1e3, st.compute_s * 1e3, st.gemm_s * 1e3, st.optimizer_s * 1e3, st.tokens_per_s,
                  st.gflops, 100.0 * st.gflops / ceiling, 100.0 * fb_gflops / ceiling, 100.0 * bound,
                  st.activation_bytes / (1 << 20));
      std::fflush(stdout);
     }
    }
    if (!o.json.empty()) {
      std::FILE* f = std::fopen(o.json.c_str(), "w");
      if (!f) throw InputError("--json: cannot write '" + o.json + "'");
      std::fprintf(f, "%s]}\n", json.c_str());
      std::fclose(f);
      std::printf("calibration written to %s\n", o.json.c_str());
    }
    std::printf("\nms columns: whole step, its forward+backward kernels, the linear layers alone (same shapes and\n"
                "backend calls, outside the model), the optimizer (grad norm, clip, AdamW: memory-bound, 28 B/param).\n"
                "ratio = step GFLOP/s / sgemm ceiling (target >= 70%% for gpt2-124m); fb ratio = the same for the\n"
                "forward+backward time alone; bound = the ratio with every FLOP at the ceiling and the optimizer\n"
                "as measured (fp32 AdamW streams 28 B/param, so at B*T = 256 tokens it caps the ratio).\n"
                "act MiB = the model's activations and backward scratch (Gpt::activation_bytes); with recompute =\n"
                "blocks the recomputed forward is not credited in GFLOP/s.\n"
                "Reference, GPT-2 124M, B=4, T=64 on this machine type: PyTorch 1.13 CPU ~160 tokens/s, "
                "llm.c CPU ~90 tokens/s.\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_model: %s\n", e.what());
    status = 1;
  }
  MPI_Finalize();
  return status;
}
