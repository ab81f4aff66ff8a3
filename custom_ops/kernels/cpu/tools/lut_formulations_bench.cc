// Which 256-entry byte-table lookup (Tfq8Lookup) is fastest on this CPU? Single thread, data in
// L2, GB/s of the shipped kernels (qu8_vlut_ukernel__ref: four scalar loads per iteration;
// qu8_vlut_ukernel__avx2: 16 vpshufb rows with the zeroing trick, 4 OR chains) against
// formulations that were tried and not kept. On the project's AMD EPYC (Zen 3), two runs:
// ref 3.0-3.2, avx2 4.8-5.7 (1.6-1.8×), scalar with one 8-byte load and shifts 1.3-1.9,
// vpshufb rows selected by vpcmpeqb + vpblendvb 1.9-3.1, the zeroing trick with one chained
// index (vpsubb per row) 2.9-4.7 GB/s.
//
//   O=build/tfq8_objs/tf2.21.0-cpu/custom_ops_kernels_cpu_
//   g++ -O2 -std=c++17 -I. custom_ops/kernels/cpu/tools/lut_formulations_bench.cc \
//     ${O}elementwise_ref.cc.o ${O}elementwise_avx2.cc.o ${O}elementwise_avx512.cc.o \
//     -o /tmp/lut_bench && /tmp/lut_bench
//
// (setup.py skips tools/.)
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "custom_ops/kernels/cpu/elementwise.h"

namespace {

void Scalar8(size_t n, const uint8_t* x, uint8_t* y, const uint8_t* table) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v, o = 0;
    std::memcpy(&v, x + i, 8);
    for (int k = 0; k < 8; ++k) o |= uint64_t{table[(v >> (8 * k)) & 255]} << (8 * k);
    std::memcpy(y + i, &o, 8);
  }
  for (; i < n; ++i) y[i] = table[x[i]];
}

__attribute__((target("avx2"))) void Rows(__m256i* rows, const uint8_t* table) {
  for (int r = 0; r < 16; ++r)
    rows[r] = _mm256_broadcastsi128_si256(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(table + 16 * r)));
}

__attribute__((target("avx2"))) void ChainedIndex(size_t n, const uint8_t* x, uint8_t* y,
                                                  const uint8_t* table) {
  __m256i rows[16];
  Rows(rows, table);
  const __m256i c70 = _mm256_set1_epi8(0x70), c16 = _mm256_set1_epi8(16);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    __m256i r = _mm256_shuffle_epi8(rows[0], _mm256_adds_epu8(v, c70));
    for (int k = 1; k < 16; ++k) {
      v = _mm256_sub_epi8(v, c16);
      r = _mm256_or_si256(r, _mm256_shuffle_epi8(rows[k], _mm256_adds_epu8(v, c70)));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), r);
  }
  for (; i < n; ++i) y[i] = table[x[i]];
}

__attribute__((target("avx2"))) void CompareBlend(size_t n, const uint8_t* x, uint8_t* y,
                                                  const uint8_t* table) {
  __m256i rows[16];
  Rows(rows, table);
  const __m256i m0f = _mm256_set1_epi8(0x0F);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    const __m256i lo = _mm256_and_si256(v, m0f);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m0f);
    __m256i r = _mm256_setzero_si256();
    for (int k = 0; k < 16; ++k) {
      r = _mm256_blendv_epi8(r, _mm256_shuffle_epi8(rows[k], lo),
                             _mm256_cmpeq_epi8(hi, _mm256_set1_epi8(static_cast<char>(k))));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), r);
  }
  for (; i < n; ++i) y[i] = table[x[i]];
}

}  // namespace

int main() {
  const size_t n = 200000;  // in L2
  std::vector<uint8_t> x(n), want(n), got(n), table(256);
  for (size_t i = 0; i < n; ++i) x[i] = static_cast<uint8_t>((i * 2654435761u) >> 13);
  for (int i = 0; i < 256; ++i) table[i] = static_cast<uint8_t>(i * 37 + 11);
  tfq8::qu8_vlut_ukernel__ref(n, x.data(), want.data(), table.data());
  auto bench = [&](const char* name, tfq8::LutFn f) {
    double best = 1e9;
    for (int r = 0; r < 50; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      f(n, x.data(), got.data(), table.data());
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
                                .count());
    }
    std::printf("%-34s %5.2f GB/s %s\n", name, n / best * 1e-9,
                std::memcmp(want.data(), got.data(), n) ? "WRONG" : "exact");
  };
  bench("shipped ref (scalar)", tfq8::qu8_vlut_ukernel__ref);
  bench("shipped avx2 (zeroing, 4 chains)", tfq8::qu8_vlut_ukernel__avx2);
  bench("scalar, 8-byte loads", Scalar8);
  bench("avx2 zeroing, chained index", ChainedIndex);
  bench("avx2 compare + blend", CompareBlend);
  return 0;
}
