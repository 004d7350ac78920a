// harness.h: the CUDA kernels' test executable (ftcuda_tests), without a test framework.
//
// A test is a function registered with FT_TEST(group, name); it runs a kernel and its CPU reference
// on the same random inputs and reports one or more rows: what was compared, the error measured,
// the bound it must stay within, and the times. main() (harness.cu) runs the tests whose group
// or name matches the arguments (all without), prints one Markdown table, and exits 0 when every
// row is within its bound, 1 when one is not, and 77 when there is no CUDA device (ctest counts
// 77 as skipped: the machines that build this in CI have nvcc but no GPU).
//
// Error measure: max |gpu - ref| / max |ref| over the tensor (relative to the tensor's scale,
// so values near 0 do not blow it up). Bounds: 1e-3 where the kernel accumulates in fp32 from
// fp32 operands, 1e-2 where operands are fp16, 0 where the result must be bit-identical; bf16
// operands (8 bits of mantissa, not 11) get their own bounds where the rounding of an operand
// inside the kernel (P in attention, a gradient) is what the error measures, each said there.
// bf16 tests run where the GPU has bf16 tensor cores (sm_80+: bf16Ready); elsewhere they report
// one "skip" row with the reason, which does not count as a failure.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "../common.cuh"

namespace ft::test {

struct Row {
  std::string what;      // e.g. "rmsnorm fwd [4096 x 2560]"
  double error;          // the measured error (see above)
  double bound;          // must be <= bound
  double gpuMs = -1;     // kernel time, or -1
  double cpuMs = -1;     // reference time, or -1
  std::string note;      // e.g. "GFLOP/s 120"
  bool skipped = false;  // not run here (the note says why): neither ok nor FAIL
};

using TestFn = std::function<void(std::vector<Row>&)>;
int add(const char* group, const char* name, TestFn fn);

#define FT_TEST_CAT2(a, b) a##b
#define FT_TEST_CAT(a, b) FT_TEST_CAT2(a, b)
#define FT_TEST(group, name)                                                                          \
  static void FT_TEST_CAT(ft_test_, __LINE__)(std::vector<::ft::test::Row> & rows);                    \
  static const int FT_TEST_CAT(ft_test_reg_, __LINE__) = ::ft::test::add(group, name, FT_TEST_CAT(ft_test_, __LINE__)); \
  static void FT_TEST_CAT(ft_test_, __LINE__)(std::vector<::ft::test::Row> & rows)

/** Deterministic random numbers (splitmix64), so a failure reproduces. */
struct Rng {
  std::uint64_t s;
  explicit Rng(std::uint64_t seed) : s(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /** uniform in [-1, 1) */
  float uniform() { return static_cast<float>(static_cast<double>(next() >> 11) * 0x1.0p-53 * 2.0 - 1.0); }
  /** roughly N(0, 1) (sum of 4 uniforms, rescaled) */
  float normal() { return (uniform() + uniform() + uniform() + uniform()) * 0.8660254f; }
};

inline std::vector<float> randomVector(std::size_t n, std::uint64_t seed, float scale = 1.f) {
  Rng r(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = r.normal() * scale;
  return v;
}

/** A device buffer of n T, freed on scope exit. */
template <typename T>
struct Dev {
  T* p = nullptr;
  std::size_t n = 0;
  explicit Dev(std::size_t count) : n(count) { FT_CUDA(cudaMalloc(&p, (count == 0 ? 1 : count) * sizeof(T))); }
  Dev(const std::vector<T>& host) : Dev(host.size()) { upload(host); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  ~Dev() { cudaFree(p); }
  void upload(const std::vector<T>& host) { FT_CUDA(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> download() const {
    std::vector<T> h(n);
    FT_CUDA(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  void zero() { FT_CUDA(cudaMemset(p, 0, n * sizeof(T))); }
};

inline std::vector<__half> toHalf(const std::vector<float>& v) {
  std::vector<__half> h(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) h[i] = __float2half_rn(v[i]);
  return h;
}
inline std::vector<float> toFloat(const std::vector<__half>& v) {
  std::vector<float> f(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) f[i] = __half2float(v[i]);
  return f;
}
/** fp32 values rounded through fp16 (what a kernel that reads fp16 operands sees). */
inline std::vector<float> roundHalf(const std::vector<float>& v) { return toFloat(toHalf(v)); }

using ft::cuda::bf16;
inline std::vector<float> toFloat(const std::vector<bf16>& v) {
  std::vector<float> f(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) f[i] = __bfloat162float(v[i]);
  return f;
}
/** fp32 values as the operand type E (fp16 or bf16), rounded to nearest even. */
template <typename E>
inline std::vector<E> toOperand(const std::vector<float>& v) {
  if constexpr (std::is_same_v<E, __half>) return toHalf(v);
  else {
    std::vector<bf16> h(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) h[i] = __float2bfloat16_rn(v[i]);
    return h;
  }
}
/** fp32 values rounded through E (what a kernel that reads E operands sees). */
template <typename E>
inline std::vector<float> roundOperand(const std::vector<float>& v) { return toFloat(toOperand<E>(v)); }
/** "fp16" or "bf16". */
template <typename E>
inline const char* operandName() { return std::is_same_v<E, bf16> ? "bf16" : "fp16"; }

/**
 * Whether E's kernels run on this device: always for fp16; for bf16 where bf16Ready() says so,
 * else a "skip" row with the reason is added and the test should return.
 */
template <typename E>
inline bool operandHere(std::vector<Row>& rows) {
  if constexpr (std::is_same_v<E, __half>) return true;
  else {
    std::string why;
    if (ft::cuda::bf16Ready(&why)) return true;
    Row r{"bf16 operands", 0, 0};
    r.skipped = true;
    r.note = why;
    rows.push_back(r);
    return false;
  }
}

/** max |a - b| / max |b|; a non-finite value in a makes it infinite. */
inline double relError(const std::vector<float>& a, const std::vector<float>& b) {
  double maxDiff = 0, maxRef = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    maxDiff = std::fmax(maxDiff, std::fabs(static_cast<double>(a[i]) - b[i]));
    maxRef = std::fmax(maxRef, std::fabs(static_cast<double>(b[i])));
  }
  if (a.size() != b.size()) return INFINITY;
  return maxRef == 0 ? maxDiff : maxDiff / maxRef;
}

/** Count of elements that differ bit for bit. */
template <typename T>
inline std::size_t mismatches(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return SIZE_MAX;
  std::size_t n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) n += std::memcmp(&a[i], &b[i], sizeof(T)) != 0;
  return n;
}

/** FTCUDA_SMALL=1: the smaller shapes that the CPU simulator (../sim) can run in seconds, where a test's
 *  GPU-sized ones would take minutes; the default shapes are the GPU's. */
inline bool small() {
  const char* e = std::getenv("FTCUDA_SMALL");
  return e != nullptr && std::strcmp(e, "1") == 0;
}

/** Milliseconds of `f` on the GPU (the mean of `reps` runs after one warm-up). */
double gpuMs(const std::function<void()>& f, int reps = 5);
/** Milliseconds of `f` on the host. */
double cpuMs(const std::function<void()>& f);

}  // namespace ft::test
