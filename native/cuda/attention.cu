// attention.cu: causal grouped-query flash attention, forward and backward (see attention.cuh).
//
// Conventions inside the kernels. A block has 4 warps; warp w owns rows w*16 .. w*16+15 of the
// block's tile (query rows in the forward and dQ kernels, key rows in the dK/dV kernel). Tiles of
// q, k, v, dy are staged in shared memory as rows of D (+8 padding against bank conflicts) operands
// (T: fp16, or bf16 on sm_80+), zero-filled past the end of the sequence. Each warp has a private
// fp32 scratch tile [16, LDF] where WMMA results are stored so that lanes can see them element by
// element; the T P or dS tile [16, LDH] that feeds the next product is written in place over that scratch (all
// lanes first read their values into registers, __syncwarp, then write). In the elementwise phase
// lane l handles row l / 2 and the columns c = 2j + (l & 1). Each kernel that uses tensor cores is a
// device function (attnFwd, attnBwdDkv, attnBwdDq) behind a thin __global__ that traps where the
// operand type has no fragments (kMma: bf16 below sm_80; the bf16 launchers call requireBf16() first).
#include <mma.h>

#include <cmath>
#include <cstdint>

#include "attention.cuh"
#include "common.cuh"

namespace ft::cuda {

namespace {
namespace wmma = nvcuda::wmma;

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;

template <typename T>
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major>;
template <typename T>
using FragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major>;
template <typename T>
using FragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

/** Tile and shared-memory geometry shared by the kernels, for head dimension D. */
template <int D>
struct Geo {
  static_assert(D == 64 || D == 128, "head dimension 64 or 128");
  static constexpr int NF = D / 16;   // 16-wide fragments across a head
  static constexpr int LDK = D + 8;   // 16-bit elements per staged row of q, k, v, dy
  static constexpr int kRowBytes = LDK * 2;
  // forward and dQ: query tiles of 64 rows (16 per warp), key tiles of 32
  static constexpr int BR = 16 * kWarps;
  static constexpr int BC = 32;
  // dK/dV: key tiles of 64 rows (16 per warp), query tiles of BQ
  static constexpr int BK = 16 * kWarps;
  static constexpr int BQ = D == 128 ? 16 : 32;
};

/**
 * Copies rows [0, valid) of a [rows, ld] matrix of 16-bit T (g points at the tile's first row and its head's
 * first column) to the shared tile s [ROWS, LDK], D elements per row, and zero-fills rows valid..ROWS-1.
 */
template <int D, int ROWS, typename T>
__device__ __forceinline__ void loadTile(T* __restrict__ s, const T* __restrict__ g, long long ld, int valid) {
  static_assert(sizeof(T) == 2, "16-bit operands");
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  constexpr int LDK = Geo<D>::LDK;
  for (int i = threadIdx.x; i < ROWS * kChunks; i += kThreads) {
    const int r = i / kChunks, c = (i % kChunks) * 8;
    uint4 x = make_uint4(0, 0, 0, 0);
    if (r < valid) x = __ldg(reinterpret_cast<const uint4*>(g + r * ld + c));
    *reinterpret_cast<uint4*>(s + r * LDK + c) = x;
  }
}

/**
 * The warp's accumulators acc[0..NF) (a [16, 16*NF] tile) times mul go, CH fragments at a time, through
 * the warp's scratch [16, LDF] to global memory: lane l writes row l/2, dstRow being that row's column 0
 * (nullptr: a row past the sequence, not written). Out is float, __half or bf16.
 */
template <int NF, int CH, int LDF, typename Out>
__device__ __forceinline__ void writeRows(float* scratch, FragC (&acc)[NF], Out* dstRow, float mul) {
  static_assert(NF % CH == 0 && LDF >= 16 * CH, "scratch too narrow");
  const int lane = threadIdx.x & 31, r = lane >> 1, hf = lane & 1;
  constexpr int kPerLane = CH * 8;  // of the CH*16 columns of a round, each lane of a row pair takes half
#pragma unroll
  for (int f0 = 0; f0 < NF; f0 += CH) {
#pragma unroll
    for (int c = 0; c < CH; ++c) wmma::store_matrix_sync(scratch + c * 16, acc[f0 + c], LDF, wmma::mem_row_major);
    __syncwarp();
    if (dstRow != nullptr) {
      const float* src = scratch + r * LDF + hf * kPerLane;
      Out* dst = dstRow + f0 * 16 + hf * kPerLane;
      if constexpr (sizeof(Out) == 4) {
#pragma unroll
        for (int e = 0; e < kPerLane / 4; ++e) {
          float4 x = *reinterpret_cast<const float4*>(src + 4 * e);
          x.x *= mul, x.y *= mul, x.z *= mul, x.w *= mul;
          *reinterpret_cast<float4*>(dst + 4 * e) = x;
        }
      } else {
#pragma unroll
        for (int e = 0; e < kPerLane / 8; ++e) {
          const float* s8 = src + 8 * e;
          uint4 u;
          u.x = pack2<Out>(s8[0] * mul, s8[1] * mul), u.y = pack2<Out>(s8[2] * mul, s8[3] * mul);
          u.z = pack2<Out>(s8[4] * mul, s8[5] * mul), u.w = pack2<Out>(s8[6] * mul, s8[7] * mul);
          *reinterpret_cast<uint4*>(dst + 8 * e) = u;
        }
      }
    }
    __syncwarp();
  }
}

// ---- forward --------------------------------------------------------------------------------------

template <int D>
struct FwdSmem {
  using G = Geo<D>;
  static constexpr int LDF = G::BC + 4;  // fp32 scratch row (S)
  static constexpr int LDH = G::BC + 8;  // T P row, in place over S
  static constexpr int kKV = G::BC * G::kRowBytes;
  static constexpr int kScratch = 16 * LDF * 4;  // per warp
  static constexpr int kQ = G::BR * G::kRowBytes;
  static constexpr int kLoop = 2 * kKV + kWarps * kScratch;
  static constexpr int kBytes = kLoop > kQ ? kLoop : kQ;
  static_assert(16 * LDH * 2 <= kScratch, "P fits over S");
  static_assert(kKV % 32 == 0 && kScratch % 32 == 0, "WMMA pointers 32-byte aligned");
};

// grid (ceil(T / 64), H, B); block 128
template <int D, typename E>
__device__ __forceinline__ void attnFwd(const E* __restrict__ q, const E* __restrict__ k,
                                                          const E* __restrict__ v, E* __restrict__ y, float* __restrict__ lse,
                                                          int T, int H, int KV, float scaleLog2) {
  using G = Geo<D>;
  using S = FwdSmem<D>;
  constexpr int NF = G::NF, LDK = G::LDK, BR = G::BR, BC = G::BC, LDF = S::LDF, LDH = S::LDH;
  static_assert(BC == 32, "the elementwise phase gives each lane 16 columns");
  __shared__ __align__(128) unsigned char smem[S::kBytes];
  __shared__ float rowScale[kWarps][16];

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r = lane >> 1, hf = lane & 1;
  const int qt = gridDim.x - 1 - blockIdx.x;  // the longest rows (most key tiles) start first
  const int h = blockIdx.y, b = blockIdx.z, kh = h / (H / KV);
  const int q0 = qt * BR;
  const long long ldq = static_cast<long long>(H) * D, ldk = static_cast<long long>(KV) * D;
  const long long row0 = static_cast<long long>(b) * T;  // the sequence's first row

  E* Qs = reinterpret_cast<E*>(smem);  // before the loop only
  E* Ks = reinterpret_cast<E*>(smem);
  E* Vs = reinterpret_cast<E*>(smem + S::kKV);
  float* Sw = reinterpret_cast<float*>(smem + 2 * S::kKV + warp * S::kScratch);
  E* Pw = reinterpret_cast<E*>(Sw);

  // Q tile → registers
  loadTile<D, BR>(Qs, q + (row0 + q0) * ldq + h * D, ldq, min(BR, T - q0));
  __syncthreads();
  FragA<E> qa[NF];
#pragma unroll
  for (int kk = 0; kk < NF; ++kk) wmma::load_matrix_sync(qa[kk], Qs + warp * 16 * LDK + kk * 16, LDK);
  __syncthreads();  // Qs is dead; K, V and the scratch tiles may overwrite it

  // Which row of the tile each accumulator element holds: the element-to-(row, col) mapping of a
  // fragment type is fixed, so loading a tile of row numbers reveals it. Needed to rescale the
  // output fragments row by row.
  int rowOf[FragC::num_elements];
  {
    for (int i = lane; i < 256; i += 32) Sw[(i >> 4) * LDF + (i & 15)] = static_cast<float>(i >> 4);
    __syncwarp();
    FragC rows;
    wmma::load_matrix_sync(rows, Sw, LDF, wmma::mem_row_major);
#pragma unroll
    for (int i = 0; i < FragC::num_elements; ++i) rowOf[i] = static_cast<int>(rows.x[i]);
    __syncwarp();
  }

  FragC o[NF];
#pragma unroll
  for (int f = 0; f < NF; ++f) wmma::fill_fragment(o[f], 0.f);
  float mRow = -INFINITY, lRow = 0.f;  // running max (log2 units) and sum of this lane's row
  const int tRow = q0 + warp * 16 + r;
  const int warpLast = q0 + warp * 16 + 15;
  const int nTiles = (min(q0 + BR, T) + BC - 1) / BC;
  const E* kb = k + row0 * ldk + kh * D;
  const E* vb = v + row0 * ldk + kh * D;

  for (int kt = 0; kt < nTiles; ++kt) {
    const int k0 = kt * BC;
    __syncthreads();  // every warp is done with the previous K, V
    loadTile<D, BC>(Ks, kb + k0 * ldk, ldk, min(BC, T - k0));
    loadTile<D, BC>(Vs, vb + k0 * ldk, ldk, min(BC, T - k0));
    __syncthreads();
    if (k0 > warpLast) continue;  // every key of the tile comes after every row of this warp

    // S = Q K^T: [16, BC]
#pragma unroll
    for (int j = 0; j < BC / 16; ++j) {
      FragC acc;
      wmma::fill_fragment(acc, 0.f);
#pragma unroll
      for (int kk = 0; kk < NF; ++kk) {
        FragBCol<E> kf;
        wmma::load_matrix_sync(kf, Ks + j * 16 * LDK + kk * 16, LDK);
        wmma::mma_sync(acc, qa[kk], kf, acc);
      }
      wmma::store_matrix_sync(Sw + j * 16, acc, LDF, wmma::mem_row_major);
    }
    __syncwarp();

    // online softmax of this lane's half row
    float p[BC / 2];
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < BC / 2; ++j) {
      const int c = 2 * j + hf, key = k0 + c;
      const float x = (key > tRow || key >= T) ? -INFINITY : Sw[r * LDF + c] * scaleLog2;
      p[j] = x;
      mx = fmaxf(mx, x);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    // finite: key 0 is visible to every row, so the first tile sets a finite max for each row
    const float mNew = fmaxf(mRow, mx);
    const float alpha = exp2f(mRow - mNew);  // 0 on the first tile (mRow = -inf)
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < BC / 2; ++j) sum += (p[j] = exp2f(p[j] - mNew));
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    lRow = lRow * alpha + sum;
    mRow = mNew;
    __syncwarp();  // all of S is read before P overwrites it
#pragma unroll
    for (int j = 0; j < BC / 2; ++j) Pw[r * LDH + 2 * j + hf] = fromFloat<E>(p[j]);
    if (hf == 0) rowScale[warp][r] = alpha;
    __syncwarp();

    // O = O * alpha (per row) + P V
    float a[FragC::num_elements];
#pragma unroll
    for (int i = 0; i < FragC::num_elements; ++i) a[i] = rowScale[warp][rowOf[i]];
    FragA<E> pa[BC / 16];
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) wmma::load_matrix_sync(pa[kk], Pw + kk * 16, LDH);
#pragma unroll
    for (int f = 0; f < NF; ++f) {
#pragma unroll
      for (int i = 0; i < FragC::num_elements; ++i) o[f].x[i] *= a[i];
#pragma unroll
      for (int kk = 0; kk < BC / 16; ++kk) {
        FragBRow<E> vf;
        wmma::load_matrix_sync(vf, Vs + kk * 16 * LDK + f * 16, LDK);
        wmma::mma_sync(o[f], pa[kk], vf, o[f]);
      }
    }
  }

  // y = O / l, lse = m ln 2 + ln l
  __syncwarp();  // the last tile's P and rowScale reads are done before the scratch is reused
  const bool valid = tRow < T;
  if (valid && hf == 0) lse[(static_cast<long long>(b) * H + h) * T + tRow] = mRow * kLn2 + logf(lRow);
  writeRows<NF, 2, LDF>(Sw, o, valid ? y + (row0 + tRow) * ldq + h * D : static_cast<E*>(nullptr), 1.f / lRow);
}

template <int D, typename E>
__global__ void __launch_bounds__(kThreads) attnFwdKernel(const E* q, const E* k, const E* v, E* y, float* lse, int T, int H, int KV, float scaleLog2) {
  if constexpr (kMma<E>) attnFwd<D, E>(q, k, v, y, lse, T, H, KV, scaleLog2);
  else __trap();  // bf16 below sm_80: the launchers refuse it first (requireBf16)
}

// ---- backward: Di = rowsum(dy * y) -------------------------------------------------------------

// one warp per (row n, head h), w = n*H + h; delta [B, H, T]
template <int D, typename E>
__global__ void attnDeltaKernel(const E* __restrict__ y, const E* __restrict__ dy, float* __restrict__ delta, long long pairs,
                                int T, int H) {
  const long long w = (static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (w >= pairs) return;  // uniform over the warp
  const E* yr = y + w * D;
  const E* gr = dy + w * D;
  float acc = 0.f;
#pragma unroll
  for (int i = lane; i < D / 2; i += 32) {
    const float2 a = unpack2(yr + 2 * i), g = unpack2(gr + 2 * i);
    acc += a.x * g.x + a.y * g.y;
  }
  acc = warpSum(acc);
  if (lane == 0) {
    const long long n = w / H;
    const int h = static_cast<int>(w % H);
    const long long b = n / T, t = n % T;
    delta[(b * H + h) * T + t] = acc;
  }
}

// ---- backward: dK, dV --------------------------------------------------------------------------

template <int D>
struct DkvSmem {
  using G = Geo<D>;
  static constexpr int LDF = G::BQ + 4;  // fp32 scratch row (S^T, dP^T)
  static constexpr int LDH = G::BQ + 8;  // T P^T / dS^T row, in place
  static constexpr int kKV = G::BK * G::kRowBytes;
  static constexpr int kQ = G::BQ * G::kRowBytes;
  static constexpr int kScratch = 16 * LDF * 4;
  static constexpr int kBytes = 2 * kKV + 2 * kQ + kWarps * kScratch;
  static_assert(16 * LDH * 2 <= kScratch, "P^T fits over S^T");
  static_assert(kKV % 32 == 0 && kQ % 32 == 0 && kScratch % 32 == 0, "WMMA pointers 32-byte aligned");
};

// grid (ceil(T / 64), KV, B); block 128; warp w owns keys k0 + 16w .. k0 + 16w + 15
template <int D, typename E>
__device__ __forceinline__ void attnBwdDkv(const E* __restrict__ q, const E* __restrict__ k,
                                                             const E* __restrict__ v, const E* __restrict__ dy,
                                                             const float* __restrict__ lse, const float* __restrict__ delta,
                                                             float* __restrict__ dk, float* __restrict__ dv, int T, int H, int KV,
                                                             float scaleLog2, float scale) {
  using G = Geo<D>;
  using S = DkvSmem<D>;
  constexpr int NF = G::NF, LDK = G::LDK, BK = G::BK, BQ = G::BQ, LDF = S::LDF, LDH = S::LDH;
  constexpr int kPer = BQ / 2;  // columns per lane in the elementwise phase
  __shared__ __align__(128) unsigned char smem[S::kBytes];
  __shared__ float lseS[BQ], deltaS[BQ];  // of the current query tile, lse in log2 units

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r = lane >> 1, hf = lane & 1;
  const int kh = blockIdx.y, b = blockIdx.z, group = H / KV;
  const int k0 = blockIdx.x * BK;  // key tile 0 (the most query tiles) starts first
  const int kw0 = k0 + warp * 16;   // this warp's first key
  const int key = kw0 + r;          // this lane's key in the elementwise phase
  const long long ldq = static_cast<long long>(H) * D, ldk = static_cast<long long>(KV) * D;
  const long long row0 = static_cast<long long>(b) * T;

  E* Ks = reinterpret_cast<E*>(smem);
  E* Vs = reinterpret_cast<E*>(smem + S::kKV);
  E* Qs = reinterpret_cast<E*>(smem + 2 * S::kKV);
  E* dYs = reinterpret_cast<E*>(smem + 2 * S::kKV + S::kQ);
  float* Fw = reinterpret_cast<float*>(smem + 2 * S::kKV + 2 * S::kQ + warp * S::kScratch);
  E* Hw = reinterpret_cast<E*>(Fw);

  loadTile<D, BK>(Ks, k + (row0 + k0) * ldk + kh * D, ldk, min(BK, T - k0));
  loadTile<D, BK>(Vs, v + (row0 + k0) * ldk + kh * D, ldk, min(BK, T - k0));
  // (the first __syncthreads of the loop publishes Ks, Vs)

  FragC dK[NF], dV[NF];
#pragma unroll
  for (int f = 0; f < NF; ++f) wmma::fill_fragment(dK[f], 0.f), wmma::fill_fragment(dV[f], 0.f);

  const int qStart = (k0 / BQ) * BQ;  // earlier query tiles precede every key of the block
  for (int hh = 0; hh < group; ++hh) {
    const int h = kh * group + hh;
    const float* lseH = lse + (static_cast<long long>(b) * H + h) * T;
    const float* deltaH = delta + (static_cast<long long>(b) * H + h) * T;
    for (int q0 = qStart; q0 < T; q0 += BQ) {
      __syncthreads();  // every warp is done with the previous Qs, dYs, lseS, deltaS
      loadTile<D, BQ>(Qs, q + (row0 + q0) * ldq + h * D, ldq, min(BQ, T - q0));
      loadTile<D, BQ>(dYs, dy + (row0 + q0) * ldq + h * D, ldq, min(BQ, T - q0));
      if (threadIdx.x < BQ) {
        const int t = q0 + threadIdx.x;
        lseS[threadIdx.x] = t < T ? lseH[t] * kLog2e : 0.f;
        deltaS[threadIdx.x] = t < T ? deltaH[t] : 0.f;
      }
      __syncthreads();
      if (q0 + BQ - 1 < kw0 || kw0 >= T) continue;  // no (query >= key) pair for this warp here

      // S^T = K Q^T: [16 keys, BQ queries]
#pragma unroll
      for (int j = 0; j < BQ / 16; ++j) {
        FragC acc;
        wmma::fill_fragment(acc, 0.f);
#pragma unroll
        for (int kk = 0; kk < NF; ++kk) {
          FragA<E> ka;
          FragBCol<E> qb;
          wmma::load_matrix_sync(ka, Ks + warp * 16 * LDK + kk * 16, LDK);
          wmma::load_matrix_sync(qb, Qs + j * 16 * LDK + kk * 16, LDK);
          wmma::mma_sync(acc, ka, qb, acc);
        }
        wmma::store_matrix_sync(Fw + j * 16, acc, LDF, wmma::mem_row_major);
      }
      __syncwarp();
      // P^T = exp(S^T scale - lse), 0 where the query precedes the key or is past the sequence
      float p[kPer];
#pragma unroll
      for (int j = 0; j < kPer; ++j) {
        const int c = 2 * j + hf, t = q0 + c;
        p[j] = (key > t || t >= T) ? 0.f : exp2f(Fw[r * LDF + c] * scaleLog2 - lseS[c]);
      }
      __syncwarp();
#pragma unroll
      for (int j = 0; j < kPer; ++j) Hw[r * LDH + 2 * j + hf] = fromFloat<E>(p[j]);
      __syncwarp();

      // dV += P^T dY
      {
        FragA<E> pa[BQ / 16];
#pragma unroll
        for (int kk = 0; kk < BQ / 16; ++kk) wmma::load_matrix_sync(pa[kk], Hw + kk * 16, LDH);
#pragma unroll
        for (int f = 0; f < NF; ++f)
#pragma unroll
          for (int kk = 0; kk < BQ / 16; ++kk) {
            FragBRow<E> gb;
            wmma::load_matrix_sync(gb, dYs + kk * 16 * LDK + f * 16, LDK);
            wmma::mma_sync(dV[f], pa[kk], gb, dV[f]);
          }
      }

      // dP^T = V dY^T: [16 keys, BQ queries]
      {
        FragC acc[BQ / 16];
#pragma unroll
        for (int j = 0; j < BQ / 16; ++j) {
          wmma::fill_fragment(acc[j], 0.f);
#pragma unroll
          for (int kk = 0; kk < NF; ++kk) {
            FragA<E> va;
            FragBCol<E> gb;
            wmma::load_matrix_sync(va, Vs + warp * 16 * LDK + kk * 16, LDK);
            wmma::load_matrix_sync(gb, dYs + j * 16 * LDK + kk * 16, LDK);
            wmma::mma_sync(acc[j], va, gb, acc[j]);
          }
        }
        __syncwarp();  // P^T (read by the dV product) is consumed before dP^T overwrites it
#pragma unroll
        for (int j = 0; j < BQ / 16; ++j) wmma::store_matrix_sync(Fw + j * 16, acc[j], LDF, wmma::mem_row_major);
      }
      __syncwarp();
      // dS^T = P^T (dP^T - Di)
#pragma unroll
      for (int j = 0; j < kPer; ++j) {
        const int c = 2 * j + hf;
        p[j] *= Fw[r * LDF + c] - deltaS[c];
      }
      __syncwarp();
#pragma unroll
      for (int j = 0; j < kPer; ++j) Hw[r * LDH + 2 * j + hf] = fromFloat<E>(p[j]);
      __syncwarp();

      // dK += dS^T Q (the scale is applied once, at the end)
      {
        FragA<E> da[BQ / 16];
#pragma unroll
        for (int kk = 0; kk < BQ / 16; ++kk) wmma::load_matrix_sync(da[kk], Hw + kk * 16, LDH);
#pragma unroll
        for (int f = 0; f < NF; ++f)
#pragma unroll
          for (int kk = 0; kk < BQ / 16; ++kk) {
            FragBRow<E> qb;
            wmma::load_matrix_sync(qb, Qs + kk * 16 * LDK + f * 16, LDK);
            wmma::mma_sync(dK[f], da[kk], qb, dK[f]);
          }
      }
      // (the next tile's __syncthreads orders these reads of Hw before its writes)
    }
  }

  __syncwarp();
  const bool valid = key < T;
  writeRows<NF, 1, LDF>(Fw, dK, valid ? dk + (row0 + key) * ldk + kh * D : static_cast<float*>(nullptr), scale);
  writeRows<NF, 1, LDF>(Fw, dV, valid ? dv + (row0 + key) * ldk + kh * D : static_cast<float*>(nullptr), 1.f);
}

template <int D, typename E>
__global__ void __launch_bounds__(kThreads) attnBwdDkvKernel(const E* q, const E* k, const E* v, const E* dy, const float* lse, const float* delta, float* dk,
                                                             float* dv, int T, int H, int KV, float scaleLog2, float scale) {
  if constexpr (kMma<E>) attnBwdDkv<D, E>(q, k, v, dy, lse, delta, dk, dv, T, H, KV, scaleLog2, scale);
  else __trap();  // bf16 below sm_80: the launchers refuse it first (requireBf16)
}

// ---- backward: dQ --------------------------------------------------------------------------------

template <int D>
struct DqSmem {
  using G = Geo<D>;
  static constexpr int LDF = G::BC + 4;
  static constexpr int LDH = G::BC + 8;
  static constexpr int kDY = G::BR * G::kRowBytes;
  static constexpr int kKV = G::BC * G::kRowBytes;
  static constexpr int kScratch = 16 * LDF * 4;
  static constexpr int kRest = 2 * kKV + kWarps * kScratch;  // also holds the Q tile before the loop
  static constexpr int kBytes = kDY + (kRest > kDY ? kRest : kDY);
  static_assert(16 * LDH * 2 <= kScratch, "dS fits over dP");
  static_assert(kDY % 32 == 0 && kKV % 32 == 0 && kScratch % 32 == 0, "WMMA pointers 32-byte aligned");
};

// grid (ceil(T / 64), H, B); block 128; warp w owns query rows q0 + 16w .. q0 + 16w + 15
template <int D, typename E>
__device__ __forceinline__ void attnBwdDq(const E* __restrict__ q, const E* __restrict__ k,
                                                            const E* __restrict__ v, const E* __restrict__ dy,
                                                            const float* __restrict__ lse, const float* __restrict__ delta,
                                                            float* __restrict__ dq, int T, int H, int KV, float scaleLog2, float scale) {
  using G = Geo<D>;
  using S = DqSmem<D>;
  constexpr int NF = G::NF, LDK = G::LDK, BR = G::BR, BC = G::BC, LDF = S::LDF, LDH = S::LDH;
  constexpr int kPer = BC / 2;
  __shared__ __align__(128) unsigned char smem[S::kBytes];

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r = lane >> 1, hf = lane & 1;
  const int qt = gridDim.x - 1 - blockIdx.x;
  const int h = blockIdx.y, b = blockIdx.z, kh = h / (H / KV);
  const int q0 = qt * BR;
  const long long ldq = static_cast<long long>(H) * D, ldk = static_cast<long long>(KV) * D;
  const long long row0 = static_cast<long long>(b) * T;

  E* dYs = reinterpret_cast<E*>(smem);
  E* Qs = reinterpret_cast<E*>(smem + S::kDY);  // before the loop only
  E* Ks = reinterpret_cast<E*>(smem + S::kDY);
  E* Vs = reinterpret_cast<E*>(smem + S::kDY + S::kKV);
  float* Fw = reinterpret_cast<float*>(smem + S::kDY + 2 * S::kKV + warp * S::kScratch);
  E* Hw = reinterpret_cast<E*>(Fw);

  loadTile<D, BR>(Qs, q + (row0 + q0) * ldq + h * D, ldq, min(BR, T - q0));
  loadTile<D, BR>(dYs, dy + (row0 + q0) * ldq + h * D, ldq, min(BR, T - q0));
  __syncthreads();
  FragA<E> qa[NF];
#pragma unroll
  for (int kk = 0; kk < NF; ++kk) wmma::load_matrix_sync(qa[kk], Qs + warp * 16 * LDK + kk * 16, LDK);
  // (the loop's first __syncthreads retires Qs before K, V overwrite it)

  const int tRow = q0 + warp * 16 + r;
  const bool valid = tRow < T;
  const long long stat = (static_cast<long long>(b) * H + h) * T + tRow;
  const float lse2 = valid ? lse[stat] * kLog2e : 0.f;
  const float di = valid ? delta[stat] : 0.f;
  const int warpLast = q0 + warp * 16 + 15;
  const int nTiles = (min(q0 + BR, T) + BC - 1) / BC;
  const E* kb = k + row0 * ldk + kh * D;
  const E* vb = v + row0 * ldk + kh * D;

  FragC dQ[NF];
#pragma unroll
  for (int f = 0; f < NF; ++f) wmma::fill_fragment(dQ[f], 0.f);

  for (int kt = 0; kt < nTiles; ++kt) {
    const int k0 = kt * BC;
    __syncthreads();
    loadTile<D, BC>(Ks, kb + k0 * ldk, ldk, min(BC, T - k0));
    loadTile<D, BC>(Vs, vb + k0 * ldk, ldk, min(BC, T - k0));
    __syncthreads();
    if (k0 > warpLast) continue;

    // S = Q K^T: [16, BC]
#pragma unroll
    for (int j = 0; j < BC / 16; ++j) {
      FragC acc;
      wmma::fill_fragment(acc, 0.f);
#pragma unroll
      for (int kk = 0; kk < NF; ++kk) {
        FragBCol<E> kf;
        wmma::load_matrix_sync(kf, Ks + j * 16 * LDK + kk * 16, LDK);
        wmma::mma_sync(acc, qa[kk], kf, acc);
      }
      wmma::store_matrix_sync(Fw + j * 16, acc, LDF, wmma::mem_row_major);
    }
    __syncwarp();
    float p[kPer];
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int c = 2 * j + hf, key = k0 + c;
      p[j] = (key > tRow || !valid) ? 0.f : exp2f(Fw[r * LDF + c] * scaleLog2 - lse2);
    }
    __syncwarp();  // S is read before dP overwrites it

    // dP = dY V^T: [16, BC]
#pragma unroll
    for (int j = 0; j < BC / 16; ++j) {
      FragC acc;
      wmma::fill_fragment(acc, 0.f);
#pragma unroll
      for (int kk = 0; kk < NF; ++kk) {
        FragA<E> ga;
        FragBCol<E> vf;
        wmma::load_matrix_sync(ga, dYs + warp * 16 * LDK + kk * 16, LDK);
        wmma::load_matrix_sync(vf, Vs + j * 16 * LDK + kk * 16, LDK);
        wmma::mma_sync(acc, ga, vf, acc);
      }
      wmma::store_matrix_sync(Fw + j * 16, acc, LDF, wmma::mem_row_major);
    }
    __syncwarp();
    // dS = P (dP - Di)
#pragma unroll
    for (int j = 0; j < kPer; ++j) p[j] *= Fw[r * LDF + 2 * j + hf] - di;
    __syncwarp();
#pragma unroll
    for (int j = 0; j < kPer; ++j) Hw[r * LDH + 2 * j + hf] = fromFloat<E>(p[j]);
    __syncwarp();

    // dQ += dS K (scaled at the end)
    FragA<E> da[BC / 16];
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) wmma::load_matrix_sync(da[kk], Hw + kk * 16, LDH);
#pragma unroll
    for (int f = 0; f < NF; ++f)
#pragma unroll
      for (int kk = 0; kk < BC / 16; ++kk) {
        FragBRow<E> kf;
        wmma::load_matrix_sync(kf, Ks + kk * 16 * LDK + f * 16, LDK);
        wmma::mma_sync(dQ[f], da[kk], kf, dQ[f]);
      }
  }

  __syncwarp();
  writeRows<NF, 2, LDF>(Fw, dQ, valid ? dq + (row0 + tRow) * ldq + h * D : static_cast<float*>(nullptr), scale);
}

template <int D, typename E>
__global__ void __launch_bounds__(kThreads) attnBwdDqKernel(const E* q, const E* k, const E* v, const E* dy, const float* lse, const float* delta, float* dq,
                                                            int T, int H, int KV, float scaleLog2, float scale) {
  if constexpr (kMma<E>) attnBwdDq<D, E>(q, k, v, dy, lse, delta, dq, T, H, KV, scaleLog2, scale);
  else __trap();  // bf16 below sm_80: the launchers refuse it first (requireBf16)
}

// ---- launchers ---------------------------------------------------------------------------------------

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15) == 0; }

void checkShape(const char* who, int B, int T, int H, int KV, int D) {
  FT_CHECK(B >= 1 && T >= 1, who, ": B = ", B, ", T = ", T, " (hint: at least one sequence of at least one token)");
  FT_CHECK(H >= 1 && KV >= 1 && H % KV == 0, who, ": H = ", H, ", KV = ", KV, " (hint: the query heads must be a multiple of the kv heads)");
  FT_CHECK(D == 64 || D == 128, who, ": head dimension D = ", D, " (hint: the CUDA attention supports D = 64 or 128)");
  FT_CHECK(H <= 65535 && B <= 65535, who, ": H = ", H, ", B = ", B, " (hint: at most 65535 heads and sequences per call)");
  FT_CHECK(static_cast<long long>(B) * T * H < (1ll << 33), who, ": B*T*H = ", static_cast<long long>(B) * T * H, " rows x heads is too many for one call");
}

template <int D, typename E>
void forwardD(const E* q, const E* k, const E* v, E* y, float* lse, int B, int T, int H, int KV, cudaStream_t stream) {
  const float scaleLog2 = static_cast<float>(1.4426950408889634 / std::sqrt(static_cast<double>(D)));
  const dim3 grid(ceilDiv(T, Geo<D>::BR), H, B);
  attnFwdKernel<D, E><<<grid, kThreads, 0, stream>>>(q, k, v, y, lse, T, H, KV, scaleLog2);
  FT_LAUNCHED();
}

template <int D, typename E>
void backwardD(const E* q, const E* k, const E* v, const E* y, const E* dy, const float* lse, float* dq,
               float* dk, float* dv, float* delta, int B, int T, int H, int KV, cudaStream_t stream) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const float scaleLog2 = static_cast<float>(1.4426950408889634 * scale);
  const long long pairs = static_cast<long long>(B) * T * H;
  attnDeltaKernel<D, E><<<ceilDiv(pairs * 32, 256), 256, 0, stream>>>(y, dy, delta, pairs, T, H);
  FT_LAUNCHED();
  attnBwdDkvKernel<D, E><<<dim3(ceilDiv(T, Geo<D>::BK), KV, B), kThreads, 0, stream>>>(q, k, v, dy, lse, delta, dk, dv, T, H, KV, scaleLog2,
                                                                                     static_cast<float>(scale));
  FT_LAUNCHED();
  attnBwdDqKernel<D, E><<<dim3(ceilDiv(T, Geo<D>::BR), H, B), kThreads, 0, stream>>>(q, k, v, dy, lse, delta, dq, T, H, KV, scaleLog2,
                                                                                   static_cast<float>(scale));
  FT_LAUNCHED();
}

template <typename E>
void forwardAny(const E* q, const E* k, const E* v, E* y, float* lse, int B, int T, int H, int KV, int D, cudaStream_t stream) {
  checkShape("attentionForward", B, T, H, KV, D);
  FT_CHECK(q != nullptr && k != nullptr && v != nullptr && y != nullptr && lse != nullptr, "attentionForward: null buffer");
  FT_CHECK(aligned16(q) && aligned16(k) && aligned16(v) && aligned16(y), "attentionForward: q, k, v, y must be 16-byte aligned");
  if (D == 64)
    forwardD<64>(q, k, v, y, lse, B, T, H, KV, stream);
  else
    forwardD<128>(q, k, v, y, lse, B, T, H, KV, stream);
}

template <typename E>
void backwardAny(const E* q, const E* k, const E* v, const E* y, const E* dy, const float* lse, float* dq, float* dk, float* dv, float* workspace,
                 int B, int T, int H, int KV, int D, cudaStream_t stream) {
  checkShape("attentionBackward", B, T, H, KV, D);
  FT_CHECK(q != nullptr && k != nullptr && v != nullptr && y != nullptr && dy != nullptr && lse != nullptr, "attentionBackward: null input");
  FT_CHECK(dq != nullptr && dk != nullptr && dv != nullptr && workspace != nullptr,
           "attentionBackward: null output or workspace (hint: attentionBackwardWorkspace floats of scratch)");
  FT_CHECK(aligned16(q) && aligned16(k) && aligned16(v) && aligned16(y) && aligned16(dy),
           "attentionBackward: q, k, v, y, dy must be 16-byte aligned");
  FT_CHECK(aligned16(dq) && aligned16(dk) && aligned16(dv), "attentionBackward: dq, dk, dv must be 16-byte aligned");
  if (D == 64)
    backwardD<64>(q, k, v, y, dy, lse, dq, dk, dv, workspace, B, T, H, KV, stream);
  else
    backwardD<128>(q, k, v, y, dy, lse, dq, dk, dv, workspace, B, T, H, KV, stream);
}

}  // namespace

std::size_t attentionBackwardWorkspace(int B, int T, int H, int /*KV*/, int /*D*/) {
  return static_cast<std::size_t>(B < 0 ? 0 : B) * static_cast<std::size_t>(T < 0 ? 0 : T) * static_cast<std::size_t>(H < 0 ? 0 : H);
}

void attentionForward(const __half* q, const __half* k, const __half* v, __half* y, float* lse, int B, int T, int H, int KV, int D,
                      cudaStream_t stream) {
  forwardAny(q, k, v, y, lse, B, T, H, KV, D, stream);
}
void attentionForward(const bf16* q, const bf16* k, const bf16* v, bf16* y, float* lse, int B, int T, int H, int KV, int D, cudaStream_t stream) {
  requireBf16("attentionForward");
  forwardAny(q, k, v, y, lse, B, T, H, KV, D, stream);
}
void attentionBackward(const __half* q, const __half* k, const __half* v, const __half* y, const __half* dy, const float* lse, float* dq,
                       float* dk, float* dv, float* workspace, int B, int T, int H, int KV, int D, cudaStream_t stream) {
  backwardAny(q, k, v, y, dy, lse, dq, dk, dv, workspace, B, T, H, KV, D, stream);
}
void attentionBackward(const bf16* q, const bf16* k, const bf16* v, const bf16* y, const bf16* dy, const float* lse, float* dq, float* dk,
                       float* dv, float* workspace, int B, int T, int H, int KV, int D, cudaStream_t stream) {
  requireBf16("attentionBackward");
  backwardAny(q, k, v, y, dy, lse, dq, dk, dv, workspace, B, T, H, KV, D, stream);
}

}  // namespace ft::cuda
