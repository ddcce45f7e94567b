#include "mcompress/pruning/pruning_criteria.h"

#include <map>

#include <fmt/format.h>

#include "mcompress/pruning/channel_pruning.h"
#include "mcompress/sdk/error.h"
#include "mcompress/models/evaluate.h"
#include "mcompress/models/graph.h"
#include "mcompress/training/trainer.h"

namespace mcompress {
namespace {

void check_calibration(const Dataset& data, const CalibrationOptions& options, const char* criterion) {
  if (data.size() == 0) throw Error(fmt::format("{} needs calibration data, and the dataset is empty", criterion));
  if (options.batches < 1 || options.batch_size < 1) {
    throw Error(fmt::format("{}: calibration batches and batch size must be >= 1", criterion));
  }
}

// Calls fn(batch) for the first options.batches batches of a seeded order.
template <typename Fn>
void for_calibration_batches(const Dataset& data, const CalibrationOptions& options, Fn fn) {
  BatchIterator batches(data, options.batch_size, /*shuffle=*/true, options.seed);
  Batch batch;
  for (int64_t i = 0; i < options.batches && batches.next(batch); ++i) fn(batch);
}

torch::Tensor tensor_attribute(const torch::jit::Module& model, const ChannelMember& member) {
  return submodule_at(model, member.module_path).attr(member.attribute).toTensor();
}

}  // namespace

std::vector<torch::Tensor> taylor_importance(const torch::jit::Module& model, const DependencyGraph& graph,
                                             const Dataset& data, const CalibrationOptions& options) {
  check_calibration(data, options, "the Taylor criterion");
  // Every parameter some prunable group slices, once.
  std::map<std::string, torch::Tensor> parameters;
  for (const auto* group : graph.prunable_groups()) {
    for (const auto& member : group->members) {
      if (member.kind == MemberKind::Parameter) parameters.emplace(member.full_name(), tensor_attribute(model, member));
    }
  }
  std::map<std::string, bool> requires_grad;
  for (auto& [name, tensor] : parameters) {
    requires_grad[name] = tensor.requires_grad();
    tensor.requires_grad_(true);
    tensor.mutable_grad().reset();
  }
  // Gradients of other parameters are not needed, and must not be left behind.
  std::vector<std::pair<torch::Tensor, bool>> others;
  for (const auto& parameter : model.named_parameters()) {
    if (parameters.count(parameter.name)) continue;
    others.emplace_back(parameter.value, parameter.value.requires_grad());
    parameter.value.requires_grad_(false);
  }
  std::vector<torch::Tensor> scores(graph.groups.size());
  try {
    EvalModeGuard eval_mode(model);
    torch::AutoGradMode grad_mode(true);
    for_calibration_batches(data, options, [&](const Batch& batch) {
      cross_entropy(forward_tensor(model, batch.inputs), batch.targets).backward();
    });
    torch::NoGradGuard no_grad;
    for (const auto* group : graph.prunable_groups()) {
      std::vector<torch::Tensor> contributions;
      for (const auto& member : group->members) {
        if (member.kind != MemberKind::Parameter) continue;
        const torch::Tensor& weight = parameters.at(member.full_name());
        if (!weight.grad().defined()) continue;  // not on the computed path
        const auto product = (weight.detach() * weight.grad()).to(torch::kDouble);
        contributions.push_back(channel_rows(product, member, group->size).sum(1).abs());
      }
      scores[group->id] = combine_member_scores(contributions, group->size);
    }
  } catch (...) {
    for (auto& [name, tensor] : parameters) tensor.mutable_grad().reset(), tensor.requires_grad_(requires_grad[name]);
    for (auto& [tensor, flag] : others) tensor.requires_grad_(flag);
    throw;
  }
  for (auto& [name, tensor] : parameters) {
    tensor.mutable_grad().reset();
    tensor.requires_grad_(requires_grad[name]);
  }
  for (auto& [tensor, flag] : others) tensor.requires_grad_(flag);
  return scores;
}

namespace {

// Running sums of a per-channel statistic of one tapped activation.
struct ChannelStatistic {
  torch::Tensor sum;  // float64 [channels]
  int64_t batches = 0;

  void add(const torch::Tensor& activation, int64_t channel_dim, ActivationStatistic statistic) {
    auto moved = activation.detach().movedim(channel_dim, -1);
    auto rows = moved.reshape({-1, moved.size(-1)});
    auto value = statistic == ActivationStatistic::MeanAbsolute ? rows.abs().mean(0)
                                                                : (rows != 0).to(torch::kFloat).mean(0);
    value = value.to(torch::kDouble);
    sum = sum.defined() ? sum + value : value;
    ++batches;
  }
  torch::Tensor mean() const { return sum / static_cast<double>(batches); }
};

struct TappedLayer {
  std::string module_path;
  torch::jit::Value* input = nullptr;
  torch::jit::Value* output = nullptr;
  bool linear = false;  // channels along the last dim; conv: dim 1
};

}  // namespace

std::vector<torch::Tensor> activation_importance(const torch::jit::Module& model, const DependencyGraph& graph,
                                                 const Dataset& data, ActivationStatistic statistic,
                                                 const CalibrationOptions& options) {
  check_calibration(data, options, "the activation criterion");
  EvalModeGuard eval_mode(model);
  torch::NoGradGuard no_grad;
  // Flags folded with eval-mode values, so layers in flag branches are tappable.
  auto forward = inlined_forward_graph(model);
  fold_flag_attributes(forward, model, /*include_ints=*/true);
  std::vector<TappedLayer> layers;
  std::vector<torch::jit::Value*> taps;
  for (torch::jit::Node* node : forward->nodes()) {
    const std::string op = node->kind().toQualString();
    const bool linear = op == "aten::linear";
    if (!linear && op != "aten::conv1d" && op != "aten::conv2d" && op != "aten::conv3d") continue;
    auto path = attribute_path(node->input(1));
    if (!path) continue;
    layers.push_back({path->module_path, node->input(0), node->output(), linear});
    taps.push_back(node->input(0));
    taps.push_back(node->output());
  }
  // Inputs and outputs per layer path; a layer used twice adds up both uses.
  std::map<std::string, ChannelStatistic> inputs, outputs;
  for_calibration_batches(data, options, [&](const Batch& batch) {
    const auto values = run_with_taps(model, forward, taps, {batch.inputs});
    for (size_t i = 0; i < layers.size(); ++i) {
      const auto& in = values[2 * i].toTensor();
      const auto& out = values[2 * i + 1].toTensor();
      inputs[layers[i].module_path].add(in, layers[i].linear ? in.dim() - 1 : 1, statistic);
      outputs[layers[i].module_path].add(out, layers[i].linear ? out.dim() - 1 : 1, statistic);
    }
  });
  std::vector<torch::Tensor> scores(graph.groups.size());
  for (const auto* group : graph.prunable_groups()) {
    auto collect = [&](MemberRole role, const std::map<std::string, ChannelStatistic>& stats, int64_t dim) {
      std::vector<torch::Tensor> contributions;
      for (const auto& member : group->members) {
        if (member.role != role || member.attribute != "weight" || member.dim != dim || !member.is_tensor()) continue;
        auto it = stats.find(member.module_path);
        if (it == stats.end() || it->second.sum.size(0) != member.entries(group->size)) continue;
        ChannelMember along_statistic = member;  // the statistic is 1-D: its channels are dim 0
        along_statistic.dim = 0;
        contributions.push_back(channel_rows(it->second.mean(), along_statistic, group->size).mean(1));
      }
      return contributions;
    };
    auto contributions = collect(MemberRole::Consumer, inputs, 1);
    if (contributions.empty()) contributions = collect(MemberRole::Producer, outputs, 0);
    scores[group->id] = combine_member_scores(contributions, group->size);
  }
  return scores;
}

}  // namespace mcompress
