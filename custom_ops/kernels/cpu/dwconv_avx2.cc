// AVX2 depthwise micro-kernel, M = 1: 32 channels per block, 2 taps per vpmaddwd (u8 widened to
// s16, so no vpmaddubsw saturation). Bit-identical to qu8_dwconv_ref (exact int32 accumulation,
// same f32 operation order). Channel order in the accumulators and packed constants: register j,
// lane k, element e holds channel 16k+4j+e (as the AVX512 kernel). A partial last block is
// loaded by Load32 (AVX2 has no byte-masked loads).
#include <immintrin.h>

#include <algorithm>
#include <cassert>
#include <cstring>

#include "custom_ops/kernels/cpu/dwconv.h"

namespace tfq8 {
namespace {

// Loads min(left, 32) bytes, zero-filling the rest, never reading past x + left. A 16-byte
// half is loaded directly (no store-to-load forwarding stall); only the bytes past a multiple of
// 16 go through a stack copy.
inline __m256i Load32(const uint8_t* x, size_t left) {
  if (left >= 32) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  if (left >= 16) {
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x));
    if (left == 16) return _mm256_zextsi128_si256(lo);
    alignas(16) uint8_t buf[16] = {0};
    std::memcpy(buf, x + 16, left - 16);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo),
                                   _mm_load_si128(reinterpret_cast<const __m128i*>(buf)), 1);
  }
  alignas(32) uint8_t buf[32] = {0};
  std::memcpy(buf, x, left);
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(buf));
}

// 3×3 (9 taps), C a multiple of 16, u8 output, no summand (every MobileNetV2 depthwise layer):
// the tap loop fully unrolled, no partial-block byte copies (a last block of 16 channels uses
// 16-byte loads and store), and the u8 epilogue of the conv kernels: clamping commutes with
// rne, so only hi is applied in f32 (vminps(hi, t) keeps NaN, which cvtps2dq turns into INT_MIN
// like any out-of-range t) and lo as an s16 max after the saturating pack; + zp_out in s16;
// vpackuswb saturates as the reference's final clamp.
struct Dw9Consts {
  __m256 hi;
  __m256i lo16, zp16;
};

template <bool kHalf>
inline __m256i LoadC(const uint8_t* x) {
  if (kHalf) return _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x)));
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
}

template <bool kHalf>
inline void Dw9Block(const uint8_t* const* in, size_t c, const uint8_t* blk, const Dw9Consts& k,
                     uint8_t* y) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i* b = reinterpret_cast<const __m256i*>(blk);
  __m256i acc0 = _mm256_load_si256(b), acc1 = _mm256_load_si256(b + 1),
          acc2 = _mm256_load_si256(b + 2), acc3 = _mm256_load_si256(b + 3);
  const __m256i* wg = reinterpret_cast<const __m256i*>(blk + 12 * 32);
  for (int t = 0; t < 8; t += 2, wg += 4) {
    const __m256i x0 = LoadC<kHalf>(in[t] + c);
    const __m256i x1 = LoadC<kHalf>(in[t + 1] + c);
    const __m256i u_lo = _mm256_unpacklo_epi8(x0, x1), u_hi = _mm256_unpackhi_epi8(x0, x1);
    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(_mm256_unpacklo_epi8(u_lo, zero),
                                                    _mm256_load_si256(wg)));
    acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(_mm256_unpackhi_epi8(u_lo, zero),
                                                    _mm256_load_si256(wg + 1)));
    acc2 = _mm256_add_epi32(acc2, _mm256_madd_epi16(_mm256_unpacklo_epi8(u_hi, zero),
                                                    _mm256_load_si256(wg + 2)));
    acc3 = _mm256_add_epi32(acc3, _mm256_madd_epi16(_mm256_unpackhi_epi8(u_hi, zero),
                                                    _mm256_load_si256(wg + 3)));
  }
  {
    // Tap 8 alone: (x, 0) pairs; its packed partner weight is 0.
    const __m256i x0 = LoadC<kHalf>(in[8] + c);
    const __m256i u_lo = _mm256_unpacklo_epi8(x0, zero), u_hi = _mm256_unpackhi_epi8(x0, zero);
    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(_mm256_unpacklo_epi16(u_lo, zero),
                                                    _mm256_load_si256(wg)));
    acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(_mm256_unpackhi_epi16(u_lo, zero),
                                                    _mm256_load_si256(wg + 1)));
    acc2 = _mm256_add_epi32(acc2, _mm256_madd_epi16(_mm256_unpacklo_epi16(u_hi, zero),
                                                    _mm256_load_si256(wg + 2)));
    acc3 = _mm256_add_epi32(acc3, _mm256_madd_epi16(_mm256_unpackhi_epi16(u_hi, zero),
                                                    _mm256_load_si256(wg + 3)));
  }
  const float* mul = reinterpret_cast<const float*>(blk + 4 * 32);
  const float* badd = reinterpret_cast<const float*>(blk + 8 * 32);
  __m256 f0 = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc0), _mm256_load_ps(mul)),
                            _mm256_load_ps(badd));
  __m256 f1 = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc1), _mm256_load_ps(mul + 8)),
                            _mm256_load_ps(badd + 8));
  __m256 f2 = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc2), _mm256_load_ps(mul + 16)),
                            _mm256_load_ps(badd + 16));
  __m256 f3 = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc3), _mm256_load_ps(mul + 24)),
                            _mm256_load_ps(badd + 24));
  f0 = _mm256_min_ps(k.hi, f0);
  f1 = _mm256_min_ps(k.hi, f1);
  f2 = _mm256_min_ps(k.hi, f2);
  f3 = _mm256_min_ps(k.hi, f3);
  // Same lane structure as the general path (packus32 then packus16 give natural order).
  __m256i q01 = _mm256_packs_epi32(_mm256_cvtps_epi32(f0), _mm256_cvtps_epi32(f1));
  __m256i q23 = _mm256_packs_epi32(_mm256_cvtps_epi32(f2), _mm256_cvtps_epi32(f3));
  q01 = _mm256_add_epi16(_mm256_max_epi16(q01, k.lo16), k.zp16);
  q23 = _mm256_add_epi16(_mm256_max_epi16(q23, k.lo16), k.zp16);
  const __m256i q = _mm256_packus_epi16(q01, q23);
  if (kHalf) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y), _mm256_castsi256_si128(q));
  } else {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), q);
  }
}

// Pixel px reads taps in[9·px·advance + t] + px·step: indirection (advance 1, step 0), or the
// 9 pointers of the first pixel moved by a fixed byte step (advance 0).
void DwConv9U8(size_t channels, size_t pixels, const uint8_t* const* input, size_t advance,
               size_t step, const void* packed, const DwMicroParams& p, void* output) {
  constexpr size_t kBlockBytes = 12 * 32 + 5 * 128;
  const float lo_f = p.lo <= p.hi ? p.lo : p.hi;  // lo > hi: the reference gives hi
  Dw9Consts k;
  k.hi = _mm256_set1_ps(p.hi);
  k.lo16 = _mm256_set1_epi16(static_cast<int16_t>(_mm_cvtss_si32(_mm_set_ss(lo_f))));
  k.zp16 = _mm256_set1_epi16(static_cast<int16_t>(p.zp_out));
  const size_t full = channels / 32 * 32;
  uint8_t* y = static_cast<uint8_t*>(output);
  for (size_t px = 0; px < pixels; ++px, y += channels) {
    const uint8_t* const* src = input + px * 9 * advance;
    const size_t off = px * step;
    const uint8_t* in[9];
    for (int t = 0; t < 9; ++t) in[t] = src[t] + off;
    const uint8_t* blk = static_cast<const uint8_t*>(packed);
    size_t c = 0;
    for (; c < full; c += 32, blk += kBlockBytes) Dw9Block<false>(in, c, blk, k, y + c);
    if (c < channels) Dw9Block<true>(in, c, blk, k, y + c);
  }
}

}  // namespace

void qu8_dwconv_minmax_fp32_ukernel_c32__avx2(size_t channels, size_t pixels, size_t taps,
                                              const uint8_t* const* input, const void* packed,
                                              const DwMicroParams& p, const uint8_t* summand,
                                              void* output) {
  assert(taps >= 1);
  if (taps == 9 && channels % 16 == 0 && p.out_type == DwOutType::kU8 && summand == nullptr) {
    DwConv9U8(channels, pixels, input, 1, 0, packed, p, output);
    return;
  }
  const size_t groups = (taps + 1) / 2;
  const size_t block_bytes = 12 * 32 + groups * 128;
  const __m256 lo = _mm256_set1_ps(p.lo), hi = _mm256_set1_ps(p.hi),
               mul_s = _mm256_set1_ps(p.mul_s);
  const __m256i zps = _mm256_set1_epi32(p.zp_summand), zpo = _mm256_set1_epi32(p.zp_out);
  const __m256i zero = _mm256_setzero_si256();
  const size_t last = taps - 1;
  for (size_t px = 0; px < pixels; ++px) {
    const uint8_t* const* in = input + px * taps;
    const uint8_t* blk = static_cast<const uint8_t*>(packed);
    for (size_t c = 0; c < channels; c += 32, blk += block_bytes) {
      const size_t left = channels - c;
      const int32_t* bias = reinterpret_cast<const int32_t*>(blk);
      const __m256i* b = reinterpret_cast<const __m256i*>(bias);
      __m256i acc0 = _mm256_load_si256(b), acc1 = _mm256_load_si256(b + 1),
              acc2 = _mm256_load_si256(b + 2), acc3 = _mm256_load_si256(b + 3);
      const __m256i* wg = reinterpret_cast<const __m256i*>(blk + 12 * 32);
      for (size_t t = 0; t < taps; t += 2, wg += 4) {
        const __m256i x0 = Load32(in[t] + c, left);
        const __m256i x1 = Load32(in[std::min(t + 1, last)] + c, left);
        const __m256i u_lo = _mm256_unpacklo_epi8(x0, x1), u_hi = _mm256_unpackhi_epi8(x0, x1);
        acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(_mm256_unpacklo_epi8(u_lo, zero),
                                                        _mm256_load_si256(wg)));
        acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(_mm256_unpackhi_epi8(u_lo, zero),
                                                        _mm256_load_si256(wg + 1)));
        acc2 = _mm256_add_epi32(acc2, _mm256_madd_epi16(_mm256_unpacklo_epi8(u_hi, zero),
                                                        _mm256_load_si256(wg + 2)));
        acc3 = _mm256_add_epi32(acc3, _mm256_madd_epi16(_mm256_unpackhi_epi8(u_hi, zero),
                                                        _mm256_load_si256(wg + 3)));
      }
      const size_t pix = px * channels + c;
      if (p.out_type == DwOutType::kS32 || p.out_type == DwOutType::kF32) {
        __m256i v0 = acc0, v1 = acc1, v2 = acc2, v3 = acc3;
        if (p.out_type == DwOutType::kF32) {
          const float* mul = reinterpret_cast<const float*>(blk + 4 * 32);
          const float* badd = reinterpret_cast<const float*>(blk + 8 * 32);
          __m256 f[4];
          const __m256i a[4] = {acc0, acc1, acc2, acc3};
          __m256i s[4];
          if (summand != nullptr) {
            const __m256i sv = Load32(summand + pix, left);
            const __m256i s_lo = _mm256_unpacklo_epi8(sv, zero), s_hi = _mm256_unpackhi_epi8(sv, zero);
            s[0] = _mm256_unpacklo_epi16(s_lo, zero);
            s[1] = _mm256_unpackhi_epi16(s_lo, zero);
            s[2] = _mm256_unpacklo_epi16(s_hi, zero);
            s[3] = _mm256_unpackhi_epi16(s_hi, zero);
          }
          for (int j = 0; j < 4; ++j) {
            f[j] = _mm256_mul_ps(_mm256_cvtepi32_ps(a[j]), _mm256_load_ps(mul + 8 * j));
            f[j] = _mm256_add_ps(f[j], _mm256_load_ps(badd + 8 * j));
            if (summand != nullptr) {
              f[j] = _mm256_add_ps(
                  f[j], _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s[j], zps)), mul_s));
            }
            f[j] = _mm256_min_ps(_mm256_max_ps(f[j], lo), hi);
          }
          v0 = _mm256_castps_si256(f[0]);
          v1 = _mm256_castps_si256(f[1]);
          v2 = _mm256_castps_si256(f[2]);
          v3 = _mm256_castps_si256(f[3]);
        }
        alignas(32) int32_t buf[32];
        _mm256_store_si256(reinterpret_cast<__m256i*>(buf), _mm256_permute2x128_si256(v0, v1, 0x20));
        _mm256_store_si256(reinterpret_cast<__m256i*>(buf + 8), _mm256_permute2x128_si256(v2, v3, 0x20));
        _mm256_store_si256(reinterpret_cast<__m256i*>(buf + 16), _mm256_permute2x128_si256(v0, v1, 0x31));
        _mm256_store_si256(reinterpret_cast<__m256i*>(buf + 24), _mm256_permute2x128_si256(v2, v3, 0x31));
        std::memcpy(static_cast<int32_t*>(output) + pix, buf, std::min<size_t>(left, 32) * 4);
        continue;
      }
      const float* mul = reinterpret_cast<const float*>(blk + 4 * 32);
      const float* badd = reinterpret_cast<const float*>(blk + 8 * 32);
      __m256 f0 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc0), _mm256_load_ps(mul));
      __m256 f1 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc1), _mm256_load_ps(mul + 8));
      __m256 f2 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc2), _mm256_load_ps(mul + 16));
      __m256 f3 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc3), _mm256_load_ps(mul + 24));
      f0 = _mm256_add_ps(f0, _mm256_load_ps(badd));
      f1 = _mm256_add_ps(f1, _mm256_load_ps(badd + 8));
      f2 = _mm256_add_ps(f2, _mm256_load_ps(badd + 16));
      f3 = _mm256_add_ps(f3, _mm256_load_ps(badd + 24));
      if (summand != nullptr) {
        const __m256i sv = Load32(summand + pix, left);
        const __m256i s_lo = _mm256_unpacklo_epi8(sv, zero), s_hi = _mm256_unpackhi_epi8(sv, zero);
        const __m256i s0 = _mm256_unpacklo_epi16(s_lo, zero), s1 = _mm256_unpackhi_epi16(s_lo, zero),
                      s2 = _mm256_unpacklo_epi16(s_hi, zero), s3 = _mm256_unpackhi_epi16(s_hi, zero);
        f0 = _mm256_add_ps(f0, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s0, zps)), mul_s));
        f1 = _mm256_add_ps(f1, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s1, zps)), mul_s));
        f2 = _mm256_add_ps(f2, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s2, zps)), mul_s));
        f3 = _mm256_add_ps(f3, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s3, zps)), mul_s));
      }
      f0 = _mm256_min_ps(_mm256_max_ps(f0, lo), hi);
      f1 = _mm256_min_ps(_mm256_max_ps(f1, lo), hi);
      f2 = _mm256_min_ps(_mm256_max_ps(f2, lo), hi);
      f3 = _mm256_min_ps(_mm256_max_ps(f3, lo), hi);
      const __m256i q0 = _mm256_add_epi32(_mm256_cvtps_epi32(f0), zpo),
                    q1 = _mm256_add_epi32(_mm256_cvtps_epi32(f1), zpo),
                    q2 = _mm256_add_epi32(_mm256_cvtps_epi32(f2), zpo),
                    q3 = _mm256_add_epi32(_mm256_cvtps_epi32(f3), zpo);
      const __m256i q = _mm256_packus_epi16(_mm256_packus_epi32(q0, q1), _mm256_packus_epi32(q2, q3));
      uint8_t* y = static_cast<uint8_t*>(output) + pix;
      if (left >= 32) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), q);
      } else {
        alignas(32) uint8_t buf[32];
        _mm256_store_si256(reinterpret_cast<__m256i*>(buf), q);
        std::memcpy(y, buf, left);
      }
    }
  }
}

}  // namespace tfq8

namespace tfq8 {

void qu8_dwconv9_minmax_fp32_ukernel_u8_strided__avx2(size_t channels, size_t pixels,
                                                      const uint8_t* const* first, size_t step,
                                                      const void* packed, const DwMicroParams& p,
                                                      void* output) {
  DwConv9U8(channels, pixels, first, 0, step, packed, p, output);
}

}  // namespace tfq8
