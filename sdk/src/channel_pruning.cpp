#include "mcompress/sdk/channel_pruning.h"

#include <torch/script.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "mcompress/sdk/error.h"
#include "mcompress/sdk/graph.h"

namespace mcompress {

int64_t keep_count(int64_t size, double sparsity, int64_t round_to, int64_t min_channels) {
  if (size <= 0 || sparsity <= 0.0) return std::max<int64_t>(size, 0);
  const double target = static_cast<double>(size) * (1.0 - sparsity);
  int64_t keep = std::llround(target);
  if (round_to > 1) keep = std::max<int64_t>(std::llround(target / round_to), 1) * round_to;
  keep = std::max(keep, std::max<int64_t>(min_channels, 1));
  return std::min(keep, size);
}

namespace {

c10::IValue member_value(const torch::jit::Module& model, const ChannelMember& member) {
  auto module = submodule_at(model, member.module_path);
  if (!module.hasattr(member.attribute)) {
    throw Error(fmt::format("the model has no attribute '{}'", member.full_name()));
  }
  return module.attr(member.attribute);
}

// Channel c of a block member owns entries [c*block, (c+1)*block) of its dim.
torch::Tensor entry_indices(const torch::Tensor& channels, int64_t block) {
  if (block == 1) return channels;
  auto offsets = torch::arange(block, channels.options());
  return (channels.unsqueeze(1) * block + offsets.unsqueeze(0)).reshape({-1});
}

void check_keep_indices(const ChannelGroup& group, const torch::Tensor& keep) {
  if (keep.dim() != 1 || keep.scalar_type() != torch::kLong) {
    throw Error(fmt::format("keep indices for group '{}' must be a 1-D int64 tensor", group.name));
  }
  if (keep.numel() == 0) {
    throw Error(fmt::format("group '{}' would lose all its channels; keep at least one", group.name));
  }
  const auto sorted = std::get<0>(keep.sort());
  if (sorted[0].item<int64_t>() < 0 || sorted[-1].item<int64_t>() >= group.size) {
    throw Error(fmt::format("keep indices for group '{}' must lie in [0, {})", group.name, group.size));
  }
  if (keep.numel() > 1 && (sorted.slice(0, 1) == sorted.slice(0, 0, -1)).any().item<bool>()) {
    throw Error(fmt::format("keep indices for group '{}' contain duplicates", group.name));
  }
}

// Guards prune_channels' promise to leave the model untouched on error.
void check_member(const torch::jit::Module& model, const ChannelGroup& group,
                  const ChannelMember& member) {
  const c10::IValue value = member_value(model, member);
  const int64_t expected = group.size * member.block_size;
  int64_t actual = -1;
  if (member.is_tensor() && value.isTensor() && member.dim < value.toTensor().dim()) {
    actual = value.toTensor().size(member.dim);
  } else if (member.kind == MemberKind::IntAttribute && value.isInt()) {
    actual = value.toInt();
  } else if (member.kind == MemberKind::IntListAttribute && value.isIntList() &&
             member.dim < static_cast<int64_t>(value.toIntVector().size())) {
    actual = value.toIntVector()[member.dim];
  }
  if (actual != expected) {
    throw Error(fmt::format("cannot prune group '{}': {} ({}) has {} entries along dim {}, expected {};"
                            " was the model changed after analyze_dependencies?",
                            group.name, member.full_name(), to_string(member.kind), actual,
                            member.dim, expected));
  }
}

void apply_to_member(torch::jit::Module& model, const ChannelMember& member,
                     const torch::Tensor& keep) {
  auto module = submodule_at(model, member.module_path);
  const c10::IValue value = module.attr(member.attribute);
  const int64_t new_count = keep.numel() * member.block_size;
  switch (member.kind) {
    case MemberKind::Parameter: {
      const torch::Tensor old = value.toTensor();
      auto sliced = old.detach().index_select(member.dim, entry_indices(keep, member.block_size));
      module.register_parameter(member.attribute, sliced.clone().requires_grad_(old.requires_grad()),
                                /*is_buffer=*/false);
      break;
    }
    case MemberKind::Buffer: {
      const torch::Tensor old = value.toTensor();
      auto sliced = old.detach().index_select(member.dim, entry_indices(keep, member.block_size));
      module.register_buffer(member.attribute, sliced.clone());
      break;
    }
    case MemberKind::IntAttribute:
      module.setattr(member.attribute, new_count);
      break;
    case MemberKind::IntListAttribute: {
      auto list = value.toIntVector();
      list[member.dim] = new_count;
      module.setattr(member.attribute, c10::List<int64_t>(list));
      break;
    }
  }
}

}  // namespace

void prune_channels(torch::jit::Module& model, const ChannelGroup& group,
                    const torch::Tensor& keep_indices) {
  if (group.frozen) {
    throw Error(fmt::format("group '{}' is frozen and must not be pruned: {}", group.name,
                            group.frozen_reason));
  }
  check_keep_indices(group, keep_indices);
  for (const auto& member : group.members) check_member(model, group, member);

  torch::NoGradGuard no_grad;
  const torch::Tensor keep = keep_indices.to(torch::kCPU);
  for (const auto& member : group.members) apply_to_member(model, member, keep);
}

torch::Tensor group_importance(const torch::jit::Module& model, const ChannelGroup& group,
                               ImportanceNorm norm) {
  torch::NoGradGuard no_grad;
  auto total = torch::zeros({group.size}, torch::kDouble);
  int64_t contributing = 0;
  for (const auto& member : group.members) {
    if (member.kind != MemberKind::Parameter) continue;
    const c10::IValue value = member_value(model, member);
    if (!value.isTensor()) continue;
    // Row c holds every entry channel c owns in this tensor.
    auto rows = value.toTensor().detach().to(torch::kDouble).movedim(member.dim, 0).reshape({group.size, -1});
    auto contribution = norm == ImportanceNorm::L1 ? rows.abs().sum(1) : rows.square().sum(1);
    const double mean = contribution.mean().item<double>();
    if (mean > 0) contribution = contribution / mean;  // per-layer normalisation
    total += contribution;
    ++contributing;
  }
  if (contributing == 0) return torch::ones({group.size}, torch::kDouble);
  total /= static_cast<double>(contributing);
  return norm == ImportanceNorm::L2 ? total.sqrt() : total;
}

torch::Tensor group_l2_importance(const torch::jit::Module& model, const ChannelGroup& group) {
  return group_importance(model, group, ImportanceNorm::L2);
}

torch::Tensor select_channels(const torch::Tensor& importance, int64_t keep) {
  keep = std::clamp<int64_t>(keep, 0, importance.numel());
  // A stable sort makes equal scores keep the lower index: reproducible choices.
  auto order = std::get<1>(importance.detach().to(torch::kCPU).reshape({-1}).sort(
      /*stable=*/true, /*dim=*/0, /*descending=*/true));
  return std::get<0>(order.slice(0, 0, keep).sort());
}

namespace {

void check_options(const PruneOptions& options) {
  if (!(options.sparsity >= 0.0 && options.sparsity < 1.0)) {
    throw Error(fmt::format("sparsity must be in [0, 1), got {}", options.sparsity));
  }
  if (options.round_to < 1) throw Error(fmt::format("round_to must be >= 1, got {}", options.round_to));
  if (options.min_channels < 1) {
    throw Error(fmt::format("min_channels must be >= 1, got {}", options.min_channels));
  }
  if (options.allocation != Allocation::Uniform) {
    throw Error("only uniform allocation is implemented; global allocation is not available yet");
  }
}

struct GroupPlan {
  const ChannelGroup* group = nullptr;
  torch::Tensor keep;  // undefined: the group stays as it is
};

}  // namespace

std::vector<GroupPruneResult> prune_groups(torch::jit::Module& model, const DependencyGraph& graph,
                                           const PruneOptions& options,
                                           const ChannelImportance& importance) {
  check_options(options);
  // Score everything on the unpruned model: criteria that run the model
  // (activations, gradients) need it intact.
  std::vector<GroupPlan> plans;
  for (const ChannelGroup* group : graph.prunable_groups()) {
    GroupPlan plan{group, {}};
    const int64_t keep = keep_count(group->size, options.sparsity, options.round_to, options.min_channels);
    if (keep < group->size) {
      const torch::Tensor scores = importance(*group);
      if (!scores.defined() || scores.numel() != group->size) {
        throw Error(fmt::format("the importance of group '{}' has {} scores, expected {}", group->name,
                                scores.defined() ? scores.numel() : 0, group->size));
      }
      plan.keep = select_channels(scores, keep);
    }
    plans.push_back(std::move(plan));
  }

  std::vector<GroupPruneResult> results;
  for (const auto& plan : plans) {
    if (plan.keep.defined()) prune_channels(model, *plan.group, plan.keep);
    const int64_t after = plan.keep.defined() ? plan.keep.numel() : plan.group->size;
    results.push_back({plan.group->id, plan.group->name, plan.group->producer_layers(),
                       plan.group->size, after});
  }
  return results;
}

}  // namespace mcompress
