#include "shape_observation.h"

#include <exception>
#include <utility>

#include <fmt/format.h>

#include "mcompress/models/evaluate.h"
#include "mcompress/models/graph.h"
#include "mcompress/sdk/error.h"

namespace mcompress::detail {
namespace {

using torch::jit::Node;
using torch::jit::Value;

// The shapes of every top-level tensor value of the graph for each of
// `inputs`. The graph taps each value's size rather than the value itself, so
// activations are freed as the model runs instead of all being held to the end.
std::vector<std::unordered_map<const Value*, Shape>> run_for_shapes(const torch::jit::Module& model,
                                                                    const std::shared_ptr<torch::jit::Graph>& graph,
                                                                    const std::vector<torch::Tensor>& inputs) {
  std::vector<Value*> tensors;
  for (Node* node : graph->nodes()) {
    for (Value* output : node->outputs()) {
      if (output->type()->kind() == c10::TypeKind::TensorType) tensors.push_back(output);
    }
  }
  std::vector<Value*> sizes;
  for (Value* tensor : tensors) {
    torch::jit::WithInsertPoint after(tensor->node()->next());
    sizes.push_back(graph->insert(torch::jit::aten::size, {tensor}));
  }
  auto remove_sizes = [&] {
    for (Value* size : sizes) size->node()->destroy();
  };
  std::vector<std::vector<c10::IValue>> input_sets;
  for (const auto& input : inputs) input_sets.push_back({input});
  std::vector<std::vector<c10::IValue>> runs;
  try {
    EvalModeGuard eval_mode(model);
    torch::NoGradGuard no_grad;
    runs = run_with_taps_on_each(model, graph, sizes, input_sets);
  } catch (...) {
    remove_sizes();
    throw;
  }
  remove_sizes();
  std::vector<std::unordered_map<const Value*, Shape>> result(inputs.size());
  for (size_t run = 0; run < runs.size(); ++run) {
    auto& shapes = result[run];
    for (size_t i = 0; i < tensors.size(); ++i) shapes[tensors[i]] = runs[run][i].toIntVector();
    if (graph->inputs().size() > 1) shapes[graph->inputs()[1]] = inputs[run].sizes().vec();
  }
  return result;
}

}  // namespace

ObservedShapes observe_real_shapes(const torch::jit::Module& model, const std::shared_ptr<torch::jit::Graph>& graph,
                                   const torch::Tensor& example_input) {
  try {
    return ObservedShapes{std::move(run_for_shapes(model, graph, {example_input}).front()), {}};
  } catch (const std::exception& error) {
    throw Error(fmt::format(
        "dependency analysis could not run the model on an example input of shape {}: {}",
        c10::str(example_input.sizes()), error.what()));
  }
}

std::optional<ObservedShapes> observe_small_shapes(const torch::jit::Module& model,
                                                   const std::shared_ptr<torch::jit::Graph>& graph,
                                                   const torch::Tensor& example_input) {
  // 64 apart, so a dim computed by integer division by any stride up to 64
  // differs between the two runs whenever it follows the input size.
  constexpr int64_t kSmall = 32, kLarger = 96;
  if (example_input.dim() != 4 || example_input.size(2) <= kLarger || example_input.size(3) <= kLarger) {
    return std::nullopt;
  }
  auto sized = [&](int64_t side) {
    return torch::randn({1, example_input.size(1), side, side}, example_input.options());
  };
  ObservedShapes observed;
  std::unordered_map<const Value*, Shape> larger;
  try {
    // Side by side, one thread each: the larger run takes most of the time.
    auto runs = run_for_shapes(model, graph, {sized(kSmall), sized(kLarger)});
    observed.shapes = std::move(runs[0]);
    larger = std::move(runs[1]);
  } catch (const std::exception&) {
    return std::nullopt;  // e.g. a model that needs its full input size
  }
  for (auto& [value, shape] : observed.shapes) {
    auto it = larger.find(value);
    std::vector<bool> varies(shape.size(), true);
    if (it != larger.end() && it->second.size() == shape.size()) {
      for (size_t d = 0; d < shape.size(); ++d) varies[d] = shape[d] != it->second[d];
    }
    observed.varying[value] = std::move(varies);
  }
  return observed;
}

}  // namespace mcompress::detail
