// Scalar references for the elementwise conversions, and the per-ISA table.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "custom_ops/kernels/cpu/elementwise.h"

namespace tfq8 {

QuantizeParams MakeQuantizeParams(float scale, int zero_point) {
  QuantizeParams p;
  p.mul = static_cast<float>(1.0 / static_cast<double>(scale));
  p.lo = static_cast<float>(-zero_point);
  p.hi = static_cast<float>(255 - zero_point);
  p.zero_point = zero_point;
  return p;
}

QuantizeChannelsParams MakeQuantizeChannelsParams(float scale, int zero_point,
                                                  const std::vector<float>& channel_mul,
                                                  const std::vector<float>& channel_add) {
  QuantizeChannelsParams p;
  p.channels = static_cast<int64_t>(channel_mul.size());
  p.period = std::lcm<int64_t>(p.channels, 16);
  p.mul.resize(2 * p.period + 16);
  p.add.resize(2 * p.period + 16);
  for (size_t i = 0; i < p.mul.size(); ++i) {
    const size_t c = i % p.channels;
    p.mul[i] = static_cast<float>(static_cast<double>(channel_mul[c]) / scale);
    p.add[i] = static_cast<float>(static_cast<double>(channel_add[c]) / scale);
  }
  p.lo = static_cast<float>(-zero_point);
  p.hi = static_cast<float>(255 - zero_point);
  p.zero_point = zero_point;
  return p;
}

bool f32_qu8_vcvt_channels_ukernel__ref(size_t n, size_t phase, const float* x, uint8_t* y,
                                        const QuantizeChannelsParams& p) {
  bool nan = false;
  size_t j = phase % static_cast<size_t>(p.period);
  for (size_t i = 0; i < n; ++i) {
    nan |= std::isnan(x[i]);
    float t = x[i] * p.mul[j];
    t = t + p.add[j];
    t = t >= p.lo ? t : p.lo;  // NaN → lo, as vmaxps(t, lo) does
    t = t <= p.hi ? t : p.hi;
    y[i] = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(t)) + p.zero_point);
    if (++j == static_cast<size_t>(p.period)) j = 0;
  }
  return nan;
}

RequantizeParams MakeRequantizeParams(float in_scale, int in_zero_point, float out_scale,
                                      int out_zero_point) {
  RequantizeParams p;
  p.in_zero_point = in_zero_point;
  p.mul = static_cast<float>(static_cast<double>(in_scale) / static_cast<double>(out_scale));
  p.lo = static_cast<float>(-out_zero_point);
  p.hi = static_cast<float>(255 - out_zero_point);
  p.out_zero_point = out_zero_point;
  return p;
}

bool f32_qu8_vcvt_ukernel__ref(size_t n, const float* x, uint8_t* y, const QuantizeParams& p) {
  bool nan = false;
  for (size_t i = 0; i < n; ++i) {
    nan |= std::isnan(x[i]);
    float t = x[i] * p.mul;
    t = t >= p.lo ? t : p.lo;  // NaN → lo, as vmaxps(t, lo) does
    t = t <= p.hi ? t : p.hi;
    y[i] = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(t)) + p.zero_point);
  }
  return nan;
}

void qu8_f32_vcvt_ukernel__ref(size_t n, const uint8_t* x, float* y, int32_t zp, float scale) {
  for (size_t i = 0; i < n; ++i) y[i] = static_cast<float>(static_cast<int32_t>(x[i]) - zp) * scale;
}

void qu8_vrequant_ukernel__ref(size_t n, const uint8_t* x, uint8_t* y, const RequantizeParams& p) {
  for (size_t i = 0; i < n; ++i) {
    float t = static_cast<float>(static_cast<int32_t>(x[i]) - p.in_zero_point) * p.mul;
    t = std::min(std::max(t, p.lo), p.hi);
    y[i] = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(t)) + p.out_zero_point);
  }
}

void ChannelMulMultipliers(size_t n, const float* gate, const RequantizeParams& p, float* mult) {
  for (size_t i = 0; i < n; ++i) mult[i] = gate[i] * p.mul;
}

void qu8_vchanmul_ukernel__ref(size_t rows, size_t channels, const uint8_t* x, const float* mult,
                               uint8_t* y, const RequantizeParams& p) {
  for (size_t r = 0; r < rows; ++r, x += channels, y += channels) {
    for (size_t c = 0; c < channels; ++c) {
      float t = static_cast<float>(static_cast<int32_t>(x[c]) - p.in_zero_point) * mult[c];
      t = t >= p.lo ? t : p.lo;  // NaN (a NaN gate, or 0 · inf) → lo, as in Quantize
      t = t <= p.hi ? t : p.hi;
      y[c] = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(t)) + p.out_zero_point);
    }
  }
}

PReluMultipliers::PReluMultipliers(size_t channels, const float* slopes, const float* bias,
                                   float in_scale, float out_scale)
    : pos(channels), neg(channels), add(channels) {
  const double r = static_cast<double>(in_scale) / static_cast<double>(out_scale);
  for (size_t c = 0; c < channels; ++c) {
    pos[c] = static_cast<float>(static_cast<double>(slopes[c]) * r);
    neg[c] = static_cast<float>(static_cast<double>(slopes[channels + c]) * r);
    add[c] = static_cast<float>(static_cast<double>(bias[c]) / static_cast<double>(out_scale));
  }
}

void qu8_vprelu_ukernel__ref(size_t rows, size_t channels, const uint8_t* x,
                             const float* pos, const float* neg, const float* add, uint8_t* y,
                             const RequantizeParams& p) {
  for (size_t r = 0; r < rows; ++r, x += channels, y += channels) {
    for (size_t c = 0; c < channels; ++c) {
      const int32_t d = static_cast<int32_t>(x[c]) - p.in_zero_point;
      float t = static_cast<float>(d) * (d >= 0 ? pos[c] : neg[c]);
      t = t + add[c];
      t = t >= p.lo ? t : p.lo;
      t = t <= p.hi ? t : p.hi;
      y[c] = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(t)) + p.out_zero_point);
    }
  }
}

PReluFn GetPReluKernel(Isa isa) {
  return isa == Isa::kRef ? qu8_vprelu_ukernel__ref : qu8_vprelu_ukernel__avx2;
}

void qu8_vlut_ukernel__ref(size_t n, const uint8_t* x, uint8_t* y, const uint8_t* table) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {  // four independent loads per iteration
    const uint8_t a = table[x[i]], b = table[x[i + 1]], c = table[x[i + 2]], d = table[x[i + 3]];
    y[i] = a;
    y[i + 1] = b;
    y[i + 2] = c;
    y[i + 3] = d;
  }
  for (; i < n; ++i) y[i] = table[x[i]];
}

void s32_f32_vcvt_ukernel__ref(size_t n, const int32_t* x, float* y, float scale) {
  for (size_t i = 0; i < n; ++i) y[i] = static_cast<float>(x[i]) * scale;
}

QuantizeFn GetQuantizeKernel(Isa isa) {
  switch (isa) {
    case Isa::kAmx:
    case Isa::kAvx512Vnni: return f32_qu8_vcvt_ukernel__avx512;
    case Isa::kAvx2: return f32_qu8_vcvt_ukernel__avx2;
    default: return f32_qu8_vcvt_ukernel__ref;
  }
}

QuantizeChannelsFn GetQuantizeChannelsKernel(Isa isa) {
  return isa == Isa::kRef ? f32_qu8_vcvt_channels_ukernel__ref
                                : f32_qu8_vcvt_channels_ukernel__avx2;
}

DequantizeU8Fn GetDequantizeKernel(Isa isa) {
  switch (isa) {
    case Isa::kAmx:
    case Isa::kAvx512Vnni: return qu8_f32_vcvt_ukernel__avx512;
    case Isa::kAvx2: return qu8_f32_vcvt_ukernel__avx2;
    default: return qu8_f32_vcvt_ukernel__ref;
  }
}

RequantizeFn GetRequantizeKernel(Isa isa) {
  switch (isa) {
    case Isa::kAmx:
    case Isa::kAvx512Vnni: return qu8_vrequant_ukernel__avx512;
    case Isa::kAvx2: return qu8_vrequant_ukernel__avx2;
    default: return qu8_vrequant_ukernel__ref;
  }
}

ChannelMulFn GetChannelMulKernel(Isa isa) {
  switch (isa) {
    case Isa::kAmx:
    case Isa::kAvx512Vnni: return qu8_vchanmul_ukernel__avx512;
    case Isa::kAvx2: return qu8_vchanmul_ukernel__avx2;
    default: return qu8_vchanmul_ukernel__ref;
  }
}

LutFn GetLookupKernel(Isa isa) {
  return isa == Isa::kRef ? qu8_vlut_ukernel__ref : qu8_vlut_ukernel__avx2;
}

}  // namespace tfq8
