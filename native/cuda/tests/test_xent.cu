// Fused cross-entropy: loss, lse and the in-place gradient against a CPU reference in double on
// the same fp16- (or bf16-) rounded logits.
#include <cmath>
#include <string>
#include <vector>

#include "../xent.cuh"
#include "harness.h"

using namespace ft::test;

namespace {

struct XentCase {
  int rows, V;
  std::vector<float> logits;  // [rows, V] rounded to the operand type
  std::vector<int> target;    // [rows]
};

/** Random logits (row r scaled by 1 + 2 (r % 4)), targets at both ends, masked rows, one peaked row. */
template <typename E = __half>
XentCase makeCase(int rows, int V, std::uint64_t seed) {
  XentCase c{rows, V, randomVector(static_cast<std::size_t>(rows) * V, seed), std::vector<int>(rows)};
  Rng r(seed + 1);
  for (int i = 0; i < rows; ++i) {
    const float scale = 1.0f + 2.0f * static_cast<float>(i % 4);
    for (int j = 0; j < V; ++j) c.logits[static_cast<std::size_t>(i) * V + j] *= scale;
    c.target[i] = static_cast<int>(r.next() % static_cast<std::uint64_t>(V));
  }
  c.target[0] = 0;
  if (rows > 1) c.target[1] = V - 1;
  if (rows > 2) c.target[2] = -1;
  if (rows > 5) c.target[5] = -1;
  if (rows > 3) c.logits[static_cast<std::size_t>(3) * V + c.target[3]] += 60.0f;  // softmax ~ one-hot: loss ~ 0
  if (rows > 7) c.target[rows - 1] = -1;
  c.logits = roundOperand<E>(c.logits);
  return c;
}

/** The definition, in double: lse, loss (0 for target -1), gradient (0 for target -1). */
void reference(const XentCase& c, float gradScale, std::vector<float>& loss, std::vector<float>& lse, std::vector<float>& grad) {
  loss.assign(c.rows, 0.0f);
  lse.assign(c.rows, 0.0f);
  grad.assign(c.logits.size(), 0.0f);
  for (int i = 0; i < c.rows; ++i) {
    const float* x = &c.logits[static_cast<std::size_t>(i) * c.V];
    double mx = -INFINITY;
    for (int j = 0; j < c.V; ++j) mx = std::fmax(mx, static_cast<double>(x[j]));
    double sum = 0;
    for (int j = 0; j < c.V; ++j) sum += std::exp(static_cast<double>(x[j]) - mx);
    const double l = mx + std::log(sum);
    lse[i] = static_cast<float>(l);
    const int t = c.target[i];
    if (t < 0) continue;
    loss[i] = static_cast<float>(l - x[t]);
    float* g = &grad[static_cast<std::size_t>(i) * c.V];
    for (int j = 0; j < c.V; ++j) g[j] = static_cast<float>((std::exp(static_cast<double>(x[j]) - l) - (j == t ? 1.0 : 0.0)) * gradScale);
  }
}

}  // namespace

template <typename E>
void fwdBwd(std::vector<Row>& rows) {
  const float gradScale = 3.0f;
  // 151936: 16-byte loads; 1002: half2; 1001 (odd): single halves
  for (const auto& dims : {std::pair{small() ? 8 : 64, 151936}, std::pair{37, 1002}, std::pair{37, 1001}}) {
    const int nRows = dims.first, V = dims.second;
    const XentCase c = makeCase<E>(nRows, V, 100 + static_cast<std::uint64_t>(V));
    std::vector<float> refLoss, refLse, refGrad;
    const double cpu = cpuMs([&] { reference(c, gradScale, refLoss, refLse, refGrad); });
    const std::vector<E> x16 = toOperand<E>(c.logits);
    Dev<E> logits(x16);
    Dev<int> target(c.target);
    Dev<float> loss(nRows), lse(nRows);
    ft::cuda::xentForwardBackward(logits.p, nRows, V, target.p, gradScale, loss.p, lse.p);
    FT_CUDA(cudaDeviceSynchronize());
    const std::vector<float> gpuLoss = loss.download();
    const std::vector<E> gpuGrad16 = logits.download();
    const std::string shape = " [" + std::to_string(nRows) + " x " + std::to_string(V) + "]" + (std::is_same_v<E, bf16> ? " bf16" : "");
    rows.push_back({"loss" + shape, relError(gpuLoss, refLoss), 1e-3, -1, cpu, ""});
    rows.push_back({"lse" + shape, relError(lse.download(), refLse), 1e-3, -1, -1, ""});
    rows.push_back({std::string("gradient (") + operandName<E>() + ")" + shape, relError(toFloat(gpuGrad16), refGrad), 1e-2, -1, -1, ""});

    // lse = null: the same loss and gradient, bit for bit (masked rows then skip pass 1)
    Dev<E> logits2(x16);
    Dev<float> loss2(nRows);
    ft::cuda::xentForwardBackward(logits2.p, nRows, V, target.p, gradScale, loss2.p, nullptr);
    FT_CUDA(cudaDeviceSynchronize());
    rows.push_back({"lse = null: loss and gradient" + shape + " (bits differing)",
                    static_cast<double>(mismatches(loss2.download(), gpuLoss) + mismatches(logits2.download(), gpuGrad16)), 0, -1, -1, ""});
  }
}

FT_TEST("xent", "cross-entropy fwd+bwd") {
  fwdBwd<__half>(rows);
  fwdBwd<bf16>(rows);  // no tensor cores here: bf16 logits run on every GPU
}

FT_TEST("xent", "cross-entropy speed") {
  // 512 rows of the Qwen3 vocabulary: 8 copies of a 64-row case
  const int V = 151936, baseRows = 64, copies = 8, nRows = baseRows * copies;
  const XentCase c = makeCase(baseRows, V, 7);
  const std::vector<__half> x16 = toHalf(c.logits);
  Dev<__half> logits(static_cast<std::size_t>(nRows) * V);
  std::vector<int> targets;
  for (int k = 0; k < copies; ++k) {
    FT_CUDA(cudaMemcpy(logits.p + static_cast<std::size_t>(k) * x16.size(), x16.data(), x16.size() * sizeof(__half), cudaMemcpyHostToDevice));
    targets.insert(targets.end(), c.target.begin(), c.target.end());
  }
  Dev<int> target(targets);
  Dev<float> loss(nRows), lse(nRows);
  ft::cuda::xentForwardBackward(logits.p, nRows, V, target.p, 1.0f, loss.p, lse.p);
  FT_CUDA(cudaDeviceSynchronize());
  const std::vector<float> firstLoss = loss.download();
  // the first run's losses: every copy = the 64-row reference
  std::vector<float> refLoss, refLse, refGrad;
  reference(c, 1.0f, refLoss, refLse, refGrad);
  std::vector<float> refAll;
  for (int k = 0; k < copies; ++k) refAll.insert(refAll.end(), refLoss.begin(), refLoss.end());
  // timed runs: the row now holds a gradient, which costs the same to process
  const double gpu = gpuMs([&] { ft::cuda::xentForwardBackward(logits.p, nRows, V, target.p, 1.0f, loss.p, lse.p); });
  const double bytes = 3.0 * nRows * static_cast<double>(V) * sizeof(__half);  // two reads and one write of the logits
  rows.push_back({"loss [512 x 151936] (first run)", relError(firstLoss, refAll), 1e-3, gpu, -1,
                  "GB/s " + std::to_string(static_cast<int>(bytes / gpu / 1e6)) + " (2 reads + 1 write)"});
}
