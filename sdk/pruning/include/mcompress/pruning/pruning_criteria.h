#pragma once
// Channel importance measured by running the model on calibration data, for
// criteria that look at more than the weights (the weight-norm criterion is
// group_importance in channel_pruning.h). Each returns one float64 score per
// channel (higher = more important) for every group that is not frozen, in a
// vector indexed by group id (undefined tensors for frozen groups); member
// scores are combined like group_importance does (combine_member_scores).
// The model is left as it was: training flags, requires_grad and gradients.
#include <torch/script.h>

#include <cstdint>
#include <vector>

#include "mcompress/sdk/data.h"
#include "mcompress/pruning/dependency_graph.h"
#include "mcompress/sdk/export.h"

namespace mcompress {

struct CalibrationOptions {
  int64_t batches = 8;      // batches of `data` to run (fewer if data runs out)
  int64_t batch_size = 32;
  uint64_t seed = 0;        // which samples, in which order
};

// First-order Taylor importance: how much the calibration loss (cross-entropy
// against the data's targets) would change to first order if a channel were
// removed. Per coupled parameter, |sum over the channel's entries of w * dL/dw|
// with dL/dw accumulated over the batches; computed in eval mode.
MCOMPRESS_SDK_API std::vector<torch::Tensor> taylor_importance(const torch::jit::Module& model,
                                                               const DependencyGraph& graph,
                                                               const Dataset& data,
                                                               const CalibrationOptions& options);

enum class ActivationStatistic {
  MeanAbsolute,  // mean |activation| of the channel
  NonZero,       // 1 - APoZ: the fraction of the channel's activations that are not zero
};

// Statistics of each channel's activations where the model's layers read
// them (the inputs of the conv/linear layers consuming the group; for a group
// no layer consumes, the producing layers' outputs), collected from the
// running model in eval mode over the calibration batches.
MCOMPRESS_SDK_API std::vector<torch::Tensor> activation_importance(const torch::jit::Module& model,
                                                                   const DependencyGraph& graph,
                                                                   const Dataset& data,
                                                                   ActivationStatistic statistic,
                                                                   const CalibrationOptions& options);

}  // namespace mcompress
