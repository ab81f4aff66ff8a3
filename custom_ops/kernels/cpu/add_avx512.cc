// AVX512 Add micro-kernel; bit-identical to add_ref.cc (same f32 operation order, vcvtps2dq
// rounds half to even).
#include <immintrin.h>

#include "custom_ops/kernels/cpu/add.h"

namespace tfq8 {

void qu8_vadd_minmax_ukernel__avx512(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y,
                                     const AddParams& p) {
  const __m512 am = _mm512_set1_ps(p.a_mul), bm = _mm512_set1_ps(p.b_mul);
  const __m512 lo = _mm512_set1_ps(p.lo), hi = _mm512_set1_ps(p.hi);
  const __m512i az = _mm512_set1_epi32(p.a_zero_point), bz = _mm512_set1_epi32(p.b_zero_point),
                oz = _mm512_set1_epi32(p.out_zero_point);
  for (size_t i = 0; i < n; i += 16) {
    const size_t left = n - i;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xffff)
                                   : static_cast<__mmask16>((1u << left) - 1);
    const __m512i qa = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, a + i));
    const __m512i qb = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, b + i));
    __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(qa, az)), am);
    const __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(qb, bz)), bm);
    t = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(t, u), lo), hi);
    _mm512_mask_cvtusepi32_storeu_epi8(y + i, m, _mm512_add_epi32(_mm512_cvtps_epi32(t), oz));
  }
}

}  // namespace tfq8
