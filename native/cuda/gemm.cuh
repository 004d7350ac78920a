// gemm.cuh: matrix products on tensor cores, fp16 or bf16 operands and fp32 accumulation, with the
// NF4 base weights dequantized on the fly (QLoRA's frozen base never exists in 16 bits in memory).
// Every function comes for both operand types (T = __half, or bf16: the products on sm_80+ only,
// refused elsewhere by requireBf16(); toOperand's plain conversion runs on any GPU).
//
//   C[M, N] = alpha * op(A)[M, K] op(B)[K, N] + beta * C
//
// op(A)(m, k) = transA ? A[k * lda + m] : A[m * lda + k]
// op(B)(k, n) = transB ? B[n * ldb + k] : B[k * ldb + n]
//
// A linear layer y = x W^T with W [out, in] as Hugging Face stores it is (transA = false,
// transB = true); its input gradient dx = dy W is (false, false); a LoRA weight gradient
// dA = (dy' )^T x is (true, false).
//
// The kernel: blocks of 128 threads (4 warps) compute a 64 x 64 tile of C, stepping K by 32;
// op(A) and op(B) tiles are staged in shared memory as T (zero-padded at the edges, so any
// M, N, K works) and multiplied with WMMA 16x16x16 fragments (sm_70+; the T4's tensor cores),
// each warp a 32 x 32 quarter of the tile with fp32 accumulators; the tile goes back through
// shared memory so the edges and alpha/beta are applied element by element. No cuBLAS.
//
// NF4 variant: B is an NF4 tensor (nf4.cuh's layout: element i = its flat index in B's storage,
// code nibble i % 2 of byte i / 2, high nibble first, absmax[i / 64]); each element is
// dequantized (codebook[code] * absmax, fp32, then rounded to T) while staging the tile.
// That is the value nf4Dequantize(..., T*) would give, so the fused product equals
// dequantize-then-multiply exactly, without the fp16 copy of the weight.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace ft::cuda {

using bf16 = __nv_bfloat16;

struct GemmShape {
  int M, N, K;
  bool transA, transB;
  int lda, ldb, ldc;
};

// A: T as above; B: T; C: [M, ldc] fp32 or T (read when beta != 0)
void gemm(const GemmShape& s, float alpha, const __half* A, const __half* B, float beta, float* C, cudaStream_t stream = 0);
void gemm(const GemmShape& s, float alpha, const __half* A, const __half* B, float beta, __half* C, cudaStream_t stream = 0);
void gemm(const GemmShape& s, float alpha, const bf16* A, const bf16* B, float beta, float* C, cudaStream_t stream = 0);
void gemm(const GemmShape& s, float alpha, const bf16* A, const bf16* B, float beta, bf16* C, cudaStream_t stream = 0);

// B given as NF4: codes [(count + 1) / 2], absmax [ceil(count / 64)], count = the number of
// elements B's storage spans (transB ? N * ldb : K * ldb), with ldb the row length of that storage.
void gemmNf4(const GemmShape& s, float alpha, const __half* A, const std::uint8_t* codes, const float* absmax, float beta, float* C,
             cudaStream_t stream = 0);
void gemmNf4(const GemmShape& s, float alpha, const __half* A, const std::uint8_t* codes, const float* absmax, float beta, __half* C,
             cudaStream_t stream = 0);
void gemmNf4(const GemmShape& s, float alpha, const bf16* A, const std::uint8_t* codes, const float* absmax, float beta, float* C,
             cudaStream_t stream = 0);
void gemmNf4(const GemmShape& s, float alpha, const bf16* A, const std::uint8_t* codes, const float* absmax, float beta, bf16* C,
             cudaStream_t stream = 0);

// fp32 → T (fp16 or bf16), round to nearest even (LoRA weights and fp32 activations into GEMM operands)
void toOperand(const float* x, std::size_t n, __half* out, cudaStream_t stream = 0);
void toOperand(const float* x, std::size_t n, bf16* out, cudaStream_t stream = 0);

}  // namespace ft::cuda
