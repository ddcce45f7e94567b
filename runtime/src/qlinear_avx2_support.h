#pragma once
// Small AVX2/F16C helpers shared by the AVX2 kernel files. Only for files
// compiled with -mavx2 -mfma -mf16c; internal linkage, so no AVX2 code can
// reach baseline files through the linker.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "qlinear_kernels.h"

namespace mcompress::runtime::kernels::avx2 {
namespace {

inline float load_scale(const void* values, ScaleType type, int64_t i) {
  switch (type) {
    case ScaleType::Float16:
      return _cvtsh_ss(static_cast<const uint16_t*>(values)[i]);
    case ScaleType::BFloat16: {
      const uint32_t bits = uint32_t(static_cast<const uint16_t*>(values)[i]) << 16;
      float value;
      std::memcpy(&value, &bits, sizeof value);
      return value;
    }
    case ScaleType::Float32: break;
  }
  return static_cast<const float*>(values)[i];
}

inline float horizontal_sum(__m256 v) {
  __m128 sum = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  __m128 shuffled = _mm_movehdup_ps(sum);
  sum = _mm_add_ps(sum, shuffled);
  shuffled = _mm_movehl_ps(shuffled, sum);
  return _mm_cvtss_f32(_mm_add_ss(sum, shuffled));
}

}  // namespace
}  // namespace mcompress::runtime::kernels::avx2
