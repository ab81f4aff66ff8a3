// CPU kernel of Tfq8DepthwiseConv2D: validates attributes/inputs, packs the weights once per
// (filter, bias, filter_scale) buffers and ISA, and runs the framework-free driver (dwconv.h).
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "custom_ops/kernels/cpu/dwconv.h"
#include "custom_ops/tf/attrs.h"
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

static_assert(static_cast<int>(DwActivation::kClip) ==
                  static_cast<int>(EpilogueAttrs::Activation::kClip) &&
              static_cast<int>(DwOutType::kS32) == static_cast<int>(EpilogueAttrs::OutType::kS32),
              "CopyEpilogueAttrs casts the enums");

const void* BufferOf(const Tensor& t) { return t.tensor_data().data(); }

// Weights packed for one (filter, bias, filter_scale) triple of buffers and one ISA. The tensors
// are held so their buffers cannot be freed and reused by other data while cached.
struct PackedEntry {
  Tensor filter, bias, filter_scale;
  int64_t c = 0, m = 0, taps = 0;
  Isa isa = Isa::kRef;
  DwEpilogue ep;
  DwPacked packed;
};

class DepthwiseConv2DOp : public OpKernel {
 public:
  explicit DepthwiseConv2DOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    WindowAttrs w;
    OP_REQUIRES_OK(ctx, ReadWindowAttrs(ctx, &w));
    CopyWindowAttrs(w, &shape_);
    EpilogueAttrs ep;
    OP_REQUIRES_OK(ctx, ReadEpilogueAttrs(ctx, &ep));
    CopyEpilogueAttrs(ep, &attrs_);
  }

  void Compute(OpKernelContext* ctx) override {
    Isa isa;
    if (!GetIsa(ctx, &isa)) return;
    const Tensor& input = ctx->input(0);
    const Tensor& filter = ctx->input(1);
    const Tensor& bias = ctx->input(2);
    const Tensor& fscale = ctx->input(3);
    OP_REQUIRES(ctx, input.dims() == 4,
                errors::InvalidArgument("input must be 4-D NHWC, got shape ",
                                        input.shape().DebugString()));
    OP_REQUIRES(ctx, filter.dims() == 4,
                errors::InvalidArgument("filter must be 4-D [KH, KW, C, M], got shape ",
                                        filter.shape().DebugString()));
    DwConvShape s = shape_;
    s.n = input.dim_size(0);
    s.h = input.dim_size(1);
    s.w = input.dim_size(2);
    s.c = input.dim_size(3);
    s.kh = filter.dim_size(0);
    s.kw = filter.dim_size(1);
    s.m = filter.dim_size(3);
    OP_REQUIRES(ctx, filter.dim_size(2) == s.c,
                errors::InvalidArgument("filter has ", filter.dim_size(2),
                                        " input channels (dim 2) but input has ", s.c));
    OP_REQUIRES(ctx, s.kh >= 1 && s.kw >= 1 && s.m >= 1,
                errors::InvalidArgument("filter dimensions must be >= 1, got ",
                                        filter.shape().DebugString()));
    const int64_t oc = s.oc();
    OP_REQUIRES(ctx, bias.dims() == 1 && bias.dim_size(0) == oc,
                errors::InvalidArgument("bias must have shape [", oc, "] (C*M), got ",
                                        bias.shape().DebugString()));
    OP_REQUIRES(ctx, fscale.dims() == 1 && (fscale.dim_size(0) == oc || fscale.dim_size(0) == 1),
                errors::InvalidArgument("filter_scale must have shape [", oc, "] or [1], got ",
                                        fscale.shape().DebugString()));
    OP_REQUIRES(ctx, s.ComputeOutputSize(),
                errors::InvalidArgument("the ", s.kh, "x", s.kw, " filter with dilations [",
                                        s.dil_h, ", ", s.dil_w,
                                        "] does not fit the padded input of spatial size ",
                                        s.h + s.pad_top + s.pad_bottom, "x",
                                        s.w + s.pad_left + s.pad_right));
    const TensorShape out_shape({s.n, s.oh, s.ow, oc});
    const uint8_t* summand = nullptr;
    if (attrs_.has_summand) {
      const Tensor& sm = ctx->input(4);
      OP_REQUIRES(ctx, sm.shape() == out_shape,
                  errors::InvalidArgument("summand must have the output shape ",
                                          out_shape.DebugString(), ", got ",
                                          sm.shape().DebugString()));
      summand = sm.flat<uint8_t>().data();
    }
    std::shared_ptr<const PackedEntry> entry;
    OP_REQUIRES_OK(ctx, GetPacked(isa, s, filter, bias, fscale, &entry));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &out));
    if (out->NumElements() == 0) return;
    DwConvRun(s, input.flat<uint8_t>().data(), filter.flat<int8_t>().data(), entry->ep,
              attrs_.input_zero_point, &entry->packed, summand, out->data(), TfParallelFor(ctx));
  }

 private:
  ::tensorflow::Status GetPacked(Isa isa, const DwConvShape& s, const Tensor& filter,
                                 const Tensor& bias, const Tensor& fscale,
                                 std::shared_ptr<const PackedEntry>* result) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& e : cache_) {
      if (e->isa == isa && e->c == s.c && e->m == s.m && e->taps == s.taps() &&
          BufferOf(e->filter) == BufferOf(filter) && BufferOf(e->bias) == BufferOf(bias) &&
          BufferOf(e->filter_scale) == BufferOf(fscale)) {
        *result = e;
        return ::tensorflow::OkStatus();
      }
    }
    // Validate the weights once per buffer (not per call).
    const auto w = filter.flat<int8_t>();
    for (int64_t i = 0; i < w.size(); ++i) {
      if (w(i) == -128) {
        return errors::InvalidArgument("filter values must be in -127..127, found -128 at "
                                       "flat index ", i);
      }
    }
    const auto sc = fscale.flat<float>();
    for (int64_t i = 0; i < sc.size(); ++i) {
      if (!(sc(i) > 0.0f) || !std::isfinite(sc(i))) {
        return errors::InvalidArgument("filter_scale values must be finite and > 0, got ", sc(i),
                                       " at index ", i);
      }
    }
    if (!attrs_.bias_is_int32) {
      const auto b = bias.flat<float>();
      for (int64_t i = 0; i < b.size(); ++i) {
        if (!std::isfinite(b(i))) {
          return errors::InvalidArgument("bias values must be finite, got ", b(i), " at index ",
                                         i);
        }
      }
    }
    auto e = std::make_shared<PackedEntry>();
    e->filter = filter;
    e->bias = bias;
    e->filter_scale = fscale;
    e->c = s.c;
    e->m = s.m;
    e->taps = s.taps();
    e->isa = isa;
    DwEpilogueAttrs a = attrs_;
    if (a.bias_is_int32) a.bias_s32 = bias.flat<int32_t>().data();
    else a.bias_f32 = bias.flat<float>().data();
    a.filter_scale = sc.data();
    a.per_tensor_scale = sc.size() == 1;
    e->ep = MakeDwEpilogue(s, w.data(), a);
    const bool simd = PackDwWeights(isa, s, w.data(), e->ep, &e->packed);
    if (Verbose()) {
      std::fprintf(stderr, "tfq8: Tfq8DepthwiseConv2D %s: %s\n", name().c_str(),
                   simd ? IsaName(isa)
                        : (isa == Isa::kRef ? "ref" : "ref (SIMD kernels need depth multiplier 1)"));
    }
    // Keep one entry per ISA: a different buffer for the same ISA replaces the old one.
    for (auto it = cache_.begin(); it != cache_.end(); ++it) {
      if ((*it)->isa == isa) {
        cache_.erase(it);
        break;
      }
    }
    cache_.push_back(e);
    *result = e;
    return ::tensorflow::OkStatus();
  }

  DwConvShape shape_{};
  DwEpilogueAttrs attrs_;
  std::mutex mu_;
  std::vector<std::shared_ptr<const PackedEntry>> cache_;
};

REGISTER_KERNEL_BUILDER(Name("Tfq8DepthwiseConv2D").Device(::tensorflow::DEVICE_CPU),
                        DepthwiseConv2DOp);

}  // namespace
}  // namespace tfq8
