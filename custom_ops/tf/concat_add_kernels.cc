// CPU kernels of Tfq8Concat, Tfq8Add and Tfq8Mul: validate, then run the framework-free kernels
// (custom_ops/kernels/cpu/concat.h, add.h).
#include <algorithm>
#include <string>
#include <vector>

#include "custom_ops/kernels/cpu/add.h"
#include "custom_ops/kernels/cpu/concat.h"
#include "custom_ops/tf/common.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"

namespace tfq8 {
namespace {

using ::tensorflow::OpInputList;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
namespace errors = ::tensorflow::errors;

class ConcatOp : public OpKernel {
 public:
  explicit ConcatOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    int n;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("N", &n));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("axis", &axis_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("input_scales", &scales_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("input_zero_points", &zps_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("output_scale", &out_scale_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("output_zero_point", &out_zp_));
    OP_REQUIRES(ctx, static_cast<int>(scales_.size()) == n,
                errors::InvalidArgument("input_scales must have one entry per input (N = ", n,
                                        "), got ", scales_.size()));
    OP_REQUIRES(ctx, static_cast<int>(zps_.size()) == n,
                errors::InvalidArgument("input_zero_points must have one entry per input (N = ",
                                        n, "), got ", zps_.size()));
    for (int i = 0; i < n; ++i) {
      OP_REQUIRES_OK(ctx, CheckQParams("input_" + std::to_string(i), scales_[i], zps_[i]));
    }
    OP_REQUIRES_OK(ctx, CheckQParams("output", out_scale_, out_zp_));
  }

  void Compute(OpKernelContext* ctx) override {
    Isa isa;
    if (!GetIsa(ctx, &isa)) return;
    OpInputList values;
    OP_REQUIRES_OK(ctx, ctx->input_list("values", &values));
    const Tensor& first = values[0];
    const int rank = first.dims();
    OP_REQUIRES(ctx, rank >= 1,
                errors::InvalidArgument("values must have rank >= 1 to concatenate, got a "
                                        "scalar"));
    OP_REQUIRES(ctx, axis_ >= -rank && axis_ < rank,
                errors::InvalidArgument("axis ", axis_, " is out of range for rank ", rank));
    const int axis = axis_ < 0 ? axis_ + rank : axis_;
    TensorShape out_shape = first.shape();
    int64_t axis_total = 0;
    for (int i = 0; i < values.size(); ++i) {
      const Tensor& v = values[i];
      OP_REQUIRES(ctx, v.dims() == rank,
                  errors::InvalidArgument("values[", i, "] has rank ", v.dims(),
                                          " but values[0] has rank ", rank));
      for (int d = 0; d < rank; ++d) {
        OP_REQUIRES(ctx, d == axis || v.dim_size(d) == first.dim_size(d),
                    errors::InvalidArgument("values[", i, "] has shape ",
                                            v.shape().DebugString(), ", which differs from values[0] ",
                                            first.shape().DebugString(), " outside axis ", axis));
      }
      axis_total += v.dim_size(axis);
    }
    out_shape.set_dim(axis, axis_total);
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &out));
    if (out->NumElements() == 0) return;
    int64_t outer = 1, after = 1;
    for (int d = 0; d < axis; ++d) outer *= first.dim_size(d);
    for (int d = axis + 1; d < rank; ++d) after *= first.dim_size(d);
    std::vector<ConcatInput> inputs(values.size());
    for (int i = 0; i < values.size(); ++i) {
      inputs[i].data = values[i].flat<uint8_t>().data();
      inputs[i].inner = values[i].dim_size(axis) * after;
      inputs[i].copy = scales_[i] == out_scale_ && zps_[i] == out_zp_;
      inputs[i].params = MakeRequantizeParams(scales_[i], zps_[i], out_scale_, out_zp_);
    }
    ConcatRun(isa, outer, inputs, out->flat<uint8_t>().data(), TfParallelFor(ctx));
  }

 private:
  int axis_ = 0;
  std::vector<float> scales_;
  std::vector<int> zps_;
  float out_scale_ = 1.0f;
  int out_zp_ = 0;
};

// Tfq8Add (kMul false) and Tfq8Mul (kMul true): the same qparams attributes, the same
// chunked loop over a flat pair of equal-shape tensors; only the micro-kernel differs.
template <bool kMul>
class BinaryOp : public OpKernel {
 public:
  explicit BinaryOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    float sa, sb, so;
    int za, zb, zo;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("a_scale", &sa));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("a_zero_point", &za));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("b_scale", &sb));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("b_zero_point", &zb));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("output_scale", &so));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("output_zero_point", &zo));
    OP_REQUIRES_OK(ctx, CheckQParams("a", sa, za));
    OP_REQUIRES_OK(ctx, CheckQParams("b", sb, zb));
    OP_REQUIRES_OK(ctx, CheckQParams("output", so, zo));
    if (kMul) {
      params_ = MakeMulParams(sa, za, sb, zb, so, zo);
      return;
    }
    std::string act;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("activation", &act));
    AddActivation a = AddActivation::kNone;
    if (act == "RELU") a = AddActivation::kRelu;
    else if (act == "RELU6") a = AddActivation::kRelu6;
    else OP_REQUIRES(ctx, act == "NONE", errors::InvalidArgument("unknown activation ", act));
    params_ = MakeAddParams(sa, za, sb, zb, so, zo, a);
  }

  void Compute(OpKernelContext* ctx) override {
    Isa isa;
    if (!GetIsa(ctx, &isa)) return;
    const Tensor& a = ctx->input(0);
    const Tensor& b = ctx->input(1);
    OP_REQUIRES(ctx, a.shape() == b.shape(),
                errors::InvalidArgument("a and b must have the same shape (no broadcasting), got ",
                                        a.shape().DebugString(), " and ", b.shape().DebugString()));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, a.shape(), &out));
    const int64_t n = a.NumElements();
    if (n == 0) return;
    const uint8_t* pa = a.flat<uint8_t>().data();
    const uint8_t* pb = b.flat<uint8_t>().data();
    uint8_t* y = out->flat<uint8_t>().data();
    const AddFn fn = kMul ? GetMulKernel(isa) : GetAddKernel(isa);
    constexpr int64_t kChunk = 16384;
    TfParallelFor(ctx)((n + kChunk - 1) / kChunk, kChunk * 2, [&](int64_t b0, int64_t e0) {
      const int64_t begin = b0 * kChunk, end = std::min(n, e0 * kChunk);
      fn(static_cast<size_t>(end - begin), pa + begin, pb + begin, y + begin, params_);
    });
  }

 private:
  AddParams params_;
};

REGISTER_KERNEL_BUILDER(Name("Tfq8Concat").Device(::tensorflow::DEVICE_CPU), ConcatOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8Add").Device(::tensorflow::DEVICE_CPU), BinaryOp<false>);
REGISTER_KERNEL_BUILDER(Name("Tfq8Mul").Device(::tensorflow::DEVICE_CPU), BinaryOp<true>);

}  // namespace
}  // namespace tfq8
