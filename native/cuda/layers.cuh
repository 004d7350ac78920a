// layers.cuh: the element-wise and row-wise layers of the Qwen3 decoder on the GPU, forward and
// backward, each the GPU twin of a CPU function that is its reference in the tests:
//
//   RMSNorm   y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps)        src/layers.h rmsForward
//             (the layer norms over C, and Qwen3's q/k norms over each head's D)
//             dx += rstd * (w dy) - x rstd^3 mean(x w dy)                src/layers.h rmsBackward
//   RoPE      rotate-half, position = row % seqLen, tables [seqLen, D/2] src/layers.h rope
//             backward: the inverse rotation of the gradient
//   SwiGLU    a = silu(g) * u;  dg = da u silu'(g),  du = da silu(g)    (qwen3.cpp's MLP)
//
// Mixed precision: the residual stream, its gradients and every reduction are fp32; the outputs
// that feed a matrix product (normalised activations, a) may be written as fp16 or bf16. One block of 128
// threads per row for the norms (a row of 2560 or of 128), one thread per element otherwise.
// Norm weights are frozen in QLoRA: no weight gradients.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>

namespace ft::cuda {

using bf16 = __nv_bfloat16;

// x [rows, width] fp32, w [width] → y [rows, width] (fp32, fp16 or bf16), rstd [rows]
void rmsnormForward(const float* x, const float* w, float* y, float* rstd, int rows, int width, float eps, cudaStream_t stream = 0);
void rmsnormForward(const float* x, const float* w, __half* y, float* rstd, int rows, int width, float eps, cudaStream_t stream = 0);
void rmsnormForward(const float* x, const float* w, bf16* y, float* rstd, int rows, int width, float eps, cudaStream_t stream = 0);
// dy [rows, width], x, rstd as in the forward; dx [rows, width] accumulated (+=)
void rmsnormBackward(const float* dy, const float* x, const float* rstd, const float* w, float* dx, int rows, int width,
                     cudaStream_t stream = 0);

// x [N, heads * D] in place; cosT, sinT [seqLen, D / 2] on the device; inverse for the backward
void rope(float* x, int N, int heads, int D, int seqLen, const float* cosT, const float* sinT, bool inverse, cudaStream_t stream = 0);
void rope(__half* x, int N, int heads, int D, int seqLen, const float* cosT, const float* sinT, bool inverse, cudaStream_t stream = 0);
void rope(bf16* x, int N, int heads, int D, int seqLen, const float* cosT, const float* sinT, bool inverse, cudaStream_t stream = 0);

// g, u [n] fp32 → a [n] (fp32, fp16 or bf16)
void swigluForward(const float* g, const float* u, float* a, std::size_t n, cudaStream_t stream = 0);
void swigluForward(const float* g, const float* u, __half* a, std::size_t n, cudaStream_t stream = 0);
void swigluForward(const float* g, const float* u, bf16* a, std::size_t n, cudaStream_t stream = 0);
// da [n] → dg, du [n] (overwritten)
void swigluBackward(const float* da, const float* g, const float* u, float* dg, float* du, std::size_t n, cudaStream_t stream = 0);

}  // namespace ft::cuda
