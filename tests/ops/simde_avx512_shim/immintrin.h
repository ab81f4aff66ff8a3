// Test-only stand-in for <immintrin.h>: the AVX512 intrinsics emulated by SIMDe (portable C), so
// the *_avx512.cc kernels can be checked for bit-exactness on CPUs without AVX512. SIMDe 0.7.4
// lacks a few intrinsics the kernels use; they are defined below from Intel's pseudo-code
// (masked loads read only the selected bytes, as the hardware's fault suppression allows).
#ifndef TFQ8_TEST_SIMDE_AVX512_SHIM_H_
#define TFQ8_TEST_SIMDE_AVX512_SHIM_H_

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

#include <cmath>
#include <cstdint>
#include <cstring>

typedef uint64_t __mmask64;
typedef uint16_t __mmask16;

namespace tfq8_shim {
struct I32 { int32_t v[16]; };
struct F32 { float v[16]; };
inline I32 ToI(__m512i a) { I32 r; std::memcpy(&r, &a, 64); return r; }
inline F32 ToF(__m512 a) { F32 r; std::memcpy(&r, &a, 64); return r; }
inline __m512i FromI(const I32& r) { __m512i a; std::memcpy(&a, &r, 64); return a; }
inline __m512 FromF(const F32& r) { __m512 a; std::memcpy(&a, &r, 64); return a; }
}  // namespace tfq8_shim

inline __m512 _mm512_cvtepi32_ps(__m512i a) {
  tfq8_shim::I32 x = tfq8_shim::ToI(a); tfq8_shim::F32 r;
  for (int i = 0; i < 16; ++i) r.v[i] = static_cast<float>(x.v[i]);
  return tfq8_shim::FromF(r);
}
inline __m512i _mm512_cvtps_epi32(__m512 a) {  // default MXCSR rounding: half to even
  tfq8_shim::F32 x = tfq8_shim::ToF(a); tfq8_shim::I32 r;
  for (int i = 0; i < 16; ++i) r.v[i] = static_cast<int32_t>(std::nearbyint(x.v[i]));
  return tfq8_shim::FromI(r);
}
inline __m512i _mm512_cvttps_epi32(__m512 a) {
  tfq8_shim::F32 x = tfq8_shim::ToF(a); tfq8_shim::I32 r;
  for (int i = 0; i < 16; ++i) r.v[i] = static_cast<int32_t>(x.v[i]);
  return tfq8_shim::FromI(r);
}
inline __m512i _mm512_cvtepu8_epi32(__m128i a) {
  uint8_t b[16]; std::memcpy(b, &a, 16); tfq8_shim::I32 r;
  for (int i = 0; i < 16; ++i) r.v[i] = b[i];
  return tfq8_shim::FromI(r);
}
inline __m512i _mm512_maskz_loadu_epi8(__mmask64 k, const void* p) {
  uint8_t r[64] = {0};
  for (int i = 0; i < 64; ++i) if ((k >> i) & 1) r[i] = static_cast<const uint8_t*>(p)[i];
  __m512i a; std::memcpy(&a, r, 64); return a;
}
inline __m128i _mm_maskz_loadu_epi8(__mmask16 k, const void* p) {
  uint8_t r[16] = {0};
  for (int i = 0; i < 16; ++i) if ((k >> i) & 1) r[i] = static_cast<const uint8_t*>(p)[i];
  __m128i a; std::memcpy(&a, r, 16); return a;
}
inline void _mm512_mask_storeu_epi8(void* p, __mmask64 k, __m512i a) {
  uint8_t r[64]; std::memcpy(r, &a, 64);
  for (int i = 0; i < 64; ++i) if ((k >> i) & 1) static_cast<uint8_t*>(p)[i] = r[i];
}
inline void _mm512_mask_storeu_epi32(void* p, __mmask16 k, __m512i a) {
  tfq8_shim::I32 r = tfq8_shim::ToI(a);
  for (int i = 0; i < 16; ++i) if ((k >> i) & 1) std::memcpy(static_cast<int32_t*>(p) + i, &r.v[i], 4);
}
inline void _mm512_mask_storeu_ps(void* p, __mmask16 k, __m512 a) {
  tfq8_shim::F32 r = tfq8_shim::ToF(a);
  for (int i = 0; i < 16; ++i) if ((k >> i) & 1) std::memcpy(static_cast<float*>(p) + i, &r.v[i], 4);
}
inline void _mm512_mask_cvtusepi32_storeu_epi8(void* p, __mmask16 k, __m512i a) {
  tfq8_shim::I32 r = tfq8_shim::ToI(a);
  for (int i = 0; i < 16; ++i) {
    const uint32_t u = static_cast<uint32_t>(r.v[i]);
    if ((k >> i) & 1) static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(u > 255 ? 255 : u);
  }
}
inline __m512 _mm512_maskz_loadu_ps(__mmask16 k, const void* p) {
  tfq8_shim::F32 r = {};
  for (int i = 0; i < 16; ++i) if ((k >> i) & 1) std::memcpy(&r.v[i], static_cast<const float*>(p) + i, 4);
  return tfq8_shim::FromF(r);
}
inline __m128i _mm512_cvtusepi32_epi8(__m512i a) {
  tfq8_shim::I32 r = tfq8_shim::ToI(a);
  uint8_t b[16];
  for (int i = 0; i < 16; ++i) {
    const uint32_t u = static_cast<uint32_t>(r.v[i]);
    b[i] = static_cast<uint8_t>(u > 255 ? 255 : u);
  }
  __m128i v; std::memcpy(&v, b, 16); return v;
}
#define _mm512_shuffle_f32x4(a, b, imm) \
  simde_mm512_castsi512_ps(simde_mm512_shuffle_i32x4(simde_mm512_castps_si512(a), \
                                                     simde_mm512_castps_si512(b), imm))

#endif  // TFQ8_TEST_SIMDE_AVX512_SHIM_H_
