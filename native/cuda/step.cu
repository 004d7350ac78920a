// step.cu: the QLoRA training step of the Qwen3 decoder on the GPU (see step.cuh).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>

#include "adamw8bit.cuh"
#include "adamw8bit.h"
#include "attention.cuh"
#include "common.cuh"
#include "double_quant.h"
#include "gemm.cuh"
#include "layers.cuh"
#include "layers.h"
#include "lossscale.cuh"
#include "nf4.cuh"
#include "nf4.h"
#include "step.cuh"
#include "xent.cuh"

namespace ft::cuda {

namespace {

constexpr int kLogitRows = 512;

/** A device allocation that counts itself into one of the Bytes groups; freed with its owner. */
template <typename T>
struct Buf {
  T* p = nullptr;
  std::size_t n = 0;
  Buf() = default;
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  Buf(Buf&& o) noexcept : p(o.p), n(o.n) { o.p = nullptr; }
  ~Buf() {
    if (p != nullptr) cudaFree(p);
  }
  /** The buffer as E (16-bit operand buffers hold fp16 or bf16, as the trainer's precision says). */
  template <typename E>
  E* as() const {
    static_assert(sizeof(E) == sizeof(T), "same element size");
    return reinterpret_cast<E*>(p);
  }
  void alloc(std::size_t count, std::size_t& group) {
    n = count;
    FT_CUDA(cudaMalloc(&p, (count == 0 ? 1 : count) * sizeof(T)));
    group += (count == 0 ? 1 : count) * sizeof(T);
  }
};

/** 16-bit operand storage: fp16 or bf16 bits, the type given where it is used. */
using Op16 = std::uint16_t;

template <typename E>
__global__ void embedKernel(const E* __restrict__ emb, const std::int32_t* __restrict__ ids, int N, int C, float* __restrict__ x) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= static_cast<long long>(N) * C) return;
  const long long n = i / C;
  x[i] = toFloat(emb[static_cast<long long>(ids[n]) * C + (i % C)]);
}

// The LoRA dropout mask of src/qwen3.cpp, bit for bit: element i of projection (l, j) is kept
// (scaled by 1 / (1 - p)) unless uniform01(stream + i) < p, stream = seed * golden ^ ((l * 7 + j) << 40).
__device__ __forceinline__ float uniform01(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (1.f / 16777216.f);
}

/** xl = x * keep (the adapter's dropped input), in the operand type E. */
template <typename E>
__global__ void dropKernel(const E* __restrict__ x, E* __restrict__ xl, long long n, std::uint64_t stream, float p, float keepScale) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float keep = uniform01(stream + static_cast<std::uint64_t>(i)) < p ? 0.f : keepScale;
  xl[i] = fromFloat<E>(toFloat(x[i]) * keep);
}

/** Host: fp32 values as the operand type E (round to nearest even), and back. */
template <typename E>
E hostOperand(float v) {
  if constexpr (std::is_same_v<E, bf16>) return __float2bfloat16_rn(v);
  else return __float2half_rn(v);
}
inline float hostFloat(__half v) { return __half2float(v); }
inline float hostFloat(bf16 v) { return __bfloat162float(v); }

/** dx += t * keep: the LoRA path's input gradient through the dropout mask. */
__global__ void dropAddKernel(float* __restrict__ dx, const float* __restrict__ t, long long n, std::uint64_t stream, float p, float keepScale) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float keep = uniform01(stream + static_cast<std::uint64_t>(i)) < p ? 0.f : keepScale;
  dx[i] += t[i] * keep;
}

}  // namespace

struct Trainer::Impl {
  Qwen3Config cfg;
  Precision precision = Precision::fp16;  // what the Op16 buffers hold
  int rank;
  float scale;
  int capBatch, capSeqLen, capN;  // what the buffers hold
  int batch, seqLen, N;            // this call's shape (step), at most the capacity
  Bytes bytes{0, 0, 0, 0, 0, 0};
  // LoRA dropout (training calls only); xd/dropTmp are allocated by the first setDropout(p > 0)
  float dropout = 0.f;
  std::uint64_t dropSeed = 0;
  bool training = false;
  Buf<Op16> xd;     // [N, widest in] the dropped input of one projection
  Buf<float> dropTmp; // [N, widest in] the LoRA path's dx before the mask

  // ---- the frozen base
  Buf<Op16> embed;
  Buf<float> finalNorm;
  struct Proj {
    int in, out;
    Buf<std::uint8_t> codes;  // NF4
    Buf<std::uint8_t> q;      // double-quantized absmax: codes,
    Buf<float> scales;        // their scales,
    float offset;             // and the offset
    // LoRA
    Buf<float> A, B, dA, dB;  // fp32 masters [r, in], [out, r] and gradients
    Buf<Op16> A16, B16;     // 16-bit copies (the operand type)
    bool adapted = true;      // false: no adapter here (disableLora), the products are skipped
    // AdamW state of A ([0]) and B ([1]) when the optimizer runs here: 8-bit or fp32 moments
    struct State {
      bool set = false, quantized = false;
      Buf<std::uint8_t> mCodes, vCodes;
      Buf<float> mAbsmax, vAbsmax, m, v;
    } state[2];
  };
  struct Layer {
    Buf<float> inputNorm, postNorm, qNorm, kNorm;
    Proj p[NPROJ];
  };
  std::vector<Layer> layers;

  // ---- activations
  std::vector<Buf<float>> xs;  // [L + 1] layer inputs (and the last output), fp32 [N, C]
  // one layer, recomputed in backward
  Buf<Op16> h1, h2, qn, kn, v16, y16, a16;
  Buf<float> rstd1, rstd2, rstdq, rstdk, qpre, kpre, vpre, lse, xmid, g, u;
  Buf<Op16> la16[NPROJ];  // x A^T of each projection, 16-bit [N, r]
  // gradients of the layer
  Buf<float> dxA, dxB, dh, dmid, da, dg, du, dq, dk, dv, dqpre, dkpre, dattn;
  Buf<Op16> d16, d16b, d16c;  // 16-bit operands of the products (the widest: [N, I])
  Buf<float> t32;               // [N, r]
  Buf<Op16> t16;
  // ---- head
  Buf<Op16> hf;
  Buf<float> rstdf, dhf, rowLoss;
  Buf<Op16> logits;  // [kLogitRows, V]
  Buf<int> targets;
  Buf<std::int32_t> ids;
  // ---- workspace
  Buf<float> absmax;  // one projection's absmax, decoded from its double quantization
  Buf<float> attnWs;
  Buf<float> cosT, sinT;
  Buf<float> la32;  // [N, r]
  Buf<float> normParts, normResults;  // the optimizer's unscale: partials of the largest tensor, and 2 results per tensor

  /** Decodes a projection's double-quantized absmax into the workspace; returns it. */
  const float* absmaxOf(const Proj& p) {
    const std::size_t count = ft::nf4::absmaxCount(static_cast<std::size_t>(p.in) * p.out);
    dqDequantize(p.q.p, p.scales.p, p.offset, count, absmax.p);
    return absmax.p;
  }

  bool dropping() const { return training && dropout > 0.f; }
  std::uint64_t dropStream(int index) const { return dropSeed * 0x9E3779B97F4A7C15ull ^ (static_cast<std::uint64_t>(index) << 40); }
  float keepScale() const { return 1.f / (1.f - dropout); }

  /** The adapter's input of projection `index` (l * NPROJ + j): x itself, or x through the dropout mask (in xd). */
  template <typename E>
  const E* adapterInput(const E* x, const Proj& p, int index) {
    if (!dropping()) return x;
    const long long n = static_cast<long long>(N) * p.in;
    dropKernel<E><<<ceilDiv(n, 256), 256>>>(x, xd.as<E>(), n, dropStream(index), dropout, keepScale());
    FT_LAUNCHED();
    return xd.as<E>();
  }

  /** y (+)= x W^T + scale (drop(x) A^T) B^T; keeps drop(x) A^T (E) in la. x [N, in] E (fp16 or bf16), y [N, out] fp32. */
  template <typename E>
  void linear(const E* x, Proj& p, int index, float* y, bool accumulate, E* la) {
    const int in = p.in, out = p.out, r = rank;
    gemmNf4({N, out, in, false, true, in, in, out}, 1.f, x, p.codes.p, absmaxOf(p), accumulate ? 1.f : 0.f, y);
    if (!p.adapted) return;
    gemm({N, r, in, false, true, in, in, r}, 1.f, adapterInput(x, p, index), p.A16.as<E>(), 0.f, la32.p);
    toOperand(la32.p, static_cast<std::size_t>(N) * r, la);
    gemm({N, out, r, false, true, r, r, out}, scale, la, p.B16.as<E>(), 1.f, y);
  }

  /**
   * The backward of linear: dy [N, out] E (loss-scaled), x [N, in] E and la = drop(x) A^T as
   * in the forward. dx [N, in] fp32 (+)= dy W + keep * scale (dy B) A; dB += scale dy^T la;
   * dA += scale (dy B)^T drop(x). The mask is drawn again from its counter (no copy is kept).
   */
  template <typename E>
  void linearBackward(const E* dy, const E* x, const E* la, Proj& p, int index, float* dx, bool accumulate) {
    const int in = p.in, out = p.out, r = rank;
    gemmNf4({N, in, out, false, false, out, in, in}, 1.f, dy, p.codes.p, absmaxOf(p), accumulate ? 1.f : 0.f, dx);
    if (!p.adapted) return;
    gemm({N, r, out, false, false, out, r, r}, 1.f, dy, p.B16.as<E>(), 0.f, t32.p);
    toOperand(t32.p, static_cast<std::size_t>(N) * r, t16.as<E>());
    if (!dropping()) {
      gemm({N, in, r, false, false, r, in, in}, scale, t16.as<E>(), p.A16.as<E>(), 1.f, dx);
    } else {
      const long long n = static_cast<long long>(N) * in;
      gemm({N, in, r, false, false, r, in, in}, scale, t16.as<E>(), p.A16.as<E>(), 0.f, dropTmp.p);
      dropAddKernel<<<ceilDiv(n, 256), 256>>>(dx, dropTmp.p, n, dropStream(index), dropout, keepScale());
      FT_LAUNCHED();
    }
    gemm({out, r, N, true, false, out, r, r}, scale, dy, la, 1.f, p.dB.p);
    gemm({r, in, N, true, false, r, in, in}, scale, t16.as<E>(), adapterInput(x, p, index), 1.f, p.dA.p);
  }

  /** The forward of layer l from xs[l]; writes xs[l + 1]; keeps every activation backward needs. */
  template <typename E>
  void layerForward(int l) {
    Layer& L = layers[l];
    const int C = cfg.hidden, I = cfg.intermediate, H = cfg.heads, KV = cfg.kvHeads, D = cfg.headDim;
    const float* x = xs[l].p;
    rmsnormForward(x, L.inputNorm.p, h1.as<E>(), rstd1.p, N, C, cfg.rmsEps);
    linear(h1.as<E>(), L.p[PROJ_Q], l * NPROJ + PROJ_Q, qpre.p, false, la16[PROJ_Q].as<E>());
    linear(h1.as<E>(), L.p[PROJ_K], l * NPROJ + PROJ_K, kpre.p, false, la16[PROJ_K].as<E>());
    linear(h1.as<E>(), L.p[PROJ_V], l * NPROJ + PROJ_V, vpre.p, false, la16[PROJ_V].as<E>());
    rmsnormForward(qpre.p, L.qNorm.p, qn.as<E>(), rstdq.p, N * H, D, cfg.rmsEps);
    rmsnormForward(kpre.p, L.kNorm.p, kn.as<E>(), rstdk.p, N * KV, D, cfg.rmsEps);
    rope(qn.as<E>(), N, H, D, seqLen, cosT.p, sinT.p, false);
    rope(kn.as<E>(), N, KV, D, seqLen, cosT.p, sinT.p, false);
    toOperand(vpre.p, static_cast<std::size_t>(N) * KV * D, v16.as<E>());
    attentionForward(qn.as<E>(), kn.as<E>(), v16.as<E>(), y16.as<E>(), lse.p, batch, seqLen, H, KV, D);
    FT_CUDA(cudaMemcpyAsync(xmid.p, x, sizeof(float) * N * C, cudaMemcpyDeviceToDevice));
    linear(y16.as<E>(), L.p[PROJ_O], l * NPROJ + PROJ_O, xmid.p, true, la16[PROJ_O].as<E>());
    rmsnormForward(xmid.p, L.postNorm.p, h2.as<E>(), rstd2.p, N, C, cfg.rmsEps);
    linear(h2.as<E>(), L.p[PROJ_GATE], l * NPROJ + PROJ_GATE, g.p, false, la16[PROJ_GATE].as<E>());
    linear(h2.as<E>(), L.p[PROJ_UP], l * NPROJ + PROJ_UP, u.p, false, la16[PROJ_UP].as<E>());
    swigluForward(g.p, u.p, a16.as<E>(), static_cast<std::size_t>(N) * I);
    FT_CUDA(cudaMemcpyAsync(xs[l + 1].p, xmid.p, sizeof(float) * N * C, cudaMemcpyDeviceToDevice));
    linear(a16.as<E>(), L.p[PROJ_DOWN], l * NPROJ + PROJ_DOWN, xs[l + 1].p, true, la16[PROJ_DOWN].as<E>());
  }

  /** The backward of layer l (its activations just recomputed): dout [N, C] → din [N, C]. */
  template <typename E>
  void layerBackward(int l, const float* dout, float* din) {
    Layer& L = layers[l];
    const int C = cfg.hidden, I = cfg.intermediate, H = cfg.heads, KV = cfg.kvHeads, D = cfg.headDim;
    const std::size_t NC = static_cast<std::size_t>(N) * C, NI = static_cast<std::size_t>(N) * I;
    // the MLP: x'' = x' + down(a)
    FT_CUDA(cudaMemcpyAsync(dmid.p, dout, sizeof(float) * NC, cudaMemcpyDeviceToDevice));
    toOperand(dout, NC, d16.as<E>());
    linearBackward(d16.as<E>(), a16.as<E>(), la16[PROJ_DOWN].as<E>(), L.p[PROJ_DOWN], l * NPROJ + PROJ_DOWN, da.p, false);
    swigluBackward(da.p, g.p, u.p, dg.p, du.p, NI);
    toOperand(dg.p, NI, d16.as<E>());
    toOperand(du.p, NI, d16b.as<E>());
    linearBackward(d16.as<E>(), h2.as<E>(), la16[PROJ_GATE].as<E>(), L.p[PROJ_GATE], l * NPROJ + PROJ_GATE, dh.p, false);
    linearBackward(d16b.as<E>(), h2.as<E>(), la16[PROJ_UP].as<E>(), L.p[PROJ_UP], l * NPROJ + PROJ_UP, dh.p, true);
    rmsnormBackward(dh.p, xmid.p, rstd2.p, L.postNorm.p, dmid.p, N, C);
    // attention: x' = x + o(y)
    toOperand(dmid.p, NC, d16.as<E>());
    linearBackward(d16.as<E>(), y16.as<E>(), la16[PROJ_O].as<E>(), L.p[PROJ_O], l * NPROJ + PROJ_O, dattn.p, false);
    toOperand(dattn.p, static_cast<std::size_t>(N) * H * D, d16b.as<E>());
    attentionBackward(qn.as<E>(), kn.as<E>(), v16.as<E>(), y16.as<E>(), d16b.as<E>(), lse.p, dq.p, dk.p, dv.p, attnWs.p, batch, seqLen, H, KV, D);
    rope(dq.p, N, H, D, seqLen, cosT.p, sinT.p, true);
    rope(dk.p, N, KV, D, seqLen, cosT.p, sinT.p, true);
    FT_CUDA(cudaMemsetAsync(dqpre.p, 0, sizeof(float) * N * H * D));
    FT_CUDA(cudaMemsetAsync(dkpre.p, 0, sizeof(float) * N * KV * D));
    rmsnormBackward(dq.p, qpre.p, rstdq.p, L.qNorm.p, dqpre.p, N * H, D);
    rmsnormBackward(dk.p, kpre.p, rstdk.p, L.kNorm.p, dkpre.p, N * KV, D);
    toOperand(dqpre.p, static_cast<std::size_t>(N) * H * D, d16.as<E>());
    linearBackward(d16.as<E>(), h1.as<E>(), la16[PROJ_Q].as<E>(), L.p[PROJ_Q], l * NPROJ + PROJ_Q, dh.p, false);
    toOperand(dkpre.p, static_cast<std::size_t>(N) * KV * D, d16b.as<E>());
    linearBackward(d16b.as<E>(), h1.as<E>(), la16[PROJ_K].as<E>(), L.p[PROJ_K], l * NPROJ + PROJ_K, dh.p, true);
    toOperand(dv.p, static_cast<std::size_t>(N) * KV * D, d16c.as<E>());
    linearBackward(d16c.as<E>(), h1.as<E>(), la16[PROJ_V].as<E>(), L.p[PROJ_V], l * NPROJ + PROJ_V, dh.p, true);
    FT_CUDA(cudaMemcpyAsync(din, dmid.p, sizeof(float) * NC, cudaMemcpyDeviceToDevice));
    rmsnormBackward(dh.p, xs[l].p, rstd1.p, L.inputNorm.p, din, N, C);
  }

  /**
   * The forward of a step (ids and targets on the device): the embedding, every layer (inputs
   * kept), the final norm, then the head a chunk of rows at a time: logits, per-row loss, and
   * (backward) the logits' gradient times gradScale multiplied back by the embedding into dhf.
   */
  template <typename E>
  void forward(bool backward, float gradScale, float* logitsOut) {
    const int C = cfg.hidden, V = cfg.vocab, L = cfg.layers;
    {
      const long long total = static_cast<long long>(N) * C;
      embedKernel<E><<<ceilDiv(total, 256), 256>>>(embed.as<E>(), ids.p, N, C, xs[0].p);
      FT_LAUNCHED();
    }
    for (int l = 0; l < L; ++l) layerForward<E>(l);
    rmsnormForward(xs[L].p, finalNorm.p, hf.as<E>(), rstdf.p, N, C, cfg.rmsEps);
    for (int r0 = 0; r0 < N; r0 += kLogitRows) {
      const int rows = std::min(kLogitRows, N - r0);
      gemm({rows, V, C, false, true, C, C, V}, 1.f, hf.as<E>() + static_cast<std::size_t>(r0) * C, embed.as<E>(), 0.f, logits.as<E>());
      if (logitsOut != nullptr) {
        std::vector<E> h(static_cast<std::size_t>(rows) * V);
        FT_CUDA(cudaMemcpy(h.data(), logits.p, h.size() * sizeof(E), cudaMemcpyDeviceToHost));
        for (std::size_t i = 0; i < h.size(); ++i) logitsOut[static_cast<std::size_t>(r0) * V + i] = hostFloat(h[i]);
      }
      xentForwardBackward(logits.as<E>(), rows, V, targets.p + r0, gradScale, rowLoss.p + r0, nullptr);
      if (backward)
        gemm({rows, C, V, false, false, V, C, C}, 1.f, logits.as<E>(), embed.as<E>(), 0.f, dhf.p + static_cast<std::size_t>(r0) * C);
    }
  }
};

Trainer::Trainer(const Qwen3Config& cfg, const float* embed, const float* finalNorm, const std::vector<HostLayer>& layers, int rank, float scale,
                 int batch, int seqLen, Precision precision)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  if (precision == Precision::bf16) requireBf16("Trainer");
  m.precision = precision;
  FT_CHECK(static_cast<int>(layers.size()) == cfg.layers, "Trainer: ", layers.size(), " layers given, the config has ", cfg.layers);
  FT_CHECK(rank > 0 && batch > 0 && seqLen > 0, "Trainer: rank ", rank, ", batch ", batch, ", seqLen ", seqLen, " must be positive");
  FT_CHECK(cfg.heads % cfg.kvHeads == 0, "Trainer: ", cfg.heads, " heads are not a multiple of ", cfg.kvHeads, " kv heads");
  FT_CHECK(cfg.headDim == 64 || cfg.headDim == 128, "Trainer: head width ", cfg.headDim, " (the attention kernels take 64 or 128)");
  m.cfg = cfg;
  m.rank = rank;
  m.scale = scale;
  m.capBatch = m.batch = batch;
  m.capSeqLen = m.seqLen = seqLen;
  m.capN = m.N = batch * seqLen;
  const int N = m.N, C = cfg.hidden, I = cfg.intermediate, H = cfg.heads, KV = cfg.kvHeads, D = cfg.headDim, V = cfg.vocab, r = rank;
  auto& W = m.bytes.weights;
  auto& A = m.bytes.activations;
  // the base
  {
    std::vector<Op16> e16(static_cast<std::size_t>(V) * C);
    const auto round = [&](auto tag) {
      using E = decltype(tag);
      for (std::size_t i = 0; i < e16.size(); ++i) {
        const E v = hostOperand<E>(embed[i]);
        std::memcpy(&e16[i], &v, sizeof(Op16));
      }
    };
    if (precision == Precision::bf16) round(bf16{});
    else round(__half{});
    m.embed.alloc(e16.size(), W);
    FT_CUDA(cudaMemcpy(m.embed.p, e16.data(), e16.size() * sizeof(Op16), cudaMemcpyHostToDevice));
  }
  auto upload = [](Buf<float>& b, const float* h, std::size_t n, std::size_t& group) {
    b.alloc(n, group);
    FT_CUDA(cudaMemcpy(b.p, h, n * sizeof(float), cudaMemcpyHostToDevice));
  };
  upload(m.finalNorm, finalNorm, C, W);
  std::size_t maxAbsmax = 0;
  m.layers.resize(cfg.layers);
  for (int l = 0; l < cfg.layers; ++l) {
    const HostLayer& h = layers[l];
    Impl::Layer& L = m.layers[l];
    upload(L.inputNorm, h.inputNorm, C, W);
    upload(L.postNorm, h.postNorm, C, W);
    upload(L.qNorm, h.qNorm, D, W);
    upload(L.kNorm, h.kNorm, D, W);
    for (int j = 0; j < NPROJ; ++j) {
      Impl::Proj& p = L.p[j];
      p.in = ft::projIn(m.cfg, j);
      p.out = ft::projOut(m.cfg, j);
      const std::size_t count = static_cast<std::size_t>(p.in) * p.out;
      FT_CHECK(h.codes[j] != nullptr && h.absmax[j] != nullptr, "Trainer: layer ", l, " projection ", j, " has no weights");
      p.codes.alloc(ft::nf4::codeBytes(count), W);
      FT_CUDA(cudaMemcpy(p.codes.p, h.codes[j], ft::nf4::codeBytes(count), cudaMemcpyHostToDevice));
      const std::size_t na = ft::nf4::absmaxCount(count);
      maxAbsmax = std::max(maxAbsmax, na);
      std::vector<std::uint8_t> q(na);
      std::vector<float> scales(ft::dq::scaleCount(na));
      p.offset = ft::dq::quantize(h.absmax[j], na, q.data(), scales.data());
      p.q.alloc(na, W);
      FT_CUDA(cudaMemcpy(p.q.p, q.data(), na, cudaMemcpyHostToDevice));
      upload(p.scales, scales.data(), scales.size(), W);
      // LoRA: zero until setLora
      p.A.alloc(static_cast<std::size_t>(r) * p.in, m.bytes.lora);
      p.B.alloc(static_cast<std::size_t>(p.out) * r, m.bytes.lora);
      p.dA.alloc(p.A.n, m.bytes.lora);
      p.dB.alloc(p.B.n, m.bytes.lora);
      p.A16.alloc(p.A.n, m.bytes.lora);
      p.B16.alloc(p.B.n, m.bytes.lora);
      for (auto* b : {&p.A, &p.B, &p.dA, &p.dB}) FT_CUDA(cudaMemset(b->p, 0, b->n * sizeof(float)));
    }
  }
  // activations: the kept layer inputs, and one layer
  m.xs.resize(cfg.layers + 1);
  for (auto& x : m.xs) x.alloc(static_cast<std::size_t>(N) * C, A);
  const std::size_t NC = static_cast<std::size_t>(N) * C, NI = static_cast<std::size_t>(N) * I, NQ = static_cast<std::size_t>(N) * H * D,
                    NK = static_cast<std::size_t>(N) * KV * D;
  m.h1.alloc(NC, A);
  m.h2.alloc(NC, A);
  m.qn.alloc(NQ, A);
  m.kn.alloc(NK, A);
  m.v16.alloc(NK, A);
  m.y16.alloc(NQ, A);
  m.a16.alloc(NI, A);
  m.rstd1.alloc(N, A);
  m.rstd2.alloc(N, A);
  m.rstdq.alloc(static_cast<std::size_t>(N) * H, A);
  m.rstdk.alloc(static_cast<std::size_t>(N) * KV, A);
  m.qpre.alloc(NQ, A);
  m.kpre.alloc(NK, A);
  m.vpre.alloc(NK, A);
  m.lse.alloc(static_cast<std::size_t>(batch) * H * seqLen, A);
  m.xmid.alloc(NC, A);
  m.g.alloc(NI, A);
  m.u.alloc(NI, A);
  for (auto& b : m.la16) b.alloc(static_cast<std::size_t>(N) * r, A);
  for (auto* b : {&m.dxA, &m.dxB, &m.dh, &m.dmid}) b->alloc(NC, A);
  for (auto* b : {&m.da, &m.dg, &m.du}) b->alloc(NI, A);
  m.dq.alloc(NQ, A);
  m.dk.alloc(NK, A);
  m.dv.alloc(NK, A);
  m.dqpre.alloc(NQ, A);
  m.dkpre.alloc(NK, A);
  m.dattn.alloc(NQ, A);
  const std::size_t widest = std::max({NC, NI, NQ});
  m.d16.alloc(widest, A);
  m.d16b.alloc(widest, A);
  m.d16c.alloc(widest, A);
  m.t32.alloc(static_cast<std::size_t>(N) * r, A);
  m.t16.alloc(static_cast<std::size_t>(N) * r, A);
  // head
  m.hf.alloc(NC, m.bytes.head);
  m.rstdf.alloc(N, m.bytes.head);
  m.dhf.alloc(NC, m.bytes.head);
  m.rowLoss.alloc(N, m.bytes.head);
  m.logits.alloc(static_cast<std::size_t>(std::min(kLogitRows, N)) * V, m.bytes.head);
  m.targets.alloc(N, m.bytes.head);
  m.ids.alloc(N, m.bytes.head);
  // workspace
  m.absmax.alloc(maxAbsmax, m.bytes.workspace);
  m.attnWs.alloc(attentionBackwardWorkspace(batch, seqLen, H, KV, D), m.bytes.workspace);
  m.la32.alloc(static_cast<std::size_t>(N) * r, m.bytes.workspace);
  {
    std::size_t widest = 0;
    for (int j = 0; j < NPROJ; ++j) widest = std::max({widest, static_cast<std::size_t>(r) * ft::projIn(cfg, j), static_cast<std::size_t>(ft::projOut(cfg, j)) * r});
    m.normParts.alloc(unscaleWorkspace(widest), m.bytes.workspace);
    m.normResults.alloc(2 * static_cast<std::size_t>(cfg.layers) * NPROJ * 2, m.bytes.workspace);
  }
  {
    std::vector<float> c, s;
    ft::layers::ropeTables(seqLen, D, cfg.ropeTheta, c, s);
    upload(m.cosT, c.data(), c.size(), m.bytes.workspace);
    upload(m.sinT, s.data(), s.size(), m.bytes.workspace);
  }
  syncLora();
}

// every buffer is a Buf of Impl: freed with it
Trainer::~Trainer() = default;

std::size_t Trainer::loraSize(int index, bool b) const {
  FT_CHECK(index >= 0 && index < impl_->cfg.layers * NPROJ, "Trainer: projection index ", index, " out of range");
  const auto& p = impl_->layers[index / NPROJ].p[index % NPROJ];
  return b ? p.B.n : p.A.n;
}

void Trainer::setLora(int index, const float* A, const float* B) {
  FT_CHECK(index >= 0 && index < impl_->cfg.layers * NPROJ, "Trainer: projection index ", index, " out of range");
  auto& p = impl_->layers[index / NPROJ].p[index % NPROJ];
  p.adapted = true;
  FT_CUDA(cudaMemcpy(p.A.p, A, p.A.n * sizeof(float), cudaMemcpyHostToDevice));
  FT_CUDA(cudaMemcpy(p.B.p, B, p.B.n * sizeof(float), cudaMemcpyHostToDevice));
}

void Trainer::disableLora(int index) {
  FT_CHECK(index >= 0 && index < impl_->cfg.layers * NPROJ, "Trainer: projection index ", index, " out of range");
  auto& p = impl_->layers[index / NPROJ].p[index % NPROJ];
  p.adapted = false;
  for (auto* b : {&p.A, &p.B, &p.dA, &p.dB}) FT_CUDA(cudaMemset(b->p, 0, b->n * sizeof(float)));
}

float* Trainer::loraA(int index) { return impl_->layers[index / NPROJ].p[index % NPROJ].A.p; }
float* Trainer::loraB(int index) { return impl_->layers[index / NPROJ].p[index % NPROJ].B.p; }
float* Trainer::gradA(int index) { return impl_->layers[index / NPROJ].p[index % NPROJ].dA.p; }
float* Trainer::gradB(int index) { return impl_->layers[index / NPROJ].p[index % NPROJ].dB.p; }

void Trainer::syncLora() {
  const bool b16 = impl_->precision == Precision::bf16;
  for (auto& L : impl_->layers)
    for (auto& p : L.p) {
      if (b16) {
        toOperand(p.A.p, p.A.n, p.A16.as<bf16>());
        toOperand(p.B.p, p.B.n, p.B16.as<bf16>());
      } else {
        toOperand(p.A.p, p.A.n, p.A16.as<__half>());
        toOperand(p.B.p, p.B.n, p.B16.as<__half>());
      }
    }
}

Trainer::Precision Trainer::precision() const { return impl_->precision; }

void Trainer::zeroGrads() {
  for (auto& L : impl_->layers)
    for (auto& p : L.p) {
      FT_CUDA(cudaMemsetAsync(p.dA.p, 0, p.dA.n * sizeof(float)));
      FT_CUDA(cudaMemsetAsync(p.dB.p, 0, p.dB.n * sizeof(float)));
    }
}

void Trainer::getGrads(int index, float* dA, float* dB, float factor) {
  FT_CHECK(index >= 0 && index < impl_->cfg.layers * NPROJ, "Trainer: projection index ", index, " out of range");
  auto& p = impl_->layers[index / NPROJ].p[index % NPROJ];
  FT_CUDA(cudaMemcpy(dA, p.dA.p, p.dA.n * sizeof(float), cudaMemcpyDeviceToHost));
  FT_CUDA(cudaMemcpy(dB, p.dB.p, p.dB.n * sizeof(float), cudaMemcpyDeviceToHost));
  for (std::size_t i = 0; i < p.dA.n; ++i) dA[i] *= factor;
  for (std::size_t i = 0; i < p.dB.n; ++i) dB[i] *= factor;
}

// ---- the optimizer on the device

void Trainer::setOptimizerState(int index, bool b, const HostState& h) {
  Impl& m = *impl_;
  FT_CHECK(index >= 0 && index < m.cfg.layers * NPROJ, "Trainer: projection index ", index, " out of range");
  auto& p = m.layers[index / NPROJ].p[index % NPROJ];
  FT_CHECK(p.adapted, "Trainer::setOptimizerState: projection ", index, " has no adapter");
  auto& s = p.state[b ? 1 : 0];
  const std::size_t n = b ? p.B.n : p.A.n;
  if (!s.set) {
    s.quantized = n >= ft::adamw8bit::kMinQuantized;
    if (s.quantized) {
      const std::size_t blocks = ft::adamw8bit::absmaxCount(n);
      s.mCodes.alloc(n, m.bytes.optimizer);
      s.vCodes.alloc(n, m.bytes.optimizer);
      s.mAbsmax.alloc(blocks, m.bytes.optimizer);
      s.vAbsmax.alloc(blocks, m.bytes.optimizer);
    } else {
      s.m.alloc(n, m.bytes.optimizer);
      s.v.alloc(n, m.bytes.optimizer);
    }
    s.set = true;
  }
  if (s.quantized) {
    FT_CHECK(h.mCodes != nullptr && h.vCodes != nullptr && h.mAbsmax != nullptr && h.vAbsmax != nullptr, "Trainer::setOptimizerState: projection ",
             index, b ? " B" : " A", " has ", n, " elements: 8-bit state expected");
    FT_CUDA(cudaMemcpy(s.mCodes.p, h.mCodes, n, cudaMemcpyHostToDevice));
    FT_CUDA(cudaMemcpy(s.vCodes.p, h.vCodes, n, cudaMemcpyHostToDevice));
    FT_CUDA(cudaMemcpy(s.mAbsmax.p, h.mAbsmax, s.mAbsmax.n * sizeof(float), cudaMemcpyHostToDevice));
    FT_CUDA(cudaMemcpy(s.vAbsmax.p, h.vAbsmax, s.vAbsmax.n * sizeof(float), cudaMemcpyHostToDevice));
  } else {
    FT_CHECK(h.m != nullptr && h.v != nullptr, "Trainer::setOptimizerState: projection ", index, b ? " B" : " A", " has ", n,
             " elements: fp32 state expected");
    FT_CUDA(cudaMemcpy(s.m.p, h.m, n * sizeof(float), cudaMemcpyHostToDevice));
    FT_CUDA(cudaMemcpy(s.v.p, h.v, n * sizeof(float), cudaMemcpyHostToDevice));
  }
}

void Trainer::getOptimizerState(int index, bool b, const HostState& h) const {
  const Impl& m = *impl_;
  FT_CHECK(index >= 0 && index < m.cfg.layers * NPROJ, "Trainer: projection index ", index, " out of range");
  const auto& p = m.layers[index / NPROJ].p[index % NPROJ];
  FT_CHECK(p.adapted, "Trainer::getOptimizerState: projection ", index, " has no adapter");
  const auto& s = p.state[b ? 1 : 0];
  FT_CHECK(s.set, "Trainer::getOptimizerState: projection ", index, b ? " B" : " A", " has no optimizer state (setOptimizerState first)");
  const std::size_t n = b ? p.B.n : p.A.n;
  if (s.quantized) {
    FT_CHECK(h.mCodes != nullptr && h.vCodes != nullptr && h.mAbsmax != nullptr && h.vAbsmax != nullptr, "Trainer::getOptimizerState: 8-bit state expected");
    FT_CUDA(cudaMemcpy(h.mCodes, s.mCodes.p, n, cudaMemcpyDeviceToHost));
    FT_CUDA(cudaMemcpy(h.vCodes, s.vCodes.p, n, cudaMemcpyDeviceToHost));
    FT_CUDA(cudaMemcpy(h.mAbsmax, s.mAbsmax.p, s.mAbsmax.n * sizeof(float), cudaMemcpyDeviceToHost));
    FT_CUDA(cudaMemcpy(h.vAbsmax, s.vAbsmax.p, s.vAbsmax.n * sizeof(float), cudaMemcpyDeviceToHost));
  } else {
    FT_CHECK(h.m != nullptr && h.v != nullptr, "Trainer::getOptimizerState: fp32 state expected");
    FT_CUDA(cudaMemcpy(h.m, s.m.p, n * sizeof(float), cudaMemcpyDeviceToHost));
    FT_CUDA(cudaMemcpy(h.v, s.v.p, n * sizeof(float), cudaMemcpyDeviceToHost));
  }
}

void Trainer::getLora(int index, float* A, float* B) const {
  const Impl& m = *impl_;
  FT_CHECK(index >= 0 && index < m.cfg.layers * NPROJ, "Trainer: projection index ", index, " out of range");
  const auto& p = m.layers[index / NPROJ].p[index % NPROJ];
  FT_CHECK(p.adapted, "Trainer::getLora: projection ", index, " has no adapter");
  FT_CUDA(cudaMemcpy(A, p.A.p, p.A.n * sizeof(float), cudaMemcpyDeviceToHost));
  FT_CUDA(cudaMemcpy(B, p.B.p, p.B.n * sizeof(float), cudaMemcpyDeviceToHost));
}

double Trainer::unscaleGrads(float factor, float divisor) {
  Impl& m = *impl_;
  std::vector<float*> grads;
  std::vector<std::size_t> sizes;
  std::size_t widest = 0;
  for (auto& L : m.layers)
    for (auto& p : L.p) {
      if (!p.adapted) continue;
      grads.push_back(p.dA.p), sizes.push_back(p.dA.n);
      grads.push_back(p.dB.p), sizes.push_back(p.dB.n);
      widest = std::max({widest, p.dA.n, p.dB.n});
    }
  if (grads.empty()) return 0.0;
  FT_CHECK(m.normParts.n >= unscaleWorkspace(widest) && m.normResults.n >= 2 * grads.size(), "Trainer::unscaleGrads: workspace too small");
  for (std::size_t t = 0; t < grads.size(); ++t) {
    scaleDivide(grads[t], sizes[t], factor, divisor);
    unscaleAndCheck(grads[t], sizes[t], 1.f, m.normParts.p, m.normResults.p + 2 * t);  // x 1: the sum of squares and the check
  }
  std::vector<float> results(2 * grads.size());
  FT_CUDA(cudaMemcpy(results.data(), m.normResults.p, results.size() * sizeof(float), cudaMemcpyDeviceToHost));
  double sum = 0.0;
  for (std::size_t t = 0; t < grads.size(); ++t) {
    if (results[2 * t + 1] != 0.0f) return NAN;
    sum += static_cast<double>(results[2 * t]);
  }
  return sum;
}

void Trainer::optimizerStep(double clip, const ft::adamw::Hyper& hyper) {
  Impl& m = *impl_;
  FT_CHECK(std::isfinite(clip) && clip > 0.0, "Trainer::optimizerStep: clip factor ", clip, ", expected a positive number");
  for (int l = 0; l < m.cfg.layers; ++l)
    for (int j = 0; j < NPROJ; ++j) {
      auto& p = m.layers[l].p[j];
      if (!p.adapted) continue;
      for (int b = 0; b < 2; ++b) {
        auto& s = p.state[b];
        FT_CHECK(s.set, "Trainer::optimizerStep: projection ", l * NPROJ + j, b ? " B" : " A", " has no optimizer state (setOptimizerState first)");
        Buf<float>& w = b ? p.B : p.A;
        Buf<float>& g = b ? p.dB : p.dA;
        if (clip != 1.0) scale(g.p, g.n, clip);
        if (s.quantized) adamw8bitStep(w.p, g.p, s.mCodes.p, s.vCodes.p, s.mAbsmax.p, s.vAbsmax.p, w.n, hyper);
        else adamwStep(w.p, g.p, s.m.p, s.v.p, w.n, hyper);
      }
    }
  syncLora();
}

Trainer::Bytes Trainer::bytes() const { return impl_->bytes; }

void Trainer::setDropout(float p, std::uint64_t seed) {
  Impl& m = *impl_;
  FT_CHECK(p >= 0.f && p < 1.f, "Trainer::setDropout: p = ", p, ", expected 0 <= p < 1");
  if (p > 0.f && m.xd.p == nullptr) {
    int widest = 0;
    for (int j = 0; j < NPROJ; ++j) widest = std::max(widest, ft::projIn(m.cfg, j));
    const std::size_t n = static_cast<std::size_t>(m.capN) * widest;
    m.xd.alloc(n, m.bytes.workspace);
    m.dropTmp.alloc(n, m.bytes.workspace);
  }
  m.dropout = p;
  m.dropSeed = seed;
}

float Trainer::step(const std::int32_t* ids, const std::uint8_t* mask, bool backward, float lossScale, int* counted, float* logitsOut) {
  return step(ids, mask, impl_->capBatch, impl_->capSeqLen, backward, lossScale, counted, logitsOut);
}

float Trainer::step(const std::int32_t* ids, const std::uint8_t* mask, int batch, int seqLen, bool backward, float lossScale, int* counted,
                    float* logitsOut) {
  Impl& m = *impl_;
  FT_CHECK(batch > 0 && seqLen > 0 && seqLen <= m.capSeqLen && static_cast<long long>(batch) * seqLen <= m.capN, "Trainer::step: ", batch, " x ",
           seqLen, " tokens do not fit the trainer's ", m.capBatch, " x ", m.capSeqLen);
  FT_CHECK(attentionBackwardWorkspace(batch, seqLen, m.cfg.heads, m.cfg.kvHeads, m.cfg.headDim) <= m.attnWs.n, "Trainer::step: ", batch, " x ",
           seqLen, " needs more attention workspace than ", m.capBatch, " x ", m.capSeqLen);
  m.batch = batch;
  m.seqLen = seqLen;
  m.N = batch * seqLen;
  m.training = backward;
  const int N = m.N, C = m.cfg.hidden, V = m.cfg.vocab, T = m.seqLen, L = m.cfg.layers;
  FT_CHECK(ids != nullptr && mask != nullptr, "Trainer::step: null ids or mask");
  FT_CHECK(lossScale > 0.f, "Trainer::step: loss scale ", lossScale, ", expected > 0");
  // targets: the next token of each position whose next token is in the loss
  std::vector<int> targets(N, -1);
  int count = 0;
  for (int n = 0; n < N; ++n) {
    FT_CHECK(ids[n] >= 0 && ids[n] < V, "Trainer::step: token id ", ids[n], " at ", n, " is outside the vocabulary of ", V);
    if (n % T + 1 < T && mask[n + 1] != 0) {
      targets[n] = ids[n + 1];
      ++count;
    }
  }
  if (counted != nullptr) *counted = count;
  FT_CUDA(cudaMemcpy(m.ids.p, ids, sizeof(std::int32_t) * N, cudaMemcpyHostToDevice));
  FT_CUDA(cudaMemcpy(m.targets.p, targets.data(), sizeof(int) * N, cudaMemcpyHostToDevice));
  const float gradScale = count > 0 ? lossScale / static_cast<float>(count) : 0.f;
  if (m.precision == Precision::bf16) m.forward<bf16>(backward, gradScale, logitsOut);
  else m.forward<__half>(backward, gradScale, logitsOut);

  std::vector<float> rowLoss(N);
  FT_CUDA(cudaMemcpy(rowLoss.data(), m.rowLoss.p, sizeof(float) * N, cudaMemcpyDeviceToHost));
  double sum = 0;
  for (int n = 0; n < N; ++n)
    if (targets[n] >= 0) sum += rowLoss[n];
  const float loss = count > 0 ? static_cast<float>(sum / count) : 0.f;
  if (!backward) return loss;

  // backward: the final norm, then every layer from the top, each recomputed from its kept input
  float* dcur = m.dxA.p;
  float* dnext = m.dxB.p;
  FT_CUDA(cudaMemset(dcur, 0, sizeof(float) * N * C));
  rmsnormBackward(m.dhf.p, m.xs[L].p, m.rstdf.p, m.finalNorm.p, dcur, N, C);
  for (int l = L - 1; l >= 0; --l) {
    if (m.precision == Precision::bf16) {
      m.layerForward<bf16>(l);  // recompute (it also rewrites xs[l + 1] with the same values)
      m.layerBackward<bf16>(l, dcur, dnext);
    } else {
      m.layerForward<__half>(l);
      m.layerBackward<__half>(l, dcur, dnext);
    }
    std::swap(dcur, dnext);
  }
  FT_CUDA(cudaDeviceSynchronize());
  return loss;
}

}  // namespace ft::cuda
