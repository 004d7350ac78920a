// layers.cu: RMSNorm, RoPE and SwiGLU, forward and backward (see layers.cuh).
#include "common.cuh"
#include "layers.cuh"

namespace ft::cuda {

namespace {

constexpr int ROW_THREADS = 128;

template <typename Out>
__global__ void __launch_bounds__(ROW_THREADS) rmsForwardKernel(const float* __restrict__ x, const float* __restrict__ w, Out* __restrict__ y,
                                                                float* __restrict__ rstd, int width, float eps) {
  const long long row = blockIdx.x;
  const float* xr = x + row * width;
  float ss = 0.f;
  for (int i = threadIdx.x; i < width; i += ROW_THREADS) ss += xr[i] * xr[i];
  ss = blockSum(ss);
  const float r = 1.f / sqrtf(ss / static_cast<float>(width) + eps);
  if (threadIdx.x == 0) rstd[row] = r;
  Out* yr = y + row * width;
  for (int i = threadIdx.x; i < width; i += ROW_THREADS) yr[i] = fromFloat<Out>(xr[i] * r * w[i]);
}

__global__ void __launch_bounds__(ROW_THREADS) rmsBackwardKernel(const float* __restrict__ dy, const float* __restrict__ x,
                                                                 const float* __restrict__ rstd, const float* __restrict__ w,
                                                                 float* __restrict__ dx, int width) {
  const long long row = blockIdx.x;
  const float* xr = x + row * width;
  const float* dyr = dy + row * width;
  float dot = 0.f;
  for (int i = threadIdx.x; i < width; i += ROW_THREADS) dot += xr[i] * w[i] * dyr[i];
  dot = blockSum(dot);
  const float r = rstd[row];
  const float c = r * r * r * dot / static_cast<float>(width);
  float* dxr = dx + row * width;
  for (int i = threadIdx.x; i < width; i += ROW_THREADS) dxr[i] += r * w[i] * dyr[i] - xr[i] * c;
}

// one thread per rotated pair (i, i + D/2) of one head of one row
template <typename T>
__global__ void ropeKernel(T* __restrict__ x, long long pairs, int heads, int D, int seqLen, const float* __restrict__ cosT,
                           const float* __restrict__ sinT, bool inverse) {
  const long long p = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (p >= pairs) return;
  const int half = D / 2;
  const int i = static_cast<int>(p % half);
  const long long rowHead = p / half;  // row * heads + head
  const long long row = rowHead / heads;
  const int t = static_cast<int>(row % seqLen);
  const float c = cosT[static_cast<long long>(t) * half + i];
  const float s = inverse ? -sinT[static_cast<long long>(t) * half + i] : sinT[static_cast<long long>(t) * half + i];
  T* v = x + rowHead * D;
  const float a = toFloat(v[i]), b = toFloat(v[i + half]);
  v[i] = fromFloat<T>(a * c - b * s);
  v[i + half] = fromFloat<T>(b * c + a * s);
}

__device__ __forceinline__ float sigmoid(float v) { return 1.f / (1.f + expf(-v)); }

template <typename Out>
__global__ void swigluForwardKernel(const float* __restrict__ g, const float* __restrict__ u, Out* __restrict__ a, std::size_t n) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float gi = g[i];
  a[i] = fromFloat<Out>(gi * sigmoid(gi) * u[i]);
}

__global__ void swigluBackwardKernel(const float* __restrict__ da, const float* __restrict__ g, const float* __restrict__ u,
                                     float* __restrict__ dg, float* __restrict__ du, std::size_t n) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float gi = g[i], s = sigmoid(gi), silu = gi * s;
  dg[i] = da[i] * u[i] * (s * (1.f + gi * (1.f - s)));
  du[i] = da[i] * silu;
}

void checkRows(const char* what, const void* a, const void* b, const void* c, int rows, int width) {
  FT_CHECK(a != nullptr && b != nullptr && c != nullptr, what, ": null buffer");
  FT_CHECK(rows >= 0 && width > 0, what, ": rows = ", rows, ", width = ", width, " (width must be positive)");
  FT_CHECK(rows <= 2147483647, what, ": too many rows");
}

template <typename Out>
void rmsLaunch(const float* x, const float* w, Out* y, float* rstd, int rows, int width, float eps, cudaStream_t stream) {
  checkRows("rmsnormForward", x, w, y, rows, width);
  FT_CHECK(rstd != nullptr, "rmsnormForward: null rstd");
  FT_CHECK(eps > 0.f, "rmsnormForward: eps = ", eps, ", expected > 0");
  if (rows == 0) return;
  rmsForwardKernel<Out><<<rows, ROW_THREADS, 0, stream>>>(x, w, y, rstd, width, eps);
  FT_LAUNCHED();
}

template <typename T>
void ropeLaunch(T* x, int N, int heads, int D, int seqLen, const float* cosT, const float* sinT, bool inverse, cudaStream_t stream) {
  FT_CHECK(x != nullptr && cosT != nullptr && sinT != nullptr, "rope: null buffer");
  FT_CHECK(D > 0 && D % 2 == 0, "rope: head width D = ", D, ", expected a positive even number");
  FT_CHECK(N >= 0 && heads > 0 && seqLen > 0, "rope: N = ", N, ", heads = ", heads, ", seqLen = ", seqLen);
  FT_CHECK(N % seqLen == 0, "rope: ", N, " rows are not whole sequences of ", seqLen);
  const long long pairs = static_cast<long long>(N) * heads * (D / 2);
  if (pairs == 0) return;
  ropeKernel<T><<<ceilDiv(pairs, 256), 256, 0, stream>>>(x, pairs, heads, D, seqLen, cosT, sinT, inverse);
  FT_LAUNCHED();
}

template <typename Out>
void swigluLaunch(const float* g, const float* u, Out* a, std::size_t n, cudaStream_t stream) {
  FT_CHECK(g != nullptr && u != nullptr && a != nullptr, "swigluForward: null buffer");
  if (n == 0) return;
  swigluForwardKernel<Out><<<ceilDiv(static_cast<long long>(n), 256), 256, 0, stream>>>(g, u, a, n);
  FT_LAUNCHED();
}

}  // namespace

void rmsnormForward(const float* x, const float* w, float* y, float* rstd, int rows, int width, float eps, cudaStream_t stream) {
  rmsLaunch(x, w, y, rstd, rows, width, eps, stream);
}
void rmsnormForward(const float* x, const float* w, __half* y, float* rstd, int rows, int width, float eps, cudaStream_t stream) {
  rmsLaunch(x, w, y, rstd, rows, width, eps, stream);
}
void rmsnormForward(const float* x, const float* w, bf16* y, float* rstd, int rows, int width, float eps, cudaStream_t stream) {
  rmsLaunch(x, w, y, rstd, rows, width, eps, stream);
}
void rmsnormBackward(const float* dy, const float* x, const float* rstd, const float* w, float* dx, int rows, int width, cudaStream_t stream) {
  checkRows("rmsnormBackward", dy, x, w, rows, width);
  FT_CHECK(rstd != nullptr && dx != nullptr, "rmsnormBackward: null buffer");
  if (rows == 0) return;
  rmsBackwardKernel<<<rows, ROW_THREADS, 0, stream>>>(dy, x, rstd, w, dx, width);
  FT_LAUNCHED();
}

void rope(float* x, int N, int heads, int D, int seqLen, const float* cosT, const float* sinT, bool inverse, cudaStream_t stream) {
  ropeLaunch(x, N, heads, D, seqLen, cosT, sinT, inverse, stream);
}
void rope(__half* x, int N, int heads, int D, int seqLen, const float* cosT, const float* sinT, bool inverse, cudaStream_t stream) {
  ropeLaunch(x, N, heads, D, seqLen, cosT, sinT, inverse, stream);
}
void rope(bf16* x, int N, int heads, int D, int seqLen, const float* cosT, const float* sinT, bool inverse, cudaStream_t stream) {
  ropeLaunch(x, N, heads, D, seqLen, cosT, sinT, inverse, stream);
}

void swigluForward(const float* g, const float* u, float* a, std::size_t n, cudaStream_t stream) { swigluLaunch(g, u, a, n, stream); }
void swigluForward(const float* g, const float* u, __half* a, std::size_t n, cudaStream_t stream) { swigluLaunch(g, u, a, n, stream); }
void swigluForward(const float* g, const float* u, bf16* a, std::size_t n, cudaStream_t stream) { swigluLaunch(g, u, a, n, stream); }
void swigluBackward(const float* da, const float* g, const float* u, float* dg, float* du, std::size_t n, cudaStream_t stream) {
  FT_CHECK(da != nullptr && g != nullptr && u != nullptr && dg != nullptr && du != nullptr, "swigluBackward: null buffer");
  if (n == 0) return;
  swigluBackwardKernel<<<ceilDiv(static_cast<long long>(n), 256), 256, 0, stream>>>(da, g, u, dg, du, n);
  FT_LAUNCHED();
}

}  // namespace ft::cuda
