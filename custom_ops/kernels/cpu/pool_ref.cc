// Pooling: shapes, scalar reference micro-kernels, the per-ISA table and the drivers.
#include <algorithm>
#include <vector>

#include "custom_ops/kernels/cpu/pool.h"

namespace tfq8 {

bool ComputePoolShape(bool same, PoolShape* s) {
  if (same) {
    s->oh = (s->h + s->stride_h - 1) / s->stride_h;
    s->ow = (s->w + s->stride_w - 1) / s->stride_w;
    const int64_t th = std::max<int64_t>((s->oh - 1) * s->stride_h + s->kh - s->h, 0);
    const int64_t tw = std::max<int64_t>((s->ow - 1) * s->stride_w + s->kw - s->w, 0);
    s->pad_top = th / 2;
    s->pad_left = tw / 2;
    return true;
  }
  s->pad_top = s->pad_left = 0;
  if (s->h < s->kh || s->w < s->kw) return false;
  s->oh = (s->h - s->kh) / s->stride_h + 1;
  s->ow = (s->w - s->kw) / s->stride_w + 1;
  return true;
}

void qu8_maxpool_ukernel__ref(size_t channels, size_t count, const uint8_t* const* in,
                              size_t offset, uint8_t* out) {
  for (size_t c = 0; c < channels; ++c) {
    uint8_t m = 0;
    for (size_t i = 0; i < count; ++i) m = std::max(m, in[i][offset + c]);
    out[c] = m;
  }
}

void qu8_avgpool_ukernel__ref(size_t channels, size_t count, const uint8_t* const* in,
                              size_t offset, uint8_t* out) {
  for (size_t c = 0; c < channels; ++c) {
    uint64_t sum = 0;
    for (size_t i = 0; i < count; ++i) sum += in[i][offset + c];
    out[c] = static_cast<uint8_t>((sum + count / 2) / count);
  }
}

PoolFn GetMaxPoolKernel(Isa isa) {
  switch (isa) {
    case Isa::kAmx:
    case Isa::kAvx512Vnni: return qu8_maxpool_ukernel__avx512;
    case Isa::kAvx2: return qu8_maxpool_ukernel__avx2;
    default: return qu8_maxpool_ukernel__ref;
  }
}

PoolFn GetAvgPoolKernel(Isa isa) {
  switch (isa) {
    case Isa::kAmx:
    case Isa::kAvx512Vnni: return qu8_avgpool_ukernel__avx512;
    case Isa::kAvx2: return qu8_avgpool_ukernel__avx2;
    default: return qu8_avgpool_ukernel__ref;
  }
}

namespace {

void PoolRun(PoolFn fn, const PoolShape& s, const uint8_t* x, uint8_t* y, const ParallelFor& pf) {
  const int64_t rows = s.n * s.oh;
  pf(rows, std::max<int64_t>(1, s.ow * s.kh * s.kw * s.c), [&](int64_t b, int64_t e) {
    std::vector<const uint8_t*> ptrs(static_cast<size_t>(s.kh * s.kw));
    for (int64_t row = b; row < e; ++row) {
      const int64_t n = row / s.oh, oy = row % s.oh;
      const int64_t y0 = std::max<int64_t>(oy * s.stride_h - s.pad_top, 0);
      const int64_t y1 = std::min(oy * s.stride_h - s.pad_top + s.kh, s.h);
      for (int64_t ox = 0; ox < s.ow; ++ox) {
        const int64_t x0 = std::max<int64_t>(ox * s.stride_w - s.pad_left, 0);
        const int64_t x1 = std::min(ox * s.stride_w - s.pad_left + s.kw, s.w);
        size_t count = 0;
        for (int64_t iy = y0; iy < y1; ++iy) {
          for (int64_t ix = x0; ix < x1; ++ix) ptrs[count++] = x + ((n * s.h + iy) * s.w + ix) * s.c;
        }
        uint8_t* out = y + (row * s.ow + ox) * s.c;
        if (count == 0) {  // cannot happen with TF's VALID/SAME; defined anyway
          std::fill(out, out + s.c, 0);
          continue;
        }
        fn(static_cast<size_t>(s.c), count, ptrs.data(), 0, out);
      }
    }
  });
}

}  // namespace

void MaxPoolRun(Isa isa, const PoolShape& s, const uint8_t* x, uint8_t* y, const ParallelFor& pf) {
  PoolRun(GetMaxPoolKernel(isa), s, x, y, pf);
}

void AvgPoolRun(Isa isa, const PoolShape& s, const uint8_t* x, uint8_t* y, const ParallelFor& pf) {
  PoolRun(GetAvgPoolKernel(isa), s, x, y, pf);
}

void MeanRun(Isa isa, int64_t n, int64_t h, int64_t w, int64_t c, const uint8_t* x, uint8_t* y,
             const ParallelFor& pf) {
  const PoolFn fn = GetAvgPoolKernel(isa);
  constexpr int64_t kChannelsPerTask = 64;
  const int64_t chunks = (c + kChannelsPerTask - 1) / kChannelsPerTask;
  const int64_t hw = h * w;
  pf(n * chunks, std::max<int64_t>(1, hw * kChannelsPerTask), [&](int64_t b, int64_t e) {
    std::vector<const uint8_t*> ptrs(static_cast<size_t>(hw));
    int64_t filled_for = -1;
    for (int64_t u = b; u < e; ++u) {
      const int64_t batch = u / chunks, c0 = (u % chunks) * kChannelsPerTask;
      if (filled_for != batch) {
        for (int64_t i = 0; i < hw; ++i) ptrs[i] = x + (batch * hw + i) * c;
        filled_for = batch;
      }
      const int64_t cn = std::min(kChannelsPerTask, c - c0);
      fn(static_cast<size_t>(cn), static_cast<size_t>(hw), ptrs.data(), static_cast<size_t>(c0),
         y + batch * c + c0);
    }
  });
}

}  // namespace tfq8
