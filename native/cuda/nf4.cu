// nf4.cu: NF4 and double-quantized absmax dequantization (see nf4.cuh).
#include "common.cuh"
#include "dynamic_map.h"
#include "nf4.cuh"
#include "nf4.h"

namespace ft::cuda {

namespace {
__constant__ float kNf4[16];
__constant__ float kSignedMap[256];

/** Copies the codebooks to constant memory once per process (and per device in use). */
void uploadTables() {
  static bool done = false;
  if (done) return;
  FT_CUDA(cudaMemcpyToSymbol(kNf4, ft::nf4::kCodebook, sizeof(float) * 16));
  FT_CUDA(cudaMemcpyToSymbol(kSignedMap, ft::dynmap::signedMap().value, sizeof(float) * 256));
  done = true;
}

// one thread per byte (two elements)
template <typename Out>
__global__ void nf4DequantizeKernel(const std::uint8_t* __restrict__ codes, const float* __restrict__ absmax, std::size_t n, Out* __restrict__ out) {
  const std::size_t j = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  const std::size_t i = 2 * j;
  if (i >= n) return;
  const unsigned byte = codes[j];
  const float scale = absmax[i / ft::nf4::kBlock];  // 2j and 2j+1 share a block (64 is even)
  out[i] = fromFloat<Out>(kNf4[byte >> 4] * scale);
  if (i + 1 < n) out[i + 1] = fromFloat<Out>(kNf4[byte & 15] * scale);
}

__global__ void dqDequantizeKernel(const std::uint8_t* __restrict__ q, const float* __restrict__ scales, float offset, std::size_t n,
                                   float* __restrict__ out) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  // the reference computes map[q] * scale + offset as two roundings: no fused multiply-add here
  out[i] = __fadd_rn(__fmul_rn(kSignedMap[q[i]], scales[i / 256]), offset);
}

template <typename Out>
void nf4Launch(const std::uint8_t* codes, const float* absmax, std::size_t n, Out* out, cudaStream_t stream) {
  FT_CHECK(codes != nullptr && absmax != nullptr && out != nullptr, "nf4Dequantize: null buffer (n = ", n, ")");
  if (n == 0) return;
  uploadTables();
  const std::size_t pairs = (n + 1) / 2;
  nf4DequantizeKernel<Out><<<ceilDiv(static_cast<long long>(pairs), 256), 256, 0, stream>>>(codes, absmax, n, out);
  FT_LAUNCHED();
}
}  // namespace

void nf4Dequantize(const std::uint8_t* codes, const float* absmax, std::size_t n, float* out, cudaStream_t stream) {
  nf4Launch(codes, absmax, n, out, stream);
}
void nf4Dequantize(const std::uint8_t* codes, const float* absmax, std::size_t n, __half* out, cudaStream_t stream) {
  nf4Launch(codes, absmax, n, out, stream);
}
void nf4Dequantize(const std::uint8_t* codes, const float* absmax, std::size_t n, bf16* out, cudaStream_t stream) {
  nf4Launch(codes, absmax, n, out, stream);
}

void dqDequantize(const std::uint8_t* q, const float* scales, float offset, std::size_t n, float* out, cudaStream_t stream) {
  FT_CHECK(q != nullptr && scales != nullptr && out != nullptr, "dqDequantize: null buffer (n = ", n, ")");
  if (n == 0) return;
  uploadTables();
  dqDequantizeKernel<<<ceilDiv(static_cast<long long>(n), 256), 256, 0, stream>>>(q, scales, offset, n, out);
  FT_LAUNCHED();
}

}  // namespace ft::cuda
