// Add and Mul: parameters, scalar references and the per-ISA tables.
#include <algorithm>
#include <cmath>

#include "custom_ops/kernels/cpu/add.h"

namespace tfq8 {

AddParams MakeAddParams(float a_scale, int a_zero_point, float b_scale, int b_zero_point,
                        float out_scale, int out_zero_point, AddActivation activation) {
  AddParams p;
  p.a_zero_point = a_zero_point;
  p.b_zero_point = b_zero_point;
  p.a_mul = static_cast<float>(static_cast<double>(a_scale) / static_cast<double>(out_scale));
  p.b_mul = static_cast<float>(static_cast<double>(b_scale) / static_cast<double>(out_scale));
  p.lo = static_cast<float>(-out_zero_point);
  p.hi = static_cast<float>(255 - out_zero_point);
  if (activation != AddActivation::kNone) p.lo = std::max(p.lo, 0.0f);
  if (activation == AddActivation::kRelu6) {
    p.hi = std::min(p.hi, static_cast<float>(6.0 / static_cast<double>(out_scale)));
  }
  p.out_zero_point = out_zero_point;
  return p;
}

void qu8_vadd_minmax_ukernel__ref(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y,
                                  const AddParams& p) {
  for (size_t i = 0; i < n; ++i) {
    float t = static_cast<float>(static_cast<int32_t>(a[i]) - p.a_zero_point) * p.a_mul;
    const float u = static_cast<float>(static_cast<int32_t>(b[i]) - p.b_zero_point) * p.b_mul;
    t = t + u;
    t = std::min(std::max(t, p.lo), p.hi);
    y[i] = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(t)) + p.out_zero_point);
  }
}

AddParams MakeMulParams(float a_scale, int a_zero_point, float b_scale, int b_zero_point,
                        float out_scale, int out_zero_point) {
  AddParams p;
  p.a_zero_point = a_zero_point;
  p.b_zero_point = b_zero_point;
  p.a_mul = static_cast<float>(static_cast<double>(a_scale) * static_cast<double>(b_scale) /
                               static_cast<double>(out_scale));
  p.b_mul = 0.0f;
  p.lo = static_cast<float>(-out_zero_point);
  p.hi = static_cast<float>(255 - out_zero_point);
  p.out_zero_point = out_zero_point;
  return p;
}

void qu8_vmul_minmax_ukernel__ref(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y,
                                  const AddParams& p) {
  for (size_t i = 0; i < n; ++i) {
    const int32_t prod = (static_cast<int32_t>(a[i]) - p.a_zero_point) *
                         (static_cast<int32_t>(b[i]) - p.b_zero_point);
    float t = static_cast<float>(prod) * p.a_mul;
    t = std::min(std::max(t, p.lo), p.hi);
    y[i] = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(t)) + p.out_zero_point);
  }
}

AddFn GetMulKernel(Isa isa) {
  switch (isa) {
    case Isa::kAmx:
    case Isa::kAvx512Vnni:
    case Isa::kAvx2: return qu8_vmul_minmax_ukernel__avx2;
    default: return qu8_vmul_minmax_ukernel__ref;
  }
}

AddFn GetAddKernel(Isa isa) {
  switch (isa) {
    case Isa::kAmx:
    case Isa::kAvx512Vnni: return qu8_vadd_minmax_ukernel__avx512;
    case Isa::kAvx2: return qu8_vadd_minmax_ukernel__avx2;
    default: return qu8_vadd_minmax_ukernel__ref;
  }
}

}  // namespace tfq8
