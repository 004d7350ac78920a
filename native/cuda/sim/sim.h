// sim.h: a CPU simulation of CUDA for the kernels' tests (run.sh; README.md, "CPU simulator").
// Every CUDA thread of a block is a fiber, run one after another up to its next synchronisation
// point; a block barrier is released when every live thread of the block waits at it, a warp
// barrier when all 32 lanes of the warp wait at it. Anything else (a barrier in divergent code, a
// warp op with exited lanes) is reported as a deadlock.
// SIM_ORDER=fwd|rev|shuffle|greedy|greedyrev: the order fibers run within a phase (a race shows as
// a result that depends on the order). Included first in every translation unit (-include).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <ucontext.h>
#include <sys/mman.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <type_traits>
#include <vector>

using std::isfinite;
using std::isnan;
using std::isinf;
#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __constant__
#define __constant__
#undef __forceinline__
#define __forceinline__ inline
#undef __shared__
#define __shared__ static
#undef __launch_bounds__
#define __launch_bounds__(...)

namespace sim {
enum State { RUN, WAIT_BLOCK, WAIT_WARP, DONE };
struct Fiber {
  ucontext_t uc;
  void* sp;
  uint3 tid;
  State state;
  void* stack = nullptr;
};
struct Grid {
  dim3 gdim, bdim;
  uint3 bid;
};
extern Fiber* cur;
extern Grid grid;
extern long long launches, phases, exitedAtBarrier;
[[noreturn]] void fail(const char* what);
void yieldAs(State s);
void runGrid(dim3 g, dim3 b, const std::function<void()>& body);
extern float shflF[1024];
extern double shflD[1024];
extern int shflI[1024];
}  // namespace sim

#define threadIdx (::sim::cur->tid)
#define blockIdx (::sim::grid.bid)
#define gridDim (::sim::grid.gdim)
#define blockDim (::sim::grid.bdim)

inline void __syncthreads() { sim::yieldAs(sim::WAIT_BLOCK); }
[[noreturn]] inline void __trap() { sim::fail("__trap"); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  if (mask != 0xffffffffu) sim::fail("__syncwarp with a partial mask");
  sim::yieldAs(sim::WAIT_WARP);
}
namespace sim {
template <typename T>
inline T* shflBuf() {
  if constexpr (std::is_same_v<T, float>) return shflF;
  else if constexpr (std::is_same_v<T, double>) return shflD;
  else return shflI;
}
}  // namespace sim
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int o) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, int>);
  if (mask != 0xffffffffu) sim::fail("shfl mask");
  T* buf = sim::shflBuf<T>();
  const int t = threadIdx.x;
  buf[t] = v;
  __syncwarp();
  const T r = buf[(t & ~31) | ((t & 31) ^ o)];
  __syncwarp();
  return r;
}
inline int __any_sync(unsigned mask, int p) {
  if (mask != 0xffffffffu) sim::fail("any mask");
  const int t = threadIdx.x;
  sim::shflI[t] = p != 0;
  __syncwarp();
  int any = 0;
  for (int l = 0; l < 32; ++l) any |= sim::shflI[(t & ~31) | l];
  __syncwarp();
  return any;
}
inline int __syncthreads_or(int p) {
  static int flags[1024];
  flags[threadIdx.x] = p != 0;
  __syncthreads();
  int any = 0;
  for (unsigned l = 0; l < blockDim.x; ++l) any |= flags[l];
  __syncthreads();
  return any;
}
template <typename T>
inline T __ldg(const T* p) { return *p; }
inline int min(int a, int b) { return a < b ? a : b; }
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dmul_rn(double a, double b) { volatile double r = a * b; return r; }
inline float __double2float_rn(double a) { volatile float r = static_cast<float>(a); return r; }

template <class T>
inline cudaError_t cudaMemcpyToSymbol(const T& symbol, const void* src, size_t count, size_t offset = 0,
                                      cudaMemcpyKind kind = cudaMemcpyHostToDevice) {
  return ::cudaMemcpyToSymbol(static_cast<const void*>(&symbol), src, count, offset, kind);
}

namespace sim {
template <typename... P, typename... A>
void launch(void (*k)(P...), dim3 g, dim3 b, A... args) {
  runGrid(g, b, [&] { k(args...); });
}
}  // namespace sim
