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

bool f32_qu8_vcvt_ukernel__avx2(size_t n, const float* x, uint8_t* y, const QuantizeParams& p) {
  const __m256 mul = _mm256_set1_ps(p.mul), lo = _mm256_set1_ps(p.lo), hi = _mm256_set1_ps(p.hi);
  const __m256i zp = _mm256_set1_epi32(p.zero_point);
  __m256 nan = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    __m256 t = _mm256_mul_ps(v, mul);
    t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);  // vmaxps returns lo for NaN in t
    Store8(y + i, _mm256_add_epi32(_mm256_cvtps_epi32(t), zp));
  }
  const bool tail_nan = f32_qu8_vcvt_ukernel__ref(n - i, x + i, y + i, p);
  return tail_nan || _mm256_movemask_ps(nan) != 0;
}

bool f32_qu8_vcvt_channels_ukernel__avx2(size_t n, size_t phase, const float* x, uint8_t* y,
                                         const QuantizeChannelsParams& p) {
  const __m256 lo = _mm256_set1_ps(p.lo), hi = _mm256_set1_ps(p.hi);
  const __m256i zp = _mm256_set1_epi32(p.zero_point);
  const size_t period = static_cast<size_t>(p.period);
  size_t j = phase % period;  // < period, so [j, j + 8) lies inside the doubled pattern
  __m256 nan = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    __m256 t = _mm256_mul_ps(v, _mm256_loadu_ps(p.mul.data() + j));
    t = _mm256_add_ps(t, _mm256_loadu_ps(p.add.data() + j));  // no FMA: the reference rounds twice
    t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);
    Store8(y + i, _mm256_add_epi32(_mm256_cvtps_epi32(t), zp));
    j += 8;
    if (j >= period) j -= period;
  }
  const bool tail_nan = f32_qu8_vcvt_channels_ukernel__ref(n - i, j, x + i, y + i, p);
  return tail_nan || _mm256_movemask_ps(nan) != 0;
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

void qu8_vprelu_ukernel__avx2(size_t rows, size_t channels, const uint8_t* x,
                              const float* pos, const float* neg, const float* add, uint8_t* y,
                              const RequantizeParams& p) {
  const __m256 lo = _mm256_set1_ps(p.lo), hi = _mm256_set1_ps(p.hi);
  const __m256i zi = _mm256_set1_epi32(p.in_zero_point), zo = _mm256_set1_epi32(p.out_zero_point);
  const __m256i minus1 = _mm256_set1_epi32(-1);
  const size_t body = channels & ~size_t{7};
  for (size_t r = 0; r < rows; ++r, x += channels, y += channels) {
    for (size_t c = 0; c < body; c += 8) {
      const __m256i d = _mm256_sub_epi32(
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + c))), zi);
      const __m256 nonneg = _mm256_castsi256_ps(_mm256_cmpgt_epi32(d, minus1));
      const __m256 mult = _mm256_blendv_ps(_mm256_loadu_ps(neg + c),
                                           _mm256_loadu_ps(pos + c), nonneg);
      __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(d), mult);
      t = _mm256_add_ps(t, _mm256_loadu_ps(add + c));
      t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);
      Store8(y + c, _mm256_add_epi32(_mm256_cvtps_epi32(t), zo));
    }
    if (body < channels)
      qu8_vprelu_ukernel__ref(1, channels - body, x + body, pos + body, neg + body, add + body,
                              y + body, p);
  }
}

void qu8_vlut_ukernel__avx2(size_t n, const uint8_t* x, uint8_t* y, const uint8_t* table) {
  // Row r of the table (entries 16r..16r+15) in both lanes, and r in the high nibble. For row
  // r, x ^ (r << 4) has high nibble 0 exactly for the bytes that row serves; adding 0x70 with
  // unsigned saturation leaves those at 0x70..0x7F (bit 7 clear, low nibble = x's) and sets
  // bit 7 of every other byte, which vpshufb turns into 0. The 16 rows' results are OR-ed.
  __m256i rows[16], keys[16];
  for (int r = 0; r < 16; ++r) {
    rows[r] = _mm256_broadcastsi128_si256(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(table + 16 * r)));
    keys[r] = _mm256_set1_epi8(static_cast<char>(r << 4));
  }
  const __m256i c70 = _mm256_set1_epi8(0x70);
  auto lookup = [&](__m256i v, int r) {
    return _mm256_shuffle_epi8(rows[r], _mm256_adds_epu8(_mm256_xor_si256(v, keys[r]), c70));
  };
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {  // two vectors, four independent OR chains
    const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 32));
    __m256i a0 = lookup(v0, 0), b0 = lookup(v0, 1), a1 = lookup(v1, 0), b1 = lookup(v1, 1);
    for (int r = 2; r < 16; r += 2) {
      a0 = _mm256_or_si256(a0, lookup(v0, r));
      b0 = _mm256_or_si256(b0, lookup(v0, r + 1));
      a1 = _mm256_or_si256(a1, lookup(v1, r));
      b1 = _mm256_or_si256(b1, lookup(v1, r + 1));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), _mm256_or_si256(a0, b0));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i + 32), _mm256_or_si256(a1, b1));
  }
  for (; i + 32 <= n; i += 32) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    __m256i a = lookup(v, 0);
    for (int r = 1; r < 16; ++r) a = _mm256_or_si256(a, lookup(v, r));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), a);
  }
  qu8_vlut_ukernel__ref(n - i, x + i, y + i, table);
}

}  // namespace tfq8
