// simd.h: the fp32 primitives of the Qwen3 forward/backward, with runtime dispatch.
//
// One build runs on any x86-64: the AVX2+FMA and AVX-512 kernels are compiled with
// __attribute__((target(...))) and chosen once at load time with __builtin_cpu_supports; every
// other machine (and arm64) takes the portable scalar path. setIsa() forces a path (tests).
//
// Reduction order. Results never depend on the thread count or on how work is tiled:
//   gemm  every C element is ONE chain over k = 0, 1, ..., K-1 in order, starting from C
//         (accumulate) or 0, so splitting M or N across threads changes nothing. The scalar
//         path rounds a*b and + separately (as the *_ref functions do); the AVX paths fuse them
//         (FMA), which is the only difference between paths.
//   dot   lane-wise partial sums (lane l takes elements l, l+W, l+2W, ...), the tail added to
//         lane 0.., then the lanes summed in a fixed tree; fixed per path.
//   axpy  elementwise, no reduction.
//   exp   elementwise; the AVX paths use a degree-7 polynomial after range reduction
//         (~1 ulp), the scalar path std::exp.
#pragma once
#include <cstddef>

namespace ft {
namespace simd {

enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2 };

Isa isa();               // the path in use
Isa bestIsa();           // the best path this CPU supports
Isa setIsa(Isa want);    // use min(want, bestIsa()); returns the path now in use
const char* isaName(Isa);

// C[M, N] = (accumulate ? C : 0) + A[M, K] B[K, N]
//   A element (m, k) at A[m * rsA + k * csA]  (so A^T is rsA = 1, csA = lda)
//   B row-major, row stride ldb; C row-major, row stride ldc. Single-threaded.
void gemm(int M, int N, int K, const float* A, ptrdiff_t rsA, ptrdiff_t csA, const float* B, ptrdiff_t ldb, float* C, ptrdiff_t ldc,
          bool accumulate);
void gemm_ref(int M, int N, int K, const float* A, ptrdiff_t rsA, ptrdiff_t csA, const float* B, ptrdiff_t ldb, float* C, ptrdiff_t ldc,
              bool accumulate);

// sum_i a[i] b[i];  a, b [n]
float dot(const float* a, const float* b, int n);
float dot_ref(const float* a, const float* b, int n);

// y[n] += alpha x[n]
void axpy(float* y, float alpha, const float* x, int n);
void axpy_ref(float* y, float alpha, const float* x, int n);

// x[n] = exp(x[n]) in place
void expInPlace(float* x, int n);
void expInPlace_ref(float* x, int n);

}  // namespace simd
}  // namespace ft
