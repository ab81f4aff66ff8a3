// DEVICE_GPU kernels of every tfq8 op: read attrs and tensors, validate, call the framework-free
// CUDA C API (custom_ops/kernels/cuda/tfq8_cuda.h) on TF's GPU stream. No arithmetic here.
// Compiled only when the library is built with CUDA (TFQ8_WITH_CUDA, set by setup.py when nvcc
// is found, or by the Bazel cuda target); a CPU-only build sees an empty file.
//
// Memory placement: every input and output lives in device memory; no op needs a host value
// (shapes come from tensor metadata, scales from attributes; filter_scale and bias are read on the
// device by the preparation kernel), so no HostMemory() annotation is needed. Attributes are the
// same as the CPU kernels' (the op definitions are shared: custom_ops/ops/tfq8_ops.cc).
#if TFQ8_WITH_CUDA
#define EIGEN_USE_GPU

#include <mutex>
#include <string>
#include <vector>

#include "custom_ops/kernels/cuda/tfq8_cuda.h"
#include "custom_ops/tf/attrs.h"
#include "custom_ops/tf/common.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tfq8 {
namespace {

using ::tensorflow::DEVICE_GPU;
using ::tensorflow::OpInputList;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Status;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
namespace errors = ::tensorflow::errors;

static_assert(TFQ8_ACT_CLIP == static_cast<int>(EpilogueAttrs::Activation::kClip) &&
                  TFQ8_OUT_S32 == static_cast<int>(EpilogueAttrs::OutType::kS32),
              "CopyEpilogueAttrs casts the enums");

cudaStream_t GpuStream(OpKernelContext* ctx) { return ctx->eigen_gpu_device().stream(); }

Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return ::tensorflow::OkStatus();
  if (err == cudaErrorInvalidValue) {
    return errors::InvalidArgument(what, ": the CUDA kernel refused its arguments");
  }
  return errors::Internal(what, ": CUDA error ", static_cast<int>(err), " (",
                          cudaGetErrorString(err), ")");
}

int ActivationCode(const std::string& a) {
  if (a == "RELU") return TFQ8_ACT_RELU;
  if (a == "RELU6") return TFQ8_ACT_RELU6;
  if (a == "CLIP") return TFQ8_ACT_CLIP;
  return TFQ8_ACT_NONE;
}

// ---- Quantize / Dequantize / Requantize ---------------------------------------------------

class QuantizeGpuOp : public OpKernel {
 public:
  explicit QuantizeGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scale", &scale_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("zero_point", &zp_));
    OP_REQUIRES_OK(ctx, CheckQParams("", scale_, zp_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& in = ctx->input(0);
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.shape(), &out));
    OP_REQUIRES_OK(ctx, CudaStatus(tfq8_cuda_quantize(in.NumElements(), in.flat<float>().data(),
                                                      out->flat<uint8_t>().data(), scale_, zp_,
                                                      GpuStream(ctx)),
                                   "Tfq8Quantize"));
  }

 private:
  float scale_;
  int zp_;
};

class DequantizeGpuOp : public OpKernel {
 public:
  explicit DequantizeGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scale", &scale_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("zero_point", &zp_));
    OP_REQUIRES_OK(ctx, CheckQParams("", scale_, zp_));
    ::tensorflow::DataType t;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("T", &t));
    is_int32_ = t == ::tensorflow::DT_INT32;
    OP_REQUIRES(ctx, !is_int32_ || zp_ == 0,
                errors::InvalidArgument("Tfq8Dequantize of an int32 tensor needs zero_point 0, got ",
                                        zp_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& in = ctx->input(0);
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.shape(), &out));
    float* y = out->flat<float>().data();
    const cudaError_t err =
        is_int32_ ? tfq8_cuda_dequantize_s32(in.NumElements(), in.flat<int32_t>().data(), y,
                                             scale_, GpuStream(ctx))
                  : tfq8_cuda_dequantize_u8(in.NumElements(), in.flat<uint8_t>().data(), y,
                                            scale_, zp_, GpuStream(ctx));
    OP_REQUIRES_OK(ctx, CudaStatus(err, "Tfq8Dequantize"));
  }

 private:
  float scale_;
  int zp_;
  bool is_int32_;
};

class RequantizeGpuOp : public OpKernel {
 public:
  explicit RequantizeGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadInOutQParams(ctx, &q_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& in = ctx->input(0);
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.shape(), &out));
    OP_REQUIRES_OK(ctx, CudaStatus(tfq8_cuda_requantize(in.NumElements(),
                                                        in.flat<uint8_t>().data(),
                                                        out->flat<uint8_t>().data(), q_.in_scale,
                                                        q_.in_zero_point, q_.out_scale,
                                                        q_.out_zero_point, GpuStream(ctx)),
                                   "Tfq8Requantize"));
  }

 private:
  InOutQParams q_;
};

class LookupGpuOp : public OpKernel {
 public:
  explicit LookupGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}
  void Compute(OpKernelContext* ctx) override {
    const Tensor& in = ctx->input(0);
    const Tensor& table = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckLookupTable(name(), table));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.shape(), &out));
    OP_REQUIRES_OK(ctx, CudaStatus(tfq8_cuda_lookup(in.NumElements(), in.flat<uint8_t>().data(),
                                                    table.flat<uint8_t>().data(),
                                                    out->flat<uint8_t>().data(), GpuStream(ctx)),
                                   "Tfq8Lookup"));
  }
};

class ChannelMulGpuOp : public OpKernel {
 public:
  explicit ChannelMulGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadInOutQParams(ctx, &q_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& in = ctx->input(0);
    const Tensor& gate = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckChannelGate(name(), in, gate));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.shape(), &out));
    if (in.NumElements() == 0) return;
    const int64_t channels = in.dim_size(in.dims() - 1);
    const int64_t rows_per_sample = in.NumElements() / channels / in.dim_size(0);
    OP_REQUIRES_OK(ctx, CudaStatus(tfq8_cuda_channel_mul(
                            in.NumElements(), channels, rows_per_sample, gate.dim_size(0) != 1,
                            in.flat<uint8_t>().data(), gate.flat<float>().data(), q_.in_scale,
                            q_.in_zero_point, q_.out_scale, q_.out_zero_point,
                            out->flat<uint8_t>().data(), GpuStream(ctx)),
                        "Tfq8ChannelMul"));
  }

 private:
  InOutQParams q_;
};

// ---- Conv2D / DepthwiseConv2D / MatMul -----------------------------------------------------

enum class ConvKind { kConv, kDepthwise, kMatMul };

template <ConvKind kKind>
class ConvGpuOp : public OpKernel {
 public:
  explicit ConvGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    if (kKind != ConvKind::kMatMul) {
      WindowAttrs w;
      OP_REQUIRES_OK(ctx, ReadWindowAttrs(ctx, &w));
      strides_[0] = w.stride_h; strides_[1] = w.stride_w;
      dilations_[0] = w.dil_h; dilations_[1] = w.dil_w;
      pads_[0] = w.pad_top; pads_[1] = w.pad_bottom; pads_[2] = w.pad_left; pads_[3] = w.pad_right;
    }
    EpilogueAttrs ep;
    OP_REQUIRES_OK(ctx, ReadEpilogueAttrs(ctx, &ep));
    e_ = Tfq8Epilogue{};
    CopyEpilogueAttrs(ep, &e_);
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& input = ctx->input(0);
    const Tensor& filter = ctx->input(1);
    const Tensor& bias = ctx->input(2);
    const Tensor& filter_scale = ctx->input(3);
    OpInputList summands;
    OP_REQUIRES_OK(ctx, ctx->input_list("summand", &summands));

    Tfq8ConvShape s{};
    TensorShape out_shape;
    if (kKind == ConvKind::kMatMul) {
      OP_REQUIRES(ctx, input.dims() == 2 && filter.dims() == 2,
                  errors::InvalidArgument("Tfq8MatMul needs input [N, K] and filter [K, OC], got ",
                                          input.shape().DebugString(), " and ",
                                          filter.shape().DebugString()));
      OP_REQUIRES(ctx, input.dim_size(1) == filter.dim_size(0),
                  errors::InvalidArgument("input has ", input.dim_size(1),
                                          " columns but the filter has ", filter.dim_size(0),
                                          " rows"));
      tfq8_matmul_shape(input.dim_size(0), input.dim_size(1), filter.dim_size(1), &s);
      out_shape = TensorShape({s.n, s.oc});
    } else {
      OP_REQUIRES(ctx, input.dims() == 4 && filter.dims() == 4,
                  errors::InvalidArgument("input must be NHWC and filter [KH, KW, IC, OC/M], got ",
                                          input.shape().DebugString(), " and ",
                                          filter.shape().DebugString()));
      OP_REQUIRES(ctx, input.dim_size(3) == filter.dim_size(2),
                  errors::InvalidArgument("input has ", input.dim_size(3),
                                          " channels but the filter expects ",
                                          filter.dim_size(2)));
      s.n = input.dim_size(0); s.h = input.dim_size(1); s.w = input.dim_size(2);
      s.c = input.dim_size(3);
      s.kh = filter.dim_size(0); s.kw = filter.dim_size(1);
      s.depthwise = kKind == ConvKind::kDepthwise;
      s.oc = s.depthwise ? s.c * filter.dim_size(3) : filter.dim_size(3);
      s.stride_h = strides_[0]; s.stride_w = strides_[1];
      s.dilation_h = dilations_[0]; s.dilation_w = dilations_[1];
      s.pad_t = pads_[0]; s.pad_b = pads_[1]; s.pad_l = pads_[2]; s.pad_r = pads_[3];
      OP_REQUIRES(ctx, s.h > 0 && s.w > 0 && s.c > 0 && s.kh > 0 && s.kw > 0 && s.oc > 0,
                  errors::InvalidArgument("empty convolution dimensions"));
      OP_REQUIRES(ctx, tfq8_conv_shape_finish(&s) == 0,
                  errors::InvalidArgument("the filter window does not fit the padded input"));
      out_shape = TensorShape({s.n, s.oh, s.ow, s.oc});
    }
    OP_REQUIRES(ctx, bias.NumElements() == s.oc,
                errors::InvalidArgument("bias needs ", s.oc, " values, got ", bias.NumElements()));
    OP_REQUIRES(ctx, filter_scale.NumElements() == s.oc || filter_scale.NumElements() == 1,
                errors::InvalidArgument("filter_scale needs ", s.oc, " values or 1, got ",
                                        filter_scale.NumElements()));
    const uint8_t* summand = nullptr;
    if (e_.has_summand) {
      OP_REQUIRES(ctx, summands[0].shape() == out_shape,
                  errors::InvalidArgument("summand must have the output's shape ",
                                          out_shape.DebugString(), ", got ",
                                          summands[0].shape().DebugString()));
      summand = summands[0].flat<uint8_t>().data();
    }
    Tfq8Epilogue e = e_;
    e.per_channel = filter_scale.NumElements() == s.oc;

    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &out));
    if (out_shape.num_elements() == 0) return;
    Tensor workspace;  // a reference to the cached buffer, held until the run is enqueued
    OP_REQUIRES_OK(ctx, GetPrepared(ctx, s, e, filter, bias, filter_scale, &workspace));
    OP_REQUIRES_OK(ctx, CudaStatus(tfq8_cuda_conv2d_run(&s, &e, input.flat<uint8_t>().data(),
                                                        filter.flat<int8_t>().data(), summand,
                                                        out->data(),
                                                        workspace.flat<int8_t>().data(),
                                                        TFQ8_CONV_AUTO, GpuStream(ctx)),
                                   type_string().c_str()));
  }

 private:
  // The prepared workspace (packed weights + per-channel epilogue constants) of the last
  // (filter, bias, filter_scale) buffers, like the CPU kernels' packed-weight cache: graph
  // constants and variables keep their buffers, so the packing runs once instead of per call.
  // The entry holds references to the three tensors (their buffers cannot be freed and reused by
  // another tensor while cached); a weight updated in place in the same buffer is not detected
  // (as on the CPU). prepare is enqueued on the op's stream before the run that uses it; later
  // runs on that stream see it complete. Thread-safe: the lookup and the prepare run under mu_,
  // and a caller keeps its own reference to the workspace tensor, so replacing the entry cannot
  // free a buffer that an already looked-up run still uses.
  struct Prepared {
    bool valid = false;
    Tensor filter, bias, filter_scale, workspace;
    Tfq8ConvShape s{};
    int per_channel = 0;
  };

  static bool SamePacking(const Tfq8ConvShape& a, const Tfq8ConvShape& b) {
    return a.kh == b.kh && a.kw == b.kw && a.c == b.c && a.oc == b.oc &&
           a.dilation_h == b.dilation_h && a.dilation_w == b.dilation_w &&
           a.depthwise == b.depthwise;
  }

  Status GetPrepared(OpKernelContext* ctx, const Tfq8ConvShape& s, const Tfq8Epilogue& e,
                     const Tensor& filter, const Tensor& bias, const Tensor& filter_scale,
                     Tensor* workspace) {
    std::lock_guard<std::mutex> lock(mu_);
    Prepared& p = prepared_;
    if (p.valid && p.filter.data() == filter.data() && p.bias.data() == bias.data() &&
        p.filter_scale.data() == filter_scale.data() && p.filter.shape() == filter.shape() &&
        p.per_channel == e.per_channel && SamePacking(p.s, s)) {
      *workspace = p.workspace;
      return ::tensorflow::OkStatus();
    }
    p.valid = false;
    Tensor ws;
    TF_RETURN_IF_ERROR(ctx->allocate_temp(
        ::tensorflow::DT_INT8,
        TensorShape({static_cast<int64_t>(tfq8_cuda_conv2d_workspace_size(&s))}), &ws));
    TF_RETURN_IF_ERROR(CudaStatus(
        tfq8_cuda_conv2d_prepare(&s, &e, filter.flat<int8_t>().data(), bias.data(),
                                 filter_scale.flat<float>().data(), ws.flat<int8_t>().data(),
                                 GpuStream(ctx)),
        type_string().c_str()));
    p.filter = filter;
    p.bias = bias;
    p.filter_scale = filter_scale;
    p.workspace = ws;
    p.s = s;
    p.per_channel = e.per_channel;
    p.valid = true;
    *workspace = ws;
    return ::tensorflow::OkStatus();
  }

  int strides_[2] = {1, 1}, dilations_[2] = {1, 1}, pads_[4] = {0, 0, 0, 0};
  Tfq8Epilogue e_;
  std::mutex mu_;
  Prepared prepared_;
};

// ---- pooling -------------------------------------------------------------------------------

template <bool kMax>
class PoolGpuOp : public OpKernel {
 public:
  explicit PoolGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::vector<int32_t> ksize, strides;
    std::string padding;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("ksize", &ksize));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("strides", &strides));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("padding", &padding));
    OP_REQUIRES(ctx, ksize.size() == 2 && strides.size() == 2 && ksize[0] > 0 && ksize[1] > 0 &&
                         strides[0] > 0 && strides[1] > 0,
                errors::InvalidArgument("ksize and strides need 2 positive values [height, width]"));
    k_[0] = ksize[0]; k_[1] = ksize[1]; s_[0] = strides[0]; s_[1] = strides[1];
    same_ = padding == "SAME";
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& in = ctx->input(0);
    OP_REQUIRES(ctx, in.dims() == 4, errors::InvalidArgument("input must be NHWC"));
    Tfq8PoolShape p{};
    p.n = in.dim_size(0); p.h = in.dim_size(1); p.w = in.dim_size(2); p.c = in.dim_size(3);
    p.kh = k_[0]; p.kw = k_[1]; p.stride_h = s_[0]; p.stride_w = s_[1];
    OP_REQUIRES(ctx, same_ || (p.h >= p.kh && p.w >= p.kw),
                errors::InvalidArgument("VALID pooling window larger than the input"));
    tfq8_pool_shape_finish(&p, same_);
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({p.n, p.oh, p.ow, p.c}), &out));
    const uint8_t* x = in.flat<uint8_t>().data();
    uint8_t* y = out->flat<uint8_t>().data();
    OP_REQUIRES_OK(ctx, CudaStatus(kMax ? tfq8_cuda_max_pool(&p, x, y, GpuStream(ctx))
                                        : tfq8_cuda_avg_pool(&p, x, y, GpuStream(ctx)),
                                   type_string().c_str()));
  }

 private:
  int k_[2], s_[2];
  bool same_;
};

class MeanGpuOp : public OpKernel {
 public:
  explicit MeanGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("keep_dims", &keep_dims_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& in = ctx->input(0);
    OP_REQUIRES(ctx, in.dims() == 4, errors::InvalidArgument("input must be NHWC"));
    const int64_t n = in.dim_size(0), h = in.dim_size(1), w = in.dim_size(2), c = in.dim_size(3);
    OP_REQUIRES(ctx, h * w > 0, errors::InvalidArgument("Tfq8Mean of an empty image"));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(
                            0, keep_dims_ ? TensorShape({n, 1, 1, c}) : TensorShape({n, c}), &out));
    OP_REQUIRES_OK(ctx, CudaStatus(tfq8_cuda_mean(n, h, w, c, in.flat<uint8_t>().data(),
                                                  out->flat<uint8_t>().data(), GpuStream(ctx)),
                                   "Tfq8Mean"));
  }

 private:
  bool keep_dims_;
};

// ---- Concat / Add ----------------------------------------------------------------------------

class ConcatGpuOp : public OpKernel {
 public:
  explicit ConcatGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("axis", &axis_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("input_scales", &scales_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("input_zero_points", &zps_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("output_scale", &out_scale_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("output_zero_point", &out_zp_));
    int n;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("N", &n));
    OP_REQUIRES(ctx, static_cast<int>(scales_.size()) == n && static_cast<int>(zps_.size()) == n,
                errors::InvalidArgument("input_scales and input_zero_points need N = ", n,
                                        " values"));
    for (int i = 0; i < n; ++i) {
      OP_REQUIRES_OK(ctx, CheckQParams("input", scales_[i], zps_[i]));
    }
    OP_REQUIRES_OK(ctx, CheckQParams("output", out_scale_, out_zp_));
  }
  void Compute(OpKernelContext* ctx) override {
    OpInputList values;
    OP_REQUIRES_OK(ctx, ctx->input_list("values", &values));
    const TensorShape& first = values[0].shape();
    const int rank = first.dims();
    const int axis = axis_ < 0 ? axis_ + rank : axis_;
    OP_REQUIRES(ctx, axis >= 0 && axis < rank,
                errors::InvalidArgument("axis ", axis_, " is out of range for rank ", rank));
    std::vector<const uint8_t*> ptrs;
    std::vector<int64_t> lens;
    int64_t total = 0;
    for (int i = 0; i < values.size(); ++i) {
      const TensorShape& s = values[i].shape();
      OP_REQUIRES(ctx, s.dims() == rank, errors::InvalidArgument("concat inputs differ in rank"));
      for (int d = 0; d < rank; ++d) {
        OP_REQUIRES(ctx, d == axis || s.dim_size(d) == first.dim_size(d),
                    errors::InvalidArgument("concat input ", i, " has shape ", s.DebugString(),
                                            ", incompatible with ", first.DebugString()));
      }
      ptrs.push_back(values[i].flat<uint8_t>().data());
      lens.push_back(s.dim_size(axis));
      total += s.dim_size(axis);
    }
    TensorShape out_shape = first;
    out_shape.set_dim(axis, total);
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &out));
    if (out_shape.num_elements() == 0) return;
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < axis; ++d) outer *= first.dim_size(d);
    for (int d = axis + 1; d < rank; ++d) inner *= first.dim_size(d);
    OP_REQUIRES_OK(ctx, CudaStatus(tfq8_cuda_concat(static_cast<int>(ptrs.size()), ptrs.data(),
                                                    lens.data(), scales_.data(), zps_.data(),
                                                    outer, inner, out->flat<uint8_t>().data(),
                                                    out_scale_, out_zp_, GpuStream(ctx)),
                                   "Tfq8Concat"));
  }

 private:
  int axis_;
  std::vector<float> scales_;
  std::vector<int32_t> zps_;
  float out_scale_;
  int out_zp_;
};

class AddGpuOp : public OpKernel {
 public:
  explicit AddGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string activation;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("a_scale", &sa_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("a_zero_point", &za_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("b_scale", &sb_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("b_zero_point", &zb_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("output_scale", &so_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("output_zero_point", &zo_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("activation", &activation));
    OP_REQUIRES_OK(ctx, CheckQParams("a", sa_, za_));
    OP_REQUIRES_OK(ctx, CheckQParams("b", sb_, zb_));
    OP_REQUIRES_OK(ctx, CheckQParams("output", so_, zo_));
    act_ = ActivationCode(activation);
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& a = ctx->input(0);
    const Tensor& b = ctx->input(1);
    OP_REQUIRES(ctx, a.shape() == b.shape(),
                errors::InvalidArgument("Tfq8Add needs inputs of the same shape, got ",
                                        a.shape().DebugString(), " and ", b.shape().DebugString()));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, a.shape(), &out));
    OP_REQUIRES_OK(ctx, CudaStatus(tfq8_cuda_add(a.NumElements(), a.flat<uint8_t>().data(), sa_,
                                                 za_, b.flat<uint8_t>().data(), sb_, zb_,
                                                 out->flat<uint8_t>().data(), so_, zo_, act_,
                                                 GpuStream(ctx)),
                                   "Tfq8Add"));
  }

 private:
  float sa_, sb_, so_;
  int za_, zb_, zo_, act_;
};

REGISTER_KERNEL_BUILDER(Name("Tfq8Quantize").Device(DEVICE_GPU), QuantizeGpuOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8Dequantize").Device(DEVICE_GPU), DequantizeGpuOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8Requantize").Device(DEVICE_GPU), RequantizeGpuOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8Lookup").Device(DEVICE_GPU), LookupGpuOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8ChannelMul").Device(DEVICE_GPU), ChannelMulGpuOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8Conv2D").Device(DEVICE_GPU), ConvGpuOp<ConvKind::kConv>);
REGISTER_KERNEL_BUILDER(Name("Tfq8DepthwiseConv2D").Device(DEVICE_GPU),
                        ConvGpuOp<ConvKind::kDepthwise>);
REGISTER_KERNEL_BUILDER(Name("Tfq8MatMul").Device(DEVICE_GPU), ConvGpuOp<ConvKind::kMatMul>);
REGISTER_KERNEL_BUILDER(Name("Tfq8MaxPool").Device(DEVICE_GPU), PoolGpuOp<true>);
REGISTER_KERNEL_BUILDER(Name("Tfq8AvgPool").Device(DEVICE_GPU), PoolGpuOp<false>);
REGISTER_KERNEL_BUILDER(Name("Tfq8Mean").Device(DEVICE_GPU), MeanGpuOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8Concat").Device(DEVICE_GPU), ConcatGpuOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8Add").Device(DEVICE_GPU), AddGpuOp);

}  // namespace
}  // namespace tfq8

#endif  // TFQ8_WITH_CUDA
