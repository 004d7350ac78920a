// Double quantization of absmax values: the scalar reference and the kernel (see double_quant.h).
#include "double_quant.h"

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "check.h"
#include "dynamic_map.h"

namespace ft::dq {
namespace {

/** The offset: mean in double, rounded once. Also refuses non-finite input. */
float offsetOf(const float* absmax, std::size_t n) {
  if (n == 0) return 0.0f;
  double sum = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    FT_CHECK(std::isfinite(absmax[i]), "double quantize: absmax[", i, "] is ", absmax[i],
             "; only finite values can be quantized");
    sum += absmax[i];
  }
  return static_cast<float>(sum / static_cast<double>(n));
}

inline float inverseScale(float scale) { return scale > 0.0f ? 1.0f / scale : 0.0f; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Reference: element by element, linear search of the map.

float quantize_ref(const float* absmax, std::size_t n, std::uint8_t* q, float* scales) {
  const dynmap::Map& map = dynmap::signedMap();
  const float offset = offsetOf(absmax, n);
  for (std::size_t b = 0; b < scaleCount(n); ++b) {
    float s = 0.0f;
    for (std::size_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i)
      s = std::max(s, std::fabs(absmax[i] - offset));
    scales[b] = s;
  }
  for (std::size_t i = 0; i < n; ++i)
    q[i] = dynmap::encode_ref(map, (absmax[i] - offset) * inverseScale(scales[i / kBlock]));
  return offset;
}

void dequantize_ref(const std::uint8_t* q, const float* scales, float offset, std::size_t n, float* out) {
  const dynmap::Map& map = dynmap::signedMap();
  for (std::size_t i = 0; i < n; ++i) out[i] = map.value[q[i]] * scales[i / kBlock] + offset;
}

// ---------------------------------------------------------------------------------------------
// Kernel: block by block; centring and the block max vectorise, encoding is the binary search.

float quantize(const float* absmax, std::size_t n, std::uint8_t* q, float* scales) {
  const dynmap::Map& map = dynmap::signedMap();
  const float offset = offsetOf(absmax, n);
  for (std::size_t b = 0; b < scaleCount(n); ++b) {
    const std::size_t len = std::min(kBlock, n - b * kBlock);
    const float* ab = absmax + b * kBlock;                  // [len]
    float centred[kBlock];                                  // [kBlock] ab - offset
    float s = 0.0f;
    for (std::size_t i = 0; i < len; ++i) {
      centred[i] = ab[i] - offset;
      const float a = std::fabs(centred[i]);
      s = a > s ? a : s;
    }
    scales[b] = s;
    const float inv = inverseScale(s);
    std::uint8_t* qb = q + b * kBlock;                      // [len]
    for (std::size_t i = 0; i < len; ++i) qb[i] = dynmap::encode(map, centred[i] * inv);
  }
  return offset;
}

void dequantize(const std::uint8_t* q, const float* scales, float offset, std::size_t n, float* out) {
  const dynmap::Map& map = dynmap::signedMap();
  for (std::size_t b = 0; b < scaleCount(n); ++b) {
    const std::size_t len = std::min(kBlock, n - b * kBlock);
    const float s = scales[b];
    const std::uint8_t* qb = q + b * kBlock;                // [len]
    float* ob = out + b * kBlock;                           // [len]
    for (std::size_t i = 0; i < len; ++i) ob[i] = map.value[qb[i]] * s + offset;
  }
}

}  // namespace ft::dq
