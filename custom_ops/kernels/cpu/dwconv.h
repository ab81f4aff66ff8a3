// INT8 depthwise convolution (NHWC u8 input, filter [KH, KW, C, M] s8, output channel c*M+m)
// with the fused epilogue of docs/int8_numerics.md ("Convolution, depthwise convolution").
//
// Pieces, framework-free:
//  * DwEpilogue: the per-output-channel constants (packed bias, mul, badd) and the clamp bounds,
//    computed once from the attributes and the bias/filter_scale tensors (MakeDwEpilogue).
//  * qu8_dwconv_ref: the scalar reference, any M, any shape; the oracle of the SIMD paths.
//  * Per-ISA micro-kernels for M = 1: qu8_dwconv_minmax_fp32_ukernel_c64__avx512vnni (4 taps per
//    vpdpbusd) and ..._c32__avx2 (2 taps per vpmaddwd). Each computes `pixels` output pixels of one
//    row from an indirection buffer of KH*KW input pointers per pixel (padded taps point at a
//    row of zp_in bytes), with weights packed by the matching Pack* function.
//  * DwConvRun: the driver (builds indirection rows, splits work over ParallelFor).
#ifndef TFQ8_KERNELS_CPU_DWCONV_H_
#define TFQ8_KERNELS_CPU_DWCONV_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "custom_ops/kernels/cpu/isa.h"
#include "custom_ops/kernels/cpu/parallel.h"

namespace tfq8 {

enum class DwActivation { kNone, kRelu, kRelu6, kClip };
enum class DwOutType { kU8, kF32, kS32 };

struct DwConvShape {
  int64_t n, h, w, c, m;    // input NHWC, depth multiplier
  int64_t kh, kw;
  int64_t stride_h, stride_w, dil_h, dil_w;
  int64_t pad_top, pad_bottom, pad_left, pad_right;
  int64_t oh, ow;           // derived by ComputeOutputSize()
  int64_t oc() const { return c * m; }
  int64_t taps() const { return kh * kw; }
  // Returns false when the (dilated) window does not fit the padded input.
  bool ComputeOutputSize();
};

// Epilogue attributes as the op receives them.
struct DwEpilogueAttrs {
  float input_scale = 1.0f;
  int input_zero_point = 0;
  bool bias_is_int32 = false;
  const float* bias_f32 = nullptr;    // [OC] when !bias_is_int32
  const int32_t* bias_s32 = nullptr;  // [OC] when bias_is_int32
  const float* filter_scale = nullptr;
  bool per_tensor_scale = false;      // filter_scale has one element
  bool has_summand = false;
  float summand_scale = 1.0f;
  int summand_zero_point = 0;
  DwActivation activation = DwActivation::kNone;
  float clip_min = 0.0f, clip_max = 6.0f;
  DwOutType out_type = DwOutType::kU8;
  float output_scale = 1.0f;
  int output_zero_point = 0;
};

// Per-output-channel constants, natural channel order.
struct DwEpilogue {
  DwOutType out_type = DwOutType::kU8;
  bool has_summand = false;
  std::vector<int32_t> bias;  // -zp_in·Σw[c] + int32 bias (or rne(f32 bias/(s_in·s_w)) for s32 out)
  std::vector<float> mul;     // s_in·s_w[c]/s_out
  std::vector<float> badd;    // f32 bias / s_out, else 0
  float lo = 0, hi = 255;     // clamp bounds in output units
  float mul_s = 1;            // s_summand / s_out
  int32_t zp_summand = 0;
  int32_t zp_out = 0;
};

// filter: [KH, KW, C, M] int8.
DwEpilogue MakeDwEpilogue(const DwConvShape& s, const int8_t* filter, const DwEpilogueAttrs& a);

// Scalar reference over the whole tensor (rows [row_begin, row_end) of the N*OH output rows).
// summand: u8 shaped like the output or nullptr; output: u8 / f32 / s32 per ep.out_type.
void qu8_dwconv_ref(const DwConvShape& s, const uint8_t* input, const int8_t* filter,
                    const DwEpilogue& ep, int32_t input_zero_point, const uint8_t* summand,
                    void* output, int64_t row_begin, int64_t row_end);

// ---- SIMD micro-kernels (M = 1) ----------------------------------------------------------
// Within each group of 16 channels the accumulators hold channels in the order the byte
// unpacks produce: register j of a 128-bit lane k holds channels 16k+4j .. 16k+4j+3. Packed
// per-channel constants follow that order; outputs are stored in natural order.
struct DwMicroParams {
  float lo, hi, mul_s;
  int32_t zp_summand, zp_out;
  DwOutType out_type;
};

// input: pixels*taps pointers (each to C channels of one input pixel); summand/output advance by
// C elements per pixel. packed: from PackDwWeights for the same ISA.
using DwMicroKernelFn = void (*)(size_t channels, size_t pixels, size_t taps,
                                 const uint8_t* const* input, const void* packed,
                                 const DwMicroParams& p, const uint8_t* summand, void* output);

void qu8_dwconv_minmax_fp32_ukernel_c64__avx512vnni(size_t channels, size_t pixels, size_t taps,
                                                    const uint8_t* const* input, const void* packed,
                                                    const DwMicroParams& p,
                                                    const uint8_t* summand, void* output);
void qu8_dwconv_minmax_fp32_ukernel_c32__avx2(size_t channels, size_t pixels, size_t taps,
                                              const uint8_t* const* input, const void* packed,
                                              const DwMicroParams& p, const uint8_t* summand,
                                              void* output);

// AVX2, 9 taps, C % 16 == 0, u8 output, no summand: `pixels` output pixels whose taps are
// first[t] + px·step (a run of pixels whose windows lie inside the input: no indirection rows).
void qu8_dwconv9_minmax_fp32_ukernel_u8_strided__avx2(size_t channels, size_t pixels,
                                                      const uint8_t* const* first, size_t step,
                                                      const void* packed, const DwMicroParams& p,
                                                      void* output);

// Packed weights for one ISA: per block of `block` channels: int32 bias[block] | f32 mul[block]
// | f32 badd[block] | weights (tap groups of `group` taps, s8 quads (avx512vnni) or s16 pairs
// (avx2), zero-padded). Channels in the permuted order above.
// Not copyable: `offset` aligns this object's own buffer (a move keeps the buffer, so it is fine).
struct DwPacked {
  DwPacked() = default;
  DwPacked(const DwPacked&) = delete;
  DwPacked& operator=(const DwPacked&) = delete;
  DwPacked(DwPacked&&) = default;
  DwPacked& operator=(DwPacked&&) = default;

  Isa isa = Isa::kRef;
  std::vector<uint8_t> bytes;  // 64-byte aligned view via data()
  size_t offset = 0;           // alignment offset into bytes
  const void* data() const { return bytes.data() + offset; }
};
// Returns false (leaving `out` empty) when `isa` has no micro-kernel for this shape (M != 1).
bool PackDwWeights(Isa isa, const DwConvShape& s, const int8_t* filter, const DwEpilogue& ep,
                   DwPacked* out);

// Runs the whole op: the SIMD micro-kernel of packed->isa, or the reference when packed is
// null or of isa kRef. zero_row: C bytes of zp_in (padded taps read it).
void DwConvRun(const DwConvShape& s, const uint8_t* input, const int8_t* filter,
               const DwEpilogue& ep, int32_t input_zero_point, const DwPacked* packed,
               const uint8_t* summand, void* output, const ParallelFor& pfor);

}  // namespace tfq8

#endif  // TFQ8_KERNELS_CPU_DWCONV_H_
