// The only threading abstraction the framework-free kernels see: a parallel-for supplied by
// the caller. The TF glue passes TensorFlow's intra-op thread pool; tests and tools may pass
// SerialFor. Kernels never create threads themselves (no OpenMP).
#ifndef TFQ8_KERNELS_CPU_PARALLEL_H_
#define TFQ8_KERNELS_CPU_PARALLEL_H_

#include <cstdint>
#include <functional>

namespace tfq8 {

// Calls fn(begin, end) over disjoint ranges covering [0, n). cost_per_unit is a rough number of
// cycles per unit, used to decide how finely to split.
using ParallelFor =
    std::function<void(int64_t n, int64_t cost_per_unit,
                       const std::function<void(int64_t begin, int64_t end)>& fn)>;

inline void SerialFor(int64_t n, int64_t /*cost_per_unit*/,
                      const std::function<void(int64_t, int64_t)>& fn) {
  if (n > 0) fn(0, n);
}

}  // namespace tfq8

#endif  // TFQ8_KERNELS_CPU_PARALLEL_H_
