// xent.cu: fused cross-entropy forward + backward over the vocabulary (see xent.cuh).
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "common.cuh"
#include "xent.cuh"

namespace ft::cuda {

namespace {

constexpr int kThreads = 256;                    // per block (one block per row)
constexpr float kLog2e = 1.4426950408889634f;    // exp(x) = exp2(x * log2(e))

/** N consecutive 16-bit logits (fp16 or bf16), aligned so that one load or store moves them all (16, 4 or 2 bytes). */
template <int N, typename E>
struct alignas(2 * N) Pack {
  E h[N];
};

/** Writes gradScale * 0 = 0 over the row (a row not in the loss). */
template <int N, typename E>
__device__ __forceinline__ void zeroRow(Pack<N, E>* packs, int count) {
  Pack<N, E> z;
#pragma unroll
  for (int k = 0; k < N; ++k) z.h[k] = fromFloat<E>(0.0f);
  for (int i = threadIdx.x; i < count; i += kThreads) packs[i] = z;
}

// One block per row; N halves per load (V % N == 0, logits aligned to 2N bytes).
// logits: [rows, V] in: logits, out: gradient;  target, loss, lse: [rows]
template <int N, typename E>
__global__ void __launch_bounds__(kThreads) xentKernel(E* logits, int V, const int* __restrict__ target, float gradScale,
                                                       float* __restrict__ loss, float* __restrict__ lse) {
  const int row = blockIdx.x;
  Pack<N, E>* packs = reinterpret_cast<Pack<N, E>*>(logits + static_cast<std::size_t>(row) * V);  // [V / N] this row
  const int count = V / N;
  const int tgt = target[row];
  const bool masked = tgt == -1;
  const bool valid = tgt >= 0 && tgt < V;

  if (masked && lse == nullptr) {  // block-uniform: nothing to compute, the row is not read
    if (threadIdx.x == 0) loss[row] = 0.0f;
    zeroRow<N, E>(packs, count);
    return;
  }

  // The target's logit, read before pass 2 overwrites the row: every thread passes the
  // __syncthreads of blockMax below before it writes anything.
  float targetLogit = 0.0f;
  if (threadIdx.x == 0 && valid) targetLogit = toFloat(logits[static_cast<std::size_t>(row) * V + tgt]);

  // pass 1: running max m and sum s of exp(x - m) over this thread's packs. m starts at
  // -FLT_MAX, not -inf, so that -inf logits add exp(-inf) = 0 instead of exp(-inf + inf) = NaN.
  float m = -FLT_MAX, s = 0.0f;
  const Pack<N, E>* in = packs;
#pragma unroll 4
  for (int i = threadIdx.x; i < count; i += kThreads) {
    const Pack<N, E> p = in[i];
    float v[N];
    float pm = -FLT_MAX;
#pragma unroll
    for (int k = 0; k < N; ++k) {
      v[k] = toFloat(p.h[k]);
      pm = fmaxf(pm, v[k]);  // a NaN is skipped here but makes s NaN below
    }
    if (pm > m) {
      s *= exp2f((m - pm) * kLog2e);
      m = pm;
    }
    const float mb = m * kLog2e;
#pragma unroll
    for (int k = 0; k < N; ++k) s += exp2f(fmaf(v[k], kLog2e, -mb));
  }
  const float rowMax = blockMax(m);
  const float rowSum = blockSum(s * exp2f((m - rowMax) * kLog2e));
  const float rowLse = rowMax + logf(rowSum);

  if (threadIdx.x == 0) {
    if (lse != nullptr) lse[row] = rowLse;
    loss[row] = masked ? 0.0f : valid ? rowLse - targetLogit : NAN;
  }
  if (masked) {
    zeroRow<N, E>(packs, count);
    return;
  }

  // pass 2: the gradient, in place
  const float nb = -rowLse * kLog2e;
#pragma unroll 4
  for (int i = threadIdx.x; i < count; i += kThreads) {
    Pack<N, E> p = packs[i];
#pragma unroll
    for (int k = 0; k < N; ++k) {
      float g = exp2f(fmaf(toFloat(p.h[k]), kLog2e, nb));  // softmax
      if (i * N + k == tgt) g -= 1.0f;
      p.h[k] = fromFloat<E>(g * gradScale);
    }
    packs[i] = p;
  }
}

template <int N, typename E>
void launch(E* logits, int rows, int V, const int* target, float gradScale, float* loss, float* lse, cudaStream_t stream) {
  xentKernel<N, E><<<rows, kThreads, 0, stream>>>(logits, V, target, gradScale, loss, lse);
  FT_LAUNCHED();
}

template <typename E>
void xentAny(E* logits, int rows, int V, const int* target, float gradScale, float* loss, float* lse, cudaStream_t stream) {
  FT_CHECK(rows >= 0, "xentForwardBackward: rows is ", rows, ", expected >= 0");
  FT_CHECK(V >= 1, "xentForwardBackward: V is ", V, ", expected >= 1");
  FT_CHECK(std::isfinite(gradScale), "xentForwardBackward: gradScale is ", gradScale,
           " (hint: the loss scale or 1/count went non-finite before the head's backward)");
  if (rows == 0) return;
  FT_CHECK(logits != nullptr && target != nullptr && loss != nullptr, "xentForwardBackward: null buffer (rows = ", rows, ", V = ", V, ")");
  const auto address = reinterpret_cast<std::uintptr_t>(logits);
  FT_CHECK(address % alignof(E) == 0, "xentForwardBackward: logits is not 2-byte aligned");
  if (V % 8 == 0 && address % 16 == 0)
    launch<8>(logits, rows, V, target, gradScale, loss, lse, stream);
  else if (V % 2 == 0 && address % 4 == 0)
    launch<2>(logits, rows, V, target, gradScale, loss, lse, stream);
  else
    launch<1>(logits, rows, V, target, gradScale, loss, lse, stream);
}

}  // namespace

void xentForwardBackward(__half* logits, int rows, int V, const int* target, float gradScale, float* loss, float* lse, cudaStream_t stream) {
  xentAny(logits, rows, V, target, gradScale, loss, lse, stream);
}
void xentForwardBackward(bf16* logits, int rows, int V, const int* target, float gradScale, float* loss, float* lse, cudaStream_t stream) {
  xentAny(logits, rows, V, target, gradScale, loss, lse, stream);
}

}  // namespace ft::cuda
