// The int8 path's driver: quantizes the activations once, then hands each
// thread whole panels of output rows (pack once, multiply with every input
// row), so no two threads write the same output and each panel is unpacked
// exactly once per call.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "qlinear_int8_kernels.h"

namespace mcompress::runtime::kernels::int8 {

void linear(const PackedWeightView& w, const float* x, int64_t rows, MultiplyPanel multiply, float* y) {
  const int64_t K = w.in_features, N = w.out_features, groups = w.groups_per_row(), blocks = K / kBlock;
  std::vector<uint8_t> codes(size_t(rows * K));
  std::vector<float> scales(size_t(rows * blocks)), sums(size_t(rows * groups));
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / K), [&](int64_t begin, int64_t end) {
    quantize_activations(x + begin * K, end - begin, K, w.group_size, codes.data() + begin * K,
                         scales.data() + begin * blocks, sums.data() + begin * groups);
  });
  QuantizedActivations activations;
  activations.codes = codes.data();
  activations.scales = scales.data();
  activations.sums = sums.data();
  activations.rows = rows;
  activations.in_features = K;
  activations.group_size = w.group_size;

  const int64_t panels = (N + kPanelRows - 1) / kPanelRows;
  const size_t bytes = panel_bytes(K, w.group_size);
  at::parallel_for(0, panels, 1, [&](int64_t begin, int64_t end) {
    // 64-byte aligned: a panel step is one cache line.
    std::vector<uint8_t> storage(bytes + 64);
    void* buffer = storage.data() + (64 - reinterpret_cast<uintptr_t>(storage.data()) % 64) % 64;
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n0 = p * kPanelRows;
      const int valid = int(std::min<int64_t>(kPanelRows, N - n0));
      const Panel panel = pack_panel(w, n0, valid, buffer);
      multiply(panel, activations, y + n0, N, valid);
    }
  });
}

}  // namespace mcompress::runtime::kernels::int8
