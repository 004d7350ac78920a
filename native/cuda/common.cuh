// common.cuh: what every CUDA kernel file of the QLoRA core shares.
//
// Errors. Every CUDA runtime call goes through FT_CUDA(call): on failure it throws ft::Error
// (src/check.h) whose message names the file and line, the call, CUDA's own words and a hint for
// the error codes people actually meet (no device, out of memory, a binary without code for this
// GPU). Every launcher checks its shapes with FT_CHECK before launching and checks the launch
// itself with FT_LAUNCHED() (cudaGetLastError: bad grid, too much shared memory).
//
// Precision. Operands in fp16 (__half) on every GPU, or bf16 (__nv_bfloat16, `bf16` here) where the
// GPU has bf16 tensor cores (sm_80+); accumulation in fp32 everywhere. Tensor cores through WMMA:
// 16x16x16 fragments with fp32 accumulators, fp16 from sm_70 (what a T4, sm_75, offers), bf16 from
// sm_80. The kernels that use tensor cores are templates on the operand type; their bf16
// instantiation compiled for sm_75 (SASS, or the compute_75 PTX that newer GPUs JIT-compile) has no
// bf16 fragments to use and traps instead (kMma below); the launchers never get there: bf16Ready()
// tells whether the code running on this GPU has them, the bf16 launchers of those kernels
// (gemm, gemmNf4, attention) call requireBf16() first, and the training step refuses bf16 without.
//
// Layout. Row-major, shapes in comments as [rows, cols]; a stream argument on every launcher
// (default 0). Nothing here allocates: the caller (the training step) owns every buffer.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "check.h"

// FT_CUDA, FT_LAUNCHED and the hints: host-only, so the addon (a plain C++ file) uses them too
#include "cuda_check.h"

namespace ft::cuda {

using bf16 = __nv_bfloat16;

/** Whether the code being compiled has tensor-core fragments of operand type T (bf16: sm_80+). */
template <typename T>
inline constexpr bool kMma =
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    !std::is_same_v<T, bf16>;
#else
    true;
#endif

/**
 * Whether the bf16 kernels can run on the current device: it is sm_80 or newer and the code the
 * driver runs for it has bf16 tensor cores (not the compute_75 PTX, JIT-compiled for a newer GPU
 * under CUDA_FORCE_PTX_JIT=1). When not, `why` says which (when not null).
 */
bool bf16Ready(std::string* why = nullptr);
/** Throws ft::Error (naming `who` and bf16Ready's reason) when bf16 kernels cannot run here. */
void requireBf16(const char* who);

inline int ceilDiv(long long a, long long b) { return static_cast<int>((a + b - 1) / b); }

/** An fp32 value as an element type (fp16: round to nearest even), and an element as fp32. */
template <typename T>
__device__ __forceinline__ T fromFloat(float v);
template <>
__device__ __forceinline__ float fromFloat<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half fromFloat<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ bf16 fromFloat<bf16>(float v) { return __float2bfloat16_rn(v); }
__device__ __forceinline__ float toFloat(float v) { return v; }
__device__ __forceinline__ float toFloat(__half v) { return __half2float(v); }
__device__ __forceinline__ float toFloat(bf16 v) { return __bfloat162float(v); }

/** Two fp32 values rounded to T and packed as 32 bits (the first in the low half, as in memory). */
template <typename T>
__device__ __forceinline__ unsigned pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, bf16>) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const unsigned*>(&h);
  } else {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const unsigned*>(&h);
  }
}
/** Two consecutive T (4-byte aligned) as fp32. */
template <typename T>
__device__ __forceinline__ float2 unpack2(const T* p) {
  if constexpr (std::is_same_v<T, bf16>) return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
  else return __half22float2(*reinterpret_cast<const __half2*>(p));
}

/** Warp-wide sum and max (all 32 lanes take part). */
__device__ __forceinline__ float warpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/** Block-wide sum for blockDim.x a multiple of 32, at most 1024; every thread gets the result. */
__device__ __forceinline__ float blockSum(float v) {
  __shared__ float part[32];
  v = warpSum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // part[] may still be read by a previous call
  if (lane == 0) part[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) >> 5;
  v = lane < warps ? part[lane] : 0.f;
  return warpSum(v);
}

__device__ __forceinline__ float blockMax(float v) {
  __shared__ float part[32];
  v = warpMax(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) part[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) >> 5;
  v = lane < warps ? part[lane] : -INFINITY;
  return warpMax(v);
}

}  // namespace ft::cuda
