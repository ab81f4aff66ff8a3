// The fused epilogue of the INT8 conv/matmul micro-kernels for 8 channels of one output row,
// AVX2. Included only by files compiled with AVX2 flags (*_avx2.cc, *_avxvnni.cc). Same
// operation order as the scalar reference (conv2d.cc, EpilogueScalar).
#ifndef TFQ8_KERNELS_CPU_QU8_GEMM_EPILOGUE_AVX2_H_
#define TFQ8_KERNELS_CPU_QU8_GEMM_EPILOGUE_AVX2_H_

#include <immintrin.h>

#include <cstring>

#include "custom_ops/kernels/cpu/qu8_gemm.h"

namespace tfq8 {

// acc: 8 int32 accumulators (bias included) of channels [n, n+8); stores the first cnt ≤ 8.
static inline void Qu8EpilogueStore8Avx2(__m256i acc, size_t cnt, const float* mul,
                                         const float* badd, const uint8_t* s, void* c,
                                         const QEpilogue& ep) {
  if (ep.out_type == QOutType::kS32) {
    if (cnt == 8) {
      _mm256_storeu_si256(static_cast<__m256i*>(c), acc);
    } else {
      alignas(32) int32_t tmp[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(tmp), acc);
      std::memcpy(c, tmp, cnt * 4);
    }
    return;
  }
  __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_loadu_ps(mul));
  t = _mm256_add_ps(t, _mm256_loadu_ps(badd));
  if (ep.has_summand) {
    int64_t sv = 0;
    std::memcpy(&sv, s, cnt);
    const __m256i q = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(sv));
    const __m256 u = _mm256_cvtepi32_ps(_mm256_sub_epi32(q, _mm256_set1_epi32(ep.zp_summand)));
    t = _mm256_add_ps(t, _mm256_mul_ps(u, _mm256_set1_ps(ep.mul_s)));
  }
  t = _mm256_max_ps(t, _mm256_set1_ps(ep.lo));
  t = _mm256_min_ps(t, _mm256_set1_ps(ep.hi));
  if (ep.out_type == QOutType::kF32) {
    if (cnt == 8) {
      _mm256_storeu_ps(static_cast<float*>(c), t);
    } else {
      alignas(32) float tmp[8];
      _mm256_store_ps(tmp, t);
      std::memcpy(c, tmp, cnt * 4);
    }
    return;
  }
  const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(t), _mm256_set1_epi32(ep.zp_out));
  const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
  const __m128i b8 = _mm_packus_epi16(w16, w16);
  const int64_t bytes = _mm_cvtsi128_si64(b8);
  std::memcpy(c, &bytes, cnt);
}

static inline size_t QOutElementSizeAvx2(const QEpilogue& ep) {
  return ep.out_type == QOutType::kU8 ? 1 : 4;
}

}  // namespace tfq8

#endif  // TFQ8_KERNELS_CPU_QU8_GEMM_EPILOGUE_AVX2_H_
