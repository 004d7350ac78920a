// memplan.cpp: see memplan.h. Sizes follow the buffers of the planned CUDA step one by one.
#include "memplan.h"

namespace ft::memplan {

Model qwen3_4b() { return {2560, 9728, 32, 8, 128, 36, 151936}; }

namespace {
/** Weights of the seven projections of one layer. */
long long linearParams(const Model& m) {
  const long long C = m.hidden, I = m.intermediate, q = m.heads * m.headDim, kv = m.kvHeads * m.headDim;
  return q * C + 2 * kv * C + C * q + 3 * I * C;
}
}  // namespace

long long loraParams(const Model& m, long long r) {
  const long long C = m.hidden, I = m.intermediate, q = m.heads * m.headDim, kv = m.kvHeads * m.headDim;
  const long long perLayer = r * (C + q) + 2 * r * (C + kv) + r * (q + C) + 2 * r * (C + I) + r * (I + C);
  return perLayer * m.layers;
}

std::vector<Item> plan(const Model& m, const Run& r) {
  const long long N = r.batch * r.seqLen, C = m.hidden, I = m.intermediate, D = m.headDim;
  const long long HD = m.heads * D, KD = m.kvHeads * D, L = m.layers;
  const long long lin = linearParams(m) * L;
  const long long P = loraParams(m, r.rank);
  std::vector<Item> v;
  // the frozen base
  v.push_back({"weights", "NF4 codes of the projections (4 bits each)", lin / 2});
  v.push_back({"weights", "double-quantized absmax (a byte per 64, a float per 256 of those)", lin / 64 + lin / 64 / 256 * 4 + 4});
  v.push_back({"weights", "embedding = tied head, fp16", m.vocab * C * 2});
  v.push_back({"weights", "norm weights, fp32", L * (2 * C + 2 * D) * 4 + C * 4});
  // LoRA
  v.push_back({"LoRA", "A and B, fp32 master weights", P * 4});
  v.push_back({"LoRA", "A and B, fp16 copies for the products", P * 2});
  v.push_back({"LoRA", "gradients, fp32", P * 4});
  // optimizer
  // on the device, where the trainer (stages/train) runs the optimizer step on the CUDA backend
  v.push_back({"optimizer", "8-bit AdamW moments (m and v codes, absmax per 256)", P * 2 + 2 * ((P + 255) / 256) * 4});
  // activations
  const long long kept = r.checkpointing ? L : 1;
  v.push_back({"activations", r.checkpointing ? "each layer's input (fp32 residual stream), kept" : "the first layer's input", kept * N * C * 4});
  // one layer live: recomputed (or, without checkpointing, every layer: times L)
  const long long layerActs = N * C * 2 + N * 4            // norm 1 out (fp16), rstd
                              + (N * HD + 2 * N * KD) * 4  // q, k, v pre-norm (fp32)
                              + 2 * N * 4 * m.heads        // q/k rstd
                              + (N * HD + 2 * N * KD) * 2  // q, k (normed, roped), v: fp16 attention operands
                              + r.batch * m.heads * r.seqLen * 4  // attention log-sum-exp
                              + N * HD * 2                 // attention output (fp16)
                              + N * C * 4                  // after attention (residual, fp32)
                              + N * C * 2 + N * 4          // norm 2 out, rstd
                              + 2 * N * I * 4              // gate, up (fp32)
                              + N * I * 2                  // silu(gate) * up (fp16)
                              + 7 * N * r.rank * 4;        // x A^T of each LoRA (fp32)
  v.push_back({"activations", r.checkpointing ? "one layer recomputed in backward" : "every layer's activations", (r.checkpointing ? 1 : L) * layerActs});
  const long long layerGrads = 2 * N * C * 4               // d(residual) in and out
                               + (N * HD + 2 * N * KD) * 4  // dq, dk, dv
                               + 3 * N * I * 4;             // d(a), d(gate), d(up)
  v.push_back({"activations", "gradients of the layer in backward (fp32)", layerGrads});
  v.push_back({"head", "final norm out (fp16) and its gradient (fp32)", N * C * 2 + N * C * 4});
  v.push_back({"head", "a chunk of logits, fp16, turned into its gradient in place", r.logitRows * m.vocab * 2 + r.logitRows * 8});
  v.push_back({"workspace", "loss-scaling partials, attention backward workspace", (N * HD * 4) + (1 << 20)});
  if (r.dropout) v.push_back({"workspace", "LoRA dropout: a projection's dropped input (fp16) and masked gradient (fp32)", N * I * (2 + 4)});
  v.push_back({"context", "CUDA context and allocator slack", r.contextBytes});
  return v;
}

long long total(const std::vector<Item>& items) {
  long long t = 0;
  for (const auto& i : items) t += i.bytes;
  return t;
}

}  // namespace ft::memplan
