// adamw8bit.cu: the 8-bit AdamW step, one CUDA block per quantisation block (see adamw8bit.cuh).
#include <climits>

#include "adamw8bit.cuh"
#include "adamw8bit.h"
#include "common.cuh"
#include "dynamic_map.h"

namespace ft::cuda {

namespace {

constexpr int kThreads = static_cast<int>(ft::adamw8bit::kBlock);  // 256: one thread per element of a block
static_assert(ft::adamw8bit::kBlock == 256, "the kernel maps one thread to each of the 256 codes of a map");

/** The two dynamic maps' values and thresholds ([255] = +inf, never compared). */
struct Tables {
  float signedValue[256];
  float signedThreshold[256];
  float unsignedValue[256];
  float unsignedThreshold[256];
};
__device__ Tables gTables;

/** Copies the maps to the device once per process (on the device current at the first call). */
void uploadTables() {
  static const bool done = [] {
    const ft::dynmap::Map& sm = ft::dynmap::signedMap();
    const ft::dynmap::Map& um = ft::dynmap::unsignedMap();
    Tables t;
    for (int c = 0; c < 256; ++c) {
      t.signedValue[c] = sm.value[c];
      t.signedThreshold[c] = sm.threshold[c];
      t.unsignedValue[c] = um.value[c];
      t.unsignedThreshold[c] = um.threshold[c];
    }
    FT_CUDA(cudaMemcpyToSymbol(gTables, &t, sizeof t));  // a throw leaves `done` unset: the next call tries again
    return true;
  }();
  (void)done;
}

/**
 * The number of threshold[0..254] strictly below x (dynmap::encode_ref). threshold is ascending,
 * so `x > threshold[k]` holds exactly for k < code; binary lifting finds that code with 8
 * comparisons, touching only indices 0..254. NaN compares false everywhere: code 0, as on the CPU.
 */
__device__ __forceinline__ std::uint8_t encode(const float* threshold, float x) {
  int code = 0;
#pragma unroll
  for (int step = 128; step > 0; step >>= 1)
    if (x > threshold[code + step - 1]) code += step;
  return static_cast<std::uint8_t>(code);
}

/** adamw::update, operation by operation (one IEEE rounding each, in the CPU's order: no FMA). */
__device__ __forceinline__ void adamUpdate(float& p, float g, float& m, float& v, const ft::adamw::Coefficients& c) {
  //   m = beta1 * m + (1 - beta1) * g
  //   v = beta2 * v + (1 - beta2) * (g * g)
  //   p = p - lr * ((m / c1) / (sqrt(v / c2) + eps) + weightDecay * p)
  m = __fadd_rn(__fmul_rn(c.beta1, m), __fmul_rn(c.oneMinusBeta1, g));
  v = __fadd_rn(__fmul_rn(c.beta2, v), __fmul_rn(c.oneMinusBeta2, __fmul_rn(g, g)));
  const float mhat = __fdiv_rn(m, c.correction1);
  const float vhat = __fdiv_rn(v, c.correction2);
  const float direction = __fadd_rn(__fdiv_rn(mhat, __fadd_rn(__fsqrt_rn(vhat), c.eps)), __fmul_rn(c.weightDecay, p));
  p = __fsub_rn(p, __fmul_rn(c.lr, direction));
}

__global__ void adamwKernel(float* __restrict__ param, const float* __restrict__ grad, float* __restrict__ m, float* __restrict__ v,
                            std::size_t n, ft::adamw::Coefficients c) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  float p = param[i], mi = m[i], vi = v[i];
  adamUpdate(p, grad[i], mi, vi, c);
  param[i] = p;
  m[i] = mi;
  v[i] = vi;
}

__global__ void scaleKernel(float* __restrict__ x, std::size_t n, double factor) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] = __double2float_rn(__dmul_rn(static_cast<double>(x[i]), factor));
}

__global__ void scaleDivideKernel(float* __restrict__ x, std::size_t n, float factor, float divisor) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] = __fdiv_rn(__fmul_rn(x[i], factor), divisor);
}

// One block per quantisation block b, thread t = element b * 256 + t.
// param, grad, mCodes, vCodes: [n];  mAbsmax, vAbsmax: [ceil(n / 256)]
__global__ void __launch_bounds__(kThreads) adamw8bitKernel(float* __restrict__ param, const float* __restrict__ grad,
                                                            std::uint8_t* __restrict__ mCodes, std::uint8_t* __restrict__ vCodes,
                                                            float* __restrict__ mAbsmax, float* __restrict__ vAbsmax, std::size_t n,
                                                            ft::adamw::Coefficients c) {
  __shared__ float signedValue[256], signedThreshold[256], unsignedValue[256], unsignedThreshold[256];
  const int t = threadIdx.x;
  signedValue[t] = gTables.signedValue[t];
  signedThreshold[t] = gTables.signedThreshold[t];
  unsignedValue[t] = gTables.unsignedValue[t];
  unsignedThreshold[t] = gTables.unsignedThreshold[t];

  const std::size_t b = blockIdx.x;
  const std::size_t i = b * ft::adamw8bit::kBlock + t;
  const bool live = i < n;  // false only in the last, partial block
  float p = 0.0f, g = 0.0f;
  unsigned mq = 0, vq = 0;
  if (live) {
    p = param[i];
    g = grad[i];
    mq = mCodes[i];
    vq = vCodes[i];
  }
  // read by every thread here; thread 0 overwrites them only after the barriers of blockMax
  const float mScale = mAbsmax[b], vScale = vAbsmax[b];
  __syncthreads();  // the tables

  // decode: map[code] * absmax, one rounding
  float m = __fmul_rn(signedValue[mq], mScale);
  float v = __fmul_rn(unsignedValue[vq], vScale);

  adamUpdate(p, g, m, v, c);
  if (live) param[i] = p;

  // block maxima: each candidate is +0 or a positive number (NaN and -0 become +0, as the CPU's
  // `a > max ? a : max` from 0 skips them), so fmaxf in any order gives the CPU's value, bits included
  const float am = fabsf(m);
  const float mMax = blockMax(live && am > 0.0f ? am : 0.0f);
  const float vMax = blockMax(live && v > 0.0f ? v : 0.0f);
  if (t == 0) {
    mAbsmax[b] = mMax;
    vAbsmax[b] = vMax;
  }

  // encode m / max|m| and v / max v (inverse scale 0 for an all-zero block, as on the CPU)
  const float mInv = mMax > 0.0f ? __fdiv_rn(1.0f, mMax) : 0.0f;
  const float vInv = vMax > 0.0f ? __fdiv_rn(1.0f, vMax) : 0.0f;
  if (live) {
    mCodes[i] = encode(signedThreshold, __fmul_rn(m, mInv));
    vCodes[i] = encode(unsignedThreshold, __fmul_rn(v, vInv));
  }
}

}  // namespace

void adamw8bitStep(float* param, const float* grad, std::uint8_t* mCodes, std::uint8_t* vCodes, float* mAbsmax, float* vAbsmax, std::size_t n,
                   const ft::adamw::Hyper& hyper, cudaStream_t stream) {
  const ft::adamw::Coefficients c = ft::adamw::coefficients(hyper);  // checks the hyper-parameters
  if (n == 0) return;
  FT_CHECK(param != nullptr && grad != nullptr && mCodes != nullptr && vCodes != nullptr && mAbsmax != nullptr && vAbsmax != nullptr,
           "adamw8bitStep: null buffer (n = ", n, ")");
  const std::size_t blocks = ft::adamw8bit::absmaxCount(n);
  FT_CHECK(blocks <= static_cast<std::size_t>(INT_MAX), "adamw8bitStep: n = ", n, " is more blocks of 256 than one launch takes (",
           INT_MAX, ")");
  uploadTables();
  adamw8bitKernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(param, grad, mCodes, vCodes, mAbsmax, vAbsmax, n, c);
  FT_LAUNCHED();
}

void adamwStep(float* param, const float* grad, float* m, float* v, std::size_t n, const ft::adamw::Hyper& hyper, cudaStream_t stream) {
  const ft::adamw::Coefficients c = ft::adamw::coefficients(hyper);
  if (n == 0) return;
  FT_CHECK(param != nullptr && grad != nullptr && m != nullptr && v != nullptr, "adamwStep: null buffer (n = ", n, ")");
  adamwKernel<<<ceilDiv(static_cast<long long>(n), 256), 256, 0, stream>>>(param, grad, m, v, n, c);
  FT_LAUNCHED();
}

void scale(float* x, std::size_t n, double factor, cudaStream_t stream) {
  if (n == 0) return;
  FT_CHECK(x != nullptr, "scale: null buffer (n = ", n, ")");
  scaleKernel<<<ceilDiv(static_cast<long long>(n), 256), 256, 0, stream>>>(x, n, factor);
  FT_LAUNCHED();
}

void scaleDivide(float* x, std::size_t n, float factor, float divisor, cudaStream_t stream) {
  if (n == 0) return;
  FT_CHECK(x != nullptr, "scaleDivide: null buffer (n = ", n, ")");
  scaleDivideKernel<<<ceilDiv(static_cast<long long>(n), 256), 256, 0, stream>>>(x, n, factor, divisor);
  FT_LAUNCHED();
}

}  // namespace ft::cuda
