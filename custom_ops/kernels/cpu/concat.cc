// Concat driver: parallel over (outer row, input) pieces.
#include "custom_ops/kernels/cpu/concat.h"

#include <algorithm>
#include <cstring>

namespace tfq8 {

void ConcatRun(Isa isa, int64_t outer, const std::vector<ConcatInput>& inputs, uint8_t* y,
               const ParallelFor& pf) {
  const RequantizeFn requant = GetRequantizeKernel(isa);
  const int64_t k = static_cast<int64_t>(inputs.size());
  std::vector<int64_t> col(k + 1, 0);  // offset of each input within an output row
  for (int64_t i = 0; i < k; ++i) col[i + 1] = col[i] + inputs[i].inner;
  const int64_t row = col[k];
  int64_t avg = std::max<int64_t>(1, row / std::max<int64_t>(1, k));
  pf(outer * k, avg, [&](int64_t b, int64_t e) {
    for (int64_t u = b; u < e; ++u) {
      const int64_t r = u / k, i = u % k;
      const ConcatInput& in = inputs[i];
      if (in.inner == 0) continue;
      const uint8_t* src = in.data + r * in.inner;
      uint8_t* dst = y + r * row + col[i];
      if (in.copy) {
        std::memcpy(dst, src, static_cast<size_t>(in.inner));
      } else {
        requant(static_cast<size_t>(in.inner), src, dst, in.params);
      }
    }
  });
}

}  // namespace tfq8
