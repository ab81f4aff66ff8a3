// AVX2 Add and Mul micro-kernels; bit-identical to add_ref.cc. Tails use the reference.
#include <immintrin.h>

#include "custom_ops/kernels/cpu/add.h"

namespace tfq8 {

void qu8_vadd_minmax_ukernel__avx2(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y,
                                   const AddParams& p) {
  const __m256 am = _mm256_set1_ps(p.a_mul), bm = _mm256_set1_ps(p.b_mul);
  const __m256 lo = _mm256_set1_ps(p.lo), hi = _mm256_set1_ps(p.hi);
  const __m256i az = _mm256_set1_epi32(p.a_zero_point), bz = _mm256_set1_epi32(p.b_zero_point),
                oz = _mm256_set1_epi32(p.out_zero_point);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i qa = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(a + i)));
    const __m256i qb = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + i)));
    __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(qa, az)), am);
    const __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(qb, bz)), bm);
    t = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(t, u), lo), hi);
    const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(t), oz);
    const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(y + i), _mm_packus_epi16(w, w));
  }
  if (i < n) qu8_vadd_minmax_ukernel__ref(n - i, a + i, b + i, y + i, p);
}

void qu8_vmul_minmax_ukernel__avx2(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y,
                                   const AddParams& p) {
  const __m256 m = _mm256_set1_ps(p.a_mul);
  const __m256 lo = _mm256_set1_ps(p.lo), hi = _mm256_set1_ps(p.hi);
  const __m256i az = _mm256_set1_epi32(p.a_zero_point), bz = _mm256_set1_epi32(p.b_zero_point),
                oz = _mm256_set1_epi32(p.out_zero_point);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i qa = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(a + i)));
    const __m256i qb = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + i)));
    const __m256i prod = _mm256_mullo_epi32(_mm256_sub_epi32(qa, az), _mm256_sub_epi32(qb, bz));
    __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(prod), m);
    t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);
    const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(t), oz);
    const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(y + i), _mm_packus_epi16(w, w));
  }
  if (i < n) qu8_vmul_minmax_ukernel__ref(n - i, a + i, b + i, y + i, p);
}

}  // namespace tfq8
