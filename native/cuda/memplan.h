// memplan.h: the GPU memory plan of a QLoRA training step (plain C++, runs anywhere).
//
// Every buffer the CUDA training step holds at its peak, from the model's shapes and the run's
// settings (16-bit operands: fp16 or bf16, the same bytes; "fp16" below means either): the
// frozen base (NF4 codes, double-quantized absmax, the tied embedding in fp16),
// LoRA (fp32 master weights, fp16 copies for the products, fp32 gradients), 8-bit AdamW
// moments, activations (with checkpointing: each layer's fp32 input, plus the one layer being
// recomputed and its gradients during backward), the output head (a chunk of fp16 logits at a
// time, never T x V), and the CUDA context. Used by ftcuda_memplan (a ctest, no GPU needed) to
// show that Qwen3-4B at 2 x 2048 tokens fits a 15 GB T4 (goal: peak <= 14 GiB).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ft::memplan {

struct Model {
  long long hidden, intermediate, heads, kvHeads, headDim, layers, vocab;
};
struct Run {
  long long batch, seqLen, rank;
  bool checkpointing;
  long long logitRows;     // rows of logits computed at once by the head (fp16 [logitRows, V])
  long long contextBytes;  // the CUDA context and allocator slack (measured by the GPU check)
  bool dropout = true;     // LoRA dropout > 0 (the profile's 0.05): two [N, intermediate] buffers
};
struct Item {
  std::string group, what;
  long long bytes;
};

Model qwen3_4b();
/** The buffers of the step at its peak (backward of one layer), by group. */
std::vector<Item> plan(const Model& m, const Run& r);
long long total(const std::vector<Item>& items);
/** Parameters of the seven adapted projections (PEFT's count for rank r on all of them). */
long long loraParams(const Model& m, long long rank);

}  // namespace ft::memplan
