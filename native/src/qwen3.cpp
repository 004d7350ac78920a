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
// vocabulary one row at a time (never a T x V tensor in training).
// Reductions run in a fixed order, so results do not depend on anything but
// the inputs.
#include "qwen3.h"

#include <cmath>
#include <cstring>
#include <vector>

namespace ft {
namespace {

using Buf = std::vector<float>;

// y[N, out] = x[N, in] W[out, in]^T + s * (x A^T) B^T;  la[N, r] = x A^T
void linearForward(float* y, float* la, const float* x, const float* W, const LoraPair& lp, int r, float s, int N, int in, int out) {
  for (int n = 0; n < N; n++) {
    const float* xr = x + (size_t)n * in;
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
        for (int i = 0; i < in; i++) acc += xr[i] * ar[i];
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
void linearBackward(float* dx, const float* dy, const float* x, const float* la, const float* W, LoraPair& lp, int r, float s, int N, int in,
                    int out) {
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
      const float* xr = x + (size_t)n * in;
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
          dxr[i] += g * ar[i];
        }
      }
    }
  }
}

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

inline float sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }

struct LayerActs {
  Buf x, r1, h1, la[NPROJ], qpre, rq, qn, kpre, rk, kn, qr, kr, v, P, y, xmid, r2, h2, g, u, a;
};

}  // namespace

float forwardBackward(const Qwen3Config& cfg, const Qwen3Weights& w, Lora& lora, const int32_t* ids, const uint8_t* mask, int batch, int seqLen,
                      bool backward, float* logits, int* counted) {
  const int N = batch * seqLen, C = cfg.hidden, I = cfg.intermediate, H = cfg.heads, KV = cfg.kvHeads, D = cfg.headDim, V = cfg.vocab;
  const int HD = H * D, KD = KV * D, r = lora.rank, group = H / KV;
  const float s = lora.scale, eps = cfg.rmsEps, invSqrtD = 1.f / std::sqrt(static_cast<float>(D));
  auto lp = [&](int l, int p) -> LoraPair& { return lora.proj[(size_t)l * NPROJ + p]; };

  // RoPE tables [seqLen, D/2], angles in double as the reference computes them
  std::vector<float> cosT((size_t)seqLen * D / 2), sinT((size_t)seqLen * D / 2);
  for (int t = 0; t < seqLen; t++)
    for (int i = 0; i < D / 2; i++) {
      const double inv = 1.0 / std::pow((double)cfg.ropeTheta, (2.0 * i) / D);
      cosT[(size_t)t * D / 2 + i] = (float)std::cos(t * inv);
      sinT[(size_t)t * D / 2 + i] = (float)std::sin(t * inv);
    }

  std::vector<LayerActs> acts(cfg.layers);
  Buf x((size_t)N * C);  // [N, C] residual stream
  for (int n = 0; n < N; n++) std::memcpy(&x[(size_t)n * C], w.embed + (size_t)ids[n] * C, sizeof(float) * C);

  for (int l = 0; l < cfg.layers; l++) {
    const LayerWeights& lw = w.layer[l];
    LayerActs& A = acts[l];
    A.x = x;
    A.r1.resize(N); A.h1.resize((size_t)N * C);
    rmsForward(A.h1.data(), A.r1.data(), x.data(), lw.inputNorm, N, C, eps);
    for (int p = 0; p < NPROJ; p++) A.la[p].resize((size_t)N * r);
    A.qpre.resize((size_t)N * HD); A.kpre.resize((size_t)N * KD); A.v.resize((size_t)N * KD);
    linearForward(A.qpre.data(), A.la[PROJ_Q].data(), A.h1.data(), lw.w[PROJ_Q], lp(l, PROJ_Q), r, s, N, C, HD);
    linearForward(A.kpre.data(), A.la[PROJ_K].data(), A.h1.data(), lw.w[PROJ_K], lp(l, PROJ_K), r, s, N, C, KD);
    linearForward(A.v.data(), A.la[PROJ_V].data(), A.h1.data(), lw.w[PROJ_V], lp(l, PROJ_V), r, s, N, C, KD);
    A.rq.resize((size_t)N * H); A.qn.resize((size_t)N * HD); A.rk.resize((size_t)N * KV); A.kn.resize((size_t)N * KD);
    rmsForward(A.qn.data(), A.rq.data(), A.qpre.data(), lw.qNorm, N * H, D, eps);
    rmsForward(A.kn.data(), A.rk.data(), A.kpre.data(), lw.kNorm, N * KV, D, eps);
    A.qr = A.qn; A.kr = A.kn;
    rope(A.qr.data(), N, H, D, seqLen, cosT, sinT, false);
    rope(A.kr.data(), N, KV, D, seqLen, cosT, sinT, false);
    // attention: P [batch, H, T, T], y [N, H*D]
    A.P.assign((size_t)batch * H * seqLen * seqLen, 0.f);
    A.y.assign((size_t)N * HD, 0.f);
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
    Buf o((size_t)N * C);
    linearForward(o.data(), A.la[PROJ_O].data(), A.y.data(), lw.w[PROJ_O], lp(l, PROJ_O), r, s, N, HD, C);
    for (size_t i = 0; i < x.size(); i++) x[i] += o[i];
    A.xmid = x;
    A.r2.resize(N); A.h2.resize((size_t)N * C);
    rmsForward(A.h2.data(), A.r2.data(), x.data(), lw.postNorm, N, C, eps);
    A.g.resize((size_t)N * I); A.u.resize((size_t)N * I); A.a.resize((size_t)N * I);
    linearForward(A.g.data(), A.la[PROJ_GATE].data(), A.h2.data(), lw.w[PROJ_GATE], lp(l, PROJ_GATE), r, s, N, C, I);
    linearForward(A.u.data(), A.la[PROJ_UP].data(), A.h2.data(), lw.w[PROJ_UP], lp(l, PROJ_UP), r, s, N, C, I);
    for (size_t i = 0; i < A.a.size(); i++) A.a[i] = A.g[i] * sigmoid(A.g[i]) * A.u[i];
    Buf d((size_t)N * C);
    linearForward(d.data(), A.la[PROJ_DOWN].data(), A.a.data(), lw.w[PROJ_DOWN], lp(l, PROJ_DOWN), r, s, N, I, C);
    for (size_t i = 0; i < x.size(); i++) x[i] += d[i];
  }
  Buf rf(N), hf((size_t)N * C);
  rmsForward(hf.data(), rf.data(), x.data(), w.finalNorm, N, C, eps);

  // fused head + cross-entropy, one row of V logits at a time
  int count = 0;
  for (int n = 0; n < N; n++)
    if (n % seqLen < seqLen - 1 && mask[n + 1]) count++;
  if (counted) *counted = count;
  Buf dhf((size_t)N * C, 0.f);
  Buf row(V);
  double loss = 0.0;
  for (int n = 0; n < N; n++) {
    const bool target = n % seqLen < seqLen - 1 && mask[n + 1];
    if (!target && !logits) continue;
    const float* hr = &hf[(size_t)n * C];
    float mx = -INFINITY;
    for (int v = 0; v < V; v++) {
      const float* er = w.embed + (size_t)v * C;
      float acc = 0.f;
      for (int c = 0; c < C; c++) acc += hr[c] * er[c];
      row[v] = acc;
      if (acc > mx) mx = acc;
    }
    if (logits) std::memcpy(logits + (size_t)n * V, row.data(), sizeof(float) * V);
    if (!target) continue;
    double sum = 0.0;
    for (int v = 0; v < V; v++) sum += std::exp((double)row[v] - mx);
    const double lse = mx + std::log(sum);
    const int y = ids[n + 1];
    loss += lse - row[y];
    if (!backward) continue;
    float* dh = &dhf[(size_t)n * C];
    for (int v = 0; v < V; v++) {
      float g = static_cast<float>(std::exp((double)row[v] - lse) / count);
      if (v == y) g -= 1.f / static_cast<float>(count);
      const float* er = w.embed + (size_t)v * C;
      for (int c = 0; c < C; c++) dh[c] += g * er[c];
    }
  }
  if (!backward || count == 0) return count ? (float)(loss / count) : 0.f;

  Buf dx((size_t)N * C, 0.f);
  rmsBackward(dx.data(), dhf.data(), x.data(), rf.data(), w.finalNorm, N, C);
  for (int l = cfg.layers - 1; l >= 0; l--) {
    const LayerWeights& lw = w.layer[l];
    LayerActs& A = acts[l];
    // MLP: x_out = xmid + down(a)
    Buf da((size_t)N * I, 0.f);
    linearBackward(da.data(), dx.data(), A.a.data(), A.la[PROJ_DOWN].data(), lw.w[PROJ_DOWN], lp(l, PROJ_DOWN), r, s, N, I, C);
    Buf dg((size_t)N * I), du((size_t)N * I);
    for (size_t i = 0; i < da.size(); i++) {
      const float sg = sigmoid(A.g[i]);
      du[i] = da[i] * A.g[i] * sg;
      dg[i] = da[i] * A.u[i] * sg * (1.f + A.g[i] * (1.f - sg));
    }
    Buf dh2((size_t)N * C, 0.f);
    linearBackward(dh2.data(), dg.data(), A.h2.data(), A.la[PROJ_GATE].data(), lw.w[PROJ_GATE], lp(l, PROJ_GATE), r, s, N, C, I);
    linearBackward(dh2.data(), du.data(), A.h2.data(), A.la[PROJ_UP].data(), lw.w[PROJ_UP], lp(l, PROJ_UP), r, s, N, C, I);
    rmsBackward(dx.data(), dh2.data(), A.xmid.data(), A.r2.data(), lw.postNorm, N, C);  // dx is now d(xmid)
    // attention: xmid = x + o(y)
    Buf dy((size_t)N * HD, 0.f);
    linearBackward(dy.data(), dx.data(), A.y.data(), A.la[PROJ_O].data(), lw.w[PROJ_O], lp(l, PROJ_O), r, s, N, HD, C);
    Buf dqr((size_t)N * HD, 0.f), dkr((size_t)N * KD, 0.f), dv((size_t)N * KD, 0.f);
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
    rope(dqr.data(), N, H, D, seqLen, cosT, sinT, true);
    rope(dkr.data(), N, KV, D, seqLen, cosT, sinT, true);
    Buf dqpre((size_t)N * HD, 0.f), dkpre((size_t)N * KD, 0.f);
    rmsBackward(dqpre.data(), dqr.data(), A.qpre.data(), A.rq.data(), lw.qNorm, N * H, D);
    rmsBackward(dkpre.data(), dkr.data(), A.kpre.data(), A.rk.data(), lw.kNorm, N * KV, D);
    Buf dh1((size_t)N * C, 0.f);
    linearBackward(dh1.data(), dqpre.data(), A.h1.data(), A.la[PROJ_Q].data(), lw.w[PROJ_Q], lp(l, PROJ_Q), r, s, N, C, HD);
    linearBackward(dh1.data(), dkpre.data(), A.h1.data(), A.la[PROJ_K].data(), lw.w[PROJ_K], lp(l, PROJ_K), r, s, N, C, KD);
    linearBackward(dh1.data(), dv.data(), A.h1.data(), A.la[PROJ_V].data(), lw.w[PROJ_V], lp(l, PROJ_V), r, s, N, C, KD);
    rmsBackward(dx.data(), dh1.data(), A.x.data(), A.r1.data(), lw.inputNorm, N, C);  // dx is now d(layer input)
  }
  return (float)(loss / count);
}

}  // namespace ft
