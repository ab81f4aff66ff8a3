// AVX512 pooling micro-kernels; bit-identical to pool_ref.cc (integer max; integer sums, the
// quotient by an exact f32 division, see kMaxF32AvgCount).
#include <immintrin.h>

#include "custom_ops/kernels/cpu/pool.h"

namespace tfq8 {

void qu8_maxpool_ukernel__avx512(size_t channels, size_t count, const uint8_t* const* in,
                                 size_t offset, uint8_t* out) {
  for (size_t c = 0; c < channels; c += 64) {
    const size_t left = channels - c;
    const __mmask64 m = left >= 64 ? ~0ull : ((1ull << left) - 1);
    __m512i v = _mm512_setzero_si512();
    for (size_t i = 0; i < count; ++i) {
      v = _mm512_max_epu8(v, _mm512_maskz_loadu_epi8(m, in[i] + offset + c));
    }
    _mm512_mask_storeu_epi8(out + c, m, v);
  }
}

void qu8_avgpool_ukernel__avx512(size_t channels, size_t count, const uint8_t* const* in,
                                 size_t offset, uint8_t* out) {
  if (count > kMaxF32AvgCount) {
    qu8_avgpool_ukernel__ref(channels, count, in, offset, out);
    return;
  }
  const __m512 n = _mm512_set1_ps(static_cast<float>(count));
  const __m512i half = _mm512_set1_epi32(static_cast<int32_t>(count / 2));
  for (size_t c = 0; c < channels; c += 16) {
    const size_t left = channels - c;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xffff)
                                   : static_cast<__mmask16>((1u << left) - 1);
    __m512i sum = half;
    for (size_t i = 0; i < count; ++i) {
      sum = _mm512_add_epi32(sum, _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, in[i] + offset + c)));
    }
    const __m512i q = _mm512_cvttps_epi32(_mm512_div_ps(_mm512_cvtepi32_ps(sum), n));
    _mm512_mask_cvtusepi32_storeu_epi8(out + c, m, q);
  }
}

}  // namespace tfq8
