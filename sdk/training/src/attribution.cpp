#include "mcompress/training/attribution.h"

#include <torch/autograd.h>
#include <torch/nn/functional/normalization.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

torch::Tensor normalized_rows(const torch::Tensor& maps) {
  namespace F = torch::nn::functional;
  return F::normalize(maps, F::NormalizeFuncOptions().p(2).dim(1).eps(1e-12));
}

// Sum of the chosen logit of every sample: its gradient with respect to the
// inputs is each sample's own gradient, as samples do not interact in eval mode.
torch::Tensor chosen_logits(const torch::Tensor& logits, const torch::Tensor& classes) {
  if (logits.dim() != 2 || classes.dim() != 1 || classes.size(0) != logits.size(0)) {
    throw Error(fmt::format("attribution needs logits [N, classes] and one class per sample; got "
                            "logits [{}] and classes [{}]",
                            fmt::join(logits.sizes(), ", "), fmt::join(classes.sizes(), ", ")));
  }
  return logits.gather(1, classes.reshape({-1, 1}).to(torch::kLong)).sum();
}

void check_inputs(const torch::Tensor& inputs) {
  if (!inputs.is_floating_point()) {
    throw Error(fmt::format("input attribution needs continuous (floating-point) inputs; got {} "
                            "(token ids have no input gradient)",
                            c10::toString(inputs.scalar_type())));
  }
}

}  // namespace

torch::Tensor attention_map(const torch::Tensor& features) {
  if (features.dim() < 3) {
    throw Error(fmt::format("attention maps need feature maps with positions, [N, C, H, W] or "
                            "[N, C, L]; got [{}] (a fully connected layer has no positions)",
                            fmt::join(features.sizes(), ", ")));
  }
  return normalized_rows(features.pow(2).mean(1).flatten(1));
}

torch::Tensor map_distance(const torch::Tensor& student_map, const torch::Tensor& teacher_map) {
  if (student_map.sizes() != teacher_map.sizes()) {
    throw Error(fmt::format("the student's map [{}] and the teacher's [{}] differ in size; match "
                            "layers whose outputs have the same number of positions",
                            fmt::join(student_map.sizes(), ", "),
                            fmt::join(teacher_map.sizes(), ", ")));
  }
  return (student_map - teacher_map).pow(2).sum(1).mean();
}

torch::Tensor gradient_times_input(const torch::Tensor& logits, const torch::Tensor& inputs,
                                   const torch::Tensor& classes, bool create_graph) {
  check_inputs(inputs);
  if (!inputs.requires_grad()) throw Error("gradient × input needs inputs that require grad");
  // A differentiable attribution is part of a loss whose backward pass still
  // needs the forward graph; a constant one lets it go.
  const auto gradient = torch::autograd::grad({chosen_logits(logits, classes)}, {inputs}, {},
                                              /*retain_graph=*/create_graph, create_graph)[0];
  // The inputs are data: only the gradient's dependence on the weights matters.
  return gradient * inputs.detach();
}

torch::Tensor input_attribution(const LogitsFunction& logits, const torch::Tensor& inputs,
                                const torch::Tensor& classes, const AttributionOptions& options) {
  check_inputs(inputs);
  const auto x = inputs.detach();
  if (options.method == AttributionMethod::GradientTimesInput) {
    auto leaf = x.clone().requires_grad_(true);
    return gradient_times_input(logits(leaf), leaf, classes, options.create_graph);
  }
  if (options.steps < 1) throw Error(fmt::format("integrated gradients need at least one step, got {}", options.steps));
  // All path points in one batch: [steps · N, ...], point k scaled by (k + ½) / steps.
  const int64_t n = x.size(0);
  std::vector<int64_t> scale_shape(size_t(x.dim() + 1), 1);
  scale_shape[0] = options.steps;
  const auto alphas = (torch::arange(options.steps, x.options()) + 0.5) / double(options.steps);
  auto path = (alphas.reshape(scale_shape) * x.unsqueeze(0)).reshape(
      [&] {
        std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
        shape[0] = options.steps * n;
        return shape;
      }());
  path.requires_grad_(true);
  const auto repeated = classes.repeat({options.steps});
  const auto gradient =
      torch::autograd::grad({chosen_logits(logits(path), repeated)}, {path}, {},
                            /*retain_graph=*/options.create_graph, options.create_graph)[0];
  std::vector<int64_t> split_shape{options.steps};
  split_shape.insert(split_shape.end(), x.sizes().begin(), x.sizes().end());
  return gradient.reshape(split_shape).mean(0) * x;
}

torch::Tensor attribution_map(const torch::Tensor& attribution) {
  if (attribution.dim() < 2) {
    throw Error(fmt::format("an attribution map needs [N, ...] attributions; got [{}]",
                            fmt::join(attribution.sizes(), ", ")));
  }
  auto magnitude = attribution.abs();
  if (magnitude.dim() >= 3) magnitude = magnitude.sum(1);  // channels
  return normalized_rows(magnitude.flatten(1));
}

}  // namespace mcompress
