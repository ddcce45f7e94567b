// Plain C++ kernels: every bit width, any x86/ARM CPU. Written so the
// compiler can vectorize the inner loops (fixed-width partial sums instead of
// one float reduction, which it may not reorder).
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>

#include "mcompress/runtime/affine_quantization.h"
#include "qlinear_kernels.h"

namespace mcompress::runtime::kernels::portable {
namespace {

constexpr int kLanes = 8;

inline float scale_at(const void* values, ScaleType type, int64_t i) {
  switch (type) {
    case ScaleType::Float16: return float(static_cast<const c10::Half*>(values)[i]);
    case ScaleType::BFloat16: return float(static_cast<const c10::BFloat16*>(values)[i]);
    case ScaleType::Float32: break;
  }
  return static_cast<const float*>(values)[i];
}

inline float dot(const float* a, const float* b, int count) {
  float partial[kLanes] = {};
  for (int j = 0; j < count; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) partial[l] += a[j + l] * b[j + l];
  }
  float sum = 0;
  for (float p : partial) sum += p;
  return sum;
}

// Codes of one group as floats. 2-, 4- and 8-bit codes never straddle a
// word, so fixed shifts (unrolled by the compiler) replace the generic bit
// stream reader.
template <int Bits>
void word_codes_to_float(const uint32_t* words, int count, float* out) {
  constexpr int kPerWord = 32 / Bits;
  constexpr uint32_t kMask = (1u << Bits) - 1;
  for (int w = 0; w < count / kPerWord; ++w) {
    const uint32_t word = words[w];
    for (int j = 0; j < kPerWord; ++j) out[w * kPerWord + j] = float((word >> (j * Bits)) & kMask);
  }
}

void codes_to_float(const uint32_t* row, int64_t first, int count, int bits, float* out) {
  const uint32_t* words = row + first * bits / 32;
  switch (bits) {
    case 2: return word_codes_to_float<2>(words, count, out);
    case 4: return word_codes_to_float<4>(words, count, out);
    case 8: return word_codes_to_float<8>(words, count, out);
    default: break;
  }
  uint8_t codes[128];
  unpack_codes(row, first, count, bits, codes);
  for (int j = 0; j < count; ++j) out[j] = float(codes[j]);
}

}  // namespace

void prepare_activations(const float* x, int64_t rows, int64_t in_features, int bits,
                         int group_size, float* values, float* group_sums) {
  const int64_t groups = in_features / group_size;
  std::copy(x, x + rows * in_features, values);
  for (int64_t m = 0; m < rows; ++m) {
    for (int64_t g = 0; g < groups; ++g) {
      const float* xg = x + m * in_features + g * group_size;
      float sum = 0;
      for (int j = 0; j < group_size; ++j) sum += xg[j];
      group_sums[m * groups + g] = sum;
    }
  }
}

void linear_rows(const PackedWeightView& w, const PreparedActivations& x, int64_t n_begin,
                 int64_t n_end, float* y) {
  const int64_t groups = w.groups_per_row();
  const int G = w.group_size;
  float code_values[128];
  for (int64_t n = n_begin; n < n_end; ++n) {
    const uint32_t* row = w.packed + n * w.words_per_row();
    for (int64_t m = 0; m < x.rows; ++m) y[m * w.out_features + n] = 0;
    for (int64_t g = 0; g < groups; ++g) {
      // Unpacked once per group and reused for every input row.
      codes_to_float(row, g * G, G, w.bits, code_values);
      const float scale = scale_at(w.scales, w.scale_type, n * groups + g);
      const float bias = scale_at(w.biases, w.scale_type, n * groups + g);
      for (int64_t m = 0; m < x.rows; ++m) {
        const float* xg = x.values + m * w.in_features + g * G;
        y[m * w.out_features + n] +=
            scale * dot(code_values, xg, G) + bias * x.group_sums[m * groups + g];
      }
    }
  }
}

void dequantize_rows(const PackedWeightView& w, int64_t n_begin, int64_t n_end, float* out) {
  const int64_t groups = w.groups_per_row();
  const int G = w.group_size;
  for (int64_t n = n_begin; n < n_end; ++n) {
    const uint32_t* row = w.packed + n * w.words_per_row();
    float* dst = out + (n - n_begin) * w.in_features;
    for (int64_t g = 0; g < groups; ++g) {
      codes_to_float(row, g * G, G, w.bits, dst + g * G);
      const float scale = scale_at(w.scales, w.scale_type, n * groups + g);
      const float bias = scale_at(w.biases, w.scale_type, n * groups + g);
      for (int j = 0; j < G; ++j) dst[g * G + j] = dst[g * G + j] * scale + bias;
    }
  }
}

}  // namespace mcompress::runtime::kernels::portable
