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

#include "mcompress/sdk/dependency_graph.h"
#include "mcompress/sdk/export.h"

namespace mcompress {

// How the removed fraction is spread over the groups.
enum class Allocation {
  // Every prunable group loses the same fraction of its channels.
  Uniform,
  // Not implemented yet: one importance threshold across all groups (scores
  // are normalised per layer so that they are comparable). A later SDK minor
  // adds it together with MACs targets, per-layer overrides, target/ignore
  // patterns and iterative schedules.
};

// Options common to all pruning criteria.
struct PruneOptions {
  double sparsity = 0.5;  // fraction of each group's channels to remove, in [0, 1)
  Allocation allocation = Allocation::Uniform;
  int64_t min_channels = 1;  // never keep fewer channels than this in a group
  int64_t round_to = 1;      // kept counts are multiples of this (SIMD-friendly shapes)
};

// How many of `size` channels to keep: size * (1 - sparsity) rounded to the
// nearest multiple of round_to (at least one multiple), at least
// min_channels, at most size. Sparsity 0 keeps all channels.
MCOMPRESS_SDK_API int64_t keep_count(int64_t size, double sparsity, int64_t round_to,
                                     int64_t min_channels = 1);

enum class ImportanceNorm { L1, L2 };

// One score per channel of `group` (a float64 tensor of group.size entries;
// higher is more important): the norm over every parameter slice the channel
// owns (producer rows and biases, consumer input columns or blocks, affine
// normalisation parameters; buffers are ignored). Each member's contribution
// is divided by its mean over the group's channels first, so a layer with
// large weights does not dominate and every group's scores average about 1,
// which makes groups comparable for a future global allocation.
MCOMPRESS_SDK_API at::Tensor group_importance(const torch::jit::Module& model,
                                              const ChannelGroup& group, ImportanceNorm norm);
MCOMPRESS_SDK_API at::Tensor group_l2_importance(const torch::jit::Module& model,
                                                 const ChannelGroup& group);

// Indices (int64, ascending) of the `keep` highest scores; ties keep the lower index.
MCOMPRESS_SDK_API at::Tensor select_channels(const at::Tensor& importance, int64_t keep);

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

// What prune_groups did to one group.
struct GroupPruneResult {
  int64_t group_id = 0;
  std::string name;                 // ChannelGroup::name
  std::vector<std::string> layers;  // ChannelGroup::producer_layers()
  int64_t channels_before = 0;
  int64_t channels_after = 0;
};

// Scores the channels of one group; called once per prunable group, on the
// unpruned model, before any group is pruned.
using ChannelImportance = std::function<at::Tensor(const ChannelGroup& group)>;

// Prunes every prunable group of `graph` (computed on `model`) as `options`
// say, keeping the channels `importance` scores highest. Groups whose kept
// count equals their size are left untouched (so sparsity 0 is an exact
// no-op). Returns one result per prunable group, in graph order. Throws
// mcompress::Error on invalid options or scores of the wrong shape.
MCOMPRESS_SDK_API std::vector<GroupPruneResult> prune_groups(torch::jit::Module& model,
                                                             const DependencyGraph& graph,
                                                             const PruneOptions& options,
                                                             const ChannelImportance& importance);

}  // namespace mcompress
