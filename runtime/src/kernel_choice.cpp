// Instruction-set detection and the choice of kernels (kernel_choice.h,
// quantized_linear.h). The AVX2, AVX-VNNI and AVX-512 files are compiled
// for those sets; nothing in them runs unless the checks here passed.
#include "kernel_choice.h"

#include <cpuid.h>

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "mcompress/runtime/quantized_linear.h"

namespace mcompress::runtime {
namespace {

// Below this many input rows the fused kernels win (nothing to reuse).
constexpr int64_t kTiledFromRows = 3;
// The int8 path beats the float tiles from about 4 rows on (README,
// "Quantization"), but it is not exact: it takes over where the float path
// already switched to dequantized blocks + BLAS, so fewer rows (batched
// decoding of up to 63 sequences) give the same results as before and as
// one row at a time.
constexpr int64_t kDefaultInt8Rows = 64;
constexpr int64_t kDefaultBlasRows = 64;

KernelChoice choice_from_environment() {
  const char* value = std::getenv("MCOMPRESS_KERNELS");
  if (!value) return KernelChoice::Auto;
  const std::string text = value;
  if (text == "portable") return KernelChoice::Portable;
  if (text == "avx2") return KernelChoice::Avx2;
  if (text == "avx-vnni") return KernelChoice::AvxVnni;
  if (text == "avx512-vnni") return KernelChoice::Avx512Vnni;
  return KernelChoice::Auto;
}

int64_t int8_rows_from_environment() {
  const char* value = std::getenv("MCOMPRESS_INT8_ROWS");
  if (!value) return kDefaultInt8Rows;
  const long long rows = std::atoll(value);
  return rows > 0 ? rows : kDefaultInt8Rows;
}

std::atomic<int> g_choice{int(choice_from_environment())};
std::atomic<int64_t> g_int8_rows{int8_rows_from_environment()};
std::atomic<int64_t> g_blas_rows{kDefaultBlasRows};
std::atomic<int> g_feature_limit{int(KernelChoice::Auto)};

struct CpuFeatures {
  bool avx2 = false, avx_vnni = false, avx512_vnni = false;
};

// The OS must save the registers too: XCR0 says which states it enables.
uint64_t enabled_register_states() {
  uint32_t low = 0, high = 0;
  __asm__ volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
  return (uint64_t(high) << 32) | low;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool f16c = (ecx & (1u << 29)) != 0;
  const bool osxsave = (ecx & (1u << 27)) != 0;
  // __builtin_cpu_supports also checks that the OS saves the YMM registers.
  f.avx2 = f16c && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (!f.avx2 || !osxsave) return f;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return f;
  const bool avx512f = (ebx & (1u << 16)) != 0;
  const bool avx512_vnni = (ecx & (1u << 11)) != 0;
  // Opmask, upper halves of ZMM0-15 and ZMM16-31, plus SSE and AVX state.
  const bool zmm_state = (enabled_register_states() & 0xE6) == 0xE6;
  f.avx512_vnni = avx512f && avx512_vnni && zmm_state;
  if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) f.avx_vnni = (eax & (1u << 4)) != 0;
#ifndef MCOMPRESS_HAVE_AVX_VNNI_KERNEL
  f.avx_vnni = false;  // the compiler could not build the kernel
#endif
#ifndef MCOMPRESS_HAVE_AVX512_VNNI_KERNEL
  f.avx512_vnni = false;
#endif
  return f;
}

const CpuFeatures& cpu() {
  static const CpuFeatures features = detect();
  return features;
}

// The order set_cpu_feature_limit hides sets in.
int rank(KernelChoice choice) {
  switch (choice) {
    case KernelChoice::Portable: return 0;
    case KernelChoice::Avx2: return 1;
    case KernelChoice::AvxVnni: return 2;
    case KernelChoice::Avx512Vnni: return 3;
    case KernelChoice::Auto: break;
  }
  return 4;
}

bool supported(KernelChoice choice) {
  if (choice != KernelChoice::Auto && rank(choice) > rank(KernelChoice(g_feature_limit.load()))) return false;
  switch (choice) {
    case KernelChoice::Auto:
    case KernelChoice::Portable: return true;
    case KernelChoice::Avx2: return cpu().avx2;
    case KernelChoice::AvxVnni: return cpu().avx_vnni;
    case KernelChoice::Avx512Vnni: return cpu().avx512_vnni;
  }
  return false;
}

// The kernels to run: the choice, or for Auto (and for a choice from
// MCOMPRESS_KERNELS the CPU lacks) the best this CPU has.
KernelChoice effective_choice() {
  const auto choice = KernelChoice(g_choice.load());
  if (choice != KernelChoice::Auto && supported(choice)) return choice;
  for (auto best : {KernelChoice::Avx512Vnni, KernelChoice::AvxVnni, KernelChoice::Avx2}) {
    if (supported(best)) return best;
  }
  return KernelChoice::Portable;
}

const char* name_of(KernelChoice choice) {
  switch (choice) {
    case KernelChoice::Auto: return "auto";
    case KernelChoice::Portable: return "portable";
    case KernelChoice::Avx2: return "avx2";
    case KernelChoice::AvxVnni: return "avx-vnni";
    case KernelChoice::Avx512Vnni: return "avx512-vnni";
  }
  return "?";
}

}  // namespace

namespace detail {

// The int8 panel path of `choice` (not Portable).
PathChoice int8_path_of(KernelChoice choice) {
  PathChoice c;
  c.avx2 = true;
  c.path = Path::Int8;
  switch (choice) {
#ifdef MCOMPRESS_HAVE_AVX512_VNNI_KERNEL
    case KernelChoice::Avx512Vnni:
      c.multiply = kernels::int8::avx512_vnni::multiply_panel;
      c.name = "int8 avx512-vnni";
      break;
#endif
#ifdef MCOMPRESS_HAVE_AVX_VNNI_KERNEL
    case KernelChoice::AvxVnni:
      c.multiply = kernels::int8::avx_vnni::multiply_panel;
      c.name = "int8 avx-vnni";
      break;
#endif
    default:
      c.multiply = kernels::int8::avx2::multiply_panel;
      c.name = "int8 avx2";
      break;
  }
  return c;
}

PathChoice choose_path(int bits, int64_t rows) {
  (void)bits;  // every width has every kernel
  const KernelChoice choice = effective_choice();
  PathChoice c;
  c.avx2 = choice != KernelChoice::Portable;
  if (c.avx2 && rows >= int8_rows_threshold()) {
    c = int8_path_of(choice);
  } else if (rows >= blas_rows_threshold()) {
    c.path = Path::DequantizedBlas;
    c.name = c.avx2 ? "avx2 + blas" : "portable + blas";
  } else if (c.avx2) {
    c.path = rows >= kTiledFromRows ? Path::Avx2Tiles : Path::Avx2Fused;
    c.name = "avx2";
  }
  return c;
}

PathChoice int8_path() { return int8_path_of(effective_choice()); }

GemvChoice choose_int8_gemv(int bits, int group_size, int64_t in_features) {
  using namespace kernels::int8_gemv;
  const KernelChoice choice = effective_choice();
  if (choice == KernelChoice::Portable) return {};
  // 512-bit where the rows are whole 64-byte chunks, else 256-bit.
#ifdef MCOMPRESS_HAVE_AVX512_VNNI_KERNEL
  if (choice == KernelChoice::Avx512Vnni && supports(bits, group_size, in_features, 64))
    return {avx512_vnni::rows, 64, "int8 gemv avx512-vnni"};
#endif
  if (!supports(bits, group_size, in_features, 32)) return {};
#ifdef MCOMPRESS_HAVE_AVX_VNNI_KERNEL
  if (choice != KernelChoice::Avx2 && supported(KernelChoice::AvxVnni)) return {avx_vnni::rows, 32, "int8 gemv avx-vnni"};
#endif
  return {avx2::rows, 32, "int8 gemv avx2"};
}

}  // namespace detail

bool cpu_supports_avx2() { return supported(KernelChoice::Avx2); }

bool cpu_supports(KernelChoice choice) { return supported(choice); }

void set_kernel_choice(KernelChoice choice) {
  if (!cpu_supports(choice)) {
    throw std::invalid_argument(std::string("this CPU (or this build) lacks what the ") + name_of(choice) +
                                " kernels need; they cannot be forced");
  }
  g_choice = int(choice);
}

KernelChoice kernel_choice() { return KernelChoice(g_choice.load()); }

void set_cpu_feature_limit(KernelChoice limit) { g_feature_limit = int(limit); }

std::string active_kernel(int bits) { return active_kernel(bits, 1); }

std::string active_kernel(int bits, int64_t rows) { return detail::choose_path(bits, rows).name; }

void set_int8_rows_threshold(int64_t rows) { g_int8_rows = rows > 0 ? rows : kDefaultInt8Rows; }

int64_t int8_rows_threshold() { return g_int8_rows.load(); }

void set_blas_rows_threshold(int64_t rows) { g_blas_rows = rows > 0 ? rows : kDefaultBlasRows; }

int64_t blas_rows_threshold() { return g_blas_rows.load(); }

}  // namespace mcompress::runtime
