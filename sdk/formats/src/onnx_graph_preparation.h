#pragma once
// The TorchScript graph the ONNX converter walks: the model's forward frozen
// in eval mode, specialised to one example input, with what that input
// decides already decided.
#include <torch/script.h>

#include <memory>
#include <unordered_map>

namespace mcompress {

struct ExportableForward {
  torch::jit::Module frozen;  // owns the constants the graph refers to
  std::shared_ptr<torch::jit::Graph> graph;  // inputs: self, then the model's inputs
  // The value every node output of the top-level block took on the example
  // input (constants excepted: they hold their own). Shapes, sizes and
  // conditions come from here.
  std::unordered_map<const torch::jit::Value*, c10::IValue> observed;
};

// Freezes an eval-mode copy of `model` (optimize_numerics: BatchNorm folded
// into convolutions, as optimize_for_cpu_inference does), replaces in-place
// tensor ops by their pure forms where that changes nothing, and runs it on
// `example`; every prim::If whose condition that run decided is replaced by
// the branch taken, and the run repeated until none is left that it decides.
// Throws mcompress::Error when the model cannot be frozen or does not run on
// `example`.
ExportableForward prepare_forward_for_export(const torch::jit::Module& model, const at::Tensor& example);

// "file:line:col" of the source `node` came from, or "" when unknown.
std::string source_location(const torch::jit::Node* node);

}  // namespace mcompress
