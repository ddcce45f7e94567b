#pragma once
// Attribution maps a student can be taught to share with its teacher:
// where in a feature map a network's activity is (attention transfer), and
// which input elements its decision depends on (gradient × input, integrated
// gradients). Every map is normalised per sample so that a small student is
// compared with a large teacher by shape, not by scale.
#include <torch/script.h>

#include <cstdint>
#include <functional>

#include "mcompress/sdk/export.h"

namespace mcompress {

// Activation-based attention map (Zagoruyko & Komodakis 2017): the mean over
// channels of f², flattened and L2-normalised per sample. features: [N, C, ...]
// with at least one position dimension (a conv map [N, C, H, W] gives
// [N, H·W]); throws mcompress::Error for [N, C].
MCOMPRESS_SDK_API torch::Tensor attention_map(const torch::Tensor& features);

// Mean over samples of the squared L2 distance between two per-sample maps
// [N, P] (each normalised, so the distance is in [0, 4]). Throws
// mcompress::Error naming both shapes when they differ.
MCOMPRESS_SDK_API torch::Tensor map_distance(const torch::Tensor& student_map,
                                             const torch::Tensor& teacher_map);

// The model as a differentiable function from inputs to logits [N, classes].
using LogitsFunction = std::function<torch::Tensor(const torch::Tensor& inputs)>;

enum class AttributionMethod {
  // ∂logit/∂x ⊙ x: one backward pass.
  GradientTimesInput,
  // (x − 0) ⊙ the mean gradient at `steps` points on the straight path from an
  // all-zero baseline to x (midpoint rule; Sundararajan et al. 2017): one
  // forward and backward of a batch `steps` times larger. Its sum over input
  // elements approaches logit(x) − logit(0) as steps grow.
  IntegratedGradients,
};

struct AttributionOptions {
  AttributionMethod method = AttributionMethod::GradientTimesInput;
  int64_t steps = 8;  // integrated gradients only
  // true: the result stays differentiable with respect to the model's
  // parameters, so a loss on it can train the model ("double backward": the
  // backward pass is itself differentiated, roughly tripling a step's cost).
  bool create_graph = false;
};

// Attribution of logit `classes[i]` of sample i to every element of `inputs`
// ([N, ...] floating point; same shape as inputs). Only the gradient with
// respect to the inputs is computed: no parameter's .grad is touched.
MCOMPRESS_SDK_API torch::Tensor input_attribution(const LogitsFunction& logits,
                                                  const torch::Tensor& inputs,
                                                  const torch::Tensor& classes,
                                                  const AttributionOptions& options);

// The same for logits already computed from `inputs` (which must require
// grad): gradient × input without a second forward pass. With create_graph
// the forward graph is kept for the caller's own backward pass.
MCOMPRESS_SDK_API torch::Tensor gradient_times_input(const torch::Tensor& logits,
                                                     const torch::Tensor& inputs,
                                                     const torch::Tensor& classes,
                                                     bool create_graph);

// An attribution [N, C, ...] as a map: |a| summed over channels, flattened
// and L2-normalised per sample ([N, positions]).
MCOMPRESS_SDK_API torch::Tensor attribution_map(const torch::Tensor& attribution);

}  // namespace mcompress
