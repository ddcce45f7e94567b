// The one-row int8 kernels on 512-bit vectors (qlinear_int8_gemv.h):
// vpdpbusd on 64-byte chunks, so each instruction takes 128 4-bit or 64
// 8-bit codes, half the instructions of the 256-bit kernels per byte of
// weight. Compiled with -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl
// -mavx512vnni; called only after the CPU check.
#include "qlinear_int8_gemv_256.h"  // load8, prepare_row (256-bit, per row)

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's AVX-512 intrinsics, see gemv_kernels.cpp

namespace mcompress::runtime::kernels::int8_gemv::avx512_vnni {
namespace {

template <int Bits>
inline __m512i chunk512(__m512i acc, const uint8_t* packed, const int8_t* x) {
  const __m512i bytes = _mm512_loadu_si512(packed);
  if constexpr (Bits == 4) {
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    acc = _mm512_dpbusd_epi32(acc, _mm512_and_si512(bytes, nibble), _mm512_loadu_si512(x));
    return _mm512_dpbusd_epi32(acc, _mm512_and_si512(_mm512_srli_epi16(bytes, 4), nibble), _mm512_loadu_si512(x + 64));
  } else {
    return _mm512_dpbusd_epi32(acc, bytes, _mm512_loadu_si512(x));
  }
}

// As rows_dot in qlinear_int8_gemv_256.h, with 64-byte chunks. A chunk may
// hold 2 or 4 groups: lane l (bytes 4l..4l+3) belongs to group l / (16 / k).
template <int Bits, int Group, int Rows>
inline void rows_dot512(const uint8_t* const* packed, const int8_t* x, const float* scaled, int64_t groups,
                        int64_t ahead, float* out) {
  constexpr int kElements = Bits == 4 ? 128 : 64;  // codes per 64-byte chunk
  __m512 acc[Rows];
  for (int r = 0; r < Rows; ++r) acc[r] = _mm512_setzero_ps();
  if constexpr (Group >= kElements) {
    constexpr int kChunks = Group / kElements;
    for (int64_t g = 0; g < groups; ++g) {
      __m512i sums[Rows];
      for (int r = 0; r < Rows; ++r) sums[r] = _mm512_setzero_si512();
      for (int c = 0; c < kChunks; ++c) {
        const int64_t at = g * kChunks + c;
        for (int r = 0; r < Rows; ++r) {
          _mm_prefetch(reinterpret_cast<const char*>(packed[r] + at * 64 + ahead), _MM_HINT_T0);
          sums[r] = chunk512<Bits>(sums[r], packed[r] + at * 64, x + at * kElements);
        }
      }
      for (int r = 0; r < Rows; ++r)
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[r]), _mm512_set1_ps(scaled[r * groups + g]), acc[r]);
    }
  } else {
    constexpr int kGroups = kElements / Group;  // 2 or 4 per chunk
    const int64_t chunks = groups / kGroups;
    int64_t c = 0;
    if constexpr (kGroups == 2) {
      // Two chunks (groups g .. g+3) per step: interleaving their 64-bit lane
      // pairs and adding leaves 4 lanes per group in one vector, so one
      // conversion and one multiply-add serve both. Lane i then holds group
      // g + pair_group[i].
      const __m512i pair_group = _mm512_set_epi32(3, 3, 1, 1, 3, 3, 1, 1, 2, 2, 0, 0, 2, 2, 0, 0);
      for (; c + 2 <= chunks; c += 2) {
        for (int r = 0; r < Rows; ++r) {
          const uint8_t* at = packed[r] + c * 64;
          _mm_prefetch(reinterpret_cast<const char*>(at + ahead), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(at + 64 + ahead), _MM_HINT_T0);
          const __m512i first = chunk512<Bits>(_mm512_setzero_si512(), at, x + c * kElements);
          const __m512i second = chunk512<Bits>(_mm512_setzero_si512(), at + 64, x + (c + 1) * kElements);
          const __m512i sums =
              _mm512_add_epi32(_mm512_unpacklo_epi64(first, second), _mm512_unpackhi_epi64(first, second));
          const __m512 scale = _mm512_permutexvar_ps(
              pair_group, _mm512_castps128_ps512(_mm_loadu_ps(scaled + r * groups + c * kGroups)));
          acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), scale, acc[r]);
        }
      }
    }
    // One chunk at a time: lane l (bytes 4l..4l+3) belongs to group l / (16 / kGroups).
    const __m512i lane_group = kGroups == 2
                                   ? _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)
                                   : _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    for (; c < chunks; ++c) {
      for (int r = 0; r < Rows; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(packed[r] + c * 64 + ahead), _MM_HINT_T0);
        const __m512i sums = chunk512<Bits>(_mm512_setzero_si512(), packed[r] + c * 64, x + c * kElements);
        // The chunk's scales, each spread over its lanes (`scaled` has 4 floats of slack at the end).
        const __m512 scale = _mm512_permutexvar_ps(
            lane_group, _mm512_castps128_ps512(_mm_loadu_ps(scaled + r * groups + c * kGroups)));
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), scale, acc[r]);
      }
    }
  }
  for (int r = 0; r < Rows; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
}

constexpr int kRows512 = 8;  // 8 streams per thread: memory keeps more requests in flight

}  // namespace

void rows(const PackedWeightView& w, const Activations& x, int64_t n_begin, int64_t n_end, float* y) {
  with_format(w.bits, w.group_size, [&](auto bits, auto group) {
    rows_in_blocks<kRows512>(w, x, n_begin, n_end, y, [&](auto count, const uint8_t* const* rows,
                                                          const float* scaled, float* out) {
      // Prefetch the same bytes of the next block of rows while this one is multiplied.
      rows_dot512<bits.value, group.value, count.value>(rows, x.codes, scaled, w.groups_per_row(),
                                                        count.value * w.bytes_per_row(), out);
    });
  });
}

}  // namespace mcompress::runtime::kernels::int8_gemv::avx512_vnni
