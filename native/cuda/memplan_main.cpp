// ftcuda_memplan: prints the memory plan of a Qwen3-4B QLoRA step (memplan.h) and exits 1 when
// the peak exceeds 14 GiB (what a 15 GB T4 leaves). No GPU needed.
//   ftcuda_memplan [batch] [seqLen] [rank]
#include <cstdio>
#include <cstdlib>
#include <map>

#include "memplan.h"

int main(int argc, char** argv) {
  using namespace ft::memplan;
  const Model m = qwen3_4b();
  Run r{argc > 1 ? std::atoll(argv[1]) : 2, argc > 2 ? std::atoll(argv[2]) : 2048, argc > 3 ? std::atoll(argv[3]) : 16, true, 512, 512ll << 20};
  const auto items = plan(m, r);
  const double GiB = 1024.0 * 1024 * 1024;
  std::printf("Qwen3-4B QLoRA step: batch %lld x %lld tokens, LoRA r=%lld on all 7 projections (%lld parameters), checkpointing; 16-bit operands (fp16, or bf16 on sm_80+: the same bytes)\n\n", r.batch,
              r.seqLen, r.rank, loraParams(m, r.rank));
  std::printf("| group | buffer | GiB |\n|---|---|---:|\n");
  std::map<std::string, long long> groups;
  for (const auto& i : items) {
    std::printf("| %s | %s | %.3f |\n", i.group.c_str(), i.what.c_str(), i.bytes / GiB);
    groups[i.group] += i.bytes;
  }
  std::printf("\n| group | GiB |\n|---|---:|\n");
  for (const auto& [g, b] : groups) std::printf("| %s | %.2f |\n", g.c_str(), b / GiB);
  const long long t = total(items);
  const bool fits = t <= 14ll * 1024 * 1024 * 1024;
  std::printf("| **peak** | **%.2f** |\n\npeak %.2f GiB: %s the 14 GiB goal (a T4 has 15 GB)\n", t / GiB, t / GiB, fits ? "within" : "OVER");
  return fits ? 0 : 1;
}
