// adamw8bit.cuh: the 8-bit AdamW step on the GPU, bit-identical to ft::adamw8bit::step
// (src/adamw8bit.h; the format and the maths are described there and in src/adamw.h).
//
// State of a tensor of n elements: m and v codes [n] (signed and unsigned dynamic maps of
// src/dynamic_map.h), and per block of 256 elements a float32 absmax of each moment; a moment
// decodes as map[code] * absmax[block].
//
// One CUDA block per quantisation block of 256, one thread per element, everything in
// registers: decode m and v, the float32 element update of adamw::update (which also moves the
// parameter), the block maxima max |m| and max v, and the encoding of m / max|m| and v / max v.
//
// Bit-identity with the CPU, which is compiled with -ffp-contract=off:
//   - every operation of adamw::update is one explicit IEEE round-to-nearest intrinsic
//     (__fmul_rn, __fadd_rn, __fsub_rn, __fdiv_rn, __fsqrt_rn) in the CPU's order, so nvcc
//     cannot fuse a multiply and an add into an FMA; denormals are kept on both sides (no
//     --use_fast_math / -ftz=true here, no FTZ/DAZ on the host);
//   - the block maxima ignore NaN and start at +0, like the CPU's `a > max ? a : max` from 0
//     (max is exact, so the order of the reduction tree does not matter);
//   - the inverse scale is 1 / max (0 when max is 0) and the encoded value max-scaled with one
//     multiply, as on the CPU;
//   - a code is the number of thresholds strictly below x (dynmap::encode_ref, which
//     dynmap::encode equals for every float): here a binary search over the 255 thresholds in
//     shared memory, with only `x > threshold` comparisons, so NaN gives 0 as on the CPU.
// The coefficients (bias corrections in double, rounded once) are ft::adamw::coefficients,
// computed on the host and passed by value.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "adamw.h"
#include "adamw8bit.h"  // kBlock, absmaxCount, init

namespace ft::cuda {

// param:              [n]                           fp32, updated in place
// grad:               [n]                           fp32
// mCodes, vCodes:     [n]                           updated in place (ft::adamw8bit::init makes the first state)
// mAbsmax, vAbsmax:   [ft::adamw8bit::absmaxCount(n)] fp32, updated in place
void adamw8bitStep(float* param, const float* grad, std::uint8_t* mCodes, std::uint8_t* vCodes, float* mAbsmax, float* vAbsmax, std::size_t n,
                   const ft::adamw::Hyper& hyper, cudaStream_t stream = 0);

// The float32 AdamW step, bit-identical to ft::adamw::step (the state of tensors under
// ft::adamw8bit::kMinQuantized elements, as on the host): m, v [n] fp32, updated in place.
void adamwStep(float* param, const float* grad, float* m, float* v, std::size_t n, const ft::adamw::Hyper& hyper, cudaStream_t stream = 0);

// x [n] = float(double(x) * factor): the product in double, rounded once to fp32, as JavaScript's
// `x[i] * c` stores into a Float32Array (the training loop's clipping on the host)
void scale(float* x, std::size_t n, double factor, cudaStream_t stream = 0);

// x [n] = (x * factor) / divisor, each one fp32 operation rounded once: what the training loop does
// on the host to a gradient (getGrads' multiply by 1 / loss scale, then JavaScript's division by
// the micro-batches stored into a Float32Array, which equals the fp32 division)
void scaleDivide(float* x, std::size_t n, float factor, float divisor, cudaStream_t stream = 0);

}  // namespace ft::cuda
