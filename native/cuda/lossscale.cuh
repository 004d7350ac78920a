// lossscale.cuh: dynamic loss scaling for fp16 mixed precision.
//
// Gradients of fp16 activations underflow: most are far below fp16's smallest normal (6e-5).
// So the loss is multiplied by a scale S (65536 to start) before the backward pass, which
// multiplies every gradient by S; before the optimizer step the fp32 gradients are multiplied by
// 1/S again (unscaleAndCheck). When S is too large some fp16 value overflows and a gradient comes
// out inf or NaN: the step is then skipped and S halved. After growthInterval good steps in a row
// S is doubled again, so it stays near the largest value that does not overflow (LossScaler).
//
// unscaleAndCheck, in one read and one write of the gradient buffer:
//   grad[i] *= invScale                                   (one fp32 multiply, rounded once)
//   result[0] = sum of grad[i]^2 after the multiply       (for the gradient norm and its clipping)
//   result[1] = 1 if some grad[i] is inf or NaN, else 0   (the overflow flag: skip the step)
// Deterministic: no float atomics. Kernel 1 runs unscaleBlocks(n) blocks of 256 threads over
// the buffer (grid-stride, so each thread's order is fixed by n); each block writes its partial
// sum of squares (fp32: per thread, then a fixed tree) and its non-finite flag to the workspace;
// kernel 2, one warp, sums the partials in double in a fixed order. The result depends on n and
// the data only, not on the GPU or the run.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>

namespace ft::cuda {

constexpr int kUnscaleThreads = 256;               // per block
constexpr std::size_t kUnscaleMaxBlocks = 1024;    // enough to fill any GPU we target
constexpr std::size_t kUnscaleMinPerThread = 4;    // fewer blocks for small buffers

/** The number of blocks of kernel 1 for n elements (0 for n = 0): a function of n alone. */
constexpr std::size_t unscaleBlocks(std::size_t n) {
  return std::min(kUnscaleMaxBlocks, (n + kUnscaleThreads * kUnscaleMinPerThread - 1) / (kUnscaleThreads * kUnscaleMinPerThread));
}

/** Floats of workspace unscaleAndCheck needs: a partial sum of squares and a flag per block. */
constexpr std::size_t unscaleWorkspace(std::size_t n) { return 2 * unscaleBlocks(n); }

// grad:     [n]                     fp32, multiplied by invScale in place
// partials: [unscaleWorkspace(n)]   device workspace (may be null when n = 0)
// result:   [2]                     device, out: {sum of squares of the unscaled grad, 1 if any value is inf/NaN else 0}
void unscaleAndCheck(float* grad, std::size_t n, float invScale, float* partials, float* result, cudaStream_t stream = 0);

/**
 * The scale's schedule, on the host: the training step reads result[1] and calls update.
 *   overflow:  scale /= factor (not below 1), goodSteps = 0, the step is skipped (false)
 *   otherwise: ++goodSteps; at growthInterval, scale *= factor (unless that is inf) and
 *              goodSteps = 0; the step is applied (true)
 */
struct LossScaler {
  float scale = 65536.0f;
  int goodSteps = 0;
  int growthInterval = 2000;
  float factor = 2.0f;

  /** Returns whether the step is applied. */
  bool update(bool overflow);
  /** What unscaleAndCheck multiplies by. */
  float invScale() const { return 1.0f / scale; }
};

}  // namespace ft::cuda
