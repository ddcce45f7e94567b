// The int8 panel product with AVX-VNNI: vpdpbusd multiplies 4 unsigned by 4
// signed bytes and adds them into each int32 lane in one instruction, with
// no int16 step to saturate, so every width takes the same path. Compiled
// with -mavx2 -mfma -mf16c -mavxvnni; called only after the CPU check.
#include <immintrin.h>

#include "qlinear_int8_products_256.h"

namespace mcompress::runtime::kernels::int8::avx_vnni {
namespace {

struct Vnni {
  static constexpr bool kStartsFromPanel = true;
  static constexpr int kInt16Steps = 0;
  using Weights = __m256i;
  static Weights weights(__m256i panel_vector) { return panel_vector; }
  static __m256i activations(__m256i bytes) { return bytes; }
  static __m256i accumulate(__m256i acc, __m256i activations, const Weights& w) {
    return _mm256_dpbusd_avx_epi32(acc, activations, w);
  }
};

}  // namespace

void multiply_panel(const Panel& panel, const QuantizedActivations& x, float* y, int64_t y_stride,
                    int valid_rows) {
  multiply_panel_256<Vnni>(panel, x, y, y_stride, valid_rows);
}

}  // namespace mcompress::runtime::kernels::int8::avx_vnni
