// Test-only: lets the AVX512-VNNI, AVX-VNNI and AMX micro-kernels run on a CPU without those
// ISAs (e.g. an AVX2-only development machine) so their logic is still checked against the
// reference. Force-included (g++ -include) by tests/ops/test_conv2d.py when it builds
// qu8_gemm_emulation_test.cc; never part of the op library.
//  * AVX512 intrinsics: SIMDe (Debian libsimde-dev) with native aliases.
//  * _mm256_dpbusd_avx_epi32 and the AMX tile intrinsics: scalar models written from the ISA
//    reference (tdpbusd: C[m][n] += Σ_{k<4} u8(A[m][4j+k]) · s8(B[j][4n+k])).
#ifndef TFQ8_KERNELS_CPU_QU8_GEMM_EMULATION_TEST_H_
#define TFQ8_KERNELS_CPU_QU8_GEMM_EMULATION_TEST_H_

#include <immintrin.h>  // the native parts first, so SIMDe's aliases only cover what is missing

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

#include <cmath>
#include <cstdint>
#include <cstring>

// ---- pieces SIMDe 0.7 lacks -------------------------------------------------------------
static inline simde__m128i tfq8_emu_maskz_loadu_epi8(uint16_t m, const void* p) {
  uint8_t b[16] = {0};
  for (int i = 0; i < 16; ++i)
    if (m >> i & 1) b[i] = static_cast<const uint8_t*>(p)[i];
  return simde_mm_loadu_si128(b);
}
static inline void tfq8_emu_mask_storeu_epi32(void* p, uint16_t m, simde__m512i v) {
  int32_t t[16];
  std::memcpy(t, &v, 64);
  for (int i = 0; i < 16; ++i)
    if (m >> i & 1) static_cast<int32_t*>(p)[i] = t[i];
}
static inline void tfq8_emu_mask_storeu_ps(void* p, uint16_t m, simde__m512 v) {
  float t[16];
  std::memcpy(t, &v, 64);
  for (int i = 0; i < 16; ++i)
    if (m >> i & 1) static_cast<float*>(p)[i] = t[i];
}
static inline void tfq8_emu_mask_cvtusepi32_storeu_epi8(void* p, uint16_t m, simde__m512i v) {
  uint32_t t[16];
  std::memcpy(t, &v, 64);
  for (int i = 0; i < 16; ++i)
    if (m >> i & 1) static_cast<uint8_t*>(p)[i] = t[i] > 255u ? 255 : static_cast<uint8_t>(t[i]);
}
static inline simde__m512 tfq8_emu_cvtepi32_ps(simde__m512i v) {
  int32_t t[16];
  float r[16];
  std::memcpy(t, &v, 64);
  for (int i = 0; i < 16; ++i) r[i] = static_cast<float>(t[i]);
  return simde_mm512_loadu_ps(r);
}
static inline simde__m512i tfq8_emu_cvtps_epi32(simde__m512 v) {  // default MXCSR: half-even
  float t[16];
  int32_t r[16];
  std::memcpy(t, &v, 64);
  for (int i = 0; i < 16; ++i) r[i] = static_cast<int32_t>(std::nearbyint(t[i]));
  return simde_mm512_loadu_si512(r);
}
static inline simde__m512i tfq8_emu_cvtepu8_epi32(simde__m128i v) {
  uint8_t t[16];
  int32_t r[16];
  std::memcpy(t, &v, 16);
  for (int i = 0; i < 16; ++i) r[i] = t[i];
  return simde_mm512_loadu_si512(r);
}
#undef _mm512_cvtepi32_ps
#undef _mm512_cvtps_epi32
#undef _mm512_cvtepu8_epi32
#define _mm512_cvtepi32_ps tfq8_emu_cvtepi32_ps
#define _mm512_cvtps_epi32 tfq8_emu_cvtps_epi32
#define _mm512_cvtepu8_epi32 tfq8_emu_cvtepu8_epi32
#undef _mm_maskz_loadu_epi8
#undef _mm512_mask_storeu_epi32
#undef _mm512_mask_storeu_ps
#undef _mm512_mask_cvtusepi32_storeu_epi8
#define _mm_maskz_loadu_epi8 tfq8_emu_maskz_loadu_epi8
#define _mm512_mask_storeu_epi32 tfq8_emu_mask_storeu_epi32
#define _mm512_mask_storeu_ps tfq8_emu_mask_storeu_ps
#define _mm512_mask_cvtusepi32_storeu_epi8 tfq8_emu_mask_cvtusepi32_storeu_epi8

// ---- AVX-VNNI ---------------------------------------------------------------------------
static inline __m256i tfq8_emu_dpbusd_avx(__m256i acc, __m256i a, __m256i b) {
  int32_t c[8];
  uint8_t x[32];
  int8_t y[32];
  std::memcpy(c, &acc, 32);
  std::memcpy(x, &a, 32);
  std::memcpy(y, &b, 32);
  for (int i = 0; i < 8; ++i) {
    int32_t s = 0;
    for (int k = 0; k < 4; ++k) s += int32_t(x[4 * i + k]) * int32_t(y[4 * i + k]);
    c[i] = int32_t(uint32_t(c[i]) + uint32_t(s));
  }
  __m256i r;
  std::memcpy(&r, c, 32);
  return r;
}
#undef _mm256_dpbusd_avx_epi32
#define _mm256_dpbusd_avx_epi32 tfq8_emu_dpbusd_avx

// ---- AMX ----------------------------------------------------------------------------------
struct Tfq8EmuTiles {
  uint8_t cfg[64];
  alignas(64) uint8_t t[8][16][64];
};
inline thread_local Tfq8EmuTiles tfq8_emu_tiles;
static inline void tfq8_emu_tile_loadconfig(const void* c) { std::memcpy(tfq8_emu_tiles.cfg, c, 64); }
static inline void tfq8_emu_tile_release() { std::memset(&tfq8_emu_tiles, 0, sizeof(tfq8_emu_tiles)); }
static inline int tfq8_emu_rows(int t) { return tfq8_emu_tiles.cfg[48 + t]; }
static inline int tfq8_emu_colsb(int t) {
  uint16_t v;
  std::memcpy(&v, tfq8_emu_tiles.cfg + 16 + 2 * t, 2);
  return v;
}
static inline void tfq8_emu_tile_zero(int t) { std::memset(tfq8_emu_tiles.t[t], 0, 16 * 64); }
static inline void tfq8_emu_tile_loadd(int t, const void* base, long stride) {
  for (int r = 0; r < tfq8_emu_rows(t); ++r)
    std::memcpy(tfq8_emu_tiles.t[t][r], static_cast<const uint8_t*>(base) + r * stride,
                tfq8_emu_colsb(t));
}
static inline void tfq8_emu_tile_stored(int t, void* base, long stride) {
  for (int r = 0; r < tfq8_emu_rows(t); ++r)
    std::memcpy(static_cast<uint8_t*>(base) + r * stride, tfq8_emu_tiles.t[t][r],
                tfq8_emu_colsb(t));
}
static inline void tfq8_emu_tile_dpbusd(int c, int a, int b) {
  const int M = tfq8_emu_rows(a), K4 = tfq8_emu_colsb(a) / 4, N = tfq8_emu_colsb(b) / 4;
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      int32_t acc;
      std::memcpy(&acc, &tfq8_emu_tiles.t[c][m][4 * n], 4);
      for (int j = 0; j < K4; ++j)
        for (int k = 0; k < 4; ++k)
          acc = int32_t(uint32_t(acc) + uint32_t(int32_t(tfq8_emu_tiles.t[a][m][4 * j + k]) *
                                                int32_t(int8_t(tfq8_emu_tiles.t[b][j][4 * n + k]))));
      std::memcpy(&tfq8_emu_tiles.t[c][m][4 * n], &acc, 4);
    }
}
#undef _tile_loadconfig
#undef _tile_release
#undef _tile_zero
#undef _tile_loadd
#undef _tile_stored
#undef _tile_dpbusd
#define _tile_loadconfig tfq8_emu_tile_loadconfig
#define _tile_release tfq8_emu_tile_release
#define _tile_zero tfq8_emu_tile_zero
#define _tile_loadd tfq8_emu_tile_loadd
#define _tile_stored tfq8_emu_tile_stored
#define _tile_dpbusd tfq8_emu_tile_dpbusd

#endif  // TFQ8_KERNELS_CPU_QU8_GEMM_EMULATION_TEST_H_
