#include "custom_ops/kernels/cpu/isa.h"

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace tfq8 {
namespace {

constexpr int kArchGetXcompPerm = 0x1022;
constexpr int kArchReqXcompPerm = 0x1023;
constexpr int kXfeatureXtiledata = 18;

uint64_t ReadXcr0() {
  uint32_t eax, edx;
  // xgetbv via asm so this file needs no ISA flags.
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

CpuFeatures Detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27);
  const bool fma = c & (1u << 12);
  if (!osxsave) return f;
  const uint64_t xcr0 = ReadXcr0();
  const bool ymm_os = (xcr0 & 0x6) == 0x6;
  const bool zmm_os = (xcr0 & 0xe6) == 0xe6;
  const bool amx_os = (xcr0 & 0x60000) == 0x60000;  // XTILECFG | XTILEDATA
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5);
  const bool avx512f = b & (1u << 16), avx512dq = b & (1u << 17), avx512bw = b & (1u << 30),
             avx512vl = b & (1u << 31);
  const bool avx512vnni = c & (1u << 11);
  const bool amx_tile = d & (1u << 24), amx_int8 = d & (1u << 25);
  unsigned a1, b1, c1, d1;
  __cpuid_count(7, 1, a1, b1, c1, d1);
  const bool avxvnni = a1 & (1u << 4);
  f.avx2 = ymm_os && avx2 && fma;
  f.avx_vnni = f.avx2 && avxvnni;
  f.avx512_vnni = zmm_os && f.avx2 && avx512f && avx512dq && avx512bw && avx512vl && avx512vnni;
  f.amx_int8 = f.avx512_vnni && amx_os && amx_tile && amx_int8;
  return f;
}

IsaChoice Choose() {
  IsaChoice choice;
  std::string refused;
  const char* forced = std::getenv("TFQ8_ISA");
  if (forced != nullptr && forced[0] != '\0') {
    const Isa all[] = {Isa::kRef, Isa::kAvx2, Isa::kAvx512Vnni, Isa::kAmx};
    for (Isa isa : all) {
      if (std::strcmp(forced, IsaName(isa)) == 0) {
        std::string why;
        if (!IsaAvailable(isa, &why)) {
          choice.ok = false;
          choice.error = std::string("TFQ8_ISA=") + forced + " was requested but " + why +
                         "; unset TFQ8_ISA or choose another of ref|avx2|avx512vnni|amx";
          return choice;
        }
        choice.isa = isa;
        choice.log = std::string("tfq8: using ") + IsaName(isa) + " (forced by TFQ8_ISA)";
        return choice;
      }
    }
    choice.ok = false;
    choice.error = std::string("TFQ8_ISA=") + forced +
                   " is not a known path; use one of ref|avx2|avx512vnni|amx";
    return choice;
  }
  const Isa preference[] = {Isa::kAmx, Isa::kAvx512Vnni, Isa::kAvx2};
  for (Isa isa : preference) {
    std::string why;
    if (IsaAvailable(isa, &why)) {
      choice.isa = isa;
      choice.log = std::string("tfq8: using ") + IsaName(isa) + refused;
      return choice;
    }
    refused += std::string("; refused ") + IsaName(isa) + ": " + why;
  }
  choice.isa = Isa::kRef;
  choice.log = std::string("tfq8: using ref") + refused;
  return choice;
}

}  // namespace

const char* IsaName(Isa isa) {
  switch (isa) {
    case Isa::kRef: return "ref";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512Vnni: return "avx512vnni";
    case Isa::kAmx: return "amx";
  }
  return "?";
}

const CpuFeatures& GetCpuFeatures() {
  static const CpuFeatures features = Detect();
  return features;
}

bool RequestAmxPermission() {
  static const bool granted = [] {
    if (!GetCpuFeatures().amx_int8) return false;
    if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
    unsigned long bitmask = 0;
    if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &bitmask) != 0) return false;
    return (bitmask & (1ul << kXfeatureXtiledata)) != 0;
  }();
  return granted;
}

bool IsaAvailable(Isa isa, std::string* why) {
  const CpuFeatures& f = GetCpuFeatures();
  switch (isa) {
    case Isa::kRef:
      return true;
    case Isa::kAvx2:
      if (!f.avx2) *why = "the CPU or OS lacks AVX2/FMA";
      return f.avx2;
    case Isa::kAvx512Vnni:
      if (!f.avx512_vnni) *why = "the CPU or OS lacks AVX512 F/BW/VL/DQ + VNNI";
      return f.avx512_vnni;
    case Isa::kAmx:
      if (!f.amx_int8) {
        *why = "the CPU or OS lacks AMX-TILE/AMX-INT8";
        return false;
      }
      if (!RequestAmxPermission()) {
        *why = "the kernel refused AMX tile data permission (arch_prctl ARCH_REQ_XCOMP_PERM)";
        return false;
      }
      return true;
  }
  return false;
}

bool Verbose() {
  const char* v = std::getenv("TFQ8_VERBOSE");
  return v != nullptr && v[0] != '\0' && std::strcmp(v, "0") != 0;
}

const IsaChoice& SelectedIsa() {
  // Re-decided only when TFQ8_ISA changes (tests switch paths within one process); otherwise
  // this is a getenv and a string compare per call. Choices are never freed, so references
  // handed out stay valid.
  static std::mutex mu;
  static std::string cached_env = "\x01unset";
  static const IsaChoice* cached = nullptr;
  const char* env = std::getenv("TFQ8_ISA");
  const std::string key = env ? env : "";
  std::lock_guard<std::mutex> lock(mu);
  if (cached == nullptr || key != cached_env) {
    IsaChoice* c = new IsaChoice(Choose());
    if (Verbose()) std::fprintf(stderr, "%s\n", c->ok ? c->log.c_str() : c->error.c_str());
    cached = c;
    cached_env = key;
  }
  return *cached;
}

}  // namespace tfq8
