// Single-thread timing of the framework-free CPU conv / depthwise drivers (Conv2DRun, DwConvRun)
// on the distinct MobileNetV2 / ResNet-50 (224×224) layer shapes: min and median µs per call
// and GMAC/s, random u8 inputs and ±127 weights, ReLU6 (residual projections: summand, zp 128).
// No TensorFlow, no threads: the kernels' own efficiency, stable on a shared machine where
// 2-thread timings are not. Build after `python setup.py build_ext --inplace`:
//
//   O=build/tfq8_objs/tf2.21.0-cpu/custom_ops_kernels_cpu_
//   g++ -O2 -std=c++17 -I. custom_ops/kernels/cpu/tools/kernel_bench.cc ${O}{conv2d,dwconv,\
//     dwconv_avx2,dwconv_avx512,dwconv_ref,isa,qu8_igemm_minmax_fp32_ukernel_2x32c4__avx2,\
//     qu8_igemm_minmax_fp32_ukernel_4x32c4__avxvnni,qu8_igemm_minmax_fp32_ukernel_8x32c4__avx512,\
//     qu8_winograd_f2x3_avx2,qu8_gemm_minmax_fp32_ukernel_32x32c4__amx}.cc.o -o /tmp/kernel_bench
//   TFQ8_ISA=avx2 /tmp/kernel_bench mnv2 [batch]      # or rn50; KB_ONLY=<row> KB_SECS=<s>
//   KB_U8SAFE=1: weights with u8-safe pairs (the 6x16c4 kernel; TFQ8_AVX2_U8=0 for the s16 one)
//   KB_THREADS=2: split over 2 threads the way the TF glue does (custom_ops/tf/common.h: the
//   caller plus spinning helpers claiming grains of ~1/8 per thread, none below ~10k cycles),
//   to see each layer's thread scaling without TensorFlow's executor in the way.
//
// Kinds: c conv, p conv + summand (residual), d depthwise 3×3. (setup.py skips tools/.)
#include <atomic>
#include <thread>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>
#include <algorithm>
#include "custom_ops/kernels/cpu/conv2d.h"
#include "custom_ops/kernels/cpu/dwconv.h"
using namespace tfq8;

// Persistent helpers that spin between calls (a benchmark-only idealisation of the TF pool's
// hand-off: no wake-up latency), claiming grains like TfParallelFor.
struct SpinPool {
  std::vector<std::thread> th;
  std::atomic<int> epoch{0}, busy{0};
  std::atomic<bool> stop{false};
  std::atomic<int64_t> next{0};
  int64_t n = 0, grain = 1;
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  void Work() {
    for (;;) {
      int64_t b = next.fetch_add(grain);
      if (b >= n) return;
      (*fn)(b, std::min(n, b + grain));
    }
  }
  explicit SpinPool(int helpers) {
    for (int i = 0; i < helpers; ++i)
      th.emplace_back([this] {
        int seen = 0;
        while (!stop.load()) {
          int e = epoch.load(std::memory_order_acquire);
          if (e == seen) { __builtin_ia32_pause(); continue; }
          seen = e; Work(); busy.fetch_sub(1, std::memory_order_acq_rel);
        }
      });
  }
  ~SpinPool() { stop = true; for (auto& t : th) t.join(); }
  void For(int64_t count, int64_t cost, const std::function<void(int64_t, int64_t)>& f) {
    const int threads = (int)th.size() + 1;
    double total = (double)count * (double)std::max<int64_t>(cost, 1);
    if (threads <= 1 || count <= 1 || total < 20000.0) { if (count > 0) f(0, count); return; }
    grain = std::max<int64_t>(1, count / (8 * threads));
    grain = std::min(count, std::max(grain, 10000 / std::max<int64_t>(cost, 1) + 1));
    n = count; fn = &f; next = 0; busy = (int)th.size();
    epoch.fetch_add(1, std::memory_order_acq_rel);
    Work();
    while (busy.load(std::memory_order_acquire) > 0) __builtin_ia32_pause();
  }
};

double now(){ return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

int main(int argc, char** argv) {
  const char* net = argc > 1 ? argv[1] : "mnv2";
  int batch = argc > 2 ? atoi(argv[2]) : 1;
  ParallelFor pf = SerialFor;
  const int nthreads = getenv("KB_THREADS") ? atoi(getenv("KB_THREADS")) : 1;
  std::unique_ptr<SpinPool> pool;
  if (nthreads > 1) {
    pool.reset(new SpinPool(nthreads - 1));
    pf = [&pool](int64_t n, int64_t cost, const std::function<void(int64_t, int64_t)>& fn) {
      pool->For(n, cost, fn);
    };
  }
  struct L { const char* kind; int h, ic, oc, k, s; };  // kind: c conv, d dw, p conv+summand
  std::vector<L> ls;
  if (!strcmp(net, "mnv2")) {
    ls = {{"c",224,3,32,3,2},{"d",112,32,32,3,1},{"c",112,32,16,1,1},{"c",112,16,96,1,1},{"d",112,96,96,3,2},
          {"c",56,96,24,1,1},{"c",56,24,144,1,1},{"d",56,144,144,3,1},{"p",56,144,24,1,1},{"d",56,144,144,3,2},
          {"c",28,144,32,1,1},{"c",28,32,192,1,1},{"d",28,192,192,3,1},{"p",28,192,32,1,1},{"d",28,192,192,3,2},
          {"c",14,192,64,1,1},{"c",14,64,384,1,1},{"d",14,384,384,3,1},{"p",14,384,64,1,1},{"c",14,384,96,1,1},
          {"c",14,96,576,1,1},{"d",14,576,576,3,1},{"p",14,576,96,1,1},{"d",14,576,576,3,2},{"c",7,576,160,1,1},
          {"c",7,160,960,1,1},{"d",7,960,960,3,1},{"p",7,960,160,1,1},{"c",7,960,320,1,1},{"c",7,320,1280,1,1},{"c",1,1280,1000,1,1}};
  } else {
    ls = {{"c",56,64,64,1,1},{"c",56,64,64,3,1},{"c",56,64,256,1,1},{"c",56,256,64,1,1},{"c",28,128,128,3,1},
          {"c",28,512,128,1,1},{"c",28,128,512,1,1},{"c",14,256,256,3,1},{"c",14,1024,256,1,1},{"c",14,256,1024,1,1},
          {"c",7,512,512,3,1},{"c",7,2048,512,1,1},{"c",7,512,2048,1,1}};
  }
  std::mt19937 rng(1);
  Isa isa = SelectedIsa().isa;
  double total = 0; double total_macs = 0;
  const char* only = getenv("KB_ONLY");
  int li = -1;
  for (auto& l : ls) {
    ++li;
    if (only && atoi(only) != li) continue;
    int pad = l.k / 2;
    std::vector<uint8_t> in((size_t)batch * l.h * l.h * l.ic);
    for (auto& v : in) v = rng() % 256;
    int oh = (l.h + 2 * pad - l.k) / l.s + 1;
    size_t out_n = (size_t)batch * oh * oh * l.oc;
    std::vector<uint8_t> out(out_n), summ(out_n, 7);
    double macs;
    std::function<void()> call;
    std::shared_ptr<const PackedConv> pc; DwEpilogue dep; DwPacked dpk; DwConvShape ds{};
    std::vector<int8_t> filt; std::vector<float> fs(l.oc, 0.01f), bias(l.oc, 0.1f);
    if (l.kind[0] != 'd') {
      ConvShape s; s.n = batch; s.h = s.w = l.h; s.ic = l.ic; s.oc = l.oc; s.kh = s.kw = l.k;
      s.stride_h = s.stride_w = l.s; if (l.k == 3) { s.pad_top = s.pad_left = (l.s==2)?0:1; s.pad_bottom = s.pad_right = 1; }
      s.ComputeOutputSize(); oh = s.oh;
      filt.resize((size_t)l.k * l.k * l.ic * l.oc); for (auto& v : filt) v = (int8_t)((int)(rng() % 255) - 127);
      if (getenv("KB_U8SAFE")) {  // weights as tfq8's quantizer makes them: u8-safe k-pairs
        for (size_t r = 0; r + 1 < filt.size() / l.oc; r += 2)
          for (int o = 0; o < l.oc; ++o) {
            int8_t& a0 = filt[r * l.oc + o]; int8_t& a1 = filt[(r + 1) * l.oc + o];
            if (a0 > 0 && a1 > 0 && a0 + a1 > 128) a1 = (int8_t)(128 - a0);
            if (a0 < 0 && a1 < 0 && a0 + a1 < -128) a1 = (int8_t)(-128 - a0);
          }
      }
      ConvEpilogueAttrs a; a.input_scale = 0.02f; a.input_zero_point = 0; a.bias_f32 = bias.data(); a.filter_scale = fs.data();
      a.activation = ConvActivation::kRelu6; a.output_scale = 0.05f; a.has_summand = l.kind[0]=='p'; a.summand_scale=0.03f; a.summand_zero_point=128; a.output_zero_point = a.has_summand?128:0;
      if (a.has_summand) a.activation = ConvActivation::kNone;
      std::string err; pc = PackConv(isa, s, filt.data(), a, &err); if (getenv("KB_V")) printf("%s s16=%zu\n", ConvImplName(*pc, s).c_str(), pc->weights_s16.size());
      macs = (double)s.pixels() * l.k * l.k * l.ic * l.oc;
      bool sm = a.has_summand;
      call = [&, s, sm]{ Conv2DRun(*pc, s, in.data(), sm ? summ.data() : nullptr, out.data(), pf); };
    } else {
      ds.n = batch; ds.h = ds.w = l.h; ds.c = l.ic; ds.m = 1; ds.kh = ds.kw = 3; ds.stride_h = ds.stride_w = l.s; ds.dil_h = ds.dil_w = 1;
      ds.pad_top = ds.pad_left = (l.s == 2) ? 0 : 1; ds.pad_bottom = ds.pad_right = 1; ds.ComputeOutputSize();
      filt.resize(9 * l.ic); for (auto& v : filt) v = (int8_t)((int)(rng() % 255) - 127);
      DwEpilogueAttrs a; a.input_scale = 0.02f; a.bias_f32 = bias.data(); a.filter_scale = fs.data(); a.activation = DwActivation::kRelu6; a.output_scale = 0.05f;
      dep = MakeDwEpilogue(ds, filt.data(), a); PackDwWeights(isa, ds, filt.data(), dep, &dpk);
      macs = (double)ds.n * ds.oh * ds.ow * ds.c * 9;
      call = [&]{ DwConvRun(ds, in.data(), filt.data(), dep, 0, &dpk, nullptr, out.data(), pf); };
    }
    call(); call();
    std::vector<double> ts;
    double t_end = now() + (getenv("KB_SECS") ? atof(getenv("KB_SECS")) : 0.15);
    while (ts.size() < 5 || (now() < t_end && ts.size() < 2000)) { double t0 = now(); call(); ts.push_back(now() - t0); }
    std::sort(ts.begin(), ts.end());
    double tmin = ts[0], tmed = ts[ts.size()/2];
    total += tmed; total_macs += macs;
    printf("%s %3d %4d->%4d k%d s%d  min %8.1f us  med %8.1f us  %6.1f GMAC/s (min)\n", l.kind, l.h, l.ic, l.oc, l.k, l.s, tmin*1e6, tmed*1e6, macs/tmin/1e9);
  }
  printf("total med %.3f ms, %.1f GMAC/s\n", total*1e3, total_macs/total/1e9);
}
