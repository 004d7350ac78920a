// qwen3.cpp: forward and backward of the Qwen3 decoder with LoRA (see qwen3.h).
//
// Per layer, for N = batch * seqLen rows:
//   h1 = rmsnorm(x) * inputNorm
//   q, k, v = h1 Wq/k/v^T (+ LoRA); q, k get a per-head RMSNorm, then RoPE
//   y = causal softmax(q k^T / sqrt(D)) v   (each kv head serves H / KV q heads)
//   x += y Wo^T (+ LoRA)
//   h2 = rmsnorm(x) * postNorm
//   x += (silu(h2 Wg^T) * (h2 Wu^T)) Wd^T   (each + LoRA)
// then a final RMSNorm and the tied head, with the cross-entropy fused over the
// vocabulary (head.h; never a T x V tensor in training).
// Reductions run in a fixed order, so results do not depend on anything but
// the inputs and the simd path (scalar, AVX2 or AVX-512; see simd.h): in
// particular not on the number of threads.
//
// Two versions of each heavy operation: `<op>_ref`, the plain scalar loops as
// first written (forwardBackward_ref runs only these), and `<op>`, the fast one
// (simd::gemm / dot / axpy, the thread pool, head.h's blocked head). The cheap
// elementwise operations (RMSNorm, RoPE, SwiGLU) are shared.
#include "qwen3.h"
#include "layers.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "head.h"
#include "simd.h"
#include "threads.h"

namespace ft {
namespace {

using Buf = std::vector<float>;

// ---- linear layers: references ------------------------------------------------------------------

// y[N, out] = x[N, in] W[out, in]^T + s * (x A^T) B^T;  la[N, r] = x A^T
void linearForward_ref(float* y, float* la, const float* x, const float* xl, const float* W, const LoraPair& lp, int r, float s, int N, int in, int out) {
  for (int n = 0; n < N; n++) {
    const float* xr = x + (size_t)n * in;
    const float* xlr = xl + (size_t)n * in;
    float* yr = y + (size_t)n * out;
    for (int o = 0; o < out; o++) {
      const float* wr = W + (size_t)o * in;
      float acc = 0.f;
      for (int i = 0; i < in; i++) acc += xr[i] * wr[i];
      yr[o] = acc;
    }
    if (lp.A) {
      float* lr = la + (size_t)n * r;
      for (int j = 0; j < r; j++) {
        const float* ar = lp.A + (size_t)j * in;
        float acc = 0.f;
        for (int i = 0; i < in; i++) acc += xlr[i] * ar[i];
        lr[j] = acc;
      }
      for (int o = 0; o < out; o++) {
        const float* br = lp.B + (size_t)o * r;
        float acc = 0.f;
        for (int j = 0; j < r; j++) acc += lr[j] * br[j];
        yr[o] += s * acc;
      }
    }
  }
}

// Given dy[N, out]: dx[N, in] += dy W + s (dy B) A;  dB += s dy^T la;  dA += s (dy B)^T x
void linearBackward_ref(float* dx, const float* dy, const float* xl, const float* keep, const float* la, const float* W, LoraPair& lp, int r, float s,
                        int N, int in, int out) {
  std::vector<float> dla((size_t)r);
  for (int n = 0; n < N; n++) {
    const float* dyr = dy + (size_t)n * out;
    float* dxr = dx + (size_t)n * in;
    for (int o = 0; o < out; o++) {
      const float g = dyr[o];
      if (g == 0.f) continue;
      const float* wr = W + (size_t)o * in;
      for (int i = 0; i < in; i++) dxr[i] += g * wr[i];
    }
    if (lp.A) {
      const float* lr = la + (size_t)n * r;
      const float* xr = xl + (size_t)n * in;
      const float* kr = keep ? keep + (size_t)n * in : nullptr;
      for (int j = 0; j < r; j++) {
        float acc = 0.f;
        for (int o = 0; o < out; o++) acc += dyr[o] * lp.B[(size_t)o * r + j];
        dla[j] = s * acc;
      }
      for (int o = 0; o < out; o++) {
        const float g = s * dyr[o];
        float* dbr = lp.dB + (size_t)o * r;
        for (int j = 0; j < r; j++) dbr[j] += g * lr[j];
      }
      for (int j = 0; j < r; j++) {
        const float g = dla[j];
        const float* ar = lp.A + (size_t)j * in;
        float* dar = lp.dA + (size_t)j * in;
        for (int i = 0; i < in; i++) {
          dar[i] += g * xr[i];
          dxr[i] += kr ? g * ar[i] * kr[i] : g * ar[i];
        }
      }
    }
  }
}

}  // namespace

// The layer operations shared with the CUDA tests as their references (layers.h).
namespace layers {

// y[rows, width] = x * rstd * w, rstd[rows] = 1 / sqrt(mean(x^2) + eps)
void rmsForward(float* y, float* rstd, const float* x, const float* w, int rows, int width, float eps) {
  for (int n = 0; n < rows; n++) {
    const float* xr = x + (size_t)n * width;
    float ss = 0.f;
    for (int i = 0; i < width; i++) ss += xr[i] * xr[i];
    const float r = 1.f / std::sqrt(ss / static_cast<float>(width) + eps);
    rstd[n] = r;
    float* yr = y + (size_t)n * width;
    for (int i = 0; i < width; i++) yr[i] = xr[i] * r * w[i];
  }
}

// dx += rstd * (w dy) - x rstd^3 mean(x w dy)
void rmsBackward(float* dx, const float* dy, const float* x, const float* rstd, const float* w, int rows, int width) {
  for (int n = 0; n < rows; n++) {
    const float* xr = x + (size_t)n * width;
    const float* dyr = dy + (size_t)n * width;
    float* dxr = dx + (size_t)n * width;
    const float r = rstd[n];
    float dot = 0.f;
    for (int i = 0; i < width; i++) dot += xr[i] * w[i] * dyr[i];
    const float c = r * r * r * dot / static_cast<float>(width);
    for (int i = 0; i < width; i++) dxr[i] += r * w[i] * dyr[i] - xr[i] * c;
  }
}

// Rotate-half RoPE on rows of `heads` heads of width D; position = row % seqLen.
// Inverse = the transpose (sign of sin flipped).
void rope(float* x, int N, int heads, int D, int seqLen, const std::vector<float>& cosT, const std::vector<float>& sinT, bool inverse) {
  const int half = D / 2;
  for (int n = 0; n < N; n++) {
    const int t = n % seqLen;
    const float* c = cosT.data() + (size_t)t * half;
    const float* s = sinT.data() + (size_t)t * half;
    for (int h = 0; h < heads; h++) {
      float* v = x + ((size_t)n * heads + h) * D;
      for (int i = 0; i < half; i++) {
        const float a = v[i], b = v[i + half];
        const float sn = inverse ? -s[i] : s[i];
        v[i] = a * c[i] - b * sn;
        v[i + half] = b * c[i] + a * sn;
      }
    }
  }
}

void ropeTables(int seqLen, int D, float theta, std::vector<float>& cosT, std::vector<float>& sinT) {
  const int half = D / 2;
  cosT.assign((size_t)seqLen * half, 0.f);
  sinT.assign((size_t)seqLen * half, 0.f);
  for (int t = 0; t < seqLen; t++)
    for (int i = 0; i < half; i++) {
      const double inv = 1.0 / std::pow((double)theta, (2.0 * i) / D);
      cosT[(size_t)t * half + i] = (float)std::cos(t * inv);
      sinT[(size_t)t * half + i] = (float)std::sin(t * inv);
    }
}

}  // namespace layers
using namespace layers;

namespace {

// ---- linear layers: fast ------------------------------------------------------------------------

// C[M, N] (+)= A[M, K] B[K, N] (simd::gemm's layout) on the pool: threads take contiguous row
// ranges (multiples of 12 rows) or, when M is small, column ranges (multiples of 32). Every C
// element is one chain over k either way, so the split does not change the result.
void gemmParallel(int M, int N, int K, const float* A, ptrdiff_t rsA, ptrdiff_t csA, const float* B, ptrdiff_t ldb, float* C, ptrdiff_t ldc,
                  bool accumulate) {
  if ((long)M * N * K < 32768) return simd::gemm(M, N, K, A, rsA, csA, B, ldb, C, ldc, accumulate);
  if (M >= N || M >= 12 * threads())
    parallelFor(M, 12, [&](long b, long e) { simd::gemm((int)(e - b), N, K, A + b * rsA, rsA, csA, B, ldb, C + b * ldc, ldc, accumulate); });
  else
    parallelFor(N, 32, [&](long b, long e) { simd::gemm(M, (int)(e - b), K, A, rsA, csA, B + b, ldb, C + b, ldc, accumulate); });
}

// out [cols, rows] = in [rows, cols]^T, in 32 x 32 tiles (so both sides stay in cache) and
// split over the pool by tile rows: a pure copy, so any split gives the same bytes.
Buf transpose(const float* in, int rows, int cols) {
  Buf out((size_t)rows * cols);
  constexpr int TB = 32;
  const int tiles = (rows + TB - 1) / TB;
  auto body = [&](long tb, long te) {
    for (long t = tb; t < te; t++) {
      const int i0 = (int)t * TB, i1 = std::min(rows, i0 + TB);
      for (int j0 = 0; j0 < cols; j0 += TB) {
        const int j1 = std::min(cols, j0 + TB);
        for (int i = i0; i < i1; i++)
          for (int j = j0; j < j1; j++) out[(size_t)j * rows + i] = in[(size_t)i * cols + j];
      }
    }
  };
  if ((long)rows * cols < 65536) body(0, tiles);
  else parallelFor(tiles, 1, body);
  return out;
}

// As linearForward_ref: y[N, out] = x W^T + s (x A^T) B^T;  la[N, r] = x A^T
void linearForward(float* y, float* la, const float* x, const float* xl, const float* W, const LoraPair& lp, int r, float s, int N, int in, int out) {
  const Buf Wt = transpose(W, out, in);  // [in, out]
  gemmParallel(N, out, in, x, in, 1, Wt.data(), out, y, out, false);
  if (lp.A) {
    const Buf At = transpose(lp.A, r, in), Bt = transpose(lp.B, out, r);  // [in, r], [r, out]
    gemmParallel(N, r, in, xl, in, 1, At.data(), r, la, r, false);
    Buf t((size_t)N * out);  // [N, out] = la B^T
    gemmParallel(N, out, r, la, r, 1, Bt.data(), out, t.data(), out, false);
    for (size_t i = 0; i < t.size(); i++) y[i] += s * t[i];
  }
}

// As linearBackward_ref, given dy[N, out]:
//   dx[N, in] += dy W + dla A  with dla[N, r] = s dy B;  dB[out, r] += (s dy)^T la;  dA[r, in] += dla^T x
void linearBackward(float* dx, const float* dy, const float* xl, const float* keep, const float* la, const float* W, LoraPair& lp, int r, float s,
                    int N, int in, int out) {
  gemmParallel(N, in, out, dy, out, 1, W, in, dx, in, true);
  if (!lp.A) return;
  Buf dla((size_t)N * r), sdy((size_t)N * out);
  gemmParallel(N, r, out, dy, out, 1, lp.B, r, dla.data(), r, false);
  for (float& v : dla) v *= s;
  for (size_t i = 0; i < sdy.size(); i++) sdy[i] = s * dy[i];
  gemmParallel(out, r, N, sdy.data(), 1, out, la, r, lp.dB, r, true);
  gemmParallel(r, in, N, dla.data(), 1, r, xl, in, lp.dA, in, true);
  if (!keep) return gemmParallel(N, in, r, dla.data(), r, 1, lp.A, in, dx, in, true);
  Buf t((size_t)N * in);  // the LoRA path's dx, through the dropout mask
  gemmParallel(N, in, r, dla.data(), r, 1, lp.A, in, t.data(), in, false);
  for (size_t i = 0; i < t.size(); i++) dx[i] += t[i] * keep[i];
}

inline float sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }

// A uniform number in [0, 1) from a 64-bit counter (splitmix64's finaliser).
inline float uniform01(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (1.f / 16777216.f);
}

struct LayerActs {
  Buf xl[NPROJ], keep[NPROJ];  // LoRA dropout: the dropped input [N, in] and its keep/(1-p) mask, per projection (empty: no dropout)
  Buf x, r1, h1, la[NPROJ], qpre, rq, qn, kpre, rk, kn, qr, kr, v, P, y, xmid, r2, h2, g, u, a;
};

// ---- causal attention ---------------------------------------------------------------------------
// Forward: A.qr [N, H*D], A.kr [N, KV*D], A.v [N, KV*D] → A.P [batch, H, T, T] (softmax rows,
// zero above the diagonal), A.y [N, H*D]. Each kv head serves group = H / KV q heads.
struct AttnShape {
  int batch, seqLen, H, KV, D;
};

void attentionForward_ref(LayerActs& A, const AttnShape& S) {
  const int batch = S.batch, seqLen = S.seqLen, H = S.H, KV = S.KV, D = S.D, group = H / KV;
  const float invSqrtD = 1.f / std::sqrt(static_cast<float>(D));
  for (int b = 0; b < batch; b++)
    for (int h = 0; h < H; h++) {
      const int kh = h / group;
      for (int t1 = 0; t1 < seqLen; t1++) {
        const float* q = &A.qr[((size_t)(b * seqLen + t1) * H + h) * D];
        float* prow = &A.P[(((size_t)b * H + h) * seqLen + t1) * seqLen];
        float mx = -INFINITY;
        for (int t2 = 0; t2 <= t1; t2++) {
          const float* k = &A.kr[((size_t)(b * seqLen + t2) * KV + kh) * D];
          float acc = 0.f;
          for (int d = 0; d < D; d++) acc += q[d] * k[d];
          prow[t2] = acc * invSqrtD;
          if (prow[t2] > mx) mx = prow[t2];
        }
        float sum = 0.f;
        for (int t2 = 0; t2 <= t1; t2++) sum += (prow[t2] = std::exp(prow[t2] - mx));
        float* yv = &A.y[((size_t)(b * seqLen + t1) * H + h) * D];
        for (int t2 = 0; t2 <= t1; t2++) {
          prow[t2] /= sum;
          const float* vv = &A.v[((size_t)(b * seqLen + t2) * KV + kh) * D];
          for (int d = 0; d < D; d++) yv[d] += prow[t2] * vv[d];
        }
      }
    }
}

// As attentionForward_ref; the pool takes (b, h) pairs, which write disjoint P rows and y columns.
void attentionForward(LayerActs& A, const AttnShape& S) {
  const int seqLen = S.seqLen, H = S.H, KV = S.KV, D = S.D, group = H / KV;
  const float invSqrtD = 1.f / std::sqrt(static_cast<float>(D));
  parallelFor((long)S.batch * H, 1, [&](long pb, long pe) {
    for (long pair = pb; pair < pe; pair++) {
      const int b = (int)(pair / H), h = (int)(pair % H), kh = h / group;
      for (int t1 = 0; t1 < seqLen; t1++) {
        const float* q = &A.qr[((size_t)(b * seqLen + t1) * H + h) * D];
        float* prow = &A.P[(((size_t)b * H + h) * seqLen + t1) * seqLen];
        float mx = -INFINITY;
        for (int t2 = 0; t2 <= t1; t2++) {
          prow[t2] = simd::dot(q, &A.kr[((size_t)(b * seqLen + t2) * KV + kh) * D], D) * invSqrtD;
          if (prow[t2] > mx) mx = prow[t2];
        }
        for (int t2 = 0; t2 <= t1; t2++) prow[t2] -= mx;
        simd::expInPlace(prow, t1 + 1);
        float sum = 0.f;
        for (int t2 = 0; t2 <= t1; t2++) sum += prow[t2];
        float* yv = &A.y[((size_t)(b * seqLen + t1) * H + h) * D];
        for (int t2 = 0; t2 <= t1; t2++) {
          prow[t2] /= sum;
          simd::axpy(yv, prow[t2], &A.v[((size_t)(b * seqLen + t2) * KV + kh) * D], D);
        }
      }
    }
  });
}

// Backward: dy [N, H*D] → dqr [N, H*D], dkr [N, KV*D], dv [N, KV*D] (accumulated).
void attentionBackward_ref(Buf& dqr, Buf& dkr, Buf& dv, const Buf& dy, const LayerActs& A, const AttnShape& S) {
  const int batch = S.batch, seqLen = S.seqLen, H = S.H, KV = S.KV, D = S.D, group = H / KV;
  const float invSqrtD = 1.f / std::sqrt(static_cast<float>(D));
  Buf dp(seqLen);
  for (int b = 0; b < batch; b++)
    for (int h = 0; h < H; h++) {
      const int kh = h / group;
      for (int t1 = 0; t1 < seqLen; t1++) {
        const float* prow = &A.P[(((size_t)b * H + h) * seqLen + t1) * seqLen];
        const float* dyv = &dy[((size_t)(b * seqLen + t1) * H + h) * D];
        float dot = 0.f;
        for (int t2 = 0; t2 <= t1; t2++) {
          const float* vv = &A.v[((size_t)(b * seqLen + t2) * KV + kh) * D];
          float acc = 0.f;
          for (int d = 0; d < D; d++) acc += dyv[d] * vv[d];
          dp[t2] = acc;
          dot += acc * prow[t2];
          float* dvv = &dv[((size_t)(b * seqLen + t2) * KV + kh) * D];
          for (int d = 0; d < D; d++) dvv[d] += prow[t2] * dyv[d];
        }
        const float* q = &A.qr[((size_t)(b * seqLen + t1) * H + h) * D];
        float* dq = &dqr[((size_t)(b * seqLen + t1) * H + h) * D];
        for (int t2 = 0; t2 <= t1; t2++) {
          const float ds = prow[t2] * (dp[t2] - dot) * invSqrtD;
          const float* k = &A.kr[((size_t)(b * seqLen + t2) * KV + kh) * D];
          float* dk = &dkr[((size_t)(b * seqLen + t2) * KV + kh) * D];
          for (int d = 0; d < D; d++) {
            dq[d] += ds * k[d];
            dk[d] += ds * q[d];
          }
        }
      }
    }
}

// As attentionBackward_ref; the pool takes (b, kv head) pairs: each owns its dk, dv rows and the
// dq of its q heads, which it visits in the reference's order (h, then t1).
void attentionBackward(Buf& dqr, Buf& dkr, Buf& dv, const Buf& dy, const LayerActs& A, const AttnShape& S) {
  const int seqLen = S.seqLen, H = S.H, KV = S.KV, D = S.D, group = H / KV;
  const float invSqrtD = 1.f / std::sqrt(static_cast<float>(D));
  parallelFor((long)S.batch * KV, 1, [&](long pb, long pe) {
    Buf dp(seqLen);
    for (long pair = pb; pair < pe; pair++) {
      const int b = (int)(pair / KV), kh = (int)(pair % KV);
      for (int h = kh * group; h < (kh + 1) * group; h++)
        for (int t1 = 0; t1 < seqLen; t1++) {
          const float* prow = &A.P[(((size_t)b * H + h) * seqLen + t1) * seqLen];
          const float* dyv = &dy[((size_t)(b * seqLen + t1) * H + h) * D];
          float dot = 0.f;
          for (int t2 = 0; t2 <= t1; t2++) {
            const size_t kv = ((size_t)(b * seqLen + t2) * KV + kh) * D;
            dp[t2] = simd::dot(dyv, &A.v[kv], D);
            dot += dp[t2] * prow[t2];
            simd::axpy(&dv[kv], prow[t2], dyv, D);
          }
          const float* q = &A.qr[((size_t)(b * seqLen + t1) * H + h) * D];
          float* dq = &dqr[((size_t)(b * seqLen + t1) * H + h) * D];
          for (int t2 = 0; t2 <= t1; t2++) {
            const float ds = prow[t2] * (dp[t2] - dot) * invSqrtD;
            const size_t kv = ((size_t)(b * seqLen + t2) * KV + kh) * D;
            simd::axpy(dq, ds, &A.kr[kv], D);
            simd::axpy(&dkr[kv], ds, q, D);
          }
        }
    }
  });
}

// The heavy operations of one version (reference or fast).
struct Ops {
  void (*linearForward)(float*, float*, const float*, const float*, const float*, const LoraPair&, int, float, int, int, int);
  void (*linearBackward)(float*, const float*, const float*, const float*, const float*, const float*, LoraPair&, int, float, int, int, int);
  void (*attentionForward)(LayerActs&, const AttnShape&);
  void (*attentionBackward)(Buf&, Buf&, Buf&, const Buf&, const LayerActs&, const AttnShape&);
  double (*head)(const float*, int, int, const float*, int, const int*, int, float*, float*);
};
const Ops kRef{linearForward_ref, linearBackward_ref, attentionForward_ref, attentionBackward_ref, headForwardBackward_ref};
const Ops kFast{linearForward, linearBackward, attentionForward, attentionBackward, headForwardBackward};

float run(const Ops& op, const Qwen3Config& cfg, const Qwen3Weights& w, Lora& lora, const int32_t* ids, const uint8_t* mask, int batch, int seqLen,
          bool backward, float* logits, int* counted) {
  const int N = batch * seqLen, C = cfg.hidden, I = cfg.intermediate, H = cfg.heads, KV = cfg.kvHeads, D = cfg.headDim, V = cfg.vocab;
  const int HD = H * D, KD = KV * D, r = lora.rank;
  const float s = lora.scale, eps = cfg.rmsEps;
  const AttnShape shape{batch, seqLen, H, KV, D};
  auto lp = [&](int l, int p) -> LoraPair& { return lora.proj[(size_t)l * NPROJ + p]; };

  // LoRA dropout (PEFT's lora_dropout, on the adapter's input only, in training only): the
  // mask keeps an element with probability 1 - p and scales it by 1 / (1 - p). It comes from
  // a counter-based hash of (seed, layer, projection, element), so it does not depend on the
  // number of threads or on the order of calls.
  const float pDrop = backward ? lora.dropout : 0.f;
  auto fwd = [&](LayerActs& A, int l, int p, float* y, const float* x, int in, int out) {
    const float* xl = x;
    if (pDrop > 0.f && lp(l, p).A) {
      const size_t n = (size_t)N * in;
      A.keep[p].resize(n);
      A.xl[p].resize(n);
      const uint64_t stream = lora.seed * 0x9E3779B97F4A7C15ull ^ ((uint64_t)(l * NPROJ + p) << 40);
      const float scale = 1.f / (1.f - pDrop);
      for (size_t i = 0; i < n; i++) {
        A.keep[p][i] = uniform01(stream + i) < pDrop ? 0.f : scale;
        A.xl[p][i] = x[i] * A.keep[p][i];
      }
      xl = A.xl[p].data();
    }
    op.linearForward(y, A.la[p].data(), x, xl, w.layer[l].w[p], lp(l, p), r, s, N, in, out);
  };
  auto bwd = [&](LayerActs& A, int l, int p, float* dx, const float* dy, const float* x, int in, int out) {
    const bool dropped = !A.keep[p].empty();
    op.linearBackward(dx, dy, dropped ? A.xl[p].data() : x, dropped ? A.keep[p].data() : nullptr, A.la[p].data(), w.layer[l].w[p], lp(l, p), r, s, N,
                      in, out);
  };

  // RoPE tables [seqLen, D/2], angles in double as the reference computes them
  std::vector<float> cosT, sinT;
  ropeTables(seqLen, D, cfg.ropeTheta, cosT, sinT);

  std::vector<LayerActs> acts(cfg.layers);

  // One layer's forward: x [N, C] in, x out; the layer's activations land in A. With
  // activation checkpointing, only each layer's input is kept after the forward pass and the
  // layer is recomputed from it, just before its backward: the same operations in the same
  // order (dropout masks come from a counter, not from a stream), so the same bytes.
  auto layerForward = [&](int l, LayerActs& A, Buf& x) {
    const LayerWeights& lw = w.layer[l];
    A.x = x;
    A.r1.resize(N); A.h1.resize((size_t)N * C);
    rmsForward(A.h1.data(), A.r1.data(), x.data(), lw.inputNorm, N, C, eps);
    for (int p = 0; p < NPROJ; p++) A.la[p].resize((size_t)N * r);
    A.qpre.resize((size_t)N * HD); A.kpre.resize((size_t)N * KD); A.v.resize((size_t)N * KD);
    fwd(A, l, PROJ_Q, A.qpre.data(), A.h1.data(), C, HD);
    fwd(A, l, PROJ_K, A.kpre.data(), A.h1.data(), C, KD);
    fwd(A, l, PROJ_V, A.v.data(), A.h1.data(), C, KD);
    A.rq.resize((size_t)N * H); A.qn.resize((size_t)N * HD); A.rk.resize((size_t)N * KV); A.kn.resize((size_t)N * KD);
    rmsForward(A.qn.data(), A.rq.data(), A.qpre.data(), lw.qNorm, N * H, D, eps);
    rmsForward(A.kn.data(), A.rk.data(), A.kpre.data(), lw.kNorm, N * KV, D, eps);
    A.qr = A.qn; A.kr = A.kn;
    rope(A.qr.data(), N, H, D, seqLen, cosT, sinT, false);
    rope(A.kr.data(), N, KV, D, seqLen, cosT, sinT, false);
    // attention: P [batch, H, T, T], y [N, H*D]
    A.P.assign((size_t)batch * H * seqLen * seqLen, 0.f);
    A.y.assign((size_t)N * HD, 0.f);
    op.attentionForward(A, shape);
    Buf o((size_t)N * C);
    fwd(A, l, PROJ_O, o.data(), A.y.data(), HD, C);
    for (size_t i = 0; i < x.size(); i++) x[i] += o[i];
    A.xmid = x;
    A.r2.resize(N); A.h2.resize((size_t)N * C);
    rmsForward(A.h2.data(), A.r2.data(), x.data(), lw.postNorm, N, C, eps);
    A.g.resize((size_t)N * I); A.u.resize((size_t)N * I); A.a.resize((size_t)N * I);
    fwd(A, l, PROJ_GATE, A.g.data(), A.h2.data(), C, I);
    fwd(A, l, PROJ_UP, A.u.data(), A.h2.data(), C, I);
    for (size_t i = 0; i < A.a.size(); i++) A.a[i] = A.g[i] * sigmoid(A.g[i]) * A.u[i];
    Buf d((size_t)N * C);
    fwd(A, l, PROJ_DOWN, d.data(), A.a.data(), I, C);
    for (size_t i = 0; i < x.size(); i++) x[i] += d[i];
  };
  Buf x((size_t)N * C);  // [N, C] residual stream
  for (int n = 0; n < N; n++) std::memcpy(&x[(size_t)n * C], w.embed + (size_t)ids[n] * C, sizeof(float) * C);
  const bool recompute = backward && cfg.checkpointing;
  for (int l = 0; l < cfg.layers; l++) {
    layerForward(l, acts[l], x);
    if (recompute) {  // keep the input only
      Buf input = std::move(acts[l].x);
      acts[l] = LayerActs{};
      acts[l].x = std::move(input);
    }
  }
  Buf rf(N), hf((size_t)N * C);
  rmsForward(hf.data(), rf.data(), x.data(), w.finalNorm, N, C, eps);

  // fused head + cross-entropy (head.h)
  int count = 0;
  for (int n = 0; n < N; n++)
    if (n % seqLen < seqLen - 1 && mask[n + 1]) count++;
  if (counted) *counted = count;
  std::vector<int> target(N);  // [N] the next token where it is in the loss, else -1
  for (int n = 0; n < N; n++) target[n] = n % seqLen < seqLen - 1 && mask[n + 1] ? ids[n + 1] : -1;
  Buf dhf((size_t)N * C, 0.f);
  const double loss = op.head(w.embed, V, C, hf.data(), N, target.data(), count, backward ? dhf.data() : nullptr, logits);
  if (!backward || count == 0) return count ? (float)(loss / count) : 0.f;

  Buf dx((size_t)N * C, 0.f);
  rmsBackward(dx.data(), dhf.data(), x.data(), rf.data(), w.finalNorm, N, C);
  for (int l = cfg.layers - 1; l >= 0; l--) {
    const LayerWeights& lw = w.layer[l];
    LayerActs& A = acts[l];
    if (recompute) {
      Buf xin = A.x;
      layerForward(l, A, xin);
    }
    // MLP: x_out = xmid + down(a)
    Buf da((size_t)N * I, 0.f);
    bwd(A, l, PROJ_DOWN, da.data(), dx.data(), A.a.data(), I, C);
    Buf dg((size_t)N * I), du((size_t)N * I);
    for (size_t i = 0; i < da.size(); i++) {
      const float sg = sigmoid(A.g[i]);
      du[i] = da[i] * A.g[i] * sg;
      dg[i] = da[i] * A.u[i] * sg * (1.f + A.g[i] * (1.f - sg));
    }
    Buf dh2((size_t)N * C, 0.f);
    bwd(A, l, PROJ_GATE, dh2.data(), dg.data(), A.h2.data(), C, I);
    bwd(A, l, PROJ_UP, dh2.data(), du.data(), A.h2.data(), C, I);
    rmsBackward(dx.data(), dh2.data(), A.xmid.data(), A.r2.data(), lw.postNorm, N, C);  // dx is now d(xmid)
    // attention: xmid = x + o(y)
    Buf dy((size_t)N * HD, 0.f);
    bwd(A, l, PROJ_O, dy.data(), dx.data(), A.y.data(), HD, C);
    Buf dqr((size_t)N * HD, 0.f), dkr((size_t)N * KD, 0.f), dv((size_t)N * KD, 0.f);
    op.attentionBackward(dqr, dkr, dv, dy, A, shape);
    rope(dqr.data(), N, H, D, seqLen, cosT, sinT, true);
    rope(dkr.data(), N, KV, D, seqLen, cosT, sinT, true);
    Buf dqpre((size_t)N * HD, 0.f), dkpre((size_t)N * KD, 0.f);
    rmsBackward(dqpre.data(), dqr.data(), A.qpre.data(), A.rq.data(), lw.qNorm, N * H, D);
    rmsBackward(dkpre.data(), dkr.data(), A.kpre.data(), A.rk.data(), lw.kNorm, N * KV, D);
    Buf dh1((size_t)N * C, 0.f);
    bwd(A, l, PROJ_Q, dh1.data(), dqpre.data(), A.h1.data(), C, HD);
    bwd(A, l, PROJ_K, dh1.data(), dkpre.data(), A.h1.data(), C, KD);
    bwd(A, l, PROJ_V, dh1.data(), dv.data(), A.h1.data(), C, KD);
    rmsBackward(dx.data(), dh1.data(), A.x.data(), A.r1.data(), lw.inputNorm, N, C);  // dx is now d(layer input)
  }
  return (float)(loss / count);
}

}  // namespace

namespace {

// y[out] = W[out, in] x + s · B (A x): one row per output, rows split over the pool
void matvec(float* y, const float* x, const float* W, const LoraPair& lp, int r, float s, int in, int out, float* la) {
  parallelFor(out, 64, [&](long b, long e) {
    for (long o = b; o < e; o++) y[o] = simd::dot(W + (size_t)o * in, x, in);
  });
  if (lp.A) {
    for (int k = 0; k < r; k++) la[k] = simd::dot(lp.A + (size_t)k * in, x, in);
    for (int o = 0; o < out; o++) {
      float acc = 0.f;
      for (int k = 0; k < r; k++) acc += lp.B[(size_t)o * r + k] * la[k];
      y[o] += s * acc;
    }
  }
}

}  // namespace

int generate(const Qwen3Config& cfg, const Qwen3Weights& w, const Lora& lora, const int32_t* prompt, int nPrompt, int maxNew, const int32_t* stops,
             int nStops, int32_t* out) {
  const int C = cfg.hidden, I = cfg.intermediate, H = cfg.heads, KV = cfg.kvHeads, D = cfg.headDim, V = cfg.vocab, L = cfg.layers;
  const int HD = H * D, KD = KV * D, group = H / KV, half = D / 2, r = lora.rank;
  const float s = lora.scale, eps = cfg.rmsEps, invSqrtD = 1.f / std::sqrt(static_cast<float>(D));
  const int T = nPrompt + maxNew;
  std::vector<Buf> K(L, Buf((size_t)T * KD)), Vc(L, Buf((size_t)T * KD));
  // RoPE tables [T, D/2], angles in double as the training forward computes them
  Buf cosT, sinT;
  ropeTables(T, D, cfg.ropeTheta, cosT, sinT);
  Buf x(C), h(C), q(HD), k(KD), v(KD), y(HD), o(C), g(I), u(I), d(C), la(std::max(r, 1)), rs(std::max(H, KV)), scores(T), logits(V);
  auto lp = [&](int l, int p) -> const LoraPair& { return lora.proj[(size_t)l * NPROJ + p]; };
  auto ropeAt = [&](float* vec, int heads, int pos) {
    const float* c = &cosT[(size_t)pos * half];
    const float* sn = &sinT[(size_t)pos * half];
    for (int hh = 0; hh < heads; hh++) {
      float* a = vec + (size_t)hh * D;
      for (int i = 0; i < half; i++) {
        const float x0 = a[i], x1 = a[i + half];
        a[i] = x0 * c[i] - x1 * sn[i];
        a[i + half] = x1 * c[i] + x0 * sn[i];
      }
    }
  };
  // one token at `pos` through every layer, its K and V cached; the next token's argmax when asked
  auto step = [&](int tok, int pos, bool next) -> int {
    std::memcpy(x.data(), w.embed + (size_t)tok * C, sizeof(float) * C);
    for (int l = 0; l < L; l++) {
      const LayerWeights& lw = w.layer[l];
      float rstd;
      rmsForward(h.data(), &rstd, x.data(), lw.inputNorm, 1, C, eps);
      matvec(q.data(), h.data(), lw.w[PROJ_Q], lp(l, PROJ_Q), r, s, C, HD, la.data());
      matvec(k.data(), h.data(), lw.w[PROJ_K], lp(l, PROJ_K), r, s, C, KD, la.data());
      matvec(v.data(), h.data(), lw.w[PROJ_V], lp(l, PROJ_V), r, s, C, KD, la.data());
      rmsForward(q.data(), rs.data(), q.data(), lw.qNorm, H, D, eps);
      rmsForward(k.data(), rs.data(), k.data(), lw.kNorm, KV, D, eps);
      ropeAt(q.data(), H, pos);
      ropeAt(k.data(), KV, pos);
      std::memcpy(&K[l][(size_t)pos * KD], k.data(), sizeof(float) * KD);
      std::memcpy(&Vc[l][(size_t)pos * KD], v.data(), sizeof(float) * KD);
      std::fill(y.begin(), y.end(), 0.f);
      for (int hh = 0; hh < H; hh++) {
        const int kh = hh / group;
        float mx = -INFINITY;
        for (int t = 0; t <= pos; t++) {
          scores[t] = simd::dot(&q[(size_t)hh * D], &K[l][(size_t)t * KD + (size_t)kh * D], D) * invSqrtD;
          if (scores[t] > mx) mx = scores[t];
        }
        for (int t = 0; t <= pos; t++) scores[t] -= mx;
        simd::expInPlace(scores.data(), pos + 1);
        float sum = 0.f;
        for (int t = 0; t <= pos; t++) sum += scores[t];
        for (int t = 0; t <= pos; t++) simd::axpy(&y[(size_t)hh * D], scores[t] / sum, &Vc[l][(size_t)t * KD + (size_t)kh * D], D);
      }
      matvec(o.data(), y.data(), lw.w[PROJ_O], lp(l, PROJ_O), r, s, HD, C, la.data());
      for (int i = 0; i < C; i++) x[i] += o[i];
      rmsForward(h.data(), &rstd, x.data(), lw.postNorm, 1, C, eps);
      matvec(g.data(), h.data(), lw.w[PROJ_GATE], lp(l, PROJ_GATE), r, s, C, I, la.data());
      matvec(u.data(), h.data(), lw.w[PROJ_UP], lp(l, PROJ_UP), r, s, C, I, la.data());
      for (int i = 0; i < I; i++) g[i] = g[i] * sigmoid(g[i]) * u[i];
      matvec(d.data(), g.data(), lw.w[PROJ_DOWN], lp(l, PROJ_DOWN), r, s, I, C, la.data());
      for (int i = 0; i < C; i++) x[i] += d[i];
    }
    if (!next) return -1;
    float rstd;
    rmsForward(h.data(), &rstd, x.data(), w.finalNorm, 1, C, eps);
    parallelFor(V, 1024, [&](long b, long e) {
      for (long t = b; t < e; t++) logits[t] = simd::dot(w.embed + (size_t)t * C, h.data(), C);
    });
    int best = 0;
    for (int t = 1; t < V; t++)
      if (logits[t] > logits[best]) best = t;
    return best;
  };
  for (int pos = 0; pos + 1 < nPrompt; pos++) step(prompt[pos], pos, false);
  int next = step(prompt[nPrompt - 1], nPrompt - 1, true);
  int n = 0;
  while (n < maxNew) {
    out[n++] = next;
    bool stop = false;
    for (int i = 0; i < nStops; i++) stop = stop || stops[i] == next;
    if (stop || n == maxNew) break;
    next = step(next, nPrompt + n - 1, true);
  }
  return n;
}

float forwardBackward(const Qwen3Config& cfg, const Qwen3Weights& w, Lora& lora, const int32_t* ids, const uint8_t* mask, int batch, int seqLen,
                      bool backward, float* logits, int* counted) {
  return run(kFast, cfg, w, lora, ids, mask, batch, seqLen, backward, logits, counted);
}

float forwardBackward_ref(const Qwen3Config& cfg, const Qwen3Weights& w, Lora& lora, const int32_t* ids, const uint8_t* mask, int batch,
                          int seqLen, bool backward, float* logits, int* counted) {
  return run(kRef, cfg, w, lora, ids, mask, batch, seqLen, backward, logits, counted);
}

}  // namespace ft
