// xent.cuh: the cross-entropy over the vocabulary, forward and backward in one kernel, for the
// tied output head (Qwen3: V = 151,936). The GPU counterpart of the loss part of src/head.h.
//
// The caller makes the logits of a chunk of token rows with a GEMM (hidden [rows, C] times the
// embedding [V, C] transposed), in fp16 (or bf16), and hands them here. One block per row, fp32 inside:
//
//   pass 1  read the row once: each thread keeps a running max m and a sum s of exp(x - m)
//           (online softmax: when a larger value comes, s is rescaled by exp(m_old - m_new));
//           the block combines them: M = max m_t, S = sum s_t exp(m_t - M)
//           lse = M + log(S)
//           loss[row] = lse - logit[target]
//   pass 2  read the row again and OVERWRITE it with the gradient of the loss with respect to the
//           logits, times gradScale, rounded to fp16:
//             logits[row, j] = (exp(logit[j] - lse) - (j == target)) * gradScale
//
// gradScale is where the caller folds in the loss scale of fp16 mixed precision and the 1/count
// of a mean loss (lossscale.cuh); the gradient then feeds the two GEMMs of the head's backward.
//
// Rows with target -1 are not in the loss: loss 0, gradient 0 (written without reading the
// row), and their lse is still computed when lse is not null (one read of the row), so an
// evaluation can use it. A target outside [-1, V) is a bug of the caller, which the kernel
// cannot throw for: that row's loss is NaN (so the step's loss shows it) and its gradient is the
// softmax alone. Logits that overflowed fp16 (+inf) or are NaN make the row's lse, loss and
// gradient NaN, which the loss scaler's non-finite check catches; -inf logits are fine (exp 0).
//
// Loads: 16 bytes (8 logits) when V % 8 == 0 and logits is 16-byte aligned, pairs when V is even
// (and logits 4-byte aligned), single logits otherwise. Exponentials are exp2f of x * log2(e)
// - lse * log2(e) (one fma): within a few fp32 ulps of exp, far inside the tests' bounds.
// Deterministic: no atomics; each thread's order and the block's reduction tree are fixed by V
// and the alignment of logits (256 threads per block, always).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace ft::cuda {

using bf16 = __nv_bfloat16;

// logits:   [rows, V]  fp16 (or bf16), in: the logits; out: (softmax - onehot(target)) * gradScale
// target:   [rows]     device, in [0, V), or -1 for a row not in the loss
// loss:     [rows]     device, out, fp32: lse - logit[target], 0 where target is -1
// lse:      [rows]     device, out, fp32: log sum_j exp(logit[j]) (every row); may be null
void xentForwardBackward(__half* logits, int rows, int V, const int* target, float gradScale, float* loss, float* lse /* may be null */,
                         cudaStream_t stream = 0);
// the same over bf16 logits (sm_80+ training in bf16)
void xentForwardBackward(bf16* logits, int rows, int V, const int* target, float gradScale, float* loss, float* lse /* may be null */,
                         cudaStream_t stream = 0);

}  // namespace ft::cuda
