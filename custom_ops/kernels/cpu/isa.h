// Run-time ISA selection for the CPU kernels (framework-free).
//
// Paths in preference order: AMX-INT8 → AVX512-VNNI → AVX2 (uses AVX-VNNI when present) → ref.
// The choice is made once per process from cpuid, and can be forced with the environment
// variable TFQ8_ISA=ref|avx2|avx512vnni|amx (forcing a path the CPU lacks is an error, never a
// silent fallback). TFQ8_VERBOSE=1 prints the chosen path and why faster ones were refused.
#ifndef TFQ8_KERNELS_CPU_ISA_H_
#define TFQ8_KERNELS_CPU_ISA_H_

#include <string>

namespace tfq8 {

enum class Isa { kRef = 0, kAvx2 = 1, kAvx512Vnni = 2, kAmx = 3 };

const char* IsaName(Isa isa);

struct CpuFeatures {
  bool avx2 = false;         // AVX2 + FMA
  bool avx_vnni = false;     // VEX-encoded vpdpbusd (Alder Lake, Sapphire Rapids)
  bool avx512_vnni = false;  // AVX512 F/BW/VL/DQ + VNNI
  bool amx_int8 = false;     // AMX-TILE + AMX-INT8 in cpuid
  bool amx_permitted = false;  // the kernel granted XTILEDATA (arch_prctl)
};

// cpuid + OS support (XCR0), computed once.
const CpuFeatures& GetCpuFeatures();

struct IsaChoice {
  Isa isa = Isa::kRef;
  bool ok = true;          // false when TFQ8_ISA forced an unknown or unavailable path
  std::string error;       // why, when !ok
  std::string log;         // the decision, as TFQ8_VERBOSE prints it
};

// The current choice: decided once per value of TFQ8_ISA (thread-safe; cheap to call per op).
const IsaChoice& SelectedIsa();

// True if `isa` can run on this CPU; `why` says what is missing otherwise.
bool IsaAvailable(Isa isa, std::string* why);

// Requests AMX tile data permission from the kernel (once per process). Returns true if granted.
bool RequestAmxPermission();

// True when TFQ8_VERBOSE is set to a non-empty value other than "0".
bool Verbose();

}  // namespace tfq8

#endif  // TFQ8_KERNELS_CPU_ISA_H_
