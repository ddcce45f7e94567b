#pragma once
// torch::jit::optimize_for_inference runs convolutions on oneDNN tensors:
// activations stay in oneDNN's blocked layout from one convolution to the
// next, and weights are graph constants already reordered for oneDNN
// (prim::ConstantMKLDNNTensor). Such constants, and a few helper ops the
// pass inserts, cannot be saved. This makes the same graph saveable: weights
// are held as plain tensors and reordered once when the module is loaded
// (its __setstate__), and the helper ops become ordinary TorchScript.
#include <torch/script.h>

#include <optional>
#include <string>

namespace mcompress::detail {

// `optimized` is the result of torch::jit::optimize_for_inference, or any
// frozen module (whose classifier on pooled features then becomes a oneDNN
// 1x1 convolution too). Returns a module that runs its forward graph and
// survives save and load (checked here by doing both), or nullopt with the
// reason in `why_not`.
std::optional<torch::jit::Module> saveable_onednn_module(const torch::jit::Module& optimized,
                                                         std::string& why_not);

}  // namespace mcompress::detail
