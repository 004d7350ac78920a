// Loss scaling: the unscaled gradient = the host's float multiply bit for bit, the sum of squares
// against a sum in double, the overflow flag with an inf, a NaN, both and neither; the scale's
// schedule on a scripted sequence.
#include <cmath>
#include <string>
#include <vector>

#include "../lossscale.cuh"
#include "harness.h"

using namespace ft::test;

namespace {

struct Unscaled {
  std::vector<float> grad;  // [n]
  float sumSquares, flag;
};

Unscaled runGpu(const std::vector<float>& grad, float invScale) {
  Dev<float> g(grad);
  Dev<float> work(ft::cuda::unscaleWorkspace(grad.size()));
  Dev<float> result(2);
  ft::cuda::unscaleAndCheck(g.p, grad.size(), invScale, work.p, result.p);
  FT_CUDA(cudaDeviceSynchronize());
  const std::vector<float> r = result.download();
  return {g.download(), r[0], r[1]};
}

}  // namespace

FT_TEST("lossscale", "unscale and check") {
  const float scale = 65536.0f, invScale = 1.0f / scale;
  // 1 block with idle threads, 1 block, a few blocks, the 1024-block cap with several elements per
  // thread; none a multiple of the block (256)
  for (std::size_t n : {std::size_t{1}, std::size_t{1000}, std::size_t{(1 << 20) + 5}, (std::size_t{1} << (small() ? 21 : 22)) + 3}) {
    const std::vector<float> grad = randomVector(n, 40 + n, 300.0f);  // gradients of a scaled loss
    std::vector<float> ref(n);
    double squares = 0;
    const double cpu = cpuMs([&] {
      for (std::size_t i = 0; i < n; ++i) {
        ref[i] = grad[i] * invScale;
        squares += static_cast<double>(ref[i]) * ref[i];
      }
    });
    const Unscaled out = runGpu(grad, invScale);
    const std::string what = "n = " + std::to_string(n) + ": ";
    rows.push_back({what + "unscaled (bits differing)", static_cast<double>(mismatches(out.grad, ref)), 0, -1, cpu, ""});
    rows.push_back({what + "sum of squares (rel. error)", std::fabs(out.sumSquares - squares) / squares, 1e-5, -1, -1, ""});
    rows.push_back({what + "flag, all finite", out.flag, 0, -1, -1, ""});

    if (n < 1000) continue;
    // one inf, one NaN, both (in the last, partial stretch of the buffer and in the middle)
    struct Plant {
      const char* what;
      std::size_t at;
      float value;
      std::size_t at2;
      float value2;
    };
    for (const Plant& p : {Plant{"+inf", n - 1, INFINITY, n - 1, INFINITY}, Plant{"NaN", n / 2 + 1, NAN, n / 2 + 1, NAN},
                           Plant{"-inf and NaN", 3, -INFINITY, n - 2, NAN}}) {
      std::vector<float> bad = grad;
      bad[p.at] = p.value;
      bad[p.at2] = p.value2;
      const Unscaled o = runGpu(bad, invScale);
      rows.push_back({what + "flag, " + p.what + " planted (1 - flag)", 1.0 - o.flag, 0, -1, -1, ""});
    }
  }

  // speed: one read and one write of the buffer
  const std::size_t n = std::size_t{1} << 24;
  Dev<float> g(randomVector(n, 3, 300.0f));
  Dev<float> work(ft::cuda::unscaleWorkspace(n));
  Dev<float> result(2);
  const double gpu = gpuMs([&] { ft::cuda::unscaleAndCheck(g.p, n, 1.0f, work.p, result.p); });  // invScale 1: the values stay as they are
  rows.push_back({"n = 2^24 (time)", 0, 0, gpu, -1, "GB/s " + std::to_string(static_cast<int>(n * 8.0 / gpu / 1e6))});
}

FT_TEST("lossscale", "scaler schedule") {
  // growthInterval 3: {overflow?, applied expected, scale expected after the update}
  struct Step {
    bool overflow, applied;
    float scale;
  };
  std::vector<Step> script = {
      {false, true, 65536}, {false, true, 65536}, {false, true, 131072},  // 3 good steps: double
      {true, false, 65536},                                              // overflow: halve, skip
      {false, true, 65536}, {false, true, 65536},                        // 2 good steps
      {true, false, 32768},                                              // overflow resets the count
      {false, true, 32768}, {false, true, 32768}, {false, true, 65536},  // 3 good steps again
  };
  float expected = 65536;
  for (int k = 0; k < 20; ++k) {  // 20 overflows in a row: down to 1 after 16, then it stays at 1
    expected = expected > 1 ? expected / 2 : 1;
    script.push_back({true, false, expected});
  }
  script.push_back({false, true, 1});
  script.push_back({false, true, 1});
  script.push_back({false, true, 2});

  ft::cuda::LossScaler s;
  s.growthInterval = 3;
  int wrong = 0;
  for (const Step& st : script) {
    const bool applied = s.update(st.overflow);
    wrong += applied != st.applied || s.scale != st.scale;
  }
  rows.push_back({std::to_string(script.size()) + " scripted steps (wrong)", static_cast<double>(wrong), 0, -1, -1, ""});

  // growth stops short of inf
  ft::cuda::LossScaler big;
  big.scale = 0x1p127f;
  big.growthInterval = 1;
  big.update(false);
  rows.push_back({"growth at 2^127 keeps 2^127 (wrong)", static_cast<double>(big.scale != 0x1p127f), 0, -1, -1, ""});
}
