// RMSNorm, RoPE and SwiGLU on the GPU against the CPU backend's own functions (src/layers.h) and,
// for SwiGLU, the definition.
#include <array>
#include <cmath>

#include "../layers.cuh"
#include "harness.h"
#include "layers.h"

using namespace ft::test;

FT_TEST("norm", "rmsnorm forward and backward") {
  // the layer norm over C = 2560 and Qwen3's q norm over each head's D = 128
  for (const auto& dims : {std::pair<int, int>{small() ? 64 : 4096, 2560}, std::pair<int, int>{small() ? 64 * 4 : 4096 * 32, 128}, std::pair<int, int>{3, 37}}) {
    const int rows_ = dims.first, width = dims.second;
    const std::size_t n = static_cast<std::size_t>(rows_) * width;
    const auto x = randomVector(n, 41), w = randomVector(width, 42, 0.5f), dy = randomVector(n, 43);
    std::vector<float> y(n), rstd(rows_), dx(n, 0.25f);
    const double cpu = cpuMs([&] { ft::layers::rmsForward(y.data(), rstd.data(), x.data(), w.data(), rows_, width, 1e-6f); });
    ft::layers::rmsBackward(dx.data(), dy.data(), x.data(), rstd.data(), w.data(), rows_, width);
    Dev<float> dX(x), dW(w), dY(n), dR(rows_), dDy(dy), dDx(std::vector<float>(n, 0.25f));
    Dev<__half> dY16(n);
    Dev<bf16> dYb(n);
    const double gpu = gpuMs([&] { ft::cuda::rmsnormForward(dX.p, dW.p, dY.p, dR.p, rows_, width, 1e-6f); });
    ft::cuda::rmsnormForward(dX.p, dW.p, dY16.p, dR.p, rows_, width, 1e-6f);
    ft::cuda::rmsnormForward(dX.p, dW.p, dYb.p, dR.p, rows_, width, 1e-6f);
    ft::cuda::rmsnormBackward(dDy.p, dX.p, dR.p, dW.p, dDx.p, rows_, width);
    FT_CUDA(cudaDeviceSynchronize());
    const std::string shape = "[" + std::to_string(rows_) + " x " + std::to_string(width) + "]";
    rows.push_back({"forward " + shape, relError(dY.download(), y), 1e-3, gpu, cpu, "GB/s " + std::to_string(static_cast<int>(n * 8.0 / gpu / 1e6))});
    rows.push_back({"rstd " + shape, relError(dR.download(), rstd), 1e-3});
    rows.push_back({"forward, fp16 out " + shape, relError(toFloat(dY16.download()), y), 1e-2});
    rows.push_back({"forward, bf16 out " + shape, relError(toFloat(dYb.download()), y), 1e-2});
    rows.push_back({"backward dx (+=) " + shape, relError(dDx.download(), dx), 1e-3});
  }
}

FT_TEST("rope", "rope forward and inverse") {
  // Qwen3-4B: 32 q heads of 128, theta 1e6, 2 sequences of 2048; and an odd small case
  for (const auto& dims : {small() ? std::array<int, 4>{2, 64, 4, 128} : std::array<int, 4>{2, 2048, 32, 128}, std::array<int, 4>{3, 5, 2, 6}}) {
    const int B = dims[0], T = dims[1], heads = dims[2], D = dims[3];
    const int N = B * T;
    std::vector<float> c, s;
    ft::layers::ropeTables(T, D, 1e6f, c, s);
    const auto x = randomVector(static_cast<std::size_t>(N) * heads * D, 51);
    auto ref = x;
    const double cpu = cpuMs([&] { ft::layers::rope(ref.data(), N, heads, D, T, c, s, false); });
    Dev<float> dX(x), dC(c), dS(s);
    Dev<__half> dX16(toHalf(x));
    Dev<bf16> dXb(toOperand<bf16>(x));
    const double gpu = gpuMs([&] {
      ft::cuda::rope(dX.p, N, heads, D, T, dC.p, dS.p, false);
      ft::cuda::rope(dX.p, N, heads, D, T, dC.p, dS.p, true);  // and back: the timed pair leaves x as it was
    });
    ft::cuda::rope(dX.p, N, heads, D, T, dC.p, dS.p, false);
    ft::cuda::rope(dX16.p, N, heads, D, T, dC.p, dS.p, false);
    ft::cuda::rope(dXb.p, N, heads, D, T, dC.p, dS.p, false);
    FT_CUDA(cudaDeviceSynchronize());
    const std::string shape = "[" + std::to_string(N) + " x " + std::to_string(heads) + " x " + std::to_string(D) + "]";
    rows.push_back({"forward " + shape, relError(dX.download(), ref), 1e-5, gpu / 2, cpu});
    rows.push_back({"forward fp16 " + shape, relError(toFloat(dX16.download()), ref), 1e-2});
    rows.push_back({"forward bf16 " + shape, relError(toFloat(dXb.download()), ref), 1e-2});
    auto back = ref;
    ft::layers::rope(back.data(), N, heads, D, T, c, s, true);
    ft::cuda::rope(dX.p, N, heads, D, T, dC.p, dS.p, true);
    FT_CUDA(cudaDeviceSynchronize());
    rows.push_back({"inverse " + shape, relError(dX.download(), back), 1e-5});
  }
}

FT_TEST("swiglu", "swiglu forward and backward") {
  const std::size_t n = static_cast<std::size_t>(4096) * (small() ? 9 : 9728) + 5;
  const auto g = randomVector(n, 61, 2.f), u = randomVector(n, 62), da = randomVector(n, 63);
  std::vector<float> a(n), dg(n), du(n);
  const double cpu = cpuMs([&] {
    for (std::size_t i = 0; i < n; ++i) {
      const double s = 1.0 / (1.0 + std::exp(-static_cast<double>(g[i])));
      a[i] = static_cast<float>(g[i] * s * u[i]);
      dg[i] = static_cast<float>(da[i] * u[i] * s * (1.0 + g[i] * (1.0 - s)));
      du[i] = static_cast<float>(da[i] * g[i] * s);
    }
  });
  Dev<float> dG(g), dU(u), dA(n), dDa(da), dDg(n), dDu(n);
  Dev<__half> dA16(n);
  Dev<bf16> dAb(n);
  const double gpu = gpuMs([&] { ft::cuda::swigluForward(dG.p, dU.p, dA.p, n); });
  ft::cuda::swigluForward(dG.p, dU.p, dA16.p, n);
  ft::cuda::swigluForward(dG.p, dU.p, dAb.p, n);
  ft::cuda::swigluBackward(dDa.p, dG.p, dU.p, dDg.p, dDu.p, n);
  FT_CUDA(cudaDeviceSynchronize());
  rows.push_back({"forward, n = " + std::to_string(n), relError(dA.download(), a), 1e-5, gpu, cpu, "GB/s " + std::to_string(static_cast<int>(n * 12.0 / gpu / 1e6))});
  rows.push_back({"forward fp16", relError(toFloat(dA16.download()), a), 1e-2});
  rows.push_back({"forward bf16", relError(toFloat(dAb.download()), a), 1e-2});
  rows.push_back({"backward dg", relError(dDg.download(), dg), 1e-5});
  rows.push_back({"backward du", relError(dDu.download(), du), 1e-5});
}
