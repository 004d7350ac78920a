// Causal grouped-query flash attention: forward y and lse, backward dq, dk, dv against a CPU
// reference written straight from the definition (double accumulation, the full softmax of each
// row at once, no tiling), on the same fp16- (or bf16-) rounded inputs. Bound 1e-2: the operands
// are fp16 and so are P and dS inside the kernels; 2e-2 for bf16, whose P and dS keep 8 bits of
// mantissa instead of 11 (each rounding 2^-9 relative, not 2^-12).
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "../attention.cuh"
#include "harness.h"

using namespace ft::test;

namespace {

struct Shape {
  int B, T, H, KV, D;
};

std::string text(const Shape& s) {
  return "B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) + " H=" + std::to_string(s.H) + " KV=" + std::to_string(s.KV) +
         " D=" + std::to_string(s.D);
}

struct Ref {
  std::vector<double> y, lse, dq, dk, dv;
};

/**
 * The definition, for the rows t with wanted(t) of every sequence and head: scores, softmax, y, lse,
 * then Di = sum_j P_j dP_j, dS, dq; dk and dv get the contributions of those rows to keys j >= keyFrom
 * (complete for such keys when every row t >= keyFrom is wanted).
 */
template <typename Wanted>
Ref reference(const Shape& s, const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
              const std::vector<float>& dy, Wanted wanted, int keyFrom) {
  const int B = s.B, T = s.T, H = s.H, KV = s.KV, D = s.D, group = H / KV;
  const std::size_t N = static_cast<std::size_t>(B) * T;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  Ref r;
  r.y.assign(N * H * D, 0.0);
  r.dq.assign(N * H * D, 0.0);
  r.lse.assign(static_cast<std::size_t>(B) * H * T, 0.0);
  r.dk.assign(N * KV * D, 0.0);
  r.dv.assign(N * KV * D, 0.0);
  std::vector<double> p(T), dp(T);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const int kh = h / group;
      for (int t = 0; t < T; ++t) {
        if (!wanted(t)) continue;
        const std::size_t qi = ((static_cast<std::size_t>(b) * T + t) * H + h) * D;
        const float* qr = &q[qi];
        const float* gr = &dy[qi];
        auto kvRow = [&](int j) { return ((static_cast<std::size_t>(b) * T + j) * KV + kh) * D; };
        double m = -INFINITY;
        for (int j = 0; j <= t; ++j) {
          const float* kr = &k[kvRow(j)];
          double acc = 0;
          for (int d = 0; d < D; ++d) acc += static_cast<double>(qr[d]) * kr[d];
          p[j] = acc * scale;
          m = std::fmax(m, p[j]);
        }
        double sum = 0;
        for (int j = 0; j <= t; ++j) sum += (p[j] = std::exp(p[j] - m));
        for (int j = 0; j <= t; ++j) p[j] /= sum;
        r.lse[(static_cast<std::size_t>(b) * H + h) * T + t] = m + std::log(sum);
        double* yr = &r.y[qi];
        double delta = 0;
        for (int j = 0; j <= t; ++j) {
          const float* vr = &v[kvRow(j)];
          double acc = 0;
          for (int d = 0; d < D; ++d) {
            yr[d] += p[j] * vr[d];
            acc += static_cast<double>(gr[d]) * vr[d];
          }
          dp[j] = acc;
          delta += p[j] * acc;
        }
        double* dqr = &r.dq[qi];
        for (int j = 0; j <= t; ++j) {
          const double ds = p[j] * (dp[j] - delta) * scale;
          const float* kr = &k[kvRow(j)];
          for (int d = 0; d < D; ++d) dqr[d] += ds * kr[d];
          if (j < keyFrom) continue;
          double* dkr = &r.dk[kvRow(j)];
          double* dvr = &r.dv[kvRow(j)];
          for (int d = 0; d < D; ++d) {
            dkr[d] += ds * qr[d];
            dvr[d] += p[j] * gr[d];
          }
        }
      }
    }
  return r;
}

/** Fills a device buffer with all-ones bits: NaN as fp32 and as fp16, so an unwritten output shows. */
template <typename T>
void poison(Dev<T>& d) {
  FT_CUDA(cudaMemset(d.p, 0xFF, d.n * sizeof(T)));
}

/**
 * Runs forward and backward on random inputs and compares with the reference. edge = 0: every row;
 * edge > 0: only the first and last `edge` rows of each sequence (y, lse, dq) and the last `edge`
 * keys (dk, dv), which need no other rows. timed: GPU times and TFLOP/s in the notes.
 */
template <typename E = __half>
void runCase(std::vector<Row>& rows, const Shape& s, int edge, bool timed, std::uint64_t seed) {
  if (!operandHere<E>(rows)) return;
  const int B = s.B, T = s.T, H = s.H, KV = s.KV, D = s.D;
  const std::size_t N = static_cast<std::size_t>(B) * T;
  const auto q = roundOperand<E>(randomVector(N * H * D, seed));
  const auto k = roundOperand<E>(randomVector(N * KV * D, seed + 1));
  const auto v = roundOperand<E>(randomVector(N * KV * D, seed + 2));
  const auto dy = roundOperand<E>(randomVector(N * H * D, seed + 3));
  const double bound = std::is_same_v<E, bf16> ? 2e-2 : 1e-2;

  Dev<E> dQ(toOperand<E>(q)), dK(toOperand<E>(k)), dV(toOperand<E>(v)), dDY(toOperand<E>(dy)), dY(N * H * D);
  Dev<float> dL(static_cast<std::size_t>(B) * H * T), gq(N * H * D), gk(N * KV * D), gv(N * KV * D);
  Dev<float> ws(ft::cuda::attentionBackwardWorkspace(B, T, H, KV, D));
  poison(dY), poison(dL), poison(gq), poison(gk), poison(gv), poison(ws);
  auto fwd = [&] { ft::cuda::attentionForward(dQ.p, dK.p, dV.p, dY.p, dL.p, B, T, H, KV, D); };
  auto bwd = [&] { ft::cuda::attentionBackward(dQ.p, dK.p, dV.p, dY.p, dDY.p, dL.p, gq.p, gk.p, gv.p, ws.p, B, T, H, KV, D); };
  double fwdMs = -1, bwdMs = -1;
  if (timed) {
    fwdMs = gpuMs(fwd);
    bwdMs = gpuMs(bwd);
  } else {
    fwd();
    bwd();
  }
  FT_CUDA(cudaDeviceSynchronize());
  const auto y = toFloat(dY.download());
  const auto lse = dL.download();
  const auto dq = gq.download(), dk = gk.download(), dv = gv.download();

  const auto wanted = [&](int t) { return edge == 0 || t < edge || t >= T - edge; };
  const int keyFrom = edge == 0 ? 0 : (T - edge > 0 ? T - edge : 0);
  Ref ref;
  const double cpu = cpuMs([&] { ref = reference(s, q, k, v, dy, wanted, keyFrom); });

  std::vector<float> gy, ry, gl, rl, gdq, rdq, gdk, rdk, gdv, rdv;
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      if (!wanted(t)) continue;
      for (int h = 0; h < H; ++h) {
        const std::size_t qi = ((static_cast<std::size_t>(b) * T + t) * H + h) * D;
        for (int d = 0; d < D; ++d) {
          gy.push_back(y[qi + d]), ry.push_back(static_cast<float>(ref.y[qi + d]));
          gdq.push_back(dq[qi + d]), rdq.push_back(static_cast<float>(ref.dq[qi + d]));
        }
        const std::size_t li = (static_cast<std::size_t>(b) * H + h) * T + t;
        gl.push_back(lse[li]), rl.push_back(static_cast<float>(ref.lse[li]));
      }
    }
  for (int b = 0; b < B; ++b)
    for (int j = keyFrom; j < T; ++j)
      for (int i = 0; i < KV * D; ++i) {
        const std::size_t ki = (static_cast<std::size_t>(b) * T + j) * KV * D + i;
        gdk.push_back(dk[ki]), rdk.push_back(static_cast<float>(ref.dk[ki]));
        gdv.push_back(dv[ki]), rdv.push_back(static_cast<float>(ref.dv[ki]));
      }

  const std::string sh = text(s) + (std::is_same_v<E, bf16> ? " bf16" : "");
  const std::string rowsText = edge == 0 ? "" : " (rows t < " + std::to_string(edge) + " and t >= T-" + std::to_string(edge) + ")";
  const std::string keysText = edge == 0 ? "" : " (keys t >= T-" + std::to_string(edge) + ")";
  std::string fwdNote, bwdNote;
  if (timed) {
    const double fwdFlops = 4.0 * B * H * static_cast<double>(T) * T * D / 2;  // QK^T and PV, causal half
    const double bwdFlops = 2.5 * fwdFlops;                                    // the 5 products of a backward
    char buf[200];
    std::snprintf(buf, sizeof buf, "fwd %.2f TFLOP/s", fwdFlops / fwdMs / 1e9);
    fwdNote = buf;
    std::snprintf(buf, sizeof buf, "bwd %.2f TFLOP/s (5-product count; the kernels do 7); fwd+bwd %.3f ms, %.2f TFLOP/s", bwdFlops / bwdMs / 1e9,
                  fwdMs + bwdMs, (fwdFlops + bwdFlops) / (fwdMs + bwdMs) / 1e9);
    bwdNote = buf;
  }
  rows.push_back({"fwd y " + sh + rowsText, relError(gy, ry), bound, fwdMs, cpu, fwdNote});
  rows.push_back({"fwd lse " + sh + rowsText, relError(gl, rl), bound, -1, -1, ""});
  rows.push_back({"bwd dq " + sh + rowsText, relError(gdq, rdq), bound, bwdMs, -1, bwdNote});
  rows.push_back({"bwd dk " + sh + keysText, relError(gdk, rdk), bound, -1, -1, ""});
  rows.push_back({"bwd dv " + sh + keysText, relError(gdv, rdv), bound, -1, -1, ""});

  if (!timed) {  // no atomics: a second backward gives the same bits
    bwd();
    FT_CUDA(cudaDeviceSynchronize());
    const std::size_t diff = mismatches(gq.download(), dq) + mismatches(gk.download(), dk) + mismatches(gv.download(), dv);
    rows.push_back({"bwd twice, " + sh + " (bits differing)", static_cast<double>(diff), 0, -1, -1, ""});
  }
}

}  // namespace

FT_TEST("attention", "attention odd T") { runCase(rows, {2, 37, 4, 2, 64}, 0, false, 101); }

FT_TEST("attention", "attention T=300 D=128") { runCase(rows, {1, 300, 8, 2, 128}, 0, false, 202); }

FT_TEST("attention", "attention T=1 and T=17") {
  runCase(rows, {3, 1, 2, 1, 128}, 0, false, 303);
  runCase(rows, {2, 17, 6, 6, 64}, 0, false, 304);
}

FT_TEST("attention", "attention Qwen3-4B") { runCase(rows, {2, 2048, 32, 8, 128}, 64, true, 404); }

FT_TEST("attention", "attention bf16: odd T, T=300 D=128, T=1") {
  runCase<bf16>(rows, {2, 37, 4, 2, 64}, 0, false, 111);
  runCase<bf16>(rows, {1, 300, 8, 2, 128}, 0, false, 212);
  runCase<bf16>(rows, {3, 1, 2, 1, 128}, 0, false, 313);
}

FT_TEST("attention", "attention Qwen3-4B, bf16") { runCase<bf16>(rows, {2, 2048, 32, 8, 128}, 64, true, 414); }

FT_TEST("attention", "attention shape checks") {
  Dev<__half> a(64 * 128);
  Dev<float> f(64 * 128);
  int accepted = 0;
  const auto expectThrow = [&](int B, int T, int H, int KV, int D) {
    try {
      ft::cuda::attentionForward(a.p, a.p, a.p, a.p, f.p, B, T, H, KV, D);
      ++accepted;
    } catch (const ft::Error&) {
    }
    try {
      ft::cuda::attentionBackward(a.p, a.p, a.p, a.p, a.p, f.p, f.p, f.p, f.p, f.p, B, T, H, KV, D);
      ++accepted;
    } catch (const ft::Error&) {
    }
  };
  expectThrow(1, 4, 2, 1, 96);  // D
  expectThrow(1, 4, 6, 4, 64);  // H % KV
  expectThrow(1, 0, 2, 1, 64);  // T
  expectThrow(0, 4, 2, 1, 64);  // B
  rows.push_back({"bad D, H % KV, T = 0, B = 0 (calls not rejected)", static_cast<double>(accepted), 0, -1, -1, ""});
}
