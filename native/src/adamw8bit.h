// 8-bit AdamW: AdamW whose moments are stored blockwise-quantized (bitsandbytes' AdamW8bit with
// block-wise quantization; Dettmers et al. 2022).
//
// State for a tensor of n >= kMinQuantized elements, 2 bytes + 8/256 bytes per element:
//   m codes  [n]                signed dynamic map      (first moment, either sign)
//   v codes  [n]                unsigned dynamic map    (second moment, >= 0)
//   m absmax [absmaxCount(n)]   float32 per block of 256: max |m| of the block
//   v absmax [absmaxCount(n)]   float32 per block of 256: max v of the block
// A moment decodes as map[code] * absmax[block]. Smaller tensors keep float32 moments and use
// adamw::step (the choice is the caller's: native/index.ts makes it when it creates the state).
//
// A step, per block: decode m and v, apply the float32 element update of adamw.h (which also
// moves the parameter, using the unrounded new moments), take the new block maxima, and encode
// m / max|m| and v / max v with the nearest map value. The reference (step_ref) does the same as
// three whole-tensor passes: decode all, adamw::step, encode all; the kernel fuses them per
// block in registers/L1. They are bit-identical.
#pragma once

#include <cstddef>
#include <cstdint>

#include "adamw.h"

namespace ft::adamw8bit {

constexpr std::size_t kBlock = 256;
constexpr std::size_t kMinQuantized = 4096;

constexpr std::size_t absmaxCount(std::size_t n) { return (n + kBlock - 1) / kBlock; }

// mCodes, vCodes:     [n]               out, the codes of 0
// mAbsmax, vAbsmax:   [absmaxCount(n)]  out, 0
void init(std::uint8_t* mCodes, std::uint8_t* vCodes, float* mAbsmax, float* vAbsmax, std::size_t n);

// param:              [n]               updated in place
// grad:               [n]
// mCodes, vCodes:     [n]               updated in place
// mAbsmax, vAbsmax:   [absmaxCount(n)]  updated in place
void step_ref(float* param, const float* grad, std::uint8_t* mCodes, std::uint8_t* vCodes, float* mAbsmax,
              float* vAbsmax, std::size_t n, const adamw::Hyper& hyper);
void step(float* param, const float* grad, std::uint8_t* mCodes, std::uint8_t* vCodes, float* mAbsmax,
          float* vAbsmax, std::size_t n, const adamw::Hyper& hyper);

}  // namespace ft::adamw8bit
