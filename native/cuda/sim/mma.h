// mma.h: nvcuda::wmma (16x16x16, fp16 or bf16 operands, fp32 accumulator) for the simulator, in place of
// <mma.h>. Fragment elements are spread over the lanes in a scrambled order, so a kernel that
// assumes a layout of the fragments fails; the product is an exact-order fp32 sum, not the tensor
// cores' rounding.
#pragma once
#include "sim.h"
namespace nvcuda::wmma {
struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };
template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16);
  enum { num_elements = 8 };
  T x[8];
};
// element i of lane l holds matrix element e = where(l, i): row e / 16, column e % 16 (a: (m, k), b: (k, n), c: (m, n))
template <typename Use>
inline int where(int lane, int i) {
  const int mult = std::is_same_v<Use, matrix_a> ? 37 : std::is_same_v<Use, matrix_b> ? 101 : 173;
  return ((lane * 8 + i) * mult + 11) % 256;
}
inline void checkPtr(const void* p, unsigned ldm, int elem) {
  if (reinterpret_cast<std::uintptr_t>(p) % 32 != 0) sim::fail("wmma pointer not 32-byte aligned");
  if ((ldm * elem) % 16 != 0) sim::fail("wmma ldm not a multiple of 16 bytes");
}
inline float operandValue(__half v) { return __half2float(v); }
inline float operandValue(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename Use, typename T, typename L>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, L>& f, const T* p, unsigned ldm) {
  static_assert(std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>, "16-bit operands");
  checkPtr(p, ldm, 2);
  const int lane = threadIdx.x & 31;
  for (int i = 0; i < 8; ++i) {
    const int e = where<Use>(lane, i), r = e / 16, c = e % 16;
    f.x[i] = std::is_same_v<L, row_major> ? p[r * ldm + c] : p[r + c * ldm];
  }
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p, unsigned ldm, layout_t l) {
  checkPtr(p, ldm, 4);
  const int lane = threadIdx.x & 31;
  for (int i = 0; i < 8; ++i) {
    const int e = where<accumulator>(lane, i), r = e / 16, c = e % 16;
    f.x[i] = l == mem_row_major ? p[r * ldm + c] : p[r + c * ldm];
  }
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm, layout_t l) {
  checkPtr(p, ldm, 4);
  const int lane = threadIdx.x & 31;
  for (int i = 0; i < 8; ++i) {
    const int e = where<accumulator>(lane, i), r = e / 16, c = e % 16;
    (l == mem_row_major ? p[r * ldm + c] : p[r + c * ldm]) = f.x[i];
  }
}
template <typename F, typename V>
inline void fill_fragment(F& f, V v) {
  for (auto& x : f.x) x = v;
}
template <typename T, typename LA, typename LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, T, LA>& a,
                     const fragment<matrix_b, 16, 16, 16, T, LB>& b, const fragment<accumulator, 16, 16, 16, float>& c) {
  static float A[32][256], B[32][256], C[32][256];
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int i = 0; i < 8; ++i) {
    A[w][where<matrix_a>(lane, i)] = operandValue(a.x[i]);
    B[w][where<matrix_b>(lane, i)] = operandValue(b.x[i]);
    C[w][where<accumulator>(lane, i)] = c.x[i];
  }
  __syncwarp();
  for (int i = 0; i < 8; ++i) {
    const int e = where<accumulator>(lane, i), r = e / 16, col = e % 16;
    float s = C[w][e];
    for (int k = 0; k < 16; ++k) s += A[w][r * 16 + k] * B[w][k * 16 + col];
    d.x[i] = s;
  }
  __syncwarp();
}
}  // namespace nvcuda::wmma
