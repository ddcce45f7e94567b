#pragma once
// Scripted PyTorch layers keep some channel counts as TorchScript constants
// baked into their code: nn.Conv2d's `groups` (so a depthwise convolution
// could never lose channels) and nn.LayerNorm's `normalized_shape`. This
// rewrites those uses so they follow the weights instead:
//
//   torch.conv2d(x, w, b, ..., 32)          ->  torch.conv2d(x, w, b, ..., w.size(0))
//   torch.layer_norm(x, [384], w, b, eps)   ->  torch.layer_norm(x, [w.size(0)], w, b, eps)
//
// which computes exactly the same for the unpruned model and stays right
// after pruning. The rewritten model still loads in plain PyTorch.
#include <string>
#include <vector>

#include "mcompress/sdk/export.h"

namespace torch::jit {
struct Module;
}

namespace mcompress {

// Returns a copy of `model` whose code follows its weights as above; tensors
// are shared with `model` (replace them, never modify them in place), class
// types and methods are new, so models that share code with `model` (the
// host's other copies) are not affected. A depthwise conv is rewritten only
// when every module running that code has a [groups, 1, ...] weight, a layer
// norm only when its weight has the normalised size. `rewrites` (optional)
// receives one line per rewritten use, e.g. "features.1.conv.0.0: groups".
MCOMPRESS_SDK_API torch::jit::Module with_channel_counts_following_weights(
    const torch::jit::Module& model, std::vector<std::string>* rewrites = nullptr);

}  // namespace mcompress
