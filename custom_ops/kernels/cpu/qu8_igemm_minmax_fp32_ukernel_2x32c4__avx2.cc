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


// qu8_igemm_minmax_fp32_ukernel_6x16c2s16__avx2: 6 output rows × 16 channels. Both operands are
// widened once, outside the K loop: the driver zero-extends the input to u16 (one pass per
// call) and the weights are packed as s16, [ks][kc/2][16 channels][2] (a k-pair per 32-bit
// lane). Per k-pair: 2 weight loads, and per row one vpbroadcastd of the row's two u16 values
// (a pure load) and 2 vpmaddwd (exact: |u16·s16 + u16·s16| < 2^31) + vpaddd. 12 accumulators,
// no horizontal reduction. The epilogue stores 16 channels at once when nc == 16.
namespace {

static inline void Qu8EpilogueStore16Avx2(__m256i v0, __m256i v1, const float* mul,
                                          const float* badd, const uint8_t* s, void* c,
                                          const QEpilogue& ep) {
  if (ep.out_type == QOutType::kS32) {
    _mm256_storeu_si256(static_cast<__m256i*>(c), v0);
    _mm256_storeu_si256(static_cast<__m256i*>(c) + 1, v1);
    return;
  }
  __m256 t0 = _mm256_mul_ps(_mm256_cvtepi32_ps(v0), _mm256_loadu_ps(mul));
  __m256 t1 = _mm256_mul_ps(_mm256_cvtepi32_ps(v1), _mm256_loadu_ps(mul + 8));
  t0 = _mm256_add_ps(t0, _mm256_loadu_ps(badd));
  t1 = _mm256_add_ps(t1, _mm256_loadu_ps(badd + 8));
  if (ep.has_summand) {
    const __m256i zs = _mm256_set1_epi32(ep.zp_summand);
    const __m256 ms = _mm256_set1_ps(ep.mul_s);
    const __m256i q0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s)));
    const __m256i q1 =
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s + 8)));
    t0 = _mm256_add_ps(t0, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q0, zs)), ms));
    t1 = _mm256_add_ps(t1, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q1, zs)), ms));
  }
  const __m256 lo = _mm256_set1_ps(ep.lo), hi = _mm256_set1_ps(ep.hi);
  t0 = _mm256_min_ps(_mm256_max_ps(t0, lo), hi);
  t1 = _mm256_min_ps(_mm256_max_ps(t1, lo), hi);
  if (ep.out_type == QOutType::kF32) {
    _mm256_storeu_ps(static_cast<float*>(c), t0);
    _mm256_storeu_ps(static_cast<float*>(c) + 8, t1);
    return;
  }
  const __m256i zo = _mm256_set1_epi32(ep.zp_out);
  const __m256i q0 = _mm256_add_epi32(_mm256_cvtps_epi32(t0), zo);
  const __m256i q1 = _mm256_add_epi32(_mm256_cvtps_epi32(t1), zo);
  // packus within 128-bit lanes: [q0 lo, q1 lo | q0 hi, q1 hi] → fix the order with vpermq.
  const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packus_epi32(q0, q1), 0xD8);
  const __m128i b8 = _mm_packus_epi16(_mm256_castsi256_si128(w16),
                                      _mm256_extracti128_si256(w16, 1));
  _mm_storeu_si128(static_cast<__m128i*>(c), b8);
}

// u8-output epilogue of one 16-channel tile, constants hoisted once per tile. Clamping commutes
// with any non-decreasing rounding, rne(min(max(t, lo), hi)) = max(rne(min(t, hi)), rne(lo))
// (lo ≤ hi), so only the upper bound is applied in f32 — as vminps(hi, t), which keeps a NaN t,
// and cvtps2dq turns NaN and every out-of-range t (only −∞ side can be left after the min) into
// INT_MIN — and the lower one as an s16 max after the saturating pack (rne(lo) ≥ −255 fits).
// Then + zp_out in s16 and vpackuswb (saturating to 0..255, the reference's final clamp).
// Bit-identical to EpilogueScalar; one f32 op and the s32 adds fewer than Qu8EpilogueStore16Avx2.
struct U8Tile {
  __m256 mul0, mul1, badd0, badd1, hi, mul_s;
  __m256i lo16, zp16, zps;
  bool summand;
  U8Tile(const float* mul, const float* badd, const QEpilogue& ep) {
    mul0 = _mm256_loadu_ps(mul);
    mul1 = _mm256_loadu_ps(mul + 8);
    badd0 = _mm256_loadu_ps(badd);
    badd1 = _mm256_loadu_ps(badd + 8);
    // Degenerate range (lo > hi): the reference returns hi for every t (NaN too).
    const float lo = ep.lo <= ep.hi ? ep.lo : ep.hi;
    hi = _mm256_set1_ps(ep.hi);
    lo16 = _mm256_set1_epi16(static_cast<int16_t>(_mm_cvtss_si32(_mm_set_ss(lo))));
    zp16 = _mm256_set1_epi16(static_cast<int16_t>(ep.zp_out));
    summand = ep.has_summand;
    mul_s = _mm256_set1_ps(ep.mul_s);
    zps = _mm256_set1_epi32(ep.zp_summand);
  }
  // One row's 16 accumulators → 16 s16 values (+zp), lanes [c0-3, c8-11 | c4-7, c12-15].
  inline __m256i Row(__m256i a0, __m256i a1, const uint8_t* s) const {
    __m256 t0 = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a0), mul0), badd0);
    __m256 t1 = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a1), mul1), badd1);
    if (summand) {
      const __m256i q0 =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s)));
      const __m256i q1 =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s + 8)));
      t0 = _mm256_add_ps(t0, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q0, zps)), mul_s));
      t1 = _mm256_add_ps(t1, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q1, zps)), mul_s));
    }
    t0 = _mm256_min_ps(hi, t0);
    t1 = _mm256_min_ps(hi, t1);
    __m256i q = _mm256_packs_epi32(_mm256_cvtps_epi32(t0), _mm256_cvtps_epi32(t1));
    q = _mm256_max_epi16(q, lo16);
    return _mm256_add_epi16(q, zp16);
  }
  // Two rows → bytes; row a in the low 128 bits, row b in the high, channel order restored.
  static inline __m256i Pack(__m256i qa, __m256i qb) {
    // packus per lane: dwords [a0-3, a8-11, b0-3, b8-11 | a4-7, a12-15, b4-7, b12-15].
    return _mm256_permutevar8x32_epi32(_mm256_packus_epi16(qa, qb),
                                       _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  }
};

inline void StoreRowU8(void* c, __m128i v, size_t nc) {
  if (nc == 16) {
    _mm_storeu_si128(static_cast<__m128i*>(c), v);
  } else {
    alignas(16) uint8_t buf[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(buf), v);
    std::memcpy(c, buf, nc);
  }
}

// Epilogue and store of a 6-row × 16-channel tile of s32 sums (bias included): rows past mr
// are computed (their a pointers repeat a valid row) but not stored.
__attribute__((always_inline)) inline void StoreTile6x16(const __m256i (&acc)[6][2], size_t mr,
                                                         size_t nc, const float* mul,
                                                         const float* badd, void* c,
                                                         size_t c_stride, const uint8_t* s,
                                                         const QEpilogue& ep) {
  constexpr size_t MR = 6;
  if (ep.out_type == QOutType::kU8) {
    const U8Tile u(mul, badd, ep);
    // The summand pointer of rows past mr is clamped to the last valid row.
    const uint8_t* s_rows[MR];
    for (size_t m = 0; m < MR; ++m) s_rows[m] = s ? s + (m < mr ? m : mr - 1) * c_stride : nullptr;
    char* c0 = static_cast<char*>(c);
    const __m256i p01 = U8Tile::Pack(u.Row(acc[0][0], acc[0][1], s_rows[0]),
                                      u.Row(acc[1][0], acc[1][1], s_rows[1]));
    StoreRowU8(c0, _mm256_castsi256_si128(p01), nc);
    if (mr > 1) StoreRowU8(c0 + c_stride, _mm256_extracti128_si256(p01, 1), nc);
    if (mr > 2) {
      const __m256i p23 = U8Tile::Pack(u.Row(acc[2][0], acc[2][1], s_rows[2]),
                                        u.Row(acc[3][0], acc[3][1], s_rows[3]));
      StoreRowU8(c0 + 2 * c_stride, _mm256_castsi256_si128(p23), nc);
      if (mr > 3) StoreRowU8(c0 + 3 * c_stride, _mm256_extracti128_si256(p23, 1), nc);
    }
    if (mr > 4) {
      const __m256i p45 = U8Tile::Pack(u.Row(acc[4][0], acc[4][1], s_rows[4]),
                                        u.Row(acc[5][0], acc[5][1], s_rows[5]));
      StoreRowU8(c0 + 4 * c_stride, _mm256_castsi256_si128(p45), nc);
      if (mr > 5) StoreRowU8(c0 + 5 * c_stride, _mm256_extracti128_si256(p45, 1), nc);
    }
    return;
  }
  const size_t es = QOutElementSizeAvx2(ep);
  for (size_t m = 0; m < mr; ++m) {
    char* cr = static_cast<char*>(c) + m * c_stride * es;
    const uint8_t* sr = s ? s + m * c_stride : nullptr;
    if (nc == 16) {
      Qu8EpilogueStore16Avx2(acc[m][0], acc[m][1], mul, badd, sr, cr, ep);
    } else {
      Qu8EpilogueStore8Avx2(acc[m][0], nc < 8 ? nc : 8, mul, badd, sr, cr, ep);
      if (nc > 8) {
        Qu8EpilogueStore8Avx2(acc[m][1], nc - 8, mul + 8, badd + 8, sr ? sr + 8 : nullptr,
                              cr + 8 * es, ep);
      }
    }
  }
}

}  // namespace

void qu8_igemm_minmax_fp32_ukernel_6x16c2s16__avx2(size_t mr, size_t nc, size_t kc, size_t ks,
                                                   const uint16_t* const* a, const int16_t* w,
                                                   const int32_t* bias, const float* mul,
                                                   const float* badd, void* c, size_t c_stride,
                                                   const uint8_t* s, const QEpilogue& ep) {
  constexpr size_t MR = 6;
  assert(mr >= 1 && mr <= MR);
  assert(nc >= 1 && nc <= 16);
  assert(kc % 2 == 0 && kc >= 2);
  __m256i c00 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias));
  __m256i c01 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + 8));
  __m256i c10 = c00, c11 = c01, c20 = c00, c21 = c01, c30 = c00, c31 = c01, c40 = c00,
          c41 = c01, c50 = c00, c51 = c01;
  const int16_t* wp = w;
  for (size_t t = 0; t < ks; ++t) {
    const uint16_t* a0 = a[0];
    const uint16_t* a1 = a[1];
    const uint16_t* a2 = a[2];
    const uint16_t* a3 = a[3];
    const uint16_t* a4 = a[4];
    const uint16_t* a5 = a[5];
    a += MR;
    const uint16_t* const a0_end = a0 + kc;
    while (a0 != a0_end) {
      const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp));
      const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + 16));
      wp += 32;
      int32_t v;
      __m256i x;
      std::memcpy(&v, a0, 4);
      x = _mm256_set1_epi32(v);
      c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(x, w0));
      c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(x, w1));
      std::memcpy(&v, a1, 4);
      x = _mm256_set1_epi32(v);
      c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(x, w0));
      c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(x, w1));
      std::memcpy(&v, a2, 4);
      x = _mm256_set1_epi32(v);
      c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(x, w0));
      c21 = _mm256_add_epi32(c21, _mm256_madd_epi16(x, w1));
      std::memcpy(&v, a3, 4);
      x = _mm256_set1_epi32(v);
      c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(x, w0));
      c31 = _mm256_add_epi32(c31, _mm256_madd_epi16(x, w1));
      std::memcpy(&v, a4, 4);
      x = _mm256_set1_epi32(v);
      c40 = _mm256_add_epi32(c40, _mm256_madd_epi16(x, w0));
      c41 = _mm256_add_epi32(c41, _mm256_madd_epi16(x, w1));
      std::memcpy(&v, a5, 4);
      x = _mm256_set1_epi32(v);
      c50 = _mm256_add_epi32(c50, _mm256_madd_epi16(x, w0));
      c51 = _mm256_add_epi32(c51, _mm256_madd_epi16(x, w1));
      a0 += 2; a1 += 2; a2 += 2; a3 += 2; a4 += 2; a5 += 2;
    }
  }
  StoreTile6x16({{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}}, mr, nc,
                mul, badd, c, c_stride, s, ep);
}


// qu8_igemm_minmax_fp32_ukernel_6x16c4__avx2: 6 output rows × 16 channels on the u8 input and
// the s8 c4 weights, for weights whose k-pairs cannot saturate vpmaddubsw (see qu8_gemm.h):
// per 4 input channels and row one vpbroadcastd of the row's 4 bytes, then per 8 channels
// vpmaddubsw (two exact s16 pair sums per channel) and vpmaddwd by 1 (their s32 sum) + vpaddd.
// 32 MACs per two multiplies: the formulation of MLAS's u8×s8 AVX2 kernel, exact here because
// PackConv checked the pairs. No widened copy of the input and half the weight bytes of the
// s16 kernel.
void qu8_igemm_minmax_fp32_ukernel_6x16c4__avx2(size_t mr, size_t nc, size_t kc, size_t ks,
                                                const uint8_t* const* a, const int8_t* w,
                                                const int32_t* bias, const float* mul,
                                                const float* badd, void* c, size_t c_stride,
                                                const uint8_t* s, const QEpilogue& ep) {
  constexpr size_t MR = kIgemmMrAvx2U8;
  assert(mr >= 1 && mr <= MR);
  assert(nc >= 1 && nc <= 16);
  assert(kc % 4 == 0 && kc >= 4);
  __m256i c00 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias));
  __m256i c01 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + 8));
  __m256i c10 = c00, c11 = c01, c20 = c00, c21 = c01, c30 = c00, c31 = c01, c40 = c00,
          c41 = c01, c50 = c00, c51 = c01;
  const __m256i ones = _mm256_set1_epi16(1);
  const int8_t* wp = w;
  for (size_t t = 0; t < ks; ++t) {
    const uint8_t* a0 = a[0];
    const uint8_t* a1 = a[1];
    const uint8_t* a2 = a[2];
    const uint8_t* a3 = a[3];
    const uint8_t* a4 = a[4];
    const uint8_t* a5 = a[5];
    a += MR;
    const uint8_t* const a0_end = a0 + kc;
    while (a0 != a0_end) {
      // One weight vector at a time, each row's 4 bytes broadcast twice (loads are cheap):
      // 12 accumulators + weights + row + product + ones fill the 16 registers exactly.
      int32_t v;
      __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp));
#define TFQ8_ROW(ap, acc)                                                             \
  std::memcpy(&v, ap, 4);                                                             \
  acc = _mm256_add_epi32(                                                             \
      acc, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi32(v), wv), ones));
      TFQ8_ROW(a0, c00)
      TFQ8_ROW(a1, c10)
      TFQ8_ROW(a2, c20)
      TFQ8_ROW(a3, c30)
      TFQ8_ROW(a4, c40)
      TFQ8_ROW(a5, c50)
      // Keeps the compiler from reusing the six broadcasts (6 more registers: spills).
      __asm__ volatile("" ::: "memory");
      wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + 32));
      TFQ8_ROW(a0, c01)
      TFQ8_ROW(a1, c11)
      TFQ8_ROW(a2, c21)
      TFQ8_ROW(a3, c31)
      TFQ8_ROW(a4, c41)
      TFQ8_ROW(a5, c51)
#undef TFQ8_ROW
      wp += 128;  // next 4 input channels: c4 rows hold 32 channels × 4 bytes
      a0 += 4; a1 += 4; a2 += 4; a3 += 4; a4 += 4; a5 += 4;
    }
  }
  StoreTile6x16({{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}}, mr, nc,
                mul, badd, c, c_stride, s, ep);
}

}  // namespace tfq8

namespace tfq8 {

void qu8_widen_u16__avx2(const uint8_t* x, size_t rows, size_t ic, size_t x_stride, uint16_t* y,
                         size_t kc, size_t y_stride) {
  for (size_t r = 0; r < rows; ++r, x += x_stride, y += y_stride) {
    size_t i = 0;
    for (; i + 16 <= ic; i += 16) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), _mm256_cvtepu8_epi16(v));
    }
    for (; i < ic; ++i) y[i] = x[i];
    for (; i < kc; ++i) y[i] = 0;
  }
}

}  // namespace tfq8

namespace tfq8 {

void qu8_im2col_u16__avx2(const uint8_t* x, const Im2colGeometry& g, uint16_t zp, int64_t px0,
                          int64_t count, uint16_t* y, int64_t kc) {
  const int64_t row_len = g.kw * g.ic;  // contiguous bytes of one kernel row (dil_w == 1)
  const int64_t chunks = (row_len + 15) / 16;
  const bool vector_rows = g.dil_w == 1 && row_len <= 32;
  int64_t n = px0 / (g.oh * g.ow), oy = px0 / g.ow % g.oh, ox = px0 % g.ow;
  for (int64_t r = 0; r < count; ++r, y += kc) {
    const int64_t ix0 = ox * g.stride_w - g.pad_left;
    const int64_t ix1 = ix0 + (g.kw - 1) * g.dil_w;
    const bool h_inside = ix0 >= 0 && ix1 < g.w;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t iy = oy * g.stride_h - g.pad_top + i * g.dil_h;
      uint16_t* dst = y + i * row_len;
      if (iy < 0 || iy >= g.h) {
        for (int64_t k = 0; k < row_len; ++k) dst[k] = zp;
        continue;
      }
      const uint8_t* src = x + ((n * g.h + iy) * g.w) * g.ic;
      if (vector_rows && h_inside) {
        const int64_t off = (src - x) + ix0 * g.ic;
        if (off + chunks * 16 <= g.input_bytes) {
          // Whole 16-byte chunks: the bytes past row_len land in the next kernel row (written
          // next) or past the window (zero weights).
          for (int64_t c = 0; c < chunks; ++c) {
            const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + off + 16 * c));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 16 * c), _mm256_cvtepu8_epi16(v));
          }
          continue;
        }
      }
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t ix = ix0 + j * g.dil_w;
        uint16_t* d = dst + j * g.ic;
        if (ix >= 0 && ix < g.w) {
          const uint8_t* sp = src + ix * g.ic;
          for (int64_t k = 0; k < g.ic; ++k) d[k] = sp[k];
        } else {
          for (int64_t k = 0; k < g.ic; ++k) d[k] = zp;
        }
      }
    }
    if (++ox == g.ow) {
      ox = 0;
      if (++oy == g.oh) oy = 0, ++n;
    }
  }
}

}  // namespace tfq8
