// Depthwise convolution: weight packing for the SIMD micro-kernels and the driver that splits
// output rows over the caller's ParallelFor and builds the indirection buffers.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "custom_ops/kernels/cpu/dwconv.h"

namespace tfq8 {
namespace {

// TFQ8_DW_INDIRECTION=v1 (A/B timing only): build every indirection row with the nested loops.
bool EnvIs(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, value) == 0;
}

struct MicroConfig {
  DwMicroKernelFn fn;
  size_t block;  // channels per block
  size_t group;  // taps per weight group
  size_t wbytes; // bytes per weight (1: s8 quads for vpdpbusd, 2: s16 pairs for vpmaddwd)
};

bool GetMicroConfig(Isa isa, MicroConfig* cfg) {
  switch (isa) {
    case Isa::kAmx:  // depthwise has no AMX form: the tiles need a reduction dimension
    case Isa::kAvx512Vnni:
      *cfg = {qu8_dwconv_minmax_fp32_ukernel_c64__avx512vnni, 64, 4, 1};
      return true;
    case Isa::kAvx2:
      *cfg = {qu8_dwconv_minmax_fp32_ukernel_c32__avx2, 32, 2, 2};
      return true;
    default:
      return false;
  }
}

// Position of channel `ch` (0..block-1) in the permuted order: register j, element 4k+e.
inline size_t PermutedIndex(size_t ch, size_t block) {
  const size_t k = ch / 16, j = (ch % 16) / 4, e = ch % 4;
  return j * (block / 4) + 4 * k + e;
}

}  // namespace

bool PackDwWeights(Isa isa, const DwConvShape& s, const int8_t* filter, const DwEpilogue& ep,
                   DwPacked* out) {
  MicroConfig cfg;
  out->bytes.clear();
  out->isa = Isa::kRef;
  if (s.m != 1 || !GetMicroConfig(isa, &cfg)) return false;
  const size_t C = static_cast<size_t>(s.c), B = cfg.block, taps = static_cast<size_t>(s.taps());
  const size_t groups = (taps + cfg.group - 1) / cfg.group;
  const size_t block_bytes = 12 * B + groups * 4 * B;
  const size_t blocks = (C + B - 1) / B;
  out->bytes.assign(blocks * block_bytes + 64, 0);
  out->offset = (64 - reinterpret_cast<uintptr_t>(out->bytes.data()) % 64) % 64;
  uint8_t* base = out->bytes.data() + out->offset;
  for (size_t b = 0; b < blocks; ++b) {
    uint8_t* blk = base + b * block_bytes;
    int32_t* bias = reinterpret_cast<int32_t*>(blk);
    float* mul = reinterpret_cast<float*>(blk + 4 * B);
    float* badd = reinterpret_cast<float*>(blk + 8 * B);
    uint8_t* w = blk + 12 * B;
    for (size_t ch = 0; ch < B && b * B + ch < C; ++ch) {
      const size_t c = b * B + ch, p = PermutedIndex(ch, B);
      bias[p] = ep.bias[c];
      mul[p] = ep.mul[c];
      badd[p] = ep.badd[c];
      for (size_t t = 0; t < taps; ++t) {
        const size_t g = t / cfg.group, r = t % cfg.group;
        // group g: 4 registers of B/4 dwords; dword p holds `group` weights of one channel.
        uint8_t* dst = w + g * 4 * B + p * 4 + r * cfg.wbytes;
        const int8_t v = filter[t * C + c];
        if (cfg.wbytes == 1) {
          *reinterpret_cast<int8_t*>(dst) = v;
        } else {
          const int16_t v16 = v;
          std::memcpy(dst, &v16, 2);
        }
      }
    }
  }
  out->isa = isa;
  return true;
}

void DwConvRun(const DwConvShape& s, const uint8_t* input, const int8_t* filter,
               const DwEpilogue& ep, int32_t zp_in, const DwPacked* packed,
               const uint8_t* summand, void* output, const ParallelFor& pfor) {
  const int64_t rows = s.n * s.oh;
  const int64_t row_cost = std::max<int64_t>(1, s.ow * s.oc() * s.taps());
  MicroConfig cfg;
  if (packed == nullptr || packed->isa == Isa::kRef || !GetMicroConfig(packed->isa, &cfg)) {
    pfor(rows, row_cost, [&](int64_t b, int64_t e) {
      qu8_dwconv_ref(s, input, filter, ep, zp_in, summand, output, b, e);
    });
    return;
  }
  const size_t esize = ep.out_type == DwOutType::kU8 ? 1 : 4;
  const std::vector<uint8_t> zero_row(static_cast<size_t>(s.c), static_cast<uint8_t>(zp_in));
  DwMicroParams p;
  p.lo = ep.lo;
  p.hi = ep.hi;
  p.mul_s = ep.mul_s;
  p.zp_summand = ep.zp_summand;
  p.zp_out = ep.zp_out;
  p.out_type = ep.out_type;
  const size_t taps = static_cast<size_t>(s.taps());
  // Byte offset of each (output column, kernel column) input pixel within an input row, or -1
  // where it falls in the left/right padding; shared by all rows.
  std::vector<int64_t> col_off(static_cast<size_t>(s.ow * s.kw));
  for (int64_t ox = 0; ox < s.ow; ++ox) {
    for (int64_t kx = 0; kx < s.kw; ++kx) {
      const int64_t ix = ox * s.stride_w - s.pad_left + kx * s.dil_w;
      col_off[ox * s.kw + kx] = ix >= 0 && ix < s.w ? ix * s.c : -1;
    }
  }
  const uint8_t* zero = zero_row.data();
  // Rows whose window lies inside the input vertically share one pattern: the byte offset of
  // every (column, tap) input pixel from the window's top input row (-1: horizontal padding).
  // Their indirection row is then one flat pass, base + offset, instead of the nested loops.
  const size_t row_ptrs = static_cast<size_t>(s.ow) * taps;
  const int64_t row_bytes = s.w * s.c;
  std::vector<int64_t> pattern(row_ptrs);
  for (int64_t ox = 0; ox < s.ow; ++ox) {
    for (int64_t ky = 0; ky < s.kh; ++ky) {
      for (int64_t kx = 0; kx < s.kw; ++kx) {
        const int64_t co = col_off[ox * s.kw + kx];
        pattern[(ox * s.kh + ky) * s.kw + kx] = co >= 0 ? ky * s.dil_h * row_bytes + co : -1;
      }
    }
  }
  const bool use_pattern = !EnvIs("TFQ8_DW_INDIRECTION", "v1");
  // AVX2 3×3 u8 without summand, C % 16 == 0: in rows inside the input vertically, the output
  // columns whose window is inside horizontally [ox_lo, ox_hi) run as one strided call (no
  // indirection pointers); only the edge columns use the pattern.
  const bool strided = use_pattern && packed->isa == Isa::kAvx2 && taps == 9 && s.c % 16 == 0 &&
                       ep.out_type == DwOutType::kU8 && summand == nullptr &&
                       !EnvIs("TFQ8_DW_STRIDED", "0");
  int64_t ox_lo = 0, ox_hi = 0;
  if (strided) {
    while (ox_lo < s.ow && ox_lo * s.stride_w - s.pad_left < 0) ++ox_lo;
    ox_hi = ox_lo;
    while (ox_hi < s.ow && ox_hi * s.stride_w - s.pad_left + (s.kw - 1) * s.dil_w < s.w) ++ox_hi;
  }
  pfor(rows, row_cost, [&](int64_t b, int64_t e) {
    std::vector<const uint8_t*> ptrs(row_ptrs);
    std::vector<const uint8_t*> row_base(static_cast<size_t>(s.kh));
    for (int64_t row = b; row < e; ++row) {
      const int64_t n = row / s.oh, oy = row % s.oh;
      const int64_t iy0 = oy * s.stride_h - s.pad_top;
      if (use_pattern && iy0 >= 0 && iy0 + (s.kh - 1) * s.dil_h < s.h) {
        const uint8_t* base = input + (n * s.h + iy0) * row_bytes;
        const int64_t* pat = pattern.data();
        const uint8_t** dst = ptrs.data();
        if (strided && ox_hi > ox_lo) {
          uint8_t* out_row = static_cast<uint8_t*>(output) + row * s.ow * s.c;
          auto edge = [&](int64_t o0, int64_t o1) {
            for (int64_t i = o0 * 9; i < o1 * 9; ++i) dst[i] = pat[i] >= 0 ? base + pat[i] : zero;
            cfg.fn(static_cast<size_t>(s.c), static_cast<size_t>(o1 - o0), taps, dst + o0 * 9,
                   packed->data(), p, nullptr, out_row + o0 * s.c);
          };
          if (ox_lo > 0) edge(0, ox_lo);
          const uint8_t* first[9];
          for (int i = 0; i < 9; ++i) first[i] = base + pat[ox_lo * 9 + i];
          qu8_dwconv9_minmax_fp32_ukernel_u8_strided__avx2(
              static_cast<size_t>(s.c), static_cast<size_t>(ox_hi - ox_lo), first,
              static_cast<size_t>(s.stride_w * s.c), packed->data(), p, out_row + ox_lo * s.c);
          if (ox_hi < s.ow) edge(ox_hi, s.ow);
          continue;
        }
        for (size_t i = 0; i < row_ptrs; ++i) dst[i] = pat[i] >= 0 ? base + pat[i] : zero;
        const int64_t first = row * s.ow * s.c;
        cfg.fn(static_cast<size_t>(s.c), static_cast<size_t>(s.ow), taps, ptrs.data(),
               packed->data(), p, summand ? summand + first : nullptr,
               static_cast<uint8_t*>(output) + first * esize);
        continue;
      }
      for (int64_t ky = 0; ky < s.kh; ++ky) {
        const int64_t iy = oy * s.stride_h - s.pad_top + ky * s.dil_h;
        row_base[ky] = iy >= 0 && iy < s.h ? input + (n * s.h + iy) * s.w * s.c : nullptr;
      }
      const uint8_t** out_ptr = ptrs.data();
      for (int64_t ox = 0; ox < s.ow; ++ox) {
        const int64_t* co = col_off.data() + ox * s.kw;
        for (int64_t ky = 0; ky < s.kh; ++ky) {
          const uint8_t* rb = row_base[ky];
          if (rb == nullptr) {
            for (int64_t kx = 0; kx < s.kw; ++kx) *out_ptr++ = zero;
          } else {
            for (int64_t kx = 0; kx < s.kw; ++kx) *out_ptr++ = co[kx] >= 0 ? rb + co[kx] : zero;
          }
        }
      }
      const int64_t first = row * s.ow * s.c;
      cfg.fn(static_cast<size_t>(s.c), static_cast<size_t>(s.ow), taps, ptrs.data(),
             packed->data(), p, summand ? summand + first : nullptr,
             static_cast<uint8_t*>(output) + first * esize);
    }
  });
}

}  // namespace tfq8
