#pragma once
// Mixed precision to a budget: which linear layers get more bits, chosen by
// how much each one alone hurts the model when quantized (as mlx-lm's
// dynamic quantization chooses them).
//
// A layer's sensitivity is the mean KL divergence, over every output position
// of the calibration batches, from the floating model's output distribution to
// that of the model with only this layer rounded to `low_bits` (MLX affine,
// dequantized in place, then restored). Every layer starts at `low_bits`; the
// layers with the highest sensitivity per weight move to `high_bits` while
// the weighted mean of code bits stays within the target. "Bits per weight"
// here counts the codes only (the scales and biases add 2·16/group_size for
// 16-bit scales at every width alike).
#include <torch/script.h>

#include <string>
#include <vector>

#include "mcompress/quantization/quantized_model.h"
#include "mcompress/sdk/export.h"

namespace mcompress {

class Progress;

struct BitAllocationOptions {
  int low_bits = 3;
  int high_bits = 4;
  int group_size = 64;
  double target_bits_per_weight = 3.5;  // between low_bits and high_bits
  Progress* progress = nullptr;         // one step per layer measured
};

struct LayerSensitivity {
  std::string path;
  int64_t weights = 0;    // out * in
  double kl = 0;          // mean KL (nats per position) with this layer alone at low_bits
  int bits = 0;           // what the allocation gave it
};

struct BitAllocation {
  std::vector<LayerQuantization> plan;  // every layer of `paths`, with its bits
  std::vector<LayerSensitivity> layers; // in `paths` order
  double bits_per_weight = 0;           // weighted mean of the plan's code bits
};

// Measures `paths` (linear layers of `model`, find_linear_layers' paths) on
// `batches` (model inputs) and allocates bits. The model is left as it was.
// Throws mcompress::Error for bits MLX does not have, a target outside
// [low_bits, high_bits], a path that is not a linear layer, or no batches.
MCOMPRESS_SDK_API BitAllocation allocate_bits_by_sensitivity(const torch::jit::Module& model,
                                                             const std::vector<std::string>& paths,
                                                             const std::vector<torch::Tensor>& batches,
                                                             const BitAllocationOptions& options);

}  // namespace mcompress
