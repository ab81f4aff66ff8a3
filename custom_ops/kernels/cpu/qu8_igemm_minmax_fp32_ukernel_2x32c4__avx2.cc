// qu8_igemm_minmax_fp32_ukernel_2x32c4__avx2: 2 output rows × 32 channels on AVX2 without
// VNNI. vpmaddubsw would saturate its s16 pair sums (255·127·2 > 32767), so both operands are
// widened to s16 (vpmovzxbw / vpmovsxbw) and multiplied with vpmaddwd, which is exact. Each
// accumulator holds, per channel, two partial sums (inputs 0+1 and 2+3 of each group of 4);
// they are combined with vphaddd at the end (integer adds: exact, order-independent).
#include <immintrin.h>

#include <cassert>
#include <cstring>

#include "custom_ops/kernels/cpu/qu8_gemm.h"
#include "custom_ops/kernels/cpu/qu8_gemm_epilogue_avx2.h"

namespace tfq8 {

void qu8_igemm_minmax_fp32_ukernel_2x32c4__avx2(size_t mr, size_t nc, size_t kc, size_t ks,
                                                const uint8_t* const* a, const int8_t* w,
                                                const int32_t* bias, const float* mul,
                                                const float* badd, void* c, size_t c_stride,
                                                const uint8_t* s, const QEpilogue& ep) {
  constexpr size_t MR = 2;
  assert(mr >= 1 && mr <= MR);
  assert(nc >= 1 && nc <= 32);
  assert(kc % 4 == 0);
  const size_t es = QOutElementSizeAvx2(ep);
  for (size_t half = 0; half * 16 < nc; ++half) {
    const size_t n0 = half * 16;
    // acc[m][j]: channels n0+4j .. n0+4j+3, two pair sums each.
    __m256i acc[MR][4];
#pragma GCC unroll 2
    for (size_t m = 0; m < MR; ++m)
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) acc[m][j] = _mm256_setzero_si256();
    const int8_t* wp = w + n0 * 4;
    for (size_t t = 0; t < ks; ++t) {
      const uint8_t* a0 = a[t * MR + 0];
      const uint8_t* a1 = a[t * MR + 1];
      for (size_t k = 0; k < kc; k += 4) {
        __m256i wv[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
          wv[j] = _mm256_cvtepi8_epi16(
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(wp + 16 * j)));
        }
        wp += 128;
        int32_t v0, v1;
        std::memcpy(&v0, a0 + k, 4);
        std::memcpy(&v1, a1 + k, 4);
        const __m256i x0 = _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128(v0)));
        const __m256i x1 = _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128(v1)));
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
          acc[0][j] = _mm256_add_epi32(acc[0][j], _mm256_madd_epi16(wv[j], x0));
          acc[1][j] = _mm256_add_epi32(acc[1][j], _mm256_madd_epi16(wv[j], x1));
        }
      }
    }
    const size_t left = nc - n0;
    for (size_t m = 0; m < mr; ++m) {
      // hadd(p0, p1) = channels [0,1,4,5 | 2,3,6,7]; permute qwords 0,2,1,3 → 0..7.
      __m256i lo = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[m][0], acc[m][1]), 0xD8);
      __m256i hi = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[m][2], acc[m][3]), 0xD8);
      lo = _mm256_add_epi32(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + n0)));
      hi = _mm256_add_epi32(hi,
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + n0 + 8)));
      char* cr = static_cast<char*>(c) + (m * c_stride + n0) * es;
      const uint8_t* sr = s ? s + m * c_stride + n0 : nullptr;
      Qu8EpilogueStore8Avx2(lo, left < 8 ? left : 8, mul + n0, badd + n0, sr, cr, ep);
      if (left > 8) {
        Qu8EpilogueStore8Avx2(hi, left - 8 < 8 ? left - 8 : 8, mul + n0 + 8, badd + n0 + 8,
                              sr ? sr + 8 : nullptr, cr + 8 * es, ep);
      }
    }
  }
}

}  // namespace tfq8
