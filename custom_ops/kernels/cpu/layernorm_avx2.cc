// AVX2 INT8 layer norm; bit-identical to layernorm_ref.cc: the row sums are exact integers, the
// row multiplier comes from the shared LayerNormRowMultiplier, and every element sees the same
// three f32 operations (tails in scalar code with the same sequence).
#include <immintrin.h>

#include <cmath>

#include "custom_ops/kernels/cpu/layernorm.h"

namespace tfq8 {
namespace {

inline int64_t HorizontalSum64(__m256i v) {  // 4 × u64 lanes
  const __m128i s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  return _mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1);
}

inline int64_t HorizontalSum32(__m256i v) {  // 8 × non-negative int32 lanes, summed in int64
  const __m256i zero = _mm256_setzero_si256();
  return HorizontalSum64(_mm256_add_epi64(_mm256_unpacklo_epi32(v, zero),
                                          _mm256_unpackhi_epi32(v, zero)));
}

inline uint8_t Scalar(int32_t n, int32_t s1, uint8_t q, float a, float g, float b,
                      const LayerNormParams& p) {
  const float t = static_cast<float>(n * static_cast<int32_t>(q) - s1);
  float v = t * a;
  v = v * g;
  v = v + b;
  v = v >= p.lo ? v : p.lo;
  v = v <= p.hi ? v : p.hi;
  return static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(v)) + p.out_zero_point);
}

}  // namespace

void qu8_vlayernorm_ukernel__avx2(size_t rows, size_t channels, const uint8_t* x,
                                  const float* gamma, const float* beta_out, uint8_t* y,
                                  const LayerNormParams& p) {
  const int32_t n = static_cast<int32_t>(channels);
  const __m256 lo = _mm256_set1_ps(p.lo), hi = _mm256_set1_ps(p.hi);
  const __m256i zo = _mm256_set1_epi32(p.out_zero_point), nv = _mm256_set1_epi32(n);
  const __m256i zero = _mm256_setzero_si256();
  const size_t body32 = channels & ~size_t{31}, body8 = channels & ~size_t{7};
  for (size_t r = 0; r < rows; ++r, x += channels, y += channels) {
    // Σq with vpsadbw (u64 lanes); Σq² with vpmaddwd on u16 (int32 lanes: ≤ C/16 · 130050).
    __m256i sum = zero, sq = zero;
    for (size_t c = 0; c < body32; c += 32) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + c));
      sum = _mm256_add_epi64(sum, _mm256_sad_epu8(v, zero));
      const __m256i w0 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(v));
      const __m256i w1 = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(v, 1));
      sq = _mm256_add_epi32(sq, _mm256_add_epi32(_mm256_madd_epi16(w0, w0),
                                                 _mm256_madd_epi16(w1, w1)));
    }
    int64_t s1 = HorizontalSum64(sum), s2 = HorizontalSum32(sq);
    for (size_t c = body32; c < channels; ++c) {
      s1 += x[c];
      s2 += static_cast<int32_t>(x[c]) * x[c];
    }
    const float a = LayerNormRowMultiplier(n, s1, s2, p);
    const int32_t s1i = static_cast<int32_t>(s1);
    const __m256 av = _mm256_set1_ps(a);
    const __m256i s1v = _mm256_set1_epi32(s1i);
    for (size_t c = 0; c < body8; c += 8) {
      const __m256i q =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + c)));
      const __m256 t = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_mullo_epi32(q, nv), s1v));
      __m256 v = _mm256_mul_ps(t, av);
      v = _mm256_mul_ps(v, _mm256_loadu_ps(gamma + c));
      v = _mm256_add_ps(v, _mm256_loadu_ps(beta_out + c));
      v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);  // vmaxps returns lo for NaN in v
      const __m256i o = _mm256_add_epi32(_mm256_cvtps_epi32(v), zo);
      const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(o), _mm256_extracti128_si256(o, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(y + c), _mm_packus_epi16(w, w));
    }
    for (size_t c = body8; c < channels; ++c)
      y[c] = Scalar(n, s1i, x[c], a, gamma[c], beta_out[c], p);
  }
}

}  // namespace tfq8
