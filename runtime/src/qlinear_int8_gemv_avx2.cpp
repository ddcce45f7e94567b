// The one-row int8 kernels with AVX2 (qlinear_int8_gemv.h): vpmaddubsw
// multiplies unsigned by signed bytes into int16 pairs, vpmaddwd widens them.
// A pair of 8-bit codes times activations can exceed int16 (2 x 255 x 127),
// so 8-bit codes enter as their two nibbles, 16 * high + low.
// Compiled with -mavx2 -mfma -mf16c; called only after the CPU check.
#include "qlinear_int8_gemv_256.h"

namespace mcompress::runtime::kernels::int8_gemv::avx2 {
namespace {

struct MaddUbs {
  static __m256i products(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
  }
  static __m256i add(__m256i acc, __m256i u, __m256i s) { return _mm256_add_epi32(acc, products(u, s)); }
  static __m256i add8(__m256i acc, __m256i u, __m256i s) {
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    const __m256i high = products(_mm256_and_si256(_mm256_srli_epi16(u, 4), nibble), s);
    const __m256i low = products(_mm256_and_si256(u, nibble), s);
    return _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_slli_epi32(high, 4), low));
  }
};

}  // namespace

void rows(const PackedWeightView& w, const Activations& x, int64_t n_begin, int64_t n_end, float* y) {
  rows_256<MaddUbs>(w, x, n_begin, n_end, y);
}

}  // namespace mcompress::runtime::kernels::int8_gemv::avx2
