#pragma once
// Removing channels: the slicing mechanism and the selection helpers every
// pruning criterion shares. A criterion (magnitude, gradient, activation...)
// only scores channels; prune_groups does the rest:
//
//   auto graph = analyze_dependencies(model, example_input);
//   auto results = prune_groups(model, graph, options, [&](const ChannelGroup& group) {
//     return group_l2_importance(model, group);   // one score per channel
//   });
//
// Torch types are only declared here; callers that build or read tensors
// include <torch/script.h> themselves.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "mcompress/pruning/dependency_graph.h"
#include "mcompress/sdk/export.h"
#include "mcompress/pruning/pruning_allocation.h"

namespace mcompress {

enum class ImportanceNorm { L1, L2 };

// One score per channel of `group` (a float64 tensor of group.size entries;
// higher is more important): the norm over every parameter slice the channel
// owns (producer rows and biases, consumer input columns or blocks, affine
// normalisation parameters; buffers are ignored). Each member's contribution
// is divided by its mean over the group's channels first, so a layer with
// large weights does not dominate and every group's scores average about 1,
// which makes groups comparable for global allocation.
MCOMPRESS_SDK_API at::Tensor group_importance(const torch::jit::Module& model,
                                              const ChannelGroup& group, ImportanceNorm norm);
MCOMPRESS_SDK_API at::Tensor group_l2_importance(const torch::jit::Module& model,
                                                 const ChannelGroup& group);

// Building blocks for criteria. The entries of `tensor` (a member's value,
// or a tensor of the same shape such as its gradient) that each channel owns
// through `member`, as rows: [group_size, entries per channel].
MCOMPRESS_SDK_API at::Tensor channel_rows(const at::Tensor& tensor, const ChannelMember& member,
                                          int64_t group_size);
// Combines per-member channel scores (each [channels], non-negative) the way
// group_importance does: each divided by its mean, then averaged; float64.
// All ones when `contributions` is empty.
MCOMPRESS_SDK_API at::Tensor combine_member_scores(const std::vector<at::Tensor>& contributions,
                                                   int64_t group_size);

// Indices (int64, ascending) of the `keep` highest scores; ties keep the lower index.
MCOMPRESS_SDK_API at::Tensor select_channels(const at::Tensor& importance, int64_t keep);
// The same for a group of `parts` equal parts (ChannelGroup::parts): each
// part keeps its keep / parts best channels; keep must be a multiple of parts.
MCOMPRESS_SDK_API at::Tensor select_channels(const at::Tensor& importance, int64_t keep, int64_t parts);
// The same with `tied_parts` blocks that keep the same positions
// (ChannelGroup::tied_parts, a grouped convolution's input): positions are
// ranked by their scores summed over the blocks; keep must be a multiple of
// parts, and parts of tied_parts.
MCOMPRESS_SDK_API at::Tensor select_channels(const at::Tensor& importance, int64_t keep, int64_t parts,
                                             int64_t tied_parts);

// Keeps only channels `keep_indices` (1-D int64, distinct, in [0, group.size))
// of `group` in `model`: every tensor member is replaced by its index_select'ed
// slice (whole blocks for flattened members) through register_parameter /
// register_buffer on the owning submodule; parameters keep their
// requires_grad. Count attributes (in_features, num_features, ...) are set to
// the new size. Everything is checked before anything changes: on error
// (frozen group, bad indices, a member that is missing or has the wrong size)
// it throws mcompress::Error and leaves the model untouched.
MCOMPRESS_SDK_API void prune_channels(torch::jit::Module& model, const ChannelGroup& group,
                                      const at::Tensor& keep_indices);

// The channels to keep of one group (indices in [0, group.size), distinct).
struct GroupSelection {
  const ChannelGroup* group = nullptr;  // not owned; must outlive the call
  std::vector<int64_t> keep;
};

// prune_channels for several groups of one analysis at once. Needed when
// groups share a tensor as index ranges (a layer reading a concatenation):
// every tensor is sliced once, with all its ranges. Same checks and the same
// all-or-nothing promise as prune_channels.
MCOMPRESS_SDK_API void apply_selections(torch::jit::Module& model,
                                        const std::vector<GroupSelection>& selections);

// What prune_groups did to one group.
struct GroupPruneResult {
  int64_t group_id = 0;
  std::string name;                 // ChannelGroup::name
  std::vector<std::string> layers;  // ChannelGroup::producer_layers()
  int64_t channels_before = 0;
  int64_t channels_after = 0;
  std::string allocation;           // GroupAllocation::rule
};

// Scores the channels of one group; called once per selected group (see
// is_selected) on the unpruned model, before any group is pruned, and only
// when some channel may be removed. It runs with one intra-op thread: compute
// statistics that need the model's speed (activations, gradients) before
// calling prune_groups, as the built-in criteria do.
using ChannelImportance = std::function<at::Tensor(const ChannelGroup& group)>;

// Prunes the groups of `graph` (computed on `model`) as `options` say
// (allocate_channels), keeping the channels `importance` scores highest.
// Groups whose kept count equals their size are left untouched (so sparsity
// 0 is an exact no-op). Returns one result per prunable (not frozen) group,
// in graph order. Throws mcompress::Error on invalid options or scores of the
// wrong shape. A MACs target needs the overload with an example input.
MCOMPRESS_SDK_API std::vector<GroupPruneResult> prune_groups(torch::jit::Module& model,
                                                             const DependencyGraph& graph,
                                                             const PruneOptions& options,
                                                             const ChannelImportance& importance);
MCOMPRESS_SDK_API std::vector<GroupPruneResult> prune_groups(torch::jit::Module& model,
                                                             const DependencyGraph& graph,
                                                             const PruneOptions& options,
                                                             const ChannelImportance& importance,
                                                             const at::Tensor& example_input);

}  // namespace mcompress
