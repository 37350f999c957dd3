// bench_gpu: single-GPU training throughput and MFU of the CUDA backend, with device time per op.
//
//   bench_gpu [--models gpt2-124m,gpt-1.3b] [--micro-batch 0] [--seq-len 1024] [--warmup 3] [--steps 10]
//             [--precision bf16|fp32] [--peak-tflops 0]
//
// A step is one micro-batch forward and backward of the whole model (model::forward_backward over full,
// unsharded unit buffers: one GPU, no communication), then AdamW over every parameter. tokens/s =
// B*T / median step time (CUDA events on the compute stream); model FLOP/s = tokens/s * (6N + 6LCT)
// (Gpt::flops_per_token: the llm.c / PaLM convention); MFU = model FLOP/s / the GPU's dense bf16 peak
// (H100 SXM 989 TFLOP/s, A100 312; --peak-tflops overrides, e.g. 756 for an H100 PCIe). After the timed
// steps one more step runs with every op bracketed by CUDA events: the per-op table (ms per step, share).
//
// Models: every preset of model::preset_names(), plus gpt-1.3b (GPT-3 XL: L 24, NH 16, C 2048).
// --micro-batch 0 picks per model: 16 up to 200M parameters, 4 above (fits 80 GB with fp32 states).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "mics/backends/cuda/cuda_backend.hpp"
#include "mics/backends/cuda/device.hpp"
#include "mics/model/gpt.hpp"
#include "timed_backend.hpp"

using namespace mics;

namespace {

struct Options {
  std::vector<std::string> models{"gpt2-124m", "gpt-1.3b"};
  int micro_batch = 0;
  int seq_len = 1024;
  int warmup = 3;
  int steps = 10;
  backends::cuda::MatmulPrecision precision = backends::cuda::MatmulPrecision::bf16;
  double peak_tflops = 0;
};

[[noreturn]] void usage(const char* message) {
  std::fprintf(stderr,
               "bench_gpu: %s\nusage: bench_gpu [--models a,b] [--micro-batch B] [--seq-len T] [--warmup n] "
               "[--steps n] [--precision bf16|fp32] [--peak-tflops X]\n",
               message);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) usage(("missing value after " + arg).c_str());
    const char* value = argv[++i];
    if (arg == "--models") {
      o.models.clear();
      std::stringstream list(value);
      for (std::string name; std::getline(list, name, ',');) o.models.push_back(name);
    } else if (arg == "--micro-batch") {
      o.micro_batch = std::atoi(value);
    } else if (arg == "--seq-len") {
      o.seq_len = std::atoi(value);
    } else if (arg == "--warmup") {
      o.warmup = std::atoi(value);
    } else if (arg == "--steps") {
      o.steps = std::max(1, std::atoi(value));
    } else if (arg == "--precision") {
      if (std::strcmp(value, "bf16") == 0) {
        o.precision = backends::cuda::MatmulPrecision::bf16;
      } else if (std::strcmp(value, "fp32") == 0) {
        o.precision = backends::cuda::MatmulPrecision::fp32;
      } else {
        usage("--precision is bf16 or fp32");
      }
    } else if (arg == "--peak-tflops") {
      o.peak_tflops = std::atof(value);
    } else {
      usage(("unknown option " + arg).c_str());
    }
  }
  return o;
}

model::GptShape shape_of(const std::string& name) {
  if (name == "gpt-1.3b") {
    model::GptShape s{24, 16, 2048, 50257, 0, 1024};
    s.padded_vocab = model::padded_vocab(s.vocab);
    return s;
  }
  return model::preset_shape(name);
}

// Dense bf16 tensor-core peak of the device, TFLOP/s; 0 when unknown.
double peak_for(const std::string& device) {
  if (device.find("H100") != std::string::npos && device.find("PCIe") != std::string::npos) return 756;
  if (device.find("H100") != std::string::npos || device.find("H200") != std::string::npos) return 989;
  if (device.find("A100") != std::string::npos) return 312;
  return 0;
}

void bench_model(const std::string& name, const Options& o, backends::cuda::CudaBackend& gpu, double peak) {
  const model::GptShape shape = shape_of(name);
  model::validate_shape(shape);
  const int T = std::min(o.seq_len, shape.max_seq_len);
  bench::TimedBackend backend(gpu);
  const std::size_t params = model::ParamLayout(shape).total_numel();
  const int B = o.micro_batch > 0 ? o.micro_batch : (params <= 200'000'000 ? 16 : 4);

  model::Gpt gpt(shape, backend, B, T);
  const auto& units = gpt.layout().units();
  std::vector<backends::Buffer<float>> p, g, m, v;
  std::vector<const float*> p_ptr;
  std::vector<float*> g_ptr;
  for (std::size_t u = 0; u < units.size(); ++u) {
    const std::size_t n = units[u].numel;
    p.push_back(backend.alloc<float>(n));
    g.push_back(backend.alloc<float>(n));
    m.push_back(backend.alloc<float>(n));
    v.push_back(backend.alloc<float>(n));
    backend.zero(p.back().data(), n);
    backend.zero(m.back().data(), n);
    backend.zero(v.back().data(), n);
    gpt.init_unit(static_cast<int>(u), p.back().data(), 1234);
    p_ptr.push_back(p.back().data());
    g_ptr.push_back(g.back().data());
  }
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> token(0, shape.vocab - 1);
  std::vector<std::int32_t> inputs(static_cast<std::size_t>(B) * T), targets(inputs.size());
  for (auto& t : inputs) t = token(rng);
  for (auto& t : targets) t = token(rng);

  backends::cuda::Event start(true), stop(true);
  float loss = 0;
  auto step = [&](int index) {
    gpt.set_batch(inputs.data(), targets.data());
    for (std::size_t u = 0; u < units.size(); ++u) backend.zero(g_ptr[u], units[u].numel);
    loss = model::forward_backward(gpt, p_ptr, g_ptr, 1.0f);
    for (std::size_t u = 0; u < units.size(); ++u) {
      backend.adamw(p[u].data(), g[u].data(), m[u].data(), v[u].data(), units[u].numel,
                    backends::AdamWStep{3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, index + 1});
    }
  };
  for (int i = 0; i < o.warmup; ++i) step(i);
  std::vector<double> ms;
  for (int i = 0; i < o.steps; ++i) {
    start.record(gpu.stream());
    step(o.warmup + i);
    stop.record(gpu.stream());
    gpu.synchronize();
    float elapsed = 0;
    CUDA_CHECK(cudaEventElapsedTime(&elapsed, start.get(), stop.get()));
    ms.push_back(elapsed);
  }
  std::sort(ms.begin(), ms.end());
  const double median_ms = ms[ms.size() / 2];
  backend.set_enabled(true);
  step(o.warmup + o.steps);
  const std::map<std::string, double> ops = backend.take_times();
  backend.set_enabled(false);

  const double tokens = static_cast<double>(B) * T;
  const double tokens_per_s = tokens / (median_ms * 1e-3);
  const double tflops = tokens_per_s * model::Gpt::flops_per_token(shape, T) * 1e-12;
  std::printf("\n%s: %.1fM parameters, L %d C %d NH %d, B %d T %d, %s GEMMs, activations %.1f GiB\n", name.c_str(),
              static_cast<double>(params) * 1e-6, shape.layers, shape.channels, shape.heads, B, T,
              backends::cuda::to_string(o.precision), static_cast<double>(gpt.activation_bytes()) / (1 << 30));
  std::printf("  step %.2f ms (median of %d, min %.2f)  %.0f tokens/s  %.1f TFLOP/s", median_ms, o.steps, ms.front(),
              tokens_per_s, tflops);
  if (peak > 0) std::printf("  MFU %.1f%% of %.0f", 100.0 * tflops / peak, peak);
  std::printf("  (loss %.3f)\n", static_cast<double>(loss));
  double total = 0;
  for (const auto& [op, t] : ops) total += t;
  std::vector<std::pair<std::string, double>> sorted(ops.begin(), ops.end());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::printf("  %-24s %10s %7s\n", "op", "ms/step", "share");
  for (const auto& [op, t] : sorted) std::printf("  %-24s %10.3f %6.1f%%\n", op.c_str(), t, 100.0 * t / total);
  std::printf("  %-24s %10.3f\n", "sum of ops", total);
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  if (backends::cuda::device_count() == 0) {
    std::fprintf(stderr, "bench_gpu: no CUDA device is visible\n");
    return 77;
  }
  try {
    backends::cuda::CudaBackend gpu(backends::cuda::CudaOptions{-1, o.precision});
    const std::string device = backends::cuda::describe_device(gpu.device());
    const double peak = o.peak_tflops > 0 ? o.peak_tflops : peak_for(device);
    std::printf("bench_gpu: %s, peak %s\n", device.c_str(),
                peak > 0 ? (std::to_string(static_cast<int>(peak)) + " TFLOP/s dense bf16").c_str()
                         : "unknown (pass --peak-tflops for MFU)");
    for (const std::string& name : o.models) bench_model(name, o, gpu, peak);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gpu: %s\n", e.what());
    return 1;
  }
  return 0;
}
