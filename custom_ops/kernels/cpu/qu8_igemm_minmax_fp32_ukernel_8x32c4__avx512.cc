// qu8_igemm_minmax_fp32_ukernel_8x32c4__avx512vnni: 8 output rows × 32 channels, vpdpbusd
// (u8 × s8 → s32, 4 products per lane, no intermediate saturation). 16 zmm accumulators.
// (File suffix _avx512.cc selects the AVX512 + VNNI compile flags in setup.py.)
#include <immintrin.h>

#include <cassert>
#include <cstring>

#include "custom_ops/kernels/cpu/qu8_gemm.h"
#include "custom_ops/kernels/cpu/qu8_gemm_epilogue_avx512.h"

namespace tfq8 {

void qu8_igemm_minmax_fp32_ukernel_8x32c4__avx512vnni(size_t mr, size_t nc, size_t kc, size_t ks,
                                                      const uint8_t* const* a, const int8_t* w,
                                                      const int32_t* bias, const float* mul,
                                                      const float* badd, void* c,
                                                      size_t c_stride, const uint8_t* s,
                                                      const QEpilogue& ep) {
  constexpr size_t MR = 8;
  assert(mr >= 1 && mr <= MR);
  assert(nc >= 1 && nc <= 32);
  assert(kc % 4 == 0);
  const __m512i b0 = _mm512_loadu_si512(bias), b1 = _mm512_loadu_si512(bias + 16);
  __m512i acc0[MR], acc1[MR];
#pragma GCC unroll 8
  for (size_t m = 0; m < MR; ++m) {
    acc0[m] = b0;
    acc1[m] = b1;
  }
  for (size_t t = 0; t < ks; ++t) {
    const uint8_t* const* ap = a + t * MR;
    const uint8_t* a0 = ap[0];
    const uint8_t* a1 = ap[1];
    const uint8_t* a2 = ap[2];
    const uint8_t* a3 = ap[3];
    const uint8_t* a4 = ap[4];
    const uint8_t* a5 = ap[5];
    const uint8_t* a6 = ap[6];
    const uint8_t* a7 = ap[7];
    for (size_t k = 0; k < kc; k += 4) {
      const __m512i w0 = _mm512_loadu_si512(w);
      const __m512i w1 = _mm512_loadu_si512(w + 64);
      w += 128;
#define TFQ8_ROW(M)                                                    \
  {                                                                     \
    int32_t v;                                                          \
    std::memcpy(&v, a##M + k, 4);                                       \
    const __m512i va = _mm512_set1_epi32(v);                            \
    acc0[M] = _mm512_dpbusd_epi32(acc0[M], va, w0);                     \
    acc1[M] = _mm512_dpbusd_epi32(acc1[M], va, w1);                     \
  }
      TFQ8_ROW(0) TFQ8_ROW(1) TFQ8_ROW(2) TFQ8_ROW(3)
      TFQ8_ROW(4) TFQ8_ROW(5) TFQ8_ROW(6) TFQ8_ROW(7)
#undef TFQ8_ROW
    }
  }
  const size_t es = QOutElementSize(ep);
  const __mmask16 m0 = QMask16(nc), m1 = QMask16(nc > 16 ? nc - 16 : 0);
#pragma GCC unroll 8
  for (size_t m = 0; m < MR; ++m) {
    if (m >= mr) break;
    char* cr = static_cast<char*>(c) + m * c_stride * es;
    const uint8_t* sr = s ? s + m * c_stride : nullptr;
    Qu8EpilogueStore16Avx512(acc0[m], m0, mul, badd, sr, cr, ep);
    if (nc > 16) {
      Qu8EpilogueStore16Avx512(acc1[m], m1, mul + 16, badd + 16, sr ? sr + 16 : nullptr,
                               cr + 16 * es, ep);
    }
  }
}

}  // namespace tfq8
