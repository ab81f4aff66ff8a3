// INT8 Concat along any axis: each input is copied (identical scale and zero point) or
// requantized to the output's (docs/int8_numerics.md, "Requantize and Concat") with the
// elementwise requantize micro-kernels.
#ifndef TFQ8_KERNELS_CPU_CONCAT_H_
#define TFQ8_KERNELS_CPU_CONCAT_H_

#include <cstdint>
#include <vector>

#include "custom_ops/kernels/cpu/elementwise.h"
#include "custom_ops/kernels/cpu/isa.h"
#include "custom_ops/kernels/cpu/parallel.h"

namespace tfq8 {

struct ConcatInput {
  const uint8_t* data;
  int64_t inner;            // elements per outer index: dim(axis) × Π dims after axis
  bool copy;                // qparams equal the output's: memcpy
  RequantizeParams params;  // used when !copy
};

// Output viewed as [outer, Σ inner]: row r is the inputs' rows r one after another.
void ConcatRun(Isa isa, int64_t outer, const std::vector<ConcatInput>& inputs, uint8_t* y,
               const ParallelFor& pf);

}  // namespace tfq8

#endif  // TFQ8_KERNELS_CPU_CONCAT_H_
