// AdamW in float32: hyper-parameter checks, bias corrections and the plain step (see adamw.h).
#include "adamw.h"

#include "check.h"

namespace ft::adamw {
namespace {

/** base^t by squaring, in double: the same sequence of roundings everywhere. */
double powBySquaring(double base, std::int64_t t) {
  double result = 1.0;
  while (t > 0) {
    if (t & 1) result *= base;
    base *= base;
    t >>= 1;
  }
  return result;
}

}  // namespace

Coefficients coefficients(const Hyper& h) {
  FT_CHECK(h.step >= 1, "adamw: step is ", h.step, "; steps count from 1 (bias correction divides by 1 - beta^step)");
  FT_CHECK(std::isfinite(h.lr) && h.lr >= 0.0f, "adamw: lr is ", h.lr, ", expected a finite value >= 0");
  FT_CHECK(h.beta1 >= 0.0f && h.beta1 < 1.0f, "adamw: beta1 is ", h.beta1, ", expected 0 <= beta1 < 1");
  FT_CHECK(h.beta2 >= 0.0f && h.beta2 < 1.0f, "adamw: beta2 is ", h.beta2, ", expected 0 <= beta2 < 1");
  FT_CHECK(std::isfinite(h.eps) && h.eps > 0.0f, "adamw: eps is ", h.eps, ", expected a finite value > 0");
  FT_CHECK(std::isfinite(h.weightDecay) && h.weightDecay >= 0.0f, "adamw: weightDecay is ", h.weightDecay,
           ", expected a finite value >= 0");
  Coefficients c{};
  c.beta1 = h.beta1;
  c.oneMinusBeta1 = 1.0f - h.beta1;
  c.beta2 = h.beta2;
  c.oneMinusBeta2 = 1.0f - h.beta2;
  c.correction1 = static_cast<float>(1.0 - powBySquaring(h.beta1, h.step));
  c.correction2 = static_cast<float>(1.0 - powBySquaring(h.beta2, h.step));
  c.lr = h.lr;
  c.eps = h.eps;
  c.weightDecay = h.weightDecay;
  return c;
}

void step(float* param, const float* grad, float* m, float* v, std::size_t n, const Hyper& hyper) {
  const Coefficients c = coefficients(hyper);
  for (std::size_t i = 0; i < n; ++i) update(param[i], grad[i], m[i], v[i], c);
}

}  // namespace ft::adamw
