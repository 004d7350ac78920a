// simd.cpp: references first, then the scalar, AVX2+FMA and AVX-512 paths, then the dispatch.
// See simd.h for the reduction order each path promises.
#include "simd.h"

#include <cmath>

#if defined(__x86_64__) || defined(_M_X64)
#define FT_X86 1
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own _mm512_undefined_* values
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

namespace ft {
namespace simd {

// ---- references: straight from the definitions -------------------------------------------------

void gemm_ref(int M, int N, int K, const float* A, ptrdiff_t rsA, ptrdiff_t csA, const float* B, ptrdiff_t ldb, float* C, ptrdiff_t ldc,
              bool accumulate) {
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      float acc = accumulate ? C[m * ldc + n] : 0.f;
      for (int k = 0; k < K; k++) acc += A[m * rsA + k * csA] * B[k * ldb + n];
      C[m * ldc + n] = acc;
    }
}

float dot_ref(const float* a, const float* b, int n) {
  float acc = 0.f;
  for (int i = 0; i < n; i++) acc += a[i] * b[i];
  return acc;
}

void axpy_ref(float* y, float alpha, const float* x, int n) {
  for (int i = 0; i < n; i++) y[i] += alpha * x[i];
}

void expInPlace_ref(float* x, int n) {
  for (int i = 0; i < n; i++) x[i] = std::exp(x[i]);
}

namespace {

// ---- portable scalar path -----------------------------------------------------------------------
// gemm: the same chains as gemm_ref (so bit-identical to it), in an order the compiler can
// vectorise without reassociating: row m of C is updated by one k at a time.
void gemmScalar(int M, int N, int K, const float* A, ptrdiff_t rsA, ptrdiff_t csA, const float* B, ptrdiff_t ldb, float* C, ptrdiff_t ldc,
                bool accumulate) {
  for (int m = 0; m < M; m++) {
    float* c = C + m * ldc;
    if (!accumulate)
      for (int n = 0; n < N; n++) c[n] = 0.f;
    for (int k = 0; k < K; k++) {
      const float a = A[m * rsA + k * csA];
      const float* b = B + k * ldb;
      for (int n = 0; n < N; n++) c[n] += a * b[n];
    }
  }
}

#ifdef FT_X86

// ---- AVX2 + FMA ---------------------------------------------------------------------------------

#define FT_AVX2 __attribute__((target("avx2,fma")))

FT_AVX2 inline __m256i maskOf(int count) {  // lanes [0, count) on
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), iota);
}

// C[MR, 16] tile: broadcast A[m, k], load B[k, 0:16], one FMA chain per C element over k.
// FULL: all 16 columns; otherwise `cols` < 16 through masked loads/stores.
template <int MR, bool FULL>
FT_AVX2 void tileAvx2(int K, const float* A, ptrdiff_t rsA, ptrdiff_t csA, const float* B, ptrdiff_t ldb, float* C, ptrdiff_t ldc,
                      bool accumulate, int cols) {
  const __m256i m0 = maskOf(cols), m1 = maskOf(cols - 8);
  __m256 c0[MR], c1[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; i++) {
    if (accumulate) {
      c0[i] = FULL ? _mm256_loadu_ps(C + i * ldc) : _mm256_maskload_ps(C + i * ldc, m0);
      c1[i] = FULL ? _mm256_loadu_ps(C + i * ldc + 8) : _mm256_maskload_ps(C + i * ldc + 8, m1);
    } else {
      c0[i] = _mm256_setzero_ps();
      c1[i] = _mm256_setzero_ps();
    }
  }
  for (int k = 0; k < K; k++) {
    const float* b = B + k * ldb;
    const __m256 b0 = FULL ? _mm256_loadu_ps(b) : _mm256_maskload_ps(b, m0);
    const __m256 b1 = FULL ? _mm256_loadu_ps(b + 8) : _mm256_maskload_ps(b + 8, m1);
    const float* a = A + k * csA;
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
      const __m256 ai = _mm256_broadcast_ss(a + i * rsA);
      c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
      c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; i++) {
    if (FULL) {
      _mm256_storeu_ps(C + i * ldc, c0[i]);
      _mm256_storeu_ps(C + i * ldc + 8, c1[i]);
    } else {
      _mm256_maskstore_ps(C + i * ldc, m0, c0[i]);
      _mm256_maskstore_ps(C + i * ldc + 8, m1, c1[i]);
    }
  }
}

template <bool FULL>
FT_AVX2 void rowsAvx2(int rows, int K, const float* A, ptrdiff_t rsA, ptrdiff_t csA, const float* B, ptrdiff_t ldb, float* C, ptrdiff_t ldc,
                      bool accumulate, int cols) {
  switch (rows) {
    case 6: tileAvx2<6, FULL>(K, A, rsA, csA, B, ldb, C, ldc, accumulate, cols); break;
    case 5: tileAvx2<5, FULL>(K, A, rsA, csA, B, ldb, C, ldc, accumulate, cols); break;
    case 4: tileAvx2<4, FULL>(K, A, rsA, csA, B, ldb, C, ldc, accumulate, cols); break;
    case 3: tileAvx2<3, FULL>(K, A, rsA, csA, B, ldb, C, ldc, accumulate, cols); break;
    case 2: tileAvx2<2, FULL>(K, A, rsA, csA, B, ldb, C, ldc, accumulate, cols); break;
    default: tileAvx2<1, FULL>(K, A, rsA, csA, B, ldb, C, ldc, accumulate, cols); break;
  }
}

// Column panels of 16 outside, row tiles of 6 inside: the B panel [K, 16] stays in L1 while
// the A rows stream past it.
FT_AVX2 void gemmAvx2(int M, int N, int K, const float* A, ptrdiff_t rsA, ptrdiff_t csA, const float* B, ptrdiff_t ldb, float* C, ptrdiff_t ldc,
                      bool accumulate) {
  constexpr int MR = 6, NR = 16;
  for (int n0 = 0; n0 < N; n0 += NR) {
    const int cols = N - n0 < NR ? N - n0 : NR;
    for (int m0 = 0; m0 < M; m0 += MR) {
      const int rows = M - m0 < MR ? M - m0 : MR;
      const float* a = A + m0 * rsA;
      float* c = C + m0 * ldc + n0;
      if (cols == NR) rowsAvx2<true>(rows, K, a, rsA, csA, B + n0, ldb, c, ldc, accumulate, cols);
      else rowsAvx2<false>(rows, K, a, rsA, csA, B + n0, ldb, c, ldc, accumulate, cols);
    }
  }
}

FT_AVX2 inline float hsum256(__m256 v) {  // ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// two accumulators over blocks of 16, then one block of 8, then a masked tail into the first
FT_AVX2 float dotAvx2(const float* a, const float* b, int n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  if (i + 8 <= n) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    i += 8;
  }
  if (i < n) {
    const __m256i m = maskOf(n - i);
    s1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), s1);
  }
  return hsum256(_mm256_add_ps(s0, s1));
}

FT_AVX2 void axpyAvx2(float* y, float alpha, const float* x, int n) {
  const __m256 al = _mm256_set1_ps(alpha);
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(al, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  if (i < n) {
    const __m256i m = maskOf(n - i);
    _mm256_maskstore_ps(y + i, m, _mm256_fmadd_ps(al, _mm256_maskload_ps(x + i, m), _mm256_maskload_ps(y + i, m)));
  }
}

// exp(x) = 2^j * p(r), j = round(x / ln 2), r = x - j ln 2 (ln 2 split in two, Cody-Waite),
// p = Taylor series of e^r to degree 7 (|r| <= ln2 / 2: truncation < 1e-8 relative).
// x is clamped to [-87, 88] so that 2^j stays a normal float.
FT_AVX2 inline __m256 exp256(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.f)), _mm256_set1_ps(88.f));
  const __m256 j = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(j, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(j, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.f / 5040.f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 720.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 120.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 24.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 6.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(j), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

FT_AVX2 void expAvx2(float* x, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, exp256(_mm256_loadu_ps(x + i)));
  if (i < n) {
    const __m256i m = maskOf(n - i);
    _mm256_maskstore_ps(x + i, m, exp256(_mm256_maskload_ps(x + i, m)));
  }
}

// ---- AVX-512F -----------------------------------------------------------------------------------

#define FT_AVX512 __attribute__((target("avx512f,avx2,fma")))

FT_AVX512 inline __mmask16 kmaskOf(int count) {
  return count >= 16 ? (__mmask16)0xFFFF : count <= 0 ? (__mmask16)0 : (__mmask16)((1u << count) - 1u);
}

// C[MR, 32] tile, as tileAvx2 with two 16-lane vectors per row and masks for the tail.
template <int MR>
FT_AVX512 void tileAvx512(int K, const float* A, ptrdiff_t rsA, ptrdiff_t csA, const float* B, ptrdiff_t ldb, float* C, ptrdiff_t ldc,
                          bool accumulate, int cols) {
  const __mmask16 k0 = kmaskOf(cols), k1 = kmaskOf(cols - 16);
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
  for (int i = 0; i < MR; i++) {
    if (accumulate) {
      c0[i] = _mm512_maskz_loadu_ps(k0, C + i * ldc);
      c1[i] = _mm512_maskz_loadu_ps(k1, C + i * ldc + 16);
    } else {
      c0[i] = _mm512_setzero_ps();
      c1[i] = _mm512_setzero_ps();
    }
  }
  for (int k = 0; k < K; k++) {
    const float* b = B + k * ldb;
    const __m512 b0 = _mm512_maskz_loadu_ps(k0, b);
    const __m512 b1 = _mm512_maskz_loadu_ps(k1, b + 16);
    const float* a = A + k * csA;
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
      const __m512 ai = _mm512_set1_ps(a[i * rsA]);
      c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; i++) {
    _mm512_mask_storeu_ps(C + i * ldc, k0, c0[i]);
    _mm512_mask_storeu_ps(C + i * ldc + 16, k1, c1[i]);
  }
}

FT_AVX512 void gemmAvx512(int M, int N, int K, const float* A, ptrdiff_t rsA, ptrdiff_t csA, const float* B, ptrdiff_t ldb, float* C,
                          ptrdiff_t ldc, bool accumulate) {
  constexpr int MR = 12, NR = 32;
  for (int n0 = 0; n0 < N; n0 += NR) {
    const int cols = N - n0 < NR ? N - n0 : NR;
    for (int m0 = 0; m0 < M; m0 += MR) {
      const int rows = M - m0 < MR ? M - m0 : MR;
      const float* a = A + m0 * rsA;
      const float* b = B + n0;
      float* c = C + m0 * ldc + n0;
      switch (rows) {
        case 12: tileAvx512<12>(K, a, rsA, csA, b, ldb, c, ldc, accumulate, cols); break;
        case 11: tileAvx512<11>(K, a, rsA, csA, b, ldb, c, ldc, accumulate, cols); break;
        case 10: tileAvx512<10>(K, a, rsA, csA, b, ldb, c, ldc, accumulate, cols); break;
        case 9: tileAvx512<9>(K, a, rsA, csA, b, ldb, c, ldc, accumulate, cols); break;
        case 8: tileAvx512<8>(K, a, rsA, csA, b, ldb, c, ldc, accumulate, cols); break;
        case 7: tileAvx512<7>(K, a, rsA, csA, b, ldb, c, ldc, accumulate, cols); break;
        case 6: tileAvx512<6>(K, a, rsA, csA, b, ldb, c, ldc, accumulate, cols); break;
        case 5: tileAvx512<5>(K, a, rsA, csA, b, ldb, c, ldc, accumulate, cols); break;
        case 4: tileAvx512<4>(K, a, rsA, csA, b, ldb, c, ldc, accumulate, cols); break;
        case 3: tileAvx512<3>(K, a, rsA, csA, b, ldb, c, ldc, accumulate, cols); break;
        case 2: tileAvx512<2>(K, a, rsA, csA, b, ldb, c, ldc, accumulate, cols); break;
        default: tileAvx512<1>(K, a, rsA, csA, b, ldb, c, ldc, accumulate, cols); break;
      }
    }
  }
}

FT_AVX512 float dotAvx512(const float* a, const float* b, int n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
  }
  if (i + 16 <= n) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    i += 16;
  }
  if (i < n) {
    const __mmask16 m = kmaskOf(n - i);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
  }
  const __m512 s = _mm512_add_ps(s0, s1);
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1)));
  return hsum256(h);
}

FT_AVX512 void axpyAvx512(float* y, float alpha, const float* x, int n) {
  const __m512 al = _mm512_set1_ps(alpha);
  for (int i = 0; i < n; i += 16) {
    const __mmask16 m = kmaskOf(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(al, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

FT_AVX512 inline __m512 exp512(__m512 x) {  // as exp256
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.f)), _mm512_set1_ps(88.f));
  const __m512 j = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(j, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(j, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.f / 5040.f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 720.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(j), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

FT_AVX512 void expAvx512(float* x, int n) {
  for (int i = 0; i < n; i += 16) {
    const __mmask16 m = kmaskOf(n - i);
    _mm512_mask_storeu_ps(x + i, m, exp512(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

#endif  // FT_X86

// ---- dispatch -----------------------------------------------------------------------------------

struct Table {
  Isa isa;
  void (*gemm)(int, int, int, const float*, ptrdiff_t, ptrdiff_t, const float*, ptrdiff_t, float*, ptrdiff_t, bool);
  float (*dot)(const float*, const float*, int);
  void (*axpy)(float*, float, const float*, int);
  void (*exp)(float*, int);
};

const Table kScalar{Isa::Scalar, gemmScalar, dot_ref, axpy_ref, expInPlace_ref};
#ifdef FT_X86
const Table kAvx2{Isa::Avx2, gemmAvx2, dotAvx2, axpyAvx2, expAvx2};
const Table kAvx512{Isa::Avx512, gemmAvx512, dotAvx512, axpyAvx512, expAvx512};
#endif

Isa detect() {
#ifdef FT_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
#endif
  return Isa::Scalar;
}

const Table* tableFor(Isa i) {
#ifdef FT_X86
  if (i == Isa::Avx512) return &kAvx512;
  if (i == Isa::Avx2) return &kAvx2;
#endif
  (void)i;
  return &kScalar;
}

const Isa kBest = detect();
const Table* active = tableFor(kBest);  // set at load time; setIsa() is for tests

}  // namespace

Isa isa() { return active->isa; }
Isa bestIsa() { return kBest; }
Isa setIsa(Isa want) {
  active = tableFor(static_cast<int>(want) < static_cast<int>(kBest) ? want : kBest);
  return active->isa;
}
const char* isaName(Isa i) { return i == Isa::Avx512 ? "avx512" : i == Isa::Avx2 ? "avx2" : "scalar"; }

void gemm(int M, int N, int K, const float* A, ptrdiff_t rsA, ptrdiff_t csA, const float* B, ptrdiff_t ldb, float* C, ptrdiff_t ldc,
          bool accumulate) {
  if (M <= 0 || N <= 0) return;
  active->gemm(M, N, K, A, rsA, csA, B, ldb, C, ldc, accumulate);
}
float dot(const float* a, const float* b, int n) { return active->dot(a, b, n); }
void axpy(float* y, float alpha, const float* x, int n) { active->axpy(y, alpha, x, n); }
void expInPlace(float* x, int n) { active->exp(x, n); }

}  // namespace simd
}  // namespace ft
