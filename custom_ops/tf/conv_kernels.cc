// CPU kernels of Tfq8Conv2D and Tfq8MatMul (a 1×1 convolution over N "pixels"): read and
// validate attrs/tensors, pack the weights once per ISA (cached, thread-safe), call Conv2DRun.
#include <array>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "custom_ops/kernels/cpu/conv2d.h"
#include "custom_ops/tf/common.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"

namespace tfq8 {
namespace {

using ::tensorflow::DataType;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Status;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
namespace errors = ::tensorflow::errors;

// Packed weights of one ISA, and the input tensors they were made from. Holding the Tensors
// keeps their buffers alive, so a buffer address seen again is the same data.
struct CacheEntry {
  std::shared_ptr<const PackedConv> packed;
  Tensor filter, bias, filter_scale;
};

class QConvOpBase : public OpKernel {
 public:
  explicit QConvOpBase(OpKernelConstruction* ctx, bool matmul) : OpKernel(ctx), matmul_(matmul) {
    auto& a = attrs_;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("input_scale", &a.input_scale));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("input_zero_point", &a.input_zero_point));
    OP_REQUIRES_OK(ctx, CheckQParams("input", a.input_scale, a.input_zero_point));
    DataType tbias;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("Tbias", &tbias));
    a.bias_is_int32 = tbias == ::tensorflow::DT_INT32;
    int num_summand;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_summand", &num_summand));
    OP_REQUIRES(ctx, num_summand <= 1,
                errors::InvalidArgument("num_summand must be 0 or 1, got ", num_summand));
    a.has_summand = num_summand == 1;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("summand_scale", &a.summand_scale));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("summand_zero_point", &a.summand_zero_point));
    if (a.has_summand) {
      OP_REQUIRES_OK(ctx, CheckQParams("summand", a.summand_scale, a.summand_zero_point));
    }
    std::string act;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("activation", &act));
    a.activation = act == "RELU"    ? ConvActivation::kRelu
                   : act == "RELU6" ? ConvActivation::kRelu6
                   : act == "CLIP"  ? ConvActivation::kClip
                                    : ConvActivation::kNone;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("clip_min", &a.clip_min));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("clip_max", &a.clip_max));
    if (a.activation == ConvActivation::kClip) {
      OP_REQUIRES(ctx, std::isfinite(a.clip_min) && std::isfinite(a.clip_max) &&
                           a.clip_min <= a.clip_max,
                  errors::InvalidArgument("CLIP needs finite clip_min <= clip_max, got ",
                                          a.clip_min, " and ", a.clip_max));
    }
    DataType out_type;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("out_type", &out_type));
    a.out_type = out_type == ::tensorflow::DT_UINT8   ? QOutType::kU8
                 : out_type == ::tensorflow::DT_FLOAT ? QOutType::kF32
                                                      : QOutType::kS32;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("output_scale", &a.output_scale));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("output_zero_point", &a.output_zero_point));
    if (a.out_type == QOutType::kU8) {
      OP_REQUIRES_OK(ctx, CheckQParams("output", a.output_scale, a.output_zero_point));
    }
    if (a.out_type == QOutType::kS32) {
      OP_REQUIRES(ctx, a.activation == ConvActivation::kNone && !a.has_summand,
                  errors::InvalidArgument(
                      "out_type int32 returns the raw accumulator: it takes no activation "
                      "(got ", act, ") and no summand (num_summand = ", num_summand, ")"));
    }
    if (!matmul_) {
      std::vector<int32_t> strides, dilations, pads;
      OP_REQUIRES_OK(ctx, ctx->GetAttr("strides", &strides));
      OP_REQUIRES_OK(ctx, ctx->GetAttr("dilations", &dilations));
      OP_REQUIRES_OK(ctx, ctx->GetAttr("explicit_paddings", &pads));
      OP_REQUIRES(ctx, strides.size() == 2 && strides[0] > 0 && strides[1] > 0,
                  errors::InvalidArgument("strides must be 2 positive integers [height, width]"));
      OP_REQUIRES(ctx, dilations.size() == 2 && dilations[0] > 0 && dilations[1] > 0,
                  errors::InvalidArgument("dilations must be 2 positive integers [height, width]"));
      OP_REQUIRES(ctx, pads.size() == 4 && pads[0] >= 0 && pads[1] >= 0 && pads[2] >= 0 &&
                           pads[3] >= 0,
                  errors::InvalidArgument(
                      "explicit_paddings must be 4 integers >= 0 [top, bottom, left, right]"));
      geo_.stride_h = strides[0];
      geo_.stride_w = strides[1];
      geo_.dil_h = dilations[0];
      geo_.dil_w = dilations[1];
      geo_.pad_top = pads[0];
      geo_.pad_bottom = pads[1];
      geo_.pad_left = pads[2];
      geo_.pad_right = pads[3];
    }
  }

  void Compute(OpKernelContext* ctx) override {
    const char* op = matmul_ ? "Tfq8MatMul" : "Tfq8Conv2D";
    Isa isa;
    if (!GetIsa(ctx, &isa)) return;
    const Tensor& input = ctx->input(0);
    const Tensor& filter = ctx->input(1);
    const Tensor& bias = ctx->input(2);
    const Tensor& fscale = ctx->input(3);
    ConvShape s = geo_;
    if (matmul_) {
      OP_REQUIRES(ctx, input.dims() == 2,
                  errors::InvalidArgument(op, ": input must be rank 2 [N, K], got shape ",
                                          input.shape().DebugString()));
      OP_REQUIRES(ctx, filter.dims() == 2,
                  errors::InvalidArgument(op, ": filter must be rank 2 [K, OC], got shape ",
                                          filter.shape().DebugString()));
      s.n = input.dim_size(0);
      s.ic = input.dim_size(1);
      OP_REQUIRES(ctx, filter.dim_size(0) == s.ic,
                  errors::InvalidArgument(op, ": filter has ", filter.dim_size(0),
                                          " input rows but input has K = ", s.ic));
      s.oc = filter.dim_size(1);
    } else {
      OP_REQUIRES(ctx, input.dims() == 4,
                  errors::InvalidArgument(op, ": input must be rank 4 NHWC, got shape ",
                                          input.shape().DebugString()));
      OP_REQUIRES(ctx, filter.dims() == 4,
                  errors::InvalidArgument(op, ": filter must be rank 4 [KH, KW, IC, OC], got "
                                          "shape ", filter.shape().DebugString()));
      s.n = input.dim_size(0);
      s.h = input.dim_size(1);
      s.w = input.dim_size(2);
      s.ic = input.dim_size(3);
      s.kh = filter.dim_size(0);
      s.kw = filter.dim_size(1);
      s.oc = filter.dim_size(3);
      OP_REQUIRES(ctx, filter.dim_size(2) == s.ic,
                  errors::InvalidArgument(op, ": filter has ", filter.dim_size(2),
                                          " input channels but input has ", s.ic));
      OP_REQUIRES(ctx, s.kh > 0 && s.kw > 0,
                  errors::InvalidArgument(op, ": filter window must be non-empty, got shape ",
                                          filter.shape().DebugString()));
      OP_REQUIRES(ctx, s.ComputeOutputSize(),
                  errors::InvalidArgument(op, ": the ", s.kh, "x", s.kw, " filter (dilations ",
                                          s.dil_h, ", ", s.dil_w,
                                          ") does not fit the padded input of shape ",
                                          input.shape().DebugString()));
    }
    if (matmul_) {
      s.oh = s.ow = 1;
    }
    OP_REQUIRES(ctx, bias.dims() == 1 && bias.dim_size(0) == s.oc,
                errors::InvalidArgument(op, ": bias must have shape [", s.oc,
                                        "] (one value per output channel), got ",
                                        bias.shape().DebugString()));
    OP_REQUIRES(ctx, fscale.dims() == 1 && (fscale.dim_size(0) == 1 || fscale.dim_size(0) == s.oc),
                errors::InvalidArgument(op, ": filter_scale must have shape [1] or [", s.oc,
                                        "], got ", fscale.shape().DebugString()));
    TensorShape out_shape = matmul_ ? TensorShape({s.n, s.oc}) : TensorShape({s.n, s.oh, s.ow, s.oc});
    const uint8_t* summand = nullptr;
    if (attrs_.has_summand) {
      const Tensor& sm = ctx->input(4);
      OP_REQUIRES(ctx, sm.shape() == out_shape,
                  errors::InvalidArgument(op, ": summand must have the output's shape ",
                                          out_shape.DebugString(), ", got ",
                                          sm.shape().DebugString()));
      summand = sm.flat<uint8_t>().data();
    }
    std::shared_ptr<const PackedConv> packed;
    OP_REQUIRES_OK(ctx, GetPacked(ctx, isa, s, filter, bias, fscale, &packed));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &out));
    if (out->NumElements() == 0) return;
    Conv2DRun(*packed, s, input.flat<uint8_t>().data(), summand, out->data(), TfParallelFor(ctx));
  }

 private:
  Status GetPacked(OpKernelContext* ctx, Isa isa, const ConvShape& s, const Tensor& filter,
                   const Tensor& bias, const Tensor& fscale,
                   std::shared_ptr<const PackedConv>* out) {
    std::lock_guard<std::mutex> lock(mu_);
    CacheEntry& e = cache_[static_cast<int>(isa)];
    if (e.packed && e.filter.data() == filter.data() && e.bias.data() == bias.data() &&
        e.filter_scale.data() == fscale.data() && e.filter.shape() == filter.shape()) {
      *out = e.packed;
      return ::tensorflow::OkStatus();
    }
    const float* fs = fscale.flat<float>().data();
    for (int64_t i = 0; i < fscale.NumElements(); ++i) {
      if (!(fs[i] > 0.0f) || !std::isfinite(fs[i])) {
        return errors::InvalidArgument(name(), ": filter_scale must be finite and > 0, got ",
                                       fs[i], " at index ", i);
      }
    }
    ConvEpilogueAttrs a = attrs_;
    a.filter_scale = fs;
    a.per_tensor_scale = fscale.NumElements() == 1;
    if (a.bias_is_int32) {
      a.bias_s32 = bias.flat<int32_t>().data();
    } else {
      a.bias_f32 = bias.flat<float>().data();
    }
    std::string error;
    auto packed = PackConv(isa, s, filter.flat<int8_t>().data(), a, &error);
    if (!packed) return errors::InvalidArgument(name(), ": ", error);
    if (Verbose()) {
      std::fprintf(stderr, "tfq8: %s %s [%lldx%lldx%lldx%lld]: %s\n", type_string().c_str(),
                   name().c_str(), static_cast<long long>(s.kh), static_cast<long long>(s.kw),
                   static_cast<long long>(s.ic), static_cast<long long>(s.oc),
                   ConvImplName(*packed, s).c_str());
    }
    e.packed = packed;
    e.filter = filter;
    e.bias = bias;
    e.filter_scale = fscale;
    *out = packed;
    return ::tensorflow::OkStatus();
  }

  const bool matmul_;
  ConvEpilogueAttrs attrs_;
  ConvShape geo_;
  std::mutex mu_;
  std::array<CacheEntry, 4> cache_;
};

class Conv2DOp : public QConvOpBase {
 public:
  explicit Conv2DOp(OpKernelConstruction* ctx) : QConvOpBase(ctx, /*matmul=*/false) {}
};

class MatMulOp : public QConvOpBase {
 public:
  explicit MatMulOp(OpKernelConstruction* ctx) : QConvOpBase(ctx, /*matmul=*/true) {}
};

REGISTER_KERNEL_BUILDER(Name("Tfq8Conv2D").Device(::tensorflow::DEVICE_CPU), Conv2DOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8MatMul").Device(::tensorflow::DEVICE_CPU), MatMulOp);

}  // namespace
}  // namespace tfq8
