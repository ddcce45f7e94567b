#pragma once
// The activation shapes the dependency analysis reads, observed by running
// the model.
#include <torch/script.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

namespace mcompress::detail {

using Shape = std::vector<int64_t>;

// The shape of every top-level tensor value. Running a large model at its
// real input size dominates the analysis, yet most shapes it needs (ranks,
// channel counts, the output of adaptive pooling) do not depend on the
// spatial size: images are first run at two small sizes, and dims that differ
// between the two runs are `varying`. Only when the analysis needs a varying
// dim (a flatten of a feature map whose size follows the input) is the model
// run again at the real size.
struct ObservedShapes {
  std::unordered_map<const torch::jit::Value*, Shape> shapes;
  // Empty when observed at the real size.
  std::unordered_map<const torch::jit::Value*, std::vector<bool>> varying;
};

// At the size of `example_input`; throws Error when the model fails on it.
ObservedShapes observe_real_shapes(const torch::jit::Module& model, const std::shared_ptr<torch::jit::Graph>& graph,
                                   const torch::Tensor& example_input);

// At two small image sizes instead; std::nullopt when the input is not a
// large image or the model refuses small ones.
std::optional<ObservedShapes> observe_small_shapes(const torch::jit::Module& model,
                                                   const std::shared_ptr<torch::jit::Graph>& graph,
                                                   const torch::Tensor& example_input);

}  // namespace mcompress::detail
