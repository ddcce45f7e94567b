#pragma once
// Reading a TorchScript model as one flat graph: the inlined forward graph,
// which module attribute a value comes from, and running the graph while
// capturing intermediate values. Shared by MAC counting, dependency analysis
// and any pass that needs activations.
#include <torch/script.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mcompress/sdk/export.h"

namespace mcompress {

// A copy of `module`'s forward graph with every submodule call inlined, so
// parameters appear as chains of prim::GetAttr from the graph's first input
// (self). The returned graph is owned by the caller.
MCOMPRESS_SDK_API std::shared_ptr<torch::jit::Graph> inlined_forward_graph(
    const torch::jit::Module& module);

// Where a value produced by a prim::GetAttr chain rooted at the graph's self
// input lives: module path ("layer1.0.conv1", "" for the root) and attribute
// name ("weight"). Empty when the value is not such a chain.
struct AttributePath {
  std::string module_path;
  std::string attribute;
  std::string full() const { return module_path.empty() ? attribute : module_path + "." + attribute; }
};
MCOMPRESS_SDK_API std::optional<AttributePath> attribute_path(const torch::jit::Value* value);

// The tensor `module` itself holds under `name` (a parameter, buffer or tensor
// attribute of its own, not of a submodule); nullopt when it has none.
MCOMPRESS_SDK_API std::optional<torch::Tensor> own_tensor(const torch::jit::Module& module,
                                                          const std::string& name);

// The submodule at a dotted path ("" is `root` itself). Throws mcompress::Error if absent.
MCOMPRESS_SDK_API torch::jit::Module submodule_at(const torch::jit::Module& root,
                                                  const std::string& path);

// Replaces reads of bool and float module attributes (and int ones when
// `include_ints`) by their current values and constant-propagates, which
// removes the branches that configuration flags select (torchvision's
// `use_res_connect`, DenseNet's `memory_efficient`). Attributes named in
// `keep` (e.g. "training") stay reads. Does nothing when the graph assigns
// attributes, since then they are state rather than flags.
MCOMPRESS_SDK_API void fold_flag_attributes(const std::shared_ptr<torch::jit::Graph>& graph,
                                            const torch::jit::Module& module, bool include_ints,
                                            const std::vector<std::string>& keep = {});

// Runs `graph` (an inlined forward graph of `module`, possibly annotated by
// the caller) on `inputs` and returns the values `taps` held, in order. The
// graph's return gains the taps while it runs and is restored afterwards,
// also when the model throws. Values must belong to `graph`.
MCOMPRESS_SDK_API std::vector<c10::IValue> run_with_taps(
    const torch::jit::Module& module, const std::shared_ptr<torch::jit::Graph>& graph,
    const std::vector<torch::jit::Value*>& taps, const std::vector<c10::IValue>& inputs);

// The same for several input sets: the tapped graph is compiled once, and the
// sets run concurrently, one thread each (the caller picks intra-op threads).
// Result i holds the taps of input set i. Throws the error of a run that failed.
MCOMPRESS_SDK_API std::vector<std::vector<c10::IValue>> run_with_taps_on_each(
    const torch::jit::Module& module, const std::shared_ptr<torch::jit::Graph>& graph,
    const std::vector<torch::jit::Value*>& taps, const std::vector<std::vector<c10::IValue>>& input_sets);

}  // namespace mcompress
