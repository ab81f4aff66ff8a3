// Winograd F(2×2, 3×3) transforms for the INT8 3×3 stride-1 convolution on AVX2 without VNNI.
//
// Exact, not an approximation: with G' = 2·G the filter transform U' = G' g G'ᵀ is integer
// (|U'| ≤ 9·127 = 1143), the input transform V = Bᵀ d B of u8 data is integer (|V| ≤ 4·255),
// both fit s16, and the 16 products U'·V summed over input channels are the s16 × s16 → s32
// vpmaddwd GEMMs of the direct path (qu8_igemm_minmax_fp32_ukernel_6x16c2s16__avx2). The output
// transform Aᵀ M A then gives 4× the direct accumulator, exactly: every step is int32 addition
// (modular), and the result 4·acc fits int32 for IC ≤ kWinogradMaxIc (|acc| ≤ 9·255·127·IC).
// So the output is the direct convolution's, bit for bit, with 16 instead of 36 multiplies per
// 2×2 output tile and input channel.
//
//   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1],  G' = [2 0 0; 1 1 1; 1 −1 1; 0 0 2],
//   Aᵀ = [1 1 1 0; 0 1 −1 −1]   (Lavin & Gray, "Fast Algorithms for Convolutional Neural
//   Networks", 2016; correlation form, as CNN layers compute).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "custom_ops/kernels/cpu/qu8_gemm.h"
#include "custom_ops/kernels/cpu/qu8_gemm_epilogue_avx2.h"

namespace tfq8 {
namespace {

// Tile t of the flattened N × tiles_h × tiles_w grid → image and input window origin.
struct TileOrigin {
  int64_t n, ty, tx, iy0, ix0;
};

inline TileOrigin Origin(const WinogradGeometry& g, int64_t t) {
  const int64_t per_image = g.tiles_h * g.tiles_w;
  TileOrigin o;
  o.n = t / per_image;
  o.ty = t % per_image / g.tiles_w;
  o.tx = t % g.tiles_w;
  o.iy0 = 2 * o.ty - g.pad_top;
  o.ix0 = 2 * o.tx - g.pad_left;
  return o;
}

// V = Bᵀ d B for one 4×4 window, as 16 values (row-major ξ = 4·i + j); works on any type with
// + and − (scalars for the channel tail, __m256i lanes via the wrappers below).
template <typename T, typename Add, typename Sub>
inline void InputTransform(const T d[4][4], T v[16], Add add, Sub sub) {
  T t[4][4];
  for (int b = 0; b < 4; ++b) {
    t[0][b] = sub(d[0][b], d[2][b]);
    t[1][b] = add(d[1][b], d[2][b]);
    t[2][b] = sub(d[2][b], d[1][b]);
    t[3][b] = sub(d[1][b], d[3][b]);
  }
  for (int i = 0; i < 4; ++i) {
    v[4 * i + 0] = sub(t[i][0], t[i][2]);
    v[4 * i + 1] = add(t[i][1], t[i][2]);
    v[4 * i + 2] = sub(t[i][2], t[i][1]);
    v[4 * i + 3] = sub(t[i][1], t[i][3]);
  }
}

}  // namespace

void qu8_winograd_f2x3_input__avx2(const uint8_t* x, const WinogradGeometry& g, uint8_t zp,
                                   int64_t t0, int64_t count, int16_t* v, int64_t xi_stride) {
  const int64_t ic = g.ic, kc = g.kc, c16 = ic / 16 * 16;
  const __m256i zpv = _mm256_set1_epi16(zp);
  auto add = [](__m256i a, __m256i b) { return _mm256_add_epi16(a, b); };
  auto sub = [](__m256i a, __m256i b) { return _mm256_sub_epi16(a, b); };
  auto iadd = [](int a, int b) { return a + b; };
  auto isub = [](int a, int b) { return a - b; };
  for (int64_t i = 0; i < count; ++i) {
    const TileOrigin o = Origin(g, t0 + i);
    const uint8_t* rows[4][4];  // window positions; nullptr = padding (zp)
    for (int a = 0; a < 4; ++a) {
      const int64_t iy = o.iy0 + a;
      for (int b = 0; b < 4; ++b) {
        const int64_t ix = o.ix0 + b;
        rows[a][b] = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w
                         ? x + ((o.n * g.h + iy) * g.w + ix) * ic
                         : nullptr;
      }
    }
    int16_t* dst = v + i * kc;
    for (int64_t c = 0; c < c16; c += 16) {
      __m256i d[4][4], r[16];
      for (int a = 0; a < 4; ++a)
        for (int b = 0; b < 4; ++b)
          d[a][b] = rows[a][b] ? _mm256_cvtepu8_epi16(
                                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[a][b] + c)))
                               : zpv;
      InputTransform(d, r, add, sub);
      for (int xi = 0; xi < 16; ++xi)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + xi * xi_stride + c), r[xi]);
    }
    for (int64_t c = c16; c < ic; ++c) {
      int d[4][4], r[16];
      for (int a = 0; a < 4; ++a)
        for (int b = 0; b < 4; ++b) d[a][b] = rows[a][b] ? rows[a][b][c] : zp;
      InputTransform(d, r, iadd, isub);
      for (int xi = 0; xi < 16; ++xi) dst[xi * xi_stride + c] = static_cast<int16_t>(r[xi]);
    }
    for (int64_t c = ic; c < kc; ++c)  // K padding (zero weights): any finite value; 0
      for (int xi = 0; xi < 16; ++xi) dst[xi * xi_stride + c] = 0;
  }
}

void qu8_winograd_f2x3_output__avx2(const int32_t* m, int64_t xi_stride,
                                    const WinogradGeometry& g, int64_t t0, int64_t count,
                                    size_t nc, const int32_t* bias, const float* mul,
                                    const float* badd, const uint8_t* s, void* c, int64_t oc,
                                    const QEpilogue& ep) {
  const size_t es = QOutElementSizeAvx2(ep);
  for (int64_t i = 0; i < count; ++i) {
    const TileOrigin o = Origin(g, t0 + i);
    for (size_t h = 0; h < nc; h += 8) {
      const size_t cnt = std::min<size_t>(8, nc - h);
      __m256i mm[16];
      for (int xi = 0; xi < 16; ++xi)
        mm[xi] = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(m + xi * xi_stride + i * kIgemmNrAvx2S16 + h));
      __m256i s0[4], s1[4];  // Aᵀ M: rows
      for (int j = 0; j < 4; ++j) {
        s0[j] = _mm256_add_epi32(_mm256_add_epi32(mm[j], mm[4 + j]), mm[8 + j]);
        s1[j] = _mm256_sub_epi32(_mm256_sub_epi32(mm[4 + j], mm[8 + j]), mm[12 + j]);
      }
      __m256i y[2][2];  // (Aᵀ M) A: columns
      const __m256i* sr[2] = {s0, s1};
      for (int r = 0; r < 2; ++r) {
        y[r][0] = _mm256_add_epi32(_mm256_add_epi32(sr[r][0], sr[r][1]), sr[r][2]);
        y[r][1] = _mm256_sub_epi32(_mm256_sub_epi32(sr[r][1], sr[r][2]), sr[r][3]);
      }
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + h));
      for (int dy = 0; dy < 2; ++dy) {
        const int64_t oy = 2 * o.ty + dy;
        if (oy >= g.oh) break;
        for (int dx = 0; dx < 2; ++dx) {
          const int64_t ox = 2 * o.tx + dx;
          if (ox >= g.ow) break;
          const int64_t px = (o.n * g.oh + oy) * g.ow + ox;
          // 4·acc exactly, so the arithmetic shift is an exact division
          const __m256i acc = _mm256_add_epi32(_mm256_srai_epi32(y[dy][dx], 2), b);
          Qu8EpilogueStore8Avx2(acc, cnt, mul + h, badd + h, s ? s + px * oc + h : nullptr,
                                static_cast<char*>(c) + (px * oc + h) * es, ep);
        }
      }
    }
  }
}

}  // namespace tfq8
