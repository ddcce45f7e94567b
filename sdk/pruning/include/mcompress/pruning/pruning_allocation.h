#pragma once
// How many channels each group keeps: the options every pruning criterion
// shares (target sparsity of channels or of MACs, uniform or global
// allocation, per-layer overrides, targets/ignore patterns, round_to) and the
// allocation that turns them into one kept count per group. Criteria only
// supply per-channel scores (channel_pruning.h). Torch-free; the MAC model is
// built from a model by MacEstimator.
#include <cstdint>
#include <string>
#include <vector>

#include "mcompress/pruning/dependency_graph.h"
#include "mcompress/sdk/export.h"

namespace at {
class Tensor;
}
namespace torch::jit {
struct Module;
}

namespace mcompress {

// How the removed fraction is spread over the groups.
enum class Allocation {
  // Every prunable group loses the same fraction of its channels.
  Uniform,
  // One importance threshold across all groups: each group's scores are
  // divided by their mean first, so groups are comparable, and no group loses
  // more than PruneOptions::max_group_sparsity.
  Global,
};

// What `sparsity` is a fraction of.
enum class SparsityTarget {
  Channels,  // of the channels of the prunable groups
  Macs,      // of the model's multiply-accumulates (conv/linear), found by search
};

// `pattern` is matched against a group's producing layers ("layer4.*",
// "features.1?.conv"; `*` and `?` match any characters, dots included); the
// first matching override sets the group's sparsity (a fraction of its
// channels), outside any global ranking.
struct SparsityOverride {
  std::string pattern;
  double sparsity = 0.0;
};

// Options common to all pruning criteria.
struct PruneOptions {
  double sparsity = 0.5;  // fraction to remove, in [0, 1): of channels or MACs (target)
  Allocation allocation = Allocation::Uniform;
  int64_t min_channels = 1;  // never keep fewer channels than this in a group
  int64_t round_to = 1;      // kept counts are multiples of this (SIMD-friendly shapes)
  SparsityTarget target = SparsityTarget::Channels;
  double max_group_sparsity = 0.9;          // cap of global allocation and MAC searches
  std::vector<SparsityOverride> overrides;  // first match wins
  std::vector<std::string> targets;         // prune only groups matching one (empty: all)
  std::vector<std::string> ignore;          // never prune groups matching one
};

// Throws mcompress::Error naming the first invalid option.
MCOMPRESS_SDK_API void check_prune_options(const PruneOptions& options);

// `path` matches the glob `pattern` (`*`, `?`).
MCOMPRESS_SDK_API bool matches_pattern(const std::string& pattern, const std::string& path);

// Parses "PATTERN=SPARSITY" (e.g. "layer4.*=0.7"); throws mcompress::Error.
MCOMPRESS_SDK_API SparsityOverride parse_sparsity_override(const std::string& text);

// How many of `size` channels to keep: size * (1 - sparsity) rounded to the
// nearest multiple of round_to (at least one multiple), at least
// min_channels, at most size. Sparsity 0 keeps all channels.
MCOMPRESS_SDK_API int64_t keep_count(int64_t size, double sparsity, int64_t round_to,
                                     int64_t min_channels = 1);

// MACs per sample as a function of how many channels each group keeps:
// exact for conv and linear layers, whose cost scales with their kept input
// and output channels. Built once from the unpruned model.
class MCOMPRESS_SDK_API MacEstimator {
 public:
  // Runs the model once on `example_input` (model_stats.h layer_costs).
  MacEstimator(const torch::jit::Module& model, const DependencyGraph& graph,
               const at::Tensor& example_input);
  int64_t total() const { return total_; }
  // kept[group id] channels of each group (graph.groups.size() entries).
  int64_t estimate(const std::vector<int64_t>& kept) const;

 private:
  struct Share {
    int64_t group = 0;
    int64_t entries_per_channel = 1;
  };
  struct Layer {
    double macs = 0;
    int64_t out = 1, in = 1;
    std::vector<Share> out_shares, in_shares;
  };
  std::vector<Layer> layers_;
  std::vector<int64_t> sizes_;
  int64_t total_ = 0;
  int64_t fixed_ = 0;  // MACs of layers no group touches
};

// What allocate_channels decided for one group.
struct GroupAllocation {
  int64_t keep = 0;
  std::string rule;  // "uniform", "global", "override PATTERN", "ignored", "not targeted", "frozen"
};

// Kept channels per group (indexed by group id). `scores[id]` holds one score
// per channel (higher = more important) for every group that is not frozen,
// ignored or overridden when allocation is Global; Uniform ignores scores.
// `macs` is required when options.target is Macs. Throws mcompress::Error.
MCOMPRESS_SDK_API std::vector<GroupAllocation> allocate_channels(
    const DependencyGraph& graph, const PruneOptions& options,
    const std::vector<std::vector<double>>& scores, const MacEstimator* macs);

// Whether `group` takes part in pruning at all (not frozen, matches targets,
// matches no ignore pattern); the reason when it does not.
MCOMPRESS_SDK_API bool is_selected(const ChannelGroup& group, const PruneOptions& options,
                                   std::string* reason = nullptr);

}  // namespace mcompress
