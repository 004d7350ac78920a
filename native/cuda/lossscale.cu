// lossscale.cu: unscale the gradients, their sum of squares and the overflow flag; the scale's
// schedule (see lossscale.cuh).
#include <cmath>

#include "common.cuh"
#include "lossscale.cuh"

namespace ft::cuda {

namespace {

// Kernel 1: grid-stride over grad; block b writes partials[b] (sum of squares) and
// partials[gridDim.x + b] (1 if it saw an inf or NaN, else 0).
// grad: [n];  partials: [2 * gridDim.x]
__global__ void __launch_bounds__(kUnscaleThreads) unscaleKernel(float* __restrict__ grad, std::size_t n, float invScale,
                                                                 float* __restrict__ partials) {
  float sumSquares = 0.0f;
  int nonFinite = 0;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * kUnscaleThreads;
  std::size_t i = blockIdx.x * static_cast<std::size_t>(kUnscaleThreads) + threadIdx.x;
  // four loads in flight per thread, then the rest one at a time; elements in the same order
  for (; i + 3 * stride < n; i += 4 * stride) {
    float y[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) y[k] = grad[i + k * stride];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      y[k] = __fmul_rn(y[k], invScale);  // one rounding, as the host's float multiply
      grad[i + k * stride] = y[k];
      sumSquares = __fmaf_rn(y[k], y[k], sumSquares);  // explicit fma: the same on every architecture
      nonFinite |= !isfinite(y[k]);
    }
  }
  for (; i < n; i += stride) {
    const float y = __fmul_rn(grad[i], invScale);
    grad[i] = y;
    sumSquares = __fmaf_rn(y, y, sumSquares);
    nonFinite |= !isfinite(y);
  }
  const float blockSquares = blockSum(sumSquares);
  const int blockNonFinite = __syncthreads_or(nonFinite);
  if (threadIdx.x == 0) {
    partials[blockIdx.x] = blockSquares;
    partials[gridDim.x + blockIdx.x] = blockNonFinite ? 1.0f : 0.0f;
  }
}

// Kernel 2, one warp: lane l sums partials l, l + 32, ... in double, then a butterfly (every lane
// ends with the same sum: each addition is commutative); the flags are OR-ed.
// partials: [2 * blocks];  result: [2]
__global__ void unscaleFinishKernel(const float* __restrict__ partials, int blocks, float* __restrict__ result) {
  double sum = 0.0;
  bool nonFinite = false;
  for (int b = threadIdx.x; b < blocks; b += 32) {
    sum += static_cast<double>(partials[b]);
    nonFinite |= partials[blocks + b] != 0.0f;
  }
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  const bool any = __any_sync(0xffffffffu, nonFinite);
  if (threadIdx.x == 0) {
    result[0] = static_cast<float>(sum);
    result[1] = any ? 1.0f : 0.0f;
  }
}

}  // namespace

void unscaleAndCheck(float* grad, std::size_t n, float invScale, float* partials, float* result, cudaStream_t stream) {
  FT_CHECK(result != nullptr, "unscaleAndCheck: null result (n = ", n, ")");
  FT_CHECK(std::isfinite(invScale), "unscaleAndCheck: invScale is ", invScale, " (hint: the loss scale must be finite and > 0)");
  if (n == 0) {
    FT_CUDA(cudaMemsetAsync(result, 0, 2 * sizeof(float), stream));  // {0.0f, 0.0f}
    return;
  }
  FT_CHECK(grad != nullptr && partials != nullptr, "unscaleAndCheck: null buffer (n = ", n, ", workspace ", unscaleWorkspace(n), " floats)");
  const int blocks = static_cast<int>(unscaleBlocks(n));
  unscaleKernel<<<blocks, kUnscaleThreads, 0, stream>>>(grad, n, invScale, partials);
  FT_LAUNCHED();
  unscaleFinishKernel<<<1, 32, 0, stream>>>(partials, blocks, result);
  FT_LAUNCHED();
}

bool LossScaler::update(bool overflow) {
  if (overflow) {
    scale = std::max(scale / factor, 1.0f);
    goodSteps = 0;
    return false;
  }
  if (++goodSteps >= growthInterval) {
    const float grown = scale * factor;
    if (std::isfinite(grown)) scale = grown;
    goodSteps = 0;
  }
  return true;
}

}  // namespace ft::cuda
