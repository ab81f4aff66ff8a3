// Raw instruction throughput behind the AVX2 (no VNNI) GEMM: how many vpmaddwd + vpaddd pairs
// (tfq8's exact s16 formulation, 16 MACs) and vpmaddubsw + vpmaddwd(ones) + vpaddd triples
// (ONNX Runtime / MLAS's u8×s8 formulation, 32 MACs, saturating) issue per cycle with 12
// independent accumulators and no loads. The clock is estimated from a dependent chain of
// scalar adds (1 cycle each). On the project's AMD EPYC (Zen 3): 3.2 GHz, vpmaddwd alone 2.0
// per cycle, pairs 1.61 per cycle (25.8 MAC/cycle), triples 0.96 per cycle (30.7 MAC/cycle):
// the saturating formulation's ceiling is 1.19× the exact one's, about the per-core gap to
// ONNX Runtime measured on ResNet50 / MobileNetV2 (docs/benchmarks.md).
//
//   g++ -O2 custom_ops/kernels/cpu/tools/madd_throughput_bench.cc -o /tmp/madd_tp && /tmp/madd_tp
//
// (setup.py skips tools/.)
#include <chrono>
#include <cstdio>

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

#define TFQ8_R12(X) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
#define TFQ8_MADD(i) "vpmaddwd %%ymm0, %%ymm1, %%ymm" #i "\n"
#define TFQ8_PAIR(i) "vpmaddwd %%ymm0, %%ymm1, %%ymm2\n vpaddd %%ymm2, %%ymm" #i ", %%ymm" #i "\n"
#define TFQ8_TRIPLE(i)                                                         \
  "vpmaddubsw %%ymm0, %%ymm1, %%ymm2\n vpmaddwd %%ymm3, %%ymm2, %%ymm2\n" \
  " vpaddd %%ymm2, %%ymm" #i ", %%ymm" #i "\n"

}  // namespace

int main() {
  const long n = 200000000;
  unsigned long x = 1;
  auto t = Clock::now();
  for (long i = 0; i < n; ++i) {
    asm volatile("add $1, %0\n add $1, %0\n add $1, %0\n add $1, %0" : "+r"(x));
  }
  const double cycle = Since(t) / (4.0 * n);
  std::printf("clock ~%.2f GHz\n", 1e-9 / cycle);
  const long m = 20000000;
  t = Clock::now();
  for (long i = 0; i < m; ++i) asm volatile(TFQ8_R12(TFQ8_MADD)::: "memory");
  std::printf("vpmaddwd alone           %.2f per cycle\n", 12.0 * m / (Since(t) / cycle));
  t = Clock::now();
  for (long i = 0; i < m; ++i) asm volatile(TFQ8_R12(TFQ8_PAIR)::: "memory");
  double per = 12.0 * m / (Since(t) / cycle);
  std::printf("vpmaddwd + vpaddd        %.2f per cycle = %.1f MAC/cycle (exact)\n", per, 16 * per);
  t = Clock::now();
  for (long i = 0; i < m; ++i) asm volatile(TFQ8_R12(TFQ8_TRIPLE)::: "memory");
  per = 12.0 * m / (Since(t) / cycle);
  std::printf("vpmaddubsw+vpmaddwd+add  %.2f per cycle = %.1f MAC/cycle (saturating)\n", per,
              32 * per);
  return 0;
}
