// The driver of the one-row int8 path (qlinear_int8_gemv.h): baseline code.
#include "qlinear_int8_gemv.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace mcompress::runtime::kernels::int8_gemv {

bool supports(int bits, int group_size, int64_t in_features, int chunk_bytes) {
  const bool group = group_size == 32 || group_size == 64 || group_size == 128;
  const int64_t chunk_elements = bits == 4 ? 2 * chunk_bytes : bits == 8 ? chunk_bytes : 0;
  return group && chunk_elements > 0 && in_features % group_size == 0 && in_features % chunk_elements == 0;
}

void quantize_activations(const float* x, int64_t in_features, int bits, int group_size, int chunk_bytes,
                          int8_t* codes, float* scales, float* sums, float* centring) {
  const int64_t groups = in_features / group_size;
  const int64_t chunk = 2 * chunk_bytes;  // 4 bits: elements per chunk (a power of two)
  for (int64_t g = 0; g < groups; ++g) {
    const float* xg = x + g * group_size;
    // Four partial maxima and sums: independent chains.
    float largest[4] = {}, partial[4] = {};
    for (int i = 0; i < group_size; i += 4)
      for (int k = 0; k < 4; ++k) {
        largest[k] = std::max(largest[k], std::fabs(xg[i + k]));
        partial[k] += xg[i + k];
      }
    const float top = std::max(std::max(largest[0], largest[1]), std::max(largest[2], largest[3]));
    // q = round(x * 127 / max|x_g|), half to even as the int8 panel path rounds (lrint); adding
    // and subtracting 1.5 * 2^23 rounds the same way without a library call.
    const float inverse = top > 0.0f ? 127.0f / top : 0.0f;
    int8_t q[128];
    int32_t code_sum = 0;
    for (int i = 0; i < group_size; ++i) {
      const float v = std::clamp(xg[i] * inverse, -127.0f, 127.0f);
      q[i] = int8_t(int((v + 12582912.0f) - 12582912.0f));
      code_sum += q[i];
    }
    const int64_t first = g * group_size;
    if (bits == 4) {
      // Within each chunk, the even elements first, then the odd ones.
      for (int i = 0; i < group_size; i += 2) {
        const int64_t e = first + i, within = e & (chunk - 1), at = e - within + within / 2;
        codes[at] = q[i];
        codes[at + chunk_bytes] = q[i + 1];
      }
    } else {
      std::memcpy(codes + first, q, size_t(group_size));
    }
    scales[g] = top / 127.0f;
    sums[g] = (partial[0] + partial[1]) + (partial[2] + partial[3]);
    centring[g] = float(1 << (bits - 1)) * (sums[g] - scales[g] * float(code_sum));
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
