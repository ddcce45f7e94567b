#pragma once
// The outputs of chosen layers of a TorchScript model, captured in the same
// forward pass as its output and differentiable, for losses on intermediate
// features (attention transfer, hint layers). A layer is named by the module
// path of the module whose `weight` feeds a convolution, linear or
// normalisation op ("conv1", "layer1.block0.conv2"); its output is that op's
// output.
#include <torch/script.h>

#include <memory>
#include <string>
#include <vector>

#include "mcompress/sdk/export.h"

namespace mcompress {

struct LayerInfo {
  std::string path;  // module path, e.g. "layer1.block0.conv1"
  std::string op;    // "conv", "linear", "batch_norm" or "layer_norm"
};

// The layers of `model` in the order its forward graph computes them; a
// module used twice is listed once (its first use).
MCOMPRESS_SDK_API std::vector<LayerInfo> tappable_layers(const torch::jit::Module& model);

class MCOMPRESS_SDK_API LayerTaps {
 public:
  // Throws mcompress::Error naming the layers that `model` does not have (and
  // the ones it has). The model is shared, not copied: later changes to its
  // weights and training flags are seen by run().
  LayerTaps(const torch::jit::Module& model, const std::vector<std::string>& layers);

  struct Result {
    torch::Tensor output;               // what model.forward(inputs) returns
    std::vector<torch::Tensor> layers;  // one per requested layer, in the order given
  };
  // One forward pass, recorded by autograd like model.forward.
  Result run(const torch::Tensor& inputs) const;

 private:
  torch::jit::Module model_;
  std::shared_ptr<torch::jit::Function> function_;  // compiled once, reused every step
};

}  // namespace mcompress
