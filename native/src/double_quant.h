// Double quantization of NF4 absmax values (QLoRA §3, bitsandbytes compress_statistics).
//
// The float32 absmax values of an NF4 tensor (one per 64 weights) cost 0.5 bit per weight; double
// quantization brings that to about 0.127. Their mean (the offset, one float32) is subtracted,
// and the centred values are quantized blockwise, 256 per block, with the signed 8-bit dynamic
// map: each block keeps its max |centred value| as a float32 scale and each value a one-byte
// code. Decoding: map[q] * scale + offset.
//
//   bits per weight = 4 (codes) + 8 / 64 (q) + 32 / (64 * 256) (scales) ≈ 4.127
//
// The offset is the mean accumulated in double and rounded to float32 once, so it does not
// depend on summation order. As in nf4.h, normalisation multiplies by 1/scale, an all-equal
// block (scale 0) encodes as the code of 0, and non-finite input is refused.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ft::dq {

constexpr std::size_t kBlock = 256;

/** Number of scales (blocks) for n absmax values. */
constexpr std::size_t scaleCount(std::size_t n) { return (n + kBlock - 1) / kBlock; }

// absmax: [n]              float32 values to compress (the absmax of an NF4 tensor)
// q:      [n]              out, signed dynamic-map codes of absmax - offset
// scales: [scaleCount(n)]  out, per-block max |absmax - offset|
// returns the offset (mean of absmax; 0 for n = 0)
float quantize_ref(const float* absmax, std::size_t n, std::uint8_t* q, float* scales);
float quantize(const float* absmax, std::size_t n, std::uint8_t* q, float* scales);

// q:      [n]
// scales: [scaleCount(n)]
// out:    [n]  out, map[q] * scale + offset
void dequantize_ref(const std::uint8_t* q, const float* scales, float offset, std::size_t n, float* out);
void dequantize(const std::uint8_t* q, const float* scales, float offset, std::size_t n, float* out);

}  // namespace ft::dq
