// AdamW (Loshchilov & Hutter, decoupled weight decay) in float32: the reference optimizer step.
//
// For step t >= 1, with gradient g, per element, all in float32 and in this order:
//
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * (g * g)
//   p = p - lr * ((m / c1) / (sqrt(v / c2) + eps) + weightDecay * p)      (p on the right: before)
//
// with bias corrections c1 = 1 - beta1^t and c2 = 1 - beta2^t. beta^t is computed in double by
// exponentiation by squaring (deterministic on every machine, unlike pow()) and c rounded to
// float32 once. 8-bit AdamW (adamw8bit.h) calls the same element update, so the two optimizers
// differ only by where the moments are stored.
//
// Gradients must be finite (a NaN is not detected here; the training loop's gradient-norm pass
// is the place to catch it).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace ft::adamw {

struct Hyper {
  float lr;
  float beta1;
  float beta2;
  float eps;
  float weightDecay;
  std::int64_t step;  // t, 1 for the first step
};

/** Everything the element update needs, derived once per step from Hyper. */
struct Coefficients {
  float beta1, oneMinusBeta1;
  float beta2, oneMinusBeta2;
  float correction1, correction2;  // 1 - beta^t
  float lr, eps, weightDecay;
};

/** Validates the hyper-parameters (throws ft::Error naming the bad one) and derives the rest. */
Coefficients coefficients(const Hyper& hyper);

/** The element update of the header comment; m and v are updated in place. */
inline void update(float& p, float g, float& m, float& v, const Coefficients& c) {
  m = c.beta1 * m + c.oneMinusBeta1 * g;
  v = c.beta2 * v + c.oneMinusBeta2 * (g * g);
  const float mhat = m / c.correction1;
  const float vhat = v / c.correction2;
  p = p - c.lr * (mhat / (std::sqrt(vhat) + c.eps) + c.weightDecay * p);
}

// param: [n] updated in place
// grad:  [n]
// m, v:  [n] float32 first and second moments, updated in place (zeros before step 1)
void step(float* param, const float* grad, float* m, float* v, std::size_t n, const Hyper& hyper);

}  // namespace ft::adamw
