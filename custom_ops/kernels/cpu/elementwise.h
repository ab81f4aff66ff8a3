// Elementwise INT8 conversions: f32→u8 quantize, u8/s32→f32 dequantize, u8→u8 requantize,
// u8→u8 table lookup, u8→u8 per-channel multiply by an f32 gate, u8→u8 per-channel two-slope.
// Numerics: docs/int8_numerics.md ("Quantize", "Dequantize", "Requantize and Concat").
// One micro-kernel per ISA (files named after the function); Get*Kernel(isa) is the table.
#ifndef TFQ8_KERNELS_CPU_ELEMENTWISE_H_
#define TFQ8_KERNELS_CPU_ELEMENTWISE_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "custom_ops/kernels/cpu/isa.h"

namespace tfq8 {

// t = x * mul; t = clamp(t, lo, hi) (NaN → lo); q = rne(t) + zero_point.
struct QuantizeParams {
  float mul;
  float lo;
  float hi;
  int32_t zero_point;
};
QuantizeParams MakeQuantizeParams(float scale, int zero_point);

// Quantize with a per-channel affine in front (Tfq8QuantizeChannels: a model's own input
// normalization absorbed): t = x * mul[c]; t = t + add[c]; then clamp and round as Quantize.
// mul[c] = float(channel_mul[c] / scale), add[c] = float(channel_add[c] / scale), computed in
// double. Element i of the tensor has channel i % channels; the kernels read mul/add through
// `pattern` arrays that repeat them over `period` = lcm(channels, 16) elements, stored twice
// (+16) so that a vector starting anywhere in the first period reads contiguously.
struct QuantizeChannelsParams {
  int64_t channels = 1;
  int64_t period = 16;
  std::vector<float> mul;  // [2 * period + 16]
  std::vector<float> add;
  float lo = 0.0f;
  float hi = 255.0f;
  int32_t zero_point = 0;
};
QuantizeChannelsParams MakeQuantizeChannelsParams(float scale, int zero_point,
                                                  const std::vector<float>& channel_mul,
                                                  const std::vector<float>& channel_add);

// For requantize the input is first centred: t = float(q - in_zero_point) * mul.
struct RequantizeParams {
  int32_t in_zero_point;
  float mul;
  float lo;
  float hi;
  int32_t out_zero_point;
};
RequantizeParams MakeRequantizeParams(float in_scale, int in_zero_point, float out_scale,
                                      int out_zero_point);

// Channel multiply (Tfq8ChannelMul, squeeze-excitation gates): every row of `channels` bytes is
// multiplied channel by channel by mult[c] = gate[c] * (in_scale / out_scale), computed by the
// caller with ChannelMulMultipliers; then t = float(q - in_zero_point) * mult[c], clamped as in
// Quantize (NaN → lo) and rounded. Reuses RequantizeParams; its `mul` is unused.
void ChannelMulMultipliers(size_t n, const float* gate, const RequantizeParams& p, float* mult);

// Per-channel two-slope (Tfq8Prelu: PReLU, a per-channel affine after a ReLU): every row of
// `channels` bytes; d = q - in_zero_point; t = float(d) * (d >= 0 ? pos[c] : neg[c]);
// t = t + add[c]; clamped and rounded as in Requantize. pos, neg = f32(slope·s_in/s_out) and
// add = f32(bias/s_out), computed in double by PReluMultipliers. Reuses RequantizeParams (its
// `mul` is unused). AVX512 CPUs run the AVX2 kernel.
struct PReluMultipliers {
  std::vector<float> pos, neg, add;
  // slopes: [2, channels] (row 0 for d >= 0, row 1 for d < 0); bias: [channels].
  PReluMultipliers(size_t channels, const float* slopes, const float* bias, float in_scale,
                   float out_scale);
};
using PReluFn = void (*)(size_t rows, size_t channels, const uint8_t* x,
                         const float* pos, const float* neg, const float* add, uint8_t* y,
                         const RequantizeParams& p);
void qu8_vprelu_ukernel__ref(size_t rows, size_t channels, const uint8_t* x,
                             const float* pos, const float* neg, const float* add, uint8_t* y,
                             const RequantizeParams& p);
void qu8_vprelu_ukernel__avx2(size_t rows, size_t channels, const uint8_t* x,
                              const float* pos, const float* neg, const float* add, uint8_t* y,
                             const RequantizeParams& p);
PReluFn GetPReluKernel(Isa isa);

// x[0] is element `phase` (mod p.period) of the pattern; returns whether x had a NaN.
using QuantizeChannelsFn = bool (*)(size_t n, size_t phase, const float* x, uint8_t* y,
                                    const QuantizeChannelsParams& p);
// Returns whether x had a NaN (its code is still written), so the op can refuse NaN for free.
using QuantizeFn = bool (*)(size_t n, const float* x, uint8_t* y, const QuantizeParams& p);
using DequantizeU8Fn = void (*)(size_t n, const uint8_t* x, float* y, int32_t zero_point,
                                float scale);
using RequantizeFn = void (*)(size_t n, const uint8_t* x, uint8_t* y, const RequantizeParams& p);
using ChannelMulFn = void (*)(size_t rows, size_t channels, const uint8_t* x, const float* mult,
                              uint8_t* y, const RequantizeParams& p);

bool f32_qu8_vcvt_ukernel__ref(size_t n, const float* x, uint8_t* y, const QuantizeParams& p);
bool f32_qu8_vcvt_ukernel__avx2(size_t n, const float* x, uint8_t* y, const QuantizeParams& p);
bool f32_qu8_vcvt_ukernel__avx512(size_t n, const float* x, uint8_t* y, const QuantizeParams& p);

void qu8_f32_vcvt_ukernel__ref(size_t n, const uint8_t* x, float* y, int32_t zp, float scale);
void qu8_f32_vcvt_ukernel__avx2(size_t n, const uint8_t* x, float* y, int32_t zp, float scale);
void qu8_f32_vcvt_ukernel__avx512(size_t n, const uint8_t* x, float* y, int32_t zp, float scale);

void qu8_vrequant_ukernel__ref(size_t n, const uint8_t* x, uint8_t* y, const RequantizeParams& p);
void qu8_vrequant_ukernel__avx2(size_t n, const uint8_t* x, uint8_t* y, const RequantizeParams& p);
void qu8_vrequant_ukernel__avx512(size_t n, const uint8_t* x, uint8_t* y,
                                  const RequantizeParams& p);

void qu8_vchanmul_ukernel__ref(size_t rows, size_t channels, const uint8_t* x, const float* mult,
                               uint8_t* y, const RequantizeParams& p);
void qu8_vchanmul_ukernel__avx2(size_t rows, size_t channels, const uint8_t* x, const float* mult,
                                uint8_t* y, const RequantizeParams& p);
void qu8_vchanmul_ukernel__avx512(size_t rows, size_t channels, const uint8_t* x,
                                  const float* mult, uint8_t* y, const RequantizeParams& p);

// y[i] = table[x[i]] (Tfq8Lookup). AVX2 (also used on AVX512 CPUs): the table as 16 vpshufb
// rows of 16 entries, each row's lookup zeroed (index bit 7) unless x's high nibble selects it;
// 64 vector ops per 32 bytes, 1.6-1.8× the scalar loop on Zen 3 with the data in L2
// (tools/lut_formulations_bench.cc).
using LutFn = void (*)(size_t n, const uint8_t* x, uint8_t* y, const uint8_t* table);
void qu8_vlut_ukernel__ref(size_t n, const uint8_t* x, uint8_t* y, const uint8_t* table);
void qu8_vlut_ukernel__avx2(size_t n, const uint8_t* x, uint8_t* y, const uint8_t* table);

// int32 → f32 dequantize is rare (debug outputs); reference only.
void s32_f32_vcvt_ukernel__ref(size_t n, const int32_t* x, float* y, float scale);

QuantizeFn GetQuantizeKernel(Isa isa);
// AVX512 CPUs take the AVX2 kernel: the op reads 4 bytes per byte written, memory-bound.
QuantizeChannelsFn GetQuantizeChannelsKernel(Isa isa);
bool f32_qu8_vcvt_channels_ukernel__ref(size_t n, size_t phase, const float* x, uint8_t* y,
                                        const QuantizeChannelsParams& p);
bool f32_qu8_vcvt_channels_ukernel__avx2(size_t n, size_t phase, const float* x, uint8_t* y,
                                         const QuantizeChannelsParams& p);
DequantizeU8Fn GetDequantizeKernel(Isa isa);
RequantizeFn GetRequantizeKernel(Isa isa);
ChannelMulFn GetChannelMulKernel(Isa isa);
LutFn GetLookupKernel(Isa isa);

}  // namespace tfq8

#endif  // TFQ8_KERNELS_CPU_ELEMENTWISE_H_
