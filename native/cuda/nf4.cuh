// nf4.cuh: NF4 dequantization on the GPU (the layout of src/nf4.h: blocks of 64, two codes per
// byte with element 2j in the HIGH nibble, float32 absmax per block), and the double-quantized
// absmax of src/double_quant.h (signed dynamic-map codes, a scale per 256, plus an offset).
//
// References: ft::nf4::dequantize and ft::dq::dequantize (src/). The GPU result is bit-identical
// to them: each value is one float multiply codebook[c] * absmax, rounded once (fp32), or that
// product rounded to fp16 or bf16 (the 16-bit outputs).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace ft::cuda {

// codes:  [(n + 1) / 2]      packed 4-bit codes
// absmax: [ceil(n / 64)]     float32
// out:    [n]                codebook[code] * absmax[i / 64]
void nf4Dequantize(const std::uint8_t* codes, const float* absmax, std::size_t n, float* out, cudaStream_t stream = 0);
void nf4Dequantize(const std::uint8_t* codes, const float* absmax, std::size_t n, __half* out, cudaStream_t stream = 0);
void nf4Dequantize(const std::uint8_t* codes, const float* absmax, std::size_t n, __nv_bfloat16* out, cudaStream_t stream = 0);

// q:      [n]                signed dynamic-map codes of absmax - offset
// scales: [ceil(n / 256)]
// out:    [n]                map[q] * scale + offset (float32), the absmax an NF4 tensor decodes with
void dqDequantize(const std::uint8_t* q, const float* scales, float offset, std::size_t n, float* out, cudaStream_t stream = 0);

}  // namespace ft::cuda
