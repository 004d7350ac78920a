// 8-bit AdamW: the GPU step = ft::adamw8bit::step bit for bit (parameters, codes, absmax), over
// several steps from the initial state, with a partial last block and an all-zero block.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "../adamw8bit.cuh"
#include "adamw8bit.h"
#include "harness.h"

using namespace ft::test;

namespace {

/** The optimizer state of one tensor, on the host. */
struct State {
  std::vector<float> param;                // [n]
  std::vector<std::uint8_t> mCodes, vCodes;  // [n]
  std::vector<float> mAbsmax, vAbsmax;     // [absmaxCount(n)]
};

State initialState(std::size_t n, std::uint64_t seed) {
  State s{randomVector(n, seed, 0.02f), std::vector<std::uint8_t>(n), std::vector<std::uint8_t>(n),
          std::vector<float>(ft::adamw8bit::absmaxCount(n)), std::vector<float>(ft::adamw8bit::absmaxCount(n))};
  ft::adamw8bit::init(s.mCodes.data(), s.vCodes.data(), s.mAbsmax.data(), s.vAbsmax.data(), n);
  return s;
}

/** Gradients whose scale varies by block (1e-1 .. 1e-6), with block 3 all zeros (its moments stay 0). */
std::vector<float> gradient(std::size_t n, std::uint64_t seed) {
  std::vector<float> g = randomVector(n, seed);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t b = i / ft::adamw8bit::kBlock;
    g[i] *= b == 3 ? 0.0f : std::pow(10.0f, -1.0f - static_cast<float>(b % 6));
  }
  return g;
}

ft::adamw::Hyper hyperAt(std::int64_t t) { return ft::adamw::Hyper{1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, t}; }

/** Elements whose bits differ, where two NaNs count as equal (payloads differ between CPU and GPU). */
std::size_t mismatchesNanEqual(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return SIZE_MAX;
  std::size_t count = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    count += std::memcmp(&a[i], &b[i], sizeof(float)) != 0 && !(std::isnan(a[i]) && std::isnan(b[i]));
  return count;
}

/** The device copy of a State. */
struct DevState {
  Dev<float> param;
  Dev<std::uint8_t> mCodes, vCodes;
  Dev<float> mAbsmax, vAbsmax;
  explicit DevState(const State& s) : param(s.param), mCodes(s.mCodes), vCodes(s.vCodes), mAbsmax(s.mAbsmax), vAbsmax(s.vAbsmax) {}
  void step(const Dev<float>& grad, std::int64_t t) {
    ft::cuda::adamw8bitStep(param.p, grad.p, mCodes.p, vCodes.p, mAbsmax.p, vAbsmax.p, param.n, hyperAt(t));
  }
};

}  // namespace

FT_TEST("adamw8bit", "adamw8bit step = CPU") {
  const int steps = 5;
  for (std::size_t n : {std::size_t{4096} * 3 + 77, std::size_t{1} << (small() ? 16 : 22)}) {
    State cpu = initialState(n, 21 + n);
    DevState gpu(cpu);
    std::size_t param = 0, codes = 0, absmax = 0;
    double cpuTime = 0;
    for (int t = 1; t <= steps; ++t) {
      const std::vector<float> g = gradient(n, 1000 * t + n);
      cpuTime = cpuMs([&] {
        ft::adamw8bit::step(cpu.param.data(), g.data(), cpu.mCodes.data(), cpu.vCodes.data(), cpu.mAbsmax.data(), cpu.vAbsmax.data(), n,
                            hyperAt(t));
      });
      Dev<float> dg(g);
      gpu.step(dg, t);
      FT_CUDA(cudaDeviceSynchronize());
      param += mismatches(gpu.param.download(), cpu.param);
      codes += mismatches(gpu.mCodes.download(), cpu.mCodes) + mismatches(gpu.vCodes.download(), cpu.vCodes);
      absmax += mismatches(gpu.mAbsmax.download(), cpu.mAbsmax) + mismatches(gpu.vAbsmax.download(), cpu.vAbsmax);
    }
    const std::string what = "n = " + std::to_string(n) + ", steps 1.." + std::to_string(steps) + ": ";
    rows.push_back({what + "param (bits differing)", static_cast<double>(param), 0, -1, -1, ""});
    rows.push_back({what + "m, v codes (differing)", static_cast<double>(codes), 0, -1, -1, ""});
    rows.push_back({what + "m, v absmax (bits differing)", static_cast<double>(absmax), 0, -1, -1, ""});

    // speed: further steps on the GPU state (the comparison is done)
    Dev<float> dg(gradient(n, 77 + n));
    const double gpuTime = gpuMs([&] { gpu.step(dg, steps + 1); });
    rows.push_back({"n = " + std::to_string(n) + " step time", 0, 0, gpuTime, cpuTime,
                    "M elements/s gpu " + std::to_string(static_cast<long long>(n / gpuTime / 1e3)) + ", cpu " +
                        std::to_string(static_cast<long long>(n / cpuTime / 1e3))});
  }
}

FT_TEST("adamw8bit", "adamw8bit non-finite gradients = CPU") {
  // Gradients must be finite (adamw.h), but a NaN or inf that slips through must still give the
  // CPU's codes and absmax: NaN is skipped by the maxima and encodes to 0, an inf absmax gives a
  // 0 inverse scale. Parameters that went NaN are compared as NaN (their payload may differ).
  const std::size_t n = 4096 * 3 + 77;
  State cpu = initialState(n, 5);
  DevState gpu(cpu);
  std::size_t param = 0, codes = 0, absmax = 0;
  for (int t = 1; t <= 4; ++t) {
    std::vector<float> g = gradient(n, 300 + t);
    if (t == 2) {
      g[5] = NAN;
      g[600] = INFINITY;
      g[n - 1] = -INFINITY;
    }
    ft::adamw8bit::step(cpu.param.data(), g.data(), cpu.mCodes.data(), cpu.vCodes.data(), cpu.mAbsmax.data(), cpu.vAbsmax.data(), n, hyperAt(t));
    Dev<float> dg(g);
    gpu.step(dg, t);
    FT_CUDA(cudaDeviceSynchronize());
    param += mismatchesNanEqual(gpu.param.download(), cpu.param);
    codes += mismatches(gpu.mCodes.download(), cpu.mCodes) + mismatches(gpu.vCodes.download(), cpu.vCodes);
    absmax += mismatches(gpu.mAbsmax.download(), cpu.mAbsmax) + mismatches(gpu.vAbsmax.download(), cpu.vAbsmax);
  }
  rows.push_back({"NaN, +inf, -inf at step 2: param (differing, NaN = NaN)", static_cast<double>(param), 0, -1, -1, ""});
  rows.push_back({"NaN, +inf, -inf at step 2: codes (differing)", static_cast<double>(codes), 0, -1, -1, ""});
  rows.push_back({"NaN, +inf, -inf at step 2: absmax (bits differing)", static_cast<double>(absmax), 0, -1, -1, ""});
}

FT_TEST("adamw8bit", "fp32 adamw step and scale = CPU") {
  // the state of tensors under kMinQuantized elements (the trainer's small LoRA tensors), and the
  // gradient clipping multiply: bit for bit, over several steps
  const std::size_t n = 4095;
  std::vector<float> p = randomVector(n, 31, 0.02f), m(n, 0.f), v(n, 0.f);
  Dev<float> dp(p), dm(m), dv(v);
  std::size_t differ = 0;
  for (int t = 1; t <= 4; ++t) {
    std::vector<float> g = gradient(n, 500 + t);
    const double clip = t % 2 == 0 ? 0.37 : 1.0;
    Dev<float> dg(g);
    ft::cuda::scale(dg.p, n, clip);
    for (auto& x : g) x = static_cast<float>(static_cast<double>(x) * clip);  // in double, rounded once
    ft::adamw::step(p.data(), g.data(), m.data(), v.data(), n, hyperAt(t));
    ft::cuda::adamwStep(dp.p, dg.p, dm.p, dv.p, n, hyperAt(t));
    FT_CUDA(cudaDeviceSynchronize());
    differ += mismatches(dg.download(), g);
  }
  rows.push_back({"4 steps, n = 4095: gradients x clip (bits differing)", static_cast<double>(differ), 0});
  rows.push_back({"params, m, v (bits differing)", static_cast<double>(mismatches(dp.download(), p) + mismatches(dm.download(), m) + mismatches(dv.download(), v)), 0});
}
