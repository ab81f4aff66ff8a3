// CPU kernels of Tfq8Quantize, Tfq8Dequantize, Tfq8Requantize, Tfq8Lookup: read attrs/tensors,
// call the elementwise micro-kernels in parallel chunks.
#include <cmath>

#include "custom_ops/kernels/cpu/elementwise.h"
#include "custom_ops/tf/common.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"

namespace tfq8 {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;

constexpr int64_t kChunk = 16384;  // elements per parallel task: large enough to amortize

template <typename Fn>
void ForChunks(OpKernelContext* ctx, int64_t n, Fn fn) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  TfParallelFor(ctx)(chunks, kChunk * 2, [&](int64_t b, int64_t e) {
    const int64_t begin = b * kChunk, end = std::min(n, e * kChunk);
    fn(begin, end - begin);
  });
}

class QuantizeOp : public OpKernel {
 public:
  explicit QuantizeOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    float scale;
    int zp;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scale", &scale));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("zero_point", &zp));
    OP_REQUIRES_OK(ctx, CheckQParams("", scale, zp));
    params_ = MakeQuantizeParams(scale, zp);
  }

  void Compute(OpKernelContext* ctx) override {
    Isa isa;
    if (!GetIsa(ctx, &isa)) return;
    const Tensor& in = ctx->input(0);
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.shape(), &out));
    const float* x = in.flat<float>().data();
    uint8_t* y = out->flat<uint8_t>().data();
    const QuantizeFn fn = GetQuantizeKernel(isa);
    ForChunks(ctx, in.NumElements(), [&](int64_t b, int64_t n) { fn(n, x + b, y + b, params_); });
  }

 private:
  QuantizeParams params_;
};

class DequantizeOp : public OpKernel {
 public:
  explicit DequantizeOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scale", &scale_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("zero_point", &zp_));
    OP_REQUIRES_OK(ctx, CheckQParams("", scale_, zp_));
    ::tensorflow::DataType t;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("T", &t));
    is_int32_ = t == ::tensorflow::DT_INT32;
    OP_REQUIRES(ctx, !is_int32_ || zp_ == 0,
                ::tensorflow::errors::InvalidArgument(
                    "Tfq8Dequantize of an int32 tensor needs zero_point 0, got ", zp_));
  }

  void Compute(OpKernelContext* ctx) override {
    Isa isa;
    if (!GetIsa(ctx, &isa)) return;
    const Tensor& in = ctx->input(0);
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.shape(), &out));
    float* y = out->flat<float>().data();
    if (is_int32_) {
      const int32_t* x = in.flat<int32_t>().data();
      ForChunks(ctx, in.NumElements(),
                [&](int64_t b, int64_t n) { s32_f32_vcvt_ukernel__ref(n, x + b, y + b, scale_); });
    } else {
      const uint8_t* x = in.flat<uint8_t>().data();
      const DequantizeU8Fn fn = GetDequantizeKernel(isa);
      ForChunks(ctx, in.NumElements(), [&](int64_t b, int64_t n) { fn(n, x + b, y + b, zp_, scale_); });
    }
  }

 private:
  float scale_;
  int zp_;
  bool is_int32_;
};

class RequantizeOp : public OpKernel {
 public:
  explicit RequantizeOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    float si, so;
    int zi, zo;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("input_scale", &si));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("input_zero_point", &zi));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("output_scale", &so));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("output_zero_point", &zo));
    OP_REQUIRES_OK(ctx, CheckQParams("input", si, zi));
    OP_REQUIRES_OK(ctx, CheckQParams("output", so, zo));
    params_ = MakeRequantizeParams(si, zi, so, zo);
  }

  void Compute(OpKernelContext* ctx) override {
    Isa isa;
    if (!GetIsa(ctx, &isa)) return;
    const Tensor& in = ctx->input(0);
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.shape(), &out));
    const uint8_t* x = in.flat<uint8_t>().data();
    uint8_t* y = out->flat<uint8_t>().data();
    const RequantizeFn fn = GetRequantizeKernel(isa);
    ForChunks(ctx, in.NumElements(), [&](int64_t b, int64_t n) { fn(n, x + b, y + b, params_); });
  }

 private:
  RequantizeParams params_;
};

class LookupOp : public OpKernel {
 public:
  explicit LookupOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& in = ctx->input(0);
    const Tensor& table = ctx->input(1);
    OP_REQUIRES(ctx, table.dims() == 1 && table.NumElements() == 256,
                ::tensorflow::errors::InvalidArgument(
                    "Tfq8Lookup ", name(), ": table must be a uint8 vector of 256 entries, got "
                    "shape ", table.shape().DebugString()));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.shape(), &out));
    const uint8_t* x = in.flat<uint8_t>().data();
    const uint8_t* t = table.flat<uint8_t>().data();
    uint8_t* y = out->flat<uint8_t>().data();
    ForChunks(ctx, in.NumElements(),
              [&](int64_t b, int64_t n) { qu8_vlut_ukernel__ref(n, x + b, y + b, t); });
  }
};

REGISTER_KERNEL_BUILDER(Name("Tfq8Lookup").Device(::tensorflow::DEVICE_CPU), LookupOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8Quantize").Device(::tensorflow::DEVICE_CPU), QuantizeOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8Dequantize").Device(::tensorflow::DEVICE_CPU), DequantizeOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8Requantize").Device(::tensorflow::DEVICE_CPU), RequantizeOp);

}  // namespace
}  // namespace tfq8
