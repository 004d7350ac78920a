// The training step (step.cuh) against the CPU backend (ft::forwardBackward, src/qwen3.h) on a
// tiny random Qwen3, and the memory and throughput of a Qwen3-4B step at 2 x 2048 tokens.
//
// The reference sees what the GPU sees: NF4 weights dequantized through the double-quantized
// absmax (dq::dequantize(dq::quantize(absmax)), as the trainer stores them) and an embedding
// already rounded to fp16 (bf16 for the bf16 step). What remains is mixed precision (16-bit
// operands and activations against fp32), hence the bounds: fp16 1e-2 on the loss, 2e-2 on the
// logits, 5e-2 on the relative L2 error of the LoRA gradients; bf16 (3 fewer mantissa bits, each
// rounding 8 x fp16's; the simulator measures 8 to 10 x fp16's errors) 1e-2, 5e-2 and 1e-1.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <string>
#include <vector>

#include "../gemm.cuh"
#include "../step.cuh"
#include "adamw.h"
#include "adamw8bit.h"
#include "double_quant.h"
#include "harness.h"
#include "nf4.h"
#include "qwen3.h"
#include "threads.h"

using namespace ft::test;

namespace {

const char* const kProjName[ft::NPROJ] = {"q", "k", "v", "o", "gate", "up", "down"};

__attribute__((format(printf, 1, 2))) std::string format(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

using ft::projIn;
using ft::projOut;
std::size_t projCount(const ft::Qwen3Config& c, int j) { return static_cast<std::size_t>(projOut(c, j)) * projIn(c, j); }

/** ||a - b|| / ||b|| in double; infinite when a holds a non-finite value or the sizes differ. */
double relL2(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double diff = 0, ref = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    const double d = static_cast<double>(a[i]) - b[i];
    diff += d * d;
    ref += static_cast<double>(b[i]) * b[i];
  }
  return ref == 0 ? std::sqrt(diff) : std::sqrt(diff / ref);
}

double maxAbs(const std::vector<float>& a) {
  double m = 0;
  for (float x : a) m = std::isfinite(x) ? std::fmax(m, std::fabs(static_cast<double>(x))) : INFINITY;
  return m;
}

/** Norm weights: 1 + N(0, 1) * 0.1. */
std::vector<float> normWeights(std::size_t n, std::uint64_t seed) {
  std::vector<float> v = randomVector(n, seed, 0.1f);
  for (auto& x : v) x += 1.f;
  return v;
}

/** N(0, 1) * scale, filled by the thread pool in chunks of 64K, each from its own stream. */
std::vector<float> randomVectorParallel(std::size_t n, std::uint64_t seed, float scale) {
  std::vector<float> v(n);
  const long chunk = 1 << 16;
  const long chunks = static_cast<long>((n + chunk - 1) / chunk);
  float* out = v.data();
  ft::parallelFor(chunks, 1, [out, n, seed, scale](long begin, long end) {
    for (long c = begin; c < end; ++c) {
      Rng r(seed * 0x100000001B3ull + static_cast<std::uint64_t>(c));
      const std::size_t e = std::min(n, static_cast<std::size_t>(c + 1) * chunk);
      for (std::size_t i = static_cast<std::size_t>(c) * chunk; i < e; ++i) out[i] = r.normal() * scale;
    }
  });
  return v;
}

/** A projection's NF4 codes and (plain fp32) absmax, as HostLayer takes them. */
struct QuantProj {
  std::vector<std::uint8_t> codes;
  std::vector<float> absmax;
};

QuantProj quantize(const std::vector<float>& w) {
  QuantProj q{std::vector<std::uint8_t>(ft::nf4::codeBytes(w.size())), std::vector<float>(ft::nf4::absmaxCount(w.size()))};
  ft::nf4::quantize(w.data(), w.size(), q.codes.data(), q.absmax.data());
  return q;
}

/** The fp32 weights the trainer computes with: absmax through double quantization, then NF4 decoding. */
std::vector<float> dequantizeAsTrainer(const QuantProj& q, std::size_t n) {
  const std::size_t blocks = q.absmax.size();
  std::vector<std::uint8_t> dq(blocks);
  std::vector<float> scales(ft::dq::scaleCount(blocks)), absmax(blocks), w(n);
  const float offset = ft::dq::quantize(q.absmax.data(), blocks, dq.data(), scales.data());
  ft::dq::dequantize(dq.data(), scales.data(), offset, blocks, absmax.data());
  ft::nf4::dequantize(q.codes.data(), absmax.data(), n, w.data());
  return w;
}

/** LoRA A [r, in]: uniform in +-1/sqrt(in) (PEFT's kaiming-uniform range). */
std::vector<float> loraA(int r, int in, std::uint64_t seed) {
  Rng g(seed);
  std::vector<float> a(static_cast<std::size_t>(r) * in);
  const float bound = 1.f / std::sqrt(static_cast<float>(in));
  for (auto& x : a) x = g.uniform() * bound;
  return a;
}

double msSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

/** A projection's gradients copied from the trainer (buffers sized for the larger of expected and reported). */
struct Grads {
  std::vector<std::vector<float>> dA, dB;  // [layers * NPROJ]
};

Grads download(ft::cuda::Trainer& tr, const ft::Qwen3Config& cfg, int rank, float factor) {
  const int count = cfg.layers * ft::NPROJ;
  Grads g{std::vector<std::vector<float>>(count), std::vector<std::vector<float>>(count)};
  for (int i = 0; i < count; ++i) {
    const int j = i % ft::NPROJ;
    const std::size_t na = static_cast<std::size_t>(rank) * projIn(cfg, j), nb = static_cast<std::size_t>(projOut(cfg, j)) * rank;
    g.dA[i].assign(std::max(na, tr.loraSize(i, false)), 0.f);
    g.dB[i].assign(std::max(nb, tr.loraSize(i, true)), 0.f);
    tr.getGrads(i, g.dA[i].data(), g.dB[i].data(), factor);
    g.dA[i].resize(na);
    g.dB[i].resize(nb);
  }
  return g;
}

std::size_t bitMismatches(const Grads& a, const Grads& b) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < a.dA.size(); ++i) {
    const std::size_t ma = mismatches(a.dA[i], b.dA[i]), mb = mismatches(a.dB[i], b.dB[i]);
    if (ma == SIZE_MAX || mb == SIZE_MAX) return SIZE_MAX;
    n += ma + mb;
  }
  return n;
}

double gradsMaxAbs(const Grads& g) {
  double m = 0;
  for (const auto& v : g.dA) m = std::fmax(m, maxAbs(v));
  for (const auto& v : g.dB) m = std::fmax(m, maxAbs(v));
  return m;
}

/** Worst relative L2 error, over all projections, of `a` against `factor` x `b` (accumulation). */
double worstScaled(const Grads& a, const Grads& b, float factor) {
  double worst = 0;
  for (int which = 0; which < 2; ++which) {
    const auto& va = which ? a.dB : a.dA;
    const auto& vb = which ? b.dB : b.dA;
    for (std::size_t i = 0; i < va.size(); ++i) {
      std::vector<float> ref = vb[i];
      for (auto& x : ref) x *= factor;
      worst = std::fmax(worst, relL2(va[i], ref));
    }
  }
  return worst;
}

/** One tensor's AdamW state on the host in the trainer's format: 8-bit from kMinQuantized elements, fp32 below. */
struct HostAdam {
  bool quantized = false;
  std::vector<std::uint8_t> mCodes, vCodes;
  std::vector<float> mAbsmax, vAbsmax, m, v;
  HostAdam() = default;
  explicit HostAdam(std::size_t n) : quantized(n >= ft::adamw8bit::kMinQuantized) {
    if (!quantized) {
      m.assign(n, 0.f), v.assign(n, 0.f);
      return;
    }
    mCodes.resize(n), vCodes.resize(n), mAbsmax.resize(ft::adamw8bit::absmaxCount(n)), vAbsmax.resize(ft::adamw8bit::absmaxCount(n));
    ft::adamw8bit::init(mCodes.data(), vCodes.data(), mAbsmax.data(), vAbsmax.data(), n);
  }
  /** What Trainer::setOptimizerState / getOptimizerState take. */
  ft::cuda::Trainer::HostState state() {
    ft::cuda::Trainer::HostState h;
    if (quantized) h.mCodes = mCodes.data(), h.vCodes = vCodes.data(), h.mAbsmax = mAbsmax.data(), h.vAbsmax = vAbsmax.data();
    else h.m = m.data(), h.v = v.data();
    return h;
  }
  /** The host's step, as the trainer (native/index.ts adamw8bitStep) runs it. */
  void step(std::vector<float>& w, const std::vector<float>& g, const ft::adamw::Hyper& hyper) {
    if (quantized) ft::adamw8bit::step(w.data(), g.data(), mCodes.data(), vCodes.data(), mAbsmax.data(), vAbsmax.data(), w.size(), hyper);
    else ft::adamw::step(w.data(), g.data(), m.data(), v.data(), w.size(), hyper);
  }
  /** Elements whose bits differ from o's. */
  std::size_t differences(const HostAdam& o) const {
    return quantized ? mismatches(mCodes, o.mCodes) + mismatches(vCodes, o.vCodes) + mismatches(mAbsmax, o.mAbsmax) + mismatches(vAbsmax, o.vAbsmax)
                     : mismatches(m, o.m) + mismatches(v, o.v);
  }
};

/** Bounds of the tiny step against the CPU backend, by operand type (see the top of this file). */
struct Bounds {
  double loss, logits, grads;
};

template <typename E>
void tinyStep(std::vector<Row>& rows) {
  if (!operandHere<E>(rows)) return;
  constexpr bool kBf16 = std::is_same_v<E, bf16>;
  const Bounds bound = kBf16 ? Bounds{1e-2, 5e-2, 1e-1} : Bounds{1e-2, 2e-2, 5e-2};
  const auto precision = kBf16 ? ft::cuda::Trainer::Precision::bf16 : ft::cuda::Trainer::Precision::fp16;
  const ft::Qwen3Config cfg{256, 768, 4, 2, 64, 2, 4096, 1e6f, 1e-6f};
  const int batch = 2, seqLen = 37, N = batch * seqLen, rank = 8, L = cfg.layers, C = cfg.hidden, V = cfg.vocab;
  const float scale = 2.f, lossScale = 1024.f;
  const int nLora = L * ft::NPROJ;

  // tokens; masks with zeros: a 5-token prompt in sequence 0, a hole and a masked last token in sequence 1
  Rng rng(7001);
  std::vector<std::int32_t> ids(N);
  for (auto& t : ids) t = static_cast<std::int32_t>(rng.next() % static_cast<std::uint64_t>(V));
  std::vector<std::uint8_t> mask(N, 1);
  for (int t = 0; t < 5; ++t) mask[t] = 0;
  for (int t = 20; t < 26; ++t) mask[seqLen + t] = 0;
  mask[N - 1] = 0;

  // the base: embedding rounded to E, norms, NF4 projections and their dequantized fp32 values
  const std::vector<float> embed = roundOperand<E>(randomVector(static_cast<std::size_t>(V) * C, 7002, 0.02f));
  const std::vector<float> finalNorm = normWeights(C, 7003);
  struct Layer {
    std::vector<float> inputNorm, postNorm, qNorm, kNorm;
    QuantProj q[ft::NPROJ];
    std::vector<float> w[ft::NPROJ];
  };
  std::vector<Layer> layers(L);
  ft::Qwen3Weights weights{embed.data(), finalNorm.data(), std::vector<ft::LayerWeights>(L)};
  std::vector<ft::cuda::HostLayer> hostLayers(L);
  for (int l = 0; l < L; ++l) {
    Layer& ly = layers[l];
    const std::uint64_t seed = 7100 + 100 * static_cast<std::uint64_t>(l);
    ly.inputNorm = normWeights(C, seed + 1);
    ly.postNorm = normWeights(C, seed + 2);
    ly.qNorm = normWeights(cfg.headDim, seed + 3);
    ly.kNorm = normWeights(cfg.headDim, seed + 4);
    ft::LayerWeights& lw = weights.layer[l];
    ft::cuda::HostLayer& hl = hostLayers[l];
    lw.inputNorm = hl.inputNorm = ly.inputNorm.data();
    lw.postNorm = hl.postNorm = ly.postNorm.data();
    lw.qNorm = hl.qNorm = ly.qNorm.data();
    lw.kNorm = hl.kNorm = ly.kNorm.data();
    for (int j = 0; j < ft::NPROJ; ++j) {
      const std::size_t n = projCount(cfg, j);
      ly.q[j] = quantize(randomVector(n, seed + 10 + j, 0.02f));
      ly.w[j] = dequantizeAsTrainer(ly.q[j], n);
      lw.w[j] = ly.w[j].data();
      hl.codes[j] = ly.q[j].codes.data();
      hl.absmax[j] = ly.q[j].absmax.data();
    }
  }

  // LoRA: random A, non-zero random B (so that dA is not zero), zeroed gradients for the reference
  std::vector<std::vector<float>> A(nLora), B(nLora), refA(nLora), refB(nLora);
  ft::Lora lora;
  lora.rank = rank;
  lora.scale = scale;
  lora.proj.resize(nLora);
  for (int i = 0; i < nLora; ++i) {
    const int j = i % ft::NPROJ, in = projIn(cfg, j), out = projOut(cfg, j);
    A[i] = loraA(rank, in, 7500 + i);
    B[i] = randomVector(static_cast<std::size_t>(out) * rank, 7600 + i, 0.05f);
    refA[i].assign(A[i].size(), 0.f);
    refB[i].assign(B[i].size(), 0.f);
    lora.proj[i] = ft::LoraPair{A[i].data(), B[i].data(), refA[i].data(), refB[i].data()};
  }

  // the CPU backend
  std::vector<float> logitsRef(static_cast<std::size_t>(N) * V);
  int countedRef = -1;
  float lossRef = 0;
  const double cpu = cpuMs([&] {
    lossRef = ft::forwardBackward(cfg, weights, lora, ids.data(), mask.data(), batch, seqLen, true, logitsRef.data(), &countedRef);
  });

  // the GPU
  ft::cuda::Trainer tr(cfg, embed.data(), finalNorm.data(), hostLayers, rank, scale, batch, seqLen, precision);
  std::size_t sizeErrors = 0;
  for (int i = 0; i < nLora; ++i) {
    sizeErrors += tr.loraSize(i, false) != A[i].size();
    sizeErrors += tr.loraSize(i, true) != B[i].size();
  }
  rows.push_back({"loraSize = r x in and out x r (projections wrong)", static_cast<double>(sizeErrors), 0});
  for (int i = 0; i < nLora; ++i) tr.setLora(i, A[i].data(), B[i].data());
  tr.syncLora();
  tr.zeroGrads();
  std::vector<float> logits(static_cast<std::size_t>(N) * V);
  int counted = -1;
  float loss1 = 0;
  const double gpu = cpuMs([&] {
    loss1 = tr.step(ids.data(), mask.data(), true, lossScale, &counted, logits.data());
    FT_CUDA(cudaDeviceSynchronize());
  });
  const Grads g1 = download(tr, cfg, rank, 1.f / lossScale);

  rows.push_back({"loss (relative difference)", std::isfinite(loss1) ? std::fabs(static_cast<double>(loss1) - lossRef) / std::fabs(lossRef) : INFINITY,
                  bound.loss, gpu, cpu, format("gpu %.6f, cpu %.6f", loss1, lossRef)});
  rows.push_back({"counted positions (difference)", std::fabs(static_cast<double>(counted) - countedRef), 0, -1, -1,
                  format("gpu %d, cpu %d", counted, countedRef)});
  rows.push_back({format("logits [%d x %d]", N, V), relError(logits, logitsRef), bound.logits});
  for (int j = 0; j < ft::NPROJ; ++j) {
    double worstA = 0, worstB = 0, normA = 0, normB = 0;
    for (int l = 0; l < L; ++l) {
      const int i = l * ft::NPROJ + j;
      worstA = std::fmax(worstA, relL2(g1.dA[i], refA[i]));
      worstB = std::fmax(worstB, relL2(g1.dB[i], refB[i]));
      normA = std::fmax(normA, maxAbs(refA[i]));
      normB = std::fmax(normB, maxAbs(refB[i]));
    }
    rows.push_back({format("dA %s (worst of %d layers, rel L2)", kProjName[j], L), worstA, bound.grads, -1, -1, format("max |ref| %.3g", normA)});
    rows.push_back({format("dB %s (worst of %d layers, rel L2)", kProjName[j], L), worstB, bound.grads, -1, -1, format("max |ref| %.3g", normB)});
  }

  // determinism: the same step again gives the same loss, and the gradients accumulate (2 x)
  int counted2 = -1;
  const float loss2 = tr.step(ids.data(), mask.data(), true, lossScale, &counted2, nullptr);
  const Grads g2 = download(tr, cfg, rank, 1.f / lossScale);
  rows.push_back({"determinism: second step's loss (difference)", std::isfinite(loss2) ? std::fabs(static_cast<double>(loss2) - loss1) : INFINITY, 0, -1,
                  -1, format("%.9g vs %.9g", loss2, loss1)});
  rows.push_back({"accumulation: grads after 2 steps vs 2 x one step (worst rel L2)", worstScaled(g2, g1, 2.f), 1e-5});

  // zeroGrads, then the same step from zero: bit-identical gradients
  tr.zeroGrads();
  const Grads g0 = download(tr, cfg, rank, 1.f);
  rows.push_back({"zeroGrads: max |grad| after it", gradsMaxAbs(g0), 0});
  int counted3 = -1;
  tr.step(ids.data(), mask.data(), true, lossScale, &counted3, nullptr);
  const Grads g3 = download(tr, cfg, rank, 1.f / lossScale);
  rows.push_back({"determinism: grads of a step from zero = first step's (bits differing)", static_cast<double>(bitMismatches(g3, g1)), 0});

  // forward only: the same loss, and the gradients are not touched
  tr.zeroGrads();
  int counted4 = -1;
  const float loss4 = tr.step(ids.data(), mask.data(), false, lossScale, &counted4, nullptr);
  rows.push_back({"forward only: loss vs the training step's (relative difference)",
                  std::isfinite(loss4) ? std::fabs(static_cast<double>(loss4) - loss1) / std::fabs(loss1) : INFINITY, 1e-6, -1, -1,
                  format("%.9g vs %.9g, counted %d", loss4, loss1, counted4)});
  rows.push_back({"forward only: max |grad| after it", gradsMaxAbs(download(tr, cfg, rank, 1.f)), 0});

  // LoRA dropout on a smaller batch (one sequence of 30 tokens in the 2 x 37 trainer): the CPU
  // backend's masks, drawn from the same counter, so the same loss and gradients as its step
  const int T5 = 30;
  const float pDrop = 0.25f;
  const std::uint64_t dropSeed = 1234567;
  for (int i = 0; i < nLora; ++i) {
    std::fill(refA[i].begin(), refA[i].end(), 0.f);
    std::fill(refB[i].begin(), refB[i].end(), 0.f);
  }
  lora.dropout = pDrop;
  lora.seed = dropSeed;
  int counted5Ref = -1;
  const float loss5Ref = ft::forwardBackward(cfg, weights, lora, ids.data(), mask.data(), 1, T5, true, nullptr, &counted5Ref);
  tr.setDropout(pDrop, dropSeed);
  tr.zeroGrads();
  int counted5 = -1;
  const float loss5 = tr.step(ids.data(), mask.data(), 1, T5, true, lossScale, &counted5, nullptr);
  const Grads g5 = download(tr, cfg, rank, 1.f / lossScale);
  rows.push_back({format("dropout %.2f, 1 x %d: loss (relative difference)", pDrop, T5),
                  std::isfinite(loss5) ? std::fabs(static_cast<double>(loss5) - loss5Ref) / std::fabs(loss5Ref) : INFINITY, bound.loss, -1, -1,
                  format("gpu %.6f, cpu %.6f, counted %d/%d", loss5, loss5Ref, counted5, counted5Ref)});
  double worst5 = 0;
  for (int i = 0; i < nLora; ++i) worst5 = std::fmax(worst5, std::fmax(relL2(g5.dA[i], refA[i]), relL2(g5.dB[i], refB[i])));
  rows.push_back({"dropout: LoRA gradients (worst rel L2 of all projections)", worst5, bound.grads});
  // the masks matter: without dropout the same batch's gradients are far from these
  tr.setDropout(0.f, dropSeed);
  tr.zeroGrads();
  tr.step(ids.data(), mask.data(), 1, T5, true, lossScale, &counted5, nullptr);
  const Grads g6 = download(tr, cfg, rank, 1.f / lossScale);
  double moved = INFINITY;
  for (int i = 0; i < nLora; ++i) moved = std::fmin(moved, relL2(g6.dA[i], refA[i]));
  rows.push_back({"dropout off: dA differs from the dropout step's (least rel L2, must exceed 0.1)", moved > 0.1 ? 0.0 : 1.0, 0, -1, -1,
                  format("least %.3g", moved)});
  // forward-only calls never drop
  tr.setDropout(pDrop, dropSeed);
  const float loss7 = tr.step(ids.data(), mask.data(), false, lossScale, &counted5, nullptr);
  rows.push_back({"dropout set, forward only: loss = the undropped one (relative difference)",
                  std::isfinite(loss7) ? std::fabs(static_cast<double>(loss7) - loss1) / std::fabs(loss1) : INFINITY, 1e-6});
  // adapters on some projections only (lora.targets a subset): the others' LoRA products are
  // skipped on the GPU, and their gradients stay zero
  tr.setDropout(0.f, 0);
  lora.dropout = 0.f;
  const int off[] = {ft::PROJ_K, ft::PROJ_O, ft::PROJ_UP, ft::NPROJ + ft::PROJ_GATE};
  for (int i = 0; i < nLora; ++i) {
    std::fill(refA[i].begin(), refA[i].end(), 0.f);
    std::fill(refB[i].begin(), refB[i].end(), 0.f);
  }
  for (int i : off) {
    lora.proj[i] = ft::LoraPair{};
    tr.disableLora(i);
  }
  int counted8Ref = -1, counted8 = -1;
  const float loss8Ref = ft::forwardBackward(cfg, weights, lora, ids.data(), mask.data(), batch, seqLen, true, nullptr, &counted8Ref);
  tr.zeroGrads();
  const float loss8 = tr.step(ids.data(), mask.data(), true, lossScale, &counted8, nullptr);
  const Grads g8 = download(tr, cfg, rank, 1.f / lossScale);
  rows.push_back({"4 adapters disabled: loss (relative difference)",
                  std::isfinite(loss8) ? std::fabs(static_cast<double>(loss8) - loss8Ref) / std::fabs(loss8Ref) : INFINITY, bound.loss, -1, -1,
                  format("gpu %.6f, cpu %.6f; all adapters: %.6f", loss8, loss8Ref, loss1)});
  double worst8 = 0, disabled8 = 0;
  for (int i = 0; i < nLora; ++i) {
    if (std::find(std::begin(off), std::end(off), i) != std::end(off)) {
      disabled8 = std::fmax(disabled8, std::fmax(maxAbs(g8.dA[i]), maxAbs(g8.dB[i])));
    } else {
      worst8 = std::fmax(worst8, std::fmax(relL2(g8.dA[i], refA[i]), relL2(g8.dB[i], refB[i])));
    }
  }
  rows.push_back({"4 adapters disabled: the others' LoRA gradients (worst rel L2)", worst8, bound.grads});
  rows.push_back({"4 adapters disabled: their gradients (max |grad|)", disabled8, 0});

  // a batch larger than the trainer's is refused with its shapes
  bool refused = false;
  try {
    tr.step(ids.data(), mask.data(), 3, seqLen, false, lossScale, &counted5, nullptr);
  } catch (const std::exception&) {
    refused = true;
  }
  rows.push_back({"3 x 37 tokens in a 2 x 37 trainer: refused", refused ? 0.0 : 1.0, 0});

  // the optimizer on the device (the adapted projections: all but `off`) = the host's on the same
  // gradients: unscale (the norm to 1e-6), clip and AdamW bit for bit, 8-bit and fp32 states both
  tr.zeroGrads();
  tr.step(ids.data(), mask.data(), true, lossScale, &counted8, nullptr);
  const float factor = 1.f / lossScale, divisor = 3.f;  // 3 micro-batches: not a power of two
  const double clip = 0.37;
  const ft::adamw::Hyper hyper{1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 1};
  struct HostOpt {
    std::vector<float> w, g;
    HostAdam adam;
  };
  std::vector<HostOpt> host;
  std::vector<int> owner;  // projection index of each tensor
  double sqRef = 0;
  for (int i = 0; i < nLora; ++i) {
    if (std::find(std::begin(off), std::end(off), i) != std::end(off)) continue;
    std::vector<float> gA(A[i].size()), gB(B[i].size());
    tr.getGrads(i, gA.data(), gB.data(), 1.f);
    for (int b = 0; b < 2; ++b) {
      HostOpt h{b ? B[i] : A[i], b ? gB : gA, HostAdam(b ? B[i].size() : A[i].size())};
      for (auto& x : h.g) {
        x = (x * factor) / divisor;  // the host loop: getGrads' multiply, then the division (fp32 each)
        sqRef += static_cast<double>(x) * x;
      }
      host.push_back(std::move(h));
      owner.push_back(i);
    }
  }
  for (std::size_t k = 0; k < host.size(); ++k) tr.setOptimizerState(owner[k], k % 2 == 1, host[k].adam.state());
  const double sq = tr.unscaleGrads(factor, divisor);
  rows.push_back({"device optimizer: sum of squares of the unscaled gradients (relative difference)", std::fabs(sq - sqRef) / sqRef, 1e-6, -1, -1,
                  format("gpu %.9g, host %.9g", sq, sqRef)});
  tr.optimizerStep(clip, hyper);
  std::size_t quantized = 0;
  for (auto& h : host) {
    for (auto& x : h.g) x = static_cast<float>(static_cast<double>(x) * clip);  // JavaScript's g[i] * c
    quantized += h.adam.quantized;
    h.adam.step(h.w, h.g, hyper);
  }
  std::size_t differ = 0;
  for (std::size_t k = 0; k < host.size(); k += 2) {
    std::vector<float> a(host[k].w.size()), b(host[k + 1].w.size());
    tr.getLora(owner[k], a.data(), b.data());
    differ += mismatches(a, host[k].w) + mismatches(b, host[k + 1].w);
    for (int j = 0; j < 2; ++j) {
      HostAdam back = host[k + j].adam;  // same shapes, overwritten by the device's state
      tr.getOptimizerState(owner[k], j == 1, back.state());
      differ += back.differences(host[k + j].adam);
    }
  }
  rows.push_back({"device optimizer: clip + AdamW = the host's (weights and state, bits differing)", static_cast<double>(differ), 0, -1, -1,
                  format("%zu tensors, %zu with 8-bit state", host.size(), quantized)});
}

}  // namespace

FT_TEST("step", "tiny model step = CPU backend") { tinyStep<__half>(rows); }
FT_TEST("step", "tiny model step = CPU backend, bf16") { tinyStep<bf16>(rows); }

FT_TEST("step", "bf16 refused where the GPU has no bf16 tensor cores") {
  // where bf16 runs, nothing to refuse; elsewhere (a T4, the compute_75 PTX, SIM_SM=75) the
  // Trainer must refuse it at construction, naming the GPU's architecture
  std::string why;
  if (ft::cuda::bf16Ready(&why)) {
    Row r{"bf16 refusal", 0, 0};
    r.skipped = true;
    r.note = "this GPU runs bf16";
    rows.push_back(r);
    return;
  }
  const ft::Qwen3Config cfg{64, 128, 2, 1, 64, 1, 256, 1e6f, 1e-6f};
  std::vector<float> embed(static_cast<std::size_t>(cfg.vocab) * cfg.hidden, 0.01f), norm(cfg.hidden, 1.f), hn(cfg.headDim, 1.f);
  QuantProj q[ft::NPROJ];
  ft::cuda::HostLayer hl{norm.data(), norm.data(), hn.data(), hn.data(), {}, {}};
  for (int j = 0; j < ft::NPROJ; ++j) {
    q[j] = quantize(randomVector(projCount(cfg, j), 900 + j, 0.02f));
    hl.codes[j] = q[j].codes.data();
    hl.absmax[j] = q[j].absmax.data();
  }
  std::string message;
  try {
    ft::cuda::Trainer tr(cfg, embed.data(), norm.data(), {hl}, 4, 1.f, 1, 8, ft::cuda::Trainer::Precision::bf16);
  } catch (const std::exception& e) {
    message = e.what();
  }
  const bool ok = message.find("bf16") != std::string::npos && message.find("sm_") != std::string::npos;
  rows.push_back({"Trainer(bf16) throws, naming bf16 and the architecture", ok ? 0.0 : 1.0, 0, -1, -1, message.empty() ? "no error" : message});
  // a kernel's bf16 launcher refuses too (it would trap, and take the CUDA context with it)
  Dev<bf16> a(16 * 16);
  Dev<float> c(16 * 16);
  std::string gemmMessage;
  try {
    ft::cuda::gemm({16, 16, 16, false, false, 16, 16, 16}, 1.f, a.p, a.p, 0.f, c.p);
  } catch (const std::exception& e) {
    gemmMessage = e.what();
  }
  rows.push_back({"gemm(bf16) throws before launching", gemmMessage.find("gemm: bf16 operands:") != std::string::npos ? 0.0 : 1.0, 0, -1, -1,
                  gemmMessage.empty() ? "no error" : gemmMessage});
}

FT_TEST("step", "Qwen3-4B step: memory and throughput") {
  const ft::Qwen3Config cfg{2560, 9728, 32, 8, 128, 36, 151936, 1e6f, 1e-6f};
  const int batch = 2, seqLen = 2048, N = batch * seqLen, rank = 16, L = cfg.layers, C = cfg.hidden, V = cfg.vocab;
  const float scale = 2.f, lossScale = 1024.f;
  const int nLora = L * ft::NPROJ;

  // The host side, built once and shared by every layer: one random NF4 tensor per projection,
  // one set of norms, one LoRA pair per projection kind; the embedding tiles a random fp16 pool.
  const auto prep0 = std::chrono::steady_clock::now();
  QuantProj proj[ft::NPROJ];
  for (int j = 0; j < ft::NPROJ; ++j) proj[j] = quantize(randomVectorParallel(projCount(cfg, j), 8100 + j, 0.02f));
  const std::vector<float> inputNorm = normWeights(C, 8201), postNorm = normWeights(C, 8202), qNorm = normWeights(cfg.headDim, 8203),
                           kNorm = normWeights(cfg.headDim, 8204), finalNorm = normWeights(C, 8205);
  std::vector<ft::cuda::HostLayer> hostLayers(L);
  for (auto& hl : hostLayers) {
    hl.inputNorm = inputNorm.data();
    hl.postNorm = postNorm.data();
    hl.qNorm = qNorm.data();
    hl.kNorm = kNorm.data();
    for (int j = 0; j < ft::NPROJ; ++j) {
      hl.codes[j] = proj[j].codes.data();
      hl.absmax[j] = proj[j].absmax.data();
    }
  }
  const std::vector<float> pool = roundHalf(randomVector((1u << 20) + 7, 8300, 0.02f));  // not a multiple of C: rows differ
  std::vector<float> embed(static_cast<std::size_t>(V) * C);
  {
    const std::size_t n = embed.size(), P = pool.size();
    const long chunk = 1 << 20, chunks = static_cast<long>((n + chunk - 1) / chunk);
    float* out = embed.data();
    const float* src = pool.data();
    ft::parallelFor(chunks, 1, [out, src, n, P](long begin, long end) {
      for (std::size_t i = static_cast<std::size_t>(begin) * chunk, e = std::min(n, static_cast<std::size_t>(end) * chunk); i < e; ++i) out[i] = src[i % P];
    });
  }
  std::vector<std::vector<float>> loraAHost(ft::NPROJ), loraBHost(ft::NPROJ);
  for (int j = 0; j < ft::NPROJ; ++j) {
    loraAHost[j] = loraA(rank, projIn(cfg, j), 8400 + j);
    loraBHost[j] = randomVector(static_cast<std::size_t>(projOut(cfg, j)) * rank, 8500 + j, 0.01f);
  }
  Rng rng(8600);
  std::vector<std::int32_t> ids(N);
  for (auto& t : ids) t = static_cast<std::int32_t>(rng.next() % static_cast<std::uint64_t>(V));
  std::vector<std::uint8_t> mask(N, 1);
  for (int t = 0; t < 64; ++t) mask[seqLen + t] = 0;  // a prompt in sequence 1
  const double prepMs = msSince(prep0);

  // fp16, then bf16 where the GPU has it (sm_80+): the same model, a Trainer each
  using Precision = ft::cuda::Trainer::Precision;
  for (const Precision precision : {Precision::fp16, Precision::bf16}) {
    const bool b16 = precision == Precision::bf16;
    const std::string tag = b16 ? ", bf16" : "";
    std::string why;
    if (b16 && !ft::cuda::bf16Ready(&why)) {
      Row r{"bf16 operands", 0, 0};
      r.skipped = true;
      r.note = why;
      rows.push_back(r);
      continue;
    }
    FT_CUDA(cudaDeviceSynchronize());
    std::size_t free0 = 0, totalMem = 0, free1 = 0, free2 = 0, free3 = 0;
    FT_CUDA(cudaMemGetInfo(&free0, &totalMem));
    const auto ctor0 = std::chrono::steady_clock::now();
    ft::cuda::Trainer tr(cfg, embed.data(), finalNorm.data(), hostLayers, rank, scale, batch, seqLen, precision);
    FT_CUDA(cudaDeviceSynchronize());
    const double ctorMs = msSince(ctor0);
    FT_CUDA(cudaMemGetInfo(&free1, &totalMem));
    for (int i = 0; i < nLora; ++i) tr.setLora(i, loraAHost[i % ft::NPROJ].data(), loraBHost[i % ft::NPROJ].data());
    tr.syncLora();
    tr.zeroGrads();
    tr.setDropout(0.05f, 42);  // the reference profile's lora.dropout (its buffers count in the peak)

    // the optimizer's state as the trainer keeps it: on the device (its bytes count in the peak),
    // and a copy on the host for the host-side comparison below
    std::vector<std::vector<float>> pA(nLora), pB(nLora), gA(nLora), gB(nLora);
    std::vector<HostAdam> sA(nLora), sB(nLora);
    for (int i = 0; i < nLora; ++i) {
      pA[i] = loraAHost[i % ft::NPROJ];
      pB[i] = loraBHost[i % ft::NPROJ];
      gA[i].resize(pA[i].size());
      gB[i].resize(pB[i].size());
      sA[i] = HostAdam(pA[i].size());
      sB[i] = HostAdam(pB[i].size());
      tr.setOptimizerState(i, false, sA[i].state());
      tr.setOptimizerState(i, true, sB[i].state());
    }

    // warm-up step, then the memory it left in use
    int counted = -1;
    const auto warm0 = std::chrono::steady_clock::now();
    const float loss0 = tr.step(ids.data(), mask.data(), true, lossScale, &counted, nullptr);
    FT_CUDA(cudaDeviceSynchronize());
    const double warmMs = msSince(warm0);
    FT_CUDA(cudaMemGetInfo(&free2, &totalMem));

    // 3 timed steps (zeroGrads + forward + backward, as a training step without the optimizer)
    const int steps = 3;
    int changed = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int s = 0; s < steps; ++s) {
      tr.zeroGrads();
      int c = -1;
      const float loss = tr.step(ids.data(), mask.data(), true, lossScale, &c, nullptr);
      changed += !(loss == loss0 && c == counted);
    }
    FT_CUDA(cudaDeviceSynchronize());
    const double stepMs = msSince(t0) / steps;
    FT_CUDA(cudaMemGetInfo(&free3, &totalMem));

    const double GiB = 1073741824.0;
    const std::size_t minFree = std::min(free1, std::min(free2, free3));
    const double peak = (free0 > minFree ? static_cast<double>(free0 - minFree) : 0.0) / GiB;
    const ft::cuda::Trainer::Bytes b = tr.bytes();
    rows.push_back({"peak device memory, GiB (cudaMemGetInfo, before the Trainer -> after its steps)" + tag, peak, 14, -1, prepMs,
                    format("Trainer::bytes() GiB: weights %.2f, lora %.2f, activations %.2f, head %.2f, workspace %.2f, optimizer %.2f, total %.2f; "
                           "after ctor %.2f, after step 1 %.2f; in use before (context etc.) %.2f of %.1f",
                           b.weights / GiB, b.lora / GiB, b.activations / GiB, b.head / GiB, b.workspace / GiB, b.optimizer / GiB, b.total() / GiB,
                           static_cast<double>(free0 - std::min(free0, free1)) / GiB, static_cast<double>(free0 - std::min(free0, free2)) / GiB,
                           static_cast<double>(totalMem - free0) / GiB, totalMem / GiB)});

    // model FLOPs per token: 6 P (forward, recompute, input gradients) + attention (QK^T and PV,
    // causal: T/2 keys on average, 4 times: forward, recompute, 2 x backward)
    const double P = static_cast<double>(L) * (2560.0 * 4096 * 2 + 2560.0 * 1024 * 2 + 3.0 * 2560 * 9728) + 151936.0 * 2560;
    const double attn = static_cast<double>(L) * 4 * (4.0 * (seqLen / 2.0) * cfg.heads * cfg.headDim);
    const double flopsPerToken = 6 * P + attn;
    const double tokensPerS = N / (stepMs / 1e3);
    rows.push_back({format("throughput, %d steps of %d x %d (informative)", steps, batch, seqLen) + tag, 0, 0, stepMs, -1,
                    format("tokens/s %.0f, TFLOP/s %.1f (%.1f GFLOP/token); warm-up step %.0f ms, Trainer ctor %.0f ms", tokensPerS,
                           tokensPerS * flopsPerToken / 1e12, flopsPerToken / 1e9, warmMs, ctorMs)});
    rows.push_back({"loss is finite" + tag, std::isfinite(loss0) ? 0.0 : 1.0, 0, -1, -1,
                    format("loss %.4f (ln V = %.4f), counted %d of %d", loss0, std::log(static_cast<double>(V)), counted, N)});
    rows.push_back({"timed steps: same loss and count as the warm-up (steps differing)" + tag, static_cast<double>(changed), 0});

    if (b16) continue;  // the optimizer row once (it does not depend on the operand type)
    // The optimizer step on the host, once per optimizer step (gradAccum micro-batches), as the
    // trainer ran it on the CUDA backend before the device optimizer: the gradients down to the host, 8-bit AdamW there (tensor by tensor, as the
    // loop calls it, each on the thread pool: every core of the GPU machine's host), the new weights up and their fp16 copies refreshed.
    const ft::adamw::Hyper hyper{2e-4f, 0.9f, 0.999f, 1e-8f, 0.f, 1};
    const auto o0 = std::chrono::steady_clock::now();
    for (int i = 0; i < nLora; ++i) tr.getGrads(i, gA[i].data(), gB[i].data(), 1.f / lossScale);
    const double downMs = msSince(o0);
    const auto o1 = std::chrono::steady_clock::now();
    for (int i = 0; i < nLora; ++i) {
      sA[i].step(pA[i], gA[i], hyper);
      sB[i].step(pB[i], gB[i], hyper);
    }
    const double adamMs = msSince(o1);
    const auto o2 = std::chrono::steady_clock::now();
    for (int i = 0; i < nLora; ++i) tr.setLora(i, pA[i].data(), pB[i].data());
    tr.syncLora();
    FT_CUDA(cudaDeviceSynchronize());
    const double upMs = msSince(o2);
    const double optMs = downMs + adamMs + upMs;
    rows.push_back({"optimizer step on the host, as the CPU backend runs it (informative)", 0, 0, optMs, -1,
                    format("gradients down %.0f ms, 8-bit AdamW %.0f ms (%d threads), weights up %.0f ms; %.0f%% of one 2 x %d micro-step, %.0f%% of 4 (gradAccum 4)",
                           downMs, adamMs, ft::threads(), upMs, 100 * optMs / stepMs, seqLen, 100 * optMs / (4 * stepMs))});
    // the optimizer step as the trainer runs it on the CUDA backend: on the device (the gradients'
    // unscale and norm, AdamW on every tensor, the 16-bit copies refreshed), nothing copied
    const auto d0 = std::chrono::steady_clock::now();
    const double sq = tr.unscaleGrads(1.f / lossScale);
    tr.optimizerStep(1.f, hyper);
    FT_CUDA(cudaDeviceSynchronize());
    const double devMs = msSince(d0);
    rows.push_back({"optimizer step on the device, as the trainer runs it (informative)", std::isfinite(sq) ? 0.0 : 1.0, 0, devMs, -1,
                    format("%.1f ms: %.2f%% of one 2 x %d micro-step, %.2f%% of 4 (gradAccum 4); %.1fx faster than the host's", devMs,
                           100 * devMs / stepMs, seqLen, 100 * devMs / (4 * stepMs), optMs / devMs)});
  }
}
