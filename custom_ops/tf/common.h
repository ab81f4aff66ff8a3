// Helpers shared by the TF glue: ISA selection as an OpKernel error, TF's intra-op thread pool
// as the kernels' ParallelFor, and attribute validation. No arithmetic lives here.
#ifndef TFQ8_TF_COMMON_H_
#define TFQ8_TF_COMMON_H_

#include <cmath>
#include <string>

#include "custom_ops/kernels/cpu/isa.h"
#include "custom_ops/kernels/cpu/parallel.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/util/work_sharder.h"

namespace tfq8 {

// The CPU path for this call; sets an InvalidArgument error (and returns false) when TFQ8_ISA
// asks for a path this CPU cannot run.
inline bool GetIsa(::tensorflow::OpKernelContext* ctx, Isa* isa) {
  const IsaChoice& choice = SelectedIsa();
  if (!choice.ok) {
    ctx->SetStatus(::tensorflow::errors::InvalidArgument(choice.error));
    return false;
  }
  *isa = choice.isa;
  return true;
}

// TensorFlow's intra-op thread pool as a ParallelFor.
inline ParallelFor TfParallelFor(::tensorflow::OpKernelContext* ctx) {
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  return [pool](int64_t n, int64_t cost, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    pool->ParallelFor(n, cost, [&fn](int64_t b, int64_t e) { fn(b, e); });
  };
}

// Validates a (scale, zero_point) pair read from attributes of `what`.
inline ::tensorflow::Status CheckQParams(const std::string& what, float scale, int zero_point) {
  const std::string prefix = what.empty() ? "" : what + "_";
  if (!(scale > 0.0f) || !std::isfinite(scale)) {
    return ::tensorflow::errors::InvalidArgument(prefix, "scale must be a finite number > 0, got ",
                                                 scale);
  }
  if (zero_point < 0 || zero_point > 255) {
    return ::tensorflow::errors::InvalidArgument(prefix, "zero_point must be in [0, 255], got ",
                                                 zero_point);
  }
  return ::tensorflow::OkStatus();
}

}  // namespace tfq8

#endif  // TFQ8_TF_COMMON_H_
