// Scalar reference of the INT8 layer norm, the shared row arithmetic, and the per-ISA table.
#include <cmath>

#include "custom_ops/kernels/cpu/layernorm.h"

namespace tfq8 {

LayerNormParams MakeLayerNormParams(float in_scale, float out_scale, int out_zero_point,
                                    float epsilon) {
  LayerNormParams p;
  p.in_scale = in_scale;
  p.out_scale = out_scale;
  p.epsilon = epsilon;
  p.lo = static_cast<float>(-out_zero_point);
  p.hi = static_cast<float>(255 - out_zero_point);
  p.out_zero_point = out_zero_point;
  return p;
}

float LayerNormRowMultiplier(int64_t channels, int64_t s1, int64_t s2, const LayerNormParams& p) {
  const double c = static_cast<double>(channels);
  const double d = static_cast<double>(channels * s2 - s1 * s1);  // exact below 2^53
  const double var = p.in_scale * p.in_scale * (d / (c * c));
  const double r = 1.0 / std::sqrt(var + p.epsilon);
  return static_cast<float>(p.in_scale * r / (c * p.out_scale));
}

void LayerNormBetaOut(size_t channels, const float* beta, const LayerNormParams& p,
                      float* beta_out) {
  for (size_t c = 0; c < channels; ++c)
    beta_out[c] = static_cast<float>(static_cast<double>(beta[c]) / p.out_scale);
}

void qu8_vlayernorm_ukernel__ref(size_t rows, size_t channels, const uint8_t* x,
                                 const float* gamma, const float* beta_out, uint8_t* y,
                                 const LayerNormParams& p) {
  const int32_t n = static_cast<int32_t>(channels);
  for (size_t r = 0; r < rows; ++r, x += channels, y += channels) {
    int64_t s1 = 0, s2 = 0;
    for (size_t c = 0; c < channels; ++c) {
      s1 += x[c];
      s2 += static_cast<int32_t>(x[c]) * x[c];
    }
    const float a = LayerNormRowMultiplier(n, s1, s2, p);
    const int32_t s1i = static_cast<int32_t>(s1);
    for (size_t c = 0; c < channels; ++c) {
      const float t = static_cast<float>(n * static_cast<int32_t>(x[c]) - s1i);
      float v = t * a;
      v = v * gamma[c];
      v = v + beta_out[c];
      v = v >= p.lo ? v : p.lo;  // NaN → lo, as vmaxps(v, lo) does
      v = v <= p.hi ? v : p.hi;
      y[c] = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(v)) + p.out_zero_point);
    }
  }
}

LayerNormFn GetLayerNormKernel(Isa isa) {
  return isa == Isa::kRef ? qu8_vlayernorm_ukernel__ref : qu8_vlayernorm_ukernel__avx2;
}

}  // namespace tfq8
