// Registers mcompress::quantized_linear with the TorchScript operator
// registry when the library is loaded (C++ link/dlopen, or Python's
// torch.ops.load_library). Catch-all kernels: quantized layers run on CPU
// and are not differentiated through.
#include <torch/library.h>

#include "mcompress/runtime/quantized_linear.h"

TORCH_LIBRARY(mcompress, m) {
  m.def("quantized_linear(Tensor x, Tensor packed, Tensor scales, Tensor biases, Tensor? bias, "
        "int bits, int group_size) -> Tensor",
        &mcompress::runtime::quantized_linear);
  // The format itself, for Python users and tools: MLX's mx.quantize /
  // mx.dequantize on LibTorch tensors (packed words as int32).
  m.def("affine_quantize(Tensor weight, int bits, int group_size) -> (Tensor, Tensor, Tensor)",
        [](const at::Tensor& weight, int64_t bits, int64_t group_size) {
          auto q = mcompress::runtime::quantize_weight(weight, int(bits), int(group_size));
          return std::make_tuple(q.packed, q.scales, q.biases);
        });
  m.def("affine_dequantize(Tensor packed, Tensor scales, Tensor biases, int bits, int group_size) "
        "-> Tensor",
        &mcompress::runtime::dequantize_weight);
}
