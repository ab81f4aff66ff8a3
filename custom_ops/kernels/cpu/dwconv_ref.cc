// Depthwise convolution: output size, epilogue constants, and the scalar reference (the oracle of
// the SIMD paths). Numerics: docs/int8_numerics.md.
#include <algorithm>
#include <cmath>
#include <limits>

#include "custom_ops/kernels/cpu/dwconv.h"

namespace tfq8 {

bool DwConvShape::ComputeOutputSize() {
  const int64_t eff_h = (kh - 1) * dil_h + 1, eff_w = (kw - 1) * dil_w + 1;
  const int64_t ph = h + pad_top + pad_bottom, pw = w + pad_left + pad_right;
  if (ph < eff_h || pw < eff_w) return false;
  oh = (ph - eff_h) / stride_h + 1;
  ow = (pw - eff_w) / stride_w + 1;
  return true;
}

DwEpilogue MakeDwEpilogue(const DwConvShape& s, const int8_t* filter, const DwEpilogueAttrs& a) {
  const int64_t oc = s.oc();
  DwEpilogue ep;
  ep.out_type = a.out_type;
  ep.has_summand = a.has_summand;
  ep.bias.assign(oc, 0);
  ep.mul.assign(oc, 0.0f);
  ep.badd.assign(oc, 0.0f);
  const double s_out = a.out_type == DwOutType::kF32 ? 1.0 : static_cast<double>(a.output_scale);
  for (int64_t o = 0; o < oc; ++o) {
    int64_t sumw = 0;
    for (int64_t t = 0; t < s.taps(); ++t) sumw += filter[t * oc + o];
    const double sw = static_cast<double>(a.filter_scale[a.per_tensor_scale ? 0 : o]);
    uint32_t b = static_cast<uint32_t>(-static_cast<int64_t>(a.input_zero_point) * sumw);
    if (a.bias_is_int32) {
      b += static_cast<uint32_t>(a.bias_s32[o]);
    } else if (a.out_type == DwOutType::kS32) {
      const double q = std::nearbyint(static_cast<double>(a.bias_f32[o]) /
                                      (static_cast<double>(a.input_scale) * sw));
      b += static_cast<uint32_t>(static_cast<int64_t>(q));
    } else {
      ep.badd[o] = static_cast<float>(static_cast<double>(a.bias_f32[o]) / s_out);
    }
    ep.bias[o] = static_cast<int32_t>(b);
    ep.mul[o] = static_cast<float>(static_cast<double>(a.input_scale) * sw / s_out);
  }
  if (a.out_type == DwOutType::kF32) {
    ep.lo = -std::numeric_limits<float>::infinity();
    ep.hi = std::numeric_limits<float>::infinity();
  } else {
    ep.lo = static_cast<float>(-a.output_zero_point);
    ep.hi = static_cast<float>(255 - a.output_zero_point);
  }
  switch (a.activation) {
    case DwActivation::kNone: break;
    case DwActivation::kRelu: ep.lo = std::max(ep.lo, 0.0f); break;
    case DwActivation::kRelu6:
      ep.lo = std::max(ep.lo, 0.0f);
      ep.hi = std::min(ep.hi, static_cast<float>(6.0 / s_out));
      break;
    case DwActivation::kClip:
      ep.lo = std::max(ep.lo, static_cast<float>(static_cast<double>(a.clip_min) / s_out));
      ep.hi = std::min(ep.hi, static_cast<float>(static_cast<double>(a.clip_max) / s_out));
      break;
  }
  ep.mul_s = static_cast<float>(static_cast<double>(a.summand_scale) / s_out);
  ep.zp_summand = a.summand_zero_point;
  ep.zp_out = a.out_type == DwOutType::kU8 ? a.output_zero_point : 0;
  return ep;
}

void qu8_dwconv_ref(const DwConvShape& s, const uint8_t* input, const int8_t* filter,
                    const DwEpilogue& ep, int32_t zp_in, const uint8_t* summand, void* output,
                    int64_t row_begin, int64_t row_end) {
  const int64_t oc = s.oc();
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t n = row / s.oh, oy = row % s.oh;
    for (int64_t ox = 0; ox < s.ow; ++ox) {
      const int64_t pix = (row * s.ow + ox) * oc;
      for (int64_t c = 0; c < s.c; ++c) {
        for (int64_t m = 0; m < s.m; ++m) {
          const int64_t o = c * s.m + m;
          int32_t acc = 0;  // Σ x·w with padded taps reading zp_in; exact in int32
          for (int64_t ky = 0; ky < s.kh; ++ky) {
            const int64_t iy = oy * s.stride_h - s.pad_top + ky * s.dil_h;
            for (int64_t kx = 0; kx < s.kw; ++kx) {
              const int64_t ix = ox * s.stride_w - s.pad_left + kx * s.dil_w;
              const bool inside = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w;
              const int32_t x = inside ? input[((n * s.h + iy) * s.w + ix) * s.c + c] : zp_in;
              acc += x * filter[(ky * s.kw + kx) * oc + o];
            }
          }
          acc = static_cast<int32_t>(static_cast<uint32_t>(acc) + static_cast<uint32_t>(ep.bias[o]));
          if (ep.out_type == DwOutType::kS32) {
            static_cast<int32_t*>(output)[pix + o] = acc;
            continue;
          }
          float t = static_cast<float>(acc) * ep.mul[o];
          t = t + ep.badd[o];
          if (summand != nullptr) {
            t = t + static_cast<float>(static_cast<int32_t>(summand[pix + o]) - ep.zp_summand) *
                        ep.mul_s;
          }
          t = std::min(std::max(t, ep.lo), ep.hi);
          if (ep.out_type == DwOutType::kF32) {
            static_cast<float*>(output)[pix + o] = t;
          } else {
            static_cast<uint8_t*>(output)[pix + o] =
                static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(t)) + ep.zp_out);
          }
        }
      }
    }
  }
}

}  // namespace tfq8
