// Micro-kernels of the INT8 convolution / matmul (u8 activations × s8 weights → s32 → fused
// epilogue), named <dtype>_<op>_<requant>_ukernel_<MR>x<NR>c<KR>__<isa> after XNNPACK.
// Leaf functions: no allocation, no threads, no dispatch. The driver is conv2d.cc.
//
// "igemm" kernels read A through an indirection array a[ks][MR] (one pointer per tap and row;
// rows past `mr` repeat a valid pointer), K = ks taps × kc bytes, kc a multiple of 4. Weights
// w point at one 32-channel block packed as [ks][kc/4][32 channels][4 bytes]; nc ≤ 32 channels
// are computed and stored. bias/mul/badd point at the block's first channel (padded arrays).
// Output c points at (row 0, channel 0 of the block); rows are c_stride elements apart, and
// the summand s (or nullptr) has the same layout. Epilogue per docs/int8_numerics.md:
//   t = float(acc)·mul; t += badd; [t += float(s − zp_s)·mul_s]; t = min(max(t, lo), hi);
//   u8: rne(t) + zp_out;  f32: t;  s32: acc (bias already in the accumulator).
#ifndef TFQ8_KERNELS_CPU_QU8_GEMM_H_
#define TFQ8_KERNELS_CPU_QU8_GEMM_H_

#include <cstddef>
#include <cstdint>

namespace tfq8 {

enum class QOutType { kU8 = 0, kF32 = 1, kS32 = 2 };

struct QEpilogue {
  QOutType out_type = QOutType::kU8;
  bool has_summand = false;
  float lo = 0.0f, hi = 255.0f;  // clamp bounds in output units (activation folded in)
  float mul_s = 1.0f;            // s_summand / s_out
  int32_t zp_summand = 0;
  int32_t zp_out = 0;
};

using QIgemmFn = void (*)(size_t mr, size_t nc, size_t kc, size_t ks, const uint8_t* const* a,
                          const int8_t* w, const int32_t* bias, const float* mul,
                          const float* badd, void* c, size_t c_stride, const uint8_t* s,
                          const QEpilogue& ep);

// AVX512-VNNI: 8 rows × 32 channels, vpdpbusd.
constexpr size_t kIgemmMrAvx512 = 8;
void qu8_igemm_minmax_fp32_ukernel_8x32c4__avx512vnni(size_t mr, size_t nc, size_t kc, size_t ks,
                                                      const uint8_t* const* a, const int8_t* w,
                                                      const int32_t* bias, const float* mul,
                                                      const float* badd, void* c,
                                                      size_t c_stride, const uint8_t* s,
                                                      const QEpilogue& ep);
// AVX-VNNI (VEX vpdpbusd, 256-bit): 4 rows × 32 channels.
constexpr size_t kIgemmMrAvxvnni = 4;
void qu8_igemm_minmax_fp32_ukernel_4x32c4__avxvnni(size_t mr, size_t nc, size_t kc, size_t ks,
                                                   const uint8_t* const* a, const int8_t* w,
                                                   const int32_t* bias, const float* mul,
                                                   const float* badd, void* c, size_t c_stride,
                                                   const uint8_t* s, const QEpilogue& ep);
// AVX2 without VNNI: 2 rows × 32 channels; u8/s8 widened to s16, vpmaddwd (exact, no s16
// saturation as vpmaddubsw would have).
constexpr size_t kIgemmMrAvx2 = 2;
void qu8_igemm_minmax_fp32_ukernel_2x32c4__avx2(size_t mr, size_t nc, size_t kc, size_t ks,
                                                const uint8_t* const* a, const int8_t* w,
                                                const int32_t* bias, const float* mul,
                                                const float* badd, void* c, size_t c_stride,
                                                const uint8_t* s, const QEpilogue& ep);

// AVX2 without VNNI, weights with "u8-safe pairs": 6 rows × 16 channels, u8 input rows as for
// the c4 kernels, w at 16 channels of a c4 block (rows of 4 input channels 128 bytes apart,
// the kernel reads 64 bytes of each). Precondition (PackConv checks it, Qu8PairsFitS16): for
// every output channel and every pair of input channels (4q, 4q+1) and (4q+2, 4q+3) of a tap,
// weights of the same sign have |w0| + |w1| ≤ 128. Then u8·w0 + u8·w1 lies within
// ±255·128 = ±32640 and vpmaddubsw's s16 pair sums never saturate: the result equals the
// exact kernels' bit for bit, with 32 MACs per two multiply instructions (vpmaddubsw,
// vpmaddwd by 1) instead of 16 per one.
constexpr size_t kIgemmMrAvx2U8 = 6;
constexpr size_t kIgemmNrAvx2U8 = 16;
void qu8_igemm_minmax_fp32_ukernel_6x16c4__avx2(size_t mr, size_t nc, size_t kc, size_t ks,
                                                const uint8_t* const* a, const int8_t* w,
                                                const int32_t* bias, const float* mul,
                                                const float* badd, void* c, size_t c_stride,
                                                const uint8_t* s, const QEpilogue& ep);
// Whether filter [taps][ic][oc] (HWIO flattened) meets that precondition: pairs (2j, 2j+1) of
// input channels within each tap (the c4 layout's pairs, ic padded with zero weights).
bool Qu8PairsFitS16(const int8_t* filter, int64_t taps, int64_t ic, int64_t oc);

// AVX2 without VNNI, pre-widened operands: 6 rows × 16 channels. a[ks][6] point at u16 rows
// (the input zero-extended by qu8_widen_u16__avx2), kc u16 values per tap (kc even); w points at
// one 16-channel block packed as s16 [ks][kc/2][16 channels][2]; nc ≤ 16. vpbroadcastd of a
// k-pair × vpmaddwd (exact), 12 accumulators.
constexpr size_t kIgemmMrAvx2S16 = 6;
constexpr size_t kIgemmNrAvx2S16 = 16;
void qu8_igemm_minmax_fp32_ukernel_6x16c2s16__avx2(size_t mr, size_t nc, size_t kc, size_t ks,
                                                   const uint16_t* const* a, const int16_t* w,
                                                   const int32_t* bias, const float* mul,
                                                   const float* badd, void* c, size_t c_stride,
                                                   const uint8_t* s, const QEpilogue& ep);
// Zero-extends rows [0, rows) of `ic` u8 values (x_stride bytes apart) to u16 rows of kc ≥ ic
// values (the kc − ic tail is zero), y_stride u16 apart.
void qu8_widen_u16__avx2(const uint8_t* x, size_t rows, size_t ic, size_t x_stride, uint16_t* y,
                         size_t kc, size_t y_stride);

// im2col rows for the 6x16c2s16 kernel with small IC (several taps as one K run): for output
// pixels [px0, px0 + count) of the flattened N·OH·OW, row r (kc u16 values, at y + r·kc) holds
// the window in the order (ky, kx, ic), padded taps = zp; values past kh·kw·ic are unspecified
// (their weights are zero). Reads the u8 input directly, widening on the fly; writes up to 32
// u16 past the last row (y needs that much slack).
struct Im2colGeometry {
  int64_t h, w, ic, kh, kw, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left, oh, ow;
  int64_t input_bytes;  // n·h·w·ic: reads never go past x + input_bytes
};
void qu8_im2col_u16__avx2(const uint8_t* x, const Im2colGeometry& g, uint16_t zp, int64_t px0,
                          int64_t count, uint16_t* y, int64_t kc);

// Winograd F(2×2, 3×3), exact (qu8_winograd_f2x3_avx2.cc): a 3×3 stride-1 conv as 16 GEMMs of
// transformed s16 operands on the 6x16c2s16 kernel (s32 output), between an input and an output
// transform. Output tiles of 2×2 pixels are numbered over N × tiles_h × tiles_w.
constexpr int64_t kWinogradMaxIc = 1024;  // 4·acc must fit int32: 4·9·255·127·IC < 2³¹
struct WinogradGeometry {
  int64_t h, w, ic, kc;        // kc: IC rounded up to 2 (the GEMM's K)
  int64_t pad_top, pad_left, oh, ow, tiles_h, tiles_w;
};
// Transformed inputs of tiles [t0, t0 + count): v[ξ·xi_stride + i·kc + c] for ξ in 0..15,
// c < kc (c ≥ IC: 0). Padding reads as zp.
void qu8_winograd_f2x3_input__avx2(const uint8_t* x, const WinogradGeometry& g, uint8_t zp,
                                   int64_t t0, int64_t count, int16_t* v, int64_t xi_stride);
// Output transform and fused epilogue of tiles [t0, t0 + count) for nc ≤ 16 channels: m holds
// the GEMM results m[ξ·xi_stride + i·16 + ch] (bias not included); bias/mul/badd/s/c point at
// the block's first channel (s, c: of pixel 0; rows oc elements apart), as for the igemm kernels.
void qu8_winograd_f2x3_output__avx2(const int32_t* m, int64_t xi_stride,
                                    const WinogradGeometry& g, int64_t t0, int64_t count,
                                    size_t nc, const int32_t* bias, const float* mul,
                                    const float* badd, const uint8_t* s, void* c, int64_t oc,
                                    const QEpilogue& ep);

// AMX: 32 rows × 32 channels from a dense A (rows a_stride bytes apart, k bytes each, k a
// multiple of 64; rows past mr may hold anything readable) and a weight block packed as
// [k/4][32][4]. acc: 32×32 int32 scratch. The calling thread must have called
// qu8_amx_tile_begin() (loads the tile configuration) and calls qu8_amx_tile_end() when done.
void qu8_gemm_minmax_fp32_ukernel_32x32c4__amx(size_t mr, size_t nc, size_t k, const uint8_t* a,
                                               size_t a_stride, const int8_t* w,
                                               const int32_t* bias, const float* mul,
                                               const float* badd, void* c, size_t c_stride,
                                               const uint8_t* s, const QEpilogue& ep,
                                               int32_t* acc);
void qu8_amx_tile_begin();
void qu8_amx_tile_end();

}  // namespace tfq8

#endif  // TFQ8_KERNELS_CPU_QU8_GEMM_H_
