// NF4 and double-quantized absmax: GPU dequantization = the CPU reference, bit for bit.
#include "../nf4.cuh"
#include "double_quant.h"
#include "harness.h"
#include "nf4.h"

using namespace ft::test;

FT_TEST("nf4", "nf4 dequantize") {
  for (std::size_t n : {std::size_t{1}, std::size_t{63}, std::size_t{65}, std::size_t{2560} * (small() ? 97 : 9728) + 3}) {
    const auto x = randomVector(n, 11 + n, 0.02f);
    std::vector<std::uint8_t> codes(ft::nf4::codeBytes(n));
    std::vector<float> absmax(ft::nf4::absmaxCount(n));
    ft::nf4::quantize(x.data(), n, codes.data(), absmax.data());
    std::vector<float> ref(n);
    const double cpu = cpuMs([&] { ft::nf4::dequantize(codes.data(), absmax.data(), n, ref.data()); });
    Dev<std::uint8_t> dc(codes);
    Dev<float> da(absmax);
    Dev<float> out(n);
    Dev<__half> out16(n);
    const double gpu = gpuMs([&] { ft::cuda::nf4Dequantize(dc.p, da.p, n, out.p); });
    ft::cuda::nf4Dequantize(dc.p, da.p, n, out16.p);
    FT_CUDA(cudaDeviceSynchronize());
    rows.push_back({"fp32 out, n = " + std::to_string(n) + " (bits differing)", static_cast<double>(mismatches(out.download(), ref)), 0, gpu, cpu,
                    "GB/s " + std::to_string(static_cast<int>((n / 2.0 + n * 4.0) / gpu / 1e6))});
    rows.push_back({"fp16 out, n = " + std::to_string(n) + " (bits differing)", static_cast<double>(mismatches(out16.download(), toHalf(ref))), 0});
    // bf16 conversion is plain arithmetic (no tensor cores): it runs on every GPU
    Dev<bf16> outB(n);
    ft::cuda::nf4Dequantize(dc.p, da.p, n, outB.p);
    FT_CUDA(cudaDeviceSynchronize());
    rows.push_back({"bf16 out, n = " + std::to_string(n) + " (bits differing)", static_cast<double>(mismatches(outB.download(), toOperand<bf16>(ref))), 0});
  }
}

FT_TEST("nf4", "double-quantized absmax") {
  const std::size_t n = 2560 * (small() ? 97 : 9728) / 64 + 7;
  const auto absmax = randomVector(n, 5, 0.01f);
  std::vector<float> pos(n);
  for (std::size_t i = 0; i < n; ++i) pos[i] = std::fabs(absmax[i]);
  std::vector<std::uint8_t> q(n);
  std::vector<float> scales(ft::dq::scaleCount(n));
  const float offset = ft::dq::quantize(pos.data(), n, q.data(), scales.data());
  std::vector<float> ref(n);
  ft::dq::dequantize(q.data(), scales.data(), offset, n, ref.data());
  Dev<std::uint8_t> dq(q);
  Dev<float> ds(scales);
  Dev<float> out(n);
  ft::cuda::dqDequantize(dq.p, ds.p, offset, n, out.p);
  FT_CUDA(cudaDeviceSynchronize());
  rows.push_back({"n = " + std::to_string(n) + " (bits differing)", static_cast<double>(mismatches(out.download(), ref)), 0});
}
