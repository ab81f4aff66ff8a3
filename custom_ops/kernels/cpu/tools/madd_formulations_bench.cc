// Is a vpmaddubsw formulation of the AVX2 u8×s8 GEMM worth having? Single-thread, in-cache
// GMAC/s of the shipped exact kernel (qu8_igemm_minmax_fp32_ukernel_6x16c2s16__avx2: u16
// activations × s16 weights with vpmaddwd, u8 epilogue included) against 4/5/6×16 tiles of the
// ONNX Runtime-style formulation (u8 × s8 vpmaddubsw → vpmaddwd with ones → vpaddd, no
// epilogue). The latter is exact only when every adjacent weight pair has |w0| + |w1| ≤ 128;
// it would be worth building (with weights constrained to fit) only if it were clearly faster.
// On the project's AMD EPYC (Zen 3) it was not (docs/benchmarks.md, "Conv task scheduling").
//
//   O=build/tfq8_objs/tf2.21.0-cpu/custom_ops_kernels_cpu_
//   g++ -O2 -std=c++17 -mavx2 -mfma -I. custom_ops/kernels/cpu/tools/madd_formulations_bench.cc \
//     ${O}qu8_igemm_minmax_fp32_ukernel_2x32c4__avx2.cc.o -o /tmp/madd_bench && /tmp/madd_bench
//
// (setup.py skips tools/.)
#include <immintrin.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "custom_ops/kernels/cpu/qu8_gemm.h"

namespace {

// MR rows × 16 channels over kc (a multiple of 4): weights packed [kc/4][16][4] s8.
template <int MR>
__attribute__((noinline)) void MaddubsTile(const uint8_t* const* a, const int8_t* w, size_t kc,
                                           int32_t* out) {
  __m256i c[2 * MR];
  for (auto& x : c) x = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  for (size_t k = 0; k < kc; k += 4) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32));
    w += 64;
    for (int m = 0; m < MR; ++m) {
      int32_t v;
      std::memcpy(&v, a[m] + k, 4);
      const __m256i x = _mm256_set1_epi32(v);
      c[2 * m] = _mm256_add_epi32(c[2 * m],
                                  _mm256_madd_epi16(_mm256_maddubs_epi16(x, w0), ones));
      c[2 * m + 1] = _mm256_add_epi32(c[2 * m + 1],
                                      _mm256_madd_epi16(_mm256_maddubs_epi16(x, w1), ones));
    }
  }
  for (int i = 0; i < 2 * MR; ++i) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8 * i), c[i]);
}

template <typename F>
void Report(size_t kc, const char* name, int rows, F f) {
  constexpr int kCalls = 20000;
  double best = 1e30;
  for (int r = 0; r < 20; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kCalls; ++i) f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
                              .count());
  }
  std::printf("K %4zu  %-34s %6.1f GMAC/s\n", kc, name,
              static_cast<double>(kCalls) * rows * 16 * kc / best / 1e9);
}

}  // namespace

int main() {
  using namespace tfq8;
  for (size_t kc : {16, 32, 96, 256, 576}) {
    std::vector<uint16_t> a16(6 * kc, 3);
    std::vector<int16_t> w16(kc * 16, 1);
    std::vector<uint8_t> a8(6 * kc, 3), out8(6 * 16);
    std::vector<int8_t> w8(kc * 16, 1);
    std::vector<int32_t> bias(16, 0), out32(6 * 16);
    std::vector<float> mul(16, 0.01f), badd(16, 0.0f);
    QEpilogue ep{};
    ep.out_type = QOutType::kU8;
    ep.lo = -1e9f;
    ep.hi = 1e9f;
    const uint16_t* a16p[6];
    const uint8_t* a8p[6];
    for (int m = 0; m < 6; ++m) a16p[m] = a16.data() + m * kc, a8p[m] = a8.data() + m * kc;
    Report(kc, "shipped 6x16c2s16 vpmaddwd + epi", 6, [&] {
      qu8_igemm_minmax_fp32_ukernel_6x16c2s16__avx2(6, 16, kc, 1, a16p, w16.data(), bias.data(),
                                                    mul.data(), badd.data(), out8.data(), 16,
                                                    nullptr, ep);
    });
    Report(kc, "vpmaddubsw 4x16 (no epilogue)", 4,
           [&] { MaddubsTile<4>(a8p, w8.data(), kc, out32.data()); });
    Report(kc, "vpmaddubsw 5x16 (no epilogue)", 5,
           [&] { MaddubsTile<5>(a8p, w8.data(), kc, out32.data()); });
    Report(kc, "vpmaddubsw 6x16 (no epilogue)", 6,
           [&] { MaddubsTile<6>(a8p, w8.data(), kc, out32.data()); });
  }
  return 0;
}
