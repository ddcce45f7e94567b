// AVX2/FMA/F16C fused kernels for 3-, 5- and 6-bit codes, which straddle
// bytes. Compiled with -mavx2 -mfma -mf16c; called only through the AVX2
// entry points after the CPU check.
//
// A unit is 32 codes = 4 * bits bytes. Each of the 8 int32 lanes gets the
// 4 * bits bits of 4 consecutive codes (a 3-byte window gathered by
// vpshufb, shifted right by 4 where the codes start mid-byte), so code
// 4 * lane + p is plane p: one shift and one mask away for 8 lanes at once.
// The activations are permuted to that order once per call
// (prepare_activations with 4 planes), as for the byte formats.
#include <immintrin.h>

#include <cstring>

#include "qlinear_avx2_fused.h"
#include "qlinear_kernels.h"

namespace mcompress::runtime::kernels::avx2::odd_bits {
namespace {

// vpshufb index of byte i of a 128-bit half: lane i / 4 starts at bit
// 4 * bits * lane, i.e. byte bits * lane / 2; its fourth byte is zeroed.
constexpr char window_byte(int bits, int i) {
  return i % 4 == 3 ? char(-1) : char(bits * (i / 4) / 2 + i % 4);
}

template <int Bits>
struct OddUnits {
  static_assert(Bits == 3 || Bits == 5 || Bits == 6, "bytes hold 2-, 4- and 8-bit codes whole");
  static constexpr int kUnitBytes = 4 * Bits;
  static constexpr int kCodesPerUnit = 32;
  static constexpr int kHalfBytes = 2 * Bits;  // lanes 4..7 start here

  static __m256i load(const uint8_t* unit, const uint8_t* end) {
    __m256i raw;
    // Each half is read as 16 bytes; near the end of the weight that would
    // read past it, so the last units come from a zero-padded copy.
    if (unit + kHalfBytes + 16 <= end) {
      raw = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(unit + kHalfBytes),
                                reinterpret_cast<const __m128i*>(unit));
    } else {
      uint8_t padded[kHalfBytes + 16] = {};
      std::memcpy(padded, unit, kUnitBytes);
      raw = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(padded + kHalfBytes),
                                reinterpret_cast<const __m128i*>(padded));
    }
    const __m256i control = _mm256_broadcastsi128_si256(_mm_setr_epi8(
        window_byte(Bits, 0), window_byte(Bits, 1), window_byte(Bits, 2), window_byte(Bits, 3),
        window_byte(Bits, 4), window_byte(Bits, 5), window_byte(Bits, 6), window_byte(Bits, 7),
        window_byte(Bits, 8), window_byte(Bits, 9), window_byte(Bits, 10), window_byte(Bits, 11),
        window_byte(Bits, 12), window_byte(Bits, 13), window_byte(Bits, 14), window_byte(Bits, 15)));
    const __m256i windows = _mm256_shuffle_epi8(raw, control);
    // Odd widths: every second lane starts at bit 4 of its first byte.
    if constexpr (Bits % 2 == 1) return _mm256_srlv_epi32(windows, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
    return windows;
  }

  template <int P>
  static __m256 plane(__m256i lanes) {
    const __m256i shifted = P == 0 ? lanes : _mm256_srli_epi32(lanes, P * Bits);
    // Four 6-bit codes fill the 3-byte window: the top one needs no mask.
    if constexpr (Bits == 6 && P == 3) return _mm256_cvtepi32_ps(shifted);
    return _mm256_cvtepi32_ps(_mm256_and_si256(shifted, _mm256_set1_epi32((1 << Bits) - 1)));
  }

  static void accumulate(__m256i lanes, const float* xu, int, __m256& even, __m256& odd) {
    even = _mm256_fmadd_ps(plane<0>(lanes), _mm256_loadu_ps(xu), even);
    odd = _mm256_fmadd_ps(plane<1>(lanes), _mm256_loadu_ps(xu + 8), odd);
    even = _mm256_fmadd_ps(plane<2>(lanes), _mm256_loadu_ps(xu + 16), even);
    odd = _mm256_fmadd_ps(plane<3>(lanes), _mm256_loadu_ps(xu + 24), odd);
  }

  static void store_dequantized(__m256i lanes, __m256 scale, __m256 bias, float* out) {
    _mm256_storeu_ps(out, _mm256_fmadd_ps(plane<0>(lanes), scale, bias));
    _mm256_storeu_ps(out + 8, _mm256_fmadd_ps(plane<1>(lanes), scale, bias));
    _mm256_storeu_ps(out + 16, _mm256_fmadd_ps(plane<2>(lanes), scale, bias));
    _mm256_storeu_ps(out + 24, _mm256_fmadd_ps(plane<3>(lanes), scale, bias));
  }
};

}  // namespace

void linear_rows(const PackedWeightView& w, const PreparedActivations& x, int64_t n_begin,
                 int64_t n_end, float* y) {
  switch (w.bits) {
    case 3: return fused_linear_rows<OddUnits<3>>(w, x, n_begin, n_end, y);
    case 5: return fused_linear_rows<OddUnits<5>>(w, x, n_begin, n_end, y);
    default: return fused_linear_rows<OddUnits<6>>(w, x, n_begin, n_end, y);
  }
}

void dequantize_rows(const PackedWeightView& w, int64_t n_begin, int64_t n_end, float* out) {
  switch (w.bits) {
    case 3: return dequantize_rows_in_prepared_order<OddUnits<3>>(w, n_begin, n_end, out);
    case 5: return dequantize_rows_in_prepared_order<OddUnits<5>>(w, n_begin, n_end, out);
    default: return dequantize_rows_in_prepared_order<OddUnits<6>>(w, n_begin, n_end, out);
  }
}

}  // namespace mcompress::runtime::kernels::avx2::odd_bits
