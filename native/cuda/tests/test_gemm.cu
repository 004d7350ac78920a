// gemm / gemmNf4 against a plain double-precision product on the same fp16- or bf16-rounded operands.
// Large shapes are checked on a sample of rows (the CPU would take minutes for all of them).
#include <array>
#include <tuple>

#include "../gemm.cuh"
#include "harness.h"
#include "nf4.h"

using namespace ft::test;
using ft::cuda::GemmShape;

namespace {

/** The reference: C rows `rows` of alpha op(A) op(B) + beta C0 in double, A and B as fp32 values. */
std::vector<float> reference(const GemmShape& s, float alpha, const std::vector<float>& A, const std::vector<float>& B, float beta,
                             const std::vector<float>& C0, const std::vector<int>& rows) {
  std::vector<float> out(rows.size() * s.N);
  for (std::size_t ri = 0; ri < rows.size(); ++ri) {
    const int m = rows[ri];
    for (int n = 0; n < s.N; ++n) {
      double acc = 0;
      for (int k = 0; k < s.K; ++k) {
        const double a = s.transA ? A[static_cast<std::size_t>(k) * s.lda + m] : A[static_cast<std::size_t>(m) * s.lda + k];
        const double b = s.transB ? B[static_cast<std::size_t>(n) * s.ldb + k] : B[static_cast<std::size_t>(k) * s.ldb + n];
        acc += a * b;
      }
      out[ri * s.N + n] = static_cast<float>(alpha * acc + (beta == 0 ? 0.0 : beta * C0[static_cast<std::size_t>(m) * s.ldc + n]));
    }
  }
  return out;
}

std::vector<float> pick(const std::vector<float>& C, const GemmShape& s, const std::vector<int>& rows) {
  std::vector<float> out(rows.size() * s.N);
  for (std::size_t ri = 0; ri < rows.size(); ++ri)
    for (int n = 0; n < s.N; ++n) out[ri * s.N + n] = C[static_cast<std::size_t>(rows[ri]) * s.ldc + n];
  return out;
}

std::vector<int> sampleRows(int M) {
  if (M <= 256) {
    std::vector<int> all(M);
    for (int i = 0; i < M; ++i) all[i] = i;
    return all;
  }
  std::vector<int> r;
  for (int i = 0; i < 8; ++i) r.push_back(i);
  for (int i = 1; i <= 8; ++i) r.push_back(M / 2 + i * 7);
  for (int i = 8; i >= 1; --i) r.push_back(M - i);
  return r;
}

std::string describe(const GemmShape& s) {
  return "[" + std::to_string(s.M) + " x " + std::to_string(s.K) + "] x [" + std::to_string(s.K) + " x " + std::to_string(s.N) + "]" +
         (s.transA ? " A^T" : "") + (s.transB ? " B^T" : "");
}

GemmShape shape(int M, int N, int K, bool tA, bool tB) { return {M, N, K, tA, tB, tA ? M : K, tB ? K : N, N}; }

}  // namespace

template <typename E>
void everyLayout(std::vector<Row>& rows) {
  if (!operandHere<E>(rows)) return;
  const std::string op = operandName<E>();
  for (bool tA : {false, true})
    for (bool tB : {false, true})
      for (auto dims : {std::array<int, 3>{70, 45, 33}, std::array<int, 3>{128, 64, 96}, std::array<int, 3>{1, 300, 17}}) {
        const GemmShape s = shape(dims[0], dims[1], dims[2], tA, tB);
        const auto A = roundOperand<E>(randomVector(static_cast<std::size_t>(s.M) * s.K, 1 + tA + 2 * tB));
        const auto B = roundOperand<E>(randomVector(static_cast<std::size_t>(s.K) * s.N, 7 + tA + 2 * tB));
        const auto C0 = randomVector(static_cast<std::size_t>(s.M) * s.N, 13);
        Dev<E> dA(toOperand<E>(A)), dB(toOperand<E>(B));
        Dev<float> dC(C0);
        ft::cuda::gemm(s, 0.5f, dA.p, dB.p, 2.f, dC.p);
        FT_CUDA(cudaDeviceSynchronize());
        const auto rows_ = sampleRows(s.M);
        rows.push_back({describe(s) + ", alpha 0.5, beta 2, fp32 out", relError(pick(dC.download(), s, rows_), reference(s, 0.5f, A, B, 2.f, C0, rows_)), 1e-3});
        Dev<E> dH(static_cast<std::size_t>(s.M) * s.N);
        ft::cuda::gemm(s, 1.f, dA.p, dB.p, 0.f, dH.p);
        FT_CUDA(cudaDeviceSynchronize());
        // a 16-bit output is one rounding of the fp32 result: 2^-11 (fp16) or 2^-8 (bf16) relative
        rows.push_back({describe(s) + ", " + op + " out", relError(pick(toFloat(dH.download()), s, rows_), reference(s, 1.f, A, B, 0.f, C0, rows_)), 1e-2});
      }
}

template <typename E>
void qwenProjections(std::vector<Row>& rows) {
  if (!operandHere<E>(rows)) return;
  // x W^T for the MLP (2 x 2048 tokens, 2560 → 9728) and its input gradient, 16-bit weights
  for (auto [M, N, K, tB] : {std::tuple<int, int, int, bool>{4096, 9728, 2560, true}, std::tuple<int, int, int, bool>{4096, 2560, 9728, false}}) {
    const GemmShape s = shape(M, N, K, false, tB);
    const auto A = roundOperand<E>(randomVector(static_cast<std::size_t>(M) * K, 21));
    const auto B = roundOperand<E>(randomVector(static_cast<std::size_t>(K) * N, 22, 0.02f));
    Dev<E> dA(toOperand<E>(A)), dB(toOperand<E>(B));
    Dev<float> dC(static_cast<std::size_t>(M) * N);
    const double ms = gpuMs([&] { ft::cuda::gemm(s, 1.f, dA.p, dB.p, 0.f, dC.p); });
    const auto rows_ = sampleRows(M);
    std::vector<float> ref;
    const double cpu = cpuMs([&] { ref = reference(s, 1.f, A, B, 0.f, {}, rows_); });
    rows.push_back({describe(s) + " " + operandName<E>() + " (24 rows checked)", relError(pick(dC.download(), s, rows_), ref), 1e-3, ms, cpu,
                    "TFLOP/s " + std::to_string(2.0 * M * N * K / ms / 1e9)});
  }
}

template <typename E>
void nf4Product(std::vector<Row>& rows) {
  if (!operandHere<E>(rows)) return;
  std::vector<std::tuple<int, int, int, bool>> shapes{{77, 130, 96, true}, {77, 96, 130, false}};
  if (!small()) shapes.emplace_back(4096, 9728, 2560, true);  // a Qwen3-4B MLP projection
  for (auto [M, N, K, tB] : shapes) {
    const GemmShape s = shape(M, N, K, false, tB);
    const std::size_t count = static_cast<std::size_t>(N) * K;
    const auto W = randomVector(count, 31, 0.02f);
    std::vector<std::uint8_t> codes(ft::nf4::codeBytes(count));
    std::vector<float> absmax(ft::nf4::absmaxCount(count));
    ft::nf4::quantize(W.data(), count, codes.data(), absmax.data());
    std::vector<float> Wq(count);
    ft::nf4::dequantize(codes.data(), absmax.data(), count, Wq.data());
    const auto B = roundOperand<E>(Wq);  // what the kernel stages: the dequantized value as E
    const auto A = roundOperand<E>(randomVector(static_cast<std::size_t>(M) * K, 32));
    Dev<E> dA(toOperand<E>(A));
    Dev<std::uint8_t> dCodes(codes);
    Dev<float> dAbs(absmax);
    Dev<float> dC(static_cast<std::size_t>(M) * N);
    const double ms = gpuMs([&] { ft::cuda::gemmNf4(s, 1.f, dA.p, dCodes.p, dAbs.p, 0.f, dC.p); });
    const auto rows_ = sampleRows(M);
    rows.push_back({describe(s) + ", NF4 B, " + operandName<E>() + " A", relError(pick(dC.download(), s, rows_), reference(s, 1.f, A, B, 0.f, {}, rows_)),
                    1e-3, ms, -1, "TFLOP/s " + std::to_string(2.0 * M * N * K / ms / 1e9)});
  }
}

FT_TEST("gemm", "fp16 gemm, every layout") { everyLayout<__half>(rows); }
FT_TEST("gemm", "bf16 gemm, every layout") { everyLayout<bf16>(rows); }
FT_TEST("gemm", "Qwen3-4B projections") { qwenProjections<__half>(rows); }
FT_TEST("gemm", "Qwen3-4B projections, bf16") { qwenProjections<bf16>(rows); }
FT_TEST("gemm", "NF4 weights dequantized in the product") { nf4Product<__half>(rows); }
FT_TEST("gemm", "NF4 weights dequantized in the product, bf16") { nf4Product<bf16>(rows); }
