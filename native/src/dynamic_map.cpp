// Generates the signed and unsigned 8-bit dynamic maps from their definition (see dynamic_map.h).
//
// Values are computed in double and rounded to float once. bitsandbytes computes the same
// numbers in float32 torch arithmetic (linspace, then means, then the scale), so an entry may
// differ from its tensor in the last bit; that moves no threshold by more than an ulp and does
// not change the format (a code still means "the n-th value of the map").
#include "dynamic_map.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "check.h"

namespace ft::dynmap {
namespace {

/** How many of threshold[0..254] are < y (countBelow) or <= y (countAtOrBelow). */
int countBelow(const Map& map, double y) {
  return static_cast<int>(std::lower_bound(map.threshold, map.threshold + 255, y,
                                           [](float t, double v) { return static_cast<double>(t) < v; }) -
                          map.threshold);
}
int countAtOrBelow(const Map& map, double y) {
  return static_cast<int>(std::upper_bound(map.threshold, map.threshold + 255, y,
                                           [](double v, float t) { return v < static_cast<double>(t); }) -
                          map.threshold);
}

/**
 * Fills map.bucket (see encode in dynamic_map.h) and checks what encode relies on: every
 * threshold lies in (-1, 1) and none within 2^kMinExponent of 0, and no bucket holds two.
 * A bucket covers |x| in [lo, hi) = 2^e * [1 + m/256, 1 + (m+1)/256), computed exactly in double.
 *   x > 0: base = #thresholds < lo; the one threshold that may lie in [lo, hi) is threshold[base].
 *   x < 0: x in (-hi, -lo]; base = #thresholds <= -hi; the one in (-hi, -lo] is threshold[base].
 */
void buildBuckets(Map& map) {
  FT_CHECK(map.threshold[0] > -1.0f && map.threshold[254] < 1.0f, "dynamic map: a threshold outside (-1, 1)");
  const double smallest = std::ldexp(1.0, kMinExponent);
  FT_CHECK(countBelow(map, smallest) == countAtOrBelow(map, -smallest) && countBelow(map, smallest) == map.zero,
           "dynamic map: a threshold within 2^", kMinExponent, " of 0");
  for (int b = 0; b < kBinades; ++b) {
    const int exponent = kMinExponent + b;
    for (int m = 0; m < 256; ++m) {
      const double lo = std::ldexp(1.0 + m / 256.0, exponent);
      const double hi = std::ldexp(1.0 + (m + 1) / 256.0, exponent);
      const int positive = countBelow(map, lo);
      const int negative = countAtOrBelow(map, -hi);
      FT_CHECK(countBelow(map, hi) - positive <= 1 && countAtOrBelow(map, -lo) - negative <= 1,
               "dynamic map: two thresholds in one bucket (2^", exponent, ", mantissa ", m, ")");
      map.bucket[0][b][m] = static_cast<std::uint8_t>(positive);
      map.bucket[1][b][m] = static_cast<std::uint8_t>(negative);
    }
  }
}

Map build(bool isSigned) {
  constexpr int kDecades = 7;  // max_exponent_bits
  constexpr double kScale[kDecades] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};
  std::vector<double> values;
  for (int e = 0; e < kDecades; ++e) {
    const int intervals = isSigned ? 1 << e : 1 << (e + 1);
    for (int j = 0; j < intervals; ++j) {
      // boundaries of [0.1, 1] split into `intervals` equal parts: 0.1 + 0.9 * j / intervals
      const double lo = 0.1 + 0.9 * j / intervals;
      const double hi = 0.1 + 0.9 * (j + 1) / intervals;
      const double mean = (lo + hi) / 2.0;
      values.push_back(kScale[e] * mean);
      if (isSigned) values.push_back(-kScale[e] * mean);
    }
  }
  values.push_back(0.0);
  values.push_back(1.0);
  FT_CHECK(values.size() == 256, "dynamic map has ", values.size(), " values, expected 256");
  std::sort(values.begin(), values.end());

  Map map{};
  for (int c = 0; c < 256; ++c) map.value[c] = static_cast<float>(values[c]);
  for (int k = 0; k < 255; ++k) {
    FT_CHECK(map.value[k] < map.value[k + 1], "dynamic map values ", k, " and ", k + 1, " are not increasing");
    map.threshold[k] =
        static_cast<float>((static_cast<double>(map.value[k]) + static_cast<double>(map.value[k + 1])) / 2.0);
  }
  map.threshold[255] = std::numeric_limits<float>::infinity();
  map.zero = encode_ref(map, 0.0f);
  FT_CHECK(map.value[map.zero] == 0.0f, "dynamic map: 0 does not encode to 0");
  buildBuckets(map);
  return map;
  return map;
}

}  // namespace

const Map& signedMap() {
  static const Map map = build(true);
  return map;
}

const Map& unsignedMap() {
  static const Map map = build(false);
  return map;
}

}  // namespace ft::dynmap
