// CPU kernels of Tfq8Conv2D, Tfq8GroupedConv2D and Tfq8MatMul (a 1×1 convolution over N
// "pixels"): read and validate attrs/tensors, pack the weights once per ISA (cached,
// thread-safe), call Conv2DRun — once per group for a grouped conv.
#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "custom_ops/kernels/cpu/conv2d.h"
#include "custom_ops/tf/attrs.h"
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
static_assert(static_cast<int>(ConvActivation::kClip) ==
                  static_cast<int>(EpilogueAttrs::Activation::kClip) &&
              static_cast<int>(QOutType::kS32) == static_cast<int>(EpilogueAttrs::OutType::kS32),
              "CopyEpilogueAttrs casts the enums");

struct CacheEntry {
  std::vector<std::shared_ptr<const PackedConv>> packed;  // one per group
  Tensor filter, bias, filter_scale;
};

class QConvOpBase : public OpKernel {
 public:
  explicit QConvOpBase(OpKernelConstruction* ctx, bool matmul, bool grouped = false)
      : OpKernel(ctx), matmul_(matmul) {
    EpilogueAttrs ep;
    OP_REQUIRES_OK(ctx, ReadEpilogueAttrs(ctx, &ep));
    CopyEpilogueAttrs(ep, &attrs_);
    if (!matmul_) {
      WindowAttrs w;
      OP_REQUIRES_OK(ctx, ReadWindowAttrs(ctx, &w));
      CopyWindowAttrs(w, &geo_);
    }
    if (grouped) OP_REQUIRES_OK(ctx, ctx->GetAttr("groups", &groups_));
  }

  void Compute(OpKernelContext* ctx) override {
    const char* op = matmul_ ? "Tfq8MatMul" : groups_ > 1 ? "Tfq8GroupedConv2D" : "Tfq8Conv2D";
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
      OP_REQUIRES(ctx, filter.dim_size(2) * groups_ == s.ic,
                  errors::InvalidArgument(op, " ", name(), ": filter has ", filter.dim_size(2),
                                          " input channels", groups_ > 1 ? " per group (" : "",
                                          groups_ > 1 ? std::to_string(groups_) : "",
                                          groups_ > 1 ? " groups)" : "", " but input has ",
                                          s.ic));
      OP_REQUIRES(ctx, s.oc % groups_ == 0,
                  errors::InvalidArgument(op, " ", name(), ": ", s.oc,
                                          " output channels do not divide into ", groups_,
                                          " groups"));
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
    ConvShape sg = s;  // one group's conv
    sg.ic = s.ic / groups_;
    sg.oc = s.oc / groups_;
    std::vector<std::shared_ptr<const PackedConv>> packed;
    OP_REQUIRES_OK(ctx, GetPacked(ctx, isa, sg, filter, bias, fscale, &packed));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &out));
    if (out->NumElements() == 0) return;
    if (groups_ == 1) {
      Conv2DRun(*packed[0], s, input.flat<uint8_t>().data(), summand, out->data(),
                TfParallelFor(ctx));
      return;
    }
    RunGroups(ctx, packed, s, sg, input.flat<uint8_t>().data(), summand,
              static_cast<char*>(out->data()));
  }

 private:
  // Each group gathers its input (and summand) channels into contiguous buffers, runs as an
  // ordinary conv and scatters its output channels: inside one op, instead of a Slice, a conv
  // and a Concat per group in the graph (RegNet-style group width 8 had ~800 such small ops).
  // Many groups: the groups are the parallel tasks, each conv serial; few: one after another,
  // each conv parallel.
  void RunGroups(OpKernelContext* ctx, const std::vector<std::shared_ptr<const PackedConv>>& packed,
                 const ConvShape& s, const ConvShape& sg, const uint8_t* input,
                 const uint8_t* summand, char* output) {
    const int64_t in_px = s.n * s.h * s.w, out_px = s.pixels();
    const int64_t es = attrs_.out_type == QOutType::kU8 ? 1 : 4;
    const int64_t threads =
        ctx->device()->tensorflow_cpu_worker_threads()->workers->NumThreads();
    const bool across_groups = groups_ >= 2 * std::max<int64_t>(1, threads);
    auto run_group = [&](int64_t g, const ParallelFor& pfor) {
      std::vector<uint8_t> x(in_px * sg.ic), y(out_px * sg.oc * es), sm;
      for (int64_t p = 0; p < in_px; ++p) {
        std::memcpy(&x[p * sg.ic], input + p * s.ic + g * sg.ic, sg.ic);
      }
      if (summand != nullptr) {
        sm.resize(out_px * sg.oc);
        for (int64_t p = 0; p < out_px; ++p) {
          std::memcpy(&sm[p * sg.oc], summand + p * s.oc + g * sg.oc, sg.oc);
        }
      }
      Conv2DRun(*packed[g], sg, x.data(), summand ? sm.data() : nullptr, y.data(), pfor);
      for (int64_t p = 0; p < out_px; ++p) {
        std::memcpy(output + (p * s.oc + g * sg.oc) * es, &y[p * sg.oc * es], sg.oc * es);
      }
    };
    if (across_groups) {
      const int64_t cost = out_px * sg.oc * sg.ic * sg.taps() / 16 + in_px * sg.ic + 64;
      TfParallelFor(ctx)(groups_, cost, [&](int64_t g0, int64_t g1) {
        for (int64_t g = g0; g < g1; ++g) run_group(g, SerialFor);
      });
    } else {
      for (int64_t g = 0; g < groups_; ++g) run_group(g, TfParallelFor(ctx));
    }
  }

  Status GetPacked(OpKernelContext* ctx, Isa isa, const ConvShape& sg, const Tensor& filter,
                   const Tensor& bias, const Tensor& fscale,
                   std::vector<std::shared_ptr<const PackedConv>>* out) {
    std::lock_guard<std::mutex> lock(mu_);
    // TFQ8_WINOGRAD and TFQ8_AVX2_U8 change what PackConv builds, so they are part of the
    // key, like the ISA.
    CacheEntry& e = cache_[static_cast<int>(isa) * 4 + (WinogradAllowed() ? 2 : 0) +
                           (U8PairsAllowed() ? 1 : 0)];
    if (!e.packed.empty() && e.filter.data() == filter.data() && e.bias.data() == bias.data() &&
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
    std::vector<std::shared_ptr<const PackedConv>> packed(groups_);
    std::vector<int8_t> wg;  // one group's filter [KH, KW, IC/groups, OC/groups]
    const int8_t* w = filter.flat<int8_t>().data();
    const int64_t rows = sg.kh * sg.kw * sg.ic, oc_all = sg.oc * groups_;
    for (int64_t g = 0; g < groups_; ++g) {
      const int8_t* wp = w;
      if (groups_ > 1) {
        wg.resize(rows * sg.oc);
        for (int64_t r = 0; r < rows; ++r) {
          std::memcpy(&wg[r * sg.oc], w + r * oc_all + g * sg.oc, sg.oc);
        }
        wp = wg.data();
      }
      ConvEpilogueAttrs a = attrs_;
      a.per_tensor_scale = fscale.NumElements() == 1;
      a.filter_scale = fs + (a.per_tensor_scale ? 0 : g * sg.oc);
      if (a.bias_is_int32) {
        a.bias_s32 = bias.flat<int32_t>().data() + g * sg.oc;
      } else {
        a.bias_f32 = bias.flat<float>().data() + g * sg.oc;
      }
      std::string error;
      packed[g] = PackConv(isa, sg, wp, a, &error);
      if (!packed[g]) return errors::InvalidArgument(name(), ": ", error);
    }
    if (Verbose()) {
      std::fprintf(stderr, "tfq8: %s %s [%lldx%lldx%lldx%lld]%s: %s\n", type_string().c_str(),
                   name().c_str(), static_cast<long long>(sg.kh), static_cast<long long>(sg.kw),
                   static_cast<long long>(sg.ic), static_cast<long long>(sg.oc),
                   groups_ > 1 ? (" x" + std::to_string(groups_) + " groups").c_str() : "",
                   ConvImplName(*packed[0], sg).c_str());
    }
    e.packed = packed;
    e.filter = filter;
    e.bias = bias;
    e.filter_scale = fscale;
    *out = packed;
    return ::tensorflow::OkStatus();
  }

  const bool matmul_;
  int64_t groups_ = 1;
  ConvEpilogueAttrs attrs_;
  ConvShape geo_;
  std::mutex mu_;
  std::array<CacheEntry, 16> cache_;  // [isa][Winograd allowed][u8 pairs allowed]
};

class Conv2DOp : public QConvOpBase {
 public:
  explicit Conv2DOp(OpKernelConstruction* ctx) : QConvOpBase(ctx, /*matmul=*/false) {}
};

class GroupedConv2DOp : public QConvOpBase {
 public:
  explicit GroupedConv2DOp(OpKernelConstruction* ctx)
      : QConvOpBase(ctx, /*matmul=*/false, /*grouped=*/true) {}
};

class MatMulOp : public QConvOpBase {
 public:
  explicit MatMulOp(OpKernelConstruction* ctx) : QConvOpBase(ctx, /*matmul=*/true) {}
};

REGISTER_KERNEL_BUILDER(Name("Tfq8Conv2D").Device(::tensorflow::DEVICE_CPU), Conv2DOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8GroupedConv2D").Device(::tensorflow::DEVICE_CPU),
                        GroupedConv2DOp);
REGISTER_KERNEL_BUILDER(Name("Tfq8MatMul").Device(::tensorflow::DEVICE_CPU), MatMulOp);

}  // namespace
}  // namespace tfq8
