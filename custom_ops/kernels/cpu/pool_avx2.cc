// AVX2 pooling micro-kernels; bit-identical to pool_ref.cc (integer max; integer sums, the
// quotient by an exact f32 division, see kMaxF32AvgCount). Channel tails use the reference.
#include <immintrin.h>

#include "custom_ops/kernels/cpu/pool.h"

namespace tfq8 {

void qu8_maxpool_ukernel__avx2(size_t channels, size_t count, const uint8_t* const* in,
                               size_t offset, uint8_t* out) {
  size_t c = 0;
  for (; c + 32 <= channels; c += 32) {
    __m256i v = _mm256_setzero_si256();
    for (size_t i = 0; i < count; ++i) {
      v = _mm256_max_epu8(v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in[i] + offset + c)));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + c), v);
  }
  if (c < channels) qu8_maxpool_ukernel__ref(channels - c, count, in, offset + c, out + c);
}

void qu8_avgpool_ukernel__avx2(size_t channels, size_t count, const uint8_t* const* in,
                               size_t offset, uint8_t* out) {
  if (count > kMaxF32AvgCount) {
    qu8_avgpool_ukernel__ref(channels, count, in, offset, out);
    return;
  }
  const __m256 n = _mm256_set1_ps(static_cast<float>(count));
  const __m256i half = _mm256_set1_epi32(static_cast<int32_t>(count / 2));
  size_t c = 0;
  for (; c + 8 <= channels; c += 8) {
    __m256i sum = half;
    for (size_t i = 0; i < count; ++i) {
      const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(in[i] + offset + c));
      sum = _mm256_add_epi32(sum, _mm256_cvtepu8_epi32(b));
    }
    const __m256i q = _mm256_cvttps_epi32(_mm256_div_ps(_mm256_cvtepi32_ps(sum), n));
    const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out + c), _mm_packus_epi16(w, w));
  }
  if (c < channels) qu8_avgpool_ukernel__ref(channels - c, count, in, offset + c, out + c);
}

}  // namespace tfq8
