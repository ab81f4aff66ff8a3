// CPU kernels of Tfq8Quantize, Tfq8Dequantize, Tfq8Requantize, Tfq8Lookup, Tfq8ChannelMul and
// Tfq8LayerNorm: read attrs/tensors, call the elementwise micro-kernels in parallel chunks.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "custom_ops/kernels/cpu/elementwise.h"
#include "custom_ops/kernels/cpu/layernorm.h"
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

// A uint8 → uint8 op of the input's shape: allocates output 0 and runs fn(n, x, y) over chunks.
template <typename Fn>
void MapU8(OpKernelContext* ctx, const Tensor& in, Fn fn) {
  Tensor* out = nullptr;
  OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.shape(), &out));
  const uint8_t* x = in.flat<uint8_t>().data();
  uint8_t* y = out->flat<uint8_t>().data();
  ForChunks(ctx, in.NumElements(), [&](int64_t b, int64_t n) { fn(n, x + b, y + b); });
}

// Runs quantize(begin, count) → "saw a NaN" over chunks of `in`. INT8 has no NaN: with
// check_nan the op fails, naming itself, since the FP32 model would have answered NaN.
template <typename Fn>
void QuantizeChunks(OpKernelContext* ctx, const Tensor& in, bool check_nan, const char* op,
                    Fn quantize) {
  std::atomic<bool> nan{false};
  ForChunks(ctx, in.NumElements(), [&](int64_t b, int64_t n) {
    if (quantize(b, n)) nan.store(true, std::memory_order_relaxed);
  });
  OP_REQUIRES(ctx, !check_nan || !nan.load(),
              ::tensorflow::errors::InvalidArgument(
                  ctx->op_kernel().name(), " (", op, "): input ", in.shape().DebugString(),
                  " contains NaN; INT8 has no NaN, and the FP32 model would have produced NaN "
                  "too. Check the data fed to the model (or what produces this tensor), or set "
                  "check_nan=false to map NaN to the lowest code."));
}

class QuantizeOp : public OpKernel {
 public:
  explicit QuantizeOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    float scale;
    int zp;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scale", &scale));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("zero_point", &zp));
    OP_REQUIRES_OK(ctx, CheckQParams("", scale, zp));
    // SavedModels written before the attribute existed get its default (checked).
    if (ctx->HasAttr("check_nan")) OP_REQUIRES_OK(ctx, ctx->GetAttr("check_nan", &check_nan_));
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
    QuantizeChunks(ctx, in, check_nan_, "Tfq8Quantize",
                   [&](int64_t b, int64_t n) { return fn(n, x + b, y + b, params_); });
  }

 private:
  QuantizeParams params_;
  bool check_nan_ = true;
};

class QuantizeChannelsOp : public OpKernel {
 public:
  explicit QuantizeChannelsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    float scale;
    int zp;
    std::vector<float> mul, add;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scale", &scale));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("zero_point", &zp));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("channel_mul", &mul));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("channel_add", &add));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("check_nan", &check_nan_));
    OP_REQUIRES_OK(ctx, CheckQParams("", scale, zp));
    OP_REQUIRES(ctx, !mul.empty() && mul.size() == add.size() && mul.size() <= 65536,
                ::tensorflow::errors::InvalidArgument(
                    name(), " (Tfq8QuantizeChannels): channel_mul and channel_add need the same "
                    "length, 1 to 65536, got ", mul.size(), " and ", add.size()));
    for (size_t c = 0; c < mul.size(); ++c) {
      const double m = static_cast<double>(mul[c]) / scale, a = static_cast<double>(add[c]) / scale;
      OP_REQUIRES(ctx, std::isfinite(m) && std::isfinite(a) && std::fabs(m) < 3e38 &&
                           std::fabs(a) < 3e38,
                  ::tensorflow::errors::InvalidArgument(
                      name(), " (Tfq8QuantizeChannels): channel ", c, ": channel_mul ", mul[c],
                      " / channel_add ", add[c], " over scale ", scale, " is not a finite f32"));
    }
    params_ = MakeQuantizeChannelsParams(scale, zp, mul, add);
  }

  void Compute(OpKernelContext* ctx) override {
    Isa isa;
    if (!GetIsa(ctx, &isa)) return;
    const Tensor& in = ctx->input(0);
    const int64_t channels = params_.channels;
    OP_REQUIRES(ctx, channels == 1 || (in.dims() >= 1 && in.dim_size(in.dims() - 1) == channels),
                ::tensorflow::errors::InvalidArgument(
                    name(), " (Tfq8QuantizeChannels): the input's last dimension must be ",
                    channels, " (the length of channel_mul), got shape ",
                    in.shape().DebugString()));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.shape(), &out));
    const float* x = in.flat<float>().data();
    uint8_t* y = out->flat<uint8_t>().data();
    const QuantizeChannelsFn fn = GetQuantizeChannelsKernel(isa);
    QuantizeChunks(ctx, in, check_nan_, "Tfq8QuantizeChannels", [&](int64_t b, int64_t n) {
      return fn(n, static_cast<size_t>(b % params_.period), x + b, y + b, params_);
    });
  }

 private:
  QuantizeChannelsParams params_;
  bool check_nan_ = true;
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
    InOutQParams q;
    OP_REQUIRES_OK(ctx, ReadInOutQParams(ctx, &q));
    params_ = MakeRequantizeParams(q.in_scale, q.in_zero_point, q.out_scale, q.out_zero_point);
  }

  void Compute(OpKernelContext* ctx) override {
    Isa isa;
    if (!GetIsa(ctx, &isa)) return;
    const RequantizeFn fn = GetRequantizeKernel(isa);
    MapU8(ctx, ctx->input(0),
          [&](int64_t n, const uint8_t* x, uint8_t* y) { fn(n, x, y, params_); });
  }

 private:
  RequantizeParams params_;
};

class LookupOp : public OpKernel {
 public:
  explicit LookupOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    Isa isa;
    if (!GetIsa(ctx, &isa)) return;
    const Tensor& table = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckLookupTable(name(), table));
    const uint8_t* t = table.flat<uint8_t>().data();
    const LutFn fn = GetLookupKernel(isa);
    MapU8(ctx, ctx->input(0), [&](int64_t n, const uint8_t* x, uint8_t* y) { fn(n, x, y, t); });
  }
};

class ChannelMulOp : public OpKernel {
 public:
  explicit ChannelMulOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    InOutQParams q;
    OP_REQUIRES_OK(ctx, ReadInOutQParams(ctx, &q));
    params_ = MakeRequantizeParams(q.in_scale, q.in_zero_point, q.out_scale, q.out_zero_point);
  }

  void Compute(OpKernelContext* ctx) override {
    Isa isa;
    if (!GetIsa(ctx, &isa)) return;
    const Tensor& in = ctx->input(0);
    const Tensor& gate = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckChannelGate(name(), in, gate));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.shape(), &out));
    const int64_t channels = in.dim_size(in.dims() - 1);
    if (in.NumElements() == 0) return;
    // One multiplier row per gate row; each sample's rows then run as plain requantize rows.
    std::vector<float> mult(gate.NumElements());
    ChannelMulMultipliers(mult.size(), gate.flat<float>().data(), params_, mult.data());
    const int64_t rows = in.NumElements() / channels;
    const int64_t rows_per_sample = rows / in.dim_size(0);
    const bool per_sample = gate.dim_size(0) != 1;
    const uint8_t* x = in.flat<uint8_t>().data();
    uint8_t* y = out->flat<uint8_t>().data();
    const ChannelMulFn fn = GetChannelMulKernel(isa);
    const int64_t grain = std::max<int64_t>(1, kChunk / channels);  // rows per task
    const int64_t tasks = (rows + grain - 1) / grain;
    TfParallelFor(ctx)(tasks, kChunk * 2, [&](int64_t b, int64_t e) {
      for (int64_t r = b * grain, end = std::min(rows, e * grain); r < end;) {
        const int64_t n = r / rows_per_sample;
        const int64_t stop = std::min(end, (n + 1) * rows_per_sample);  // same sample
        const float* m = mult.data() + (per_sample ? n * channels : 0);
        fn(stop - r, channels, x + r * channels, m, y + r * channels, params_);
        r = stop;
      }
    });
  }

 private:
  RequantizeParams params_;
};

class LayerNormOp : public OpKernel {
 public:
  explicit LayerNormOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    InOutQParams q;
    OP_REQUIRES_OK(ctx, ReadInOutQParams(ctx, &q));
    float epsilon;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("epsilon", &epsilon));
    OP_REQUIRES(ctx, epsilon >= 0.0f && std::isfinite(epsilon),
                ::tensorflow::errors::InvalidArgument("epsilon must be a finite number >= 0, got ",
                                                      epsilon));
    params_ = MakeLayerNormParams(q.in_scale, q.out_scale, q.out_zero_point, epsilon);
  }

  void Compute(OpKernelContext* ctx) override {
    Isa isa;
    if (!GetIsa(ctx, &isa)) return;
    const Tensor& in = ctx->input(0);
    const Tensor& gamma = ctx->input(1);
    const Tensor& beta = ctx->input(2);
    OP_REQUIRES(ctx, in.dims() >= 1,
                ::tensorflow::errors::InvalidArgument(name(), ": input must have rank >= 1"));
    const int64_t channels = in.dim_size(in.dims() - 1);
    OP_REQUIRES(ctx, channels >= 1 && channels <= kLayerNormMaxChannels,
                ::tensorflow::errors::InvalidArgument(
                    name(), ": the normalized (last) axis has ", channels,
                    " values; Tfq8LayerNorm supports 1 to ", kLayerNormMaxChannels,
                    " (keep this layer in FP32 with QuantConfig(keep_fp32=[...]))"));
    for (const Tensor* t : {&gamma, &beta}) {
      OP_REQUIRES(ctx, t->dims() == 1 && t->dim_size(0) == channels,
                  ::tensorflow::errors::InvalidArgument(
                      name(), ": gamma and beta must have shape [", channels,
                      "] (the input's last axis), got ", t->shape().DebugString()));
    }
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.shape(), &out));
    if (in.NumElements() == 0) return;
    std::vector<float> beta_out(channels);
    LayerNormBetaOut(channels, beta.flat<float>().data(), params_, beta_out.data());
    const float* g = gamma.flat<float>().data();
    const int64_t rows = in.NumElements() / channels;
    const uint8_t* x = in.flat<uint8_t>().data();
    uint8_t* y = out->flat<uint8_t>().data();
    const LayerNormFn fn = GetLayerNormKernel(isa);
    const int64_t grain = std::max<int64_t>(1, kChunk / channels);  // rows per task
    const int64_t tasks = (rows + grain - 1) / grain;
    TfParallelFor(ctx)(tasks, kChunk * 4, [&](int64_t b, int64_t e) {
      const int64_t r0 = b * grain, r1 = std::min(rows, e * grain);
      fn(r1 - r0, channels, x + r0 * channels, g, beta_out.data(), y + r0 * channels, params_);
    });
  }

 private:
  LayerNormParams params_;
};

class PReluOp : public OpKernel {
 public:
  explicit PReluOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadInOutQParams(ctx, &q_));
    params_ = MakeRequantizeParams(q_.in_scale, q_.in_zero_point, q_.out_scale,
                                   q_.out_zero_point);
  }

  void Compute(OpKernelContext* ctx) override {
    Isa isa;
    if (!GetIsa(ctx, &isa)) return;
    const Tensor& in = ctx->input(0);
    const Tensor& slopes = ctx->input(1);
    const Tensor& bias = ctx->input(2);
    OP_REQUIRES(ctx, in.dims() >= 1,
                ::tensorflow::errors::InvalidArgument(name(), ": input must have rank >= 1"));
    // The slopes span the last k axes (the channels, or Keras' per-position [H, W, C]).
    const int64_t channels = slopes.dims() == 2 ? slopes.dim_size(1) : -1;
    bool spans = false;
    for (int64_t k = in.dims() - 1, p = 1; k >= 0 && !spans; --k) {
      p *= in.dim_size(k);
      spans = p == channels;
    }
    OP_REQUIRES(ctx, slopes.dims() == 2 && slopes.dim_size(0) == 2 && spans && bias.dims() == 1 &&
                         bias.dim_size(0) == channels,
                ::tensorflow::errors::InvalidArgument(
                    name(), ": slopes must have shape [2, P] and bias [P], P the product of the "
                    "input's last axes (input ", in.shape().DebugString(), "), got ",
                    slopes.shape().DebugString(), " and ", bias.shape().DebugString()));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.shape(), &out));
    if (in.NumElements() == 0) return;
    const PReluMultipliers m(channels, slopes.flat<float>().data(), bias.flat<float>().data(),
                             q_.in_scale, q_.out_scale);
    const int64_t rows = in.NumElements() / channels;
    const uint8_t* x = in.flat<uint8_t>().data();
    uint8_t* y = out->flat<uint8_t>().data();
    const PReluFn fn = GetPReluKernel(isa);
    const int64_t grain = std::max<int64_t>(1, kChunk / channels);  // rows per task
    const int64_t tasks = (rows + grain - 1) / grain;
    TfParallelFor(ctx)(tasks, kChunk * 2, [&](int64_t b, int64_t e) {
      const int64_t r0 = b * grain, r1 = std::min(rows, e * grain);
      fn(r1 - r0, channels, x + r0 * channels, m.pos.data(), m.neg.data(), m.add.data(),
         y + r0 * channels, params_);
    });
  }

 private:
  InOutQParams q_;
  RequantizeParams params_;
};

REGISTER_KERNEL_BUILDER(Name("Tfq8Prelu").Device(::tensorflow::DEVICE_CPU), PReluOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8LayerNorm").Device(::tensorflow::DEVICE_CPU), LayerNormOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8ChannelMul").Device(::tensorflow::DEVICE_CPU), ChannelMulOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8Lookup").Device(::tensorflow::DEVICE_CPU), LookupOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8Quantize").Device(::tensorflow::DEVICE_CPU), QuantizeOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8QuantizeChannels").Device(::tensorflow::DEVICE_CPU),
                        QuantizeChannelsOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8Dequantize").Device(::tensorflow::DEVICE_CPU), DequantizeOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8Requantize").Device(::tensorflow::DEVICE_CPU), RequantizeOp);

}  // namespace
}  // namespace tfq8
