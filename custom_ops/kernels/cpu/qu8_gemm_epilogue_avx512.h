// The fused epilogue of the INT8 conv/matmul micro-kernels for 16 channels of one output row,
// AVX512. Included only by files compiled with AVX512 flags (*_avx512.cc, *_amx.cc). Same
// operation order as the scalar reference (conv2d.cc, EpilogueScalar); vcvtps2dq rounds half
// to even in the default MXCSR mode; max(NaN, lo) = lo as in the reference.
#ifndef TFQ8_KERNELS_CPU_QU8_GEMM_EPILOGUE_AVX512_H_
#define TFQ8_KERNELS_CPU_QU8_GEMM_EPILOGUE_AVX512_H_

#include <immintrin.h>

#include "custom_ops/kernels/cpu/qu8_gemm.h"

namespace tfq8 {

// acc: 16 int32 accumulators (bias included) of channels [n, n+16) of one row; m masks the
// channels < nc. mul/badd point at channel n (arrays padded, full loads are fine). c/s point at
// channel n of the output / summand row.
static inline void Qu8EpilogueStore16Avx512(__m512i acc, __mmask16 m, const float* mul,
                                            const float* badd, const uint8_t* s, void* c,
                                            const QEpilogue& ep) {
  if (ep.out_type == QOutType::kS32) {
    _mm512_mask_storeu_epi32(c, m, acc);
    return;
  }
  __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_loadu_ps(mul));
  t = _mm512_add_ps(t, _mm512_loadu_ps(badd));
  if (ep.has_summand) {
    const __m512i q = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, s));
    const __m512 u = _mm512_cvtepi32_ps(_mm512_sub_epi32(q, _mm512_set1_epi32(ep.zp_summand)));
    t = _mm512_add_ps(t, _mm512_mul_ps(u, _mm512_set1_ps(ep.mul_s)));
  }
  t = _mm512_max_ps(t, _mm512_set1_ps(ep.lo));
  t = _mm512_min_ps(t, _mm512_set1_ps(ep.hi));
  if (ep.out_type == QOutType::kF32) {
    _mm512_mask_storeu_ps(c, m, t);
    return;
  }
  const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(t), _mm512_set1_epi32(ep.zp_out));
  _mm512_mask_cvtusepi32_storeu_epi8(c, m, q);
}

static inline size_t QOutElementSize(const QEpilogue& ep) {
  return ep.out_type == QOutType::kU8 ? 1 : 4;
}

static inline __mmask16 QMask16(size_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1);
}

}  // namespace tfq8

#endif  // TFQ8_KERNELS_CPU_QU8_GEMM_EPILOGUE_AVX512_H_
