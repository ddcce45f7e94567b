#pragma once
// A whole structured-pruning pass, shared by every criterion plugin: the
// parameters all of them declare, the code rewrite that makes depthwise
// convolutions and layer norms prunable, dependency analysis, allocation,
// slicing, optional iterative steps with fine-tuning in between, a check that
// the result still runs, and the report (per-layer channels, MACs and
// parameters before and after; frozen groups and why). A criterion plugin
// only turns a model and its groups into channel scores:
//
//   return run_structured_pruning(ctx, [&](const torch::jit::Module& model,
//                                          const DependencyGraph& graph) {
//     return [&model](const ChannelGroup& group) { return group_l2_importance(model, group); };
//   });
#include <torch/script.h>

#include <functional>
#include <vector>

#include "mcompress/pruning/channel_pruning.h"
#include "mcompress/sdk/export.h"
#include "mcompress/sdk/params.h"
#include "mcompress/sdk/pass.h"
#include "mcompress/pruning/pruning_criteria.h"

namespace mcompress {

// sparsity, target, allocation, round_to, min_channels, max_group_sparsity,
// overrides, targets, ignore, steps and the fine-tuning between steps
// (finetune_epochs, finetune_lr, finetune_batch_size, finetune_optimizer).
MCOMPRESS_SDK_API std::vector<ParamSpec> pruning_param_specs();
// Reads what pruning_param_specs() declares; throws mcompress::Error naming a
// malformed override.
MCOMPRESS_SDK_API PruneOptions prune_options_from(const Params& params);

// calibration_batches and calibration_batch_size, for criteria that run the
// model on calibration data; `collected` says what is gathered ("the
// gradients are accumulated").
MCOMPRESS_SDK_API std::vector<ParamSpec> calibration_param_specs(const std::string& collected);
// Reads them (and ctx.seed); throws mcompress::Error naming `pass` when the
// recipe gave no calibration data.
MCOMPRESS_SDK_API CalibrationOptions calibration_options_from(const PassContext& ctx, const std::string& pass);

// Called once per pruning step with the model as it is then and its fresh
// analysis; returns the scorer prune_groups calls per group. The model and
// graph outlive the returned scorer's use.
using PruningCriterion =
    std::function<ChannelImportance(const torch::jit::Module& model, const DependencyGraph& graph)>;

// Runs the pass on ctx.model (replaced by the pruned model) with the
// parameters of pruning_param_specs(). Throws mcompress::Error when the model
// cannot be analysed, when steps > 1 without training data, and when the
// pruned model no longer runs (a bug to report; the host keeps the previous model).
MCOMPRESS_SDK_API PassResult run_structured_pruning(PassContext& ctx, const PruningCriterion& criterion);

// The fraction of the current model to remove at step `step` (1-based) of
// `steps` so that after the last step `sparsity` of the original is gone:
// 1 - (1 - sparsity * step / steps) / (1 - sparsity * (step - 1) / steps).
MCOMPRESS_SDK_API double step_sparsity(double sparsity, int64_t step, int64_t steps);

}  // namespace mcompress
