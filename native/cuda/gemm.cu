// gemm.cu: tensor-core matrix products, plain and NF4-fused, fp16 or bf16 operands (see gemm.cuh).
#include <mma.h>

#include <mutex>
#include <string>
#include <vector>

#include "common.cuh"
#include "gemm.cuh"
#include "nf4.h"

namespace ft::cuda {

namespace {

constexpr int BM = 64, BN = 64, BK = 32;
constexpr int THREADS = 128;
constexpr int PAD_H = 8;  // 16-bit row padding: rows stay 32-byte aligned, banks spread
constexpr int PAD_F = 4;

/** The NF4 codebook, passed by value to the kernel (64 bytes of parameter space). */
struct Codebook {
  float v[16];
};

/** Where B's elements come from: T in memory, or NF4 codes + absmax (rounded to T). */
// `book` is the codebook copied to shared memory at the kernel's start (a lookup by a
// per-thread index into kernel parameters would go through local memory)
template <typename T>
struct PlainSource {
  using Elem = T;
  const T* p;
  __device__ __forceinline__ void stage(float*) const {}
  __device__ __forceinline__ T at(long long i, const float*) const { return p[i]; }
};
template <typename T>
struct Nf4Source {
  using Elem = T;
  const std::uint8_t* codes;
  const float* absmax;
  Codebook book;
  __device__ __forceinline__ void stage(float* shared) const {
    if (threadIdx.x < 16) shared[threadIdx.x] = book.v[threadIdx.x];
  }
  __device__ __forceinline__ T at(long long i, const float* shared) const {
    const unsigned byte = codes[i >> 1];
    const unsigned code = (i & 1) ? (byte & 15u) : (byte >> 4);
    return fromFloat<T>(shared[code] * absmax[i / static_cast<long long>(ft::nf4::kBlock)]);
  }
};

template <typename Source, typename Out>
__device__ __forceinline__ void gemmTile(const GemmShape& s, float alpha, const typename Source::Elem* __restrict__ A, const Source& B,
                                         float beta, Out* __restrict__ C) {
  using namespace nvcuda;
  using T = typename Source::Elem;
  __shared__ __align__(32) T As[BM][BK + PAD_H];  // op(A) tile, [m][k]
  __shared__ __align__(32) T Bs[BK][BN + PAD_H];  // op(B) tile, [k][n]
  __shared__ __align__(32) float Cs[BM][BN + PAD_F];
  __shared__ float book[16];
  B.stage(book);
  __syncthreads();

  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int warp = threadIdx.x >> 5;
  const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;  // this warp's 32 x 32 quarter

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);

  const T zero = fromFloat<T>(0.f);
  for (int k0 = 0; k0 < s.K; k0 += BK) {
    // stage op(A)[m0.., k0..] and op(B)[k0.., n0..]; consecutive threads take consecutive
    // elements along the dimension that is contiguous in memory
    for (int e = threadIdx.x; e < BM * BK; e += THREADS) {
      int r, c;
      if (s.transA) r = e % BM, c = e / BM;  // A[k][m]: m contiguous
      else r = e / BK, c = e % BK;           // A[m][k]: k contiguous
      const int m = m0 + r, k = k0 + c;
      T v = zero;
      if (m < s.M && k < s.K) v = s.transA ? A[static_cast<long long>(k) * s.lda + m] : A[static_cast<long long>(m) * s.lda + k];
      As[r][c] = v;
    }
    for (int e = threadIdx.x; e < BK * BN; e += THREADS) {
      int r, c;  // r along k, c along n
      if (s.transB) r = e % BK, c = e / BK;  // B[n][k]: k contiguous
      else r = e / BN, c = e % BN;           // B[k][n]: n contiguous
      const int k = k0 + r, n = n0 + c;
      T v = zero;
      if (k < s.K && n < s.N) v = B.at(s.transB ? static_cast<long long>(n) * s.ldb + k : static_cast<long long>(k) * s.ldb + n, book);
      Bs[r][c] = v;
    }
    __syncthreads();
    for (int kk = 0; kk < BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b[2];
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], &As[wm + 16 * i][kk], BK + PAD_H);
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], &Bs[kk][wn + 16 * j], BN + PAD_H);
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) wmma::store_matrix_sync(&Cs[wm + 16 * i][wn + 16 * j], acc[i][j], BN + PAD_F, wmma::mem_row_major);
  __syncthreads();
  for (int e = threadIdx.x; e < BM * BN; e += THREADS) {
    const int r = e / BN, c = e % BN, m = m0 + r, n = n0 + c;
    if (m >= s.M || n >= s.N) continue;
    Out* out = C + static_cast<long long>(m) * s.ldc + n;
    const float v = alpha * Cs[r][c];
    *out = fromFloat<Out>(beta == 0.f ? v : v + beta * toFloat(*out));
  }
}

template <typename Source, typename Out>
__global__ void __launch_bounds__(THREADS) gemmKernel(GemmShape s, float alpha, const typename Source::Elem* __restrict__ A, Source B, float beta,
                                                      Out* __restrict__ C) {
  if constexpr (kMma<typename Source::Elem>) gemmTile<Source, Out>(s, alpha, A, B, beta, C);
  else __trap();  // bf16 below sm_80: the launchers refuse it first (requireBf16)
}

void checkShape(const GemmShape& s, const char* what) {
  FT_CHECK(s.M >= 0 && s.N >= 0 && s.K >= 0, what, ": negative size M = ", s.M, ", N = ", s.N, ", K = ", s.K);
  FT_CHECK(s.lda >= (s.transA ? s.M : s.K), what, ": lda = ", s.lda, " is shorter than a row of A (", s.transA ? s.M : s.K, ")");
  FT_CHECK(s.ldb >= (s.transB ? s.K : s.N), what, ": ldb = ", s.ldb, " is shorter than a row of B (", s.transB ? s.K : s.N, ")");
  FT_CHECK(s.ldc >= s.N, what, ": ldc = ", s.ldc, " is shorter than a row of C (", s.N, ")");
  FT_CHECK(s.M <= 65535 * BM, what, ": M = ", s.M, " exceeds the grid (split the rows)");
}

template <typename Source, typename Out>
void launch(const GemmShape& s, float alpha, const typename Source::Elem* A, Source B, float beta, Out* C, cudaStream_t stream) {
  if (s.M == 0 || s.N == 0) return;
  const dim3 grid(ceilDiv(s.N, BN), ceilDiv(s.M, BM));
  gemmKernel<Source, Out><<<grid, THREADS, 0, stream>>>(s, alpha, A, B, beta, C);
  FT_LAUNCHED();
}

Codebook codebook() {
  Codebook b;
  for (int i = 0; i < 16; ++i) b.v[i] = ft::nf4::kCodebook[i];
  return b;
}

template <typename T>
__global__ void toOperandKernel(const float* __restrict__ x, std::size_t n, T* __restrict__ out) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = fromFloat<T>(x[i]);
}

template <typename T>
void toOperandLaunch(const float* x, std::size_t n, T* out, cudaStream_t stream) {
  if (n == 0) return;
  toOperandKernel<T><<<ceilDiv(static_cast<long long>(n), 256), 256, 0, stream>>>(x, n, out);
  FT_LAUNCHED();
}

/** The architecture the running code was compiled for (__CUDA_ARCH__, e.g. 750 for the compute_75 PTX). */
__global__ void archProbeKernel(int* out) {
#if defined(__CUDA_ARCH__)
  *out = __CUDA_ARCH__;
#else
  *out = 800;  // the CPU simulator: it has every operand type
#endif
}

}  // namespace

bool bf16Ready(std::string* why) {
  int device = 0;
  FT_CUDA(cudaGetDevice(&device));
  // per device, once: the answer cannot change while the process runs
  struct Known {
    int sm = 0;    // the compute capability, major * 10 + minor (0: not asked yet)
    int arch = 0;  // __CUDA_ARCH__ of the code that runs there
  };
  static std::mutex lock;
  static std::vector<Known> known;  // [device]
  std::lock_guard<std::mutex> guard(lock);
  if (known.size() <= static_cast<std::size_t>(device)) known.resize(device + 1);
  Known& k = known[device];
  if (k.sm == 0) {
    int major = 0, minor = 0, arch = 0, *d = nullptr;
    FT_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    FT_CUDA(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    FT_CUDA(cudaMalloc(&d, sizeof(int)));
    cudaGetLastError();  // an earlier launch's error is not the probe's
    archProbeKernel<<<1, 1>>>(d);
    const cudaError_t launched = cudaGetLastError();
    const cudaError_t copied = cudaMemcpy(&arch, d, sizeof(int), cudaMemcpyDeviceToHost);
    cudaFree(d);
    FT_CUDA(launched);
    FT_CUDA(copied);
    k = Known{major * 10 + minor, arch};  // set only once both are known: a throw above asks again next time
  }
  const int sm = k.sm, arch = k.arch;
  if (sm < 80) {
    if (why != nullptr) *why = "this GPU (sm_" + std::to_string(sm) + ") has no bf16 tensor cores; they start at sm_80 (A100, L4, H100)";
    return false;
  }
  if (arch < 800) {
    if (why != nullptr)
      *why = "the code running on this sm_" + std::to_string(sm) + " GPU is the compute_" + std::to_string(arch / 10) +
             " PTX, JIT-compiled (under CUDA_FORCE_PTX_JIT=1, or on a GPU newer than the sm_75/80/90 code built: rebuild with "
             "CMAKE_CUDA_ARCHITECTURES naming it), which has no bf16 tensor cores";
    return false;
  }
  return true;
}

void requireBf16(const char* who) {
  std::string why;
  FT_CHECK(bf16Ready(&why), who, ": bf16 operands: ", why, " (hint: fp16 operands run on every GPU from sm_75)");
}

void gemm(const GemmShape& s, float alpha, const __half* A, const __half* B, float beta, float* C, cudaStream_t stream) {
  checkShape(s, "gemm");
  launch(s, alpha, A, PlainSource<__half>{B}, beta, C, stream);
}
void gemm(const GemmShape& s, float alpha, const __half* A, const __half* B, float beta, __half* C, cudaStream_t stream) {
  checkShape(s, "gemm");
  launch(s, alpha, A, PlainSource<__half>{B}, beta, C, stream);
}
void gemm(const GemmShape& s, float alpha, const bf16* A, const bf16* B, float beta, float* C, cudaStream_t stream) {
  checkShape(s, "gemm");
  requireBf16("gemm");
  launch(s, alpha, A, PlainSource<bf16>{B}, beta, C, stream);
}
void gemm(const GemmShape& s, float alpha, const bf16* A, const bf16* B, float beta, bf16* C, cudaStream_t stream) {
  checkShape(s, "gemm");
  requireBf16("gemm");
  launch(s, alpha, A, PlainSource<bf16>{B}, beta, C, stream);
}
void gemmNf4(const GemmShape& s, float alpha, const __half* A, const std::uint8_t* codes, const float* absmax, float beta, float* C,
             cudaStream_t stream) {
  checkShape(s, "gemmNf4");
  launch(s, alpha, A, Nf4Source<__half>{codes, absmax, codebook()}, beta, C, stream);
}
void gemmNf4(const GemmShape& s, float alpha, const __half* A, const std::uint8_t* codes, const float* absmax, float beta, __half* C,
             cudaStream_t stream) {
  checkShape(s, "gemmNf4");
  launch(s, alpha, A, Nf4Source<__half>{codes, absmax, codebook()}, beta, C, stream);
}
void gemmNf4(const GemmShape& s, float alpha, const bf16* A, const std::uint8_t* codes, const float* absmax, float beta, float* C,
             cudaStream_t stream) {
  checkShape(s, "gemmNf4");
  requireBf16("gemmNf4");
  launch(s, alpha, A, Nf4Source<bf16>{codes, absmax, codebook()}, beta, C, stream);
}
void gemmNf4(const GemmShape& s, float alpha, const bf16* A, const std::uint8_t* codes, const float* absmax, float beta, bf16* C,
             cudaStream_t stream) {
  checkShape(s, "gemmNf4");
  requireBf16("gemmNf4");
  launch(s, alpha, A, Nf4Source<bf16>{codes, absmax, codebook()}, beta, C, stream);
}

void toOperand(const float* x, std::size_t n, __half* out, cudaStream_t stream) { toOperandLaunch(x, n, out, stream); }
void toOperand(const float* x, std::size_t n, bf16* out, cudaStream_t stream) { toOperandLaunch(x, n, out, stream); }

}  // namespace ft::cuda
