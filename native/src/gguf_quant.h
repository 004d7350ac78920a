// GGUF block quantizers: the formats llama.cpp reads (Q8_0, Q4_K, Q5_K, Q6_K, F16).
//
// The block layouts and the rounding rules are llama.cpp's (ggml's `block_q8_0`, `block_q4_K`,
// `block_q5_K`, `block_q6_K`; the fitting of scales and mins without an importance matrix). The
// result must be byte-identical to ggml's own quantizer, because a GGUF file is only as good as
// the reader's agreement with it: tests/gguf.test.ts compares every byte with
// `ggml_quantize_chunk` from node-llama-cpp's prebuilt libggml-base.so.
//
// Everything is float32 arithmetic in a fixed order, compiled with -ffp-contract=off (no fused
// multiply-add), as ggml's reference path is; values are rounded half to even, as ggml does.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gguf {

// ggml's type ids (the numbers stored in a GGUF tensor-info record)
enum class Type : std::uint32_t { F32 = 0, F16 = 1, Q8_0 = 8, Q4_K = 12, Q5_K = 13, Q6_K = 14 };

constexpr std::size_t kQK8_0 = 32;  // values per Q8_0 block
constexpr std::size_t kQK_K = 256;  // values per K-quant super-block

// values per block and bytes per block of a type (F32/F16: one value)
std::size_t blockValues(Type t);
std::size_t blockBytes(Type t);
// bytes of `n` values (n a multiple of blockValues)
std::size_t rowBytes(Type t, std::size_t n);
bool isKnown(std::uint32_t t);

// IEEE half from float, rounded to nearest even (subnormals, infinities and NaN kept)
std::uint16_t fp16(float f);
float fromFp16(std::uint16_t h);

// Quantizes n values (a multiple of the type's block) into dst (rowBytes(t, n) bytes).
void quantize(Type t, const float* src, std::size_t n, std::uint8_t* dst);
// The inverse, for tests and for comparing our forward pass with llama.cpp's.
void dequantize(Type t, const std::uint8_t* src, std::size_t n, float* dst);

}  // namespace gguf
