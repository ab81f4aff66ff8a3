// Conv2D / DepthwiseConv2D / MatMul of tfq8 on CUDA: u8 NHWC activations x s8 weights -> s32,
// with the fused epilogue of docs/int8_numerics.md. Framework-free; C API in tfq8_cuda.h.
//
// Every call runs, on the caller's stream:
//  1. PackWeightsKernel (conv only): filter [KH,KW,IC,OC] -> packed [OC][Kp], K = KH*KW*IC
//     contiguous per output channel (the "col" operand of mma.sync), zero-padded to
//     Kp = roundup(K, kKPack).
//  2. ParamsKernel: per output channel c, bias_acc[c] = -zp_in * sum(w[:, c]) (+ int32 bias, or
//     + rne(f32 bias / (s_in*s_w[c])) for int32 output), mul[c] and badd[c] computed in double and
//     rounded once to f32 (the same host-side formulas as the CPU reference).
//  3. One convolution kernel, all ending in the same Epilogue():
//       acc += bias_acc[c]; t = float(acc) * mul[c]; t = t + badd[c];
//       t = t + float(summand - zp_s) * mul_s; t = clamp(t, lo, hi); q = rne(t) + zp_out.
//     * qu8_conv_ref: one thread per output element, any shape, also depthwise (the
//       obviously-correct kernel everything is tested against; depthwise is memory bound, so it
//       stays the depthwise kernel).
//     * qu8_conv_dp4a_64x64c4: dp4a.u32.s32, 64 pixels x 64 channels per 256-thread block,
//       4x4 outputs per thread, K in steps of 32 bytes; needs IC % 4 == 0 (each 4-byte word of K
//       lies in one filter tap).
//     * qu8_conv_mma_<BM>x<BN>c64: implicit GEMM on int8 tensor cores
//       (mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32, sm_80+), M = N*OH*OW pixels,
//       N = OC, K = KH*KW*IC; 8 warps; fragments via ldmatrix; padded positions are filled with
//       zp_in (the compensation in bias_acc then is exact).
//       - IC % 16 == 0: ConvMmaPipeKernel, a 4-stage cp.async pipeline of 64-byte K stages in
//         dynamic shared memory, im2col decode incremental per thread (no divisions in the main
//         loop), blocks rastered N-tile-fastest, u8 epilogue staged through shared memory
//         (coalesced 16-byte summand loads / output stores, one PRMT per byte pair).
//       - small IC with dilation_w == 1 and KW*IC <= 24 (conv1 7x7x3): the same kernel in
//         row-gather mode (kRow): K = (ky, 32-byte segment of the KW*IC contiguous input bytes),
//         six aligned 4-byte loads + funnel shifts per segment; weights packed in that layout.
//       - other small IC (Kp <= kGatherMaxKp): ConvMmaKernel<..., kGather>, byte gather through
//         a shared-memory K table, two stages.
//     * qu8_conv_wgmma_128x<BN>c64 (sm_90a builds, compute capability 9.0): ConvWgmmaKernel,
//       wgmma.mma_async m64nBNk32 from 64-byte-swizzled shared memory, two warpgroups, 6-stage
//       cp.async pipeline with one wgmma group in flight; same loads / epilogue as above.
//
//     * qu8_conv_mma1x1_128x{128,64} (1x1, IC % 16 == 0, roundup(IC, 64) <= 256):
//       Conv1x1ResKernel, persistent blocks with a resident weight tile and the whole K of an A
//       tile in shared memory, the next A tile loaded during the current tile's mma + epilogue.
//
// Tile choice: tfq8_cuda_conv2d_select takes the resident-K 1x1 kernel for stride-1 unpadded 1x1
// shapes with Kp <= 256 (OC > 64 or Kp == 64) and >= 2 tiles per SM; else SelectPipeTile
// (IC % 16 == 0) estimates waves x per-wave work / relative tile
// throughput over 128x128, 256x64, 64x128, 128x64, 64x64 (and the wgmma tiles where built and K
// is long enough: K >= 512 for OC > 64, K >= 128 for OC <= 64); SelectRowTile for the row
// gather; SelectMmaTile for the byte gather. No split-K yet (see docs/cuda.md).
#include <algorithm>
#include <atomic>
#include <type_traits>
#include <cmath>
#include <cstdlib>

#include "custom_ops/kernels/cuda/tfq8_cuda.h"

namespace {

constexpr int kThreads = 256;   // every conv kernel: 8 warps
constexpr int kKPack = 64;      // packed-K granularity = the mma kernel's BK
constexpr int kMaxGridY = 65535;
constexpr int kRowSeg = 32;     // row-gather layout: packed K bytes per filter row (ky)
constexpr int kRowMaxBytes = 24;  // row-gather: KW * IC <= 24 (six 4-byte words)

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline size_t Align256(size_t n) { return (n + 255) & ~size_t{255}; }

struct EpilogueArgs {
  const int32_t* bias_acc;
  const float* mul;
  const float* badd;
  const uint8_t* summand;  // NULL: none
  void* y;
  int out_type;
  int summand_zp;
  float mul_s;
  float lo, hi;
  int out_zp;
};

struct ConvArgs {
  int64_t n, h, w, c, kh, kw, oc, oh, ow;
  int sh, sw, dh, dw, pt, pl;
  int64_t m_total;  // n * oh * ow
  int64_t k_total;  // kh * kw * c (conv), kh * kw (depthwise)
  int64_t kp;       // packed row length
  int zp_in;
  int chan_mult;    // depthwise channel multiplier
  const uint8_t* x;
  const int8_t* filt;    // original filter
  const int8_t* packed;  // [oc][kp]
  EpilogueArgs e;
};

__device__ __forceinline__ void Epilogue(const EpilogueArgs& e, int64_t oc_total, int64_t m,
                                         int64_t c, int32_t acc) {
  acc += e.bias_acc[c];
  const int64_t idx = m * oc_total + c;
  if (e.out_type == TFQ8_OUT_S32) {
    static_cast<int32_t*>(e.y)[idx] = acc;
    return;
  }
  float t = __fmul_rn(__int2float_rn(acc), e.mul[c]);
  t = __fadd_rn(t, e.badd[c]);
  if (e.summand != nullptr) {
    t = __fadd_rn(t, __fmul_rn(__int2float_rn(static_cast<int>(e.summand[idx]) - e.summand_zp),
                               e.mul_s));
  }
  t = t >= e.lo ? t : e.lo;
  t = t <= e.hi ? t : e.hi;
  if (e.out_type == TFQ8_OUT_U8) {
    static_cast<uint8_t*>(e.y)[idx] = static_cast<uint8_t>(__float2int_rn(t) + e.out_zp);
  } else {
    static_cast<float*>(e.y)[idx] = t;
  }
}

// Two adjacent channels c, c + 1 of pixel m (c even, oc even, u8 output): the same per-element
// arithmetic as Epilogue(), but one 2-byte summand load and one 2-byte store.
__device__ __forceinline__ void EpilogueU8Pair(const EpilogueArgs& e, int64_t oc_total, int64_t m,
                                               int64_t c, int32_t acc0, int32_t acc1) {
  const int64_t idx = m * oc_total + c;
  int32_t accs[2] = {acc0, acc1};
  uint32_t sv = 0;
  if (e.summand != nullptr) sv = *reinterpret_cast<const uint16_t*>(e.summand + idx);
  uint32_t out = 0;
#pragma unroll
  for (int q = 0; q < 2; ++q) {
    const int32_t acc = accs[q] + e.bias_acc[c + q];
    float t = __fmul_rn(__int2float_rn(acc), e.mul[c + q]);
    t = __fadd_rn(t, e.badd[c + q]);
    if (e.summand != nullptr) {
      const int sq = static_cast<int>((sv >> (8 * q)) & 0xffu);
      t = __fadd_rn(t, __fmul_rn(__int2float_rn(sq - e.summand_zp), e.mul_s));
    }
    t = t >= e.lo ? t : e.lo;
    t = t <= e.hi ? t : e.hi;
    out |= (static_cast<uint32_t>(__float2int_rn(t) + e.out_zp) & 0xffu) << (8 * q);
  }
  *reinterpret_cast<uint16_t*>(static_cast<uint8_t*>(e.y) + idx) = static_cast<uint16_t>(out);
}

// u8 output value of one element given its summand byte sq (ignored without summand): the same
// per-element arithmetic as Epilogue().
__device__ __forceinline__ uint32_t EpilogueU8Value(const EpilogueArgs& e, int64_t c, int32_t acc,
                                                    uint32_t sq) {
  acc += e.bias_acc[c];
  float t = __fmul_rn(__int2float_rn(acc), e.mul[c]);
  t = __fadd_rn(t, e.badd[c]);
  if (e.summand != nullptr) {
    t = __fadd_rn(t, __fmul_rn(__int2float_rn(static_cast<int>(sq) - e.summand_zp), e.mul_s));
  }
  t = t >= e.lo ? t : e.lo;
  t = t <= e.hi ? t : e.hi;
  return static_cast<uint32_t>(__float2int_rn(t) + e.out_zp) & 0xffu;
}

// Two adjacent u8 outputs (channels c, c + 1) from their accumulators and per-channel constants:
// the arithmetic of Epilogue() (fmaxf / fminf clamp like the compares: a NaN takes lo; the sign of
// a zero does not survive the integer conversion), both bytes in the low 16 bits (one PRMT).
template <bool kHasS>
__device__ __forceinline__ uint32_t U8PairValue(const EpilogueArgs& e, int32_t a0, int32_t a1,
                                                int32_t ba0, int32_t ba1, float mu0, float mu1,
                                                float bd0, float bd1, uint32_t sv) {
  float t0 = __fadd_rn(__fmul_rn(__int2float_rn(a0 + ba0), mu0), bd0);
  float t1 = __fadd_rn(__fmul_rn(__int2float_rn(a1 + ba1), mu1), bd1);
  if (kHasS) {
    t0 = __fadd_rn(t0, __fmul_rn(__int2float_rn(static_cast<int>(sv & 0xffu) - e.summand_zp),
                                 e.mul_s));
    t1 = __fadd_rn(t1, __fmul_rn(__int2float_rn(static_cast<int>((sv >> 8) & 0xffu) -
                                                e.summand_zp),
                                 e.mul_s));
  }
  t0 = fminf(fmaxf(t0, e.lo), e.hi);
  t1 = fminf(fmaxf(t1, e.lo), e.hi);
  return __byte_perm(static_cast<uint32_t>(__float2int_rn(t0) + e.out_zp),
                     static_cast<uint32_t>(__float2int_rn(t1) + e.out_zp), 0x0040);
}

// ---- preparation --------------------------------------------------------------------------

// filter [K][OC] (row-major, K = kh*kw*ic) -> packed [OC][Kp]; 32x32 tiles through shared
// memory so both the read (along OC) and the write (along K) coalesce. Block (32, 8).
// Row layout (seg_in > 0, the small-IC row-gather kernel): packed k = ky * kRowSeg + j holds
// filter row k_orig = ky * seg_in + j for j < seg_in (seg_in = KW * IC), zero otherwise.
__global__ void PackWeightsKernel(const int8_t* __restrict__ w, int64_t k_total, int64_t oc_total,
                                  int64_t kp, int seg_in, int8_t* __restrict__ packed) {
  __shared__ int8_t tile[32][33];
  const int64_t k0 = blockIdx.x * 32LL, c0 = blockIdx.y * 32LL;
  for (int r = threadIdx.y; r < 32; r += 8) {
    int64_t k = k0 + r;
    const int64_t c = c0 + threadIdx.x;
    if (seg_in > 0) {
      const int64_t j = k % kRowSeg;
      k = j < seg_in ? (k / kRowSeg) * seg_in + j : k_total;
    }
    tile[r][threadIdx.x] = (k < k_total && c < oc_total) ? w[k * oc_total + c] : int8_t{0};
  }
  __syncthreads();
  for (int r = threadIdx.y; r < 32; r += 8) {
    const int64_t c = c0 + r, k = k0 + threadIdx.x;
    if (c < oc_total && k < kp) packed[c * kp + k] = tile[threadIdx.x][r];
  }
}

struct PrepArgs {
  float s_in;
  int zp_in;
  int bias_kind;  // 0 none, 1 f32, 2 int32
  int per_channel;
  int out_type;
  float s_out;    // 1 for f32 / int32 output
};

__device__ void FinishParams(const PrepArgs& p, int64_t c, int32_t sum_w, const void* bias,
                             const float* filter_scale, int32_t* bias_acc, float* mul,
                             float* badd) {
  const double s_w = filter_scale[p.per_channel ? c : 0];
  int32_t ba = -p.zp_in * sum_w;
  float bf = 0.0f;
  if (p.bias_kind == 2) {
    ba += static_cast<const int32_t*>(bias)[c];
  } else if (p.bias_kind == 1) {
    const double b = static_cast<const float*>(bias)[c];
    if (p.out_type == TFQ8_OUT_S32) {
      // rne(bias / (s_in * s_w)) in double (tests/ops/numpy_ref.py), saturated to int32.
      double q = __ddiv_rn(b, __dmul_rn(static_cast<double>(p.s_in), s_w));
      q = fmin(fmax(q, -2147483648.0), 2147483647.0);
      ba += __double2int_rn(q);
    } else {
      bf = __double2float_rn(__ddiv_rn(b, static_cast<double>(p.s_out)));
    }
  }
  bias_acc[c] = ba;
  mul[c] = __double2float_rn(
      __ddiv_rn(__dmul_rn(static_cast<double>(p.s_in), s_w), static_cast<double>(p.s_out)));
  badd[c] = bf;
}

// Conv: one warp per output channel sums its packed row (16-byte loads).
__global__ void ParamsFromPackedKernel(PrepArgs p, const int8_t* __restrict__ packed, int64_t kp,
                                       int64_t oc_total, const void* bias,
                                       const float* filter_scale, int32_t* bias_acc, float* mul,
                                       float* badd) {
  const int64_t c = blockIdx.x * (kThreads / 32LL) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (c >= oc_total) return;
  const int4* row = reinterpret_cast<const int4*>(packed + c * kp);
  int32_t s = 0;
  for (int64_t i = lane; i < kp / 16; i += 32) {
    const int4 v = row[i];
    const int words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      s += static_cast<int8_t>(words[j]) + static_cast<int8_t>(words[j] >> 8) +
           static_cast<int8_t>(words[j] >> 16) + static_cast<int8_t>(words[j] >> 24);
    }
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
  if (lane == 0) FinishParams(p, c, s, bias, filter_scale, bias_acc, mul, badd);
}

// Depthwise: filter [KH*KW][OC]; one thread per output channel (KH*KW is small).
__global__ void ParamsDepthwiseKernel(PrepArgs p, const int8_t* __restrict__ w, int64_t taps,
                                      int64_t oc_total, const void* bias,
                                      const float* filter_scale, int32_t* bias_acc, float* mul,
                                      float* badd) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= oc_total) return;
  int32_t s = 0;
  for (int64_t t = 0; t < taps; ++t) s += w[t * oc_total + c];
  FinishParams(p, c, s, bias, filter_scale, bias_acc, mul, badd);
}

// ---- reference kernel: one thread per output element -----------------------------------------

// m -> (ox, oy, n); 32-bit divisions (a fraction of the 64-bit ones' cost) whenever m_total fits.
__device__ __forceinline__ void DecodeM(const ConvArgs& a, int64_t m, int64_t* ox, int64_t* oy,
                                        int64_t* n) {
  if (a.m_total <= 0xffffffffLL) {
    const uint32_t mm = static_cast<uint32_t>(m), ow = static_cast<uint32_t>(a.ow),
                   oh = static_cast<uint32_t>(a.oh);
    const uint32_t r = mm / ow;
    *ox = mm - r * ow;
    *oy = r % oh;
    *n = r / oh;
  } else {
    const int64_t r = m / a.ow;
    *ox = m - r * a.ow;
    *oy = r % a.oh;
    *n = r / a.oh;
  }
}

__device__ __forceinline__ void DecodePixel(const ConvArgs& a, int64_t m, int64_t* n, int64_t* iy0,
                                            int64_t* ix0) {
  const int64_t ox = m % a.ow;
  const int64_t r = m / a.ow;
  const int64_t oy = r % a.oh;
  *n = r / a.oh;
  *iy0 = oy * a.sh - a.pt;
  *ix0 = ox * a.sw - a.pl;
}

template <bool kDepthwise>
__global__ void ConvRefKernel(ConvArgs a) {
  const int64_t total = a.m_total * a.oc;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t c = i % a.oc, m = i / a.oc;
    int64_t n, iy0, ix0;
    DecodePixel(a, m, &n, &iy0, &ix0);
    int32_t acc = 0;
    for (int64_t ky = 0; ky < a.kh; ++ky) {
      const int64_t iy = iy0 + ky * a.dh;
      for (int64_t kx = 0; kx < a.kw; ++kx) {
        const int64_t ix = ix0 + kx * a.dw;
        const bool inside = iy >= 0 && iy < a.h && ix >= 0 && ix < a.w;
        const uint8_t* px = a.x + ((n * a.h + iy) * a.w + ix) * a.c;
        const int64_t tap = ky * a.kw + kx;
        if (kDepthwise) {
          const int xv = inside ? px[c / a.chan_mult] : a.zp_in;
          acc += xv * a.filt[tap * a.oc + c];
        } else {
          for (int64_t ic = 0; ic < a.c; ++ic) {
            const int xv = inside ? px[ic] : a.zp_in;
            acc += xv * a.filt[(tap * a.c + ic) * a.oc + c];
          }
        }
      }
    }
    Epilogue(a.e, a.oc, m, c, acc);
  }
}

// ---- dp4a kernel ------------------------------------------------------------------------------

__device__ __forceinline__ int32_t Dp4a(uint32_t a_u8, uint32_t b_s8, int32_t c) {
  int32_t d;
  asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a_u8), "r"(b_s8), "r"(c));
  return d;
}

// Loads the 4 (dp4a) or 16 (mma) bytes of im2col row m at K offset k; padded taps read zp_in,
// k >= K reads 0. Requires c % kBytes == 0 so the bytes lie in one tap.
struct PixelRow {
  int64_t base;  // offset of image n
  int64_t iy0, ix0;
  bool valid;
};

__device__ __forceinline__ PixelRow MakeRow(const ConvArgs& a, int64_t m) {
  PixelRow r;
  r.valid = m < a.m_total;
  int64_t n = 0;
  r.iy0 = r.ix0 = 0;
  if (r.valid) DecodePixel(a, m, &n, &r.iy0, &r.ix0);
  r.base = n * a.h * a.w * a.c;
  return r;
}

// Returns the element offset of (row, k) in x, or -1 for a padded position, -2 beyond K.
__device__ __forceinline__ int64_t ImOffset(const ConvArgs& a, const PixelRow& r, int64_t k) {
  if (k >= a.k_total) return -2;
  if (!r.valid) return -1;
  const int64_t tap = k / a.c, ic = k - tap * a.c;
  const int64_t ky = tap / a.kw, kx = tap - ky * a.kw;
  const int64_t iy = r.iy0 + ky * a.dh, ix = r.ix0 + kx * a.dw;
  if (iy < 0 || iy >= a.h || ix < 0 || ix >= a.w) return -1;
  return r.base + (iy * a.w + ix) * a.c + ic;
}

constexpr int kDp4aTile = 64;   // pixels and channels per block
constexpr int kDp4aBKW = 8;     // K words (4 bytes) per step

__global__ void __launch_bounds__(kThreads) ConvDp4aKernel(ConvArgs a) {
  __shared__ uint32_t As[kDp4aBKW][kDp4aTile];
  __shared__ uint32_t Bs[kDp4aBKW][kDp4aTile];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t m0 = blockIdx.x * static_cast<int64_t>(kDp4aTile);
  const int64_t c0 = blockIdx.y * static_cast<int64_t>(kDp4aTile);
  const uint32_t zp4 = 0x01010101u * static_cast<uint32_t>(a.zp_in);
  constexpr int kLoads = kDp4aTile * kDp4aBKW / kThreads;
  PixelRow rows[kLoads];
#pragma unroll
  for (int j = 0; j < kLoads; ++j) rows[j] = MakeRow(a, m0 + (tid + j * kThreads) / kDp4aBKW);
  int32_t acc[4][4] = {};
  for (int64_t k0 = 0; k0 < a.k_total; k0 += 4 * kDp4aBKW) {
#pragma unroll
    for (int j = 0; j < kLoads; ++j) {
      const int idx = tid + j * kThreads, r = idx / kDp4aBKW, wd = idx % kDp4aBKW;
      const int64_t off = ImOffset(a, rows[j], k0 + 4 * wd);
      As[wd][r] = off >= 0 ? *reinterpret_cast<const uint32_t*>(a.x + off)
                           : (off == -1 ? zp4 : 0u);
      const int64_t c = c0 + r;
      Bs[wd][r] = c < a.oc ? *reinterpret_cast<const uint32_t*>(a.packed + c * a.kp + k0 + 4 * wd)
                           : 0u;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kDp4aBKW; ++kk) {
      uint32_t av[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        av[i] = As[kk][ty + 16 * i];
        bv[i] = Bs[kk][tx + 16 * i];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = Dp4a(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + ty + 16 * i;
    if (m >= a.m_total) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t c = c0 + tx + 16 * j;
      if (c < a.oc) Epilogue(a.e, a.oc, m, c, acc[i][j]);
    }
  }
}

// ---- mma.sync kernel ----------------------------------------------------------------------

constexpr int kBK = kKPack;      // bytes of K per stage
constexpr int kGatherMaxKp = 512;  // small-IC gather path: K table entries in shared memory
constexpr int kRowBytes = kBK + 16;  // smem row pitch: 80 B = 20 words -> conflict-free fragments

__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool fill_zero) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int src_size = fill_zero ? 0 : 16;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem),
               "r"(src_size));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Four 8x16-byte matrices from shared memory; lane l gives the row address of matrix l / 8,
// row l % 8 (16-byte aligned); lane l receives word l % 4 of row l / 4 of each matrix.
__device__ __forceinline__ void LdMatrixX4(uint32_t (&r)[4], const void* smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

__device__ __forceinline__ void MmaU8S8(int32_t (&d)[4], const uint32_t (&a)[4],
                                        const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  __trap();  // the host never launches this kernel below sm_80
#endif
}

// BM x BN block tile, WM x WN warp tile, 8 warps.
// kGather (small IC, c % 16 != 0, e.g. conv1 with IC = 3): K is the flattened (ky, kx, ic) taps
// as packed (padded to Kp with zero weights); the A tile is gathered byte by byte through a
// per-block table k -> (element offset from the window origin, dy, dx) in shared memory, loaded
// into registers before the current stage's mma and stored to shared memory after it. Padded
// positions, rows past M and the K padding read zp_in (the K padding's weights are 0).
template <int BM, int BN, int WM, int WN, bool kGather>
__global__ void __launch_bounds__(kThreads) ConvMmaKernel(ConvArgs a) {
  static_assert((BM / WM) * (BN / WN) == kThreads / 32, "8 warps");
  constexpr int MT = WM / 16, NT = WN / 8;
  static_assert(NT % 2 == 0, "B fragments are loaded in pairs of n8 tiles");
  constexpr int kChunks = kBK / 16;                      // 16-byte chunks per row
  constexpr int kALoads = BM * kChunks / kThreads;
  constexpr int kBLoads = BN * kChunks / kThreads;
  static_assert(kALoads >= 1 && kBLoads >= 1, "tile too small for 256 threads");
  __shared__ __align__(16) uint8_t As[2][BM][kRowBytes];
  __shared__ __align__(16) int8_t Bs[2][BN][kRowBytes];
  __shared__ int2 ktab[kGather ? kGatherMaxKp : 1];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;
  const int wm = warp / (BN / WN), wn = warp % (BN / WN);
  const int64_t m0 = blockIdx.x * static_cast<int64_t>(BM);
  const int64_t c0 = blockIdx.y * static_cast<int64_t>(BN);
  const uint32_t zp4 = 0x01010101u * static_cast<uint32_t>(a.zp_in);
  const uint4 zp16 = make_uint4(zp4, zp4, zp4, zp4);

  PixelRow rows[kALoads];
#pragma unroll
  for (int j = 0; j < kALoads; ++j) rows[j] = MakeRow(a, m0 + (tid + j * kThreads) / kChunks);

  // Gather path: per row, the element offset of the window origin (iy0, ix0) (may be negative).
  int64_t gorg[kALoads];
  uint4 areg[kALoads];
  if (kGather) {
    for (int k = tid; k < a.kp; k += kThreads) {
      int2 e = make_int2(0, 0x7fff7fff);  // beyond K: out of bounds -> zp_in
      if (k < a.k_total) {
        const int tap = static_cast<int>(k / a.c), ic = static_cast<int>(k - tap * a.c);
        const int ky = tap / static_cast<int>(a.kw), kx = tap - ky * static_cast<int>(a.kw);
        const int dy = ky * a.dh, dx = kx * a.dw;
        e = make_int2(static_cast<int>((dy * a.w + dx) * a.c + ic), (dy << 16) | dx);
      }
      ktab[k] = e;
    }
#pragma unroll
    for (int j = 0; j < kALoads; ++j) {
      gorg[j] = rows[j].base + (rows[j].iy0 * a.w + rows[j].ix0) * a.c;
    }
    __syncthreads();
  }
  auto gather_a = [&](int64_t k0) {
    const int h = static_cast<int>(a.h), w = static_cast<int>(a.w);
#pragma unroll
    for (int j = 0; j < kALoads; ++j) {
      const int ch = (tid + j * kThreads) % kChunks;
      const int iy0 = static_cast<int>(rows[j].iy0), ix0 = static_cast<int>(rows[j].ix0);
      uint32_t words[4];
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        uint32_t wd = 0;
#pragma unroll
        for (int b = 0; b < 4; ++b) {
          const int2 e = ktab[k0 + 16 * ch + 4 * q + b];
          const int iy = iy0 + (e.y >> 16), ix = ix0 + (e.y & 0xffff);
          const bool in = rows[j].valid && static_cast<unsigned>(iy) < static_cast<unsigned>(h) &&
                          static_cast<unsigned>(ix) < static_cast<unsigned>(w);
          const uint32_t v = in ? static_cast<uint32_t>(__ldg(a.x + gorg[j] + e.x))
                                : static_cast<uint32_t>(a.zp_in);
          wd |= v << (8 * b);
        }
        words[q] = wd;
      }
      areg[j] = make_uint4(words[0], words[1], words[2], words[3]);
    }
  };
  auto store_a = [&](int buf) {
#pragma unroll
    for (int j = 0; j < kALoads; ++j) {
      const int idx = tid + j * kThreads, r = idx / kChunks, ch = idx % kChunks;
      *reinterpret_cast<uint4*>(&As[buf][r][16 * ch]) = areg[j];
    }
  };

  auto load_stage = [&](int buf, int64_t k0) {
#pragma unroll
    for (int j = 0; j < kALoads && !kGather; ++j) {
      const int idx = tid + j * kThreads, r = idx / kChunks, ch = idx % kChunks;
      const int64_t off = ImOffset(a, rows[j], k0 + 16 * ch);
      uint8_t* dst = &As[buf][r][16 * ch];
      if (off == -1) {
        *reinterpret_cast<uint4*>(dst) = zp16;
      } else {
        CpAsync16(dst, off >= 0 ? a.x + off : a.x, off < 0);
      }
    }
#pragma unroll
    for (int j = 0; j < kBLoads; ++j) {
      const int idx = tid + j * kThreads, r = idx / kChunks, ch = idx % kChunks;
      const int64_t c = c0 + r;
      const bool in = c < a.oc;
      CpAsync16(&Bs[buf][r][16 * ch], in ? a.packed + c * a.kp + k0 + 16 * ch : a.packed, !in);
    }
  };

  int32_t acc[MT][NT][4];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0;

  const int64_t stages = a.kp / kBK;
  if (kGather) {
    gather_a(0);
    store_a(0);
  }
  load_stage(0, 0);
  CpAsyncCommit();
  for (int64_t s = 0; s < stages; ++s) {
    const int buf = static_cast<int>(s & 1);
    if (s + 1 < stages) {
      load_stage(buf ^ 1, (s + 1) * kBK);
      CpAsyncCommit();
      if (kGather) gather_a((s + 1) * kBK);
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();
#pragma unroll
    for (int ks = 0; ks < kBK; ks += 32) {
      // Fragments via ldmatrix (same words as a0 = A[g][4t], a1 = A[g+8][4t],
      // a2 = A[g][16+4t], a3 = A[g+8][16+4t]; b0 = B[n=g][4t], b1 = B[g][16+4t]).
      uint32_t af[MT][4], bf[NT][2];
#pragma unroll
      for (int i = 0; i < MT; ++i) {
        const int r = wm * WM + i * 16 + (lane % 8) + 8 * ((lane / 8) % 2);
        LdMatrixX4(af[i], &As[buf][r][ks + 16 * (lane / 16)]);
      }
#pragma unroll
      for (int j = 0; j < NT; j += 2) {
        const int cc = wn * WN + j * 8 + 8 * (lane / 16) + (lane % 8);
        uint32_t r4[4];
        LdMatrixX4(r4, &Bs[buf][cc][ks + 16 * ((lane / 8) % 2)]);
        bf[j][0] = r4[0];
        bf[j][1] = r4[1];
        bf[j + 1][0] = r4[2];
        bf[j + 1][1] = r4[3];
      }
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j) MmaU8S8(acc[i][j], af[i], bf[j]);
    }
    if (kGather && s + 1 < stages) store_a(buf ^ 1);  // buf ^ 1 was last read in step s - 1
    __syncthreads();
  }

  // Accumulator fragment: d0,d1 -> row g, cols 2t, 2t+1; d2,d3 -> row g+8.
  // u8 output with OC % 16 == 0 and 16-byte aligned y/summand: staged through shared memory (the
  // A tiles, free after the last step) so summand loads and output stores are 16-byte, coalesced.
  const bool staged = a.e.out_type == TFQ8_OUT_U8 && a.oc % 16 == 0 &&
                      ((reinterpret_cast<uintptr_t>(a.e.y) |
                        reinterpret_cast<uintptr_t>(a.e.summand)) & 15u) == 0;
  if (staged) {
    constexpr int kSP = BN + 16;  // staging pitch (bytes): conflict-free 2-byte fragment access
    constexpr int kCh = BN / 16;
    static_assert(BM * kSP <= 2 * BM * kRowBytes, "staging tile must fit the A buffers");
    uint8_t* st = &As[0][0][0];
    const bool has_s = a.e.summand != nullptr;
    if (has_s) {
      for (int idx = tid; idx < BM * kCh; idx += kThreads) {
        const int r = idx / kCh, ch = idx % kCh;
        const int64_t m = m0 + r, c = c0 + 16 * ch;
        if (m < a.m_total && c < a.oc) {
          *reinterpret_cast<uint4*>(st + r * kSP + 16 * ch) =
              *reinterpret_cast<const uint4*>(a.e.summand + m * a.oc + c);
        }
      }
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < MT; ++i) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = wm * WM + i * 16 + g + 8 * half;
        if (m0 + r >= a.m_total) continue;
#pragma unroll
        for (int j = 0; j < NT; ++j) {
          const int cl = wn * WN + j * 8 + 2 * t;
          const int64_t c = c0 + cl;  // even; OC % 16 == 0, so c + 1 < OC too
          if (c >= a.oc) continue;
          uint16_t* p = reinterpret_cast<uint16_t*>(st + r * kSP + cl);
          const uint32_t sv = has_s ? *p : 0u;
          *p = static_cast<uint16_t>(EpilogueU8Value(a.e, c, acc[i][j][2 * half], sv & 0xffu) |
                                     (EpilogueU8Value(a.e, c + 1, acc[i][j][2 * half + 1],
                                                      sv >> 8) << 8));
        }
      }
    }
    __syncthreads();
    for (int idx = tid; idx < BM * kCh; idx += kThreads) {
      const int r = idx / kCh, ch = idx % kCh;
      const int64_t m = m0 + r, c = c0 + 16 * ch;
      if (m < a.m_total && c < a.oc) {
        *reinterpret_cast<uint4*>(static_cast<uint8_t*>(a.e.y) + m * a.oc + c) =
            *reinterpret_cast<const uint4*>(st + r * kSP + 16 * ch);
      }
    }
    return;
  }
  const bool pair_ok = a.e.out_type == TFQ8_OUT_U8 && a.oc % 2 == 0 &&  // 2-byte aligned pairs
                       ((reinterpret_cast<uintptr_t>(a.e.y) |
                         reinterpret_cast<uintptr_t>(a.e.summand)) & 1u) == 0;
#pragma unroll
  for (int i = 0; i < MT; ++i) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t m = m0 + wm * WM + i * 16 + g + 8 * half;
      if (m >= a.m_total) continue;
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const int64_t cp = c0 + wn * WN + j * 8 + 2 * t;  // even
        if (pair_ok && cp + 1 < a.oc) {
          EpilogueU8Pair(a.e, a.oc, m, cp, acc[i][j][2 * half], acc[i][j][2 * half + 1]);
          continue;
        }
#pragma unroll
        for (int q = 0; q < 2; ++q) {
          const int64_t c = cp + q;
          if (c < a.oc) Epilogue(a.e, a.oc, m, c, acc[i][j][2 * half + q]);
        }
      }
    }
  }
}

// ---- pipelined mma.sync kernel (IC % 16 == 0) ---------------------------------------------
// BM x BN block tile, WM x WN warp tile, 8 warps, STAGES-deep cp.async pipeline in dynamic shared
// memory (> 48 KB: cudaFuncAttributeMaxDynamicSharedMemorySize), one __syncthreads per 64-byte
// K stage. Thread tid always loads 16-byte chunk tid % 4 of its rows (256 % 4 == 0), so the
// im2col decode k -> (ky, kx, ic) is one per thread and stage, done incrementally (no divisions
// in the main loop); a row's window origin is decoded once. Blocks are rastered N-tile-fastest
// (consecutive blocks share the same A rows, the weights stay in L2). Per-channel epilogue
// constants are loaded once per column pair, not per element.
template <int BM, int BN, int WM, int WN, int STAGES>
constexpr int PipeSmemBytes() {
  return STAGES * (BM + BN) * kRowBytes;
}

template <int BM, int BN, int WM, int WN, int STAGES, int MINB, bool kRow>
__global__ void __launch_bounds__(kThreads, MINB) ConvMmaPipeKernel(ConvArgs a, int n_tiles) {
  static_assert((BM / WM) * (BN / WN) == kThreads / 32, "8 warps");
  constexpr int MT = WM / 16, NT = WN / 8;
  static_assert(NT % 2 == 0, "B fragments are loaded in pairs of n8 tiles");
  constexpr int kChunks = kBK / 16;  // 4
  constexpr int kALoads = BM * kChunks / kThreads;
  constexpr int kBLoads = BN * kChunks / kThreads;
  constexpr int kRowStep = kThreads / kChunks;  // 64 rows between a thread's loads
  static_assert(kALoads >= 1 && kBLoads >= 1, "tile too small for 256 threads");
  extern __shared__ __align__(16) uint8_t smem[];
  uint8_t* const As = smem;                                      // [STAGES][BM][kRowBytes]
  int8_t* const Bs = reinterpret_cast<int8_t*>(smem + STAGES * BM * kRowBytes);  // [STAGES][BN][..]

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;
  const int wm = warp / (BN / WN), wn = warp % (BN / WN);
  const int64_t bid = blockIdx.x;
  const int64_t m0 = (bid / n_tiles) * BM;
  const int64_t c0 = (bid % n_tiles) * static_cast<int64_t>(BN);
  const uint32_t zp4 = 0x01010101u * static_cast<uint32_t>(a.zp_in);
  const uint4 zp16 = make_uint4(zp4, zp4, zp4, zp4);
  const int ch = tid % kChunks, r0 = tid / kChunks;
  const int H = static_cast<int>(a.h), W = static_cast<int>(a.w);

  // A rows of this thread: window origin and element offset of (iy0, ix0).
  int iy0[kALoads], ix0[kALoads];
  int64_t org[kALoads];
#pragma unroll
  for (int j = 0; j < kALoads && !kRow; ++j) {
    const int64_t m = m0 + r0 + j * kRowStep;
    if (m < a.m_total) {
      int64_t ox, oy, n;
      DecodeM(a, m, &ox, &oy, &n);
      iy0[j] = static_cast<int>(oy * a.sh - a.pt);
      ix0[j] = static_cast<int>(ox * a.sw - a.pl);
      org[j] = ((n * a.h + iy0[j]) * a.w + ix0[j]) * a.c;
    } else {
      iy0[j] = -(1 << 30);  // never inside: the row reads zp_in
      ix0[j] = 0;
      org[j] = 0;
    }
  }
  // B rows of this thread.
  const int8_t* bptr[kBLoads];
  bool bin[kBLoads];
#pragma unroll
  for (int j = 0; j < kBLoads; ++j) {
    const int64_t c = c0 + r0 + j * kRowStep;
    bin[j] = c < a.oc;
    bptr[j] = a.packed + (bin[j] ? c * a.kp + 16 * ch : 0);
  }
  // Incremental decode of this thread's K position k = 16 * ch + stage * kBK.
  const int C = static_cast<int>(a.c), KW = static_cast<int>(a.kw);
  int dec_ic = 0, dec_kx = 0, dec_ky = 0;
  int64_t dec_k = 0;
  auto advance = [&](int step) {
    dec_k += step;
    dec_ic += step;
    while (dec_ic >= C) {
      dec_ic -= C;
      if (++dec_kx == KW) {
        dec_kx = 0;
        ++dec_ky;
      }
    }
  };
  advance(16 * ch);

  // Row-gather mode (kRow: IC % 16 != 0, dilation_w == 1, KW * IC <= 24, e.g. conv1 7x7x3):
  // K is (ky, j) with kRowSeg = 32 bytes per filter row ky, j < KW * IC real (zero weights
  // beyond). The KW * IC input bytes of filter row ky are contiguous in x (one image row), so a
  // segment is six aligned 4-byte loads funnel-shifted into place; bytes outside the image row
  // (horizontal padding) and rows outside the image read zp_in. Thread tid gathers segment
  // tid % 2 (ky = 2 * stage + tid % 2) of row tid / 2 (+ 128 j) into registers before the
  // current stage's mma and stores it after (the buffer it fills was freed by this iteration's
  // barrier). Loads touch only aligned words that overlap the image row.
  constexpr int kRowSegs = BM * 2;  // segments per stage
  constexpr int kRLoads = (kRowSegs + kThreads - 1) / kThreads;
  int r_iy0[kRLoads], r_ix0[kRLoads];
  int64_t r_img[kRLoads];  // address (as integer) of image n's first byte
  uint32_t r_w[kRLoads][6];
  int r_sh[kRLoads], r_lo[kRLoads], r_hi[kRLoads];
  bool r_in[kRLoads];
  const int rseg = tid % 2;
  const int64_t row_bytes = a.w * a.c;

  if (kRow) {
#pragma unroll
    for (int j = 0; j < kRLoads; ++j) {
      const int64_t m = m0 + tid / 2 + j * (kThreads / 2);
      r_iy0[j] = -(1 << 30);
      r_ix0[j] = 0;
      r_img[j] = 0;
      if (m < a.m_total) {
        int64_t ox, oy, n;
        DecodeM(a, m, &ox, &oy, &n);
        r_iy0[j] = static_cast<int>(oy * a.sh - a.pt);
        r_ix0[j] = static_cast<int>(ox * a.sw - a.pl);
        r_img[j] = static_cast<int64_t>(reinterpret_cast<uintptr_t>(a.x)) + n * a.h * a.w * a.c;
      }
    }
  }
  auto row_gather = [&](int st) {
#pragma unroll
    for (int j = 0; j < kRLoads; ++j) {
      const int ky = 2 * st + rseg;
      const int iy = r_iy0[j] + ky * a.dh;
      const bool in = (kRowSegs % kThreads == 0 || tid + j * kThreads < kRowSegs) &&
                      ky < a.kh && static_cast<unsigned>(iy) < static_cast<unsigned>(H);
      r_in[j] = in;
      const int64_t rs = r_img[j] + iy * row_bytes;  // absolute address of the image row
      const int64_t off = rs + static_cast<int64_t>(r_ix0[j]) * a.c;
      const int64_t a0 = off & ~int64_t{3};
      r_sh[j] = static_cast<int>(off - a0);
      r_lo[j] = static_cast<int>(min(max(rs - off, int64_t{0}), int64_t{24}));
      r_hi[j] = static_cast<int>(min(max(rs + row_bytes - off, int64_t{0}), int64_t{24}));
#pragma unroll
      for (int i = 0; i < 6; ++i) {
        const int64_t wa = a0 + 4 * i;
        const bool ok = in && wa + 4 > rs && wa < rs + row_bytes;
        r_w[j][i] = ok ? __ldg(reinterpret_cast<const uint32_t*>(static_cast<uintptr_t>(wa))) : 0u;
      }
    }
  };
  auto row_store = [&](int buf) {
    uint8_t* Ab = As + buf * (BM * kRowBytes);
#pragma unroll
    for (int j = 0; j < kRLoads; ++j) {
      if (kRowSegs % kThreads != 0 && tid + j * kThreads >= kRowSegs) continue;
      const int sh = 8 * r_sh[j];
      uint32_t o[6];
#pragma unroll
      for (int q = 0; q < 5; ++q) o[q] = __funnelshift_r(r_w[j][q], r_w[j][q + 1], sh);
      o[5] = r_w[j][5] >> sh;
      if (!r_in[j]) {
#pragma unroll
        for (int q = 0; q < 6; ++q) o[q] = zp4;
      } else if (r_lo[j] > 0 || r_hi[j] < 24) {
#pragma unroll
        for (int q = 0; q < 6; ++q) {
          const int lo = min(max(r_lo[j] - 4 * q, 0), 4), hi = min(max(r_hi[j] - 4 * q, 0), 4);
          const uint32_t keep = static_cast<uint32_t>((0xffffffffull << (8 * lo)) &
                                                      (0xffffffffull >> (32 - 8 * hi)));
          o[q] = (o[q] & keep) | (zp4 & ~keep);
        }
      }
      uint8_t* dst = Ab + (tid / 2 + j * (kThreads / 2)) * kRowBytes + kRowSeg * rseg;
      *reinterpret_cast<uint4*>(dst) = make_uint4(o[0], o[1], o[2], o[3]);
      *reinterpret_cast<uint4*>(dst + 16) = make_uint4(o[4], o[5], 0u, 0u);
    }
  };

  const int stages = static_cast<int>(a.kp / kBK);
  auto load_stage = [&](int buf, int64_t s) {
    uint8_t* Ab = As + buf * (BM * kRowBytes);
    int8_t* Bb = Bs + buf * (BN * kRowBytes);
    const bool kin = dec_k < a.k_total;
    const int dy = dec_ky * a.dh, dx = dec_kx * a.dw;
    const int64_t toff = (static_cast<int64_t>(dy) * a.w + dx) * a.c + dec_ic;
#pragma unroll
    for (int j = 0; j < kALoads && !kRow; ++j) {
      uint8_t* dst = Ab + (r0 + j * kRowStep) * kRowBytes + 16 * ch;
      const bool in = static_cast<unsigned>(iy0[j] + dy) < static_cast<unsigned>(H) &&
                      static_cast<unsigned>(ix0[j] + dx) < static_cast<unsigned>(W);
      if (kin && !in) {
        *reinterpret_cast<uint4*>(dst) = zp16;
      } else {
        CpAsync16(dst, kin ? a.x + org[j] + toff : a.x, !kin);
      }
    }
#pragma unroll
    for (int j = 0; j < kBLoads; ++j) {
      CpAsync16(Bb + (r0 + j * kRowStep) * kRowBytes + 16 * ch, bptr[j] + s * kBK, !bin[j]);
    }
    if (!kRow) advance(kBK);
  };

  int32_t acc[MT][NT][4];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0;

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < stages) {
      load_stage(s, s);
      if (kRow) {
        row_gather(s);
        row_store(s);
      }
    }
    CpAsyncCommit();
  }
  for (int s = 0; s < stages; ++s) {
    CpAsyncWait<STAGES - 2>();
    __syncthreads();  // stage s is visible; buffer (s - 1) % STAGES is free again
    const int sn = s + STAGES - 1;
    if (sn < stages) {
      load_stage(sn % STAGES, sn);
      if (kRow) row_gather(sn);
    }
    CpAsyncCommit();
    const int buf = s % STAGES;
    const uint8_t* Ab = As + buf * (BM * kRowBytes);
    const int8_t* Bb = Bs + buf * (BN * kRowBytes);
#pragma unroll
    for (int ks = 0; ks < kBK; ks += 32) {
      uint32_t af[MT][4], bf[NT][2];
#pragma unroll
      for (int i = 0; i < MT; ++i) {
        const int r = wm * WM + i * 16 + (lane % 8) + 8 * ((lane / 8) % 2);
        LdMatrixX4(af[i], Ab + r * kRowBytes + ks + 16 * (lane / 16));
      }
#pragma unroll
      for (int j = 0; j < NT; j += 2) {
        const int cc = wn * WN + j * 8 + 8 * (lane / 16) + (lane % 8);
        uint32_t r4[4];
        LdMatrixX4(r4, Bb + cc * kRowBytes + ks + 16 * ((lane / 8) % 2));
        bf[j][0] = r4[0];
        bf[j][1] = r4[1];
        bf[j + 1][0] = r4[2];
        bf[j + 1][1] = r4[3];
      }
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j) MmaU8S8(acc[i][j], af[i], bf[j]);
    }
    if (kRow && sn < stages) row_store(sn % STAGES);
  }
  CpAsyncWait<0>();
  __syncthreads();  // all warps done with the stage buffers: the epilogue may reuse them

  // Accumulator fragment: d0,d1 -> row g, cols 2t, 2t+1; d2,d3 -> row g+8.
  const bool staged = a.e.out_type == TFQ8_OUT_U8 && a.oc % 16 == 0 &&
                      ((reinterpret_cast<uintptr_t>(a.e.y) |
                        reinterpret_cast<uintptr_t>(a.e.summand)) & 15u) == 0;
  if (staged) {
    constexpr int kSP = BN + 16;  // staging pitch (bytes): conflict-free 2-byte fragment access
    constexpr int kCh = BN / 16;
    static_assert(BM * kSP <= STAGES * (BM + BN) * kRowBytes, "staging tile fits");
    uint8_t* st = smem;
    const bool has_s = a.e.summand != nullptr;
    if (has_s) {
      for (int idx = tid; idx < BM * kCh; idx += kThreads) {
        const int r = idx / kCh, cq = idx % kCh;
        const int64_t m = m0 + r, c = c0 + 16 * cq;
        if (m < a.m_total && c < a.oc) {
          *reinterpret_cast<uint4*>(st + r * kSP + 16 * cq) =
              *reinterpret_cast<const uint4*>(a.e.summand + m * a.oc + c);
        }
      }
      __syncthreads();
    }
    auto stage_out = [&](auto has_s_tag) {
      constexpr bool kS = decltype(has_s_tag)::value;
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const int cl = wn * WN + j * 8 + 2 * t;
        const int64_t c = c0 + cl;  // even; OC % 16 == 0, so c + 1 < OC too
        if (c >= a.oc) continue;
        const int32_t ba0 = a.e.bias_acc[c], ba1 = a.e.bias_acc[c + 1];
        const float mu0 = a.e.mul[c], mu1 = a.e.mul[c + 1];
        const float bd0 = a.e.badd[c], bd1 = a.e.badd[c + 1];
#pragma unroll
        for (int i = 0; i < MT; ++i) {
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int r = wm * WM + i * 16 + g + 8 * half;
            uint16_t* p = reinterpret_cast<uint16_t*>(st + r * kSP + cl);
            *p = static_cast<uint16_t>(U8PairValue<kS>(
                a.e, acc[i][j][2 * half], acc[i][j][2 * half + 1], ba0, ba1, mu0, mu1, bd0, bd1,
                kS ? *p : 0u));
          }
        }
      }
    };
    if (has_s) {
      stage_out(std::true_type{});
    } else {
      stage_out(std::false_type{});
    }
    __syncthreads();
    for (int idx = tid; idx < BM * kCh; idx += kThreads) {
      const int r = idx / kCh, cq = idx % kCh;
      const int64_t m = m0 + r, c = c0 + 16 * cq;
      if (m < a.m_total && c < a.oc) {
        *reinterpret_cast<uint4*>(static_cast<uint8_t*>(a.e.y) + m * a.oc + c) =
            *reinterpret_cast<const uint4*>(st + r * kSP + 16 * cq);
      }
    }
    return;
  }
  const bool pair_ok = a.e.out_type == TFQ8_OUT_U8 && a.oc % 2 == 0 &&  // 2-byte aligned pairs
                       ((reinterpret_cast<uintptr_t>(a.e.y) |
                         reinterpret_cast<uintptr_t>(a.e.summand)) & 1u) == 0;
#pragma unroll
  for (int i = 0; i < MT; ++i) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t m = m0 + wm * WM + i * 16 + g + 8 * half;
      if (m >= a.m_total) continue;
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const int64_t cp = c0 + wn * WN + j * 8 + 2 * t;  // even
        if (pair_ok && cp + 1 < a.oc) {
          EpilogueU8Pair(a.e, a.oc, m, cp, acc[i][j][2 * half], acc[i][j][2 * half + 1]);
          continue;
        }
#pragma unroll
        for (int q = 0; q < 2; ++q) {
          const int64_t c = cp + q;
          if (c < a.oc) Epilogue(a.e, a.oc, m, c, acc[i][j][2 * half + q]);
        }
      }
    }
  }
}


// ---- resident-K 1x1 kernel (kh = kw = 1, IC % 16 == 0, Kp <= 256) -------------------------
// A 1x1 convolution is a plain GEMM (stride 1, no padding: A row m = the IC contiguous bytes of
// pixel m). The whole K fits in shared memory, so: persistent blocks, each keeping one N tile of
// the packed weights resident (loaded once) and walking M tiles (m = blockIdx / n_tiles, then
// + gridDim / n_tiles); the full-K A tile of the next M tile is loaded with cp.async while the
// current one is multiplied (mma.sync, the pipelined kernel's fragments) and written out (the same
// staged u8 epilogue). Blocks next to each other share the M tile (A from L2 for all but the
// first N tile). Strided / padded 1x1 shapes decode each A row (32-bit divisions); padded pixels
// read zp_in. Shared-memory pitch KP + 16 bytes (conflict-free ldmatrix); the u8 staging tile
// reuses the A buffer just multiplied when KP >= BN.
template <int BM, int BN, int KP>
constexpr int ResSmemBytes() {
  return (BN + 2 * BM) * (KP + 16) + (KP >= BN ? 0 : BM * (BN + 16));
}

template <int BM, int BN, int WM, int WN, int KP, int MINB>
__global__ void __launch_bounds__(kThreads, MINB)
    Conv1x1ResKernel(ConvArgs a, int n_tiles, int m_tiles, int dense) {
  static_assert((BM / WM) * (BN / WN) == kThreads / 32, "8 warps");
  constexpr int MT = WM / 16, NT = WN / 8;
  static_assert(NT % 2 == 0, "B fragments are loaded in pairs of n8 tiles");
  constexpr int P = KP + 16;    // shared row pitch (bytes)
  constexpr int CPR = KP / 16;  // 16-byte chunks per row
  static_assert((BM * CPR) % kThreads == 0 && (BN * CPR) % kThreads == 0, "whole loads");
  constexpr int kALoads = BM * CPR / kThreads;
  constexpr int kBLoads = BN * CPR / kThreads;
  constexpr bool kAlias = KP >= BN;  // staging tile fits the A buffer just multiplied
  extern __shared__ __align__(16) uint8_t smem[];
  int8_t* const Bs = reinterpret_cast<int8_t*>(smem);  // [BN][P], resident
  uint8_t* const A0 = smem + BN * P;                   // [2][BM][P]
  uint8_t* const St = A0 + 2 * BM * P;                 // [BM][BN + 16] unless kAlias

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;
  const int wm = warp / (BN / WN), wn = warp % (BN / WN);
  const int c0 = static_cast<int>(blockIdx.x % n_tiles) * BN;
  const int mstep = static_cast<int>(gridDim.x) / n_tiles;
  int mt = static_cast<int>(blockIdx.x) / n_tiles;
  const int C = static_cast<int>(a.c), OC = static_cast<int>(a.oc);
  const int H = static_cast<int>(a.h), W = static_cast<int>(a.w);
  const uint32_t zp4 = 0x01010101u * static_cast<uint32_t>(a.zp_in);
  const uint4 zp16 = make_uint4(zp4, zp4, zp4, zp4);

#pragma unroll
  for (int j = 0; j < kBLoads; ++j) {
    const int idx = tid + j * kThreads, r = idx / CPR, ch = idx % CPR;
    const int c = c0 + r;
    const bool in = c < OC;
    CpAsync16(Bs + r * P + 16 * ch, in ? a.packed + c * a.kp + 16 * ch : a.packed, !in);
  }
  // 32-bit element offsets (Res1x1Ok: input and output below 2^31 elements).
  const int M = static_cast<int>(a.m_total);
  auto load_a = [&](int buf, int mtile) {
    uint8_t* Ab = A0 + buf * (BM * P);
    const int mb = mtile * BM;
#pragma unroll
    for (int j = 0; j < kALoads; ++j) {
      const int idx = tid + j * kThreads, r = idx / CPR, ch = idx % CPR;
      const int m = mb + r;
      uint8_t* dst = Ab + r * P + 16 * ch;
      const bool ok = 16 * ch < C && m < M;
      if (dense) {
        CpAsync16(dst, a.x + (ok ? m * C + 16 * ch : 0), !ok);
      } else if (!ok) {
        CpAsync16(dst, a.x, true);
      } else {
        const int ow = static_cast<int>(a.ow), oh = static_cast<int>(a.oh);
        const int q = m / ow, ox = m - q * ow, n = q / oh, oy = q - n * oh;
        const int iy = oy * a.sh - a.pt, ix = ox * a.sw - a.pl;
        if (static_cast<unsigned>(iy) < static_cast<unsigned>(H) &&
            static_cast<unsigned>(ix) < static_cast<unsigned>(W)) {
          CpAsync16(dst, a.x + (((n * H + iy) * W + ix) * C + 16 * ch), false);
        } else {
          *reinterpret_cast<uint4*>(dst) = zp16;
        }
      }
    }
  };

  const bool staged = a.e.out_type == TFQ8_OUT_U8 && a.oc % 16 == 0 &&
                      ((reinterpret_cast<uintptr_t>(a.e.y) |
                        reinterpret_cast<uintptr_t>(a.e.summand)) & 15u) == 0;
  const bool has_s = a.e.summand != nullptr;
  const bool pair_ok = a.e.out_type == TFQ8_OUT_U8 && a.oc % 2 == 0 &&
                       ((reinterpret_cast<uintptr_t>(a.e.y) |
                         reinterpret_cast<uintptr_t>(a.e.summand)) & 1u) == 0;

  if (mt < m_tiles) load_a(0, mt);
  CpAsyncCommit();  // group: B + the first A tile
  for (int it = 0; mt < m_tiles; mt += mstep, ++it) {
    const int buf = it & 1;
    __syncthreads();  // the previous tile's epilogue is done with buffer buf ^ 1 / the staging
    if (mt + mstep < m_tiles) load_a(buf ^ 1, mt + mstep);
    CpAsyncCommit();
    CpAsyncWait<1>();
    __syncthreads();  // A tile mt (and B) visible
    const uint8_t* Ab = A0 + buf * (BM * P);
    int32_t acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[i][j][r] = 0;
#pragma unroll 2
    for (int ks = 0; ks < KP; ks += 32) {
      uint32_t af[MT][4], bf[NT][2];
#pragma unroll
      for (int i = 0; i < MT; ++i) {
        const int r = wm * WM + i * 16 + (lane % 8) + 8 * ((lane / 8) % 2);
        LdMatrixX4(af[i], Ab + r * P + ks + 16 * (lane / 16));
      }
#pragma unroll
      for (int j = 0; j < NT; j += 2) {
        const int cc = wn * WN + j * 8 + 8 * (lane / 16) + (lane % 8);
        uint32_t r4[4];
        LdMatrixX4(r4, Bs + cc * P + ks + 16 * ((lane / 8) % 2));
        bf[j][0] = r4[0];
        bf[j][1] = r4[1];
        bf[j + 1][0] = r4[2];
        bf[j + 1][1] = r4[3];
      }
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j) MmaU8S8(acc[i][j], af[i], bf[j]);
    }
    const int m0 = mt * BM;
    if (staged) {
      constexpr int kSP = BN + 16;
      constexpr int kCh = BN / 16;
      static_assert(!kAlias || BM * kSP <= BM * P, "staging tile fits the A buffer");
      uint8_t* st = kAlias ? A0 + buf * (BM * P) : St;
      if (kAlias) __syncthreads();  // every warp is done reading A buffer buf
      if (has_s) {
        for (int idx = tid; idx < BM * kCh; idx += kThreads) {
          const int r = idx / kCh, cq = idx % kCh;
          const int m = m0 + r, c = c0 + 16 * cq;
          if (m < M && c < OC) {
            *reinterpret_cast<uint4*>(st + r * kSP + 16 * cq) =
                *reinterpret_cast<const uint4*>(a.e.summand + m * OC + c);
          }
        }
        __syncthreads();
      }
      auto stage_out = [&](auto has_s_tag) {
        constexpr bool kS = decltype(has_s_tag)::value;
#pragma unroll
        for (int j = 0; j < NT; ++j) {
          const int cl = wn * WN + j * 8 + 2 * t;
          const int c = c0 + cl;  // even; OC % 16 == 0, so c + 1 < OC too
          if (c >= OC) continue;
          const int32_t ba0 = a.e.bias_acc[c], ba1 = a.e.bias_acc[c + 1];
          const float mu0 = a.e.mul[c], mu1 = a.e.mul[c + 1];
          const float bd0 = a.e.badd[c], bd1 = a.e.badd[c + 1];
#pragma unroll
          for (int i = 0; i < MT; ++i) {
#pragma unroll
            for (int half = 0; half < 2; ++half) {
              const int r = wm * WM + i * 16 + g + 8 * half;
              uint16_t* p = reinterpret_cast<uint16_t*>(st + r * kSP + cl);
              *p = static_cast<uint16_t>(U8PairValue<kS>(
                  a.e, acc[i][j][2 * half], acc[i][j][2 * half + 1], ba0, ba1, mu0, mu1, bd0,
                  bd1, kS ? *p : 0u));
            }
          }
        }
      };
      if (has_s) {
        stage_out(std::true_type{});
      } else {
        stage_out(std::false_type{});
      }
      __syncthreads();
      for (int idx = tid; idx < BM * kCh; idx += kThreads) {
        const int r = idx / kCh, cq = idx % kCh;
        const int m = m0 + r, c = c0 + 16 * cq;
        if (m < M && c < OC) {
          *reinterpret_cast<uint4*>(static_cast<uint8_t*>(a.e.y) + m * OC + c) =
              *reinterpret_cast<const uint4*>(st + r * kSP + 16 * cq);
        }
      }
      continue;
    }
#pragma unroll
    for (int i = 0; i < MT; ++i) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int m = m0 + wm * WM + i * 16 + g + 8 * half;
        if (m >= a.m_total) continue;
#pragma unroll
        for (int j = 0; j < NT; ++j) {
          const int cp = c0 + wn * WN + j * 8 + 2 * t;  // even
          if (pair_ok && cp + 1 < a.oc) {
            EpilogueU8Pair(a.e, a.oc, m, cp, acc[i][j][2 * half], acc[i][j][2 * half + 1]);
            continue;
          }
#pragma unroll
          for (int q = 0; q < 2; ++q) {
            const int c = cp + q;
            if (c < a.oc) Epilogue(a.e, a.oc, m, c, acc[i][j][2 * half + q]);
          }
        }
      }
    }
  }
  CpAsyncWait<0>();  // blocks without an M tile still committed the B loads
}


// ---- wgmma kernel (sm_90a only: built when TFQ8_CUDA_ARCHS contains 90a) -------------------
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define TFQ8_WGMMA_DEVICE 1
#else
#define TFQ8_WGMMA_DEVICE 0
#endif

// D (64 x N, s32) += A (64 x 32, u8, K-major, shared) * B (N x 32, s8, K-major, shared), both
// operands by matrix descriptor; one warpgroup (4 warps).
template <int N>
__device__ __forceinline__ void Wgmma(int32_t* d, uint64_t da, uint64_t db);
#if TFQ8_WGMMA_DEVICE
template <>
__device__ __forceinline__ void Wgmma<64>(int32_t* d, uint64_t da, uint64_t db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k32.s32.u8.s8 "
      "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, %32, %33, p;\n}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31])
      : "l"(da), "l"(db), "r"(1));
}
template <>
__device__ __forceinline__ void Wgmma<128>(int32_t* d, uint64_t da, uint64_t db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.u8.s8 "
      "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, p;\n}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
      : "l"(da), "l"(db), "r"(1));
}
template <>
__device__ __forceinline__ void Wgmma<256>(int32_t* d, uint64_t da, uint64_t db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k32.s32.u8.s8 "
      "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127}, %128, %129, p;\n}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63]), "+r"(d[64]), "+r"(d[65]), "+r"(d[66]), "+r"(d[67]), "+r"(d[68]), "+r"(d[69]), "+r"(d[70]), "+r"(d[71]), "+r"(d[72]), "+r"(d[73]), "+r"(d[74]), "+r"(d[75]), "+r"(d[76]), "+r"(d[77]), "+r"(d[78]), "+r"(d[79]), "+r"(d[80]), "+r"(d[81]), "+r"(d[82]), "+r"(d[83]), "+r"(d[84]), "+r"(d[85]), "+r"(d[86]), "+r"(d[87]), "+r"(d[88]), "+r"(d[89]), "+r"(d[90]), "+r"(d[91]), "+r"(d[92]), "+r"(d[93]), "+r"(d[94]), "+r"(d[95]), "+r"(d[96]), "+r"(d[97]), "+r"(d[98]), "+r"(d[99]), "+r"(d[100]), "+r"(d[101]), "+r"(d[102]), "+r"(d[103]), "+r"(d[104]), "+r"(d[105]), "+r"(d[106]), "+r"(d[107]), "+r"(d[108]), "+r"(d[109]), "+r"(d[110]), "+r"(d[111]), "+r"(d[112]), "+r"(d[113]), "+r"(d[114]), "+r"(d[115]), "+r"(d[116]), "+r"(d[117]), "+r"(d[118]), "+r"(d[119]), "+r"(d[120]), "+r"(d[121]), "+r"(d[122]), "+r"(d[123]), "+r"(d[124]), "+r"(d[125]), "+r"(d[126]), "+r"(d[127])
      : "l"(da), "l"(db), "r"(1));
}
#else
template <int N>
__device__ __forceinline__ void Wgmma(int32_t*, uint64_t, uint64_t) {
  __trap();  // the host launches the wgmma kernel only where it was compiled for sm_90a
}
#endif

__device__ __forceinline__ void WgmmaFence() {
#if TFQ8_WGMMA_DEVICE
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void WgmmaCommit() {
#if TFQ8_WGMMA_DEVICE
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void WgmmaWait() {
#if TFQ8_WGMMA_DEVICE
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
// Keeps the compiler from moving accumulator registers across an in-flight wgmma.
__device__ __forceinline__ void FenceOperand(int32_t& r) { asm volatile("" : "+r"(r)::"memory"); }
__device__ __forceinline__ void FenceProxyAsync() {
#if TFQ8_WGMMA_DEVICE
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// Shared-memory matrix descriptor, K-major, 64-byte swizzle: each operand row holds its 64 K bytes
// of a stage in 64 contiguous bytes, 16-byte chunk c of row r stored at chunk c ^ ((r / 2) % 4)
// (atoms of 8 rows = 512 bytes, stride byte offset 512; the leading byte offset is unused for
// swizzled K-major layouts). The K step of a wgmma (32 bytes) advances the start address.
constexpr uint32_t kSwzAtom = 512;
__device__ __forceinline__ uint64_t SmemDesc(const void* p) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  return static_cast<uint64_t>((addr & 0x3FFFF) >> 4) | (uint64_t{1} << 16) |
         (static_cast<uint64_t>(kSwzAtom >> 4) << 32) | (uint64_t{2} << 62);
}
__device__ __forceinline__ int SwzOffset(int r, int c) { return r * kBK + ((c ^ ((r >> 1) & 3)) << 4); }

// 128 x BN block tile, two warpgroups of 64 x BN (warp w: rows 16 w .. 16 w + 15, all BN
// columns; the accumulator fragment of m64nNk32 is that of BN / 8 mma.sync m16n8 tiles).
// STAGES-deep cp.async pipeline of 64-byte K stages in the 64-byte-swizzled layout (SwzOffset):
// thread tid loads K chunk tid % 4 of rows tid / 4 + 64 j (a row's 64 bytes by four adjacent
// threads: full sectors from global memory, conflict-free 128-byte phases in shared memory, which
// the no-swizzle core-matrix layout cannot give both). Same im2col decode, padding and epilogue as
// ConvMmaPipeKernel. fence.proxy.async makes the generic-proxy shared writes (cp.async, zp fill)
// visible to wgmma; each stage's wgmma group is waited for before its buffer is refilled.
template <int BN, int STAGES, int MINB>
__global__ void __launch_bounds__(kThreads, MINB) ConvWgmmaKernel(ConvArgs a, int n_tiles) {
  constexpr int BM = 128;
  constexpr int NT = BN / 8;
  constexpr int kALoads = BM * 4 / kThreads;  // 2
  constexpr int kBLoads = BN * 4 / kThreads;
  constexpr int kStageA = BM * kBK, kStageB = BN * kBK;
  extern __shared__ __align__(16) uint8_t smem[];
  uint8_t* const As = smem;
  int8_t* const Bs = reinterpret_cast<int8_t*>(smem + STAGES * kStageA);

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;
  const int wgi = warp / 4;
  const int64_t bid = blockIdx.x;
  const int64_t m0 = (bid / n_tiles) * BM;
  const int64_t c0 = (bid % n_tiles) * static_cast<int64_t>(BN);
  const uint32_t zp4 = 0x01010101u * static_cast<uint32_t>(a.zp_in);
  const uint4 zp16 = make_uint4(zp4, zp4, zp4, zp4);
  const int ch = tid % 4, r0 = tid / 4;
  const int soff0 = SwzOffset(r0, ch);  // + j * 64 rows (64 is a multiple of the 8-row atom)
  constexpr int kRowStepOff = 64 * kBK;
  const int H = static_cast<int>(a.h), W = static_cast<int>(a.w);

  int iy0[kALoads], ix0[kALoads];
  int64_t org[kALoads];
#pragma unroll
  for (int j = 0; j < kALoads; ++j) {
    const int64_t m = m0 + r0 + 64 * j;
    if (m < a.m_total) {
      int64_t ox, oy, n;
      DecodeM(a, m, &ox, &oy, &n);
      iy0[j] = static_cast<int>(oy * a.sh - a.pt);
      ix0[j] = static_cast<int>(ox * a.sw - a.pl);
      org[j] = ((n * a.h + iy0[j]) * a.w + ix0[j]) * a.c;
    } else {
      iy0[j] = -(1 << 30);
      ix0[j] = 0;
      org[j] = 0;
    }
  }
  const int8_t* bptr[kBLoads];
  bool bin[kBLoads];
#pragma unroll
  for (int j = 0; j < kBLoads; ++j) {
    const int64_t c = c0 + r0 + 64 * j;
    bin[j] = c < a.oc;
    bptr[j] = a.packed + (bin[j] ? c * a.kp + 16 * ch : 0);
  }
  const int C = static_cast<int>(a.c), KW = static_cast<int>(a.kw);
  int dec_ic = 0, dec_kx = 0, dec_ky = 0, dec_k = 0;
  const int k_total = static_cast<int>(a.k_total);
  auto advance = [&](int step) {
    dec_k += step;
    dec_ic += step;
    while (dec_ic >= C) {
      dec_ic -= C;
      if (++dec_kx == KW) {
        dec_kx = 0;
        ++dec_ky;
      }
    }
  };
  advance(16 * ch);

  const int stages = static_cast<int>(a.kp / kBK);
  auto load_stage = [&](int buf, int s) {
    uint8_t* Ab = As + buf * kStageA;
    int8_t* Bb = Bs + buf * kStageB;
    const bool kin = dec_k < k_total;
    const int dy = dec_ky * a.dh, dx = dec_kx * a.dw;
    const int64_t toff = (static_cast<int64_t>(dy) * a.w + dx) * a.c + dec_ic;
#pragma unroll
    for (int j = 0; j < kALoads; ++j) {
      uint8_t* dst = Ab + soff0 + j * kRowStepOff;
      const bool in = static_cast<unsigned>(iy0[j] + dy) < static_cast<unsigned>(H) &&
                      static_cast<unsigned>(ix0[j] + dx) < static_cast<unsigned>(W);
      if (kin && !in) {
        *reinterpret_cast<uint4*>(dst) = zp16;
      } else {
        CpAsync16(dst, kin ? a.x + org[j] + toff : a.x, !kin);
      }
    }
#pragma unroll
    for (int j = 0; j < kBLoads; ++j) {
      CpAsync16(Bb + soff0 + j * kRowStepOff, bptr[j] + static_cast<int64_t>(s) * kBK, !bin[j]);
    }
    advance(kBK);
  };

  int32_t acc[NT * 4];
#pragma unroll
  for (int i = 0; i < NT * 4; ++i) acc[i] = 0;

  // Loads run STAGES - 2 stages ahead; one wgmma group stays in flight: the buffer refilled in
  // iteration s, (s - 2) % STAGES, was last read by group s - 2, which every warpgroup waited
  // for (wait_group 1 in iteration s - 1) before this iteration's barrier.
  static_assert(STAGES >= 3, "one stage in flight in the tensor cores, one loading");
#pragma unroll
  for (int s = 0; s < STAGES - 2; ++s) {
    if (s < stages) load_stage(s, s);
    CpAsyncCommit();
  }
  for (int s = 0; s < stages; ++s) {
    CpAsyncWait<STAGES - 3>();
    FenceProxyAsync();
    __syncthreads();  // stage s is visible (also to the async proxy)
    const int buf = s % STAGES;
    const uint8_t* Ab = As + buf * kStageA + wgi * (64 * kBK);
    const int8_t* Bb = Bs + buf * kStageB;
    WgmmaFence();
#pragma unroll
    for (int kk = 0; kk < kBK / 32; ++kk) {
      Wgmma<BN>(acc, SmemDesc(Ab + kk * 32), SmemDesc(Bb + kk * 32));
    }
    WgmmaCommit();
    WgmmaWait<1>();
#pragma unroll
    for (int i = 0; i < NT * 4; ++i) FenceOperand(acc[i]);
    const int sn = s + STAGES - 2;
    if (sn < stages) load_stage(sn % STAGES, sn);
    CpAsyncCommit();
  }
  WgmmaWait<0>();
#pragma unroll
  for (int i = 0; i < NT * 4; ++i) FenceOperand(acc[i]);
  CpAsyncWait<0>();
  __syncthreads();  // all warps done with the stage buffers: the epilogue may reuse them

  // acc[4 j + 0/1]: row 16 warp + g, columns 8 j + 2 t, + 1; acc[4 j + 2/3]: row + 8.
  const bool staged = a.e.out_type == TFQ8_OUT_U8 && a.oc % 16 == 0 &&
                      ((reinterpret_cast<uintptr_t>(a.e.y) |
                        reinterpret_cast<uintptr_t>(a.e.summand)) & 15u) == 0;
  if (staged) {
    constexpr int kSP = BN + 16;
    constexpr int kCh = BN / 16;
    static_assert(BM * kSP <= STAGES * (kStageA + kStageB), "staging tile fits");
    uint8_t* st = smem;
    const bool has_s = a.e.summand != nullptr;
    if (has_s) {
      for (int idx = tid; idx < BM * kCh; idx += kThreads) {
        const int r = idx / kCh, cq = idx % kCh;
        const int64_t m = m0 + r, c = c0 + 16 * cq;
        if (m < a.m_total && c < a.oc) {
          *reinterpret_cast<uint4*>(st + r * kSP + 16 * cq) =
              *reinterpret_cast<const uint4*>(a.e.summand + m * a.oc + c);
        }
      }
      __syncthreads();
    }
    auto stage_out = [&](auto has_s_tag) {
      constexpr bool kS = decltype(has_s_tag)::value;
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const int cl = j * 8 + 2 * t;
        const int64_t c = c0 + cl;
        if (c >= a.oc) continue;
        const int32_t ba0 = a.e.bias_acc[c], ba1 = a.e.bias_acc[c + 1];
        const float mu0 = a.e.mul[c], mu1 = a.e.mul[c + 1];
        const float bd0 = a.e.badd[c], bd1 = a.e.badd[c + 1];
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int r = warp * 16 + g + 8 * half;
          uint16_t* p = reinterpret_cast<uint16_t*>(st + r * kSP + cl);
          *p = static_cast<uint16_t>(U8PairValue<kS>(
              a.e, acc[4 * j + 2 * half], acc[4 * j + 2 * half + 1], ba0, ba1, mu0, mu1, bd0,
              bd1, kS ? *p : 0u));
        }
      }
    };
    if (has_s) {
      stage_out(std::true_type{});
    } else {
      stage_out(std::false_type{});
    }
    __syncthreads();
    for (int idx = tid; idx < BM * kCh; idx += kThreads) {
      const int r = idx / kCh, cq = idx % kCh;
      const int64_t m = m0 + r, c = c0 + 16 * cq;
      if (m < a.m_total && c < a.oc) {
        *reinterpret_cast<uint4*>(static_cast<uint8_t*>(a.e.y) + m * a.oc + c) =
            *reinterpret_cast<const uint4*>(st + r * kSP + 16 * cq);
      }
    }
    return;
  }
  const bool pair_ok = a.e.out_type == TFQ8_OUT_U8 && a.oc % 2 == 0 &&
                       ((reinterpret_cast<uintptr_t>(a.e.y) |
                         reinterpret_cast<uintptr_t>(a.e.summand)) & 1u) == 0;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int64_t m = m0 + warp * 16 + g + 8 * half;
    if (m >= a.m_total) continue;
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      const int64_t cp = c0 + j * 8 + 2 * t;
      if (pair_ok && cp + 1 < a.oc) {
        EpilogueU8Pair(a.e, a.oc, m, cp, acc[4 * j + 2 * half], acc[4 * j + 2 * half + 1]);
        continue;
      }
#pragma unroll
      for (int q = 0; q < 2; ++q) {
        const int64_t c = cp + q;
        if (c < a.oc) Epilogue(a.e, a.oc, m, c, acc[4 * j + 2 * half + q]);
      }
    }
  }
}

struct MmaTile {
  int bm, bn;
};

int DeviceSmCount() {
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
    cudaGetLastError();
    return 1;
  }
  return sms;
}

int DeviceCcMajor() {
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return major;
}

// Tiles of the pipelined kernel (IC % 16 == 0), indexed by algo - TFQ8_CONV_MMA_64X64:
// block tile, resident blocks per SM (launch bounds / shared memory) and a relative per-SM
// throughput (bigger warp tiles need less shared-memory traffic per mma).
struct PipeTile {
  int algo, bm, bn, occ;
  double eff;
};
// (128x256 / 256x128, warp tile 64x64, one block per SM, lose to 128x128 with two blocks per SM
// on every ResNet-50 layer on H100: not candidates of AUTO, callable explicitly.)
constexpr PipeTile kPipeTiles[] = {
    {TFQ8_CONV_MMA_128X128, 128, 128, 2, 1.0}, {TFQ8_CONV_MMA_256X64, 256, 64, 2, 0.95},
    {TFQ8_CONV_MMA_64X128, 64, 128, 2, 0.7},   {TFQ8_CONV_MMA_128X64, 128, 64, 2, 0.7},
    {TFQ8_CONV_MMA_64X64, 64, 64, 3, 0.6},
};

// wgmma tiles (sm_90a builds on compute capability 9.0).
constexpr PipeTile kWgmmaTiles[] = {
    {TFQ8_CONV_WGMMA_128X128, 128, 128, 2, 1.7}, {TFQ8_CONV_WGMMA_128X64, 128, 64, 2, 1.1},
};

bool WgmmaAvailable();

// Estimated time of each tile: (waves of occ resident blocks per SM) x (work of one wave per SM,
// zero-padded tile edges included) / relative throughput; the smallest wins.
int SelectPipeTile(int64_t m, int64_t oc, int64_t kp, int sms) {
  int best = TFQ8_CONV_MMA_64X64;
  double best_t = 0.0;
  auto consider = [&](const PipeTile& t) {
    const int64_t blocks = CeilDiv(m, t.bm) * CeilDiv(oc, t.bn);
    const int64_t waves = CeilDiv(blocks, static_cast<int64_t>(sms) * t.occ);
    const double est = static_cast<double>(waves) * t.bm * t.bn * t.occ / t.eff;
    if (best_t == 0.0 || est < best_t) {
      best = t.algo;
      best_t = est;
    }
  };
  for (const PipeTile& t : kPipeTiles) consider(t);
  // wgmma (H100 sweep, ResNet-50 b64/b256): ahead of mma.sync from K >= 512 (OC > 64, 128x128)
  // or K >= 128 (OC <= 64, 128x64); behind it on the short-K 1x1 layers.
  if (WgmmaAvailable() && (oc <= 64 ? kp >= 2 * kBK : kp >= 8 * kBK)) {
    consider(kWgmmaTiles[oc <= 64 ? 1 : 0]);
  }
  return best;
}

// The wgmma kernels exist in the device code only when it was compiled for sm_90a (build.sh
// defines TFQ8_HAVE_SM90A when TFQ8_CUDA_ARCHS lists 90a); sm_90a SASS runs on compute
// capability 9.0 only.
bool WgmmaAvailable() {
#if defined(TFQ8_HAVE_SM90A)
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major == 9 && minor == 0;
#else
  return false;
#endif
}

MmaTile SelectMmaTile(int64_t m, int64_t oc, int sms) {
  // Gather path (old kernel). OC <= 64: a 128-wide tile would spend half its mma on zero
  // weights (H100, ResNet-50 b256: conv1 3.0 -> 1.5 ms with 64x64).
  if (oc <= 64) return {64, 64};
  if (CeilDiv(m, 128) * CeilDiv(oc, 128) >= sms) return {128, 128};
  if (CeilDiv(m, 64) * CeilDiv(oc, 128) >= sms) return {64, 128};
  return {64, 64};
}

// Row-gather tiles (conv1-like shapes: large M, small OC).
int SelectRowTile(int64_t m, int64_t oc) {
  if (oc > 64) return TFQ8_CONV_MMA_128X128;
  return m >= 128 * 264 ? TFQ8_CONV_MMA_128X64 : TFQ8_CONV_MMA_64X64;
}

bool BadQ(float scale, int zp) {
  return !(scale > 0.0f) || !std::isfinite(scale) || zp < 0 || zp > 255;
}

int64_t PackedK(const Tfq8ConvShape* s);
bool RowOk(const Tfq8ConvShape* s);

// The small-IC gather path of the mma kernel: K table fits shared memory, offsets fit int32,
// dy/dx fit 15 bits.
bool GatherOk(const Tfq8ConvShape* s) {
  const int64_t dy = (s->kh - 1) * s->dilation_h, dx = (s->kw - 1) * s->dilation_w;
  return PackedK(s) <= kGatherMaxKp && dy < 32767 && dx < 32767 &&
         (dy * s->w + dx + 1) * s->c < (int64_t{1} << 31);
}

// The resident-K 1x1 kernel: the whole packed K (<= kResMaxKp) of a tile in shared memory.
constexpr int kResMaxKp = 256;
bool Res1x1Ok(const Tfq8ConvShape* s) {
  const int64_t lim = int64_t{1} << 31;  // 32-bit element offsets in the kernel
  return !s->depthwise && s->kh == 1 && s->kw == 1 && s->c % 16 == 0 && s->c <= kResMaxKp &&
         s->n * s->h * s->w * s->c < lim && s->n * s->oh * s->ow * s->oc < lim &&
         s->n * s->oh * s->ow < lim - 256 && s->oc < lim - 256;
}

// TFQ8_CUDA_NO_RES1X1=1 in the environment keeps AUTO off the resident-K 1x1 kernel (A/B
// timing); read once.
bool Res1x1Enabled() {
  static const bool on = [] {
    const char* v = std::getenv("TFQ8_CUDA_NO_RES1X1");
    return v == nullptr || v[0] == '\0' || v[0] == '0';
  }();
  return on;
}

bool Supported(const Tfq8ConvShape* s, int algo) {
  const bool k_ok = PackedK(s) < (int64_t{1} << 30);  // int K indices in the mma kernels
  switch (algo) {
    case TFQ8_CONV_REF: return true;
    case TFQ8_CONV_DP4A: return !s->depthwise && s->c % 4 == 0;
    case TFQ8_CONV_MMA:
    case TFQ8_CONV_MMA_64X64:
    case TFQ8_CONV_MMA_128X128:  // pipelined (c % 16 == 0), row gather or byte gather
      return !s->depthwise && (s->c % 16 == 0 || RowOk(s) || GatherOk(s)) &&
             k_ok && DeviceCcMajor() >= 8;
    case TFQ8_CONV_MMA_128X64:  // pipelined or row gather
      return !s->depthwise && (s->c % 16 == 0 || RowOk(s)) && k_ok && DeviceCcMajor() >= 8;
    case TFQ8_CONV_MMA_64X128:  // pipelined or byte gather
      return !s->depthwise && (s->c % 16 == 0 || (!RowOk(s) && GatherOk(s))) &&
             k_ok && DeviceCcMajor() >= 8;
    case TFQ8_CONV_MMA_128X256:
    case TFQ8_CONV_MMA_256X128:
    case TFQ8_CONV_MMA_256X64:  // pipelined kernel only
      return !s->depthwise && s->c % 16 == 0 && k_ok && DeviceCcMajor() >= 8;
    case TFQ8_CONV_WGMMA_128X64:
    case TFQ8_CONV_WGMMA_128X128:
    case TFQ8_CONV_WGMMA_128X256:
      return !s->depthwise && s->c % 16 == 0 && k_ok && WgmmaAvailable();
    case TFQ8_CONV_MMA1X1_128X128:
    case TFQ8_CONV_MMA1X1_128X64:
      return Res1x1Ok(s) && DeviceCcMajor() >= 8;
    default: return false;
  }
}

// Small-IC shapes the row-gather kernel handles; their weights are packed in the row layout
// (a function of the shape only, so prepare and run agree).
bool RowOk(const Tfq8ConvShape* s) {
  return !s->depthwise && s->c % 4 != 0 && s->dilation_w == 1 && s->kw * s->c <= kRowMaxBytes &&
         s->kh <= 4096;
}

int64_t PackedK(const Tfq8ConvShape* s) {
  if (RowOk(s)) return CeilDiv(s->kh * kRowSeg, kKPack) * kKPack;
  return CeilDiv(s->kh * s->kw * s->c, kKPack) * kKPack;
}

// Launches the pipelined kernel: 1-D grid, N tiles fastest. The dynamic shared memory limit is
// raised once per device (the attribute is per device context).
template <int BM, int BN, int WM, int WN, int STAGES, int MINB, bool kRow>
cudaError_t LaunchPipe(const ConvArgs& a, cudaStream_t stream) {
  constexpr int kSmem = PipeSmemBytes<BM, BN, WM, WN, STAGES>();
  static std::atomic<uint64_t> done{0};
  auto kernel = ConvMmaPipeKernel<BM, BN, WM, WN, STAGES, MINB, kRow>;
  int dev = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) return err;
  const uint64_t bit = dev >= 0 && dev < 64 ? uint64_t{1} << dev : 0;
  if (bit == 0 || (done.load(std::memory_order_acquire) & bit) == 0) {
    err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
    if (err != cudaSuccess) return err;
    done.fetch_or(bit, std::memory_order_acq_rel);
  }
  const int64_t n_tiles = CeilDiv(a.oc, BN);
  const int64_t blocks = CeilDiv(a.m_total, BM) * n_tiles;
  if (blocks > 0x7fffffffLL) return cudaErrorInvalidValue;
  kernel<<<static_cast<unsigned>(blocks), kThreads, kSmem, stream>>>(a, static_cast<int>(n_tiles));
  return cudaGetLastError();
}

template <int BN, int STAGES, int MINB>
cudaError_t LaunchWgmma(const ConvArgs& a, cudaStream_t stream) {
  constexpr int kSmem = STAGES * (128 + BN) * kBK;
  static std::atomic<uint64_t> done{0};
  auto kernel = ConvWgmmaKernel<BN, STAGES, MINB>;
  int dev = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) return err;
  const uint64_t bit = dev >= 0 && dev < 64 ? uint64_t{1} << dev : 0;
  if (bit == 0 || (done.load(std::memory_order_acquire) & bit) == 0) {
    err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
    if (err != cudaSuccess) return err;
    done.fetch_or(bit, std::memory_order_acq_rel);
  }
  const int64_t n_tiles = CeilDiv(a.oc, BN);
  const int64_t blocks = CeilDiv(a.m_total, 128) * n_tiles;
  if (blocks > 0x7fffffffLL) return cudaErrorInvalidValue;
  kernel<<<static_cast<unsigned>(blocks), kThreads, kSmem, stream>>>(a, static_cast<int>(n_tiles));
  return cudaGetLastError();
}

template <int BM, int BN, int WM, int WN, int KP, int MINB>
cudaError_t LaunchRes(const ConvArgs& a, cudaStream_t stream) {
  constexpr int kSmem = ResSmemBytes<BM, BN, KP>();
  static std::atomic<uint64_t> done{0};
  static std::atomic<int> occ_of[64];
  auto kernel = Conv1x1ResKernel<BM, BN, WM, WN, KP, MINB>;
  int dev = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) return err;
  const uint64_t bit = dev >= 0 && dev < 64 ? uint64_t{1} << dev : 0;
  int occ = bit != 0 && (done.load(std::memory_order_acquire) & bit) ? occ_of[dev].load() : 0;
  if (occ == 0) {
    err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
    if (err != cudaSuccess) return err;
    err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, kernel, kThreads, kSmem);
    if (err != cudaSuccess) return err;
    occ = std::max(occ, 1);
    if (bit != 0) {
      occ_of[dev].store(occ);
      done.fetch_or(bit, std::memory_order_acq_rel);
    }
  }
  const int64_t n_tiles = CeilDiv(a.oc, BN);
  const int64_t m_tiles = CeilDiv(a.m_total, BM);
  if (n_tiles > 0x7fffffffLL / 4) return cudaErrorInvalidValue;
  // Persistent grid: a multiple of n_tiles (each block keeps one N tile), at most one M tile per
  // block and N tile.
  const int64_t slots = std::max<int64_t>(1, static_cast<int64_t>(DeviceSmCount()) * occ / n_tiles);
  const int64_t blocks = std::min(slots, m_tiles) * n_tiles;
  if (blocks > 0x7fffffffLL || m_tiles > 0x7fffffffLL) return cudaErrorInvalidValue;
  const int dense = a.sh == 1 && a.sw == 1 && a.pt == 0 && a.pl == 0 && a.oh == a.h &&
                    a.ow == a.w;
  kernel<<<static_cast<unsigned>(blocks), kThreads, kSmem, stream>>>(
      a, static_cast<int>(n_tiles), static_cast<int>(m_tiles), dense);
  return cudaGetLastError();
}

template <int BM, int BN, int WM, int WN, int MINB>
cudaError_t LaunchResK(const ConvArgs& a, cudaStream_t stream) {
  switch (a.kp) {
    case 64: return LaunchRes<BM, BN, WM, WN, 64, MINB>(a, stream);
    case 128: return LaunchRes<BM, BN, WM, WN, 128, MINB>(a, stream);
    case 192: return LaunchRes<BM, BN, WM, WN, 192, MINB>(a, stream);
    case 256: return LaunchRes<BM, BN, WM, WN, 256, MINB>(a, stream);
    default: return cudaErrorNotSupported;
  }
}

}  // namespace

extern "C" {

int tfq8_conv_shape_finish(Tfq8ConvShape* s) {
  const int64_t ekh = (s->kh - 1) * s->dilation_h + 1, ekw = (s->kw - 1) * s->dilation_w + 1;
  const int64_t ph = s->h + s->pad_t + s->pad_b, pw = s->w + s->pad_l + s->pad_r;
  if (ph < ekh || pw < ekw || s->stride_h < 1 || s->stride_w < 1) return -1;
  s->oh = (ph - ekh) / s->stride_h + 1;
  s->ow = (pw - ekw) / s->stride_w + 1;
  return 0;
}

void tfq8_matmul_shape(int64_t n, int64_t k, int64_t oc, Tfq8ConvShape* s) {
  *s = Tfq8ConvShape{};
  s->n = n;
  s->h = s->w = 1;
  s->c = k;
  s->kh = s->kw = 1;
  s->oc = oc;
  s->oh = s->ow = 1;
  s->stride_h = s->stride_w = s->dilation_h = s->dilation_w = 1;
}

size_t tfq8_cuda_conv2d_workspace_size(const Tfq8ConvShape* s) {
  const size_t per_channel = Align256(static_cast<size_t>(s->oc) * 4);
  const size_t packed = s->depthwise ? 0 : Align256(static_cast<size_t>(s->oc * PackedK(s)));
  return 3 * per_channel + packed;
}

const char* tfq8_cuda_conv_algo_name(int algo) {
  switch (algo) {
    case TFQ8_CONV_REF: return "qu8_conv_ref";
    case TFQ8_CONV_DP4A: return "qu8_conv_dp4a_64x64c4";
    case TFQ8_CONV_MMA: return "qu8_conv_mma_m16n8k32";
    case TFQ8_CONV_MMA_64X64: return "qu8_conv_mma_64x64c64";
    case TFQ8_CONV_MMA_64X128: return "qu8_conv_mma_64x128c64";
    case TFQ8_CONV_MMA_128X128: return "qu8_conv_mma_128x128c64";
    case TFQ8_CONV_MMA_128X256: return "qu8_conv_mma_128x256c64";
    case TFQ8_CONV_MMA_256X128: return "qu8_conv_mma_256x128c64";
    case TFQ8_CONV_MMA_256X64: return "qu8_conv_mma_256x64c64";
    case TFQ8_CONV_MMA_128X64: return "qu8_conv_mma_128x64c64";
    case TFQ8_CONV_WGMMA_128X64: return "qu8_conv_wgmma_128x64c64";
    case TFQ8_CONV_WGMMA_128X128: return "qu8_conv_wgmma_128x128c64";
    case TFQ8_CONV_WGMMA_128X256: return "qu8_conv_wgmma_128x256c64";
    case TFQ8_CONV_MMA1X1_128X128: return "qu8_conv_mma1x1_128x128";
    case TFQ8_CONV_MMA1X1_128X64: return "qu8_conv_mma1x1_128x64";
    default: return "auto";
  }
}

int tfq8_cuda_conv2d_select(const Tfq8ConvShape* s) {
  if (Supported(s, TFQ8_CONV_MMA) && s->c % 16 == 0) {
    const int64_t m = s->n * s->oh * s->ow;
    const int sms = DeviceSmCount();
    // Short-K stride-1 1x1 with at least two tiles per SM: the resident-K kernel (H100,
    // ResNet-50 b16-b256: ahead of the pipelined mma.sync kernel there; behind it on the strided
    // shortcuts (row decode), behind the wgmma 128x64 tile for OC <= 64 with K >= 128 and on
    // single-wave grids).
    const bool dense = s->stride_h == 1 && s->stride_w == 1 && s->pad_t == 0 && s->pad_l == 0 &&
                       s->oh == s->h && s->ow == s->w;
    if (Res1x1Ok(s) && Res1x1Enabled() && dense && (s->oc > 64 || PackedK(s) <= kKPack) &&
        CeilDiv(m, 128) * CeilDiv(s->oc, s->oc <= 64 ? 64 : 128) >= 2 * sms) {
      return s->oc <= 64 ? TFQ8_CONV_MMA1X1_128X64 : TFQ8_CONV_MMA1X1_128X128;
    }
    return SelectPipeTile(m, s->oc, PackedK(s), sms);
  }
  if (Supported(s, TFQ8_CONV_MMA) && RowOk(s)) return SelectRowTile(s->n * s->oh * s->ow, s->oc);
  if (Supported(s, TFQ8_CONV_MMA)) {
    const MmaTile t = SelectMmaTile(s->n * s->oh * s->ow, s->oc, DeviceSmCount());
    return t.bm == 128 ? TFQ8_CONV_MMA_128X128
                       : (t.bn == 128 ? TFQ8_CONV_MMA_64X128 : TFQ8_CONV_MMA_64X64);
  }
  if (Supported(s, TFQ8_CONV_DP4A)) return TFQ8_CONV_DP4A;
  return TFQ8_CONV_REF;
}

// Validates the call and fills the kernel arguments; workspace: bias_acc | mul | badd | packed.
static cudaError_t MakeArgs(const Tfq8ConvShape* s, const Tfq8Epilogue* e, void* workspace,
                            ConvArgs* a, PrepArgs* p) {
  if (s->n < 0 || s->h < 1 || s->w < 1 || s->c < 1 || s->kh < 1 || s->kw < 1 || s->oc < 1 ||
      s->oh < 0 || s->ow < 0 || s->stride_h < 1 || s->stride_w < 1 || s->dilation_h < 1 ||
      s->dilation_w < 1 || (s->depthwise && s->oc % s->c != 0) ||
      BadQ(e->input_scale, e->input_zero_point) || e->out_type < TFQ8_OUT_U8 ||
      e->out_type > TFQ8_OUT_S32 || e->activation < TFQ8_ACT_NONE ||
      e->activation > TFQ8_ACT_CLIP ||
      (e->out_type == TFQ8_OUT_U8 && BadQ(e->output_scale, e->output_zero_point)) ||
      (e->has_summand && (BadQ(e->summand_scale, e->summand_zero_point) ||
                          e->out_type == TFQ8_OUT_S32)) ||
      workspace == nullptr) {
    return cudaErrorInvalidValue;
  }
  const size_t pc = Align256(static_cast<size_t>(s->oc) * 4);
  char* ws = static_cast<char*>(workspace);

  // Host-side constants, in double, rounded once to f32 (docs/int8_numerics.md).
  const bool f32_out = e->out_type != TFQ8_OUT_U8;
  const double s_out = f32_out ? 1.0 : static_cast<double>(e->output_scale);
  const int zp_out = f32_out ? 0 : e->output_zero_point;
  float lo = f32_out ? -INFINITY : static_cast<float>(-zp_out);
  float hi = f32_out ? INFINITY : static_cast<float>(255 - zp_out);
  if (e->activation == TFQ8_ACT_RELU || e->activation == TFQ8_ACT_RELU6) lo = std::max(lo, 0.0f);
  if (e->activation == TFQ8_ACT_RELU6) hi = std::min(hi, static_cast<float>(6.0 / s_out));
  if (e->activation == TFQ8_ACT_CLIP) {
    lo = std::max(lo, static_cast<float>(static_cast<double>(e->clip_min) / s_out));
    hi = std::min(hi, static_cast<float>(static_cast<double>(e->clip_max) / s_out));
  }

  p->s_in = e->input_scale;
  p->zp_in = e->input_zero_point;
  p->bias_kind = 0;
  p->per_channel = e->per_channel;
  p->out_type = e->out_type;
  p->s_out = static_cast<float>(s_out);

  a->n = s->n; a->h = s->h; a->w = s->w; a->c = s->c; a->kh = s->kh; a->kw = s->kw;
  a->oc = s->oc; a->oh = s->oh; a->ow = s->ow;
  a->sh = s->stride_h; a->sw = s->stride_w; a->dh = s->dilation_h; a->dw = s->dilation_w;
  a->pt = s->pad_t; a->pl = s->pad_l;
  a->m_total = s->n * s->oh * s->ow;
  a->k_total = s->depthwise ? s->kh * s->kw : s->kh * s->kw * s->c;
  a->kp = s->depthwise ? 0 : PackedK(s);
  a->zp_in = e->input_zero_point;
  a->chan_mult = static_cast<int>(s->depthwise ? s->oc / s->c : 1);
  a->x = nullptr;
  a->filt = nullptr;
  a->packed = s->depthwise ? nullptr : reinterpret_cast<int8_t*>(ws + 3 * pc);
  a->e.bias_acc = reinterpret_cast<int32_t*>(ws);
  a->e.mul = reinterpret_cast<float*>(ws + pc);
  a->e.badd = reinterpret_cast<float*>(ws + 2 * pc);
  a->e.summand = nullptr;
  a->e.y = nullptr;
  a->e.out_type = e->out_type;
  a->e.summand_zp = e->summand_zero_point;
  a->e.mul_s = e->has_summand
                   ? static_cast<float>(static_cast<double>(e->summand_scale) / s_out)
                   : 0.0f;
  a->e.lo = lo;
  a->e.hi = hi;
  a->e.out_zp = zp_out;
  return cudaSuccess;
}

cudaError_t tfq8_cuda_conv2d_prepare(const Tfq8ConvShape* s, const Tfq8Epilogue* e,
                                     const int8_t* w, const void* bias, const float* filter_scale,
                                     void* workspace, cudaStream_t stream) {
  ConvArgs a;
  PrepArgs p;
  cudaError_t err = MakeArgs(s, e, workspace, &a, &p);
  if (err != cudaSuccess) return err;
  if (w == nullptr || filter_scale == nullptr) return cudaErrorInvalidValue;
  p.bias_kind = bias == nullptr ? 0 : (e->bias_is_int32 ? 2 : 1);
  int32_t* bias_acc = const_cast<int32_t*>(a.e.bias_acc);
  float* mul = const_cast<float*>(a.e.mul);
  float* badd = const_cast<float*>(a.e.badd);
  if (s->depthwise) {
    ParamsDepthwiseKernel<<<static_cast<unsigned>(CeilDiv(s->oc, kThreads)), kThreads, 0,
                            stream>>>(p, w, a.k_total, s->oc, bias, filter_scale, bias_acc, mul,
                                      badd);
  } else {
    int8_t* packed = const_cast<int8_t*>(a.packed);
    const dim3 grid(static_cast<unsigned>(CeilDiv(a.kp, 32)),
                    static_cast<unsigned>(CeilDiv(s->oc, 32)));
    if (grid.y > kMaxGridY) return cudaErrorInvalidValue;
    PackWeightsKernel<<<grid, dim3(32, 8), 0, stream>>>(
        w, a.k_total, s->oc, a.kp, RowOk(s) ? static_cast<int>(s->kw * s->c) : 0, packed);
    ParamsFromPackedKernel<<<static_cast<unsigned>(CeilDiv(s->oc, kThreads / 32)), kThreads, 0,
                             stream>>>(p, packed, a.kp, s->oc, bias, filter_scale, bias_acc, mul,
                                       badd);
  }
  return cudaGetLastError();
}

cudaError_t tfq8_cuda_conv2d_run(const Tfq8ConvShape* s, const Tfq8Epilogue* e, const uint8_t* x,
                                 const int8_t* w, const uint8_t* summand, void* y,
                                 const void* workspace, int algo, cudaStream_t stream) {
  ConvArgs a;
  PrepArgs p;
  cudaError_t err = MakeArgs(s, e, const_cast<void*>(workspace), &a, &p);
  if (err != cudaSuccess) return err;
  if (x == nullptr || y == nullptr || (e->has_summand && summand == nullptr)) {
    return cudaErrorInvalidValue;
  }
  if (algo == TFQ8_CONV_AUTO) algo = tfq8_cuda_conv2d_select(s);
  if (!Supported(s, algo)) return cudaErrorNotSupported;
  if (algo == TFQ8_CONV_REF && s->depthwise && w == nullptr) return cudaErrorInvalidValue;
  a.x = x;
  a.filt = w;
  a.e.summand = e->has_summand ? summand : nullptr;
  a.e.y = y;
  if (a.m_total == 0) return cudaSuccess;

  if (algo == TFQ8_CONV_REF) {
    // Grid-stride loop; the grid cap only bounds the launch, not the work.
    const int64_t total = a.m_total * a.oc;
    const unsigned grid =
        static_cast<unsigned>(std::min<int64_t>(CeilDiv(total, kThreads), int64_t{1} << 20));
    if (s->depthwise) {
      ConvRefKernel<true><<<grid, kThreads, 0, stream>>>(a);
    } else {
      ConvRefKernel<false><<<grid, kThreads, 0, stream>>>(a);
    }
  } else if (algo == TFQ8_CONV_DP4A) {
    const dim3 grid(static_cast<unsigned>(CeilDiv(a.m_total, kDp4aTile)),
                    static_cast<unsigned>(CeilDiv(a.oc, kDp4aTile)));
    if (grid.y > kMaxGridY) return cudaErrorInvalidValue;
    ConvDp4aKernel<<<grid, kThreads, 0, stream>>>(a);
  } else if (s->c % 16 == 0) {
    if (algo == TFQ8_CONV_MMA) algo = tfq8_cuda_conv2d_select(s);
    switch (algo) {
      case TFQ8_CONV_WGMMA_128X64: return LaunchWgmma<64, 6, 2>(a, stream);
      case TFQ8_CONV_WGMMA_128X128: return LaunchWgmma<128, 6, 2>(a, stream);
      case TFQ8_CONV_WGMMA_128X256: return LaunchWgmma<256, 6, 1>(a, stream);
      case TFQ8_CONV_MMA_64X64: return LaunchPipe<64, 64, 32, 16, 4, 3, false>(a, stream);
      case TFQ8_CONV_MMA_64X128: return LaunchPipe<64, 128, 32, 32, 4, 2, false>(a, stream);
      case TFQ8_CONV_MMA_128X64: return LaunchPipe<128, 64, 32, 32, 4, 2, false>(a, stream);
      case TFQ8_CONV_MMA_128X128: return LaunchPipe<128, 128, 64, 32, 4, 2, false>(a, stream);
      case TFQ8_CONV_MMA_256X64: return LaunchPipe<256, 64, 64, 32, 4, 2, false>(a, stream);
      case TFQ8_CONV_MMA_128X256: return LaunchPipe<128, 256, 64, 64, 4, 1, false>(a, stream);
      case TFQ8_CONV_MMA_256X128: return LaunchPipe<256, 128, 64, 64, 4, 1, false>(a, stream);
      case TFQ8_CONV_MMA1X1_128X128: return LaunchResK<128, 128, 64, 32, 2>(a, stream);
      case TFQ8_CONV_MMA1X1_128X64: return LaunchResK<128, 64, 32, 32, 3>(a, stream);
      default: return cudaErrorNotSupported;
    }
  } else if (RowOk(s)) {
    if (algo == TFQ8_CONV_MMA) algo = SelectRowTile(a.m_total, a.oc);
    switch (algo) {
      case TFQ8_CONV_MMA_64X64: return LaunchPipe<64, 64, 32, 16, 4, 3, true>(a, stream);
      case TFQ8_CONV_MMA_128X64: return LaunchPipe<128, 64, 32, 32, 4, 2, true>(a, stream);
      case TFQ8_CONV_MMA_128X128: return LaunchPipe<128, 128, 64, 32, 4, 2, true>(a, stream);
      default: return cudaErrorNotSupported;
    }
  } else {
    const MmaTile tile = algo == TFQ8_CONV_MMA_64X64     ? MmaTile{64, 64}
                         : algo == TFQ8_CONV_MMA_64X128  ? MmaTile{64, 128}
                         : algo == TFQ8_CONV_MMA_128X128 ? MmaTile{128, 128}
                                                         : SelectMmaTile(a.m_total, a.oc,
                                                                         DeviceSmCount());
    const dim3 grid(static_cast<unsigned>(CeilDiv(a.m_total, tile.bm)),
                    static_cast<unsigned>(CeilDiv(a.oc, tile.bn)));
    if (grid.y > kMaxGridY) return cudaErrorInvalidValue;
    if (tile.bm == 128) {
      ConvMmaKernel<128, 128, 64, 32, true><<<grid, kThreads, 0, stream>>>(a);
    } else if (tile.bn == 128) {
      ConvMmaKernel<64, 128, 32, 32, true><<<grid, kThreads, 0, stream>>>(a);
    } else {
      ConvMmaKernel<64, 64, 32, 16, true><<<grid, kThreads, 0, stream>>>(a);
    }
  }
  return cudaGetLastError();
}

cudaError_t tfq8_cuda_conv2d(const Tfq8ConvShape* s, const Tfq8Epilogue* e, const uint8_t* x,
                             const int8_t* w, const void* bias, const float* filter_scale,
                             const uint8_t* summand, void* y, void* workspace, int algo,
                             cudaStream_t stream) {
  if (algo == TFQ8_CONV_AUTO) algo = tfq8_cuda_conv2d_select(s);
  if (!Supported(s, algo)) return cudaErrorNotSupported;
  const cudaError_t err = tfq8_cuda_conv2d_prepare(s, e, w, bias, filter_scale, workspace, stream);
  if (err != cudaSuccess) return err;
  return tfq8_cuda_conv2d_run(s, e, x, w, summand, y, workspace, algo, stream);
}

}  // extern "C"
