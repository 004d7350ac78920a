// qwen3.h: the Qwen3 decoder with LoRA adapters, forward and backward, in fp32
// on the CPU. The frozen base weights arrive dequantized (fp32); only the LoRA
// A/B matrices get gradients. Written in the plain style of llm.c: every
// buffer's shape in a comment, one function per layer operation, and the
// PyTorch reference in tests/golden/qwen3_ref.py as the check.
#pragma once
#include <cstdint>
#include <vector>

namespace ft {

struct Qwen3Config {
  int hidden;        // C
  int intermediate;  // I
  int heads;         // H
  int kvHeads;       // KV
  int headDim;       // D (from the config: 128 for Qwen3-4B, not C / H)
  int layers;        // L
  int vocab;         // V
  float ropeTheta;
  float rmsEps;
  bool checkpointing = false;  // activation checkpointing: keep layer inputs only, recompute in backward
};

// The seven adapted projections of a layer, in this order.
enum Proj { PROJ_Q = 0, PROJ_K, PROJ_V, PROJ_O, PROJ_GATE, PROJ_UP, PROJ_DOWN, NPROJ };

/** Columns (inputs) of projection j's weight [out, in], as Hugging Face stores it. */
inline int projIn(const Qwen3Config& c, int j) { return j == PROJ_O ? c.heads * c.headDim : j == PROJ_DOWN ? c.intermediate : c.hidden; }
/** Rows (outputs) of projection j's weight [out, in]. */
inline int projOut(const Qwen3Config& c, int j) {
  switch (j) {
    case PROJ_Q: return c.heads * c.headDim;
    case PROJ_K:
    case PROJ_V: return c.kvHeads * c.headDim;
    case PROJ_O:
    case PROJ_DOWN: return c.hidden;
    default: return c.intermediate;  // gate, up
  }
}

struct LayerWeights {
  const float* inputNorm;  // [C]
  const float* postNorm;   // [C]
  const float* qNorm;      // [D]
  const float* kNorm;      // [D]
  const float* w[NPROJ];   // q [H*D, C], k [KV*D, C], v [KV*D, C], o [C, H*D], gate [I, C], up [I, C], down [C, I]
};

struct Qwen3Weights {
  const float* embed;  // [V, C], also the output head (tied)
  const float* finalNorm;  // [C]
  std::vector<LayerWeights> layer;
};

// LoRA of one projection: y += scale * (x A^T) B^T. Null when not adapted.
struct LoraPair {
  const float* A = nullptr;  // [r, in]
  const float* B = nullptr;  // [out, r]
  float* dA = nullptr;       // [r, in], accumulated
  float* dB = nullptr;       // [out, r], accumulated
};

struct Lora {
  int rank;
  float scale;  // alpha / r
  float dropout = 0.f;  // PEFT's lora_dropout, applied in training (backward) calls only
  uint64_t seed = 0;    // the dropout mask's stream: the caller changes it every micro-step
  std::vector<LoraPair> proj;  // [layers * NPROJ]
};

// Forward and backward over a batch of `batch` sequences of `seqLen` tokens.
// The loss is the mean cross-entropy over positions t whose next token
// (t + 1) has mask 1. LoRA gradients are accumulated into lora.proj[*].dA/dB.
// When `logits` is not null the full logits [batch, seqLen, V] are written
// there (for tests; training never materialises them).
// Returns the loss; `counted` gets the number of positions in it.
// Vectorised (simd.h, runtime dispatch) and threaded (threads.h); the result does not depend on
// the thread count.
float forwardBackward(const Qwen3Config& cfg, const Qwen3Weights& w, Lora& lora, const int32_t* ids, const uint8_t* mask, int batch,
                      int seqLen, bool backward, float* logits, int* counted);

// The same from the plain scalar, single-threaded reference loops (tests): equal to
// forwardBackward within float rounding, not bit for bit.
float forwardBackward_ref(const Qwen3Config& cfg, const Qwen3Weights& w, Lora& lora, const int32_t* ids, const uint8_t* mask, int batch,
                          int seqLen, bool backward, float* logits, int* counted);

// Greedy decoding with a KV cache: the prompt's tokens go through one at a time (their K and V
// cached per layer), then up to maxNew tokens are chosen by argmax, each fed back, stopping after
// a token in `stops`. Writes the chosen tokens to `out` (maxNew entries) and returns how many.
// The same model as forwardBackward (tied head, RoPE, q/k norms), one position at a time.
int generate(const Qwen3Config& cfg, const Qwen3Weights& w, const Lora& lora, const int32_t* prompt, int nPrompt, int maxNew, const int32_t* stops,
             int nStops, int32_t* out);

}  // namespace ft
