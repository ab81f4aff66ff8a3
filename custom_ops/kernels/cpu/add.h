// INT8 elementwise Add and Mul of two u8 tensors of one shape, each with its own (scale, zero
// point), requantized to the output. Numerics: docs/int8_numerics.md ("Add", "Mul"):
//   Add: t = float(a - zp_a)·float(s_a/s_out); u = float(b - zp_b)·float(s_b/s_out); t = t + u;
//        (optional ReLU/ReLU6) clamp to [lo, hi]; q = rne(t) + zp_out.
//   Mul: t = float((a - zp_a)·(b - zp_b))·float(s_a·s_b/s_out) (the integer product is exact,
//        |·| ≤ 255², and so is its float); clamp to [lo, hi]; q = rne(t) + zp_out.
#ifndef TFQ8_KERNELS_CPU_ADD_H_
#define TFQ8_KERNELS_CPU_ADD_H_

#include <cstddef>
#include <cstdint>

#include "custom_ops/kernels/cpu/isa.h"

namespace tfq8 {

enum class AddActivation { kNone, kRelu, kRelu6 };

// Parameters of both: Mul uses a_mul = s_a·s_b/s_out and ignores b_mul.
struct AddParams {
  int32_t a_zero_point, b_zero_point;
  float a_mul, b_mul;
  float lo, hi;
  int32_t out_zero_point;
};
AddParams MakeAddParams(float a_scale, int a_zero_point, float b_scale, int b_zero_point,
                        float out_scale, int out_zero_point, AddActivation activation);

using AddFn = void (*)(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y,
                       const AddParams& p);
void qu8_vadd_minmax_ukernel__ref(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y,
                                  const AddParams& p);
void qu8_vadd_minmax_ukernel__avx2(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y,
                                   const AddParams& p);
void qu8_vadd_minmax_ukernel__avx512(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y,
                                     const AddParams& p);
AddFn GetAddKernel(Isa isa);

AddParams MakeMulParams(float a_scale, int a_zero_point, float b_scale, int b_zero_point,
                        float out_scale, int out_zero_point);
void qu8_vmul_minmax_ukernel__ref(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y,
                                  const AddParams& p);
void qu8_vmul_minmax_ukernel__avx2(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y,
                                   const AddParams& p);
// AVX512 CPUs run the AVX2 kernel (an elementwise product is memory-bound).
AddFn GetMulKernel(Isa isa);

}  // namespace tfq8

#endif  // TFQ8_KERNELS_CPU_ADD_H_
