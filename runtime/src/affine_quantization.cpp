#include "mcompress/runtime/affine_quantization.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace mcompress::runtime {

bool is_supported_bits(int bits) {
  return bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8;
}

bool is_supported_group_size(int group_size) {
  return group_size == 32 || group_size == 64 || group_size == 128;
}

void check_affine_format(int bits, int group_size) {
  if (!is_supported_bits(bits)) {
    throw std::invalid_argument("quantization bits must be 2, 3, 4, 5, 6 or 8 (MLX's affine mode), got " +
                                std::to_string(bits));
  }
  if (!is_supported_group_size(group_size)) {
    throw std::invalid_argument("quantization group size must be 32, 64 or 128 (MLX's affine mode), got " +
                                std::to_string(group_size));
  }
}

// Every operation below is a single IEEE float operation in the order MLX's
// CPU kernel performs them (no contraction is possible: there is no
// multiply feeding an add), so the results match it bit for bit.
GroupParams affine_group_params(const float* weights, int group_size, int bits) {
  const float n_bins = float((1 << bits) - 1);
  const float eps = 1e-7f;
  float w_min = std::numeric_limits<float>::infinity();
  float w_max = -w_min;
  for (int j = 0; j < group_size; ++j) {
    w_max = std::max(w_max, weights[j]);
    w_min = std::min(w_min, weights[j]);
  }
  const bool min_is_edge = std::abs(w_min) > std::abs(w_max);
  float scale = std::max((w_max - w_min) / n_bins, eps);
  scale = min_is_edge ? scale : -scale;
  const float edge = min_is_edge ? w_min : w_max;
  const float q0 = std::rint(edge / scale);
  GroupParams params{scale, 0.0f};
  if (q0 != 0) {
    params.scale = edge / q0;
    params.bias = edge;
  }
  return params;
}

void pack_codes(const uint8_t* codes, int64_t count, int bits, uint32_t* words) {
  uint64_t pending = 0;
  int filled = 0;
  for (int64_t i = 0; i < count; ++i) {
    pending |= uint64_t(codes[i]) << filled;
    filled += bits;
    if (filled >= 32) {
      *words++ = uint32_t(pending);
      pending >>= 32;
      filled -= 32;
    }
  }
}

void unpack_codes(const uint32_t* row, int64_t first, int64_t count, int bits, uint8_t* codes) {
  const uint32_t* word = row + first * bits / 32;
  const uint64_t mask = (uint64_t(1) << bits) - 1;
  uint64_t pending = 0;
  int available = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (available < bits) {
      pending |= uint64_t(*word++) << available;
      available += 32;
    }
    codes[i] = uint8_t(pending & mask);
    pending >>= bits;
    available -= bits;
  }
}

void affine_quantize_rows(const float* weights, int64_t rows, int64_t columns, int bits,
                          int group_size, uint32_t* packed, float* scales, float* biases) {
  check_affine_format(bits, group_size);
  if (columns % group_size != 0) {
    throw std::invalid_argument("the row length " + std::to_string(columns) +
                                " is not a multiple of the group size " + std::to_string(group_size));
  }
  const float n_bins = float((1 << bits) - 1);
  const int64_t groups = columns / group_size;
  const int64_t words_per_group = int64_t(group_size) * bits / 32;
  uint8_t codes[128];
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const float* w = weights + r * columns + g * group_size;
      const GroupParams p = affine_group_params(w, group_size, bits);
      for (int j = 0; j < group_size; ++j) {
        const float q = std::rint((w[j] - p.bias) / p.scale);
        codes[j] = uint8_t(std::min(std::max(q, 0.0f), n_bins));
      }
      pack_codes(codes, group_size, bits, packed + (r * groups + g) * words_per_group);
      scales[r * groups + g] = p.scale;
      biases[r * groups + g] = p.bias;
    }
  }
}

}  // namespace mcompress::runtime
