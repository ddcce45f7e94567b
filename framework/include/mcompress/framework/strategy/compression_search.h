#pragma once
// `mcompress compress`: the one-command compression. From a model and two
// targets (how many times smaller, how much accuracy may go) it plans the
// candidate pipelines a user would otherwise write as a sweep: structured
// pruning by each criterion at the sparsity the size target needs, recovered
// by fine-tuning or by distillation from the original, and, where the
// int8_quant pass is loaded, int8 quantization (4x smaller by itself) with
// correspondingly lighter pruning. The plan is an ordinary recipe and sweep
// (written next to the results, so they can be read, edited and rerun with
// `mcompress compare`); the comparison machinery runs and ranks them.
// Torch-free.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mcompress {

struct CompressionRequest {
  std::filesystem::path model;        // a TorchScript classifier (absolute)
  double target_ratio = 4.0;          // original file size / compressed file size, > 1
  double max_accuracy_loss = 0.01;    // accuracy drop allowed, as a fraction (0.01 = one point)
  std::string dataset = "fashion_mnist";
  std::filesystem::path data_path = "/usr/share/datasets/fashion-mnist";
  int64_t train_limit = 20000;        // training samples used for recovery
  int recovery_epochs = 1;
  int threads = 0;                    // intra-op threads of every candidate; 0: all cores
  bool thorough = false;              // every criterion and a more aggressive sparsity too
  bool int8_available = false;        // the int8_quant pass is loaded
};

struct CompressionPlan {
  std::string recipe_yaml;  // the base recipe: model, data, probes
  std::string sweep_yaml;   // its candidates and the objective; `base: recipe.yaml`
  std::vector<std::string> candidates;
  double max_size_mb = 0.0;  // the size target as the sweep's constraint
};

// Channel sparsity that makes a CNN's file about `ratio` times smaller: most
// weights sit in layers whose inputs and outputs both shrink, so they keep
// (1 - sparsity)^2; the sparsity aims a margin beyond the ratio for the
// layers that shrink on one side only. At least 0.1 and at most 0.9.
double sparsity_for_size_ratio(double ratio);

// The plan for a model file of `model_bytes`. Throws mcompress::Error on a
// target that cannot be planned (ratio <= 1, loss outside [0, 1)).
CompressionPlan plan_compression(const CompressionRequest& request, uint64_t model_bytes);

// "25%" -> 0.25, "0.01" -> 0.01; throws mcompress::Error naming `option`.
double parse_fraction(const std::string& text, const std::string& option);

}  // namespace mcompress
