// AVX512 elementwise conversions; bit-identical to elementwise_ref.cc (same op order, vcvtps2dq
// rounds half to even in the default MXCSR mode). Compiled with AVX512 flags (setup.py: *_avx512.cc).
#include <immintrin.h>

#include "custom_ops/kernels/cpu/elementwise.h"

namespace tfq8 {

bool f32_qu8_vcvt_ukernel__avx512(size_t n, const float* x, uint8_t* y, const QuantizeParams& p) {
  const __m512 mul = _mm512_set1_ps(p.mul), lo = _mm512_set1_ps(p.lo), hi = _mm512_set1_ps(p.hi);
  const __m512i zp = _mm512_set1_epi32(p.zero_point);
  __mmask16 nan = 0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    __m512 t = _mm512_mul_ps(v, mul);
    t = _mm512_min_ps(_mm512_max_ps(t, lo), hi);  // max(NaN, lo) = lo
    const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(t), zp);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm512_cvtusepi32_epi8(q));
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);  // masked-off lanes read 0, never NaN
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    __m512 t = _mm512_mul_ps(v, mul);
    t = _mm512_min_ps(_mm512_max_ps(t, lo), hi);
    const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(t), zp);
    _mm512_mask_cvtusepi32_storeu_epi8(y + i, m, q);
  }
  return nan != 0;
}

void qu8_f32_vcvt_ukernel__avx512(size_t n, const uint8_t* x, float* y, int32_t zp, float scale) {
  const __m512 s = _mm512_set1_ps(scale);
  const __m512i z = _mm512_set1_epi32(zp);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q, z)), s));
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512i q = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, x + i));
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q, z)), s));
  }
}

void qu8_vrequant_ukernel__avx512(size_t n, const uint8_t* x, uint8_t* y,
                                  const RequantizeParams& p) {
  const __m512 mul = _mm512_set1_ps(p.mul), lo = _mm512_set1_ps(p.lo), hi = _mm512_set1_ps(p.hi);
  const __m512i zi = _mm512_set1_epi32(p.in_zero_point), zo = _mm512_set1_epi32(p.out_zero_point);
  for (size_t i = 0; i < n; i += 16) {
    const size_t left = n - i;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xffff)
                                   : static_cast<__mmask16>((1u << left) - 1);
    const __m512i q = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, x + i));
    __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q, zi)), mul);
    t = _mm512_min_ps(_mm512_max_ps(t, lo), hi);
    _mm512_mask_cvtusepi32_storeu_epi8(y + i, m, _mm512_add_epi32(_mm512_cvtps_epi32(t), zo));
  }
}

void qu8_vchanmul_ukernel__avx512(size_t rows, size_t channels, const uint8_t* x,
                                  const float* mult, uint8_t* y, const RequantizeParams& p) {
  const __m512 lo = _mm512_set1_ps(p.lo), hi = _mm512_set1_ps(p.hi);
  const __m512i zi = _mm512_set1_epi32(p.in_zero_point), zo = _mm512_set1_epi32(p.out_zero_point);
  for (size_t r = 0; r < rows; ++r, x += channels, y += channels) {
    for (size_t c = 0; c < channels; c += 16) {
      const size_t left = channels - c;
      const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xffff)
                                     : static_cast<__mmask16>((1u << left) - 1);
      const __m512i q = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, x + c));
      __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q, zi)),
                               _mm512_maskz_loadu_ps(m, mult + c));
      t = _mm512_min_ps(_mm512_max_ps(t, lo), hi);  // max(NaN, lo) = lo
      _mm512_mask_cvtusepi32_storeu_epi8(y + c, m, _mm512_add_epi32(_mm512_cvtps_epi32(t), zo));
    }
  }
}

}  // namespace tfq8
