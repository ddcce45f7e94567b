// The driver of the one-row int8 path (qlinear_int8_gemv.h): baseline code.
#include "qlinear_int8_gemv.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace mcompress::runtime::kernels::int8_gemv {

bool supports(int bits, int group_size, int64_t in_features, int chunk_bytes) {
  const bool group = group_size == 32 || group_size == 64 || group_size == 128;
  const int64_t chunk_elements = bits == 4 ? 2 * chunk_bytes : bits == 8 ? chunk_bytes : 0;
  return group && chunk_elements > 0 && in_features % group_size == 0 && in_features % chunk_elements == 0;
}

void quantize_activations(const float* x, int64_t in_features, int bits, int group_size, int chunk_bytes,
                          int8_t* codes, float* scales, float* sums, float* centring) {
  const int64_t chunk = 2 * chunk_bytes;  // 4 bits: elements per chunk
  const int64_t groups = in_features / group_size;
  for (int64_t g = 0; g < groups; ++g) {
    const float* xg = x + g * group_size;
    float largest = 0.0f, sum = 0.0f;
    for (int i = 0; i < group_size; ++i) {
      largest = std::max(largest, std::fabs(xg[i]));
      sum += xg[i];
    }
    // q = round(x * 127 / max|x_g|), as the int8 panel path rounds.
    const float inverse = largest > 0.0f ? 127.0f / largest : 0.0f;
    int64_t code_sum = 0;
    for (int i = 0; i < group_size; ++i) {
      const int64_t e = g * group_size + i;
      // 4 bits: within each chunk, the even elements first, then the odd ones.
      const int64_t position = bits == 4 ? (e / chunk) * chunk + (e % 2) * chunk_bytes + (e % chunk) / 2 : e;
      codes[position] = int8_t(std::lrint(std::clamp(xg[i] * inverse, -127.0f, 127.0f)));
      code_sum += codes[position];
    }
    scales[g] = largest / 127.0f;
    sums[g] = sum;
    centring[g] = float(1 << (bits - 1)) * (sum - scales[g] * float(code_sum));
  }
}

void linear(const PackedWeightView& w, const float* x, Rows rows, int chunk_bytes, float* y) {
  const int64_t groups = w.groups_per_row();
  std::vector<int8_t> codes(size_t(w.in_features));
  std::vector<float> scales(static_cast<size_t>(groups)), sums(static_cast<size_t>(groups)),
      centring(static_cast<size_t>(groups));
  quantize_activations(x, w.in_features, w.bits, w.group_size, chunk_bytes, codes.data(), scales.data(),
                       sums.data(), centring.data());
  const Activations activations{codes.data(), scales.data(), sums.data(), centring.data()};
  // Small layers stay on one thread: waking the others costs more than their share.
  const int64_t grain = std::max<int64_t>(16, (int64_t{1} << 16) / std::max<int64_t>(1, w.bytes_per_row()));
  at::parallel_for(0, w.out_features, grain,
                   [&](int64_t begin, int64_t end) { rows(w, activations, begin, end, y); });
}

}  // namespace mcompress::runtime::kernels::int8_gemv
