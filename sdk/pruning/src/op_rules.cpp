// The per-op rules of the dependency analysis: which handler each supported
// op gets, and the handlers.
#include "dependency_analyzer.h"

#include <torch/script.h>

#include <algorithm>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

namespace mcompress::detail {
namespace {

int64_t product(const Shape& shape, size_t begin, size_t end) {
  int64_t result = 1;
  for (size_t i = begin; i < end && i < shape.size(); ++i) result *= shape[i];
  return result;
}

}  // namespace

// How each op moves channels from its inputs to its output, keyed by qualified
// op name. Supporting an op is adding one entry: its name and a handler that
// sets the track of its output and records the members it slices - a visit_
// member below, pass_through when the output keeps the input's shape and
// channels, or a wrapper such as pooling(dims) for a handler that takes a
// parameter. Layers (ops that read module parameters) pass /*layer=*/true so
// they are visited even when their input carries no tracked channels. An op
// without an entry freezes the channel groups it touches.
const DependencyAnalyzer::OpRule* DependencyAnalyzer::rule_for(const std::string& op) {
  static const std::unordered_map<std::string, OpRule> rules = [] {
    std::unordered_map<std::string, OpRule> table;
    auto add = [&](std::initializer_list<const char*> ops, const OpHandler& handle, bool layer = false) {
      for (const char* name : ops) {
        if (!table.emplace(name, OpRule{handle, layer}).second) {
          throw std::logic_error(fmt::format("{} has two dependency rules", name));
        }
      }
    };
    auto pooling = [](int64_t dims) -> OpHandler {
      return [dims](DependencyAnalyzer& analyzer, Node* node) { analyzer.visit_pooling(node, dims); };
    };
    auto conv = [](int64_t spatial_dims) -> OpHandler {
      return [spatial_dims](DependencyAnalyzer& analyzer, Node* node) {
        analyzer.visit_conv(node, spatial_dims);
      };
    };

    // Same shape out as in, each output element depends on one input element.
    add({"aten::relu",      "aten::relu_",        "aten::relu6",       "aten::gelu",
         "aten::gelu_",     "aten::sigmoid",      "aten::sigmoid_",    "aten::tanh",
         "aten::tanh_",     "aten::hardtanh",     "aten::hardtanh_",   "aten::silu",
         "aten::silu_",     "aten::hardswish",    "aten::hardswish_",  "aten::hardsigmoid",
         "aten::hardsigmoid_", "aten::leaky_relu", "aten::leaky_relu_", "aten::elu",
         "aten::elu_",      "aten::selu",         "aten::selu_",       "aten::celu",
         "aten::mish",      "aten::softplus",     "aten::neg",         "aten::abs",
         "aten::exp",       "aten::log",          "aten::sqrt",        "aten::rsqrt",
         "aten::square",    "aten::clamp",        "aten::clamp_",      "aten::clamp_min",
         "aten::clamp_max", "aten::dropout",      "aten::dropout_",    "aten::feature_dropout",
         "aten::alpha_dropout", "aten::feature_alpha_dropout", "aten::contiguous",
         "aten::clone",     "aten::detach",       "aten::to",          "aten::float",
         "aten::type_as"},
        &DependencyAnalyzer::pass_through);
    // The same value with a refined type.
    add({"prim::unchecked_cast"}, &DependencyAnalyzer::pass_through);
    add({"aten::add", "aten::add_", "aten::sub", "aten::sub_", "aten::mul",     "aten::mul_",
         "aten::div", "aten::div_", "aten::maximum", "aten::minimum"},
        &DependencyAnalyzer::visit_binary);
    // Pooling over the last 1, 2 or 3 dims.
    add({"aten::max_pool1d", "aten::avg_pool1d", "aten::adaptive_avg_pool1d", "aten::adaptive_max_pool1d",
         "aten::max_pool1d_with_indices"},
        pooling(1));
    add({"aten::max_pool2d", "aten::avg_pool2d", "aten::adaptive_avg_pool2d", "aten::adaptive_max_pool2d",
         "aten::max_pool2d_with_indices"},
        pooling(2));
    add({"aten::max_pool3d", "aten::avg_pool3d", "aten::adaptive_avg_pool3d", "aten::adaptive_max_pool3d"},
        pooling(3));
    add({"aten::linear"}, &DependencyAnalyzer::visit_linear, /*layer=*/true);
    add({"aten::conv1d"}, conv(1), /*layer=*/true);
    add({"aten::conv2d"}, conv(2), /*layer=*/true);
    add({"aten::conv3d"}, conv(3), /*layer=*/true);
    add({"aten::batch_norm", "aten::instance_norm"}, &DependencyAnalyzer::visit_batch_norm, /*layer=*/true);
    add({"aten::layer_norm"}, &DependencyAnalyzer::visit_layer_norm, /*layer=*/true);
    add({"aten::group_norm"}, &DependencyAnalyzer::visit_group_norm, /*layer=*/true);
    add({"aten::flatten"}, &DependencyAnalyzer::visit_flatten);
    add({"aten::view", "aten::reshape"}, &DependencyAnalyzer::visit_view);
    add({"aten::mean", "aten::sum", "aten::amax"}, &DependencyAnalyzer::visit_reduction);
    add({"aten::softmax", "aten::log_softmax"}, &DependencyAnalyzer::visit_softmax);
    add({"aten::permute"}, &DependencyAnalyzer::visit_permute);
    add({"aten::transpose"}, &DependencyAnalyzer::visit_transpose);
    return table;
  }();
  auto it = rules.find(op);
  return it == rules.end() ? nullptr : &it->second;
}

// --- pass-through ops -------------------------------------------------------

void DependencyAnalyzer::pass_through(Node* node) {
  auto track = track_of(node->input(0));
  if (!track) return freeze_inputs(node, fmt::format("{} takes these channels in an unexpected"
                                                     " argument", describe(node)));
  for (Value* output : node->outputs()) {
    if (output->type()->kind() == c10::TypeKind::TensorType) tracks_[output] = *track;
  }
}

// Residual adds and squeeze-excitation multiplies ([N,C,H,W] * [N,C,1,1])
// tie the channels of both operands.
void DependencyAnalyzer::visit_binary(Node* node) {
  auto a = track_of(node->input(0));
  auto b = track_of(node->input(1));
  const std::string where = describe(node);
  if (a && b) {
    if (!a->same_layout(*b)) {
      return freeze_inputs(node, fmt::format("{} combines channels in different layouts", where));
    }
    ChannelTrack merged = a->rank >= b->rank ? *a : *b;
    merge_tracks(merged, a->rank >= b->rank ? *b : *a, where);
    tracks_[node->output(0)] = *track_of_joined(merged);
    return;
  }
  const ChannelTrack track = a ? *a : *b;
  const Value* other = node->input(a ? 1 : 0);
  if (spans_channel_dim(other, track) && add_per_channel_parameter(node, a ? 1 : 0, track)) {
    tracks_[node->output(0)] = track;
    return;
  }
  if (!spans_channel_dim(other, track)) {
    ChannelTrack result = track;
    const int64_t other_rank = rank_of(other).value_or(0);
    if (other_rank > track.rank) {
      result.rank = other_rank;
      result.dim += other_rank - track.rank;
    }
    tracks_[node->output(0)] = result;
    return;
  }
  freeze_inputs(node, fmt::format("{} combines these channels with a tensor that has no channel"
                                  " group (e.g. a constant or a parameter)", where));
}

// x * self.scale with scale [C, 1, 1] (ConvNeXt's layer scale) or
// x + self.shift: the parameter holds one entry per channel and is sliced
// with them.
bool DependencyAnalyzer::add_per_channel_parameter(Node* node, size_t index, const ChannelTrack& track) {
  auto parameter = tensor_attribute(node->input(index));
  if (!parameter || track.block != 1) return false;
  const int64_t rank = parameter->tensor.dim();
  const int64_t dim = rank - (track.rank - track.dim);
  if (dim < 0 || rank > track.rank || parameter->tensor.size(dim) != track.channels()) return false;
  for (int64_t d = 0; d < rank; ++d) {
    if (d != dim && parameter->tensor.size(d) != 1) return false;
  }
  understood_uses_.insert({node, index});
  for_each_range(track, [&](int64_t group, int64_t offset, int64_t extent) {
    ChannelMember member{parameter->path.module_path, parameter->path.attribute, parameter->kind,
                         MemberRole::Normalization, dim, 1};
    member.offset = offset;
    member.extent = extent;
    groups_.add_member(group, member);
  });
  return true;
}

// Whether `other`, broadcast against a value tracked by `track`, has more
// than one entry along the channel dim (then it would have to be pruned too).
bool DependencyAnalyzer::spans_channel_dim(const Value* other, const ChannelTrack& track) {
  if (other->type()->kind() != c10::TypeKind::TensorType) return false;  // a scalar
  auto shape = shape_of(other);
  if (!shape) shape = created_shape(other);
  if (!shape) return true;  // unknown: assume the worst
  const int64_t from_end = track.rank - track.dim;
  const int64_t rank = static_cast<int64_t>(shape->size());
  if (rank < from_end) return false;
  return (*shape)[rank - from_end] != 1;
}

// Values inside branches are never observed. A tensor the code creates
// from a size list (stochastic depth's noise: torch.empty([n] + [1] *
// (x.dim() - 1)).bernoulli_(p)) has the shape the list says; entries the
// list does not fix are -1, which never counts as a broadcast 1.
std::optional<Shape> DependencyAnalyzer::created_shape(const Value* value, int depth) {
  if (depth > 8) return std::nullopt;
  const Node* node = value->node();
  const std::string op = op_name(node);
  if (op == "aten::bernoulli_" || op == "aten::div_" || op == "aten::mul_" || op == "aten::uniform_" ||
      op == "aten::normal_" || op == "aten::bernoulli") {
    return created_shape(node->input(0), depth + 1);
  }
  static const std::unordered_set<std::string> factories = {"aten::empty", "aten::zeros", "aten::ones",
                                                            "aten::rand", "aten::randn", "aten::full"};
  if (!factories.count(op) || node->inputs().empty()) return std::nullopt;
  return int_list_value(node->input(0), 0);
}

std::optional<Shape> DependencyAnalyzer::int_list_value(const Value* list, int depth) {
  if (depth > 8) return std::nullopt;
  const Node* node = list->node();
  if (auto constant = constant_int_list(list); constant && node->kind() == c10::prim::Constant) return constant;
  if (node->kind() == c10::prim::ListConstruct) {
    Shape entries;
    for (const Value* input : node->inputs()) entries.push_back(int_value(input, depth + 1).value_or(-1));
    return entries;
  }
  if (node->kind() == c10::aten::add && node->inputs().size() == 2) {  // concatenation
    auto a = int_list_value(node->input(0), depth + 1);
    auto b = int_list_value(node->input(1), depth + 1);
    if (!a || !b) return std::nullopt;
    a->insert(a->end(), b->begin(), b->end());
    return a;
  }
  if (node->kind() == c10::aten::mul && node->inputs().size() == 2) {  // repetition
    auto items = int_list_value(node->input(0), depth + 1);
    auto times = int_value(node->input(1), depth + 1);
    if (!items || !times || *times < 0) return std::nullopt;
    Shape entries;
    for (int64_t i = 0; i < *times; ++i) entries.insert(entries.end(), items->begin(), items->end());
    return entries;
  }
  if (node->kind() == c10::prim::If) {  // same length in every branch; differing entries unknown
    std::optional<Shape> joined;
    for (const Block* block : node->blocks()) {
      auto branch = int_list_value(block->outputs()[list->offset()], depth + 1);
      if (!branch || (joined && joined->size() != branch->size())) return std::nullopt;
      if (!joined) {
        joined = branch;
      } else {
        for (size_t i = 0; i < branch->size(); ++i) {
          if ((*joined)[i] != (*branch)[i]) (*joined)[i] = -1;
        }
      }
    }
    return joined;
  }
  return std::nullopt;
}

std::optional<int64_t> DependencyAnalyzer::int_value(const Value* value, int depth) {
  if (auto constant = constant_int(value)) return constant;
  const Node* node = value->node();
  if (node->kind() == c10::aten::dim) return rank_of(node->input(0));
  if ((node->kind() == c10::aten::sub || node->kind() == c10::aten::add) && node->inputs().size() == 2 &&
      value->type()->kind() == c10::TypeKind::IntType) {
    auto a = int_value(node->input(0), depth + 1);
    auto b = int_value(node->input(1), depth + 1);
    if (!a || !b) return std::nullopt;
    return node->kind() == c10::aten::sub ? *a - *b : *a + *b;
  }
  return std::nullopt;
}

void DependencyAnalyzer::visit_pooling(Node* node, int64_t dims) {
  auto track = track_of(node->input(0));
  if (track && track->block == 1 && track->dim < track->rank - dims) return pass_through(node);
  freeze_inputs(node, fmt::format("{} pools over the channel dim", describe(node)));
}

void DependencyAnalyzer::visit_softmax(Node* node) {
  auto track = track_of(node->input(0));
  auto dim = constant_int(node->input(1));
  if (track && dim && normalize_dim(*dim, track->rank) != track->dim) return pass_through(node);
  freeze_inputs(node, fmt::format("{} normalises across channels", describe(node)));
}

// --- layers -----------------------------------------------------------------

void DependencyAnalyzer::visit_linear(Node* node) {
  const Value* input = node->input(0);
  auto weight = tensor_attribute(node->input(1));
  auto rank = rank_of(input);
  if (!weight || !rank) {
    return freeze_inputs(node, fmt::format("{} has a weight that is not a module parameter or an"
                                           " input of unknown rank", describe(node)));
  }
  const auto shape = weight->tensor.sizes();
  const int64_t out_features = shape[0];
  const int64_t in_features = shape.size() > 1 ? shape[1] : 0;
  couple_input(node, *weight, input, /*channel_dim=*/*rank - 1, in_features, "in_features");
  create_output_group(node, *weight, out_features, *rank - 1, *rank, "out_features");
}

void DependencyAnalyzer::visit_conv(Node* node, int64_t spatial_dims) {
  const Value* input = node->input(0);
  auto weight = tensor_attribute(node->input(1));
  auto rank = rank_of(input);
  auto groups = int_argument(node->input(6));
  if (!weight || !rank || !groups) {
    return freeze_inputs(node, fmt::format("{} has a weight that is not a module parameter, a"
                                           " computed groups count or an input of unknown rank",
                                           describe(node)));
  }
  const int64_t channel_dim = *rank - spatial_dims - 1;
  const int64_t out_channels = weight->tensor.size(0);
  const int64_t in_channels = weight->tensor.size(1) * groups->value;
  if (groups->value == 1) {
    couple_input(node, *weight, input, channel_dim, in_channels, "in_channels");
    create_output_group(node, *weight, out_channels, channel_dim, *rank, "out_channels");
  } else if (weight->tensor.size(1) == 1 && out_channels == in_channels) {
    visit_depthwise_conv(node, *weight, *groups, channel_dim);
  } else {
    visit_grouped_conv(node, *weight, groups->value, channel_dim, *rank);
  }
}

void DependencyAnalyzer::visit_grouped_conv(Node* node, const TensorAttribute& weight, int64_t groups,
                                            int64_t channel_dim, int64_t rank) {
  const int64_t out_channels = weight.tensor.size(0);
  const int64_t in_channels = weight.tensor.size(1) * groups;
  understood_uses_.insert({node, 1});
  auto track = track_of(node->input(0));
  if (!track) {
    fix_dim(weight.path.full(), 1, fmt::format("{} also reads an input whose channels are not prunable",
                                               weight.path.full()));
  } else if (track->dim != channel_dim || track->block != 1 || !track->single() ||
             track->channels() != in_channels || out_channels % groups != 0) {
    freeze_track(*track, fmt::format("grouped {} (groups={}) reads these channels in an unexpected layout",
                                     describe(node), groups));
    fix_dim(weight.path.full(), 1, fmt::format("{} reads channels in an unexpected layout", weight.path.full()));
  } else {
    // Each convolution group reads its own block of the input through the
    // same weight columns, so every block loses the same positions.
    const int64_t group = track->group();
    groups_.require_tied_parts(group, groups);
    ChannelMember member{weight.path.module_path, weight.path.attribute, weight.kind,
                         MemberRole::Consumer, 1, 1};
    member.conv_groups = groups;
    groups_.add_member(group, member);
    add_int_attribute_member(group, weight.path.module_path, "in_channels", MemberRole::Consumer);
  }
  create_output_group(node, weight, out_channels, channel_dim, rank, "out_channels");
  // Output rows are free within a convolution group: equal counts suffice.
  groups_.require_parts(tracks_.at(node->output(0)).group(), groups);
}

void DependencyAnalyzer::visit_depthwise_conv(Node* node, const TensorAttribute& weight,
                                              const IntArgument& groups, int64_t channel_dim) {
  auto track = track_of(node->input(0));
  if (!track || track->dim != channel_dim || track->block != 1 || !track->single()) {
    fix_dim(weight.path.full(), kAllDims,
            fmt::format("depthwise {} reads channels in an unexpected layout", describe(node)));
    return freeze_inputs(node, fmt::format("depthwise {} reads channels in an unexpected layout",
                                           describe(node)));
  }
  const bool follows_weight = groups.size_of && groups.size_of->full() == weight.path.full();
  if (!groups.attribute && !follows_weight) {
    freeze_track(*track, fmt::format("depthwise {} has its groups count fixed in the model's"
                                     " code (a constant), so its channel count cannot change",
                                     describe(node)));
    // Still the same channels: whatever they meet downstream is frozen with them.
    tracks_[node->output(0)] = *track;
    return;
  }
  understood_uses_.insert({node, 1});
  understood_uses_.insert({node, 2});
  const int64_t group = track->group();
  groups_.add_member(group, ChannelMember{weight.path.module_path, weight.path.attribute, weight.kind,
                                          MemberRole::Producer, 0, 1});
  if (auto bias = tensor_attribute(node->input(2))) {
    groups_.add_member(group, ChannelMember{bias->path.module_path, bias->path.attribute, bias->kind,
                                            MemberRole::Producer, 0, 1});
  }
  if (groups.attribute) {
    groups_.add_member(group, ChannelMember{groups.attribute->module_path, groups.attribute->attribute,
                                            MemberKind::IntAttribute, MemberRole::Producer, 0, 1});
  }
  add_int_attribute_member(group, weight.path.module_path, "in_channels", MemberRole::Consumer);
  add_int_attribute_member(group, weight.path.module_path, "out_channels", MemberRole::Producer);
  tracks_[node->output(0)] = *track;
}

void DependencyAnalyzer::visit_batch_norm(Node* node) {
  auto track = track_of(node->input(0));
  if (track && (track->dim != 1 || track->block != 1)) {
    return freeze_inputs(node, fmt::format("{} normalises along a dim that is not the channel"
                                           " dim", describe(node)));
  }
  add_norm_members(node, track, {1, 2, 3, 4}, "num_features");
}

void DependencyAnalyzer::visit_layer_norm(Node* node) {
  auto track = track_of(node->input(0));
  if (!track) return add_norm_members(node, track, {2, 3}, "");
  if (track->dim != track->rank - 1 || track->block != 1 || !track->single()) {
    return freeze_inputs(node, fmt::format("{} normalises over more than the channel dim",
                                           describe(node)));
  }
  auto weight = tensor_attribute(node->input(2));
  if (weight && shape_follows(node->input(1), weight->path)) return add_norm_members(node, track, {2, 3}, "");
  auto shape_attribute = resolve_attribute(node->input(1));
  auto normalized_shape = int_list_attribute_value(shape_attribute);
  if (!normalized_shape || normalized_shape->size() != 1) {
    return freeze_inputs(node, fmt::format("{} has its normalized_shape fixed in the model's code"
                                           " (a constant), so its channel count cannot change",
                                           describe(node)));
  }
  groups_.add_member(track->group(), ChannelMember{shape_attribute->module_path,
                                                   shape_attribute->attribute,
                                                   MemberKind::IntListAttribute,
                                                   MemberRole::Normalization, 0, 1});
  add_norm_members(node, track, {2, 3}, "");
}

// [weight.size(0)] as channel_count_rewrite.h writes a LayerNorm's shape.
bool DependencyAnalyzer::shape_follows(const Value* list, const AttributePath& weight) {
  const Node* node = list->node();
  if (node->kind() != c10::prim::ListConstruct || node->inputs().size() != 1) return false;
  auto count = int_argument(node->input(0));
  return count && count->size_of && count->size_of->full() == weight.full();
}

// GroupNorm keeps its number of groups: each of its parts keeps the same
// number of channels, and the survivors of a part stay normalised together.
void DependencyAnalyzer::visit_group_norm(Node* node) {
  auto track = track_of(node->input(0));
  auto parts = int_argument(node->input(1));
  if (track && (track->dim != 1 || track->block != 1 || !track->single() || !parts ||
                parts->value < 1 || track->channels() % parts->value != 0)) {
    return freeze_inputs(node, fmt::format("{} normalises channels in a layout that is not"
                                           " supported", describe(node)));
  }
  if (track) groups_.require_parts(track->group(), parts->value);
  add_norm_members(node, track, {2, 3}, "num_channels");
}

void DependencyAnalyzer::visit_flatten(Node* node) {
  auto track = track_of(node->input(0));
  auto start = constant_int(node->input(1));
  auto end = constant_int(node->input(2));
  auto shape = shape_of(node->input(0));
  if (!track || !start || !end || !shape) {
    return freeze_inputs(node, fmt::format("{} with unknown shapes or dims", describe(node)));
  }
  const int64_t first = normalize_dim(*start, track->rank);
  const int64_t last = normalize_dim(*end, track->rank);
  if (!dims_exact(node->input(0), first, last + 1)) {
    return freeze_inputs(node, fmt::format("{} with shapes not known at the real input size", describe(node)));
  }
  ChannelTrack result = *track;
  result.rank = track->rank - (last - first);
  if (track->dim > last) {
    result.dim = track->dim - (last - first);
  } else if (track->dim == first) {
    // Channel c becomes a block of consecutive entries of the merged dim.
    result.block = track->block * product(*shape, first + 1, last + 1);
  } else if (track->dim > first) {
    return freeze_inputs(node, fmt::format("{} merges the channel dim into an outer dim, so a"
                                           " channel's entries are not contiguous", describe(node)));
  }
  tracks_[node->output(0)] = result;
}

// view/reshape is safe when the channel dim's size is written as -1 (so it
// follows the pruned count) and the dims before it are unchanged.
void DependencyAnalyzer::visit_view(Node* node) {
  auto track = track_of(node->input(0));
  auto in = shape_of(node->input(0));
  auto out = shape_of(node->output(0));
  if (!track || !in || !out || !channel_size_is_inferred(node->input(1), track->dim)) {
    return freeze_inputs(node, fmt::format("{} hard-codes the size of the channel dim (write -1"
                                           " there to make it prunable)", describe(node)));
  }
  if (!dims_exact(node->input(0), 0, in->size()) || !dims_exact(node->output(0), 0, out->size())) {
    return freeze_inputs(node, fmt::format("{} with shapes not known at the real input size", describe(node)));
  }
  const auto d = static_cast<size_t>(track->dim);
  const bool same_outer = out->size() > d && std::equal(in->begin(), in->begin() + d, out->begin());
  ChannelTrack result = *track;
  result.rank = static_cast<int64_t>(out->size());
  if (same_outer && out->size() == d + 1) {
    result.block = track->block * product(*in, d + 1, in->size());
  } else if (!(same_outer && (*out)[d] == (*in)[d])) {
    return freeze_inputs(node, fmt::format("{} reshapes across the channel dim", describe(node)));
  }
  tracks_[node->output(0)] = result;
}

bool DependencyAnalyzer::channel_size_is_inferred(const Value* shape_list, int64_t dim) {
  if (auto constant = constant_int_list(shape_list)) {
    return static_cast<int64_t>(constant->size()) > dim && (*constant)[dim] == -1;
  }
  const Node* list = shape_list->node();
  if (list->kind() != c10::prim::ListConstruct || static_cast<int64_t>(list->inputs().size()) <= dim) {
    return false;
  }
  auto entry = constant_int(list->input(dim));
  return entry && *entry == -1;
}

void DependencyAnalyzer::visit_reduction(Node* node) {
  auto track = track_of(node->input(0));
  auto dims = node->inputs().size() > 2 ? constant_int_list(node->input(1)) : std::nullopt;
  auto keepdim = node->inputs().size() > 2 ? constant_bool(node->input(2)) : std::nullopt;
  if (!track || !dims || !keepdim || track->block != 1) {
    return freeze_inputs(node, fmt::format("{} reduces over the channels", describe(node)));
  }
  ChannelTrack result = *track;
  for (int64_t dim : *dims) {
    const int64_t reduced = normalize_dim(dim, track->rank);
    if (reduced == track->dim) {
      return freeze_inputs(node, fmt::format("{} reduces over the channels", describe(node)));
    }
    if (!*keepdim) {
      result.rank -= 1;
      if (reduced < track->dim) result.dim -= 1;
    }
  }
  tracks_[node->output(0)] = result;
}

void DependencyAnalyzer::visit_permute(Node* node) {
  auto track = track_of(node->input(0));
  auto order = int_list_argument(node->input(1));
  if (!track || !order) return freeze_inputs(node, fmt::format("{} with a computed order", describe(node)));
  ChannelTrack result = *track;
  for (size_t i = 0; i < order->size(); ++i) {
    if (normalize_dim((*order)[i], track->rank) == track->dim) result.dim = static_cast<int64_t>(i);
  }
  tracks_[node->output(0)] = result;
}

void DependencyAnalyzer::visit_transpose(Node* node) {
  auto track = track_of(node->input(0));
  auto a = constant_int(node->input(1));
  auto b = constant_int(node->input(2));
  if (!track || !a || !b) return freeze_inputs(node, fmt::format("{} with computed dims", describe(node)));
  ChannelTrack result = *track;
  const int64_t first = normalize_dim(*a, track->rank);
  const int64_t second = normalize_dim(*b, track->rank);
  if (track->dim == first) result.dim = second;
  else if (track->dim == second) result.dim = first;
  tracks_[node->output(0)] = result;
}

}  // namespace mcompress::detail
