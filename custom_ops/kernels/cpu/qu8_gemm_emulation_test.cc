// Test-only driver (not part of the op library: *_test.cc is skipped by setup.py): runs
// Conv2DRun on every SIMD path, including paths the CPU lacks when built with
// qu8_gemm_emulation_test.h force-included, and compares each with the scalar reference over a
// sweep of shapes and epilogues. Prints "N passed, M failed"; exit status 1 on any mismatch.
#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "custom_ops/kernels/cpu/conv2d.h"

using namespace tfq8;

namespace {

// Runs [0, n) as ranges of 1, 2, 3, ... tasks, one after another, the way a thread pool may
// cut it: every driver must write the same bytes however its tasks are grouped.
void ChunkyFor(int64_t n, int64_t /*cost*/, const std::function<void(int64_t, int64_t)>& fn) {
  for (int64_t b = 0, len = 1; b < n; b += len, ++len) fn(b, std::min(n, b + len));
}

struct Geo {
  int n, h, w, ic, oc, k, stride, dil, pad;
};

// safe_pairs: weights cut so that every same-sign pair of input channels (2j, 2j+1) has
// |w0| + |w1| ≤ 128, which sends the avx2 path to its vpmaddubsw (6x16c4) kernel.
bool RunOne(const Geo& g, const ConvEpilogueAttrs& base, std::mt19937& rng, const char* what,
            bool safe_pairs = false) {
  ConvShape s;
  s.n = g.n; s.h = g.h; s.w = g.w; s.ic = g.ic; s.oc = g.oc; s.kh = s.kw = g.k;
  s.stride_h = s.stride_w = g.stride; s.dil_h = s.dil_w = g.dil;
  s.pad_top = s.pad_bottom = s.pad_left = s.pad_right = g.pad;
  if (!s.ComputeOutputSize()) return true;
  std::uniform_int_distribution<int> u8(0, 255), s8(-127, 127);
  std::uniform_real_distribution<float> uf(0.001f, 0.01f), ub(-1.0f, 1.0f);
  std::vector<uint8_t> x(s.n * s.h * s.w * s.ic);
  for (auto& v : x) v = u8(rng);
  std::vector<int8_t> w(s.taps() * s.ic * s.oc);
  for (auto& v : w) v = s8(rng);
  if (safe_pairs) {
    for (int64_t r = 0; r < s.taps() * s.ic; ++r) {
      if (r % s.ic % 2 != 1) continue;  // the second channel of a pair
      for (int64_t o = 0; o < s.oc; ++o) {
        const int a0 = w[(r - 1) * s.oc + o], b0 = w[r * s.oc + o];
        if (a0 * b0 > 0 && std::abs(a0) + std::abs(b0) > 128)
          w[r * s.oc + o] = static_cast<int8_t>(b0 > 0 ? 128 - a0 : -128 - a0);
      }
    }
  }
  std::vector<float> fs(s.oc), bf(s.oc);
  std::vector<int32_t> bi(s.oc);
  for (int o = 0; o < s.oc; ++o) { fs[o] = uf(rng); bf[o] = ub(rng); bi[o] = s8(rng) * 40; }
  std::vector<uint8_t> sum(s.pixels() * s.oc);
  for (auto& v : sum) v = u8(rng);
  ConvEpilogueAttrs a = base;
  a.filter_scale = fs.data();
  a.bias_f32 = bf.data();
  a.bias_s32 = bi.data();
  const size_t es = a.out_type == QOutType::kU8 ? 1 : 4;
  const size_t bytes = s.pixels() * s.oc * es;
  std::string err;
  auto ref = PackConv(Isa::kRef, s, w.data(), a, &err);
  std::vector<uint8_t> want(bytes, 0xAB);
  Conv2DRun(*ref, s, x.data(), a.has_summand ? sum.data() : nullptr, want.data(), SerialFor);
  bool ok = true;
  const char* names[] = {"avx2", "avxvnni", "avx512vnni", "amx"};
  for (int path = 0; path < 4; ++path) {
    const Isa isa = path <= 1 ? Isa::kAvx2 : path == 2 ? Isa::kAvx512Vnni : Isa::kAmx;
    if (safe_pairs && path != 0) continue;  // only the avx2 path has a kernel for them
    PackedConv p = *PackConv(isa, s, w.data(), a, &err);
    p.use_avxvnni = path == 1;
    // the vpmaddubsw kernel where no other plan wins (Winograd, small-IC im2col, 1-2 rows)
    const bool wino = g.k == 3 && g.stride == 1 && g.dil == 1 && g.ic >= 16;
    // (random ±127 weights are safe too when IC = 1: no pairs)
    const bool fits = Qu8PairsFitS16(w.data(), s.taps(), s.ic, s.oc);
    if (safe_pairs && !fits) std::printf("UNSAFE test weights\n"), ok = false;
    const bool expect_u8 = fits && !wino && !(g.k > 1 && g.ic < 16);
    if (path == 0 && p.u8_pairs != expect_u8) {
      std::printf("KERNEL %s %s: n%d h%d w%d ic%d oc%d k%d: u8_pairs %d, expected %d (%s)\n",
                  names[path], what, g.n, g.h, g.w, g.ic, g.oc, g.k, p.u8_pairs, expect_u8,
                  ConvImplName(p, s).c_str());
      ok = false;
    }
    std::vector<uint8_t> got(bytes + 64, 0xCD);
    Conv2DRun(p, s, x.data(), a.has_summand ? sum.data() : nullptr, got.data(), ChunkyFor);
    if (std::memcmp(got.data(), want.data(), bytes) != 0 || got[bytes] != 0xCD) {
      size_t i = 0;
      while (i < bytes && got[i] == want[i]) ++i;
      std::printf("MISMATCH %s%s %s: n%d h%d w%d ic%d oc%d k%d s%d d%d p%d, first byte %zu\n",
                  names[path], safe_pairs ? " (u8-safe pairs)" : "", what, g.n, g.h, g.w, g.ic,
                  g.oc, g.k, g.stride, g.dil, g.pad, i);
      ok = false;
    }
  }
  return ok;
}

}  // namespace

int main() {
  std::mt19937 rng(1234);
  const Geo geos[] = {
      {1, 1, 1, 1, 1, 1, 1, 1, 0},     {1, 5, 6, 3, 17, 3, 1, 1, 1},
      {2, 9, 7, 70, 33, 3, 2, 1, 1},   {1, 8, 8, 64, 64, 1, 1, 1, 0},
      {1, 9, 9, 128, 40, 1, 1, 1, 0},  {3, 7, 5, 33, 70, 1, 2, 1, 0},
      {1, 11, 10, 17, 40, 5, 1, 2, 4}, {1, 15, 13, 3, 24, 7, 2, 1, 3},
      {2, 4, 3, 128, 16, 3, 1, 1, 1},  {1, 2, 2, 5, 7, 3, 1, 1, 2},
      {1, 12, 12, 64, 96, 3, 1, 1, 1},
      // Task chunks of several pixel blocks: small weights (pixels split first) and weights
      // over half of L2 (large chunks × channel groups), whole and partial last blocks.
      {4, 16, 16, 64, 96, 3, 1, 1, 1}, {2, 8, 8, 256, 160, 3, 1, 1, 1},
      {3, 10, 11, 128, 64, 1, 1, 1, 0},
  };
  int passed = 0, failed = 0;
  for (const Geo& g : geos) {
    for (int variant = 0; variant < 6; ++variant) {
      ConvEpilogueAttrs a;
      a.input_scale = 0.02f;
      a.input_zero_point = variant % 2 ? 128 : 3;
      a.output_scale = 0.5f;
      a.output_zero_point = variant == 1 ? 128 : 0;
      a.activation = variant == 2 ? ConvActivation::kRelu6
                     : variant == 3 ? ConvActivation::kClip : ConvActivation::kRelu;
      a.clip_min = -0.5f; a.clip_max = 1.5f;
      a.has_summand = variant == 1 || variant == 3;
      a.summand_scale = 0.05f; a.summand_zero_point = 100;
      a.out_type = variant == 4 ? QOutType::kF32 : variant == 5 ? QOutType::kS32 : QOutType::kU8;
      if (variant == 5) { a.activation = ConvActivation::kNone; a.has_summand = false; }
      a.bias_is_int32 = variant == 2;
      a.per_tensor_scale = variant == 3;
      char what[32];
      std::snprintf(what, sizeof(what), "variant %d", variant);
      (RunOne(g, a, rng, what) ? passed : failed)++;
      (RunOne(g, a, rng, what, /*safe_pairs=*/true) ? passed : failed)++;
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
