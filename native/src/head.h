// head.h: the tied output head fused with the cross-entropy, forward and backward, without a
// T x V tensor: logits are made one tile [VB vocab rows, NB tokens] at a time.
//
// For a block of NB token rows (hT [C, NB], the final hidden states transposed) the vocabulary
// is cut into a FIXED number of contiguous chunks (kHeadChunks, or fewer when V is small; never
// a function of the thread count); the pool takes chunks statically. Within a chunk, sub-blocks
// of VB embedding rows (VB * C floats, L2-resident) are multiplied against all NB tokens:
//   pass 1  L = E_blk hT                        [VB, NB]  → per chunk and token: running max m
//                                                           and sum s of exp(L - m); the target's
//                                                           logit when it falls in the chunk
//           lse = M + log(sum_c s_c exp(m_c - M))  over chunks in chunk order, in double
//   pass 2  L again (same kernel, same values), G = (exp(L - lse) - onehot) / count  [VB, NB]
//           dH_c += G^T E_blk                   [NB, C]   one partial per chunk
//           dH = sum_c dH_c                      in chunk order
// Each embedding row is thus read once per block of NB tokens and pass, not once per token.
// Work: 3 V C multiply-adds per token (logits twice, dH once).
#pragma once

namespace ft {

// hf [N, C] final hidden states; E [V, C] the tied embedding.
// target [N]: the next token of row n, or -1 when row n is not in the loss.
// Rows with a target add lse - logit[target] to the returned sum (double); when dh is not null
// they also add (softmax - onehot) E / count to dh [N, C]. When logits [N, V] is not null,
// every row's logits are written there (tests).
double headForwardBackward(const float* E, int V, int C, const float* hf, int N, const int* target, int count, float* dh, float* logits);

// The plain reference: one row at a time, as first written (qwen3.cpp's forwardBackward_ref).
double headForwardBackward_ref(const float* E, int V, int C, const float* hf, int N, const int* target, int count, float* dh,
                               float* logits);

}  // namespace ft
