// The one-row int8 kernels with AVX-VNNI (qlinear_int8_gemv.h): vpdpbusd adds
// 4 products of unsigned and signed bytes into each int32 lane, with no int16
// step to saturate. Compiled with -mavx2 -mfma -mf16c -mavxvnni; called only
// after the CPU check.
#include "qlinear_int8_gemv_256.h"

namespace mcompress::runtime::kernels::int8_gemv::avx_vnni {
namespace {

struct Vnni {
  static __m256i add(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_avx_epi32(acc, u, s); }
  static __m256i add8(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_avx_epi32(acc, u, s); }
};

}  // namespace

void rows(const PackedWeightView& w, const Activations& x, int64_t n_begin, int64_t n_end, float* y) {
  rows_256<Vnni>(w, x, n_begin, n_end, y);
}

}  // namespace mcompress::runtime::kernels::int8_gemv::avx_vnni
