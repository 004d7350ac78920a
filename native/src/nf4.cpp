// NF4 blockwise quantization: the scalar reference and the kernel (see nf4.h for the format).
#include "nf4.h"

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "check.h"

namespace ft::nf4 {
namespace {

/** The 15 decision thresholds: midpoints of neighbouring codebook values, in double, rounded. */
struct Midpoints {
  float value[15];
  constexpr Midpoints() : value{} {
    for (int k = 0; k < 15; ++k)
      value[k] = static_cast<float>((static_cast<double>(kCodebook[k]) + static_cast<double>(kCodebook[k + 1])) / 2.0);
  }
};
constexpr Midpoints kMid{};

/** 1 / absmax, or 0 for an all-zero block so that every element encodes as the code of 0. */
inline float inverseScale(float absmax) { return absmax > 0.0f ? 1.0f / absmax : 0.0f; }

void checkFinite(bool finite, std::size_t block) {
  FT_CHECK(finite, "nf4 quantize: block ", block, " (elements ", block * kBlock, "..", (block + 1) * kBlock - 1,
           ") holds a NaN or an infinity; only finite tensors can be quantized");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Reference: one element at a time, straight from the definition.

void quantize_ref(const float* x, std::size_t n, std::uint8_t* codes, float* absmax) {
  for (std::size_t b = 0; b < absmaxCount(n); ++b) {
    float m = 0.0f;
    bool finite = true;
    for (std::size_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i) {
      m = std::max(m, std::fabs(x[i]));
      finite = finite && std::isfinite(x[i]);
    }
    checkFinite(finite, b);
    absmax[b] = m;
  }
  for (std::size_t i = 0; i < n; ++i) {
    const float normalized = x[i] * inverseScale(absmax[i / kBlock]);
    std::uint8_t code = 0;
    for (int k = 0; k < 15; ++k)
      if (normalized > kMid.value[k]) code = static_cast<std::uint8_t>(k + 1);
    if (i % 2 == 0)
      codes[i / 2] = static_cast<std::uint8_t>(code << 4);
    else
      codes[i / 2] = static_cast<std::uint8_t>(codes[i / 2] | code);
  }
}

void dequantize_ref(const std::uint8_t* codes, const float* absmax, std::size_t n, float* out) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t byte = codes[i / 2];
    const int code = i % 2 == 0 ? byte >> 4 : byte & 0x0F;
    out[i] = kCodebook[code] * absmax[i / kBlock];
  }
}

// ---------------------------------------------------------------------------------------------
// Kernel: block by block. The code of an element is the number of thresholds below it, a sum of
// 15 comparisons with no branch, so the element loop vectorises; packing is a separate pass.

void quantize(const float* x, std::size_t n, std::uint8_t* codes, float* absmax) {
  for (std::size_t b = 0; b < absmaxCount(n); ++b) {
    const float* xb = x + b * kBlock;                       // [len]
    const std::size_t len = std::min(kBlock, n - b * kBlock);
    float m = 0.0f;
    int finite = 1;
    for (std::size_t i = 0; i < len; ++i) {
      const float a = std::fabs(xb[i]);
      m = a > m ? a : m;
      finite &= a <= FLT_MAX;  // false for NaN and for infinities
    }
    checkFinite(finite != 0, b);
    absmax[b] = m;

    const float scale = inverseScale(m);
    std::uint8_t index[kBlock];                             // [kBlock] codes of this block, unpacked
    for (std::size_t i = 0; i < len; ++i) {
      const float normalized = xb[i] * scale;
      int code = 0;
      for (int k = 0; k < 15; ++k) code += normalized > kMid.value[k];
      index[i] = static_cast<std::uint8_t>(code);
    }
    if (len % 2 == 1) index[len] = 0;

    std::uint8_t* cb = codes + b * (kBlock / 2);            // [(len + 1) / 2]
    for (std::size_t j = 0; j < (len + 1) / 2; ++j)
      cb[j] = static_cast<std::uint8_t>((index[2 * j] << 4) | index[2 * j + 1]);
  }
}

void dequantize(const std::uint8_t* codes, const float* absmax, std::size_t n, float* out) {
  for (std::size_t b = 0; b < absmaxCount(n); ++b) {
    const std::size_t len = std::min(kBlock, n - b * kBlock);
    float value[16];                                        // [16] codebook scaled by this block's absmax
    for (int k = 0; k < 16; ++k) value[k] = kCodebook[k] * absmax[b];
    const std::uint8_t* cb = codes + b * (kBlock / 2);      // [(len + 1) / 2]
    float* ob = out + b * kBlock;                           // [len]
    for (std::size_t j = 0; j < len / 2; ++j) {
      ob[2 * j] = value[cb[j] >> 4];
      ob[2 * j + 1] = value[cb[j] & 0x0F];
    }
    if (len % 2 == 1) ob[len - 1] = value[cb[len / 2] >> 4];
  }
}

}  // namespace ft::nf4
