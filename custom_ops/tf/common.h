// Helpers shared by the TF glue: ISA selection as an OpKernel error, TF's intra-op thread pool
// as the kernels' ParallelFor, and attribute validation. No arithmetic lives here.
#ifndef TFQ8_TF_COMMON_H_
#define TFQ8_TF_COMMON_H_

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "custom_ops/kernels/cpu/isa.h"
#include "custom_ops/kernels/cpu/parallel.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
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
//
// Default: the calling thread plus NumThreads() − 1 helpers scheduled on the pool claim grains of
// [0, n) from a shared atomic counter (dynamic split). Compared with the pool's own ParallelFor
// (Eigen: a static binary split sized by a cost model that refuses a second thread below ~100k
// cycles per op, and that runs the caller as an extra thread beside NumThreads() workers): small
// layers (MobileNetV2 at 14×14 / 7×7, batch 1) use both cores, a helper that starts late (woken
// from sleep, or its core busy with another process) only takes what is left instead of making
// the caller wait for its statically assigned half, and at most NumThreads() threads run.
// TFQ8_PFOR=eigen restores the pool's ParallelFor, for A/B timing.
namespace internal {

struct DynamicForState {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};  // units finished
  int64_t n = 0, grain = 1;
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  std::mutex mu;
  std::condition_variable cv;
  // Claims and runs grains until none are left. Returns after the last claimed one finished.
  void Work() {
    for (;;) {
      const int64_t b = next.fetch_add(grain, std::memory_order_relaxed);
      if (b >= n) return;
      const int64_t e = std::min(n, b + grain);
      (*fn)(b, e);
      if (done.fetch_add(e - b, std::memory_order_acq_rel) + (e - b) == n) {
        std::lock_guard<std::mutex> lock(mu);  // the waiter checks `done` under mu
        cv.notify_all();
      }
    }
  }
  // The caller, after its own Work(): waits for grains still running on helpers. Spins briefly
  // (a helper finishing its last grain), then blocks, so that a helper preempted by another
  // process can be moved to this idle core instead of competing with a spinning caller.
  void Wait() {
    for (int spins = 0; spins < 1000; ++spins) {
      if (done.load(std::memory_order_acquire) >= n) return;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [this] { return done.load(std::memory_order_acquire) >= n; });
  }
};

inline bool UseEigenParallelFor() {
  const char* v = std::getenv("TFQ8_PFOR");
  return v != nullptr && std::strcmp(v, "eigen") == 0;
}

}  // namespace internal

inline ParallelFor TfParallelFor(::tensorflow::OpKernelContext* ctx) {
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  if (internal::UseEigenParallelFor()) {
    return [pool](int64_t n, int64_t cost, const std::function<void(int64_t, int64_t)>& fn) {
      if (n <= 0) return;
      pool->ParallelFor(n, cost, [&fn](int64_t b, int64_t e) { fn(b, e); });
    };
  }
  return [pool](int64_t n, int64_t cost, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    const int threads = pool->NumThreads();
    // cost: rough cycles per unit. Below ~20k cycles (a few µs) waking a helper costs more
    // than it saves.
    const double total = static_cast<double>(n) * static_cast<double>(std::max<int64_t>(cost, 1));
    if (threads <= 1 || n == 1 || total < 20000.0) {
      fn(0, n);
      return;
    }
    // Grains: about 8 per thread (a short tail when one thread is late), none below ~10k cycles.
    int64_t grain = std::max<int64_t>(1, n / (8 * threads));
    const int64_t min_grain = 10000 / std::max<int64_t>(cost, 1) + 1;
    grain = std::min(n, std::max(grain, min_grain));
    const int64_t grains = (n + grain - 1) / grain;
    const int helpers = static_cast<int>(std::min<int64_t>(threads - 1, grains - 1));
    auto state = std::make_shared<internal::DynamicForState>();
    state->n = n;
    state->grain = grain;
    state->fn = &fn;
    for (int i = 0; i < helpers; ++i) pool->Schedule([state] { state->Work(); });
    state->Work();
    // Every grain is claimed; wait for the ones a helper is still running. A helper that starts
    // after this returns finds nothing left and never touches fn.
    state->Wait();
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

// input_/output_ scale and zero point of a u8 → u8 op (Requantize, ChannelMul), validated.
struct InOutQParams {
  float in_scale, out_scale;
  int in_zero_point, out_zero_point;
};
inline ::tensorflow::Status ReadInOutQParams(::tensorflow::OpKernelConstruction* ctx,
                                             InOutQParams* q) {
  TF_RETURN_IF_ERROR(ctx->GetAttr("input_scale", &q->in_scale));
  TF_RETURN_IF_ERROR(ctx->GetAttr("input_zero_point", &q->in_zero_point));
  TF_RETURN_IF_ERROR(ctx->GetAttr("output_scale", &q->out_scale));
  TF_RETURN_IF_ERROR(ctx->GetAttr("output_zero_point", &q->out_zero_point));
  TF_RETURN_IF_ERROR(CheckQParams("input", q->in_scale, q->in_zero_point));
  return CheckQParams("output", q->out_scale, q->out_zero_point);
}

// Tfq8Lookup's table: a vector of 256 entries (CPU and GPU kernels).
inline ::tensorflow::Status CheckLookupTable(const std::string& node,
                                             const ::tensorflow::Tensor& table) {
  if (table.dims() == 1 && table.NumElements() == 256) return ::tensorflow::OkStatus();
  return ::tensorflow::errors::InvalidArgument(
      "Tfq8Lookup ", node, ": table must be a uint8 vector of 256 entries, got shape ",
      table.shape().DebugString());
}

// Tfq8ChannelMul's gate: [N or 1, 1, ..., 1, C] for an input [N, ..., C] (CPU and GPU kernels).
inline ::tensorflow::Status CheckChannelGate(const std::string& node,
                                             const ::tensorflow::Tensor& in,
                                             const ::tensorflow::Tensor& gate) {
  const int rank = in.dims();
  bool ok = rank >= 2 && gate.dims() == rank &&
            gate.dim_size(rank - 1) == in.dim_size(rank - 1) &&
            (gate.dim_size(0) == 1 || gate.dim_size(0) == in.dim_size(0));
  for (int d = 1; ok && d < rank - 1; ++d) ok = gate.dim_size(d) == 1;
  if (ok) return ::tensorflow::OkStatus();
  return ::tensorflow::errors::InvalidArgument(
      "Tfq8ChannelMul ", node, ": gate must have shape [N or 1, 1, ..., 1, C] for an input of "
      "shape [N, ..., C]; got input ", in.shape().DebugString(), " and gate ",
      gate.shape().DebugString());
}

}  // namespace tfq8

#endif  // TFQ8_TF_COMMON_H_
