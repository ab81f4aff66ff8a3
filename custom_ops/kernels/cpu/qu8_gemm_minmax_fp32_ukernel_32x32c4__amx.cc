// qu8_gemm_minmax_fp32_ukernel_32x32c4__amx: 32 rows × 32 channels with AMX-INT8 tdpbusd.
// Tiles: 0..3 = C (rows 0-15 / 16-31 × channels 0-15 / 16-31), 4, 5 = A (rows 0-15, 16-31;
// 64 bytes of K each), 6, 7 = B (16 K-rows of 4 × 16 channels; the packed block is
// [K/4][32][4] = 128 bytes per K-row, so B for channels 0-15 is at +0 and 16-31 at +64 with a
// 128-byte stride). The accumulators go through a 32×32 int32 scratch into the AVX512
// epilogue. Every tile is configured as 16 rows × 64 bytes once per thread
// (qu8_amx_tile_begin); _tile_release in qu8_amx_tile_end.
#include <immintrin.h>

#include <cassert>
#include <cstring>

#include "custom_ops/kernels/cpu/qu8_gemm.h"
#include "custom_ops/kernels/cpu/qu8_gemm_epilogue_avx512.h"

namespace tfq8 {
namespace {

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

}  // namespace

void qu8_amx_tile_begin() {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof(cfg));
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
}

void qu8_amx_tile_end() { _tile_release(); }

void qu8_gemm_minmax_fp32_ukernel_32x32c4__amx(size_t mr, size_t nc, size_t k, const uint8_t* a,
                                               size_t a_stride, const int8_t* w,
                                               const int32_t* bias, const float* mul,
                                               const float* badd, void* c, size_t c_stride,
                                               const uint8_t* s, const QEpilogue& ep,
                                               int32_t* acc) {
  assert(mr >= 1 && mr <= 32);
  assert(nc >= 1 && nc <= 32);
  assert(k % 64 == 0);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  const uint8_t* a1 = a + 16 * a_stride;
  for (size_t kk = 0; kk < k; kk += 64) {
    const int8_t* wk = w + kk * 32;
    _tile_loadd(4, a + kk, a_stride);
    _tile_loadd(6, wk, 128);
    _tile_loadd(7, wk + 64, 128);
    _tile_dpbusd(0, 4, 6);
    _tile_dpbusd(1, 4, 7);
    _tile_loadd(5, a1 + kk, a_stride);
    _tile_dpbusd(2, 5, 6);
    _tile_dpbusd(3, 5, 7);
  }
  _tile_stored(0, acc, 128);
  _tile_stored(1, acc + 16, 128);
  _tile_stored(2, acc + 16 * 32, 128);
  _tile_stored(3, acc + 16 * 32 + 16, 128);
  const size_t es = QOutElementSize(ep);
  const __mmask16 m0 = QMask16(nc), m1 = QMask16(nc > 16 ? nc - 16 : 0);
  const __m512i b0 = _mm512_loadu_si512(bias), b1 = _mm512_loadu_si512(bias + 16);
  for (size_t m = 0; m < mr; ++m) {
    char* cr = static_cast<char*>(c) + m * c_stride * es;
    const uint8_t* sr = s ? s + m * c_stride : nullptr;
    const __m512i v0 = _mm512_add_epi32(_mm512_loadu_si512(acc + m * 32), b0);
    Qu8EpilogueStore16Avx512(v0, m0, mul, badd, sr, cr, ep);
    if (nc > 16) {
      const __m512i v1 = _mm512_add_epi32(_mm512_loadu_si512(acc + m * 32 + 16), b1);
      Qu8EpilogueStore16Avx512(v1, m1, mul + 16, badd + 16, sr ? sr + 16 : nullptr,
                               cr + 16 * es, ep);
    }
  }
}

}  // namespace tfq8
