#include "gemv_kernels.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MCOMPRESS_X86_KERNELS 1
#include <immintrin.h>
// GCC 12's AVX-512 intrinsics start from deliberately undefined registers
// (`__Y = __Y`), which its own uninitialized-use warnings then report.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace mcompress::kernels {
namespace {

// Distinct element types for the two 16-bit formats, so overloads pick the widening.
struct BFloat16Bits {
  uint16_t bits;
};
struct Float16Bits {
  uint16_t bits;
};

float to_float(float value) { return value; }
float to_float(BFloat16Bits value) {
  const uint32_t bits = uint32_t(value.bits) << 16;
  float result;
  std::memcpy(&result, &bits, sizeof result);
  return result;
}
float to_float(Float16Bits value) {
  const uint32_t half = value.bits;
  const uint32_t sign = (half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1fu;
  const uint32_t mantissa = half & 0x3ffu;
  uint32_t bits;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float.
    const float magnitude = std::ldexp(float(mantissa), -24);
    std::memcpy(&bits, &magnitude, sizeof bits);
    bits |= sign;
  } else if (exponent == 31) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  }
  float result;
  std::memcpy(&result, &bits, sizeof result);
  return result;
}

template <class Element>
float dot_portable(const Element* w, const float* x, int64_t begin, int64_t end) {
  float sum = 0.0f;
  for (int64_t c = begin; c < end; ++c) sum += to_float(w[c]) * x[c];
  return sum;
}

template <class Element>
void rows_portable(const Element* w, int64_t begin, int64_t end, int64_t cols, int64_t stride, const float* x,
                   float* y) {
  for (int64_t r = begin; r < end; ++r) y[r] = dot_portable(w + r * stride, x, 0, cols);
}

void attend_portable(const float* q, const float* keys, const float* values, int64_t length, int64_t head_dim,
                     int64_t row_stride, float scale, float* scores, float* out) {
  float largest = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < length; ++j) {
    scores[j] = scale * dot_portable(keys + j * row_stride, q, 0, head_dim);
    largest = std::max(largest, scores[j]);
  }
  float total = 0.0f;
  for (int64_t j = 0; j < length; ++j) total += scores[j] = std::exp(scores[j] - largest);
  std::fill(out, out + head_dim, 0.0f);
  for (int64_t j = 0; j < length; ++j) {
    const float p = scores[j] / total;
    const float* v = values + j * row_stride;
    for (int64_t c = 0; c < head_dim; ++c) out[c] += p * v[c];
  }
}

#ifdef MCOMPRESS_X86_KERNELS

// ---- AVX-512: 16 lanes -------------------------------------------------------

#define MCOMPRESS_AVX512 __attribute__((target("avx512f")))

MCOMPRESS_AVX512 inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
MCOMPRESS_AVX512 inline __m512 load16(const BFloat16Bits* p) {
  // bfloat16 is the top half of a float32: widen to 32 bits and shift.
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}
MCOMPRESS_AVX512 inline __m512 load16(const Float16Bits* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// The sum of the 16 lanes, through memory: GCC 12's shuffle and reduce
// intrinsics warn about their own internals, and this runs once per row.
MCOMPRESS_AVX512 inline float sum16(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  float sum = 0.0f;
  for (float lane : lanes) sum += lane;
  return sum;
}

// Rows often span exactly one or two 4 KiB pages, where the hardware
// prefetcher stops and has to learn the next stream again: fetch the same
// columns of the rows two blocks ahead instead (past the last row this is
// harmless: prefetches never fault).
template <class Element>
MCOMPRESS_AVX512 inline void prefetch_next_rows(const Element* p, int64_t stride) {
  constexpr int64_t line = 64 / sizeof(Element);
  for (int64_t offset = 0; offset < 32; offset += line) {
    const Element* next = p + 8 * stride + offset;
    _mm_prefetch(reinterpret_cast<const char*>(next), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(next + stride), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(next + 2 * stride), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(next + 3 * stride), _MM_HINT_T0);
  }
}

// Four rows at a time share each load of x; two accumulators per row over
// 32 columns keep enough loads in flight to stream at the memory's rate.
template <class Element>
MCOMPRESS_AVX512 void rows_avx512(const Element* w, int64_t begin, int64_t end, int64_t cols, int64_t stride,
                                  const float* x, float* y) {
  const int64_t cols32 = cols - cols % 32;
  const int64_t cols16 = cols - cols % 16;
  int64_t r = begin;
  for (; r + 4 <= end; r += 4) {
    const Element* w0 = w + r * stride;
    const Element* w1 = w0 + stride;
    const Element* w2 = w1 + stride;
    const Element* w3 = w2 + stride;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    int64_t c = 0;
    for (; c < cols32; c += 32) {
      prefetch_next_rows(w0 + c, stride);
      const __m512 xa = _mm512_loadu_ps(x + c);
      const __m512 xb = _mm512_loadu_ps(x + c + 16);
      a0 = _mm512_fmadd_ps(load16(w0 + c), xa, a0);
      b0 = _mm512_fmadd_ps(load16(w0 + c + 16), xb, b0);
      a1 = _mm512_fmadd_ps(load16(w1 + c), xa, a1);
      b1 = _mm512_fmadd_ps(load16(w1 + c + 16), xb, b1);
      a2 = _mm512_fmadd_ps(load16(w2 + c), xa, a2);
      b2 = _mm512_fmadd_ps(load16(w2 + c + 16), xb, b2);
      a3 = _mm512_fmadd_ps(load16(w3 + c), xa, a3);
      b3 = _mm512_fmadd_ps(load16(w3 + c + 16), xb, b3);
    }
    for (; c < cols16; c += 16) {
      const __m512 xa = _mm512_loadu_ps(x + c);
      a0 = _mm512_fmadd_ps(load16(w0 + c), xa, a0);
      a1 = _mm512_fmadd_ps(load16(w1 + c), xa, a1);
      a2 = _mm512_fmadd_ps(load16(w2 + c), xa, a2);
      a3 = _mm512_fmadd_ps(load16(w3 + c), xa, a3);
    }
    y[r] = sum16(_mm512_add_ps(a0, b0)) + dot_portable(w0, x, c, cols);
    y[r + 1] = sum16(_mm512_add_ps(a1, b1)) + dot_portable(w1, x, c, cols);
    y[r + 2] = sum16(_mm512_add_ps(a2, b2)) + dot_portable(w2, x, c, cols);
    y[r + 3] = sum16(_mm512_add_ps(a3, b3)) + dot_portable(w3, x, c, cols);
  }
  for (; r < end; ++r) {
    const Element* w0 = w + r * stride;
    __m512 a0 = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c < cols16; c += 16) a0 = _mm512_fmadd_ps(load16(w0 + c), _mm512_loadu_ps(x + c), a0);
    y[r] = sum16(a0) + dot_portable(w0, x, c, cols);
  }
}

// ---- AVX-512 BF16: bfloat16 weights against x rounded to bfloat16 ------------
// One vdpbf16ps multiplies 32 pairs and accumulates in float32, half the
// instructions of widening, which keeps the loads coming at the memory's rate.
// Rounding x to bfloat16 is what a bfloat16 model does to its activations anyway.

#define MCOMPRESS_AVX512_BF16 __attribute__((target("avx512f,avx512bf16")))

MCOMPRESS_AVX512_BF16 void round_to_bfloat16(const float* x, int64_t count, uint16_t* out) {
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m256bh rounded = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + i));
    std::memcpy(out + i, &rounded, sizeof rounded);
  }
  for (; i < count; ++i) {  // round to nearest even, as the instruction does
    uint32_t bits;
    std::memcpy(&bits, x + i, sizeof bits);
    out[i] = uint16_t((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
  }
}

MCOMPRESS_AVX512_BF16 inline __m512bh load32(const void* p) { return (__m512bh)_mm512_loadu_si512(p); }

MCOMPRESS_AVX512_BF16 void rows_avx512_bf16(const BFloat16Bits* w, int64_t begin, int64_t end, int64_t cols,
                                            int64_t stride, const uint16_t* x_rounded, const float* x, float* y) {
  const int64_t cols32 = cols - cols % 32;
  int64_t r = begin;
  for (; r + 4 <= end; r += 4) {
    const BFloat16Bits* w0 = w + r * stride;
    const BFloat16Bits* w1 = w0 + stride;
    const BFloat16Bits* w2 = w1 + stride;
    const BFloat16Bits* w3 = w2 + stride;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t c = 0;
    for (; c < cols32; c += 32) {
      prefetch_next_rows(w0 + c, stride);
      const __m512bh xv = load32(x_rounded + c);
      a0 = _mm512_dpbf16_ps(a0, load32(w0 + c), xv);
      a1 = _mm512_dpbf16_ps(a1, load32(w1 + c), xv);
      a2 = _mm512_dpbf16_ps(a2, load32(w2 + c), xv);
      a3 = _mm512_dpbf16_ps(a3, load32(w3 + c), xv);
    }
    y[r] = sum16(a0) + dot_portable(w0, x, c, cols);
    y[r + 1] = sum16(a1) + dot_portable(w1, x, c, cols);
    y[r + 2] = sum16(a2) + dot_portable(w2, x, c, cols);
    y[r + 3] = sum16(a3) + dot_portable(w3, x, c, cols);
  }
  for (; r < end; ++r) {
    const BFloat16Bits* w0 = w + r * stride;
    __m512 a0 = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c < cols32; c += 32) a0 = _mm512_dpbf16_ps(a0, load32(w0 + c), load32(x_rounded + c));
    y[r] = sum16(a0) + dot_portable(w0, x, c, cols);
  }
}

MCOMPRESS_AVX512 void attend_avx512(const float* q, const float* keys, const float* values, int64_t length,
                                    int64_t head_dim, int64_t row_stride, float scale, float* scores, float* out) {
  if (head_dim % 16 != 0 || head_dim > 256) {
    attend_portable(q, keys, values, length, head_dim, row_stride, scale, scores, out);
    return;
  }
  const int64_t vectors = head_dim / 16;
  __m512 query[16];
  for (int64_t v = 0; v < vectors; ++v) query[v] = _mm512_loadu_ps(q + 16 * v);
  float largest = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < length; ++j) {
    const float* k = keys + j * row_stride;
    __m512 sum = _mm512_mul_ps(query[0], _mm512_loadu_ps(k));
    for (int64_t v = 1; v < vectors; ++v) sum = _mm512_fmadd_ps(query[v], _mm512_loadu_ps(k + 16 * v), sum);
    scores[j] = scale * sum16(sum);
    largest = std::max(largest, scores[j]);
  }
  float total = 0.0f;
  for (int64_t j = 0; j < length; ++j) total += scores[j] = std::exp(scores[j] - largest);
  __m512 accumulated[16];
  for (int64_t v = 0; v < vectors; ++v) accumulated[v] = _mm512_setzero_ps();
  for (int64_t j = 0; j < length; ++j) {
    const __m512 p = _mm512_set1_ps(scores[j] / total);
    const float* value = values + j * row_stride;
    for (int64_t v = 0; v < vectors; ++v)
      accumulated[v] = _mm512_fmadd_ps(p, _mm512_loadu_ps(value + 16 * v), accumulated[v]);
  }
  for (int64_t v = 0; v < vectors; ++v) _mm512_storeu_ps(out + 16 * v, accumulated[v]);
}

// ---- AVX2 + FMA + F16C: 8 lanes ----------------------------------------------

#define MCOMPRESS_AVX2 __attribute__((target("avx2,fma,f16c")))

MCOMPRESS_AVX2 inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
MCOMPRESS_AVX2 inline __m256 load8(const BFloat16Bits* p) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
}
MCOMPRESS_AVX2 inline __m256 load8(const Float16Bits* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
MCOMPRESS_AVX2 inline float sum8(__m256 v) {
  const __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
  return _mm_cvtss_f32(_mm_add_ss(quarter, _mm_shuffle_ps(quarter, quarter, 1)));
}

template <class Element>
MCOMPRESS_AVX2 void rows_avx2(const Element* w, int64_t begin, int64_t end, int64_t cols, int64_t stride,
                              const float* x, float* y) {
  const int64_t cols8 = cols - cols % 8;
  int64_t r = begin;
  for (; r + 4 <= end; r += 4) {
    const Element* w0 = w + r * stride;
    const Element* w1 = w0 + stride;
    const Element* w2 = w1 + stride;
    const Element* w3 = w2 + stride;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t c = 0;
    for (; c < cols8; c += 8) {
      const __m256 xv = _mm256_loadu_ps(x + c);
      a0 = _mm256_fmadd_ps(load8(w0 + c), xv, a0);
      a1 = _mm256_fmadd_ps(load8(w1 + c), xv, a1);
      a2 = _mm256_fmadd_ps(load8(w2 + c), xv, a2);
      a3 = _mm256_fmadd_ps(load8(w3 + c), xv, a3);
    }
    y[r] = sum8(a0) + dot_portable(w0, x, c, cols);
    y[r + 1] = sum8(a1) + dot_portable(w1, x, c, cols);
    y[r + 2] = sum8(a2) + dot_portable(w2, x, c, cols);
    y[r + 3] = sum8(a3) + dot_portable(w3, x, c, cols);
  }
  for (; r < end; ++r) {
    const Element* w0 = w + r * stride;
    __m256 a0 = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c < cols8; c += 8) a0 = _mm256_fmadd_ps(load8(w0 + c), _mm256_loadu_ps(x + c), a0);
    y[r] = sum8(a0) + dot_portable(w0, x, c, cols);
  }
}

#endif  // MCOMPRESS_X86_KERNELS

enum class InstructionSet { Avx512Bf16, Avx512, Avx2, Portable };

InstructionSet detect() {
#ifdef MCOMPRESS_X86_KERNELS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16")) return InstructionSet::Avx512Bf16;
  if (__builtin_cpu_supports("avx512f")) return InstructionSet::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return InstructionSet::Avx2;
#endif
  return InstructionSet::Portable;
}

InstructionSet cpu() {
  static const InstructionSet found = detect();
  return found;
}

template <class Element>
void rows(const Element* w, int64_t begin, int64_t end, int64_t cols, int64_t stride, const float* x, float* y) {
  switch (cpu()) {
#ifdef MCOMPRESS_X86_KERNELS
    case InstructionSet::Avx512Bf16:
    case InstructionSet::Avx512:
      return rows_avx512(w, begin, end, cols, stride, x, y);
    case InstructionSet::Avx2:
      return rows_avx2(w, begin, end, cols, stride, x, y);
#endif
    default:
      return rows_portable(w, begin, end, cols, stride, x, y);
  }
}

// A thread's share must stream far more than the cost of waking it (a few
// microseconds); below ~64K weights per chunk one thread is faster.
int64_t grain_for(int64_t cols) { return std::max<int64_t>(16, (int64_t{1} << 16) / std::max<int64_t>(cols, 1)); }

template <class Element>
void gemv_of(const Element* w, int64_t rows_count, int64_t cols, int64_t stride, const float* x, float* y) {
  at::parallel_for(0, rows_count, grain_for(cols), [&](int64_t begin, int64_t end) { rows(w, begin, end, cols, stride, x, y); });
}

}  // namespace

void gemv(WeightType type, const void* weight, int64_t rows_count, int64_t cols, int64_t row_stride, const float* x,
          float* y) {
  switch (type) {
    case WeightType::Float32:
      return gemv_of(static_cast<const float*>(weight), rows_count, cols, row_stride, x, y);
    case WeightType::BFloat16:
#ifdef MCOMPRESS_X86_KERNELS
      if (cpu() == InstructionSet::Avx512Bf16) {
        // x rounded once per product, into a buffer each calling thread keeps.
        thread_local std::vector<uint16_t> x_rounded;
        if (int64_t(x_rounded.size()) < cols) x_rounded.resize(size_t(cols));
        round_to_bfloat16(x, cols, x_rounded.data());
        const auto* w = static_cast<const BFloat16Bits*>(weight);
        const uint16_t* xr = x_rounded.data();
        at::parallel_for(0, rows_count, grain_for(cols), [&](int64_t begin, int64_t end) {
          rows_avx512_bf16(w, begin, end, cols, row_stride, xr, x, y);
        });
        return;
      }
#endif
      return gemv_of(static_cast<const BFloat16Bits*>(weight), rows_count, cols, row_stride, x, y);
    case WeightType::Float16:
      return gemv_of(static_cast<const Float16Bits*>(weight), rows_count, cols, row_stride, x, y);
  }
}

void widen(WeightType type, const void* source, int64_t count, float* destination) {
  for (int64_t i = 0; i < count; ++i) {
    switch (type) {
      case WeightType::Float32:
        destination[i] = static_cast<const float*>(source)[i];
        break;
      case WeightType::BFloat16:
        destination[i] = to_float(static_cast<const BFloat16Bits*>(source)[i]);
        break;
      case WeightType::Float16:
        destination[i] = to_float(static_cast<const Float16Bits*>(source)[i]);
        break;
    }
  }
}

void attend(const float* q, const float* keys, const float* values, int64_t length, int64_t head_dim,
            int64_t row_stride, float scale, float* scores, float* out) {
#ifdef MCOMPRESS_X86_KERNELS
  if (cpu() == InstructionSet::Avx512 || cpu() == InstructionSet::Avx512Bf16)
    return attend_avx512(q, keys, values, length, head_dim, row_stride, scale, scores, out);
#endif
  attend_portable(q, keys, values, length, head_dim, row_stride, scale, scores, out);
}

void attend_heads(const float* q, const float* keys, const float* values, int64_t heads, int64_t group,
                  int64_t kv_stride, int64_t length, int64_t head_dim, float scale, float* scores, float* out) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, length * head_dim));
  at::parallel_for(0, heads, grain, [&](int64_t begin, int64_t end) {
    for (int64_t head = begin; head < end; ++head) {
      const int64_t kv = head / group;
      attend(q + head * head_dim, keys + kv * kv_stride, values + kv * kv_stride, length, head_dim, head_dim, scale,
             scores + head * length, out + head * head_dim);
    }
  });
}

const char* instruction_set() {
  switch (cpu()) {
    case InstructionSet::Avx512Bf16:
      return "avx512+bf16";
    case InstructionSet::Avx512:
      return "avx512";
    case InstructionSet::Avx2:
      return "avx2";
    default:
      return "portable";
  }
}

}  // namespace mcompress::kernels
