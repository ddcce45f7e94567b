#pragma once
// Turning a TorchScript model's linear layers into MLX-format quantized
// layers that still run as TorchScript.
//
// A quantized layer keeps its module and class; its `weight` parameter is
// replaced by three buffers in MLX's format (mcompress/runtime/
// affine_quantization.h) and two int attributes,
//
//   packed_weight  int32 [out, in * bits / 32]   (MLX's uint32 words)
//   scales, biases [out, in / group_size]        (the weight's dtype)
//   bits, group_size
//
// and its code's `torch.linear(x, self.weight, self.bias)` becomes
// `mcompress::quantized_linear(x, self.packed_weight, self.scales,
// self.biases, self.bias, self.bits, self.group_size)`. The model then needs
// libmcompress_runtime (which registers that operator) to load and run;
// its root module carries a string attribute `mcompress_requires` saying so.
// Convolutions and embeddings stay in floating point.
#include <torch/script.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mcompress/models/quantized_layer.h"
#include "mcompress/runtime/quantized_linear.h"
#include "mcompress/sdk/export.h"

namespace mcompress {

// A module whose code computes torch.linear(x, self.weight, ...) with a 2-D
// floating `weight` of its own: the zoo's Linear, scripted nn.Linear, ...
struct LinearLayer {
  std::string path;  // module path, e.g. "block0.attn.qkv" ("" for the root)
  int64_t in_features = 0;
  int64_t out_features = 0;
  bool has_bias = false;
};
// In module order.
MCOMPRESS_SDK_API std::vector<LinearLayer> find_linear_layers(const torch::jit::Module& model);

// How one layer is to be quantized.
struct LayerQuantization {
  std::string path;
  int bits = 4;         // 2, 3, 4, 5, 6 or 8
  int group_size = 64;  // 32, 64 or 128
};

struct QuantizationOptions {
  // Cast weights to this dtype before quantizing (scales and biases are
  // stored in it, as MLX stores them in the weight's dtype); none: keep.
  std::optional<c10::ScalarType> storage_dtype;
  // Weights already quantized by another method (GPTQ: gptq_calibration.h),
  // by layer path, stored as given instead of rounding the weight to
  // nearest. Each must have its plan entry's bits and group size, the
  // weight's shape, and scales/biases in the storage dtype (above, else the
  // weight's own). Layers not listed are rounded to nearest.
  // (The {} keeps `QuantizationOptions{dtype}` free of missing-initializer warnings.)
  std::map<std::string, runtime::QuantizedWeight> precomputed{};
};

// What happened to one planned layer.
struct QuantizedLayerReport {
  std::string path;
  int64_t in_features = 0;
  int64_t out_features = 0;
  int bits = 0;
  int group_size = 0;
  bool quantized = false;
  std::string reason;        // why it was skipped (empty when quantized)
  int64_t bytes_before = 0;  // the floating weight
  int64_t bytes_after = 0;   // packed words + scales + biases (= bytes_before when skipped)
  double max_abs_error = 0;  // of the dequantized weight against the original
  double rms_error = 0;
};

struct QuantizedModel {
  torch::jit::Module model;  // new class types and code; tensors shared with the input
  std::vector<QuantizedLayerReport> layers;  // one per planned layer, in plan order
};

// The planned layers quantize_linear_layers would skip, each with the reason
// it would give (the rules below); the others are quantizable. Throws like it
// for a bad plan.
MCOMPRESS_SDK_API std::map<std::string, std::string> unquantizable_layers(
    const torch::jit::Module& model, const std::vector<LayerQuantization>& plan);

// Quantizes the planned layers of `model` (which is not changed: the result
// has its own class types and code, so the host's other copies keep
// running the old code). Layers that cannot be quantized are skipped with a
// reason, never a broken model: an input size that is not a multiple of the
// group size (MLX and mlx-lm skip those too), a weight that some other code
// reads, or a class shared with a layer that is not being quantized (all
// modules of one class run the same code). Throws mcompress::Error for a
// planned path that is not a linear layer, an unsupported bits/group size,
// or a precomputed weight that does not fit its layer.
MCOMPRESS_SDK_API QuantizedModel quantize_linear_layers(const torch::jit::Module& model,
                                                        const std::vector<LayerQuantization>& plan,
                                                        const QuantizationOptions& options = {});

}  // namespace mcompress
