// head.cpp: the fused head + cross-entropy of head.h: the reference first, then the blocked,
// vectorised (simd::gemm, simd::expInPlace) and threaded version.
#include "head.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "simd.h"
#include "threads.h"

namespace ft {

double headForwardBackward_ref(const float* E, int V, int C, const float* hf, int N, const int* target, int count, float* dh,
                               float* logits) {
  std::vector<float> row(V);
  double loss = 0.0;
  for (int n = 0; n < N; n++) {
    if (target[n] < 0 && !logits) continue;
    const float* hr = hf + (size_t)n * C;
    float mx = -INFINITY;
    for (int v = 0; v < V; v++) {
      const float* er = E + (size_t)v * C;
      float acc = 0.f;
      for (int c = 0; c < C; c++) acc += hr[c] * er[c];
      row[v] = acc;
      if (acc > mx) mx = acc;
    }
    if (logits) std::memcpy(logits + (size_t)n * V, row.data(), sizeof(float) * V);
    if (target[n] < 0) continue;
    double sum = 0.0;
    for (int v = 0; v < V; v++) sum += std::exp((double)row[v] - mx);
    const double lse = mx + std::log(sum);
    const int y = target[n];
    loss += lse - row[y];
    if (!dh) continue;
    float* d = dh + (size_t)n * C;
    for (int v = 0; v < V; v++) {
      float g = static_cast<float>(std::exp((double)row[v] - lse) / count);
      if (v == y) g -= 1.f / static_cast<float>(count);
      const float* er = E + (size_t)v * C;
      for (int c = 0; c < C; c++) d[c] += g * er[c];
    }
  }
  return loss;
}

namespace {
constexpr int kNB = 256;      // tokens per block (columns of a logit tile)
constexpr int kVB = 128;      // vocabulary rows per sub-block (rows of a logit tile)
constexpr int kChunks = 16;   // vocabulary chunks (fixed: the order of every cross-chunk sum)
}  // namespace

double headForwardBackward(const float* E, int V, int C, const float* hf, int N, const int* target, int count, float* dh, float* logits) {
  std::vector<int> rows;  // the rows that go through the head
  for (int n = 0; n < N; n++)
    if (target[n] >= 0 || logits) rows.push_back(n);
  const int R = (int)rows.size();
  if (R == 0) return 0.0;
  const int nch = std::max(1, std::min(kChunks, (V + kVB - 1) / kVB));
  auto chunkBegin = [&](int ch) { return (int)((long)V * ch / nch); };
  const float invCount = count > 0 ? 1.f / static_cast<float>(count) : 0.f;

  std::vector<float> hT((size_t)C * kNB);                                  // [C, NB] the block's hidden states, transposed
  std::vector<int> yb(kNB);                                                // [NB] target of each column, -1 for none
  std::vector<float> mC((size_t)nch * kNB), sC((size_t)nch * kNB);         // [chunks, NB] running max and sum of exp
  std::vector<float> ly(kNB), lse(kNB);                                    // [NB] the target's logit, log-sum-exp
  std::vector<float> dhP(dh ? (size_t)nch * kNB * C : 0);                  // [chunks, NB, C] partial dH
  std::vector<std::vector<float>> work(threads(), std::vector<float>((size_t)kVB * kNB));  // [VB, NB] logit tile per thread
  double loss = 0.0;

  for (int b0 = 0; b0 < R; b0 += kNB) {
    const int nb = std::min(kNB, R - b0);
    for (int j = 0; j < nb; j++) {
      const int n = rows[b0 + j];
      yb[j] = target[n];
      for (int c = 0; c < C; c++) hT[(size_t)c * kNB + j] = hf[(size_t)n * C + c];
    }
    // L [vb, nb] = E[v0 : v0 + vb] hT, the same call in both passes
    auto logitTile = [&](float* L, int v0, int vb) { simd::gemm(vb, nb, C, E + (size_t)v0 * C, C, 1, hT.data(), kNB, L, kNB, false); };

    // One pass over the vocabulary: per chunk and column, the running max m, the sum of
    // exp(l - m), and (for the gradient) U = sum_v exp(l_v - m) E_v, rescaled whenever m moves,
    // as flash attention does with its output. Then dH = (U / S - E_y) / count: two matmuls
    // over the vocabulary instead of three (no second pass recomputing the logits).
    const bool grad = dh && count > 0;
    parallel(
        [&](int t, int P) {
          long cb, ce;
          splitRange(nch, t, P, 1, &cb, &ce);
          float* L = work[t].data();
          float scale[kNB];
          for (int ch = (int)cb; ch < (int)ce; ch++) {
            float* m = &mC[(size_t)ch * kNB];
            float* s = &sC[(size_t)ch * kNB];
            float* u = grad ? &dhP[(size_t)ch * kNB * C] : nullptr;  // [nb, C] this chunk's U
            const int v1 = chunkBegin(ch + 1);
            for (int v0 = chunkBegin(ch); v0 < v1; v0 += kVB) {
              const int vb = std::min(kVB, v1 - v0);
              logitTile(L, v0, vb);
              if (logits)
                for (int i = 0; i < vb; i++)
                  for (int j = 0; j < nb; j++) logits[(size_t)rows[b0 + j] * V + v0 + i] = L[(size_t)i * kNB + j];
              for (int j = 0; j < nb; j++)
                if (yb[j] >= v0 && yb[j] < v0 + vb) ly[j] = L[(size_t)(yb[j] - v0) * kNB + j];
              float bm[kNB];  // the tile's max per column
              std::memcpy(bm, L, sizeof(float) * nb);
              for (int i = 1; i < vb; i++) {
                const float* l = L + (size_t)i * kNB;
                for (int j = 0; j < nb; j++) bm[j] = l[j] > bm[j] ? l[j] : bm[j];
              }
              if (v0 == chunkBegin(ch)) {
                for (int j = 0; j < nb; j++) m[j] = bm[j], s[j] = 0.f;
                if (u) std::fill(u, u + (size_t)nb * C, 0.f);
              } else {  // rescale the running sums to the new max
                for (int j = 0; j < nb; j++) {
                  const float mn = bm[j] > m[j] ? bm[j] : m[j];
                  scale[j] = m[j] - mn;
                  m[j] = mn;
                }
                simd::expInPlace(scale, nb);
                for (int j = 0; j < nb; j++) s[j] *= scale[j];
                if (u)
                  for (int j = 0; j < nb; j++)
                    if (scale[j] != 1.f)
                      for (int c = 0; c < C; c++) u[(size_t)j * C + c] *= scale[j];
              }
              for (int i = 0; i < vb; i++) {
                float* l = L + (size_t)i * kNB;
                for (int j = 0; j < nb; j++) l[j] -= m[j];
                simd::expInPlace(l, nb);
                for (int j = 0; j < nb; j++) s[j] += l[j];
              }
              // U [nb, C] += exp(L - m)^T [nb, vb] E[v0 : v0 + vb] [vb, C]
              if (u) simd::gemm(nb, C, vb, L, 1, kNB, E + (size_t)v0 * C, C, u, C, true);
            }
          }
        },
        nch);

    // log-sum-exp over chunks, in chunk order; the gradient from the chunks' U, in chunk order
    for (int j = 0; j < nb; j++) {
      if (yb[j] < 0) continue;
      float mx = mC[j];
      for (int ch = 1; ch < nch; ch++) mx = std::max(mx, mC[(size_t)ch * kNB + j]);
      double sum = 0.0;
      for (int ch = 0; ch < nch; ch++) sum += (double)sC[(size_t)ch * kNB + j] * std::exp((double)mC[(size_t)ch * kNB + j] - mx);
      const double l = mx + std::log(sum);
      lse[j] = (float)l;
      loss += l - ly[j];
    }
    if (!grad) continue;
    // dH [j] = (sum_ch U_ch[j] exp(m_ch - lse) - E_y) / count
    parallelFor(nb, 1, [&](long jb, long je) {
      for (long j = jb; j < je; j++) {
        if (yb[j] < 0) continue;
        float w[kChunks];
        for (int ch = 0; ch < nch; ch++) w[ch] = static_cast<float>(std::exp((double)mC[(size_t)ch * kNB + j] - (double)lse[j])) * invCount;
        float* out = dh + (size_t)rows[b0 + j] * C;
        const float* ey = E + (size_t)yb[j] * C;
        for (int c = 0; c < C; c++) {
          float acc = dhP[(size_t)j * C + c] * w[0];
          for (int ch = 1; ch < nch; ch++) acc += dhP[((size_t)ch * kNB + j) * C + c] * w[ch];
          out[c] += acc - ey[c] * invCount;
        }
      }
    });
  }
  return loss;
}

}  // namespace ft
