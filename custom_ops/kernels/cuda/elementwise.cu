// Elementwise, add, concat and pooling kernels of tfq8 (u8 NHWC), framework-free.
// Numerics: docs/int8_numerics.md. Every f32 step is one IEEE op (__fmul_rn / __fadd_rn), the
// f32 -> int conversion is __float2int_rn after clamping, constants are computed on the host in
// double and rounded once to f32, exactly as the CPU reference does.
//
// Launch geometry: these kernels are memory bound; one thread per element (or per output pixel
// channel), kBlock = 256 threads (8 warps: enough to hide latency, small enough for any SM), and a
// grid-stride loop with the grid capped at kMaxBlocks so huge tensors need no 64-bit grid math.
#include <algorithm>
#include <cmath>

#include "custom_ops/kernels/cuda/tfq8_cuda.h"

namespace {

constexpr int kBlock = 256;
constexpr int64_t kMaxBlocks = 65535;

inline unsigned GridFor(int64_t n) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + kBlock - 1) / kBlock,
                                                                      kMaxBlocks)));
}

#define TFQ8_GRID_STRIDE(i, n)                                                       \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// clamp(t, lo, hi) with NaN -> lo (as the CPU's vmaxps(t, lo)); then rne + zp.
__device__ __forceinline__ uint8_t ClampRound(float t, float lo, float hi, int zp) {
  t = t >= lo ? t : lo;
  t = t <= hi ? t : hi;
  return static_cast<uint8_t>(__float2int_rn(t) + zp);
}

__global__ void QuantizeKernel(int64_t n, const float* __restrict__ x, uint8_t* __restrict__ y,
                               float mul, float lo, float hi, int zp) {
  TFQ8_GRID_STRIDE(i, n) { y[i] = ClampRound(__fmul_rn(x[i], mul), lo, hi, zp); }
}

__global__ void DequantizeU8Kernel(int64_t n, const uint8_t* __restrict__ x, float* __restrict__ y,
                                   float scale, int zp) {
  TFQ8_GRID_STRIDE(i, n) { y[i] = __fmul_rn(__int2float_rn(static_cast<int>(x[i]) - zp), scale); }
}

__global__ void DequantizeS32Kernel(int64_t n, const int32_t* __restrict__ x,
                                    float* __restrict__ y, float scale) {
  TFQ8_GRID_STRIDE(i, n) { y[i] = __fmul_rn(__int2float_rn(x[i]), scale); }
}

__global__ void RequantizeKernel(int64_t n, const uint8_t* __restrict__ x, uint8_t* __restrict__ y,
                                 int in_zp, float mul, float lo, float hi, int out_zp) {
  TFQ8_GRID_STRIDE(i, n) {
    const float t = __fmul_rn(__int2float_rn(static_cast<int>(x[i]) - in_zp), mul);
    y[i] = ClampRound(t, lo, hi, out_zp);
  }
}

__global__ void LookupKernel(int64_t n, const uint8_t* __restrict__ x,
                             const uint8_t* __restrict__ table, uint8_t* __restrict__ y) {
  __shared__ uint8_t t[256];  // 256 bytes: every block stages the table once
  for (int i = threadIdx.x; i < 256; i += blockDim.x) t[i] = table[i];
  __syncthreads();
  TFQ8_GRID_STRIDE(i, n) { y[i] = t[x[i]]; }
}

__global__ void ChannelMulKernel(int64_t n, int64_t channels, int64_t rows_per_sample,
                                 int per_sample, const uint8_t* __restrict__ x,
                                 const float* __restrict__ gate, float ratio, int in_zp, float lo,
                                 float hi, int out_zp, uint8_t* __restrict__ y) {
  TFQ8_GRID_STRIDE(i, n) {
    const int64_t row = i / channels, c = i - row * channels;
    const int64_t g = (per_sample ? row / rows_per_sample * channels : 0) + c;
    const float m = __fmul_rn(gate[g], ratio);  // the CPU's ChannelMulMultipliers, per element
    const float t = __fmul_rn(__int2float_rn(static_cast<int>(x[i]) - in_zp), m);
    y[i] = ClampRound(t, lo, hi, out_zp);
  }
}

__global__ void AddKernel(int64_t n, const uint8_t* __restrict__ a, int a_zp, float a_mul,
                          const uint8_t* __restrict__ b, int b_zp, float b_mul,
                          uint8_t* __restrict__ y, float lo, float hi, int out_zp) {
  TFQ8_GRID_STRIDE(i, n) {
    const float t = __fmul_rn(__int2float_rn(static_cast<int>(a[i]) - a_zp), a_mul);
    const float u = __fmul_rn(__int2float_rn(static_cast<int>(b[i]) - b_zp), b_mul);
    y[i] = ClampRound(__fadd_rn(t, u), lo, hi, out_zp);
  }
}

// One input of a concat: rows of `len` bytes at x + r*len go to y + r*out_row + offset.
__global__ void ConcatPieceKernel(int64_t rows, int64_t len, const uint8_t* __restrict__ x,
                                  int64_t out_row, int64_t offset, uint8_t* __restrict__ y,
                                  int copy, int in_zp, float mul, float lo, float hi, int out_zp) {
  TFQ8_GRID_STRIDE(i, rows * len) {
    const int64_t r = i / len, j = i - r * len;
    const uint8_t q = x[i];
    uint8_t o;
    if (copy) {
      o = q;
    } else {
      o = ClampRound(__fmul_rn(__int2float_rn(static_cast<int>(q) - in_zp), mul), lo, hi, out_zp);
    }
    y[r * out_row + offset + j] = o;
  }
}

// One thread per output element (n, oy, ox, c): channels innermost so loads coalesce.
template <bool kMax>
__global__ void PoolKernel(Tfq8PoolShape s, const uint8_t* __restrict__ x,
                           uint8_t* __restrict__ y) {
  const int64_t total = s.n * s.oh * s.ow * s.c;
  TFQ8_GRID_STRIDE(i, total) {
    const int64_t c = i % s.c;
    int64_t r = i / s.c;
    const int64_t ox = r % s.ow;
    r /= s.ow;
    const int64_t oy = r % s.oh;
    const int64_t n = r / s.oh;
    const int64_t y0 = oy * s.stride_h - s.pad_t, x0 = ox * s.stride_w - s.pad_l;
    const int64_t ya = max(y0, int64_t{0}), yb = min(y0 + s.kh, s.h);
    const int64_t xa = max(x0, int64_t{0}), xb = min(x0 + s.kw, s.w);
    int acc = 0;
    for (int64_t yy = ya; yy < yb; ++yy) {
      const uint8_t* row = x + ((n * s.h + yy) * s.w) * s.c + c;
      for (int64_t xx = xa; xx < xb; ++xx) {
        const int v = row[xx * s.c];
        acc = kMax ? max(acc, v) : acc + v;
      }
    }
    if (!kMax) {
      const int cnt = static_cast<int>((yb - ya) * (xb - xa));
      acc = cnt > 0 ? (acc + cnt / 2) / cnt : 0;
    }
    y[i] = static_cast<uint8_t>(acc);
  }
}

__global__ void MeanKernel(int64_t n, int64_t hw, int64_t c, const uint8_t* __restrict__ x,
                           uint8_t* __restrict__ y) {
  TFQ8_GRID_STRIDE(i, n * c) {
    const int64_t b = i / c, ch = i - b * c;
    const uint8_t* p = x + b * hw * c + ch;
    int64_t acc = 0;
    for (int64_t k = 0; k < hw; ++k) acc += p[k * c];
    y[i] = static_cast<uint8_t>(hw > 0 ? (acc + hw / 2) / hw : 0);
  }
}

bool BadQ(float scale, int zp) { return !(scale > 0.0f) || !std::isfinite(scale) || zp < 0 || zp > 255; }

float RatioF(float a, float b) {
  return static_cast<float>(static_cast<double>(a) / static_cast<double>(b));
}

}  // namespace

extern "C" {

cudaError_t tfq8_cuda_quantize(int64_t n, const float* x, uint8_t* y, float scale, int zp,
                               cudaStream_t stream) {
  if (n < 0 || BadQ(scale, zp)) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const float mul = static_cast<float>(1.0 / static_cast<double>(scale));
  QuantizeKernel<<<GridFor(n), kBlock, 0, stream>>>(n, x, y, mul, static_cast<float>(-zp),
                                                    static_cast<float>(255 - zp), zp);
  return cudaGetLastError();
}

cudaError_t tfq8_cuda_dequantize_u8(int64_t n, const uint8_t* x, float* y, float scale, int zp,
                                    cudaStream_t stream) {
  if (n < 0 || BadQ(scale, zp)) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  DequantizeU8Kernel<<<GridFor(n), kBlock, 0, stream>>>(n, x, y, scale, zp);
  return cudaGetLastError();
}

cudaError_t tfq8_cuda_dequantize_s32(int64_t n, const int32_t* x, float* y, float scale,
                                     cudaStream_t stream) {
  if (n < 0 || BadQ(scale, 0)) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  DequantizeS32Kernel<<<GridFor(n), kBlock, 0, stream>>>(n, x, y, scale);
  return cudaGetLastError();
}

cudaError_t tfq8_cuda_requantize(int64_t n, const uint8_t* x, uint8_t* y, float in_scale,
                                 int in_zp, float out_scale, int out_zp, cudaStream_t stream) {
  if (n < 0 || BadQ(in_scale, in_zp) || BadQ(out_scale, out_zp)) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  RequantizeKernel<<<GridFor(n), kBlock, 0, stream>>>(
      n, x, y, in_zp, RatioF(in_scale, out_scale), static_cast<float>(-out_zp),
      static_cast<float>(255 - out_zp), out_zp);
  return cudaGetLastError();
}

cudaError_t tfq8_cuda_lookup(int64_t n, const uint8_t* x, const uint8_t* table, uint8_t* y,
                             cudaStream_t stream) {
  if (n < 0 || table == nullptr) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  LookupKernel<<<GridFor(n), kBlock, 0, stream>>>(n, x, table, y);
  return cudaGetLastError();
}

cudaError_t tfq8_cuda_channel_mul(int64_t n, int64_t channels, int64_t rows_per_sample,
                                  int per_sample, const uint8_t* x, const float* gate,
                                  float in_scale, int in_zp, float out_scale, int out_zp,
                                  uint8_t* y, cudaStream_t stream) {
  if (n < 0 || BadQ(in_scale, in_zp) || BadQ(out_scale, out_zp)) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (channels < 1 || rows_per_sample < 1 || n % channels != 0 || gate == nullptr) {
    return cudaErrorInvalidValue;
  }
  ChannelMulKernel<<<GridFor(n), kBlock, 0, stream>>>(
      n, channels, rows_per_sample, per_sample, x, gate, RatioF(in_scale, out_scale), in_zp,
      static_cast<float>(-out_zp), static_cast<float>(255 - out_zp), out_zp, y);
  return cudaGetLastError();
}

cudaError_t tfq8_cuda_add(int64_t n, const uint8_t* a, float a_scale, int a_zp, const uint8_t* b,
                          float b_scale, int b_zp, uint8_t* y, float out_scale, int out_zp,
                          int activation, cudaStream_t stream) {
  if (n < 0 || BadQ(a_scale, a_zp) || BadQ(b_scale, b_zp) || BadQ(out_scale, out_zp) ||
      activation < TFQ8_ACT_NONE || activation > TFQ8_ACT_RELU6) {
    return cudaErrorInvalidValue;
  }
  if (n == 0) return cudaSuccess;
  float lo = static_cast<float>(-out_zp), hi = static_cast<float>(255 - out_zp);
  if (activation != TFQ8_ACT_NONE) lo = std::max(lo, 0.0f);
  if (activation == TFQ8_ACT_RELU6) hi = std::min(hi, RatioF(6.0f, out_scale));
  AddKernel<<<GridFor(n), kBlock, 0, stream>>>(n, a, a_zp, RatioF(a_scale, out_scale), b, b_zp,
                                               RatioF(b_scale, out_scale), y, lo, hi, out_zp);
  return cudaGetLastError();
}

cudaError_t tfq8_cuda_concat(int num_inputs, const uint8_t* const* inputs, const int64_t* axis_len,
                             const float* in_scales, const int* in_zps, int64_t outer,
                             int64_t inner, uint8_t* y, float out_scale, int out_zp,
                             cudaStream_t stream) {
  if (num_inputs < 1 || outer < 0 || inner < 0 || BadQ(out_scale, out_zp)) {
    return cudaErrorInvalidValue;
  }
  int64_t total = 0;
  for (int i = 0; i < num_inputs; ++i) {
    if (axis_len[i] < 0 || BadQ(in_scales[i], in_zps[i])) return cudaErrorInvalidValue;
    total += axis_len[i];
  }
  const int64_t out_row = total * inner;
  int64_t offset = 0;
  for (int i = 0; i < num_inputs; ++i) {
    const int64_t len = axis_len[i] * inner;
    if (len > 0 && outer > 0) {
      const int copy = in_scales[i] == out_scale && in_zps[i] == out_zp;
      ConcatPieceKernel<<<GridFor(outer * len), kBlock, 0, stream>>>(
          outer, len, inputs[i], out_row, offset, y, copy, in_zps[i],
          RatioF(in_scales[i], out_scale), static_cast<float>(-out_zp),
          static_cast<float>(255 - out_zp), out_zp);
      const cudaError_t err = cudaGetLastError();
      if (err != cudaSuccess) return err;
    }
    offset += len;
  }
  return cudaSuccess;
}

void tfq8_pool_shape_finish(Tfq8PoolShape* s, int same) {
  if (same) {
    s->oh = (s->h + s->stride_h - 1) / s->stride_h;
    s->ow = (s->w + s->stride_w - 1) / s->stride_w;
    s->pad_t = static_cast<int>(std::max<int64_t>((s->oh - 1) * s->stride_h + s->kh - s->h, 0) / 2);
    s->pad_l = static_cast<int>(std::max<int64_t>((s->ow - 1) * s->stride_w + s->kw - s->w, 0) / 2);
  } else {
    s->oh = s->h >= s->kh ? (s->h - s->kh) / s->stride_h + 1 : 0;
    s->ow = s->w >= s->kw ? (s->w - s->kw) / s->stride_w + 1 : 0;
    s->pad_t = s->pad_l = 0;
  }
}

static cudaError_t Pool(const Tfq8PoolShape* s, const uint8_t* x, uint8_t* y, bool is_max,
                        cudaStream_t stream) {
  if (s->kh < 1 || s->kw < 1 || s->stride_h < 1 || s->stride_w < 1 || s->n < 0 || s->c < 0 ||
      s->oh < 0 || s->ow < 0) {
    return cudaErrorInvalidValue;
  }
  const int64_t total = s->n * s->oh * s->ow * s->c;
  if (total == 0) return cudaSuccess;
  if (is_max) {
    PoolKernel<true><<<GridFor(total), kBlock, 0, stream>>>(*s, x, y);
  } else {
    PoolKernel<false><<<GridFor(total), kBlock, 0, stream>>>(*s, x, y);
  }
  return cudaGetLastError();
}

cudaError_t tfq8_cuda_max_pool(const Tfq8PoolShape* s, const uint8_t* x, uint8_t* y,
                               cudaStream_t stream) {
  return Pool(s, x, y, true, stream);
}

cudaError_t tfq8_cuda_avg_pool(const Tfq8PoolShape* s, const uint8_t* x, uint8_t* y,
                               cudaStream_t stream) {
  return Pool(s, x, y, false, stream);
}

cudaError_t tfq8_cuda_mean(int64_t n, int64_t h, int64_t w, int64_t c, const uint8_t* x,
                           uint8_t* y, cudaStream_t stream) {
  if (n < 0 || h < 0 || w < 0 || c < 0) return cudaErrorInvalidValue;
  if (n * c == 0) return cudaSuccess;
  MeanKernel<<<GridFor(n * c), kBlock, 0, stream>>>(n, h * w, c, x, y);
  return cudaGetLastError();
}

}  // extern "C"
