// qu8_igemm_minmax_fp32_ukernel_4x32c4__avxvnni: 4 output rows × 32 channels with the VEX
// vpdpbusd of AVX-VNNI (exact u8 × s8 → s32). The 32 channels are done as two halves of 16
// (8 ymm accumulators each) so the 16 ymm registers suffice.
#include <immintrin.h>

#include <cassert>
#include <cstring>

#include "custom_ops/kernels/cpu/qu8_gemm.h"
#include "custom_ops/kernels/cpu/qu8_gemm_epilogue_avx2.h"

namespace tfq8 {

void qu8_igemm_minmax_fp32_ukernel_4x32c4__avxvnni(size_t mr, size_t nc, size_t kc, size_t ks,
                                                   const uint8_t* const* a, const int8_t* w,
                                                   const int32_t* bias, const float* mul,
                                                   const float* badd, void* c, size_t c_stride,
                                                   const uint8_t* s, const QEpilogue& ep) {
  constexpr size_t MR = 4;
  assert(mr >= 1 && mr <= MR);
  assert(nc >= 1 && nc <= 32);
  assert(kc % 4 == 0);
  const size_t es = QOutElementSizeAvx2(ep);
  for (size_t half = 0; half * 16 < nc; ++half) {
    const size_t n0 = half * 16;
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + n0));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + n0 + 8));
    __m256i acc[MR][2];
#pragma GCC unroll 4
    for (size_t m = 0; m < MR; ++m) {
      acc[m][0] = b0;
      acc[m][1] = b1;
    }
    const int8_t* wp = w + n0 * 4;
    for (size_t t = 0; t < ks; ++t) {
      const uint8_t* const* ap = a + t * MR;
      const uint8_t* a0 = ap[0];
      const uint8_t* a1 = ap[1];
      const uint8_t* a2 = ap[2];
      const uint8_t* a3 = ap[3];
      for (size_t k = 0; k < kc; k += 4) {
        const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp));
        const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + 32));
        wp += 128;
#define TFQ8_ROW(M)                                          \
  {                                                           \
    int32_t v;                                                \
    std::memcpy(&v, a##M + k, 4);                             \
    const __m256i va = _mm256_set1_epi32(v);                  \
    acc[M][0] = _mm256_dpbusd_avx_epi32(acc[M][0], va, w0);   \
    acc[M][1] = _mm256_dpbusd_avx_epi32(acc[M][1], va, w1);   \
  }
        TFQ8_ROW(0) TFQ8_ROW(1) TFQ8_ROW(2) TFQ8_ROW(3)
#undef TFQ8_ROW
      }
    }
    const size_t left = nc - n0;
    for (size_t m = 0; m < mr; ++m) {
      char* cr = static_cast<char*>(c) + (m * c_stride + n0) * es;
      const uint8_t* sr = s ? s + m * c_stride + n0 : nullptr;
      Qu8EpilogueStore8Avx2(acc[m][0], left < 8 ? left : 8, mul + n0, badd + n0, sr, cr, ep);
      if (left > 8) {
        Qu8EpilogueStore8Avx2(acc[m][1], left - 8 < 8 ? left - 8 : 8, mul + n0 + 8,
                              badd + n0 + 8, sr ? sr + 8 : nullptr, cr + 8 * es, ep);
      }
    }
  }
}

}  // namespace tfq8
