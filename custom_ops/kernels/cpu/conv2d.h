// INT8 2-D convolution and matmul (NHWC u8 input, filter [KH, KW, IC, OC] s8) with the fused
// epilogue of docs/int8_numerics.md ("Convolution, depthwise convolution, matmul").
//
// Pieces, framework-free:
//  * ConvShape / ConvEpilogueAttrs: what the op receives.
//  * PackConv(isa, ...) → PackedConv: done once per kernel instance and ISA. Holds the
//    per-output-channel constants (packed bias = -zp_in·Σw + int32 bias [or rne(f32 bias /
//    (s_in·s_w)) for int32 output], mul = s_in·s_w/s_out, badd = f32 bias/s_out), padded to the
//    32-channel block, and the weights in the layout of the ISA's micro-kernel:
//      ref          : the filter as given, [KH, KW, IC, OC] (the reference is a direct loop).
//      avx2 (no AVX-VNNI): additionally weights_s16, the filter widened to s16 in 16-channel
//                     blocks [tap][IC/2][16 channels][2] (k-pairs for vpmaddwd); for IC < 16
//                     and several taps, [taps·IC/2][16][2] in im2col order (im2col16).
//      avx2/avxvnni/avx512vnni: "c4" blocks: for each 32-channel block, for each tap,
//                     for each group of 4 input channels (IC rounded up to 4): 32 × 4 bytes
//                     (channel-major within the row: byte 4·o + i).
//      amx          : the same 32×4 rows, but K runs over the im2col order k = tap·IC + ic,
//                     padded to a multiple of 64 (one AMX tile row of A). Loading a 16-row
//                     slice of that block with a 128-byte stride gives a VNNI-ordered B tile.
//  * Conv2DRun: the driver. Output pixels are flattened (N·OH·OW rows of OC); every SIMD path
//    splits the work the same way (ConvTaskPlan, conv2d.cc): tasks are (chunk of consecutive
//    MR-pixel blocks whose input rows fit in L2) × (group of channel blocks), run on the
//    caller's ParallelFor; each task loops channel blocks outside pixel blocks, so a weight
//    panel is loaded once per chunk and reused from L1/L2. Small weights: pixels are split
//    first; weights over half of L2: large chunks, then channel groups, so the weights stream
//    from memory about once per call.
//      ref  : qu8_conv2d_minmax_fp32__ref, a direct loop, the oracle.
//      SIMD : implicit GEMM ("igemm"): for each block of MR output pixels the driver builds MR
//             input pointers per tap (a padded tap points at a row of zp_in bytes), and the
//             micro-kernel accumulates over taps × channels in registers, then runs the epilogue
//             in its store. No im2col buffer. If IC % 4 != 0 the driver first copies the input
//             with channels padded to a multiple of 4 (zero weights there).
//      avx2 : (no AVX-VNNI) weights with u8-safe pairs (Qu8PairsFitS16, qu8_gemm.h; tfq8's
//             quantizer produces them): the 6x16c4 kernel on the u8 input and the c4 blocks,
//             vpmaddubsw without saturation, through the c4 driver in 16-channel halves.
//             Otherwise the 6x16c2s16 kernel runs the implicit GEMM on u16 rows: 1×1
//             unpadded convs widen each task's input rows into a pooled buffer; small-IC
//             multi-tap convs (im2col16) gather each task's im2col rows from the u8 input,
//             widening on the fly; other convs zero-extend the whole input to u16 once per call
//             (a pooled buffer). With 1-2 output pixels (a batch-1 MatMul) the
//             2x32c4 kernel runs instead, on the s8 weights (half the bytes to stream).
//             3×3 stride-1 convs with 16 ≤ IC ≤ kWinogradMaxIc (TFQ8_WINOGRAD≠0): exact Winograd
//             F(2×2, 3×3) instead (qu8_winograd_f2x3_avx2.cc): per task the chunk's 2×2 output
//             tiles are transformed to 16 s16 rows each, the 6x16c2s16 kernel runs 16 GEMMs (one
//             per transform point ξ, weights U' = G'gG'ᵀ packed as 16 "taps") into s32, and the
//             output transform applies the fused epilogue. Integer transforms, so the result is
//             the direct conv's bit for bit, with 16 instead of 36 multiplies per tile and IC.
//      amx  : for each task's chunk of 32-pixel blocks the driver gathers the im2col rows into a
//             pooled buffer (or, for 1×1 stride-1 unpadded convs with IC % 64 == 0, points the
//             tiles straight at the input), then the AMX micro-kernel computes 32×32 tiles.
#ifndef TFQ8_KERNELS_CPU_CONV2D_H_
#define TFQ8_KERNELS_CPU_CONV2D_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "custom_ops/kernels/cpu/isa.h"
#include "custom_ops/kernels/cpu/parallel.h"
#include "custom_ops/kernels/cpu/qu8_gemm.h"

namespace tfq8 {

struct ConvShape {
  int64_t n = 1, h = 1, w = 1, ic = 1, oc = 1;
  int64_t kh = 1, kw = 1;
  int64_t stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  int64_t oh = 0, ow = 0;  // set by ComputeOutputSize()
  int64_t taps() const { return kh * kw; }
  int64_t pixels() const { return n * oh * ow; }
  // Returns false when the (dilated) window does not fit the padded input.
  bool ComputeOutputSize();
};

enum class ConvActivation { kNone, kRelu, kRelu6, kClip };

struct ConvEpilogueAttrs {
  float input_scale = 1.0f;
  int input_zero_point = 0;
  bool bias_is_int32 = false;
  const float* bias_f32 = nullptr;    // [OC] when !bias_is_int32
  const int32_t* bias_s32 = nullptr;  // [OC] when bias_is_int32
  const float* filter_scale = nullptr;
  bool per_tensor_scale = false;  // filter_scale has one element
  bool has_summand = false;
  float summand_scale = 1.0f;
  int summand_zero_point = 0;
  ConvActivation activation = ConvActivation::kNone;
  float clip_min = 0.0f, clip_max = 6.0f;
  QOutType out_type = QOutType::kU8;
  float output_scale = 1.0f;
  int output_zero_point = 0;
};

constexpr int64_t kConvNr = 32;  // output channels per packed block (all SIMD paths)

struct PackedConv {
  Isa isa = Isa::kRef;
  bool use_avxvnni = false;  // avx2 path: AVX-VNNI kernel instead of the widening one
  // avx2 without AVX-VNNI: the weights meet Qu8PairsFitS16 (and TFQ8_AVX2_U8≠0, read at
  // packing time), so the 6x16c4 kernel runs on `weights` and weights_s16 is not built.
  bool u8_pairs = false;
  ConvShape shape;           // kh, kw, ic, oc (spatial sizes are per call)
  int64_t oc_padded = 0;     // OC rounded up to kConvNr
  int64_t kc = 0;            // bytes of K per tap in the c4 layout (IC rounded up to 4)
  int64_t k_amx = 0;         // AMX: im2col K (taps·IC) rounded up to 64
  int64_t block_bytes = 0;   // bytes of one 32-channel weight block
  int32_t input_zero_point = 0;
  std::vector<int8_t> weights;  // layout per isa, see the file comment
  // avx2 without AVX-VNNI: the weights widened to s16 for the 6x16c2s16 kernel, per 16-channel
  // block [taps][kc16/2][16][2]; empty when that kernel is not used (TFQ8_AVX2_KERNEL=c4,
  // u8_pairs).
  // im2col16: small IC (< 16) with several taps: K runs over the im2col order tap·IC + ic
  // (rounded up to 2) as one "tap", and the driver gathers each pixel's window into a row.
  bool im2col16 = false;
  // 1×1 without padding: widen each task's rows of the input into a pooled buffer instead
  // of the whole input up front.
  bool pointwise16 = false;
  // false with TFQ8_AVX2_S16_DRIVER=v1 (read at packing time, for A/B timing only): 1×1 inputs
  // widened whole up front as before pointwise16 existed.
  bool tuned16 = true;
  int64_t kc16 = 0;              // u16 values of K per tap (IC, or taps·IC, rounded up to 2)
  int64_t block16 = 0;           // s16 elements of one 16-channel block
  std::vector<int16_t> weights_s16;
  // avx2 without AVX-VNNI, 3×3 stride 1, 16 ≤ IC ≤ kWinogradMaxIc (unless TFQ8_WINOGRAD=0):
  // exact Winograd F(2×2, 3×3) instead of weights_s16 (see qu8_winograd_f2x3_avx2.cc). The
  // transformed filter U' = G' g G'ᵀ, s16, per 16-channel block and ξ: [block][16 ξ][kc16/2]
  // [16 channels][2], i.e. the 6x16c2s16 kernel's layout with one "tap" per ξ.
  // Then `weights` is left empty: 2·16/9 bytes per weight instead of 2 (s16) + 1 (c4).
  bool winograd = false;
  std::vector<int16_t> weights_wino;
  std::vector<int32_t> bias;    // [oc_padded]
  std::vector<float> mul;       // [oc_padded]
  std::vector<float> badd;      // [oc_padded]
  QEpilogue ep;                 // clamp bounds, summand constants, output type
};

// Packs filter [KH, KW, IC, OC] for `isa`. Returns an error message (and nullptr) when a weight
// is -128.
std::shared_ptr<const PackedConv> PackConv(Isa isa, const ConvShape& s, const int8_t* filter,
                                           const ConvEpilogueAttrs& a, std::string* error);

// Whether PackConv may choose the Winograd path: false when TFQ8_WINOGRAD=0 (read per call, so
// op kernels key their packed-weight cache on it, like on the ISA).
bool WinogradAllowed();

// Whether PackConv may choose the 6x16c4 kernel for u8-safe weight pairs: false when
// TFQ8_AVX2_U8=0 (read per call; op kernels key their packed-weight cache on it).
bool U8PairsAllowed();

// Human-readable name of the implementation Conv2DRun picks (TFQ8_VERBOSE).
std::string ConvImplName(const PackedConv& p, const ConvShape& s);

// input: NHWC u8 [s.n, s.h, s.w, s.ic]; summand: u8 like the output or nullptr;
// output: [pixels, OC] of u8 / f32 / s32 per the packed epilogue.
void Conv2DRun(const PackedConv& p, const ConvShape& s, const uint8_t* input,
               const uint8_t* summand, void* output, const ParallelFor& pfor);

// The scalar reference: output pixels [p_begin, p_end) of the flattened N·OH·OW.
void qu8_conv2d_minmax_fp32__ref(const ConvShape& s, const uint8_t* input, const int8_t* filter,
                                 const PackedConv& p, const uint8_t* summand, void* output,
                                 int64_t p_begin, int64_t p_end);

}  // namespace tfq8

#endif  // TFQ8_KERNELS_CPU_CONV2D_H_
