// 8-bit AdamW with blockwise-quantized moments: init, the unfused reference and the fused kernel
// (see adamw8bit.h).
#include "adamw8bit.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "dynamic_map.h"
#include "threads.h"

namespace ft::adamw8bit {
namespace {

inline float inverseScale(float absmax) { return absmax > 0.0f ? 1.0f / absmax : 0.0f; }

}  // namespace

void init(std::uint8_t* mCodes, std::uint8_t* vCodes, float* mAbsmax, float* vAbsmax, std::size_t n) {
  std::fill(mCodes, mCodes + n, dynmap::signedMap().zero);
  std::fill(vCodes, vCodes + n, dynmap::unsignedMap().zero);
  std::fill(mAbsmax, mAbsmax + absmaxCount(n), 0.0f);
  std::fill(vAbsmax, vAbsmax + absmaxCount(n), 0.0f);
}

// ---------------------------------------------------------------------------------------------
// Reference: decode everything, run the float32 reference step, encode everything.

void step_ref(float* param, const float* grad, std::uint8_t* mCodes, std::uint8_t* vCodes, float* mAbsmax,
              float* vAbsmax, std::size_t n, const adamw::Hyper& hyper) {
  const dynmap::Map& sm = dynmap::signedMap();
  const dynmap::Map& um = dynmap::unsignedMap();
  std::vector<float> m(n), v(n);  // [n] decoded moments
  for (std::size_t i = 0; i < n; ++i) {
    m[i] = sm.value[mCodes[i]] * mAbsmax[i / kBlock];
    v[i] = um.value[vCodes[i]] * vAbsmax[i / kBlock];
  }
  adamw::step(param, grad, m.data(), v.data(), n, hyper);
  for (std::size_t b = 0; b < absmaxCount(n); ++b) {
    float mMax = 0.0f, vMax = 0.0f;
    for (std::size_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i) {
      mMax = std::max(mMax, std::fabs(m[i]));
      vMax = std::max(vMax, v[i]);
    }
    mAbsmax[b] = mMax;
    vAbsmax[b] = vMax;
  }
  for (std::size_t i = 0; i < n; ++i) {
    mCodes[i] = dynmap::encode_ref(sm, m[i] * inverseScale(mAbsmax[i / kBlock]));
    vCodes[i] = dynmap::encode_ref(um, v[i] * inverseScale(vAbsmax[i / kBlock]));
  }
}

// ---------------------------------------------------------------------------------------------
// Kernel: one block at a time, moments kept in two stack arrays between decode and encode, so
// the tensor is read and written once. Decode, update, block maxima and encode are separate loops
// so that the update (the arithmetic) vectorises apart from the table lookups; the encoding
// (dynmap::encode, a bucket-table lookup) is the larger part of the time. Blocks are independent
// (each has its own absmax), so the thread pool takes runs of kGrainBlocks of them: the result is
// the same bits for any number of threads.

namespace {
constexpr long kGrainBlocks = 16;  // 4096 elements: below that, one thread (waking the pool costs more)

void stepBlocks(float* param, const float* grad, std::uint8_t* mCodes, std::uint8_t* vCodes, float* mAbsmax, float* vAbsmax,
                std::size_t n, const adamw::Coefficients& c, std::size_t first, std::size_t last) {
  const dynmap::Map& sm = dynmap::signedMap();
  const dynmap::Map& um = dynmap::unsignedMap();
  for (std::size_t b = first; b < last; ++b) {
    const std::size_t start = b * kBlock;
    const std::size_t len = std::min(kBlock, n - start);
    float* pb = param + start;                              // [len]
    const float* gb = grad + start;                         // [len]
    std::uint8_t* mq = mCodes + start;                      // [len]
    std::uint8_t* vq = vCodes + start;                      // [len]
    float m[kBlock], v[kBlock];                             // [kBlock] this block's moments, float32
    const float mScale = mAbsmax[b], vScale = vAbsmax[b];
    for (std::size_t i = 0; i < len; ++i) {                 // decode: table lookups
      m[i] = sm.value[mq[i]] * mScale;
      v[i] = um.value[vq[i]] * vScale;
    }
    for (std::size_t i = 0; i < len; ++i) adamw::update(pb[i], gb[i], m[i], v[i], c);  // vectorises (divps, sqrtps)
    float mMax = 0.0f, vMax = 0.0f;                         // block maxima
    for (std::size_t i = 0; i < len; ++i) {
      const float a = std::fabs(m[i]);
      mMax = a > mMax ? a : mMax;
      vMax = v[i] > vMax ? v[i] : vMax;
    }
    mAbsmax[b] = mMax;
    vAbsmax[b] = vMax;
    const float mInv = inverseScale(mMax), vInv = inverseScale(vMax);
    for (std::size_t i = 0; i < len; ++i) {                 // encode: table lookups
      mq[i] = dynmap::encode(sm, m[i] * mInv);
      vq[i] = dynmap::encode(um, v[i] * vInv);
    }
  }
}
}  // namespace

void step(float* param, const float* grad, std::uint8_t* mCodes, std::uint8_t* vCodes, float* mAbsmax,
          float* vAbsmax, std::size_t n, const adamw::Hyper& hyper) {
  const adamw::Coefficients c = adamw::coefficients(hyper);
  const long blocks = static_cast<long>(absmaxCount(n));
  if (blocks <= kGrainBlocks) {
    stepBlocks(param, grad, mCodes, vCodes, mAbsmax, vAbsmax, n, c, 0, static_cast<std::size_t>(blocks));
    return;
  }
  ft::parallelFor(blocks, kGrainBlocks, [&](long begin, long end) {
    stepBlocks(param, grad, mCodes, vCodes, mAbsmax, vAbsmax, n, c, static_cast<std::size_t>(begin), static_cast<std::size_t>(end));
  });
}

}  // namespace ft::adamw8bit
