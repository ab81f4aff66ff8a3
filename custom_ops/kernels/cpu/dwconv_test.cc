// Framework-free tester of the depthwise, pooling, add and elementwise micro-kernels of one ISA against the
// scalar references: exact equality over shape/epilogue sweeps. Built and run by
// tests/ops/test_misc_fuzz.py::test_cpu_kernels_native_harness (natively where the CPU has the
// ISA, or with the AVX512 intrinsics emulated by SIMDe on CPUs without AVX512, so the AVX512
// code paths are checked on every machine). Not part of the op library (setup.py skips *_test.cc).
//
//   usage: dwconv_test avx512vnni|avx2     prints "OK <cases>" or the first mismatch; exit 1.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "custom_ops/kernels/cpu/add.h"
#include "custom_ops/kernels/cpu/dwconv.h"
#include "custom_ops/kernels/cpu/elementwise.h"
#include "custom_ops/kernels/cpu/pool.h"

using namespace tfq8;

namespace {

std::mt19937 rng(12345);
int Rand(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
float RandF(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng); }

int cases = 0;

bool CheckDw(Isa isa, int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
             int64_t st, int64_t dl, int64_t pad, DwOutType ot, DwActivation act, bool summand,
             bool int_bias, bool per_tensor) {
  DwConvShape s{};
  s.n = n; s.h = h; s.w = w; s.c = c; s.m = 1; s.kh = kh; s.kw = kw;
  s.stride_h = s.stride_w = st; s.dil_h = s.dil_w = dl;
  s.pad_top = s.pad_left = pad; s.pad_bottom = s.pad_right = pad > 0 ? pad - 1 + st % 2 : 0;
  if (!s.ComputeOutputSize()) return true;
  std::vector<uint8_t> x(n * h * w * c);
  for (auto& v : x) v = static_cast<uint8_t>(Rand(0, 255));
  std::vector<int8_t> f(kh * kw * c);
  for (auto& v : f) v = static_cast<int8_t>(Rand(-127, 127));
  std::vector<float> fs(c), bf(c);
  std::vector<int32_t> bi(c);
  for (int64_t i = 0; i < c; ++i) {
    fs[i] = RandF(0.001f, 0.01f);
    bf[i] = RandF(-1, 1);
    bi[i] = Rand(-3000, 3000);
  }
  DwEpilogueAttrs a;
  a.input_scale = 0.02f;
  a.input_zero_point = Rand(0, 255);
  a.bias_is_int32 = int_bias;
  a.bias_f32 = bf.data();
  a.bias_s32 = bi.data();
  a.filter_scale = fs.data();
  a.per_tensor_scale = per_tensor;
  a.has_summand = summand;
  a.summand_scale = 0.03f;
  a.summand_zero_point = Rand(0, 255);
  a.activation = act;
  a.clip_min = -0.5f;
  a.clip_max = 1.5f;
  a.out_type = ot;
  a.output_scale = RandF(0.01f, 0.05f);
  a.output_zero_point = Rand(0, 255);
  const DwEpilogue ep = MakeDwEpilogue(s, f.data(), a);
  const size_t out_n = static_cast<size_t>(s.n * s.oh * s.ow * c);
  std::vector<uint8_t> sm(out_n);
  for (auto& v : sm) v = static_cast<uint8_t>(Rand(0, 255));
  const size_t es = ot == DwOutType::kU8 ? 1 : 4;
  std::vector<uint8_t> want(out_n * es), got(out_n * es);
  DwConvRun(s, x.data(), f.data(), ep, a.input_zero_point, nullptr, summand ? sm.data() : nullptr,
            want.data(), SerialFor);
  DwPacked packed;
  if (!PackDwWeights(isa, s, f.data(), ep, &packed)) {
    std::printf("FAIL: no packing for %s\n", IsaName(isa));
    return false;
  }
  DwConvRun(s, x.data(), f.data(), ep, a.input_zero_point, &packed,
            summand ? sm.data() : nullptr, got.data(), SerialFor);
  ++cases;
  if (std::memcmp(want.data(), got.data(), want.size()) != 0) {
    size_t i = 0;
    while (want[i] == got[i]) ++i;
    std::printf("FAIL dwconv %s n%ld h%ld w%ld c%ld k%ldx%ld s%ld d%ld pad%ld out%d act%d sum%d "
                "intbias%d pt%d: first differing byte %zu (element %zu, channel %zu): %u vs %u\n",
                IsaName(isa), (long)n, (long)h, (long)w, (long)c, (long)kh, (long)kw, (long)st,
                (long)dl, (long)pad, (int)ot, (int)act, summand, int_bias, per_tensor, i, i / es,
                (i / es) % c, want[i], got[i]);
    return false;
  }
  return true;
}

bool CheckPoolAdd(Isa isa) {
  const int chans[] = {1, 3, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 130};
  for (int c : chans) {
    for (int count : {1, 2, 3, 9, 49}) {
      std::vector<std::vector<uint8_t>> rows(count, std::vector<uint8_t>(c + 5));
      std::vector<const uint8_t*> ptrs;
      for (auto& r : rows) {
        for (auto& v : r) v = static_cast<uint8_t>(Rand(0, 255));
        ptrs.push_back(r.data());
      }
      for (int kind = 0; kind < 2; ++kind) {
        std::vector<uint8_t> want(c), got(c);
        (kind ? qu8_avgpool_ukernel__ref : qu8_maxpool_ukernel__ref)(c, count, ptrs.data(), 5,
                                                                      want.data());
        (kind ? GetAvgPoolKernel(isa) : GetMaxPoolKernel(isa))(c, count, ptrs.data(), 5, got.data());
        ++cases;
        if (want != got) {
          std::printf("FAIL %s pool c%d count%d\n", kind ? "avg" : "max", c, count);
          return false;
        }
      }
    }
    std::vector<uint8_t> a(c), b(c), want(c), got(c);
    for (int i = 0; i < c; ++i) {
      a[i] = static_cast<uint8_t>(Rand(0, 255));
      b[i] = static_cast<uint8_t>(Rand(0, 255));
    }
    for (int act = 0; act < 3; ++act) {
      const AddParams p = MakeAddParams(0.1f, 128, 0.05f, Rand(0, 255), 0.12f, Rand(0, 255),
                                        static_cast<AddActivation>(act));
      qu8_vadd_minmax_ukernel__ref(c, a.data(), b.data(), want.data(), p);
      GetAddKernel(isa)(c, a.data(), b.data(), got.data(), p);
      ++cases;
      if (want != got) {
        std::printf("FAIL add c%d act%d\n", c, act);
        return false;
      }
    }
  }
  return true;
}

bool CheckElementwise(Isa isa) {
  const float specials[] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 0.0f, -0.0f, 0.5f, 1.5f,
                            2.5f, -0.5f, -1.5f, 127.5f, -128.5f, 3.4e38f};
  for (size_t n : {0, 1, 7, 8, 15, 16, 17, 33, 64, 100}) {
    std::vector<float> x(n + 15);
    for (size_t i = 0; i < x.size(); ++i) x[i] = i < 15 ? specials[i] : RandF(-300, 300);
    std::vector<uint8_t> q(x.size()), want(x.size()), got(x.size());
    std::vector<float> fw(x.size()), fg(x.size());
    for (auto& v : q) v = static_cast<uint8_t>(Rand(0, 255));
    for (float scale : {1.0f, 0.1f, 0.5f, 3.7f}) {
      for (int zp : {0, 128, 255}) {
        const QuantizeParams qp = MakeQuantizeParams(scale, zp);
        f32_qu8_vcvt_ukernel__ref(x.size(), x.data(), want.data(), qp);
        GetQuantizeKernel(isa)(x.size(), x.data(), got.data(), qp);
        // The NaN report, with the NaN first (SIMD body), absent, and last (tail or body).
        for (size_t at : {size_t{0}, x.size(), x.size() - 1}) {
          std::vector<float> v(x);
          v[0] = 0.0f;
          if (at < v.size()) v[at] = NAN;
          std::vector<uint8_t> scratch(v.size());
          const bool r = f32_qu8_vcvt_ukernel__ref(v.size(), v.data(), scratch.data(), qp);
          const bool s = GetQuantizeKernel(isa)(v.size(), v.data(), scratch.data(), qp);
          if (r != (at < v.size()) || s != r) {
            std::printf("FAIL quantize NaN report n%zu at%zu: ref %d simd %d\n", n, at, r, s);
            return false;
          }
        }
        const RequantizeParams rp = MakeRequantizeParams(0.5f, 128, scale, zp);
        std::vector<uint8_t> rw(q.size()), rg(q.size());
        qu8_vrequant_ukernel__ref(q.size(), q.data(), rw.data(), rp);
        GetRequantizeKernel(isa)(q.size(), q.data(), rg.data(), rp);
        qu8_f32_vcvt_ukernel__ref(q.size(), q.data(), fw.data(), zp, scale);
        GetDequantizeKernel(isa)(q.size(), q.data(), fg.data(), zp, scale);
        cases += 3;
        if (want != got || rw != rg || std::memcmp(fw.data(), fg.data(), fw.size() * 4) != 0) {
          std::printf("FAIL elementwise n%zu scale%g zp%d: quantize %d requantize %d dequantize %d\n",
                      n, scale, zp, want != got, rw != rg,
                      std::memcmp(fw.data(), fg.data(), fw.size() * 4) != 0);
          return false;
        }
      }
    }
  }
  return true;
}

// Channel multiply: several rows of odd channel counts, gates with NaN/±inf/huge/negative
// entries (NaN → lo; 0 · inf = NaN).
bool CheckChannelMul(Isa isa) {
  const float specials[] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 0.0f, -0.0f, 0.5f, 2.0f};
  for (size_t ch : {1, 7, 8, 9, 15, 16, 17, 33, 96, 130}) {
    const size_t rows = 3;
    std::vector<float> gate(ch), mult(ch);
    for (size_t c = 0; c < ch; ++c) gate[c] = c < 9 && ch > 16 ? specials[c] : RandF(-2, 2);
    std::vector<uint8_t> q(rows * ch), want(q.size()), got(q.size());
    for (auto& v : q) v = static_cast<uint8_t>(Rand(0, 255));
    for (int zi : {0, 128, 201}) {
      for (int zo : {0, 128, 255}) {
        const RequantizeParams rp = MakeRequantizeParams(0.02f, zi, 0.013f, zo);
        ChannelMulMultipliers(ch, gate.data(), rp, mult.data());
        qu8_vchanmul_ukernel__ref(rows, ch, q.data(), mult.data(), want.data(), rp);
        GetChannelMulKernel(isa)(rows, ch, q.data(), mult.data(), got.data(), rp);
        ++cases;
        if (want != got) {
          std::printf("FAIL channel mul ch%zu zi%d zo%d\n", ch, zi, zo);
          return false;
        }
      }
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string which = argc > 1 ? argv[1] : "avx512vnni";
  const Isa isa = which == "avx2" ? Isa::kAvx2 : Isa::kAvx512Vnni;
  if (!CheckPoolAdd(isa) || !CheckElementwise(isa) || !CheckChannelMul(isa)) return 1;
  const int chans[] = {1, 3, 16, 17, 40, 64, 65, 96, 130};
  const int ks[][2] = {{3, 3}, {5, 5}, {1, 1}, {3, 1}, {2, 3}};
  for (int c : chans) {
    for (const auto& k : ks) {
      for (int st = 1; st <= 2; ++st) {
        const int dl = Rand(1, 2), pad = Rand(0, 2), n = Rand(1, 2);
        const DwOutType ot = static_cast<DwOutType>(Rand(0, 2));
        const DwActivation act = ot == DwOutType::kS32 ? DwActivation::kNone
                                                       : static_cast<DwActivation>(Rand(0, 3));
        const bool summand = ot != DwOutType::kS32 && Rand(0, 1);
        if (!CheckDw(isa, n, Rand(1, 9), Rand(1, 9), c, k[0], k[1], st, dl, pad, ot, act,
                     summand, Rand(0, 1), Rand(0, 1))) {
          return 1;
        }
      }
    }
  }
  // Every out type × activation × summand on one shape.
  for (int ot = 0; ot < 3; ++ot) {
    for (int act = 0; act < 4; ++act) {
      for (int sum = 0; sum < 2; ++sum) {
        if (ot == 2 && (act != 0 || sum)) continue;
        if (!CheckDw(isa, 2, 7, 6, 71, 3, 3, 1, 1, 1, static_cast<DwOutType>(ot),
                     static_cast<DwActivation>(act), sum, ot == 1, false)) {
          return 1;
        }
      }
    }
  }
  std::printf("OK %d\n", cases);
  return 0;
}
