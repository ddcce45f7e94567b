// The int8 panel product with AVX2's byte multiply: vpmaddubsw multiplies
// unsigned by signed bytes and adds pairs into saturating int16, vpmaddwd
// adds those pairs into int32. Compiled with -mavx2 -mfma -mf16c; called
// only after the CPU check.
#include <immintrin.h>

#include "qlinear_int8_products_256.h"

namespace mcompress::runtime::kernels::int8::avx2 {
namespace {

// Up to 6 bits: activations q + 128 <= 255 times centred codes
// |c'| <= 2^(bits-1) gives pairs of at most 255 * 2^bits (16320 at 6
// bits), so int16 never saturates, and 32767 / (255 * 2^bits) steps of
// pairs fit in int16 before they must be widened.
template <int Bits>
struct UnsignedTimesCentred {
  static constexpr bool kStartsFromPanel = true;
  static constexpr int kInt16Steps = Bits <= 2 ? 32 : Bits == 3 ? 16 : Bits == 4 ? 8 : Bits == 5 ? 4 : 2;
  static_assert(kInt16Steps * 255 * (1 << Bits) <= 32767, "int16 sums would overflow");
  using Weights = __m256i;
  static Weights weights(__m256i panel_vector) { return panel_vector; }
  static __m256i activations(__m256i bytes) { return bytes; }
  static __m256i pairs(__m256i activations, const Weights& w) { return _mm256_maddubs_epi16(activations, w); }
};

// 8 bits: 255 * 128 * 2 would saturate, so both sides stay signed and the
// sign moves onto the activations (|c'| <= 128 times |q| <= 127: pairs of
// at most 32512, widened every step), as llama.cpp does for its 8-bit
// blocks. No offset, so the accumulators start from zero.
struct SignedTimesCentred {
  static constexpr bool kStartsFromPanel = false;
  static constexpr int kInt16Steps = 1;
  struct Weights {
    __m256i value, magnitude;
  };
  static Weights weights(__m256i panel_vector) { return {panel_vector, _mm256_abs_epi8(panel_vector)}; }
  static __m256i activations(__m256i bytes) { return _mm256_xor_si256(bytes, _mm256_set1_epi8(char(0x80))); }
  static __m256i pairs(__m256i activations, const Weights& w) {
    return _mm256_maddubs_epi16(w.magnitude, _mm256_sign_epi8(activations, w.value));
  }
};

}  // namespace

void multiply_panel(const Panel& panel, const QuantizedActivations& x, float* y, int64_t y_stride,
                    int valid_rows) {
  switch (panel.bits) {
    case 2: return multiply_panel_256<UnsignedTimesCentred<2>>(panel, x, y, y_stride, valid_rows);
    case 3: return multiply_panel_256<UnsignedTimesCentred<3>>(panel, x, y, y_stride, valid_rows);
    case 4: return multiply_panel_256<UnsignedTimesCentred<4>>(panel, x, y, y_stride, valid_rows);
    case 5: return multiply_panel_256<UnsignedTimesCentred<5>>(panel, x, y, y_stride, valid_rows);
    case 6: return multiply_panel_256<UnsignedTimesCentred<6>>(panel, x, y, y_stride, valid_rows);
    default: return multiply_panel_256<SignedTimesCentred>(panel, x, y, y_stride, valid_rows);
  }
}

}  // namespace mcompress::runtime::kernels::int8::avx2
