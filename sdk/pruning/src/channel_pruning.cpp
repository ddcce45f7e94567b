#include "mcompress/pruning/channel_pruning.h"

#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <list>
#include <map>
#include <set>
#include <tuple>

#include <fmt/format.h>

#include "mcompress/sdk/error.h"
#include "mcompress/models/graph.h"
#include "single_thread_scope.h"

namespace mcompress {
namespace {

c10::IValue member_value(const torch::jit::Module& model, const ChannelMember& member) {
  auto module = submodule_at(model, member.module_path);
  if (!module.hasattr(member.attribute)) {
    throw Error(fmt::format("the model has no attribute '{}'", member.full_name()));
  }
  return module.attr(member.attribute);
}

void check_keep_indices(const ChannelGroup& group, const std::vector<int64_t>& keep) {
  if (keep.empty()) {
    throw Error(fmt::format("group '{}' would lose all its channels; keep at least one", group.name));
  }
  std::vector<int64_t> sorted = keep;
  std::sort(sorted.begin(), sorted.end());
  if (sorted.front() < 0 || sorted.back() >= group.size) {
    throw Error(fmt::format("keep indices for group '{}' must lie in [0, {})", group.name, group.size));
  }
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    throw Error(fmt::format("keep indices for group '{}' contain duplicates", group.name));
  }
}

// A grouped convolution reads position j of every block through one weight
// column, so the blocks must keep the same positions.
void check_tied_parts(const ChannelGroup& group, const std::vector<int64_t>& keep) {
  if (group.tied_parts <= 1) return;
  const int64_t block = group.size / group.tied_parts;
  std::set<int64_t> kept(keep.begin(), keep.end());
  for (int64_t channel : kept) {
    if (!kept.count(channel % block + (channel / block + 1) % group.tied_parts * block)) {
      throw Error(fmt::format("group '{}' must keep the same positions in each of its {} blocks of {}"
                              " channels (a grouped convolution reads them through shared weights);"
                              " channel {} breaks that", group.name, group.tied_parts, block, channel));
    }
  }
}

// The positions kept in the first block: what the input dim of a grouped
// convolution's weight keeps.
std::vector<int64_t> positions_in_first_block(const ChannelGroup& group, const ChannelMember& member,
                                              const std::vector<int64_t>& keep) {
  std::vector<int64_t> positions;
  for (int64_t channel : keep) {
    if (channel < group.size / member.conv_groups) positions.push_back(channel);
  }
  return positions;
}

// The size a member has along its dim (or its value), -1 when it is not what
// the analysis described.
int64_t member_extent(const c10::IValue& value, const ChannelMember& member) {
  if (member.is_tensor() && value.isTensor() && member.dim < value.toTensor().dim()) {
    return value.toTensor().size(member.dim);
  }
  if (member.kind == MemberKind::IntAttribute && value.isInt()) return value.toInt();
  if (member.kind == MemberKind::IntListAttribute && value.isIntList() &&
      member.dim < static_cast<int64_t>(value.toIntVector().size())) {
    return value.toIntVector()[member.dim];
  }
  return -1;
}

// One index range of a tensor dim (or count) and the channels kept in it.
struct Range {
  int64_t offset = 0;
  int64_t channels = 0;
  int64_t block = 1;
  const std::vector<int64_t>* keep = nullptr;
  std::string group;
};

// Everything one member (tensor dim or count) loses, gathered over groups.
struct Slicing {
  ChannelMember member;  // offset/extent describe the first range only
  int64_t extent = 0;
  std::vector<Range> ranges;
};

using SlicingKey = std::tuple<std::string, std::string, MemberKind, int64_t>;

// Entries of the sliced dim that survive, in order: everything outside the
// ranges, and the kept channels' blocks inside them.
std::vector<int64_t> surviving_entries(const Slicing& slicing) {
  std::vector<Range> ranges = slicing.ranges;
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.offset < b.offset; });
  std::vector<int64_t> entries;
  int64_t position = 0;
  for (const auto& range : ranges) {
    for (; position < range.offset; ++position) entries.push_back(position);
    std::vector<int64_t> keep = *range.keep;
    std::sort(keep.begin(), keep.end());
    for (int64_t channel : keep) {
      for (int64_t i = 0; i < range.block; ++i) entries.push_back(range.offset + channel * range.block + i);
    }
    position = range.offset + range.channels * range.block;
  }
  for (; position < slicing.extent; ++position) entries.push_back(position);
  return entries;
}

void check_slicing(const torch::jit::Module& model, const Slicing& slicing) {
  const auto& member = slicing.member;
  const int64_t actual = member_extent(member_value(model, member), member);
  if (actual != slicing.extent) {
    throw Error(fmt::format("cannot prune group '{}': {} ({}) has {} entries along dim {}, expected {};"
                            " was the model changed after analyze_dependencies?",
                            slicing.ranges.front().group, member.full_name(), to_string(member.kind),
                            actual, member.dim, slicing.extent));
  }
  std::vector<Range> ranges = slicing.ranges;
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.offset < b.offset; });
  int64_t end = 0;
  for (const auto& range : ranges) {
    if (range.offset < end || range.offset + range.channels * range.block > slicing.extent) {
      throw Error(fmt::format("cannot prune group '{}': its range of {} overlaps another group's or"
                              " lies outside the dim", range.group, member.full_name()));
    }
    end = range.offset + range.channels * range.block;
  }
}

// Above this size, an intermediate copy of a tensor sliced along two dims
// costs more in fresh memory than slicing row by row does in calls.
constexpr int64_t kLargeIntermediateBytes = int64_t{16} << 20;

// `tensor` keeping, along each dim, the entries of that dim's index: a new
// tensor. A weight that loses outputs and inputs (a classifier of hundreds of
// megabytes) is copied once, not first into a half-sliced intermediate.
torch::Tensor select_entries(const torch::Tensor& tensor, std::vector<std::pair<int64_t, torch::Tensor>> dims) {
  // The dim that keeps the smallest fraction first: smaller intermediates.
  std::sort(dims.begin(), dims.end(), [&](const auto& a, const auto& b) {
    return a.second.numel() * tensor.size(b.first) < b.second.numel() * tensor.size(a.first);
  });
  const auto rows = std::find_if(dims.begin(), dims.end(), [](const auto& d) { return d.first == 0; });
  const int64_t intermediate_bytes =
      tensor.numel() / std::max<int64_t>(tensor.size(dims.front().first), 1) * dims.front().second.numel() *
      static_cast<int64_t>(tensor.element_size());
  if (dims.size() == 2 && rows != dims.end() && intermediate_bytes > kLargeIntermediateBytes) {
    const auto& columns = rows == dims.begin() ? dims.back() : dims.front();
    auto shape = tensor.sizes().vec();
    shape[0] = rows->second.numel();
    shape[columns.first] = columns.second.numel();
    torch::Tensor result = torch::empty(shape, tensor.options());
    const torch::Tensor row_indices = rows->second.to(torch::kCPU).contiguous();
    const int64_t* row = row_indices.data_ptr<int64_t>();
    for (int64_t i = 0; i < shape[0]; ++i) {
      torch::Tensor out = result.select(0, i);
      at::index_select_out(out, tensor.select(0, row[i]), columns.first - 1, columns.second);
    }
    return result;
  }
  // index_select always copies, so the result never shares the old storage.
  torch::Tensor result = tensor;
  for (const auto& [dim, index] : dims) result = result.index_select(dim, index);
  return result;
}

// Slices every dim of one tensor attribute that groups prune.
void apply_tensor_slicings(torch::jit::Module& model, const std::vector<const Slicing*>& slicings) {
  const auto& member = slicings.front()->member;
  auto module = submodule_at(model, member.module_path);
  const torch::Tensor old = module.attr(member.attribute).toTensor();
  std::vector<std::pair<int64_t, torch::Tensor>> dims;
  for (const Slicing* slicing : slicings) {
    dims.emplace_back(slicing->member.dim, torch::tensor(surviving_entries(*slicing), torch::kLong).to(old.device()));
  }
  torch::Tensor sliced = select_entries(old.detach(), std::move(dims));
  if (member.kind == MemberKind::Parameter) {
    module.register_parameter(member.attribute, sliced.requires_grad_(old.requires_grad()), /*is_buffer=*/false);
  } else {
    module.register_buffer(member.attribute, sliced);
  }
}

void apply_count_slicing(torch::jit::Module& model, const Slicing& slicing) {
  const auto& member = slicing.member;
  auto module = submodule_at(model, member.module_path);
  const auto new_count = static_cast<int64_t>(surviving_entries(slicing).size());
  if (member.kind == MemberKind::IntAttribute) {
    module.setattr(member.attribute, new_count);
  } else {
    auto list = module.attr(member.attribute).toIntVector();
    list[member.dim] = new_count;
    module.setattr(member.attribute, c10::List<int64_t>(list));
  }
}

}  // namespace

void apply_selections(torch::jit::Module& model, const std::vector<GroupSelection>& selections) {
  std::map<SlicingKey, Slicing> slicings;
  std::list<std::vector<int64_t>> block_positions;  // stable addresses for Range::keep
  for (const auto& selection : selections) {
    const ChannelGroup& group = *selection.group;
    if (group.frozen) {
      throw Error(fmt::format("group '{}' is frozen and must not be pruned: {}", group.name,
                              group.frozen_reason));
    }
    check_keep_indices(group, selection.keep);
    if (group.parts > 1 && static_cast<int64_t>(selection.keep.size()) % group.parts != 0) {
      throw Error(fmt::format("group '{}' must keep a multiple of {} channels (its normalisation or"
                              " convolution groups)", group.name, group.parts));
    }
    check_tied_parts(group, selection.keep);
    for (const auto& member : group.members) {
      const SlicingKey key{member.module_path, member.attribute, member.kind, member.dim};
      auto [it, inserted] = slicings.emplace(key, Slicing{member, member.entries(group.size), {}});
      if (!inserted && it->second.extent != member.entries(group.size)) {
        throw Error(fmt::format("groups disagree on the size of {}", member.full_name()));
      }
      if (member.conv_groups > 1) {
        block_positions.push_back(positions_in_first_block(group, member, selection.keep));
        it->second.ranges.push_back({member.offset, group.size / member.conv_groups, member.block_size,
                                     &block_positions.back(), group.name});
      } else {
        it->second.ranges.push_back({member.offset, group.size, member.block_size, &selection.keep, group.name});
      }
    }
  }
  // All checks first: on error the model is untouched.
  for (const auto& [key, slicing] : slicings) check_slicing(model, slicing);
  torch::NoGradGuard no_grad;
  std::map<std::pair<std::string, std::string>, std::vector<const Slicing*>> by_tensor;
  for (const auto& [key, slicing] : slicings) {
    if (slicing.member.is_tensor()) {
      by_tensor[{slicing.member.module_path, slicing.member.attribute}].push_back(&slicing);
    } else {
      apply_count_slicing(model, slicing);
    }
  }
  for (const auto& [name, tensor_slicings] : by_tensor) apply_tensor_slicings(model, tensor_slicings);
}

void prune_channels(torch::jit::Module& model, const ChannelGroup& group,
                    const torch::Tensor& keep_indices) {
  if (keep_indices.dim() != 1 || keep_indices.scalar_type() != torch::kLong) {
    throw Error(fmt::format("keep indices for group '{}' must be a 1-D int64 tensor", group.name));
  }
  const torch::Tensor keep = keep_indices.to(torch::kCPU).contiguous();
  GroupSelection selection{&group, std::vector<int64_t>(keep.data_ptr<int64_t>(),
                                                        keep.data_ptr<int64_t>() + keep.numel())};
  apply_selections(model, {selection});
}

torch::Tensor channel_rows(const torch::Tensor& tensor, const ChannelMember& member, int64_t group_size) {
  if (member.conv_groups > 1) {
    // [groups * out_per_group, in_per_group, ...]: channel g * in_per_group + j
    // owns column j of convolution group g's rows.
    const int64_t groups = member.conv_groups;
    return tensor.reshape({groups, tensor.size(0) / groups, tensor.size(1), -1})
        .permute({0, 2, 1, 3})
        .reshape({group_size, -1});
  }
  const int64_t length = group_size * member.block_size;
  return tensor.narrow(member.dim, member.offset, length).movedim(member.dim, 0).reshape({group_size, -1});
}

torch::Tensor combine_member_scores(const std::vector<torch::Tensor>& contributions, int64_t group_size) {
  if (contributions.empty()) return torch::ones({group_size}, torch::kDouble);
  auto total = torch::zeros({group_size}, torch::kDouble);
  for (const auto& contribution : contributions) {
    auto scores = contribution.detach().to(torch::kDouble).reshape({group_size});
    const double mean = scores.mean().item<double>();
    total += mean > 0 ? scores / mean : scores;  // per-layer normalisation
  }
  return total / static_cast<double>(contributions.size());
}

namespace {

// Sum over the entries channel c owns of |w| (L1) or w^2 (L2). Norms reduce
// all other dims in one pass without temporaries or transposed copies, which
// matters for weights of hundreds of megabytes.
torch::Tensor channel_sums(const torch::Tensor& weight, const ChannelMember& member, int64_t group_size,
                           ImportanceNorm norm) {
  if (member.conv_groups > 1) {
    const torch::Tensor rows = channel_rows(weight, member, group_size).to(torch::kDouble);
    return (norm == ImportanceNorm::L1 ? rows.abs() : rows.square()).sum(1);
  }
  std::vector<int64_t> other_dims;
  for (int64_t d = 0; d < weight.dim(); ++d) {
    if (d != member.dim) other_dims.push_back(d);
  }
  torch::Tensor per_entry;
  if (other_dims.empty()) {
    per_entry = (norm == ImportanceNorm::L1 ? weight.abs() : weight.square()).to(torch::kDouble);
  } else if (member.dim == 0) {
    // Rows are contiguous: a norm reads them once, without a temporary.
    per_entry = at::linalg_vector_norm(weight, norm == ImportanceNorm::L1 ? 1.0 : 2.0, other_dims).to(torch::kDouble);
    if (norm == ImportanceNorm::L2) per_entry = per_entry.square();
  } else {
    // Across rows: accumulate a few rows at a time. A norm over dim 0 is
    // slow, and squaring a 400 MB classifier weight at once costs more in
    // fresh memory than in arithmetic (5x slower than these cache-sized blocks).
    torch::Tensor total = torch::zeros(weight.sizes().slice(1), weight.options());
    for (const auto& rows : weight.split(16, 0)) {
      total += (norm == ImportanceNorm::L1 ? rows.abs() : rows.square()).sum(0);
    }
    std::vector<int64_t> remaining;
    for (int64_t d = 1; d < weight.dim(); ++d) {
      if (d != member.dim) remaining.push_back(d - 1);
    }
    per_entry = (remaining.empty() ? total : total.sum(remaining)).to(torch::kDouble);
  }
  return per_entry.narrow(0, member.offset, group_size * member.block_size)
      .reshape({group_size, member.block_size})
      .sum(1);
}

}  // namespace

torch::Tensor group_importance(const torch::jit::Module& model, const ChannelGroup& group,
                               ImportanceNorm norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> contributions;
  for (const auto& member : group.members) {
    if (member.kind != MemberKind::Parameter) continue;
    const c10::IValue value = member_value(model, member);
    if (!value.isTensor()) continue;
    contributions.push_back(channel_sums(value.toTensor().detach(), member, group.size, norm));
  }
  const torch::Tensor total = combine_member_scores(contributions, group.size);
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

torch::Tensor select_channels(const torch::Tensor& importance, int64_t keep, int64_t parts) {
  if (parts <= 1) return select_channels(importance, keep);
  const int64_t size = importance.numel();
  if (size % parts != 0 || keep % parts != 0) {
    throw Error(fmt::format("cannot keep {} of {} channels in {} equal parts", keep, size, parts));
  }
  const int64_t part_size = size / parts;
  std::vector<torch::Tensor> kept;
  for (int64_t p = 0; p < parts; ++p) {
    kept.push_back(select_channels(importance.reshape({-1}).slice(0, p * part_size, (p + 1) * part_size),
                                   keep / parts) + p * part_size);
  }
  return torch::cat(kept);
}

torch::Tensor select_channels(const torch::Tensor& importance, int64_t keep, int64_t parts, int64_t tied_parts) {
  if (tied_parts <= 1) return select_channels(importance, keep, parts);
  const int64_t size = importance.numel();
  if (size % tied_parts != 0 || keep % tied_parts != 0 || parts % tied_parts != 0) {
    throw Error(fmt::format("cannot keep {} of {} channels at the same positions in {} blocks ({} parts)",
                            keep, size, tied_parts, parts));
  }
  // One ranking of positions: a position's score adds up its channel in every block.
  const int64_t block = size / tied_parts;
  const torch::Tensor per_position = importance.reshape({tied_parts, block}).sum(0);
  const torch::Tensor positions = select_channels(per_position, keep / tied_parts, parts / tied_parts);
  std::vector<torch::Tensor> kept;
  for (int64_t b = 0; b < tied_parts; ++b) kept.push_back(positions + b * block);
  return torch::cat(kept);
}

namespace {

std::vector<GroupPruneResult> prune_groups_impl(torch::jit::Module& model, const DependencyGraph& graph,
                                                const PruneOptions& options,
                                                const ChannelImportance& importance,
                                                const torch::Tensor* example_input) {
  check_prune_options(options);
  // Norms over weights and slicing them are memory-bound. Set once: changing
  // the thread count also rebuilds LibTorch's thread pool.
  SingleThreadScope one_thread;
  std::optional<MacEstimator> macs;
  if (options.target == SparsityTarget::Macs) {
    if (!example_input) throw Error("a MACs target needs an example input (use the overload that takes one)");
    macs.emplace(model, graph, *example_input);
  }
  // Score everything on the unpruned model: criteria that run the model
  // (activations, gradients) need it intact.
  const bool anything_to_remove = options.sparsity > 0.0 || !options.overrides.empty();
  std::vector<torch::Tensor> scores(graph.groups.size());
  std::vector<std::vector<double>> score_lists(graph.groups.size());
  for (const auto& group : graph.groups) {
    if (!anything_to_remove || !is_selected(group, options)) continue;
    torch::Tensor s = importance(group);
    if (!s.defined() || s.numel() != group.size) {
      throw Error(fmt::format("the importance of group '{}' has {} scores, expected {}", group.name,
                              s.defined() ? s.numel() : 0, group.size));
    }
    s = s.detach().to(torch::kCPU, torch::kDouble).reshape({-1}).contiguous();
    scores[group.id] = s;
    score_lists[group.id].assign(s.data_ptr<double>(), s.data_ptr<double>() + s.numel());
  }
  const auto allocations = allocate_channels(graph, options, score_lists, macs ? &*macs : nullptr);

  std::vector<GroupSelection> selections;
  std::vector<GroupPruneResult> results;
  for (const auto& group : graph.groups) {
    if (group.frozen) continue;
    const auto& allocation = allocations[group.id];
    if (allocation.keep < group.size) {
      const torch::Tensor keep = select_channels(scores[group.id], allocation.keep, group.parts, group.tied_parts).contiguous();
      selections.push_back({&group, std::vector<int64_t>(keep.data_ptr<int64_t>(),
                                                         keep.data_ptr<int64_t>() + keep.numel())});
    }
    results.push_back({group.id, group.name, group.producer_layers(), group.size, allocation.keep,
                       allocation.rule});
  }
  if (!selections.empty()) apply_selections(model, selections);
  return results;
}

}  // namespace

std::vector<GroupPruneResult> prune_groups(torch::jit::Module& model, const DependencyGraph& graph,
                                           const PruneOptions& options,
                                           const ChannelImportance& importance) {
  return prune_groups_impl(model, graph, options, importance, nullptr);
}

std::vector<GroupPruneResult> prune_groups(torch::jit::Module& model, const DependencyGraph& graph,
                                           const PruneOptions& options, const ChannelImportance& importance,
                                           const torch::Tensor& example_input) {
  return prune_groups_impl(model, graph, options, importance, &example_input);
}

}  // namespace mcompress
