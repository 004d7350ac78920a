// The 8-bit dynamic quantization maps of bitsandbytes (Dettmers et al., "8-bit Optimizers via
// Block-wise Quantization"), used for double quantization of NF4 absmax values and for the
// moments of 8-bit AdamW.
//
// A map is 256 ascending float values in [-1, 1] (signed) or [0, 1] (unsigned); an 8-bit code is
// an index into it. The values follow bitsandbytes' create_dynamic_map(signed, max_exponent_bits
// = 7, total_bits = 8), generated here from that definition (dynamic_map.cpp), not copied:
//
//   for each decade e = 0..6, with scale 10^(e-6) (1e-6, 1e-5, ..., 1):
//     split [0.1, 1] into k_e equal intervals, k_e = 2^e (signed) or 2^(e+1) (unsigned),
//     and take each interval's midpoint times the scale (signed: also its negative);
//   then add 0 and 1.0, and sort.
//
// Signed: 127 positive + 127 negative + 0 + 1.0 = 256 values, from -0.99296875 to 1.0 (there is
// no -1.0). Unsigned: 254 positive + 0 + 1.0 = 256 values. Every decade down to 1e-7 has
// values (the "dynamic exponent"), but fewer the lower it is: signed has 64 in [0.1, 1], 32 in
// [0.01, 0.1], ..., 1 in [1e-7, 1e-6] (unsigned twice as many); near 1 they are 0.014 apart
// (unsigned 0.007).
//
// Encoding picks the nearest value by midpoint thresholds (an exact midpoint rounds down): the
// code of x is the number of thresholds strictly below x. The reference counts them one by one.
// The kernel looks the count up in a table indexed by x's sign, binary exponent and top 8
// mantissa bits (a "bucket", 1/256 of a binade wide), then compares x with the one threshold
// that can lie inside that bucket. The table is built and checked from the thresholds at start-up
// (dynamic_map.cpp), so both give the same code for every float, NaN included (code 0);
// tests/native.test.ts checks this at every threshold and bucket edge. (A branchless binary
// search over the thresholds ran the 8-bit AdamW step at 48 M elements/s, the table at ~150 M.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ft::dynmap {

/** Binades of |x| covered by the bucket table: [2^kMinExponent, 1). Below: the code of 0; above: an end. */
constexpr int kMinExponent = -24;
constexpr int kBinades = -kMinExponent;

struct Map {
  float value[256];      // [256] ascending; code c decodes to value[c]
  float threshold[256];  // [256] threshold[k] = midpoint of value[k] and value[k + 1]; [255] = +inf
  std::uint8_t zero;     // the code of 0.0
  // [sign][binade][top 8 mantissa bits]: the code of the bucket's lowest x (for negative x, the
  // code just above its lowest x), i.e. the number of thresholds below the whole bucket
  std::uint8_t bucket[2][kBinades][256];
};

const Map& signedMap();
const Map& unsignedMap();

/** The code of the value nearest to x: the number of thresholds strictly below x. */
inline std::uint8_t encode_ref(const Map& map, float x) {
  int code = 0;
  for (int k = 0; k < 255; ++k)
    if (x > map.threshold[k]) code = k + 1;
  return static_cast<std::uint8_t>(code);
}

/** Same result as encode_ref: a bucket table lookup and one comparison. */
inline std::uint8_t encode(const Map& map, float x) {
  std::uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  const std::uint32_t negative = bits >> 31;
  const int exponent = static_cast<int>((bits >> 23) & 0xFF) - 127;
  if (exponent < kMinExponent) return map.zero;  // |x| < 2^-24, zeros and subnormals: no threshold that small
  if (exponent >= 0) return negative || x != x ? 0 : 255;  // |x| >= 1, infinities, NaN: beyond every threshold
  const unsigned base = map.bucket[negative][exponent - kMinExponent][(bits >> 15) & 0xFF];
  return static_cast<std::uint8_t>(base + static_cast<unsigned>(x > map.threshold[base]));
}

}  // namespace ft::dynmap
