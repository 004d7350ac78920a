// GGUF block quantizers (see gguf_quant.h). Layouts, per block:
//   Q8_0  d:f16, q[32]:i8                                    34 bytes / 32 values
//   Q4_K  d:f16, dmin:f16, scales[12], q[128] (4-bit)        144 bytes / 256 values
//   Q5_K  d:f16, dmin:f16, scales[12], qh[32], q[128]        176 bytes / 256 values
//   Q6_K  ql[128], qh[64], scales[16]:i8, d:f16              210 bytes / 256 values
// Q4_K/Q5_K: eight sub-blocks of 32 with a 6-bit scale and a 6-bit min each, packed into 12
// bytes; value = d·scale·q − dmin·min. Q6_K: sixteen sub-blocks of 16 with an 8-bit signed scale;
// value = d·scale·(q − 32).
#include "gguf_quant.h"

#include <cmath>
#include <cstring>

#include "check.h"
#include "threads.h"

namespace gguf {
namespace {

constexpr float kGroupMaxEps = 1e-15f;

// Round half to even, as ggml's nearest_int, for |v| < 2^22 (every caller stays far inside):
// adding 1.5·2^23 leaves the rounded integer in the low mantissa bits, offset by 2^22. Inline
// arithmetic, where nearbyintf is a libm call on the baseline x86-64 ISA.
inline int nearest(float v) {
  const float shifted = v + 12582912.f;
  std::int32_t bits;
  std::memcpy(&bits, &shifted, 4);
  return (bits & 0x007fffff) - 0x00400000;
}

// Round half away from zero (roundf) for |v| < 2^31, inline: v − trunc(v) is exact.
inline float roundAway(float v) {
  const float t = static_cast<float>(static_cast<std::int32_t>(v));
  const float step = std::fabs(v - t) >= 0.5f ? 1.f : 0.f;  // branch-free: a select, not a jump
  return t + std::copysign(step, v);
}
inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

inline void put16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v & 0xff);
  p[1] = static_cast<std::uint8_t>(v >> 8);
}
inline std::uint16_t get16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }

// Fits n values to levels 0..nmax with a scale and a min (value ≈ scale·l − min, min ≤ 0 kept at
// zero when all values are positive), by weighted least squares over nstep+1 candidate scales
// around nmax/(max−min). Returns the scale; *negMin gets −min (≥ 0).
float fitScaleMin(int n, int nmax, const float* x, const float* w, std::uint8_t* L, float* negMin, std::uint8_t* Laux,
                  float rmin, float rdelta, int nstep) {
  float lo = x[0];
  float hi = x[0];
  float sumW = w[0];
  float sumX = sumW * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < lo) lo = x[i];
    if (x[i] > hi) hi = x[i];
    const float wi = w[i];
    sumW += wi;
    sumX += wi * x[i];
  }
  if (lo > 0) lo = 0;
  if (hi == lo) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *negMin = -lo;
    return 0.f;
  }
  float iscale = static_cast<float>(nmax) / (hi - lo);
  float scale = 1 / iscale;
  float bestErr = 0;
  for (int i = 0; i < n; ++i) {
    const int l = clampi(nearest(iscale * (x[i] - lo)), 0, nmax);
    L[i] = static_cast<std::uint8_t>(l);
    float diff = scale * static_cast<float>(L[i]) + lo - x[i];
    diff = diff * diff;
    bestErr += w[i] * diff;
  }
  for (int step = 0; step <= nstep; ++step) {
    iscale = (rmin + rdelta * static_cast<float>(step) + static_cast<float>(nmax)) / (hi - lo);
    float sumL = 0, sumL2 = 0, sumXL = 0;
    for (int i = 0; i < n; ++i) {
      const int l = clampi(nearest(iscale * (x[i] - lo)), 0, nmax);
      Laux[i] = static_cast<std::uint8_t>(l);
      const float wi = w[i];
      const float lf = static_cast<float>(l);
      sumL += wi * lf;
      sumL2 += wi * lf * lf;
      sumXL += wi * lf * x[i];
    }
    const float det = sumW * sumL2 - sumL * sumL;
    if (det > 0) {
      float thisScale = (sumW * sumXL - sumX * sumL) / det;
      float thisMin = (sumL2 * sumX - sumL * sumXL) / det;
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = sumXL / sumL2;
      }
      float err = 0;
      for (int i = 0; i < n; ++i) {
        float diff = thisScale * static_cast<float>(Laux[i]) + thisMin - x[i];
        diff = diff * diff;
        err += w[i] * diff;
      }
      if (err < bestErr) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        bestErr = err;
        scale = thisScale;
        lo = thisMin;
      }
    }
  }
  *negMin = -lo;
  return scale;
}

// Fits n values to signed levels −nmax..nmax−1 (stored + nmax) with one scale, weighting each
// value by its square, trying 19 scales around −nmax/max (max: the value of largest magnitude).
template <int n, int nmax>
float fitSymmetric(const float* x, std::int8_t* L) {
  float max = 0;
  float amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  // the weights (x²) and weighted values (x²·x), computed once: the same products, in the same
  // order, as recomputing them for every candidate scale
  float w[n];
  float wx[n];
  for (int i = 0; i < n; ++i) {
    w[i] = x[i] * x[i];
    wx[i] = w[i] * x[i];
  }
  const float fn = static_cast<float>(nmax);
  float iscale = -fn / max;
  float sumLX = 0;
  float sumL2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = clampi(nearest(iscale * x[i]), -nmax, nmax - 1);
    L[i] = static_cast<std::int8_t>(l + nmax);
    const float lf = static_cast<float>(l);
    sumLX += wx[i] * lf;
    sumL2 += w[i] * lf * lf;
  }
  float scale = sumL2 != 0 ? sumLX / sumL2 : 0.0f;
  float best = scale * sumLX;
  // The 18 candidate scales depend only on the largest value, not on the choices before them:
  // their sums all in one pass over the values. Each candidate's two sums still add in value
  // order (the same roundings as one candidate at a time), but the 36 independent chains
  // overlap in the CPU. (fitScaleMin cannot do this: there a better candidate moves the min
  // that the next candidates start from.)
  constexpr int kSteps = 18;
  float cand[kSteps], cLX[kSteps] = {}, cL2[kSteps] = {};
  for (int c = 0; c < kSteps; ++c) {
    const int step = c < 9 ? c - 9 : c - 8;  // −9..−1, 1..9
    cand[c] = -(fn + 0.1f * static_cast<float>(step)) / max;
  }
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < kSteps; ++c) {
      const float lf = static_cast<float>(clampi(nearest(cand[c] * x[i]), -nmax, nmax - 1));
      cLX[c] += wx[i] * lf;
      cL2[c] += w[i] * lf * lf;
    }
  // the choice, in the order the candidates are tried
  for (int c = 0; c < kSteps; ++c)
    if (cL2[c] > 0 && cLX[c] * cLX[c] > best * cL2[c]) {
      for (int i = 0; i < n; ++i) L[i] = static_cast<std::int8_t>(nmax + clampi(nearest(cand[c] * x[i]), -nmax, nmax - 1));
      scale = cLX[c] / cL2[c];
      best = scale * cLX[c];
    }
  return scale;
}

// the 6-bit scale and min of sub-block j from the 12 packed bytes
inline void scaleMin(int j, const std::uint8_t* q, std::uint8_t* sc, std::uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

void quantizeQ8_0(const float* x, std::size_t nb, std::uint8_t* y) {
  for (std::size_t b = 0; b < nb; ++b, x += kQK8_0, y += 34) {
    float amax = 0;
    for (std::size_t j = 0; j < kQK8_0; ++j) {
      const float a = std::fabs(x[j]);
      amax = a > amax ? a : amax;
    }
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    put16(y, fp16(d));
    for (std::size_t j = 0; j < kQK8_0; ++j) y[2 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(roundAway(x[j] * id)));
  }
}

// Q4_K and Q5_K share the scale fitting; `bits` is 4 or 5.
void quantizeK(const float* x, std::size_t nb, std::uint8_t* y, int bits) {
  const int nmax = (1 << bits) - 1;
  const float rmin = bits == 4 ? -1.f : -0.5f;
  const int nstep = bits == 4 ? 20 : 15;
  const std::size_t blockSize = bits == 4 ? 144 : 176;
  std::uint8_t L[kQK_K];
  std::uint8_t Laux[32];
  float weights[32];
  float mins[8];
  float scales[8];
  for (std::size_t b = 0; b < nb; ++b, x += kQK_K, y += blockSize) {
    std::memset(y, 0, blockSize);
    std::uint8_t* packed = y + 4;
    float maxScale = 0;
    float maxMin = 0;
    for (int j = 0; j < 8; ++j) {
      const float* xs = x + 32 * j;
      float sumX2 = 0;
      for (int l = 0; l < 32; ++l) sumX2 += xs[l] * xs[l];
      const float av = std::sqrt(sumX2 / 32);
      for (int l = 0; l < 32; ++l) weights[l] = av + std::fabs(xs[l]);
      scales[j] = fitScaleMin(32, nmax, xs, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep);
      if (scales[j] > maxScale) maxScale = scales[j];
      if (mins[j] > maxMin) maxMin = mins[j];
    }
    const float invScale = maxScale > 0 ? 63.f / maxScale : 0.f;
    const float invMin = maxMin > 0 ? 63.f / maxMin : 0.f;
    for (int j = 0; j < 8; ++j) {
      // ggml stores nearest_int(...) in a byte before clamping to 63
      std::uint8_t ls = static_cast<std::uint8_t>(nearest(invScale * scales[j]));
      std::uint8_t lm = static_cast<std::uint8_t>(nearest(invMin * mins[j]));
      if (ls > 63) ls = 63;
      if (lm > 63) lm = 63;
      if (j < 4) {
        packed[j] = ls;
        packed[j + 4] = lm;
      } else {
        packed[j + 4] = static_cast<std::uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
        packed[j - 4] = static_cast<std::uint8_t>(packed[j - 4] | ((ls >> 4) << 6));
        packed[j] = static_cast<std::uint8_t>(packed[j] | ((lm >> 4) << 6));
      }
    }
    const std::uint16_t dh = fp16(maxScale / 63.f);
    const std::uint16_t mh = fp16(maxMin / 63.f);
    put16(y, dh);
    put16(y + 2, mh);
    for (int j = 0; j < 8; ++j) {
      std::uint8_t sc, m;
      scaleMin(j, packed, &sc, &m);
      const float d = fromFp16(dh) * static_cast<float>(sc);
      if (d == 0) continue;
      const float dm = fromFp16(mh) * static_cast<float>(m);
      for (int i = 0; i < 32; ++i) L[32 * j + i] = static_cast<std::uint8_t>(clampi(nearest((x[32 * j + i] + dm) / d), 0, nmax));
    }
    if (bits == 4) {
      std::uint8_t* q = y + 16;
      for (std::size_t j = 0; j < kQK_K; j += 64, q += 32)
        for (int l = 0; l < 32; ++l) q[l] = static_cast<std::uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    } else {
      std::uint8_t* qh = y + 16;
      std::uint8_t* ql = y + 48;
      int m1 = 1, m2 = 2;
      for (std::size_t j = 0; j < kQK_K; j += 64, ql += 32, m1 <<= 2, m2 <<= 2)
        for (int l = 0; l < 32; ++l) {
          int l1 = L[j + l];
          int l2 = L[j + l + 32];
          if (l1 > 15) {
            l1 -= 16;
            qh[l] = static_cast<std::uint8_t>(qh[l] | m1);
          }
          if (l2 > 15) {
            l2 -= 16;
            qh[l] = static_cast<std::uint8_t>(qh[l] | m2);
          }
          ql[l] = static_cast<std::uint8_t>(l1 | (l2 << 4));
        }
    }
  }
}

void quantizeQ6_K(const float* x, std::size_t nb, std::uint8_t* y) {
  std::int8_t L[kQK_K];
  float scales[16];
  for (std::size_t b = 0; b < nb; ++b, x += kQK_K, y += 210) {
    std::memset(y, 0, 210);
    std::uint8_t* ql = y;
    std::uint8_t* qh = y + 128;
    std::int8_t* sc = reinterpret_cast<std::int8_t*>(y + 192);
    float maxScale = 0;
    float maxAbs = 0;
    for (int j = 0; j < 16; ++j) {
      scales[j] = fitSymmetric<16, 32>(x + 16 * j, L + 16 * j);
      const float a = std::fabs(scales[j]);
      if (a > maxAbs) {
        maxAbs = a;
        maxScale = scales[j];
      }
    }
    if (maxAbs < kGroupMaxEps) continue;  // all zero: the block stays zero, d = 0
    const float iscale = -128.f / maxScale;
    const std::uint16_t dh = fp16(1 / iscale);
    put16(y + 208, dh);
    for (int j = 0; j < 16; ++j) {
      const int v = nearest(iscale * scales[j]);
      sc[j] = static_cast<std::int8_t>(v < 127 ? v : 127);
    }
    for (int j = 0; j < 16; ++j) {
      const float d = fromFp16(dh) * static_cast<float>(sc[j]);
      if (d == 0) continue;
      for (int i = 0; i < 16; ++i) L[16 * j + i] = static_cast<std::int8_t>(clampi(nearest(x[16 * j + i] / d), -32, 31) + 32);
    }
    for (std::size_t j = 0; j < kQK_K; j += 128, ql += 64, qh += 32)
      for (int l = 0; l < 32; ++l) {
        const int a = L[j + l], c = L[j + l + 32], e = L[j + l + 64], g = L[j + l + 96];
        ql[l] = static_cast<std::uint8_t>((a & 0xF) | ((e & 0xF) << 4));
        ql[l + 32] = static_cast<std::uint8_t>((c & 0xF) | ((g & 0xF) << 4));
        qh[l] = static_cast<std::uint8_t>((a >> 4) | ((c >> 4) << 2) | ((e >> 4) << 4) | ((g >> 4) << 6));
      }
  }
}

void dequantizeK(const std::uint8_t* y, std::size_t nb, float* x, int bits) {
  const std::size_t blockSize = bits == 4 ? 144 : 176;
  for (std::size_t b = 0; b < nb; ++b, y += blockSize) {
    const float d = fromFp16(get16(y));
    const float dmin = fromFp16(get16(y + 2));
    const std::uint8_t* packed = y + 4;
    const std::uint8_t* qh = y + 16;
    const std::uint8_t* q = bits == 4 ? y + 16 : y + 48;
    for (int j = 0; j < 8; ++j) {
      std::uint8_t sc, m;
      scaleMin(j, packed, &sc, &m);
      const float dj = d * static_cast<float>(sc);
      const float mj = dmin * static_cast<float>(m);
      const int half = j / 2;  // 64 values per pair of sub-blocks
      for (int l = 0; l < 32; ++l) {
        const std::uint8_t byte = q[32 * half + l];
        int v = (j & 1) ? (byte >> 4) : (byte & 0xF);
        if (bits == 5 && (qh[l] >> j) & 1) v += 16;
        *x++ = dj * static_cast<float>(v) - mj;
      }
    }
  }
}

void dequantizeQ6_K(const std::uint8_t* y, std::size_t nb, float* x) {
  for (std::size_t b = 0; b < nb; ++b, y += 210, x += kQK_K) {
    const float d = fromFp16(get16(y + 208));
    const std::int8_t* sc = reinterpret_cast<const std::int8_t*>(y + 192);
    for (int half = 0; half < 2; ++half) {
      const std::uint8_t* ql = y + 64 * half;
      const std::uint8_t* qh = y + 128 + 32 * half;
      float* out = x + 128 * half;
      for (int l = 0; l < 32; ++l) {
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        const int is = 8 * half + l / 16;
        out[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
        out[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        out[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        out[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

}  // namespace

std::size_t blockValues(Type t) {
  switch (t) {
    case Type::F32:
    case Type::F16: return 1;
    case Type::Q8_0: return kQK8_0;
    case Type::Q4_K:
    case Type::Q5_K:
    case Type::Q6_K: return kQK_K;
  }
  FT_CHECK(false, "unknown GGUF type");
  return 0;
}

std::size_t blockBytes(Type t) {
  switch (t) {
    case Type::F32: return 4;
    case Type::F16: return 2;
    case Type::Q8_0: return 34;
    case Type::Q4_K: return 144;
    case Type::Q5_K: return 176;
    case Type::Q6_K: return 210;
  }
  FT_CHECK(false, "unknown GGUF type");
  return 0;
}

bool isKnown(std::uint32_t t) { return t == 0 || t == 1 || t == 8 || t == 12 || t == 13 || t == 14; }

std::size_t rowBytes(Type t, std::size_t n) {
  FT_CHECK(n % blockValues(t) == 0, "the number of values is not a multiple of the type's block");
  return n / blockValues(t) * blockBytes(t);
}

std::uint16_t fp16(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u | ((a >> 13) & 0x3ffu) : 0u));
  if (a >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to 65536 or more: infinity
  if (a < 0x38800000u) {
    // below the smallest normal half (2^-14): a multiple of 2^-24, rounded to nearest even
    float v;
    std::memcpy(&v, &a, 4);
    return static_cast<std::uint16_t>(sign | static_cast<std::uint32_t>(std::nearbyintf(v * 16777216.0f)));
  }
  std::uint32_t h = ((((a >> 23) - 127u + 15u)) << 10) | ((a & 0x7fffffu) >> 13);
  const std::uint32_t rest = a & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry into the exponent is right
  return static_cast<std::uint16_t>(sign | h);
}

float fromFp16(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1fu;
  const std::uint32_t m = h & 0x3ffu;
  std::uint32_t bits;
  if (e == 0) {
    const float v = static_cast<float>(m) * (1.0f / 16777216.0f);
    std::memcpy(&bits, &v, 4);
    bits |= sign;
  } else if (e == 31) {
    bits = sign | 0x7f800000u | (m << 13);
  } else {
    bits = sign | ((e - 15u + 127u) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

void quantize(Type t, const float* src, std::size_t n, std::uint8_t* dst) {
  const std::size_t nb = n / blockValues(t);
  FT_CHECK(nb * blockValues(t) == n, "the number of values is not a multiple of the type's block");
  switch (t) {
    case Type::F32: std::memcpy(dst, src, n * 4); return;
    case Type::F16:
      for (std::size_t i = 0; i < n; ++i) put16(dst + 2 * i, fp16(src[i]));
      return;
    default: break;
  }
  // blocks are independent: the pool takes contiguous block ranges, the bytes do not depend on
  // the thread count
  const std::size_t per = blockValues(t), bytes = blockBytes(t);
  ft::parallelFor(static_cast<long>(nb), 16, [&](long b, long e) {
    const float* x = src + static_cast<std::size_t>(b) * per;
    std::uint8_t* y = dst + static_cast<std::size_t>(b) * bytes;
    const std::size_t count = static_cast<std::size_t>(e - b);
    switch (t) {
      case Type::Q8_0: quantizeQ8_0(x, count, y); break;
      case Type::Q4_K: quantizeK(x, count, y, 4); break;
      case Type::Q5_K: quantizeK(x, count, y, 5); break;
      case Type::Q6_K: quantizeQ6_K(x, count, y); break;
      default: break;
    }
  });
}

void dequantize(Type t, const std::uint8_t* src, std::size_t n, float* dst) {
  const std::size_t nb = n / blockValues(t);
  FT_CHECK(nb * blockValues(t) == n, "the number of values is not a multiple of the type's block");
  switch (t) {
    case Type::F32: std::memcpy(dst, src, n * 4); return;
    case Type::F16:
      for (std::size_t i = 0; i < n; ++i) dst[i] = fromFp16(get16(src + 2 * i));
      return;
    case Type::Q8_0:
      for (std::size_t b = 0; b < nb; ++b) {
        const float d = fromFp16(get16(src + 34 * b));
        for (std::size_t j = 0; j < kQK8_0; ++j) dst[b * kQK8_0 + j] = d * static_cast<float>(static_cast<std::int8_t>(src[34 * b + 2 + j]));
      }
      return;
    case Type::Q4_K: dequantizeK(src, nb, dst, 4); return;
    case Type::Q5_K: dequantizeK(src, nb, dst, 5); return;
    case Type::Q6_K: dequantizeQ6_K(src, nb, dst); return;
  }
}

}  // namespace gguf
