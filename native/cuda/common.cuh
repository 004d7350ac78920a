// common.cuh: what every CUDA kernel file of the QLoRA core shares.
//
// Errors. Every CUDA runtime call goes through FT_CUDA(call): on failure it throws ft::Error
// (src/check.h) whose message names the file and line, the call, CUDA's own words and a hint for
// the error codes people actually meet (no device, out of memory, a binary without code for this
// GPU). Every launcher checks its shapes with FT_CHECK before launching and checks the launch
// itself with FT_LAUNCHED() (cudaGetLastError: bad grid, too much shared memory).
//
// Precision. Operands in fp16 (__half) or bf16 (__nv_bfloat16) where the GPU has it (sm_80+),
// accumulation in fp32 everywhere. Tensor cores through WMMA (sm_70+): 16x16x16 fragments of
// fp16 with fp32 accumulators, which is what a T4 (sm_75) offers.
//
// Layout. Row-major, shapes in comments as [rows, cols]; a stream argument on every launcher
// (default 0). Nothing here allocates: the caller (the training step) owns every buffer.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "check.h"

// FT_CUDA, FT_LAUNCHED and the hints: host-only, so the addon (a plain C++ file) uses them too
#include "cuda_check.h"

namespace ft::cuda {

inline int ceilDiv(long long a, long long b) { return static_cast<int>((a + b - 1) / b); }

/** An fp32 value as an element type (fp16: round to nearest even), and an element as fp32. */
template <typename T>
__device__ __forceinline__ T fromFloat(float v);
template <>
__device__ __forceinline__ float fromFloat<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half fromFloat<__half>(float v) { return __float2half_rn(v); }
__device__ __forceinline__ float toFloat(float v) { return v; }
__device__ __forceinline__ float toFloat(__half v) { return __half2float(v); }

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
