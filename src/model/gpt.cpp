// GPT-2 forward and backward, stage by stage, over the units' flat parameter buffers (llm.c's gpt2_forward
// and gpt2_backward cut at unit boundaries). Shapes: B batch, T time, C channels, NH heads, L layers,
// Vp padded vocab; N = B*T rows.
#include <cmath>
#include <string>
#include <vector>

#include "mics/model/gpt.hpp"
#include "mics/util/error.hpp"

namespace mics::model {

using backends::Buffer;

namespace {

// Offsets of one block's tensors inside its unit's flat buffer (the same for every block).
struct BlockOffsets {
  std::size_t ln1w, ln1b, qkvw, qkvb, attprojw, attprojb, ln2w, ln2b, fcw, fcb, fcprojw, fcprojb;
};

BlockOffsets block_offsets(const ParamLayout& layout) {
  auto at = [&](const char* suffix) { return layout.tensor(std::string("h.0.") + suffix).offset; };
  return BlockOffsets{at("ln_1.weight"),       at("ln_1.bias"),        at("attn.c_attn.weight"),
                      at("attn.c_attn.bias"),  at("attn.c_proj.weight"), at("attn.c_proj.bias"),
                      at("ln_2.weight"),       at("ln_2.bias"),        at("mlp.c_fc.weight"),
                      at("mlp.c_fc.bias"),     at("mlp.c_proj.weight"), at("mlp.c_proj.bias")};
}

}  // namespace

// Everything one micro-batch's forward keeps for the backward, plus the backward's scratch. With
// recompute = blocks every layer holds only residual3 (its output, the next block's input) and one
// scratch layer holds the other activations of whichever block ran its forward last.
struct Gpt::Activations {
  struct Layer {
    Buffer<float> ln1, ln1_mean, ln1_rstd;  // (N,C), (N), (N)
    Buffer<float> qkv;                      // (N,3C)
    Buffer<float> atty;                     // (N,C)
    Buffer<float> att;                      // (B,NH,T,T)
    Buffer<float> residual2;                // (N,C) = residual + attn proj
    Buffer<float> ln2, ln2_mean, ln2_rstd;  // (N,C), (N), (N)
    Buffer<float> fch, fch_gelu;            // (N,4C)
    Buffer<float> residual3;                // (N,C) = residual2 + mlp proj
  };
  BlockOffsets block;
  Buffer<std::int32_t> inputs, targets;  // (N)
  Buffer<float> encoded;                 // (N,C)
  std::vector<Layer> layers;
  Layer scratch;          // recompute = blocks: one block's activations (residual3 stays per layer)
  int scratch_layer = -1; // the block whose activations the scratch holds for this batch
  // The buffers of `layer` other than residual3: its own, or the scratch block.
  Layer& work(int layer, config::Recompute recompute) {
    return recompute == config::Recompute::blocks ? scratch : layers[static_cast<std::size_t>(layer)];
  }
  Buffer<float> lnf, lnf_mean, lnf_rstd;  // (N,C), (N), (N)
  Buffer<float> logits;                   // (N,Vp); softmax numerators after the Head forward, dlogits after its backward
  Buffer<float> losses, inv_sum;          // (N)
  // backward scratch
  Buffer<float> dresidual;  // (N,C) gradient of the residual stream at the current stage
  Buffer<float> dnarrow;    // (N,C)
  Buffer<float> dwide;      // (N,4C), also holds dqkv (N,3C)
  std::size_t bytes = 0;
};

Gpt::Gpt(const GptShape& shape, backends::Backend& backend, int micro_batch, int seq_len,
         config::Recompute recompute)
    : layout_(shape), backend_(backend), B_(micro_batch), T_(seq_len), recompute_(recompute) {
  if (B_ <= 0) throw InputError("micro_batch = " + std::to_string(B_) + " must be positive");
  if (T_ <= 0 || T_ > shape.max_seq_len) {
    throw InputError("seq_len = " + std::to_string(T_) + " must be in [1, max_seq_len = " +
                std::to_string(shape.max_seq_len) + "]");
  }
  const std::size_t N = static_cast<std::size_t>(B_) * T_;
  const std::size_t C = shape.channels;
  acts_ = std::make_unique<Activations>();
  Activations& a = *acts_;
  a.block = block_offsets(layout_);
  auto floats = [&](std::size_t count) {
    a.bytes += count * sizeof(float);
    return backend_.alloc<float>(count);
  };
  auto block = [&](Activations::Layer& l) {  // everything but residual3
    l.ln1 = floats(N * C);
    l.ln1_mean = floats(N);
    l.ln1_rstd = floats(N);
    l.qkv = floats(N * 3 * C);
    l.atty = floats(N * C);
    l.att = floats(static_cast<std::size_t>(B_) * shape.heads * T_ * T_);
    l.residual2 = floats(N * C);
    l.ln2 = floats(N * C);
    l.ln2_mean = floats(N);
    l.ln2_rstd = floats(N);
    l.fch = floats(N * 4 * C);
    l.fch_gelu = floats(N * 4 * C);
  };
  a.inputs = backend_.alloc<std::int32_t>(N);
  a.targets = backend_.alloc<std::int32_t>(N);
  a.bytes += 2 * N * sizeof(std::int32_t);
  a.encoded = floats(N * C);
  a.layers.resize(static_cast<std::size_t>(shape.layers));
  for (Activations::Layer& l : a.layers) {
    if (recompute_ == config::Recompute::none) block(l);
    l.residual3 = floats(N * C);
  }
  if (recompute_ == config::Recompute::blocks) block(a.scratch);
  a.lnf = floats(N * C);
  a.lnf_mean = floats(N);
  a.lnf_rstd = floats(N);
  a.logits = floats(N * static_cast<std::size_t>(shape.padded_vocab));
  a.losses = floats(N);
  a.inv_sum = floats(N);
  a.dresidual = floats(N * C);
  a.dnarrow = floats(N * C);
  a.dwide = floats(N * 4 * C);
  MICS_CHECK(a.bytes == activation_bytes(shape, B_, T_, recompute_), "activation_bytes() disagrees with the allocation");
}

std::size_t Gpt::activation_bytes(const GptShape& shape, int micro_batch, int seq_len, config::Recompute recompute) {
  const std::size_t N = static_cast<std::size_t>(micro_batch) * static_cast<std::size_t>(seq_len);
  const std::size_t C = static_cast<std::size_t>(shape.channels);
  const std::size_t T = static_cast<std::size_t>(seq_len);
  const std::size_t L = static_cast<std::size_t>(shape.layers);
  // One block without its output: ln1 (N,C)+2N, qkv 3NC, atty NC, att B*NH*T*T, residual2 NC,
  // ln2 NC+2N, fch and fch_gelu 8NC.
  const std::size_t block = 15 * N * C + 4 * N + static_cast<std::size_t>(micro_batch) * shape.heads * T * T;
  const std::size_t blocks = recompute == config::Recompute::blocks ? block : L * block;
  const std::size_t floats = N * C /*encoded*/ + blocks + L * N * C /*residual3*/ + N * C + 2 * N /*lnf*/ +
                             N * static_cast<std::size_t>(shape.padded_vocab) + 2 * N /*losses, inv_sum*/ +
                             6 * N * C /*dresidual, dnarrow, dwide*/;
  return floats * sizeof(float) + 2 * N * sizeof(std::int32_t);
}

Gpt::~Gpt() = default;

std::vector<Stage> forward_stages(int L) {
  std::vector<Stage> stages;
  stages.push_back(Stage{Stage::Kind::Embed, 0});
  for (int l = 0; l < L; l++) stages.push_back(Stage{Stage::Kind::Block, l + 1, l});
  stages.push_back(Stage{Stage::Kind::FinalNorm, L + 1});
  stages.push_back(Stage{Stage::Kind::Head, 0});
  return stages;
}

bool needs_recompute(const Stage& stage, int layers, config::Recompute recompute) {
  return recompute == config::Recompute::blocks && stage.kind == Stage::Kind::Block && stage.layer != layers - 1;
}

std::vector<Stage> backward_stages(int L) {
  std::vector<Stage> stages;
  stages.push_back(Stage{Stage::Kind::Head, 0});
  stages.push_back(Stage{Stage::Kind::FinalNorm, L + 1});
  for (int l = L - 1; l >= 0; l--) stages.push_back(Stage{Stage::Kind::Block, l + 1, l});
  stages.push_back(Stage{Stage::Kind::Embed, 0});
  return stages;
}

void Gpt::set_batch(const std::int32_t* inputs, const std::int32_t* targets) {
  const std::size_t N = static_cast<std::size_t>(B_) * T_;
  const int V = layout_.shape().vocab;
  for (std::size_t i = 0; i < N; i++) {
    if (inputs[i] < 0 || inputs[i] >= V) {
      throw InputError("input token " + std::to_string(inputs[i]) + " at position " + std::to_string(i) +
                  " is outside the vocabulary [0, " + std::to_string(V) + ")");
    }
    if (targets[i] < 0 || targets[i] >= V) {
      throw InputError("target token " + std::to_string(targets[i]) + " at position " + std::to_string(i) +
                  " is outside the vocabulary [0, " + std::to_string(V) + ")");
    }
  }
  backend_.copy_from_host(acts_->inputs.data(), inputs, N * sizeof(std::int32_t));
  backend_.copy_from_host(acts_->targets.data(), targets, N * sizeof(std::int32_t));
  have_loss_ = false;
  acts_->scratch_layer = -1;
}

void Gpt::forward(const Stage& stage, const float* params) {
  const GptShape& s = layout_.shape();
  const int N = B_ * T_;
  const int C = s.channels;
  Activations& a = *acts_;
  switch (stage.kind) {
    case Stage::Kind::Embed:
      // params = [wte (Vp,C) | wpe (maxT,C)]
      backend_.encoder_forward(a.encoded.data(), a.inputs.data(), params, params + layout_.tensors()[1].offset, B_,
                               T_, C);
      break;
    case Stage::Kind::Block:
      forward_block(stage.layer, params, false);
      break;
    case Stage::Kind::FinalNorm: {
      // params = [ln_f.weight (C) | ln_f.bias (C)]
      const float* residual = a.layers.back().residual3.data();
      backend_.layernorm_forward(a.lnf.data(), a.lnf_mean.data(), a.lnf_rstd.data(), residual, params, params + C, N,
                                 C);
      break;
    }
    case Stage::Kind::Head: {
      // logits (N,Vp) = lnf (N,C) @ wte (Vp,C)^T; padding columns come out 0 and are ignored anyway
      backend_.matmul_forward(a.logits.data(), a.lnf.data(), params, nullptr, N, C, s.padded_vocab);
      backend_.crossentropy_forward(a.losses.data(), a.inv_sum.data(), a.logits.data(), a.targets.data(), N, s.vocab,
                                    s.padded_vocab);
      // Read back lazily (loss()): on a device the backward is queued before the host waits for the losses.
      have_loss_ = true;
      loss_read_ = false;
      logits_hold_grads_ = false;
      break;
    }
  }
}

// recomputing: the block's backward needs everything but residual3 (the next block's input, kept), so the
// last projection and residual add are left out; the kernels before them are the forward's, in its order.
void Gpt::forward_block(int layer, const float* p, bool recomputing) {
  const GptShape& s = layout_.shape();
  const int N = B_ * T_;
  const int C = s.channels;
  const std::size_t NC = static_cast<std::size_t>(N) * C;
  Activations& a = *acts_;
  const BlockOffsets& o = a.block;
  Activations::Layer& l = a.work(layer, recompute_);
  float* residual3 = a.layers[static_cast<std::size_t>(layer)].residual3.data();
  const float* residual = layer == 0 ? a.encoded.data() : a.layers[static_cast<std::size_t>(layer) - 1].residual3.data();

  backend_.layernorm_forward(l.ln1.data(), l.ln1_mean.data(), l.ln1_rstd.data(), residual, p + o.ln1w, p + o.ln1b, N, C);
  backend_.matmul_forward(l.qkv.data(), l.ln1.data(), p + o.qkvw, p + o.qkvb, N, C, 3 * C);
  backend_.attention_forward(l.atty.data(), l.att.data(), l.qkv.data(), B_, T_, C, s.heads);
  backend_.matmul_forward(l.residual2.data(), l.atty.data(), p + o.attprojw, p + o.attprojb, N, C, C);
  backend_.residual_forward(l.residual2.data(), l.residual2.data(), residual, NC);
  backend_.layernorm_forward(l.ln2.data(), l.ln2_mean.data(), l.ln2_rstd.data(), l.residual2.data(), p + o.ln2w,
                             p + o.ln2b, N, C);
  backend_.matmul_forward(l.fch.data(), l.ln2.data(), p + o.fcw, p + o.fcb, N, C, 4 * C);
  backend_.gelu_forward(l.fch_gelu.data(), l.fch.data(), 4 * NC);
  a.scratch_layer = layer;
  if (recomputing) return;
  backend_.matmul_forward(residual3, l.fch_gelu.data(), p + o.fcprojw, p + o.fcprojb, N, 4 * C, C);
  backend_.residual_forward(residual3, residual3, l.residual2.data(), NC);
}

void Gpt::recompute(const Stage& stage, const float* params) {
  MICS_CHECK(stage.kind == Stage::Kind::Block, "only Block stages are recomputed");
  MICS_CHECK(recompute_ == config::Recompute::blocks, "recompute() on a Gpt that keeps every block's activations");
  forward_block(stage.layer, params, true);
}

float Gpt::loss() const {
  if (!have_loss_) throw InputError("Gpt::loss() called before the Head stage's forward of this batch");
  if (!loss_read_) {
    const std::size_t N = static_cast<std::size_t>(B_) * T_;
    std::vector<float> host(N);
    backend_.copy_to_host(host.data(), acts_->losses.data(), N * sizeof(float));
    double total = 0.0;
    for (float l : host) total += l;
    loss_ = static_cast<float>(total / static_cast<double>(N));
    loss_read_ = true;
  }
  return loss_;
}

void Gpt::backward(const Stage& stage, const float* params, float* grads, float grad_scale) {
  const GptShape& s = layout_.shape();
  const int N = B_ * T_;
  const int C = s.channels;
  Activations& a = *acts_;
  if (stage.kind == Stage::Kind::Head) {
    chain_scale_ = grad_scale;
  } else {
    MICS_CHECK(grad_scale == chain_scale_, "grad_scale changed within one backward pass");
  }
  switch (stage.kind) {
    case Stage::Kind::Head:
      MICS_CHECK(have_loss_ && !logits_hold_grads_, "Head backward without a Head forward before it");
      // d(grad_scale * mean loss)/d loss_i = grad_scale / N; logits become dlogits in place
      backend_.crossentropy_backward(a.logits.data(), a.inv_sum.data(), a.targets.data(), grad_scale / static_cast<float>(N),
                                     N, s.vocab, s.padded_vocab);
      // dlnf (N,C) = dlogits @ wte; dwte += dlogits^T @ lnf
      backend_.matmul_backward(a.dnarrow.data(), grads, nullptr, a.logits.data(), a.lnf.data(), params, N, C,
                               s.padded_vocab);
      // the logits now hold their gradient: loss() stays valid, a second Head backward would be wrong
      logits_hold_grads_ = true;
      break;
    case Stage::Kind::FinalNorm:
      backend_.zero(a.dresidual.data(), static_cast<std::size_t>(N) * C);
      backend_.layernorm_backward(a.dresidual.data(), grads, grads + C, a.dnarrow.data(), a.layers.back().residual3.data(),
                                  params, a.lnf_mean.data(), a.lnf_rstd.data(), N, C);
      break;
    case Stage::Kind::Block:
      backward_block(stage.layer, params, grads);
      break;
    case Stage::Kind::Embed:
      backend_.encoder_backward(grads, grads + layout_.tensors()[1].offset, a.dresidual.data(), a.inputs.data(), B_, T_,
                                C);
      break;
  }
}

void Gpt::backward_block(int layer, const float* p, float* g) {
  const GptShape& s = layout_.shape();
  const int N = B_ * T_;
  const int C = s.channels;
  Activations& a = *acts_;
  const BlockOffsets& o = a.block;
  MICS_CHECK(recompute_ == config::Recompute::none || a.scratch_layer == layer,
             "backward of block " + std::to_string(layer) + " without its recompute (the scratch holds block " +
                 std::to_string(a.scratch_layer) + ")");
  const Activations::Layer& l = a.work(layer, recompute_);
  const float* residual = layer == 0 ? a.encoded.data() : a.layers[static_cast<std::size_t>(layer) - 1].residual3.data();
  float* dres = a.dresidual.data();  // in: d residual3; out: d residual (the block's input)
  float* dnarrow = a.dnarrow.data();
  float* dwide = a.dwide.data();

  // MLP: residual3 = residual2 + fcproj(gelu(fc(ln2(residual2))))
  backend_.matmul_backward(dwide, g + o.fcprojw, g + o.fcprojb, dres, l.fch_gelu.data(), p + o.fcprojw, N, 4 * C, C);
  backend_.gelu_backward(dwide, l.fch.data(), dwide, static_cast<std::size_t>(N) * 4 * C);
  backend_.matmul_backward(dnarrow, g + o.fcw, g + o.fcb, dwide, l.ln2.data(), p + o.fcw, N, C, 4 * C);
  backend_.layernorm_backward(dres, g + o.ln2w, g + o.ln2b, dnarrow, l.residual2.data(), p + o.ln2w, l.ln2_mean.data(),
                              l.ln2_rstd.data(), N, C);
  // attention: residual2 = residual + attproj(attention(qkv(ln1(residual))))
  backend_.matmul_backward(dnarrow, g + o.attprojw, g + o.attprojb, dres, l.atty.data(), p + o.attprojw, N, C, C);
  backend_.attention_backward(dwide, dnarrow, l.qkv.data(), l.att.data(), B_, T_, C, s.heads);
  backend_.matmul_backward(dnarrow, g + o.qkvw, g + o.qkvb, dwide, l.ln1.data(), p + o.qkvw, N, C, 3 * C);
  backend_.layernorm_backward(dres, g + o.ln1w, g + o.ln1b, dnarrow, residual, p + o.ln1w, l.ln1_mean.data(),
                              l.ln1_rstd.data(), N, C);
}

double Gpt::flops_per_token(const GptShape& shape, int seq_len) {
  const double n = static_cast<double>(ParamLayout(shape).total_numel());
  return 6.0 * n + 6.0 * shape.layers * static_cast<double>(shape.channels) * seq_len;
}

std::size_t Gpt::activation_bytes() const { return acts_->bytes; }

float forward_backward(Gpt& gpt, std::span<const float* const> unit_params, std::span<float* const> unit_grads,
                       float grad_scale) {
  const std::size_t units = gpt.layout().units().size();
  if (unit_params.size() != units || (!unit_grads.empty() && unit_grads.size() != units)) {
    throw InputError("forward_backward: expected " + std::to_string(units) + " unit buffers, got " +
                std::to_string(unit_params.size()) + " parameter and " + std::to_string(unit_grads.size()) +
                " gradient buffers");
  }
  const int L = gpt.layout().shape().layers;
  for (const Stage& stage : forward_stages(L)) gpt.forward(stage, unit_params[static_cast<std::size_t>(stage.unit)]);
  if (!unit_grads.empty()) {
    for (const Stage& stage : backward_stages(L)) {
      const auto u = static_cast<std::size_t>(stage.unit);
      if (needs_recompute(stage, L, gpt.recompute_mode())) gpt.recompute(stage, unit_params[u]);
      gpt.backward(stage, unit_params[u], unit_grads[u], grad_scale);
    }
  }
  return gpt.loss();
}

}  // namespace mics::model
