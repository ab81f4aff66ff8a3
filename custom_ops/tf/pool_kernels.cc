// CPU kernels of Tfq8MaxPool, Tfq8AvgPool and Tfq8Mean: validate, then run the pooling drivers
// (custom_ops/kernels/cpu/pool.h).
#include <string>
#include <vector>

#include "custom_ops/kernels/cpu/pool.h"
#include "custom_ops/tf/common.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"

namespace tfq8 {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
namespace errors = ::tensorflow::errors;

template <bool kMax>
class PoolOp : public OpKernel {
 public:
  explicit PoolOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::vector<int32_t> ksize, strides;
    std::string padding;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("ksize", &ksize));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("strides", &strides));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("padding", &padding));
    OP_REQUIRES(ctx, ksize.size() == 2 && ksize[0] >= 1 && ksize[1] >= 1,
                errors::InvalidArgument("ksize must be 2 positive integers [height, width], got ",
                                        ksize.size(), " values"));
    OP_REQUIRES(ctx, strides.size() == 2 && strides[0] >= 1 && strides[1] >= 1,
                errors::InvalidArgument("strides must be 2 positive integers [height, width], "
                                        "got ", strides.size(), " values"));
    OP_REQUIRES(ctx, padding == "VALID" || padding == "SAME",
                errors::InvalidArgument("padding must be VALID or SAME, got ", padding));
    same_ = padding == "SAME";
    shape_.kh = ksize[0];
    shape_.kw = ksize[1];
    shape_.stride_h = strides[0];
    shape_.stride_w = strides[1];
  }

  void Compute(OpKernelContext* ctx) override {
    Isa isa;
    if (!GetIsa(ctx, &isa)) return;
    const Tensor& in = ctx->input(0);
    OP_REQUIRES(ctx, in.dims() == 4,
                errors::InvalidArgument("input must be 4-D NHWC, got shape ",
                                        in.shape().DebugString()));
    PoolShape s = shape_;
    s.n = in.dim_size(0);
    s.h = in.dim_size(1);
    s.w = in.dim_size(2);
    s.c = in.dim_size(3);
    OP_REQUIRES(ctx, ComputePoolShape(same_, &s),
                errors::InvalidArgument("ksize [", s.kh, ", ", s.kw,
                                        "] is larger than the input's spatial size [", s.h, ", ",
                                        s.w, "] with VALID padding"));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({s.n, s.oh, s.ow, s.c}), &out));
    if (out->NumElements() == 0) return;
    const uint8_t* x = in.flat<uint8_t>().data();
    uint8_t* y = out->flat<uint8_t>().data();
    if (kMax) {
      MaxPoolRun(isa, s, x, y, TfParallelFor(ctx));
    } else {
      AvgPoolRun(isa, s, x, y, TfParallelFor(ctx));
    }
  }

 private:
  PoolShape shape_{};
  bool same_ = false;
};

class MeanOp : public OpKernel {
 public:
  explicit MeanOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("keep_dims", &keep_dims_));
  }

  void Compute(OpKernelContext* ctx) override {
    Isa isa;
    if (!GetIsa(ctx, &isa)) return;
    const Tensor& in = ctx->input(0);
    OP_REQUIRES(ctx, in.dims() == 4,
                errors::InvalidArgument("input must be 4-D NHWC, got shape ",
                                        in.shape().DebugString()));
    const int64_t n = in.dim_size(0), h = in.dim_size(1), w = in.dim_size(2), c = in.dim_size(3);
    OP_REQUIRES(ctx, h * w > 0 || n * c == 0,
                errors::InvalidArgument("Tfq8Mean needs a non-empty spatial extent, got input "
                                        "shape ", in.shape().DebugString()));
    const TensorShape shape = keep_dims_ ? TensorShape({n, 1, 1, c}) : TensorShape({n, c});
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, shape, &out));
    if (out->NumElements() == 0) return;
    MeanRun(isa, n, h, w, c, in.flat<uint8_t>().data(), out->flat<uint8_t>().data(),
            TfParallelFor(ctx));
  }

 private:
  bool keep_dims_ = false;
};

REGISTER_KERNEL_BUILDER(Name("Tfq8MaxPool").Device(::tensorflow::DEVICE_CPU), PoolOp<true>);
REGISTER_KERNEL_BUILDER(Name("Tfq8AvgPool").Device(::tensorflow::DEVICE_CPU), PoolOp<false>);
REGISTER_KERNEL_BUILDER(Name("Tfq8Mean").Device(::tensorflow::DEVICE_CPU), MeanOp);

}  // namespace
}  // namespace tfq8
