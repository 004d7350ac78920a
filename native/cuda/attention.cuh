// attention.cuh: causal grouped-query attention on the GPU, forward and backward, flash-style: the
// keys and values stream through shared memory tile by tile with an online softmax, so no T x T
// matrix is ever stored (per head, the memory is O(T), not O(T^2)).
//
// Definition (as attentionForward_ref / attentionBackward_ref in src/qwen3.cpp). B sequences of T
// tokens, N = B*T rows, row n = b*T + t. H query heads, KV key/value heads, H % KV == 0; query head
// h reads kv head h / (H / KV). Head dimension D in {64, 128}; scale = 1/sqrt(D). For the query at
// position t of sequence b and head h:
//   s_j   = scale * q[n, h] . k[b*T + j, kv]      for j = 0..t (causal: its own sequence, j <= t)
//   lse   = log sum_j exp(s_j)
//   P_j   = exp(s_j - lse)
//   y[n, h] = sum_j P_j v[b*T + j, kv]
// Backward (dy given): Di = dy[n, h] . y[n, h] (= sum_j P_j dP_j), dP_j = dy[n, h] . v[j], dS_j =
// P_j (dP_j - Di), dq[n, h] = scale sum_j dS_j k[j], dk[j] += scale dS_j q[n, h], dv[j] += P_j dy[n, h],
// where dk and dv sum over every query head of the group and every query position.
//
// Precision: q, k, v, y, dy in fp16 (or bf16 on sm_80+: the same functions for bf16 pointers);
// every product accumulates in fp32 (tensor cores through WMMA, 16x16x16 fragments with fp32
// accumulators; fp16 from sm_70, so a T4 runs it). Scores, the softmax, lse, Di and the gradients
// stay fp32; only the probabilities P (and dS in the backward) are rounded to the operand type as the
// left operand of the next tensor-core product, as every flash attention does. In fp16, dy of a
// training step should therefore be loss-scaled: dS = P (dP - Di) below ~6e-5 becomes an fp16
// subnormal and loses relative precision (bf16 has fp32's range and 8 bits of mantissa instead).
//
// Kernels (all 128 threads = 4 warps, each warp owns 16 rows of the block's tile; no atomics, no
// inter-block reduction, so results are bit-identical run to run):
//   forward   one block per (query tile of 64 rows, head, sequence); key/value tiles of 32 rows
//             stream through shared memory; per tile S = Q K^T (Q stays in registers as WMMA
//             fragments), the online softmax in fp32 (running max m and sum l per row, the output
//             fragments rescaled by exp(m_old - m_new)), then O += P V. Writes y = O / l and lse.
//   delta     Di = rowsum(dy * y), one warp per (row, head), into the workspace.
//   dK/dV     one block per (key tile of 64 rows, kv head, sequence); loops over the group's query
//             heads and, from the diagonal on, over query tiles of 16 (D = 128) or 32 (D = 64)
//             rows, recomputing S^T = K Q^T and P^T from lse, then dV += P^T dY, dP^T = V dY^T,
//             dS^T = P^T (dP^T - Di), dK += dS^T Q; dK and dV stay in registers until the end.
//   dQ        one block per (query tile of 64 rows, head, sequence); loops over key tiles of 32
//             up to the diagonal, recomputing S and P, dP = dY V^T, dS, and dQ += dS K.
// The dK/dV and dQ passes both recompute S and dP (7 tile products instead of the 5 of a backward
// that adds dQ with float atomics): the price of determinism.
//
// Resources (static shared memory, within the 48 KB a T4 gives without opt-in; registers from
// nvcc 13 -Xptxas -v for sm_75, no spills; sm_80 and sm_90 use 96 to 227, no spills either):
//   forward  D=64: 18.3 KB, 133 regs    D=128: 26.3 KB, 190 regs
//   dK/dV    D=64: 36.3 KB, 165 regs    D=128: 47.6 KB, 222 regs
//   dQ       D=64: 27.0 KB, 131 regs    D=128: 43.0 KB, 192 regs
//   delta    no shared memory, 24 regs (256 threads)
// so at D = 128 a T4 SM (64 KB, 64K registers) holds 2 forward blocks, 1 dK/dV and 1 dQ block.
// The bf16 kernels (sm_80 and sm_90 only) take the same shared memory and within 13 registers of
// the fp16 ones (dK/dV D=128: 240 on sm_80); the one spill is the D=128 forward on sm_80 (12
// bytes; none on sm_90).
//
// Buffers must be 16-byte aligned (cudaMalloc's are); the launchers check it. Outputs are
// overwritten, not accumulated into.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>

namespace ft::cuda {

using bf16 = __nv_bfloat16;

// (fp16 below means the operand type: the same for bf16)
// q:   [N, H*D]   fp16, N = B*T, row n = b*T + t, head h at columns h*D .. h*D + D - 1
// k:   [N, KV*D]  fp16
// v:   [N, KV*D]  fp16
// y:   [N, H*D]   fp16 out: softmax(scale q k^T, causal) v per head
// lse: [B, H, T]  fp32 out: log-sum-exp of each softmax row of scaled scores (kept for backward)
void attentionForward(const __half* q, const __half* k, const __half* v, __half* y, float* lse, int B, int T, int H, int KV, int D,
                      cudaStream_t stream = 0);
void attentionForward(const bf16* q, const bf16* k, const bf16* v, bf16* y, float* lse, int B, int T, int H, int KV, int D,
                      cudaStream_t stream = 0);

/** Floats of workspace attentionBackward needs: Di, [B, H, T]. */
std::size_t attentionBackwardWorkspace(int B, int T, int H, int KV, int D);

// q, k, v:   as attentionForward
// y:         [N, H*D]   fp16, attentionForward's output
// dy:        [N, H*D]   fp16, the gradient of the loss with respect to y
// lse:       [B, H, T]  fp32, attentionForward's output
// dq:        [N, H*D]   fp32 out
// dk:        [N, KV*D]  fp32 out (summed over the H/KV query heads of each kv head)
// dv:        [N, KV*D]  fp32 out (same)
// workspace: [attentionBackwardWorkspace(B, T, H, KV, D)] fp32 scratch
void attentionBackward(const __half* q, const __half* k, const __half* v, const __half* y, const __half* dy, const float* lse, float* dq,
                       float* dk, float* dv, float* workspace, int B, int T, int H, int KV, int D, cudaStream_t stream = 0);
void attentionBackward(const bf16* q, const bf16* k, const bf16* v, const bf16* y, const bf16* dy, const float* lse, float* dq, float* dk,
                       float* dv, float* workspace, int B, int T, int H, int KV, int D, cudaStream_t stream = 0);

}  // namespace ft::cuda
