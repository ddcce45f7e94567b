#include "mcompress/pruning/pruning_allocation.h"

#include <torch/script.h>

#include <fnmatch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include <fmt/format.h>

#include "mcompress/sdk/error.h"
#include "mcompress/models/graph.h"
#include "mcompress/models/model_stats.h"

namespace mcompress {

void check_prune_options(const PruneOptions& options) {
  if (!(options.sparsity >= 0.0 && options.sparsity < 1.0)) {
    throw Error(fmt::format("sparsity must be in [0, 1), got {}", options.sparsity));
  }
  if (options.round_to < 1) throw Error(fmt::format("round_to must be >= 1, got {}", options.round_to));
  if (options.min_channels < 1) {
    throw Error(fmt::format("min_channels must be >= 1, got {}", options.min_channels));
  }
  if (!(options.max_group_sparsity > 0.0 && options.max_group_sparsity < 1.0)) {
    throw Error(fmt::format("max_group_sparsity must be in (0, 1), got {}", options.max_group_sparsity));
  }
  for (const auto& o : options.overrides) {
    if (!(o.sparsity >= 0.0 && o.sparsity < 1.0)) {
      throw Error(fmt::format("the sparsity of override '{}' must be in [0, 1), got {}", o.pattern, o.sparsity));
    }
  }
}

bool matches_pattern(const std::string& pattern, const std::string& path) {
  return fnmatch(pattern.c_str(), path.c_str(), 0) == 0;
}

SparsityOverride parse_sparsity_override(const std::string& text) {
  const auto equals = text.rfind('=');
  if (equals == std::string::npos || equals == 0 || equals + 1 == text.size()) {
    throw Error(fmt::format("override '{}' must read PATTERN=SPARSITY, e.g. 'layer4.*=0.7'", text));
  }
  SparsityOverride result;
  result.pattern = text.substr(0, equals);
  const std::string number = text.substr(equals + 1);
  try {
    size_t used = 0;
    result.sparsity = std::stod(number, &used);
    if (used != number.size()) throw std::invalid_argument(number);
  } catch (const std::exception&) {
    throw Error(fmt::format("override '{}': '{}' is not a number", text, number));
  }
  if (!(result.sparsity >= 0.0 && result.sparsity < 1.0)) {
    throw Error(fmt::format("override '{}': the sparsity must be in [0, 1)", text));
  }
  return result;
}

namespace {

// The nearest multiple of `step` to `target`, at least one step and
// min_channels (rounded up to a step), at most size.
int64_t rounded_keep(int64_t size, double target, int64_t step, int64_t min_channels) {
  // The epsilon rounds halves up despite products like 10 * (1 - 0.25000000000000006).
  int64_t keep = std::max<int64_t>(std::llround(target / step + 1e-9), 1) * step;
  const int64_t floor = (std::max<int64_t>(min_channels, 1) + step - 1) / step * step;
  keep = std::max(keep, floor);
  return std::min(keep, size);
}

bool any_layer_matches(const ChannelGroup& group, const std::string& pattern) {
  for (const auto& layer : group.producer_layers()) {
    if (matches_pattern(pattern, layer)) return true;
  }
  return false;
}

const SparsityOverride* override_of(const ChannelGroup& group, const PruneOptions& options) {
  for (const auto& o : options.overrides) {
    if (any_layer_matches(group, o.pattern)) return &o;
  }
  return nullptr;
}

}  // namespace

int64_t keep_count(int64_t size, double sparsity, int64_t round_to, int64_t min_channels) {
  if (size <= 0 || sparsity <= 0.0) return std::max<int64_t>(size, 0);
  return rounded_keep(size, static_cast<double>(size) * (1.0 - sparsity), std::max<int64_t>(round_to, 1),
                      min_channels);
}

bool is_selected(const ChannelGroup& group, const PruneOptions& options, std::string* reason) {
  auto say = [&](const std::string& text) {
    if (reason) *reason = text;
    return false;
  };
  if (group.frozen) return say("frozen");
  for (const auto& pattern : options.ignore) {
    if (any_layer_matches(group, pattern)) return say("ignored (" + pattern + ")");
  }
  if (!options.targets.empty() &&
      std::none_of(options.targets.begin(), options.targets.end(),
                   [&](const std::string& p) { return any_layer_matches(group, p); })) {
    return say("not targeted");
  }
  return true;
}

MacEstimator::MacEstimator(const torch::jit::Module& model, const DependencyGraph& graph,
                           const torch::Tensor& example_input) {
  // Which groups slice each weight, along which dim.
  std::map<std::string, std::pair<std::vector<Share>, std::vector<Share>>> shares;
  // A grouped convolution's weight holds in_channels / groups inputs.
  std::map<std::string, int64_t> conv_groups;
  for (const auto& group : graph.groups) {
    sizes_.push_back(group.size);
    for (const auto& m : group.members) {
      if (m.kind != MemberKind::Parameter || m.attribute != "weight" || m.dim > 1) continue;
      auto& list = m.dim == 0 ? shares[m.module_path].first : shares[m.module_path].second;
      list.push_back({group.id, m.block_size});
      if (m.dim == 1 && m.conv_groups > 1) conv_groups[m.module_path] = m.conv_groups;
    }
  }
  for (const auto& cost : layer_costs(model, example_input)) {
    total_ += cost.macs;
    auto it = shares.find(cost.module_path);
    if (cost.module_path.empty() || it == shares.end() || (cost.op != "linear" && cost.op.rfind("conv", 0) != 0)) {
      fixed_ += cost.macs;
      continue;
    }
    const auto weight = submodule_at(model, cost.module_path).attr("weight").toTensor();
    Layer layer;
    layer.macs = static_cast<double>(cost.macs);
    layer.out = weight.size(0);
    layer.in = weight.dim() > 1 ? weight.size(1) : 1;
    if (auto grouped = conv_groups.find(cost.module_path); grouped != conv_groups.end()) layer.in *= grouped->second;
    layer.out_shares = it->second.first;
    layer.in_shares = it->second.second;
    layers_.push_back(std::move(layer));
  }
}

int64_t MacEstimator::estimate(const std::vector<int64_t>& kept) const {
  double total = static_cast<double>(fixed_);
  auto remaining = [&](int64_t entries, const std::vector<Share>& list) {
    for (const auto& share : list) entries -= (sizes_[share.group] - kept[share.group]) * share.entries_per_channel;
    return static_cast<double>(std::max<int64_t>(entries, 0));
  };
  for (const auto& layer : layers_) {
    total += layer.macs * remaining(layer.out, layer.out_shares) / layer.out *
             remaining(layer.in, layer.in_shares) / layer.in;
  }
  return std::llround(total);
}

namespace {

struct Candidate {
  double score;
  int64_t group;
};

class Allocator {
 public:
  Allocator(const DependencyGraph& graph, const PruneOptions& options,
            const std::vector<std::vector<double>>& scores, const MacEstimator* macs)
      : graph_(graph), options_(options), scores_(scores), macs_(macs) {}

  std::vector<GroupAllocation> run() {
    check_prune_options(options_);
    if (options_.target == SparsityTarget::Macs && !macs_) {
      throw Error("a MACs target needs the model's MAC estimate (an example input)");
    }
    result_.resize(graph_.groups.size());
    for (const auto& group : graph_.groups) {
      auto& allocation = result_[group.id];
      allocation.keep = group.size;
      std::string reason;
      if (!is_selected(group, options_, &reason)) {
        allocation.rule = reason;
      } else if (const auto* o = override_of(group, options_)) {
        allocation.rule = "override " + o->pattern;
        allocation.keep = keep_count(group.size, o->sparsity, step(group), options_.min_channels);
      } else {
        allocation.rule = options_.allocation == Allocation::Global ? "global" : "uniform";
        free_.push_back(&group);
      }
    }
    if (options_.sparsity > 0.0 && !free_.empty()) {
      if (options_.allocation == Allocation::Uniform) uniform();
      else global();
    }
    report_rounding();
    return result_;
  }

 private:
  int64_t step(const ChannelGroup& group) const { return std::lcm(options_.round_to, group.parts); }

  // Normalisation or convolution groups make the kept count coarser than
  // round_to asks; say so where it changed the count.
  void report_rounding() {
    for (const auto& group : graph_.groups) {
      auto& allocation = result_[group.id];
      if (!is_selected(group, options_) || step(group) <= std::max<int64_t>(options_.round_to, 1) ||
          allocation.keep == group.size) {
        continue;
      }
      allocation.rule += fmt::format(" (rounded to a multiple of {}: {} equal parts{})", step(group),
                                     group.parts, group.tied_parts > 1 ? ", same positions in each" : "");
    }
  }

  std::vector<int64_t> kept() const {
    std::vector<int64_t> kept;
    for (const auto& a : result_) kept.push_back(a.keep);
    return kept;
  }

  void set_uniform(double sparsity) {
    const double capped = std::min(sparsity, options_.max_group_sparsity);
    for (const auto* group : free_) {
      result_[group->id].keep = keep_count(group->size, capped, step(*group), options_.min_channels);
    }
  }

  void uniform() {
    if (options_.target == SparsityTarget::Channels) return set_uniform(options_.sparsity);
    // The uniform sparsity whose MACs come closest to the target from above.
    const double goal = (1.0 - options_.sparsity) * static_cast<double>(macs_->total());
    double low = 0.0, high = options_.max_group_sparsity;
    for (int i = 0; i < 40; ++i) {
      const double mid = 0.5 * (low + high);
      set_uniform(mid);
      (static_cast<double>(macs_->estimate(kept())) > goal ? low : high) = mid;
    }
    set_uniform(high);
  }

  // Every free group's channels in one ranking, weakest first; each group
  // offers at most the channels its cap allows.
  void global() {
    std::vector<Candidate> candidates;
    int64_t free_channels = 0;
    for (const auto* group : free_) {
      free_channels += group->size;
      const auto& s = scores_.at(group->id);
      if (static_cast<int64_t>(s.size()) != group->size) {
        throw Error(fmt::format("group '{}' has {} scores, expected {}", group->name, s.size(), group->size));
      }
      const double mean = std::accumulate(s.begin(), s.end(), 0.0) / std::max<size_t>(s.size(), 1);
      std::vector<double> sorted = s;
      std::sort(sorted.begin(), sorted.end());
      const int64_t floor = std::max<int64_t>(
          options_.min_channels,
          static_cast<int64_t>(std::ceil(group->size * (1.0 - options_.max_group_sparsity) - 1e-9)));
      const int64_t removable = std::max<int64_t>(group->size - floor, 0);
      for (int64_t i = 0; i < removable; ++i) {
        candidates.push_back({mean > 0 ? sorted[i] / mean : sorted[i], group->id});
      }
    }
    std::stable_sort(candidates.begin(), candidates.end(),
                     [](const Candidate& a, const Candidate& b) { return a.score < b.score; });
    auto apply_prefix = [&](size_t count) {
      std::map<int64_t, int64_t> removed;
      for (size_t i = 0; i < count; ++i) ++removed[candidates[i].group];
      for (const auto* group : free_) {
        const double target = static_cast<double>(group->size - removed[group->id]);
        result_[group->id].keep = removed[group->id] == 0
                                      ? group->size
                                      : rounded_keep(group->size, target, step(*group), options_.min_channels);
      }
    };
    if (options_.target == SparsityTarget::Channels) {
      const auto count = static_cast<size_t>(std::llround(options_.sparsity * static_cast<double>(free_channels)));
      return apply_prefix(std::min(count, candidates.size()));
    }
    const double goal = (1.0 - options_.sparsity) * static_cast<double>(macs_->total());
    size_t low = 0, high = candidates.size();
    while (low < high) {
      const size_t mid = (low + high) / 2;
      apply_prefix(mid);
      if (static_cast<double>(macs_->estimate(kept())) > goal) low = mid + 1;
      else high = mid;
    }
    apply_prefix(low);
  }

  const DependencyGraph& graph_;
  const PruneOptions& options_;
  const std::vector<std::vector<double>>& scores_;
  const MacEstimator* macs_;
  std::vector<GroupAllocation> result_;
  std::vector<const ChannelGroup*> free_;
};

}  // namespace

std::vector<GroupAllocation> allocate_channels(const DependencyGraph& graph, const PruneOptions& options,
                                               const std::vector<std::vector<double>>& scores,
                                               const MacEstimator* macs) {
  return Allocator(graph, options, scores, macs).run();
}

}  // namespace mcompress
