// harness.cu: main() of ftcuda_tests (see harness.h).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>

#include "harness.h"

namespace ft::test {

namespace {
struct Entry {
  const char* group;
  const char* name;
  TestFn fn;
};
std::vector<Entry>& registry() {
  static std::vector<Entry> r;
  return r;
}
}  // namespace

int add(const char* group, const char* name, TestFn fn) {
  registry().push_back({group, name, std::move(fn)});
  return 0;
}

double gpuMs(const std::function<void()>& f, int reps) {
  f();  // warm-up (and JIT of PTX on a GPU without SASS for it)
  FT_CUDA(cudaDeviceSynchronize());
  cudaEvent_t a, b;
  FT_CUDA(cudaEventCreate(&a));
  FT_CUDA(cudaEventCreate(&b));
  FT_CUDA(cudaEventRecord(a));
  for (int i = 0; i < reps; ++i) f();
  FT_CUDA(cudaEventRecord(b));
  FT_CUDA(cudaEventSynchronize(b));
  float ms = 0;
  FT_CUDA(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms / reps;
}

double cpuMs(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace ft::test

int main(int argc, char** argv) {
  using namespace ft::test;
  std::vector<std::string> filters(argv + 1, argv + argc);
  if (!filters.empty() && filters[0] == "--list") {
    for (const auto& e : registry()) std::printf("%s %s\n", e.group, e.name);
    return 0;
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: %zu tests not run (built for: %s)\n", registry().size(), FT_CUDA_ARCHS);
    return 77;
  }
  cudaDeviceProp prop{};
  FT_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d, %d SMs, %.1f GiB); built for %s\n\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount,
              prop.totalGlobalMem / 1073741824.0, FT_CUDA_ARCHS);
  std::printf("| test | compared | error | bound | ok | gpu ms | cpu ms | note |\n|---|---|---:|---:|---|---:|---:|---|\n");
  int failed = 0, ran = 0, skipped = 0;
  for (const auto& e : registry()) {
    bool wanted = filters.empty();
    for (const auto& f : filters) wanted |= f == e.group || f == e.name;
    if (!wanted) continue;
    ++ran;
    std::vector<Row> rows;
    try {
      e.fn(rows);
    } catch (const std::exception& x) {
      std::printf("| %s | (threw) | | | FAIL | | | %s |\n", e.name, x.what());
      ++failed;
      cudaGetLastError();
      continue;
    }
    for (const auto& r : rows) {
      if (r.skipped) {
        ++skipped;
        std::printf("| %s | %s | | | skip | | | %s |\n", e.name, r.what.c_str(), r.note.c_str());
        continue;
      }
      const bool ok = r.error <= r.bound;
      failed += !ok;
      char gpu[32] = "", cpu[32] = "";
      if (r.gpuMs >= 0) std::snprintf(gpu, sizeof gpu, "%.3f", r.gpuMs);
      if (r.cpuMs >= 0) std::snprintf(cpu, sizeof cpu, "%.1f", r.cpuMs);
      std::printf("| %s | %s | %.3g | %.3g | %s | %s | %s | %s |\n", e.name, r.what.c_str(), r.error, r.bound, ok ? "ok" : "FAIL", gpu, cpu,
                  r.note.c_str());
    }
    std::fflush(stdout);
  }
  std::printf("\n%d tests, %d rows failed", ran, failed);
  if (skipped > 0) std::printf(", %d rows skipped", skipped);
  std::printf("\n");
  return failed == 0 ? 0 : 1;
}
