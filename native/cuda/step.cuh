// step.cuh: one QLoRA training step of the Qwen3 decoder on the GPU, from the kernels of this
// directory: the same model, loss and LoRA gradients as ft::forwardBackward (src/qwen3.h), in
// mixed precision: fp16 operands on every GPU (sm_75+), or bf16 operands on sm_80+ (Precision).
//
// The frozen base lives on the device as NF4 codes with double-quantized absmax (src/nf4.h,
// src/double_quant.h: the trainer double-quantizes the absmax it is given, so a reference must
// dequantize the weights with dq::dequantize(dq::quantize(absmax))), the tied embedding in fp16
// and the norm weights in fp32. LoRA A and B are fp32 master weights with 16-bit copies refreshed
// by syncLora(); their gradients accumulate in fp32, multiplied by the loss scale.
//
// Forward, per layer (N = batch * seqLen rows, x the fp32 residual stream):
//   h1 = rmsnorm(x) (fp16)                    q, k, v = h1 W^T + s (h1 A^T) B^T   (gemmNf4 + 2 gemm)
//   q, k = rope(qk-norm(q), qk-norm(k)) (fp16) y = attention(q, k, v) (fp16)
//   x' = x + y Wo^T + LoRA                    h2 = rmsnorm(x') (fp16)
//   g, u = h2 W^T + LoRA (fp32)               a = silu(g) u (fp16)
//   x'' = x' + a Wd^T + LoRA
// then the final norm and the tied head, 512 rows of fp16 logits at a time, each chunk turned
// into its gradient in place by the fused cross-entropy (xent.cuh) and multiplied back by E.
// Activation checkpointing: each layer's input x is kept (fp32); in backward the layer is
// recomputed from it, then its gradients computed in reverse. Gradients of the residual stream
// are fp32; they are rounded to fp16 (scaled by the loss scale, so small values survive) only
// as operands of the products.
//
// Every "fp16" above is the operand type: bf16 instead when the trainer is built with
// Precision::bf16 (sm_80+ only; refused elsewhere with the reason, see bf16Ready in common.cuh).
// bf16 keeps fp32's exponent range, so gradients need no loss scale to survive (lossScale 1 is
// fine) at the cost of 8 bits of mantissa instead of 11.
// The optimizer can run here too (setOptimizerState and what follows it): the AdamW state of every
// adapted tensor on the device in the host's formats (ft::adamw8bit: blockwise 8-bit moments from
// kMinQuantized elements, fp32 moments below), so that a training loop keeps its checkpoints
// and only copies state to the host when it saves one. The loss scale's schedule is the caller's.
// Not here yet: CUDA graphs.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "adamw.h"
#include "qwen3.h"

namespace ft::cuda {

/** One layer of the frozen base as the host holds it: NF4 projections (src/nf4.h), fp32 norms. */
struct HostLayer {
  const float* inputNorm;  // [C]
  const float* postNorm;   // [C]
  const float* qNorm;      // [D]
  const float* kNorm;      // [D]
  const std::uint8_t* codes[NPROJ];  // NF4 codes of w[j] (shapes as Qwen3Weights: [out, in])
  const float* absmax[NPROJ];        // its absmax per 64 (double-quantized on upload)
};

class Trainer {
 public:
  /** The 16-bit operand type of the products: fp16 (any GPU here, sm_75+) or bf16 (sm_80+). */
  enum class Precision { fp16, bf16 };

  // cfg: the model; embed [V, C] fp32 (stored in the operand type; also the head); finalNorm [C];
  // layers: cfg.layers of them; LoRA of the given rank on all seven projections, y += scale (x A^T) B^T;
  // batch x seqLen tokens per step; the operand type. Allocates everything the step needs here, once.
  Trainer(const Qwen3Config& cfg, const float* embed, const float* finalNorm, const std::vector<HostLayer>& layers, int rank, float scale,
          int batch, int seqLen, Precision precision = Precision::fp16);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  /** LoRA of projection `index` = layer * NPROJ + j: A [r, in], B [out, r], fp32, copied to the device. */
  void setLora(int index, const float* A, const float* B);
  /** No adapter on projection `index` (not in lora.targets): its LoRA products are skipped, its gradients stay zero. */
  void disableLora(int index);
  /** Device pointers of a projection's fp32 master weights and gradients (for the optimizer). */
  float* loraA(int index);
  float* loraB(int index);
  float* gradA(int index);
  float* gradB(int index);
  std::size_t loraSize(int index, bool b) const;
  Precision precision() const;
  /** Refreshes the 16-bit copies from the fp32 masters (after setLora or an optimizer step). */
  void syncLora();
  /** Sets every LoRA gradient to zero (before accumulating a step's micro-batches). */
  void zeroGrads();
  /** Copies a projection's gradients to the host, multiplied by `factor` (1 / the loss scale). */
  void getGrads(int index, float* dA, float* dB, float factor);

  /**
   * Forward (and backward) over ids/mask [batch, seqLen] (host arrays): returns the mean
   * cross-entropy over positions whose next token has mask 1 (as ft::forwardBackward), and with
   * `backward` accumulates lossScale * d(loss)/d(LoRA) into the gradients. `counted` gets the
   * number of positions in the loss. When `logits` is not null (tests; small models only), the
   * fp16 logits [batch * seqLen, V] are copied there as fp32 before they become gradients.
   */
  float step(const std::int32_t* ids, const std::uint8_t* mask, bool backward, float lossScale, int* counted, float* logits = nullptr);
  /** The same over a smaller batch: batch * seqLen at most the constructor's, seqLen at most its seqLen. */
  float step(const std::int32_t* ids, const std::uint8_t* mask, int batch, int seqLen, bool backward, float lossScale, int* counted,
             float* logits = nullptr);

  /**
   * LoRA dropout for the training calls that follow (backward true; never in forward-only calls):
   * PEFT's lora_dropout on each adapter's input, the mask of ft::forwardBackward's (src/qwen3.cpp)
   * bit for bit: drawn from a counter on (seed, layer, projection, element). The caller sets a new
   * seed every micro-step. The first p > 0 allocates two [batch * seqLen, intermediate] buffers.
   */
  void setDropout(float p, std::uint64_t seed);

  // ---- the optimizer on the device
  /** AdamW state of one tensor on the host: 8-bit (codes [n], absmax [ceil(n / 256)]) or fp32 (m, v [n]). */
  struct HostState {
    std::uint8_t* mCodes = nullptr;
    std::uint8_t* vCodes = nullptr;
    float* mAbsmax = nullptr;
    float* vAbsmax = nullptr;
    float* m = nullptr;
    float* v = nullptr;
  };
  /** Copies the state of projection `index`'s A (b false) or B to the device (allocated on first use). */
  void setOptimizerState(int index, bool b, const HostState& state);
  /** Copies it back to the host. */
  void getOptimizerState(int index, bool b, const HostState& state) const;
  /** Copies a projection's fp32 master weights to the host. */
  void getLora(int index, float* A, float* B) const;
  /**
   * Every adapted projection's gradients = (g x factor) / divisor in place (1 / the loss scale, and
   * the number of micro-batches: the host loop's roundings, fp32 each); returns their sum of
   * squares: per tensor on the device (lossscale.cuh: fp32 partials, so a sum above fp32's range,
   * a norm above ~1.8e19, reads as an overflow), summed in double on the host in projection order,
   * so the same for the same gradients on every run; NaN when some gradient is not finite.
   */
  double unscaleGrads(float factor, float divisor = 1.f);
  /** Gradients x clip (when clip != 1; in double, rounded once, as the host loop), then an AdamW
   *  step of every adapted tensor (state set first), then the 16-bit copies refreshed. */
  void optimizerStep(double clip, const ft::adamw::Hyper& hyper);

  /** Bytes this trainer holds on the device, by what they are (the measured memory plan). */
  struct Bytes {
    std::size_t weights, lora, activations, head, workspace, optimizer;
    std::size_t total() const { return weights + lora + activations + head + workspace + optimizer; }
  };
  Bytes bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ft::cuda
