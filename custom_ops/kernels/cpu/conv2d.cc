// INT8 Conv2D / MatMul: epilogue constants, weight packing, the scalar reference and the driver
// that runs the per-ISA micro-kernels (see conv2d.h for the layouts and the scheme).
#include "custom_ops/kernels/cpu/conv2d.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>

#include <unistd.h>

namespace tfq8 {
namespace {

int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Host-side constants: computed in double, rounded once to f32.
float F32(double v) { return static_cast<float>(v); }

bool EnvIs(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, value) == 0;
}

bool EnvFlagOff(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, "0") == 0;
}

// One output element, exactly the documented order of operations.
inline void EpilogueScalar(int32_t acc, float mul, float badd, const uint8_t* s,
                           const QEpilogue& ep, void* c) {
  if (ep.out_type == QOutType::kS32) {
    *static_cast<int32_t*>(c) = acc;
    return;
  }
  float t = static_cast<float>(acc) * mul;
  t = t + badd;
  if (ep.has_summand) {
    const float u = static_cast<float>(static_cast<int32_t>(*s) - ep.zp_summand) * ep.mul_s;
    t = t + u;
  }
  t = t >= ep.lo ? t : ep.lo;  // NaN → lo, as vmaxps(t, lo)
  t = t <= ep.hi ? t : ep.hi;
  if (ep.out_type == QOutType::kF32) {
    *static_cast<float*>(c) = t;
    return;
  }
  int32_t q = static_cast<int32_t>(std::nearbyint(t)) + ep.zp_out;
  q = std::min(255, std::max(0, q));  // only reachable with a degenerate CLIP range
  *static_cast<uint8_t*>(c) = static_cast<uint8_t>(q);
}

}  // namespace

bool ConvShape::ComputeOutputSize() {
  const int64_t ekh = (kh - 1) * dil_h + 1, ekw = (kw - 1) * dil_w + 1;
  const int64_t ph = h + pad_top + pad_bottom, pw = w + pad_left + pad_right;
  if (ph < ekh || pw < ekw) return false;
  oh = (ph - ekh) / stride_h + 1;
  ow = (pw - ekw) / stride_w + 1;
  return true;
}

bool WinogradAllowed() { return !EnvFlagOff("TFQ8_WINOGRAD"); }

bool U8PairsAllowed() { return !EnvFlagOff("TFQ8_AVX2_U8"); }

bool Qu8PairsFitS16(const int8_t* filter, int64_t taps, int64_t ic, int64_t oc) {
  for (int64_t t = 0; t < taps; ++t) {
    for (int64_t i = 0; i + 1 < ic; i += 2) {
      const int8_t* w0 = filter + (t * ic + i) * oc;
      const int8_t* w1 = w0 + oc;
      for (int64_t o = 0; o < oc; ++o) {
        const int a = w0[o], b = w1[o];
        if ((a > 0 && b > 0 && a + b > 128) || (a < 0 && b < 0 && a + b < -128)) return false;
      }
    }
  }
  return true;
}

namespace {

// U' = G' g G'ᵀ per (input, output channel), G' = [2 0 0; 1 1 1; 1 −1 1; 0 0 2], packed for
// the 6x16c2s16 kernel with ξ = 4·row + column as its tap (qu8_winograd_f2x3_avx2.cc).
void PackWinograd(const int8_t* filter, PackedConv* p) {
  constexpr int64_t NR = kIgemmNrAvx2S16;
  const int64_t ic = p->shape.ic, oc = p->shape.oc;
  p->winograd = true;
  p->kc16 = RoundUp(ic, 2);
  p->block16 = p->kc16 * NR;  // one ξ of one 16-channel block
  const int64_t nb16 = (oc + NR - 1) / NR;
  p->weights_wino.assign(nb16 * 16 * p->block16, 0);
  for (int64_t c = 0; c < ic; ++c) {
    for (int64_t o = 0; o < oc; ++o) {
      int g[3][3];
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) g[i][j] = filter[((i * 3 + j) * ic + c) * oc + o];
      int t[4][3];  // G' g
      for (int j = 0; j < 3; ++j) {
        t[0][j] = 2 * g[0][j];
        t[1][j] = g[0][j] + g[1][j] + g[2][j];
        t[2][j] = g[0][j] - g[1][j] + g[2][j];
        t[3][j] = 2 * g[2][j];
      }
      for (int r = 0; r < 4; ++r) {
        const int u[4] = {2 * t[r][0], t[r][0] + t[r][1] + t[r][2], t[r][0] - t[r][1] + t[r][2],
                          2 * t[r][2]};  // (G' g) G'ᵀ
        for (int j = 0; j < 4; ++j) {
          const int64_t xi = 4 * r + j;
          p->weights_wino[((o / NR) * 16 + xi) * p->block16 + (c / 2) * NR * 2 + (o % NR) * 2 +
                          (c % 2)] = static_cast<int16_t>(u[j]);
        }
      }
    }
  }
}

}  // namespace

std::shared_ptr<const PackedConv> PackConv(Isa isa, const ConvShape& s, const int8_t* filter,
                                           const ConvEpilogueAttrs& a, std::string* error) {
  auto p = std::make_shared<PackedConv>();
  p->isa = isa;
  p->use_avxvnni = isa == Isa::kAvx2 && GetCpuFeatures().avx_vnni && !EnvFlagOff("TFQ8_AVXVNNI");
  p->shape = s;
  p->input_zero_point = a.input_zero_point;
  const int64_t ic = s.ic, oc = s.oc, taps = s.taps();
  p->oc_padded = RoundUp(std::max<int64_t>(oc, 1), kConvNr);
  p->kc = RoundUp(ic, 4);
  p->k_amx = RoundUp(std::max<int64_t>(taps * ic, 1), 64);

  // Σw per channel, and the -128 check.
  std::vector<int64_t> wsum(oc, 0);
  const int64_t kn = taps * ic;
  for (int64_t k = 0; k < kn; ++k) {
    const int8_t* row = filter + k * oc;
    for (int64_t o = 0; o < oc; ++o) {
      if (row[o] == -128) {
        *error = "weights must be in -127..127 (found -128 in filter)";
        return nullptr;
      }
      wsum[o] += row[o];
    }
  }

  // Epilogue constants (docs/int8_numerics.md).
  QEpilogue& ep = p->ep;
  ep.out_type = a.out_type;
  ep.has_summand = a.has_summand;
  const bool f32_out = a.out_type == QOutType::kF32;
  const double s_out = f32_out ? 1.0 : static_cast<double>(a.output_scale);
  float lo = f32_out ? -std::numeric_limits<float>::infinity()
                     : static_cast<float>(-a.output_zero_point);
  float hi = f32_out ? std::numeric_limits<float>::infinity()
                     : static_cast<float>(255 - a.output_zero_point);
  switch (a.activation) {
    case ConvActivation::kNone: break;
    case ConvActivation::kRelu: lo = std::max(lo, 0.0f); break;
    case ConvActivation::kRelu6:
      lo = std::max(lo, 0.0f);
      hi = std::min(hi, F32(6.0 / s_out));
      break;
    case ConvActivation::kClip:
      lo = std::max(lo, F32(static_cast<double>(a.clip_min) / s_out));
      hi = std::min(hi, F32(static_cast<double>(a.clip_max) / s_out));
      break;
  }
  ep.lo = lo;
  ep.hi = hi;
  ep.mul_s = F32(static_cast<double>(a.summand_scale) / s_out);
  ep.zp_summand = a.summand_zero_point;
  ep.zp_out = f32_out ? 0 : a.output_zero_point;

  p->bias.assign(p->oc_padded, 0);
  p->mul.assign(p->oc_padded, 0.0f);
  p->badd.assign(p->oc_padded, 0.0f);
  const double s_in = a.input_scale;
  for (int64_t o = 0; o < oc; ++o) {
    const double sw = a.filter_scale[a.per_tensor_scale ? 0 : o];
    int64_t b = -static_cast<int64_t>(a.input_zero_point) * wsum[o];
    if (a.bias_is_int32) {
      b += a.bias_s32[o];
    } else if (a.out_type == QOutType::kS32) {
      const double q = std::nearbyint(static_cast<double>(a.bias_f32[o]) / (s_in * sw));
      b += static_cast<int64_t>(std::max(-9.0e18, std::min(9.0e18, q)));
    } else {
      p->badd[o] = F32(static_cast<double>(a.bias_f32[o]) / s_out);
    }
    p->bias[o] = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(b)));
    p->mul[o] = F32(s_in * sw / s_out);
  }

  // Weights.
  if (isa == Isa::kRef) {
    p->weights.assign(filter, filter + kn * oc);
    return p;
  }
  const int64_t nblocks = p->oc_padded / kConvNr;
  const bool amx = isa == Isa::kAmx;
  const int64_t krows = amx ? p->k_amx / 4 : taps * (p->kc / 4);  // K/4 rows per block
  p->block_bytes = krows * kConvNr * 4;
  p->weights.assign(nblocks * p->block_bytes, 0);
  for (int64_t t = 0; t < taps; ++t) {
    for (int64_t i = 0; i < ic; ++i) {
      const int64_t k = amx ? t * ic + i : t * p->kc + i;  // K index inside the block
      const int8_t* src = filter + (t * ic + i) * oc;
      for (int64_t o = 0; o < oc; ++o) {
        const int64_t blk = o / kConvNr, ob = o % kConvNr;
        p->weights[blk * p->block_bytes + (k / 4) * kConvNr * 4 + ob * 4 + (k % 4)] = src[o];
      }
    }
  }
  const bool avx2_s16 = isa == Isa::kAvx2 && !p->use_avxvnni && !EnvIs("TFQ8_AVX2_KERNEL", "c4");
  if (avx2_s16 && s.kh == 3 && s.kw == 3 && s.stride_h == 1 && s.stride_w == 1 &&
      s.dil_h == 1 && s.dil_w == 1 && ic >= 16 && ic <= kWinogradMaxIc && WinogradAllowed()) {
    PackWinograd(filter, p.get());
    p->weights.clear();  // the c4 blocks are not read on this path: do not keep them
    p->weights.shrink_to_fit();
    return p;
  }
  // Weights whose pairs cannot saturate vpmaddubsw (the quantizer makes them so): the 6x16c4
  // kernel on the c4 blocks and the u8 input. Small-IC multi-tap convs (a network's first
  // layer) keep the s16 kernel's im2col rows, which pack taps·IC densely instead of padding
  // each tap's IC to 4.
  if (avx2_s16 && !(taps > 1 && ic < 16) && U8PairsAllowed() &&
      Qu8PairsFitS16(filter, taps, ic, oc)) {
    p->u8_pairs = true;
    return p;
  }
  if (avx2_s16) {
    // s16 k-pair blocks of 16 channels for qu8_igemm_minmax_fp32_ukernel_6x16c2s16__avx2.
    constexpr int64_t NR = kIgemmNrAvx2S16;
    p->im2col16 = taps > 1 && ic < 16;
    p->tuned16 = !EnvIs("TFQ8_AVX2_S16_DRIVER", "v1");
    p->pointwise16 = !p->im2col16 && taps == 1 && p->tuned16 &&
                     s.pad_top + s.pad_bottom + s.pad_left + s.pad_right == 0;
    p->kc16 = p->im2col16 ? RoundUp(taps * ic, 2) : RoundUp(ic, 2);
    p->block16 = (p->im2col16 ? 1 : taps) * p->kc16 * NR;
    const int64_t nb16 = (oc + NR - 1) / NR;
    p->weights_s16.assign(nb16 * p->block16, 0);
    for (int64_t t = 0; t < taps; ++t) {
      for (int64_t i = 0; i < ic; ++i) {
        const int64_t k = p->im2col16 ? t * ic + i : t * p->kc16 + i;
        const int8_t* src = filter + (t * ic + i) * oc;
        for (int64_t o = 0; o < oc; ++o) {
          p->weights_s16[(o / NR) * p->block16 + (k / 2) * NR * 2 + (o % NR) * 2 + (k % 2)] =
              src[o];
        }
      }
    }
  }
  return p;
}

void qu8_conv2d_minmax_fp32__ref(const ConvShape& s, const uint8_t* input, const int8_t* filter,
                                 const PackedConv& p, const uint8_t* summand, void* output,
                                 int64_t p_begin, int64_t p_end) {
  const int64_t oc = s.oc, ic = s.ic;
  const size_t es = p.ep.out_type == QOutType::kU8 ? 1 : 4;
  const int64_t zp = p.input_zero_point;
  std::vector<int64_t> acc(oc);
  for (int64_t px = p_begin; px < p_end; ++px) {
    const int64_t n = px / (s.oh * s.ow), oy = px / s.ow % s.oh, ox = px % s.ow;
    for (int64_t o = 0; o < oc; ++o) acc[o] = p.bias[o];  // includes -zp_in·Σw
    for (int64_t i = 0; i < s.kh; ++i) {
      for (int64_t j = 0; j < s.kw; ++j) {
        const int64_t iy = oy * s.stride_h - s.pad_top + i * s.dil_h;
        const int64_t ix = ox * s.stride_w - s.pad_left + j * s.dil_w;
        const bool inside = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w;
        const uint8_t* x = inside ? input + ((n * s.h + iy) * s.w + ix) * ic : nullptr;
        for (int64_t c = 0; c < ic; ++c) {
          const int64_t xv = inside ? x[c] : zp;  // padding reads the input zero point
          const int8_t* wr = filter + ((i * s.kw + j) * ic + c) * oc;
          for (int64_t o = 0; o < oc; ++o) acc[o] += xv * wr[o];
        }
      }
    }
    char* out = static_cast<char*>(output) + px * oc * es;
    const uint8_t* sr = summand ? summand + px * oc : nullptr;
    for (int64_t o = 0; o < oc; ++o) {
      const int32_t a32 = static_cast<int32_t>(static_cast<uint32_t>(acc[o]));
      EpilogueScalar(a32, p.mul[o], p.badd[o], sr ? sr + o : nullptr, p.ep, out + o * es);
    }
  }
}

std::string ConvImplName(const PackedConv& p, const ConvShape& s) {
  switch (p.isa) {
    case Isa::kRef: return "ref: qu8_conv2d_minmax_fp32__ref";
    case Isa::kAvx2:
      if (p.winograd) {
        return "avx2: exact Winograd F(2x2,3x3), qu8_igemm_minmax_fp32_ukernel_6x16c2s16__avx2 "
               "on the 16 transformed GEMMs";
      }
      return p.use_avxvnni ? "avx2: qu8_igemm_minmax_fp32_ukernel_4x32c4__avxvnni"
             : (p.u8_pairs || !p.weights_s16.empty()) && s.pixels() <= 2 && !EnvIs("TFQ8_AVX2_GEMV", "s16")
                 ? "avx2: qu8_igemm_minmax_fp32_ukernel_2x32c4__avx2 (1-2 output rows)"
             : !p.weights_s16.empty()
                 ? (p.im2col16 ? "avx2: qu8_igemm_minmax_fp32_ukernel_6x16c2s16__avx2 (input "
                                 "im2col rows widened to u16 per task)"
                               : "avx2: qu8_igemm_minmax_fp32_ukernel_6x16c2s16__avx2 (input "
                                 "widened to u16)")
             : p.u8_pairs ? "avx2: qu8_igemm_minmax_fp32_ukernel_6x16c4__avx2 (u8-safe weight pairs)"
                 : "avx2: qu8_igemm_minmax_fp32_ukernel_2x32c4__avx2";
    case Isa::kAvx512Vnni: return "avx512vnni: qu8_igemm_minmax_fp32_ukernel_8x32c4__avx512vnni";
    case Isa::kAmx: {
      const bool direct = s.kh == 1 && s.kw == 1 && s.stride_h == 1 && s.stride_w == 1 &&
                          s.pad_top + s.pad_bottom + s.pad_left + s.pad_right == 0 &&
                          s.ic % 64 == 0;
      return std::string("amx: qu8_gemm_minmax_fp32_ukernel_32x32c4__amx (") +
             (direct ? "A tiles read the input directly" : "im2col rows gathered per 32 pixels") +
             ")";
    }
  }
  return "?";
}

namespace {

// Per-core L2 size, for sizing task chunks; 512 KB where the C library cannot tell.
int64_t L2Bytes() {
  static const int64_t bytes = [] {
    const long v = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return v >= (128 << 10) && v <= (64 << 20) ? static_cast<int64_t>(v) : int64_t{512 << 10};
  }();
  return bytes;
}

// How a conv's output is cut into tasks, shared by every SIMD driver: task t covers the pixel
// blocks of chunk t / ngroups and the channel blocks of group t % ngroups. Inside a task the
// driver loops channel blocks outside pixel blocks, so each weight panel is loaded once per
// chunk and reused from L1/L2 across the chunk's pixel blocks, while the chunk's input rows
// (a_bytes per pixel block) stay in L2. Every task re-reads its group's weights and
// gathers / indexes its chunk's rows again, and tasks of one chunk write parts of the same
// output cache lines from different cores. So:
// - weights that fit in half of L2 (early, wide layers; MobileNetV2's 1×1s): split pixels
//   first, into about kTargetTasks chunks (MobileNetV2's 112² 16→96 1×1 on AVX2 gained 1.5× on
//   two threads over 3 chunks × 6 channel groups);
// - larger weights (ResNet50's later layers: up to 4.7 MB of u16 weights for 49 pixels at
//   batch 1): the largest chunks L2 allows, then channel groups, so that the weights stream
//   from memory about once instead of once per chunk (splitting pixels first there cost
//   ResNet50 b1 on AVX2 1.2×).
// Too few tasks for the threads: smaller chunks.
struct ConvTaskPlan {
  int64_t mblocks = 0, nblocks = 0, mchunk = 1, nchunks = 0, ngroups = 1, per_group = 0;
  int64_t tasks() const { return nchunks * ngroups; }
  ConvTaskPlan(int64_t mblocks_, int64_t nblocks_, int64_t a_bytes, int64_t w_bytes)
      : mblocks(mblocks_), nblocks(nblocks_) {
    constexpr int64_t kTargetTasks = 16;
    const int64_t l2 = L2Bytes();
    const int64_t l2_chunk = std::max<int64_t>(1, l2 * 3 / 8 / std::max<int64_t>(1, a_bytes));
    mchunk = w_bytes <= l2 / 2
                 ? std::min<int64_t>((mblocks + kTargetTasks - 1) / kTargetTasks, l2_chunk)
                 : std::min<int64_t>(mblocks, l2_chunk);
    mchunk = std::max<int64_t>(1, mchunk);
    nchunks = (mblocks + mchunk - 1) / mchunk;
    // even chunks: 33 blocks in chunks of 32 would leave one chunk's tasks with 1/32 of the
    // work of the other's, and a thread with nearly nothing to do
    mchunk = (mblocks + nchunks - 1) / nchunks;
    if (nchunks < kTargetTasks) {
      ngroups = std::min<int64_t>(nblocks, (kTargetTasks + nchunks - 1) / nchunks);
      if (nchunks * ngroups < kTargetTasks) {  // few channel blocks too: smaller chunks
        nchunks = std::min<int64_t>(mblocks, (kTargetTasks + ngroups - 1) / ngroups);
        mchunk = (mblocks + nchunks - 1) / nchunks;
        nchunks = (mblocks + mchunk - 1) / mchunk;
      }
    }
    per_group = (nblocks + ngroups - 1) / ngroups;
    ngroups = (nblocks + per_group - 1) / per_group;
  }

  // Runs tasks [t0, t1) of one pfor range: build_chunk(mb0, mb1) prepares the rows of pixel
  // blocks [mb0, mb1) only when the chunk changes (a chunk's ngroups tasks are consecutive, so
  // a range builds each of its chunks once), then channel_block(nb, mb0, mb1) for each channel
  // block of the task's group, which loops the chunk's pixel blocks inside (see above).
  template <typename BuildChunkFn, typename ChannelBlockFn>
  void ForEachChannelBlock(int64_t t0, int64_t t1, BuildChunkFn&& build_chunk,
                           ChannelBlockFn&& channel_block) const {
    int64_t built = -1;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t chunk = t / ngroups, grp = t % ngroups;
      const int64_t mb0 = chunk * mchunk, mb1 = std::min(mblocks, mb0 + mchunk);
      if (built != chunk) {
        build_chunk(mb0, mb1);
        built = chunk;
      }
      const int64_t nb0 = grp * per_group, nb1 = std::min(nblocks, nb0 + per_group);
      for (int64_t nb = nb0; nb < nb1; ++nb) channel_block(nb, mb0, mb1);
    }
  }
  // The same with one call block(mb, nb, mb0) per output block: pixel block mb of the chunk
  // that starts at mb0, channel block nb.
  template <typename BuildChunkFn, typename BlockFn>
  void ForEachBlock(int64_t t0, int64_t t1, BuildChunkFn&& build_chunk, BlockFn&& block) const {
    ForEachChannelBlock(t0, t1, build_chunk, [&](int64_t nb, int64_t mb0, int64_t mb1) {
      for (int64_t mb = mb0; mb < mb1; ++mb) block(mb, nb, mb0);
    });
  }
};

// Fills a[(mb - mb0)·taps·mr + tap·mr + m] with the input row of output pixel mb·mr + m at each
// tap, for the pixel blocks [mb0, mb1): rows of `row` elements, a padding tap points at zrow,
// rows past the last pixel repeat it.
template <typename T>
void BuildIndirection(const ConvShape& s, const T* x, int64_t row, const T* zrow, int64_t mr,
                      int64_t mb0, int64_t mb1, const T** a) {
  const int64_t pixels = s.pixels(), taps = s.taps();
  // 1×1 unpadded: every tap is inside the input (ComputeOutputSize).
  const bool pointwise =
      taps == 1 && s.pad_top + s.pad_bottom + s.pad_left + s.pad_right == 0;
  // (n, oy, ox) of the current pixel, stepped rather than divided out per pixel: with a small
  // K (MobileNetV2's 16-channel 1×1s) three divisions per pixel cost as much as its MACs.
  int64_t px = mb0 * mr;  // < pixels: mb0 is a block of the output
  int64_t n = px / (s.oh * s.ow), oy = px / s.ow % s.oh, ox = px % s.ow;
  for (int64_t mb = mb0; mb < mb1; ++mb) {
    const T** blk = a + (mb - mb0) * taps * mr;
    for (int64_t m = 0; m < mr; ++m) {
      if (pointwise) {
        blk[m] = x + ((n * s.h + oy * s.stride_h) * s.w + ox * s.stride_w) * row;
      } else {
        for (int64_t i = 0; i < s.kh; ++i) {
          const int64_t iy = oy * s.stride_h - s.pad_top + i * s.dil_h;
          for (int64_t j = 0; j < s.kw; ++j) {
            const int64_t ix = ox * s.stride_w - s.pad_left + j * s.dil_w;
            const bool inside = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w;
            blk[(i * s.kw + j) * mr + m] =
                inside ? x + ((n * s.h + iy) * s.w + ix) * row : zrow;
          }
        }
      }
      if (px + 1 < pixels) {  // rows past the last pixel repeat it
        ++px;
        if (++ox == s.ow) {
          ox = 0;
          if (++oy == s.oh) oy = 0, ++n;
        }
      }
    }
  }
}

// Scratch vectors reused across calls (no per-call allocation or page faults) and safe for
// concurrent ops and tasks: each lease holds its own vector until it is destroyed. Used instead
// of thread_local: in a dlopen'ed library every thread_local access is a __tls_get_addr call,
// which glibc before 2.39 answers on its slow path once other libraries with TLS were loaded
// after the thread started (3–4 % of MobileNetV2's CPU time in perf, once per task).
template <typename T>
class ScratchLease {
 public:
  ScratchLease() {
    {
      std::lock_guard<std::mutex> lock(Mu());
      auto& pool = Pool();
      if (!pool.empty()) {
        buf_ = std::move(pool.back());
        pool.pop_back();
      }
    }
    if (!buf_) buf_.reset(new std::vector<T>());
  }
  // At least n elements; earlier contents are not kept when it grows.
  explicit ScratchLease(size_t n) : ScratchLease() { Reserve(n); }
  ~ScratchLease() {
    std::lock_guard<std::mutex> lock(Mu());
    Pool().push_back(std::move(buf_));
  }
  ScratchLease(const ScratchLease&) = delete;
  ScratchLease& operator=(const ScratchLease&) = delete;

  void Reserve(size_t n) {
    if (buf_->size() < n) {
      buf_->clear();
      buf_->shrink_to_fit();
      buf_->resize(n);
    }
  }
  std::vector<T>& vec() { return *buf_; }
  T* data() { return buf_->data(); }

 private:
  static std::mutex& Mu() {
    static std::mutex* mu = new std::mutex;
    return *mu;
  }
  static std::vector<std::unique_ptr<std::vector<T>>>& Pool() {
    static auto* pool = new std::vector<std::unique_ptr<std::vector<T>>>;
    return *pool;
  }
  std::unique_ptr<std::vector<T>> buf_;
};

// The c4 kernels: 32-channel blocks, or 16-channel halves of them for the 6x16c4 kernel.
void RunIgemm(const PackedConv& p, const ConvShape& s, const uint8_t* input,
              const uint8_t* summand, void* output, const ParallelFor& pfor, bool u8_pairs) {
  QIgemmFn fn;
  int64_t mr_max, nr = kConvNr;
  switch (p.isa) {
    case Isa::kAvx512Vnni:
      fn = qu8_igemm_minmax_fp32_ukernel_8x32c4__avx512vnni;
      mr_max = kIgemmMrAvx512;
      break;
    default:
      fn = p.use_avxvnni ? qu8_igemm_minmax_fp32_ukernel_4x32c4__avxvnni
                         : qu8_igemm_minmax_fp32_ukernel_2x32c4__avx2;
      mr_max = p.use_avxvnni ? kIgemmMrAvxvnni : kIgemmMrAvx2;
      if (u8_pairs) {
        fn = qu8_igemm_minmax_fp32_ukernel_6x16c4__avx2;
        mr_max = kIgemmMrAvx2U8;
        nr = kIgemmNrAvx2U8;
      }
      break;
  }
  const int64_t ic = s.ic, kc = p.kc, taps = s.taps();
  // Channels padded to a multiple of 4 (zero weights there) so 4-byte reads stay inside.
  std::vector<uint8_t> padded;
  const uint8_t* x = input;
  if (kc != ic) {
    const int64_t npx = s.n * s.h * s.w;
    padded.assign(npx * kc, 0);
    for (int64_t i = 0; i < npx; ++i) std::memcpy(&padded[i * kc], input + i * ic, ic);
    x = padded.data();
  }
  const std::vector<uint8_t> zrow(kc, static_cast<uint8_t>(p.input_zero_point));
  const int64_t pixels = s.pixels(), oc = s.oc;
  const int64_t nblocks = (oc + nr - 1) / nr;
  const ConvTaskPlan g((pixels + mr_max - 1) / mr_max, nblocks, mr_max * taps * kc,
                       taps * kc * p.oc_padded);
  const size_t es = p.ep.out_type == QOutType::kU8 ? 1 : 4;
  const int64_t cost = g.mchunk * mr_max * taps * kc * nr * g.per_group / 16 + 64;
  pfor(g.tasks(), cost, [&](int64_t t0, int64_t t1) {
    ScratchLease<const uint8_t*> ptrs_lease;  // indirection rows [mb][tap][MR] of one chunk
    std::vector<const uint8_t*>& ptrs = ptrs_lease.vec();
    auto build_chunk = [&](int64_t mb0, int64_t mb1) {
      ptrs.resize((mb1 - mb0) * taps * mr_max);
      BuildIndirection(s, x, kc, zrow.data(), mr_max, mb0, mb1, ptrs.data());
    };
    auto block = [&](int64_t mb, int64_t nb, int64_t mb0) {
      const int64_t n0 = nb * nr, p0 = mb * mr_max;
      const size_t nc = static_cast<size_t>(std::min<int64_t>(nr, oc - n0));
      const size_t mr = static_cast<size_t>(std::min<int64_t>(mr_max, pixels - p0));
      // channel n0 of its 32-channel block: 4 bytes per channel in each row
      fn(mr, nc, kc, taps, ptrs.data() + (mb - mb0) * taps * mr_max,
         p.weights.data() + n0 / kConvNr * p.block_bytes + n0 % kConvNr * 4, p.bias.data() + n0, p.mul.data() + n0,
         p.badd.data() + n0, static_cast<char*>(output) + (p0 * oc + n0) * es, oc,
         summand ? summand + p0 * oc + n0 : nullptr, p.ep);
    };
    g.ForEachBlock(t0, t1, build_chunk, block);
  });
}

void RunIgemmAvx2S16(const PackedConv& p, const ConvShape& s, const uint8_t* input,
                     const uint8_t* summand, void* output, const ParallelFor& pfor) {
  constexpr int64_t MR = kIgemmMrAvx2S16, NR = kIgemmNrAvx2S16;
  const bool im2col = p.im2col16;
  const int64_t ic = s.ic, kc = p.kc16, taps = im2col ? 1 : s.taps();
  const int64_t in_px = s.n * s.h * s.w;
  const int64_t xs = im2col ? ic : kc;  // u16 values per widened input pixel
  const uint16_t zp = static_cast<uint16_t>(p.input_zero_point);
  // 1×1 without padding: every output pixel reads one input pixel, so each task widens just
  // the rows of its own chunk into a pooled buffer that stays in cache (no whole-tensor
  // u16 copy written to and read back from memory).
  const bool pointwise = p.pointwise16;
  // Otherwise: the input zero-extended to u16 rows of xs values, then one row of zp_in
  // (padding taps).
  // im2col16: rows gathered straight from the u8 input (qu8_im2col_u16__avx2), no u16 copy.
  const bool whole = !pointwise && !im2col;
  ScratchLease<uint16_t> buf(whole ? static_cast<size_t>((in_px + 1) * xs) : 0);
  uint16_t* x16 = buf.data();
  uint16_t* zrow = x16 + in_px * xs;
  if (whole) {
    for (int64_t i = 0; i < xs; ++i) zrow[i] = zp;
    pfor(in_px, xs / 4 + 4, [&](int64_t b, int64_t e) {
      qu8_widen_u16__avx2(input + b * ic, e - b, ic, ic, x16 + b * xs, xs, xs);
    });
  }

  const int64_t pixels = s.pixels(), oc = s.oc;
  const int64_t nblocks = (oc + NR - 1) / NR;
  const size_t es = p.ep.out_type == QOutType::kU8 ? 1 : 4;
  const ConvTaskPlan g((pixels + MR - 1) / MR, nblocks, MR * taps * kc * 2,
                       taps * kc * nblocks * NR * 2);
  const int64_t cost = g.mchunk * MR * taps * kc * NR * g.per_group / 24 + 64;
  pfor(g.tasks(), cost, [&](int64_t t0, int64_t t1) {
    ScratchLease<const uint16_t*> ptrs_lease;
    // im2col16: the gathered windows of a chunk; pointwise16: the chunk's rows widened to u16
    ScratchLease<uint16_t> rows_lease;
    std::vector<const uint16_t*>& ptrs = ptrs_lease.vec();
    std::vector<uint16_t>& rows = rows_lease.vec();
    auto build_chunk = [&](int64_t mb0, int64_t mb1) {
      // Indirection rows [mb][tap][MR]; rows past the last pixel repeat it.
      ptrs.resize((mb1 - mb0) * taps * MR);
      if (pointwise) {
        const int64_t r0 = mb0 * MR, r1 = std::min(mb1 * MR, pixels);  // real rows
        rows.resize((r1 - r0) * kc);
        if (s.stride_h == 1 && s.stride_w == 1) {
          qu8_widen_u16__avx2(input + r0 * ic, r1 - r0, ic, ic, rows.data(), kc, kc);
        } else {
          int64_t n = r0 / (s.oh * s.ow), oy = r0 / s.ow % s.oh, ox = r0 % s.ow;
          for (int64_t r = r0; r < r1; ++r) {
            qu8_widen_u16__avx2(
                input + ((n * s.h + oy * s.stride_h) * s.w + ox * s.stride_w) * ic, 1, ic, ic,
                rows.data() + (r - r0) * kc, kc, kc);
            if (++ox == s.ow) {
              ox = 0;
              if (++oy == s.oh) oy = 0, ++n;
            }
          }
        }
        for (int64_t r = 0; r < (mb1 - mb0) * MR; ++r) {
          ptrs[r] = rows.data() + std::min(r, r1 - r0 - 1) * kc;  // past the end: the last
        }
      } else if (im2col) {
        const int64_t r0 = mb0 * MR, r1 = std::min(mb1 * MR, pixels);  // real rows
        rows.resize((r1 - r0) * kc + 32);  // + slack for the widening stores
        const Im2colGeometry geo{s.h,        s.w,        ic,        s.kh,         s.kw,
                                 s.stride_h, s.stride_w, s.dil_h,   s.dil_w,      s.pad_top,
                                 s.pad_left, s.oh,       s.ow,      in_px * ic};
        qu8_im2col_u16__avx2(input, geo, zp, r0, r1 - r0, rows.data(), kc);
        for (int64_t r = 0; r < (mb1 - mb0) * MR; ++r) {
          ptrs[r] = rows.data() + std::min(r, r1 - r0 - 1) * kc;  // past the end: the last
        }
      }
      if (!im2col && !pointwise) {
        BuildIndirection<uint16_t>(s, x16, kc, zrow, MR, mb0, mb1, ptrs.data());
      }
    };
    auto block = [&](int64_t mb, int64_t nb, int64_t mb0) {
      const int64_t n0 = nb * NR, p0 = mb * MR;
      const size_t nc = static_cast<size_t>(std::min<int64_t>(NR, oc - n0));
      const size_t mr = static_cast<size_t>(std::min<int64_t>(MR, pixels - p0));
      qu8_igemm_minmax_fp32_ukernel_6x16c2s16__avx2(
          mr, nc, kc, taps, ptrs.data() + (mb - mb0) * taps * MR,
          p.weights_s16.data() + nb * p.block16, p.bias.data() + n0, p.mul.data() + n0,
          p.badd.data() + n0, static_cast<char*>(output) + (p0 * oc + n0) * es, oc,
          summand ? summand + p0 * oc + n0 : nullptr, p.ep);
    };
    g.ForEachBlock(t0, t1, build_chunk, block);
  });
}

// Exact Winograd F(2×2, 3×3) (PackedConv::winograd): tasks as in RunIgemmAvx2S16, over blocks
// of MR 2×2 output tiles instead of MR pixels. Per task: transform its chunk's input tiles once
// (16 s16 rows per tile), then per 16-channel block 16 GEMMs (one per ξ) into an s32 scratch
// and the output transform with the fused epilogue.
void RunWinogradAvx2(const PackedConv& p, const ConvShape& s, const uint8_t* input,
                     const uint8_t* summand, void* output, const ParallelFor& pfor) {
  constexpr int64_t MR = kIgemmMrAvx2S16, NR = kIgemmNrAvx2S16;
  const int64_t kc = p.kc16, oc = s.oc;
  const WinogradGeometry geo{s.h,  s.w,  s.ic, kc, s.pad_top, s.pad_left, s.oh, s.ow,
                             (s.oh + 1) / 2, (s.ow + 1) / 2};
  const int64_t tiles = s.n * geo.tiles_h * geo.tiles_w;
  const int64_t nblocks = (oc + NR - 1) / NR;
  // A GEMM reads one ξ's rows of the chunk at a time (1/16 of its transformed tiles), so the
  // plan sizes chunks by that slice (×4 for the rest of the working set): larger chunks than
  // by the whole transform, and each chunk streams the (16/9 × larger) weights once.
  const ConvTaskPlan g((tiles + MR - 1) / MR, nblocks, MR * kc * 2 * 4,
                       16 * kc * nblocks * NR * 2);
  const size_t es = p.ep.out_type == QOutType::kU8 ? 1 : 4;
  QEpilogue raw;  // the GEMMs store plain s32 sums; bias and epilogue come after the transform
  raw.out_type = QOutType::kS32;
  static const int32_t kZeroBias[NR] = {};
  const uint8_t zp = static_cast<uint8_t>(p.input_zero_point);
  const int64_t cost = g.mchunk * MR * 16 * kc * NR * g.per_group / 24 + 64;
  pfor(g.tasks(), cost, [&](int64_t t0, int64_t t1) {
    ScratchLease<int16_t> v_lease;         // [ξ][tile][kc] transformed inputs of one chunk
    ScratchLease<int32_t> m_lease;         // [ξ][tile][NR] GEMM results of one channel block
    ScratchLease<const uint16_t*> ptrs_lease;  // [ξ][tile] rows of v for the kernel
    auto build_chunk = [&](int64_t mb0, int64_t mb1) {
      const int64_t tile0 = mb0 * MR, count = std::min(mb1 * MR, tiles) - tile0;
      const int64_t cap = (mb1 - mb0) * MR;  // rows per ξ, a whole number of kernel blocks
      v_lease.Reserve(static_cast<size_t>(16 * cap * kc));
      qu8_winograd_f2x3_input__avx2(input, geo, zp, tile0, count, v_lease.data(), cap * kc);
      std::vector<const uint16_t*>& ptrs = ptrs_lease.vec();
      ptrs.resize(16 * cap);
      const uint16_t* v = reinterpret_cast<const uint16_t*>(v_lease.data());
      for (int64_t xi = 0; xi < 16; ++xi)
        for (int64_t r = 0; r < cap; ++r)  // past the last tile: repeat it
          ptrs[xi * cap + r] = v + xi * cap * kc + std::min(r, count - 1) * kc;
      m_lease.Reserve(static_cast<size_t>(16 * cap * NR));  // cap changes only with the chunk
    };
    // Per channel block: 16 GEMMs over the chunk's tiles, then the output transform.
    auto channel_block = [&](int64_t nb, int64_t mb0, int64_t mb1) {
      const int64_t tile0 = mb0 * MR, count = std::min(mb1 * MR, tiles) - tile0;
      const int64_t cap = (mb1 - mb0) * MR;
      int32_t* m = m_lease.data();
      const int64_t n0 = nb * NR;
      const size_t nc = static_cast<size_t>(std::min<int64_t>(NR, oc - n0));
      for (int64_t xi = 0; xi < 16; ++xi) {
        const int16_t* w = p.weights_wino.data() + (nb * 16 + xi) * p.block16;
        for (int64_t r0 = 0; r0 < count; r0 += MR) {
          qu8_igemm_minmax_fp32_ukernel_6x16c2s16__avx2(
              static_cast<size_t>(std::min<int64_t>(MR, count - r0)), nc, kc, 1,
              ptrs_lease.data() + xi * cap + r0, w, kZeroBias, p.mul.data() + n0,
              p.badd.data() + n0, m + (xi * cap + r0) * NR, NR, nullptr, raw);
        }
      }
      qu8_winograd_f2x3_output__avx2(m, cap * NR, geo, tile0, count, nc, p.bias.data() + n0,
                                     p.mul.data() + n0, p.badd.data() + n0,
                                     summand ? summand + n0 : nullptr,
                                     static_cast<char*>(output) + n0 * es, oc, p.ep);
    };
    g.ForEachChannelBlock(t0, t1, build_chunk, channel_block);
  });
}

void RunAmx(const PackedConv& p, const ConvShape& s, const uint8_t* input,
            const uint8_t* summand, void* output, const ParallelFor& pfor) {
  constexpr int64_t MB = 32;
  const int64_t ic = s.ic, taps = s.taps(), K = p.k_amx;
  const bool direct = s.kh == 1 && s.kw == 1 && s.stride_h == 1 && s.stride_w == 1 &&
                      s.pad_top + s.pad_bottom + s.pad_left + s.pad_right == 0 && ic % 64 == 0;
  const int64_t pixels = s.pixels(), oc = s.oc;
  const int64_t nblocks = p.oc_padded / kConvNr;
  const ConvTaskPlan g((pixels + MB - 1) / MB, nblocks, MB * K, K * p.oc_padded);
  const size_t es = p.ep.out_type == QOutType::kU8 ? 1 : 4;
  const uint8_t zp = static_cast<uint8_t>(p.input_zero_point);
  const int64_t cost = g.mchunk * (MB * K * kConvNr * g.per_group / 256 + MB * K / 8) + 64;
  pfor(g.tasks(), cost, [&](int64_t t0, int64_t t1) {
    ScratchLease<uint8_t> rows_lease;          // the chunk's gathered im2col rows, K bytes each
    ScratchLease<int32_t> acc_lease(32 * 32);  // 32×32 accumulators
    std::vector<uint8_t>& rows = rows_lease.vec();
    std::vector<int32_t>& acc = acc_lease.vec();
    qu8_amx_tile_begin();
    auto build_chunk = [&](int64_t mb0, int64_t mb1) {
      const int64_t p_end = std::min(mb1 * MB, pixels);
      if (!direct || p_end % MB != 0) rows.resize((mb1 - mb0) * MB * K);
      for (int64_t px = mb0 * MB; px < p_end; ++px) {
        if (direct && px / MB * MB + MB <= pixels) continue;  // read in place
        uint8_t* r = rows.data() + (px - mb0 * MB) * K;
        const int64_t n = px / (s.oh * s.ow), oy = px / s.ow % s.oh, ox = px % s.ow;
        for (int64_t i = 0; i < s.kh; ++i) {
          const int64_t iy = oy * s.stride_h - s.pad_top + i * s.dil_h;
          for (int64_t j = 0; j < s.kw; ++j) {
            const int64_t ix = ox * s.stride_w - s.pad_left + j * s.dil_w;
            uint8_t* dst = r + (i * s.kw + j) * ic;
            if (iy >= 0 && iy < s.h && ix >= 0 && ix < s.w) {
              std::memcpy(dst, input + ((n * s.h + iy) * s.w + ix) * ic, ic);
            } else {
              std::memset(dst, zp, ic);  // padding reads the input zero point
            }
          }
        }
        std::memset(r + taps * ic, 0, K - taps * ic);  // zero weights there anyway
      }
    };
    auto block = [&](int64_t mb, int64_t nb, int64_t mb0) {
      const int64_t n0 = nb * kConvNr, p0 = mb * MB;
      const size_t nc = static_cast<size_t>(std::min<int64_t>(kConvNr, oc - n0));
      const size_t mr = static_cast<size_t>(std::min<int64_t>(MB, pixels - p0));
      // A rows of pixel block mb: the input itself (direct, whole blocks) or gathered rows.
      const bool in_place = direct && p0 + MB <= pixels;
      const uint8_t* a = in_place ? input + p0 * ic : rows.data() + (mb - mb0) * MB * K;
      qu8_gemm_minmax_fp32_ukernel_32x32c4__amx(
          mr, nc, K, a, static_cast<size_t>(in_place ? ic : K),
          p.weights.data() + nb * p.block_bytes, p.bias.data() + n0, p.mul.data() + n0,
          p.badd.data() + n0, static_cast<char*>(output) + (p0 * oc + n0) * es, oc,
          summand ? summand + p0 * oc + n0 : nullptr, p.ep, acc.data());
    };
    g.ForEachBlock(t0, t1, build_chunk, block);
    qu8_amx_tile_end();
  });
}

}  // namespace

void Conv2DRun(const PackedConv& p, const ConvShape& s, const uint8_t* input,
               const uint8_t* summand, void* output, const ParallelFor& pfor) {
  if (s.pixels() == 0 || s.oc == 0) return;
  switch (p.isa) {
    case Isa::kRef: {
      const int64_t cost = s.taps() * s.ic * s.oc + 10 * s.oc;
      pfor(s.pixels(), cost, [&](int64_t b, int64_t e) {
        qu8_conv2d_minmax_fp32__ref(s, input, p.weights.data(), p, summand, output, b, e);
      });
      return;
    }
    case Isa::kAmx: RunAmx(p, s, input, summand, output, pfor); return;
    default:
      // One or two output rows (a batch-1 MatMul): the 6-row s16 kernel would compute 6 rows
      // for 1 and stream twice the weight bytes; the 2x32c4 kernel widens the s8 weights in
      // registers and computes 2 rows.
      if (p.winograd) {
        RunWinogradAvx2(p, s, input, summand, output, pfor);
      } else if (p.u8_pairs && !(s.pixels() <= 2 && !EnvIs("TFQ8_AVX2_GEMV", "s16"))) {
        RunIgemm(p, s, input, summand, output, pfor, /*u8_pairs=*/true);
      } else if (p.isa == Isa::kAvx2 && !p.use_avxvnni && !p.weights_s16.empty() &&
          !(s.pixels() <= 2 && !EnvIs("TFQ8_AVX2_GEMV", "s16"))) {
        RunIgemmAvx2S16(p, s, input, summand, output, pfor);
      } else {
        RunIgemm(p, s, input, summand, output, pfor, /*u8_pairs=*/false);
      }
      return;
  }
}

}  // namespace tfq8
