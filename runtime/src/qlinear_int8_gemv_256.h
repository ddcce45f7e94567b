#pragma once
// The one-row int8 kernels on 256-bit vectors (qlinear_int8_gemv.h), for
// any integer dot product `Dot`:
//   Dot::add(acc, u, s): acc (8 x int32) + the sums of 4 products of the
//   unsigned bytes u (codes 0..15 or 0..255) and the signed bytes s.
// Included by one file per instruction set, compiled for that set.
#include <immintrin.h>

#include <cstring>
#include <type_traits>
#include <vector>

#include "qlinear_int8_gemv.h"

namespace mcompress::runtime::kernels::int8_gemv {
namespace {

// 8 scales or biases of a row from `at` (element index), as float.
inline __m256 load8(ScaleType type, const void* base, int64_t at) {
  switch (type) {
    case ScaleType::Float32: return _mm256_loadu_ps(static_cast<const float*>(base) + at);
    case ScaleType::Float16:
      return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + at)));
    case ScaleType::BFloat16: {
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + at));
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
    }
  }
  return _mm256_setzero_ps();
}

inline float load1(ScaleType type, const void* base, int64_t at) {
  switch (type) {
    case ScaleType::Float32: return static_cast<const float*>(base)[at];
    case ScaleType::Float16: return _cvtsh_ss(static_cast<const uint16_t*>(base)[at]);
    case ScaleType::BFloat16: {
      const uint32_t bits = uint32_t(static_cast<const uint16_t*>(base)[at]) << 16;
      float value;
      std::memcpy(&value, &bits, sizeof value);
      return value;
    }
  }
  return 0.0f;
}

inline float horizontal_sum(__m256 v) {
  const __m128 both = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 pairs = _mm_add_ps(both, _mm_movehl_ps(both, both));
  return _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehdup_ps(pairs)));
}

// The int32 sums of one 32-byte chunk of packed codes against its activations.
template <class Dot, int Bits>
inline __m256i chunk(__m256i acc, const uint8_t* packed, const int8_t* x) {
  const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(packed));
  if constexpr (Bits == 4) {
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    const __m256i low = _mm256_and_si256(bytes, nibble);
    const __m256i high = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), nibble);
    acc = Dot::add(acc, low, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
    return Dot::add(acc, high, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32)));
  } else {
    return Dot::add8(acc, bytes, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
  }
}

// kRows output rows at once: each thread streams several rows (memory
// delivers more to several streams than to one), and each activation load
// serves every row. Sums over groups of (scale_g * d_g) * integer dot, with
// scaled[r * groups + g] = scale_g * d_g of row r prepared by the caller.
constexpr int kRows = 4;  // rows per block of the 256-bit kernels

template <class Dot, int Bits, int Group, int Rows>
inline void rows_dot(const uint8_t* const* packed, const int8_t* x, const float* scaled, int64_t groups,
                     float* out) {
  constexpr int kElements = Bits == 4 ? 64 : 32;  // codes per 32-byte chunk
  __m256 acc[Rows];
  for (int r = 0; r < Rows; ++r) acc[r] = _mm256_setzero_ps();
  if constexpr (Group >= kElements) {
    constexpr int kChunks = Group / kElements;
    for (int64_t g = 0; g < groups; ++g) {
      __m256i sums[Rows];
      for (int r = 0; r < Rows; ++r) sums[r] = _mm256_setzero_si256();
      for (int c = 0; c < kChunks; ++c) {
        const int64_t at = g * kChunks + c;
        for (int r = 0; r < Rows; ++r) {
          _mm_prefetch(reinterpret_cast<const char*>(packed[r] + at * 32 + 512), _MM_HINT_T0);
          sums[r] = chunk<Dot, Bits>(sums[r], packed[r] + at * 32, x + at * kElements);
        }
      }
      for (int r = 0; r < Rows; ++r)
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[r]), _mm256_set1_ps(scaled[r * groups + g]), acc[r]);
    }
  } else {
    // 4 bits in groups of 32: lanes 0-3 of a chunk are one group, lanes 4-7 the next.
    for (int64_t c = 0; c < groups / 2; ++c) {
      for (int r = 0; r < Rows; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(packed[r] + c * 32 + 512), _MM_HINT_T0);
        const __m256i sums = chunk<Dot, Bits>(_mm256_setzero_si256(), packed[r] + c * 32, x + c * kElements);
        const float* s = scaled + r * groups + 2 * c;
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_set_m128(_mm_set1_ps(s[1]), _mm_set1_ps(s[0])),
                                 acc[r]);
      }
    }
  }
  for (int r = 0; r < Rows; ++r) out[r] = horizontal_sum(acc[r]);
}

// scale_g * d_g of row n into `scaled`, and the row's float part: the
// biases' bias_g * sum(x_g) and the centring's scale_g * o * (...).
inline float prepare_row(const PackedWeightView& w, const Activations& x, int64_t n, float* scaled) {
  const int64_t groups = w.groups_per_row(), first = n * groups;
  __m256 rest = _mm256_setzero_ps();
  int64_t g = 0;
  for (; g + 8 <= groups; g += 8) {
    const __m256 scale = load8(w.scale_type, w.scales, first + g);
    _mm256_storeu_ps(scaled + g, _mm256_mul_ps(scale, _mm256_loadu_ps(x.scales + g)));
    rest = _mm256_fmadd_ps(load8(w.scale_type, w.biases, first + g), _mm256_loadu_ps(x.sums + g), rest);
    rest = _mm256_fmadd_ps(scale, _mm256_loadu_ps(x.centring + g), rest);
  }
  float part = horizontal_sum(rest);
  for (; g < groups; ++g) {
    const float scale = load1(w.scale_type, w.scales, first + g);
    scaled[g] = scale * x.scales[g];
    part += load1(w.scale_type, w.biases, first + g) * x.sums[g] + scale * x.centring[g];
  }
  return part;
}

// Output rows [n_begin, n_end) in blocks of BlockRows, then the rest one at
// a time: each row's scale_g * d_g and float part from prepare_row, the
// integer sums of R rows from
//   dot(std::integral_constant<int, R>, rows, scaled, out).
template <int BlockRows, class BlockDot>
void rows_in_blocks(const PackedWeightView& w, const Activations& x, int64_t n_begin, int64_t n_end, float* y,
                    const BlockDot& dot) {
  const int64_t groups = w.groups_per_row();
  // 4 floats of slack: the 512-bit kernels read a chunk's scales 4 at a time.
  thread_local std::vector<float> scaled;
  if (int64_t(scaled.size()) < BlockRows * groups + 4) scaled.resize(size_t(BlockRows * groups + 4));
  const auto* packed = reinterpret_cast<const uint8_t*>(w.packed);
  int64_t n = n_begin;
  for (; n + BlockRows <= n_end; n += BlockRows) {
    const uint8_t* rows[BlockRows];
    float parts[BlockRows], dots[BlockRows];
    for (int r = 0; r < BlockRows; ++r) {
      rows[r] = packed + (n + r) * w.bytes_per_row();
      parts[r] = prepare_row(w, x, n + r, scaled.data() + r * groups);
    }
    dot(std::integral_constant<int, BlockRows>{}, rows, scaled.data(), dots);
    for (int r = 0; r < BlockRows; ++r) y[n + r] = dots[r] + parts[r];
  }
  for (; n < n_end; ++n) {
    const uint8_t* row = packed + n * w.bytes_per_row();
    float value;
    const float part = prepare_row(w, x, n, scaled.data());
    dot(std::integral_constant<int, 1>{}, &row, scaled.data(), &value);
    y[n] = value + part;
  }
}

// f(std::integral_constant<int, bits>, std::integral_constant<int, group_size>)
// for the formats the kernels handle (supports() keeps others away).
template <class F>
void with_format(int bits, int group_size, const F& f) {
  using std::integral_constant;
  switch (bits * 1000 + group_size) {
    case 4032: return f(integral_constant<int, 4>{}, integral_constant<int, 32>{});
    case 4064: return f(integral_constant<int, 4>{}, integral_constant<int, 64>{});
    case 4128: return f(integral_constant<int, 4>{}, integral_constant<int, 128>{});
    case 8032: return f(integral_constant<int, 8>{}, integral_constant<int, 32>{});
    case 8064: return f(integral_constant<int, 8>{}, integral_constant<int, 64>{});
    case 8128: return f(integral_constant<int, 8>{}, integral_constant<int, 128>{});
    default: break;
  }
}

template <class Dot>
void rows_256(const PackedWeightView& w, const Activations& x, int64_t n_begin, int64_t n_end, float* y) {
  with_format(w.bits, w.group_size, [&](auto bits, auto group) {
    rows_in_blocks<kRows>(w, x, n_begin, n_end, y, [&](auto count, const uint8_t* const* rows, const float* scaled,
                                                       float* out) {
      rows_dot<Dot, bits.value, group.value, count.value>(rows, x.codes, scaled, w.groups_per_row(), out);
    });
  });
}

}  // namespace
}  // namespace mcompress::runtime::kernels::int8_gemv
