// AVX2 elementwise conversions; bit-identical to elementwise_ref.cc. Tails use the reference
// (same arithmetic), so every element sees the same operation sequence.
#include <immintrin.h>

#include "custom_ops/kernels/cpu/elementwise.h"

namespace tfq8 {
namespace {

// 8 int32 in [0, 255] → 8 bytes.
inline void Store8(uint8_t* y, __m256i q) {
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  const __m128i w = _mm_packus_epi32(lo, hi);
  _mm_storel_epi64(reinterpret_cast<__m128i*>(y), _mm_packus_epi16(w, w));
}

}  // namespace

void f32_qu8_vcvt_ukernel__avx2(size_t n, const float* x, uint8_t* y, const QuantizeParams& p) {
  const __m256 mul = _mm256_set1_ps(p.mul), lo = _mm256_set1_ps(p.lo), hi = _mm256_set1_ps(p.hi);
  const __m256i zp = _mm256_set1_epi32(p.zero_point);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 t = _mm256_mul_ps(_mm256_loadu_ps(x + i), mul);
    t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);  // vmaxps returns lo for NaN in t
    Store8(y + i, _mm256_add_epi32(_mm256_cvtps_epi32(t), zp));
  }
  f32_qu8_vcvt_ukernel__ref(n - i, x + i, y + i, p);
}

void qu8_f32_vcvt_ukernel__avx2(size_t n, const uint8_t* x, float* y, int32_t zp, float scale) {
  const __m256 s = _mm256_set1_ps(scale);
  const __m256i z = _mm256_set1_epi32(zp);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i q = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + i)));
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q, z)), s));
  }
  qu8_f32_vcvt_ukernel__ref(n - i, x + i, y + i, zp, scale);
}

void qu8_vrequant_ukernel__avx2(size_t n, const uint8_t* x, uint8_t* y, const RequantizeParams& p) {
  const __m256 mul = _mm256_set1_ps(p.mul), lo = _mm256_set1_ps(p.lo), hi = _mm256_set1_ps(p.hi);
  const __m256i zi = _mm256_set1_epi32(p.in_zero_point), zo = _mm256_set1_epi32(p.out_zero_point);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i q = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + i)));
    __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q, zi)), mul);
    t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);
    Store8(y + i, _mm256_add_epi32(_mm256_cvtps_epi32(t), zo));
  }
  qu8_vrequant_ukernel__ref(n - i, x + i, y + i, p);
}

void qu8_vchanmul_ukernel__avx2(size_t rows, size_t channels, const uint8_t* x, const float* mult,
                                uint8_t* y, const RequantizeParams& p) {
  const __m256 lo = _mm256_set1_ps(p.lo), hi = _mm256_set1_ps(p.hi);
  const __m256i zi = _mm256_set1_epi32(p.in_zero_point), zo = _mm256_set1_epi32(p.out_zero_point);
  const size_t body = channels & ~size_t{7};
  for (size_t r = 0; r < rows; ++r, x += channels, y += channels) {
    for (size_t c = 0; c < body; c += 8) {
      const __m256i q =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + c)));
      __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q, zi)),
                               _mm256_loadu_ps(mult + c));
      t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);  // vmaxps returns lo for NaN in t
      Store8(y + c, _mm256_add_epi32(_mm256_cvtps_epi32(t), zo));
    }
    if (body < channels)
      qu8_vchanmul_ukernel__ref(1, channels - body, x + body, mult + body, y + body, p);
  }
}

}  // namespace tfq8
