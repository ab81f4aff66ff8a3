// INT8 pooling over NHWC u8: MaxPool, AvgPool (TF VALID/SAME; padded elements are ignored / not
// counted) and Mean (global average over H, W). Numerics: docs/int8_numerics.md ("Pooling"):
// max of the stored bytes; average q = (Σq + n/2) / n in integers, n = valid elements.
//
// Micro-kernels reduce `count` input pixels (pointers, each advanced by `offset` bytes) over
// `channels` channels into one output pixel; the drivers build the pointer lists (valid window
// elements only) and split work over the caller's ParallelFor.
#ifndef TFQ8_KERNELS_CPU_POOL_H_
#define TFQ8_KERNELS_CPU_POOL_H_

#include <cstddef>
#include <cstdint>

#include "custom_ops/kernels/cpu/isa.h"
#include "custom_ops/kernels/cpu/parallel.h"

namespace tfq8 {

struct PoolShape {
  int64_t n, h, w, c;
  int64_t kh, kw, stride_h, stride_w;
  int64_t pad_top, pad_left;  // SAME: TF's split (total / 2 before); VALID: 0
  int64_t oh, ow;
};

// Fills pad_*/oh/ow from the rest; false when a VALID window does not fit.
bool ComputePoolShape(bool same, PoolShape* s);

using PoolFn = void (*)(size_t channels, size_t count, const uint8_t* const* in, size_t offset,
                        uint8_t* out);

void qu8_maxpool_ukernel__ref(size_t channels, size_t count, const uint8_t* const* in,
                              size_t offset, uint8_t* out);
void qu8_maxpool_ukernel__avx2(size_t channels, size_t count, const uint8_t* const* in,
                               size_t offset, uint8_t* out);
void qu8_maxpool_ukernel__avx512(size_t channels, size_t count, const uint8_t* const* in,
                                 size_t offset, uint8_t* out);
// count must be >= 1.
void qu8_avgpool_ukernel__ref(size_t channels, size_t count, const uint8_t* const* in,
                              size_t offset, uint8_t* out);
void qu8_avgpool_ukernel__avx2(size_t channels, size_t count, const uint8_t* const* in,
                               size_t offset, uint8_t* out);
void qu8_avgpool_ukernel__avx512(size_t channels, size_t count, const uint8_t* const* in,
                                 size_t offset, uint8_t* out);

PoolFn GetMaxPoolKernel(Isa isa);
PoolFn GetAvgPoolKernel(Isa isa);

// The SIMD average kernels divide in f32, exact while count <= kMaxF32AvgCount (then
// Σq + n/2 + n < 2^24, so the rounded quotient never reaches the next integer); above it they
// use the integer reference.
constexpr size_t kMaxF32AvgCount = 65000;

// Whole-op drivers. Output: [N, OH, OW, C] (pool) or [N, C] (mean).
void MaxPoolRun(Isa isa, const PoolShape& s, const uint8_t* x, uint8_t* y, const ParallelFor& pf);
void AvgPoolRun(Isa isa, const PoolShape& s, const uint8_t* x, uint8_t* y, const ParallelFor& pf);
void MeanRun(Isa isa, int64_t n, int64_t h, int64_t w, int64_t c, const uint8_t* x, uint8_t* y,
             const ParallelFor& pf);

}  // namespace tfq8

#endif  // TFQ8_KERNELS_CPU_POOL_H_
