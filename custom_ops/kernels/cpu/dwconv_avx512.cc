// AVX512-VNNI depthwise micro-kernel, M = 1: 64 channels per block, 4 taps per vpdpbusd.
// Bit-identical to qu8_dwconv_ref: exact int32 accumulation, then the same f32 operation order
// (vcvtdq2ps, vmulps, vaddps, [vaddps summand], vmaxps, vminps, vcvtps2dq = rne).
//
// Per 4 taps × 64 channels: 4 byte loads, 8 unpacks (taps interleaved 4 per dword), 4 vpdpbusd.
// The unpacks leave channel 16k+4j+e in register j, lane k, element e; the packed constants follow
// that order, and vpackusdw/vpackuswb (u8 out) or a 128-bit-lane transpose (f32/s32 out) restore
// the natural order on store.
#include <immintrin.h>

#include <algorithm>
#include <cassert>

#include "custom_ops/kernels/cpu/dwconv.h"

namespace tfq8 {

void qu8_dwconv_minmax_fp32_ukernel_c64__avx512vnni(size_t channels, size_t pixels, size_t taps,
                                                    const uint8_t* const* input, const void* packed,
                                                    const DwMicroParams& p,
                                                    const uint8_t* summand, void* output) {
  assert(taps >= 1);
  const size_t groups = (taps + 3) / 4;
  const size_t block_bytes = 12 * 64 + groups * 256;
  const __m512 lo = _mm512_set1_ps(p.lo), hi = _mm512_set1_ps(p.hi),
               mul_s = _mm512_set1_ps(p.mul_s);
  const __m512i zps = _mm512_set1_epi32(p.zp_summand), zpo = _mm512_set1_epi32(p.zp_out);
  const __m512i zero = _mm512_setzero_si512();
  const size_t last = taps - 1;
  for (size_t px = 0; px < pixels; ++px) {
    const uint8_t* const* in = input + px * taps;
    const uint8_t* blk = static_cast<const uint8_t*>(packed);
    for (size_t c = 0; c < channels; c += 64, blk += block_bytes) {
      const size_t left = channels - c;
      const __mmask64 m = left >= 64 ? ~0ull : ((1ull << left) - 1);
      const int32_t* bias = reinterpret_cast<const int32_t*>(blk);
      __m512i acc0 = _mm512_load_si512(bias), acc1 = _mm512_load_si512(bias + 16),
              acc2 = _mm512_load_si512(bias + 32), acc3 = _mm512_load_si512(bias + 48);
      const uint8_t* wg = blk + 12 * 64;
      for (size_t t = 0; t < taps; t += 4, wg += 256) {
        const __m512i x0 = _mm512_maskz_loadu_epi8(m, in[t] + c);
        const __m512i x1 = _mm512_maskz_loadu_epi8(m, in[std::min(t + 1, last)] + c);
        const __m512i x2 = _mm512_maskz_loadu_epi8(m, in[std::min(t + 2, last)] + c);
        const __m512i x3 = _mm512_maskz_loadu_epi8(m, in[std::min(t + 3, last)] + c);
        const __m512i a_lo = _mm512_unpacklo_epi8(x0, x1), a_hi = _mm512_unpackhi_epi8(x0, x1);
        const __m512i b_lo = _mm512_unpacklo_epi8(x2, x3), b_hi = _mm512_unpackhi_epi8(x2, x3);
        acc0 = _mm512_dpbusd_epi32(acc0, _mm512_unpacklo_epi16(a_lo, b_lo), _mm512_load_si512(wg));
        acc1 = _mm512_dpbusd_epi32(acc1, _mm512_unpackhi_epi16(a_lo, b_lo),
                                   _mm512_load_si512(wg + 64));
        acc2 = _mm512_dpbusd_epi32(acc2, _mm512_unpacklo_epi16(a_hi, b_hi),
                                   _mm512_load_si512(wg + 128));
        acc3 = _mm512_dpbusd_epi32(acc3, _mm512_unpackhi_epi16(a_hi, b_hi),
                                   _mm512_load_si512(wg + 192));
      }
      const size_t pix = px * channels + c;
      if (p.out_type == DwOutType::kS32) {
        const __m512i t0 = _mm512_shuffle_i32x4(acc0, acc1, 0x44),
                      t1 = _mm512_shuffle_i32x4(acc2, acc3, 0x44),
                      t2 = _mm512_shuffle_i32x4(acc0, acc1, 0xEE),
                      t3 = _mm512_shuffle_i32x4(acc2, acc3, 0xEE);
        const __m512i o[4] = {_mm512_shuffle_i32x4(t0, t1, 0x88), _mm512_shuffle_i32x4(t0, t1, 0xDD),
                              _mm512_shuffle_i32x4(t2, t3, 0x88), _mm512_shuffle_i32x4(t2, t3, 0xDD)};
        int32_t* y = static_cast<int32_t*>(output) + pix;
        for (int k = 0; k < 4; ++k) {
          _mm512_mask_storeu_epi32(y + 16 * k, static_cast<__mmask16>(m >> (16 * k)), o[k]);
        }
        continue;
      }
      const float* mul = reinterpret_cast<const float*>(blk + 4 * 64);
      const float* badd = reinterpret_cast<const float*>(blk + 8 * 64);
      __m512 f0 = _mm512_mul_ps(_mm512_cvtepi32_ps(acc0), _mm512_load_ps(mul));
      __m512 f1 = _mm512_mul_ps(_mm512_cvtepi32_ps(acc1), _mm512_load_ps(mul + 16));
      __m512 f2 = _mm512_mul_ps(_mm512_cvtepi32_ps(acc2), _mm512_load_ps(mul + 32));
      __m512 f3 = _mm512_mul_ps(_mm512_cvtepi32_ps(acc3), _mm512_load_ps(mul + 48));
      f0 = _mm512_add_ps(f0, _mm512_load_ps(badd));
      f1 = _mm512_add_ps(f1, _mm512_load_ps(badd + 16));
      f2 = _mm512_add_ps(f2, _mm512_load_ps(badd + 32));
      f3 = _mm512_add_ps(f3, _mm512_load_ps(badd + 48));
      if (summand != nullptr) {
        const __m512i sv = _mm512_maskz_loadu_epi8(m, summand + pix);
        const __m512i s_lo = _mm512_unpacklo_epi8(sv, zero), s_hi = _mm512_unpackhi_epi8(sv, zero);
        const __m512i s0 = _mm512_unpacklo_epi16(s_lo, zero), s1 = _mm512_unpackhi_epi16(s_lo, zero),
                      s2 = _mm512_unpacklo_epi16(s_hi, zero), s3 = _mm512_unpackhi_epi16(s_hi, zero);
        f0 = _mm512_add_ps(f0, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(s0, zps)), mul_s));
        f1 = _mm512_add_ps(f1, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(s1, zps)), mul_s));
        f2 = _mm512_add_ps(f2, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(s2, zps)), mul_s));
        f3 = _mm512_add_ps(f3, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(s3, zps)), mul_s));
      }
      f0 = _mm512_min_ps(_mm512_max_ps(f0, lo), hi);
      f1 = _mm512_min_ps(_mm512_max_ps(f1, lo), hi);
      f2 = _mm512_min_ps(_mm512_max_ps(f2, lo), hi);
      f3 = _mm512_min_ps(_mm512_max_ps(f3, lo), hi);
      if (p.out_type == DwOutType::kF32) {
        const __m512 t0 = _mm512_shuffle_f32x4(f0, f1, 0x44), t1 = _mm512_shuffle_f32x4(f2, f3, 0x44),
                     t2 = _mm512_shuffle_f32x4(f0, f1, 0xEE), t3 = _mm512_shuffle_f32x4(f2, f3, 0xEE);
        const __m512 o[4] = {_mm512_shuffle_f32x4(t0, t1, 0x88), _mm512_shuffle_f32x4(t0, t1, 0xDD),
                             _mm512_shuffle_f32x4(t2, t3, 0x88), _mm512_shuffle_f32x4(t2, t3, 0xDD)};
        float* y = static_cast<float*>(output) + pix;
        for (int k = 0; k < 4; ++k) {
          _mm512_mask_storeu_ps(y + 16 * k, static_cast<__mmask16>(m >> (16 * k)), o[k]);
        }
        continue;
      }
      const __m512i q0 = _mm512_add_epi32(_mm512_cvtps_epi32(f0), zpo),
                    q1 = _mm512_add_epi32(_mm512_cvtps_epi32(f1), zpo),
                    q2 = _mm512_add_epi32(_mm512_cvtps_epi32(f2), zpo),
                    q3 = _mm512_add_epi32(_mm512_cvtps_epi32(f3), zpo);
      const __m512i q = _mm512_packus_epi16(_mm512_packus_epi32(q0, q1), _mm512_packus_epi32(q2, q3));
      _mm512_mask_storeu_epi8(static_cast<uint8_t*>(output) + pix, m, q);
    }
  }
}

}  // namespace tfq8
