// NF4: 4-bit NormalFloat blockwise quantization in the bitsandbytes layout (QLoRA's base weights).
//
// A tensor of n float32 values is cut into blocks of 64 (the last may be shorter). Each block
// stores its absmax (max |x|) as float32, and each element the index of the codebook value
// nearest to x / absmax. Codebook indices are 4 bits; two are packed per byte with element 2j in
// the HIGH nibble and 2j+1 in the low nibble (a trailing odd element leaves the low nibble 0).
// "Nearest" is decided by the midpoints between neighbouring codebook values, as bitsandbytes
// does: x / absmax > midpoint k selects a code above k, so an exact midpoint rounds down.
// An all-zero block has absmax 0 and encodes every element as code 7 (the value 0).
//
// Both a plain scalar reference (*_ref: element by element, exactly as the sentences above) and
// the kernel (block by block, loops shaped to auto-vectorise) are here; tests prove them
// bit-identical. Normalisation multiplies by 1/absmax (not a division per element), in both.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ft::nf4 {

constexpr std::size_t kBlock = 64;

/**
 * The NF4 codebook, index 0..15 (source: bitsandbytes, as listed in DESIGN.md §4): quantiles of
 * N(0, 1) scaled to [-1, 1], with an exact 0 at index 7.
 */
constexpr float kCodebook[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

/** Number of absmax values (blocks) for n elements. */
constexpr std::size_t absmaxCount(std::size_t n) { return (n + kBlock - 1) / kBlock; }
/** Number of code bytes for n elements (two 4-bit codes per byte). */
constexpr std::size_t codeBytes(std::size_t n) { return (n + 1) / 2; }

// x:      [n]              float32 input
// codes:  [codeBytes(n)]   out, packed 4-bit codes, element 2j in the high nibble
// absmax: [absmaxCount(n)] out, per-block max |x|
// Throws ft::Error if x holds a NaN or an infinity.
void quantize_ref(const float* x, std::size_t n, std::uint8_t* codes, float* absmax);
void quantize(const float* x, std::size_t n, std::uint8_t* codes, float* absmax);

// codes:  [codeBytes(n)]
// absmax: [absmaxCount(n)]
// out:    [n]  out, codebook[code] * absmax[block]
void dequantize_ref(const std::uint8_t* codes, const float* absmax, std::size_t n, float* out);
void dequantize(const std::uint8_t* codes, const float* absmax, std::size_t n, float* out);

}  // namespace ft::nf4
