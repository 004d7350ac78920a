// layers.h: the Qwen3 layer operations of the CPU backend (qwen3.cpp) that are also the
// references of the CUDA kernels (native/cuda/tests): RMSNorm forward and backward, and RoPE.
#pragma once
#include <vector>
namespace ft::layers {
// x [rows, width], w [width] → y [rows, width] = x * rstd * w; rstd [rows] = 1 / sqrt(mean(x^2) + eps)
void rmsForward(float* y, float* rstd, const float* x, const float* w, int rows, int width, float eps);
// dx [rows, width] += rstd * (w dy) - x rstd^3 mean(x w dy)   (dy [rows, width])
void rmsBackward(float* dx, const float* dy, const float* x, const float* rstd, const float* w, int rows, int width);
// The RoPE tables cosT, sinT [seqLen, D / 2]: angle t / theta^(2i / D), computed in double, rounded
// to float (the CPU step, generation and the CUDA step all use these).
void ropeTables(int seqLen, int D, float theta, std::vector<float>& cosT, std::vector<float>& sinT);
// Rotate-half RoPE in place on x [N, heads * D], position = row % seqLen; cosT, sinT [seqLen, D / 2].
// inverse: the transpose (the backward of the rotation).
void rope(float* x, int N, int heads, int D, int seqLen, const std::vector<float>& cosT, const std::vector<float>& sinT, bool inverse);
}  // namespace ft::layers
