// INT8 layer normalization over the last axis (Tfq8LayerNorm: ConvNeXt, hybrid CNNs).
// Numerics: docs/int8_numerics.md ("Layer normalization").
//
// Per row of C codes q (input scale s; the input zero point cancels in q − mean):
//   S1 = Σq, S2 = Σq² (exact integers), D = C·S2 − S1² (= C²·var of the codes, exact in int64),
//   A = s·r / (C·s_out) with r = 1 / sqrt(s²·D/C² + ε), computed in double by one function
//       shared by every path (LayerNormRowMultiplier, compiled without FMA) and rounded to f32,
//   t_c = f32(C·q_c − S1)  (exact: |C·q − S1| ≤ 255·C < 2^24),
//   v_c = (t_c · A) · gamma_c + beta_out_c   (three f32 operations, in this order, no FMA),
// then clamped to [−z_out, 255 − z_out] (NaN → low end), rounded half to even, + z_out.
// beta_out_c = f32(beta_c / s_out), computed once by the caller (LayerNormBetaOut).
#ifndef TFQ8_KERNELS_CPU_LAYERNORM_H_
#define TFQ8_KERNELS_CPU_LAYERNORM_H_

#include <cstddef>
#include <cstdint>

#include "custom_ops/kernels/cpu/isa.h"

namespace tfq8 {

// The exactness bounds above (and int32 lane sums of q² in the SIMD paths) hold up to this.
constexpr int64_t kLayerNormMaxChannels = 65536;

struct LayerNormParams {
  double in_scale;
  double out_scale;
  double epsilon;
  float lo;  // −out_zero_point
  float hi;  // 255 − out_zero_point
  int32_t out_zero_point;
};
LayerNormParams MakeLayerNormParams(float in_scale, float out_scale, int out_zero_point,
                                    float epsilon);

// A for one row from its exact sums (see above). Defined once (layernorm_ref.cc) so that every
// path uses the same double arithmetic.
float LayerNormRowMultiplier(int64_t channels, int64_t s1, int64_t s2, const LayerNormParams& p);
void LayerNormBetaOut(size_t channels, const float* beta, const LayerNormParams& p,
                      float* beta_out);

using LayerNormFn = void (*)(size_t rows, size_t channels, const uint8_t* x, const float* gamma,
                             const float* beta_out, uint8_t* y, const LayerNormParams& p);
void qu8_vlayernorm_ukernel__ref(size_t rows, size_t channels, const uint8_t* x,
                                 const float* gamma, const float* beta_out, uint8_t* y,
                                 const LayerNormParams& p);
// AVX2 (also used on AVX512 / AMX CPUs: the op is memory-bound and runs once per row).
void qu8_vlayernorm_ukernel__avx2(size_t rows, size_t channels, const uint8_t* x,
                                  const float* gamma, const float* beta_out, uint8_t* y,
                                  const LayerNormParams& p);

LayerNormFn GetLayerNormKernel(Isa isa);

}  // namespace tfq8

#endif  // TFQ8_KERNELS_CPU_LAYERNORM_H_
