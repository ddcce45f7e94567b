#include "mcompress/sdk/dependency_graph.h"

#include <torch/script.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "mcompress/sdk/error.h"
#include "mcompress/sdk/evaluate.h"
#include "mcompress/sdk/graph.h"
#include "single_thread_scope.h"

namespace mcompress {

const char* to_string(MemberKind kind) {
  switch (kind) {
    case MemberKind::Parameter: return "parameter";
    case MemberKind::Buffer: return "buffer";
    case MemberKind::IntAttribute: return "int attribute";
    case MemberKind::IntListAttribute: return "int list attribute";
  }
  return "?";
}

const char* to_string(MemberRole role) {
  switch (role) {
    case MemberRole::Producer: return "producer";
    case MemberRole::Consumer: return "consumer";
    case MemberRole::Normalization: return "normalization";
  }
  return "?";
}

std::vector<std::string> ChannelGroup::producer_layers() const {
  std::vector<std::string> layers;
  for (const auto& member : members) {
    if (member.role != MemberRole::Producer || !member.is_tensor()) continue;
    if (std::find(layers.begin(), layers.end(), member.module_path) == layers.end()) {
      layers.push_back(member.module_path);
    }
  }
  return layers;
}

std::vector<const ChannelGroup*> DependencyGraph::prunable_groups() const {
  std::vector<const ChannelGroup*> result;
  for (const auto& group : groups) {
    if (!group.frozen) result.push_back(&group);
  }
  return result;
}

std::vector<const ChannelGroup*> DependencyGraph::frozen_groups() const {
  std::vector<const ChannelGroup*> result;
  for (const auto& group : groups) {
    if (group.frozen) result.push_back(&group);
  }
  return result;
}

namespace {

using torch::jit::Block;
using torch::jit::Node;
using torch::jit::Value;
using Shape = std::vector<int64_t>;

// ---------------------------------------------------------------------------
// Op families, by qualified name. Kept as data so supporting an op is one line.

bool is_metadata_read(const std::string& op) {
  // Ops that read only a tensor's metadata or identity: the channel count may
  // change under them without changing what the model computes with it.
  static const std::unordered_set<std::string> ops = {
      "aten::size",        "aten::dim",         "aten::len",
      "prim::device",      "prim::dtype",       "prim::layout",       "prim::is_cuda",
      "prim::is_nested",   "prim::requires_grad", "aten::__is__",     "aten::__isnot__",
      "prim::shape",       "aten::is_floating_point", "aten::format", "prim::RaiseException",
      "aten::warn",        "aten::is_grad_enabled"};
  return ops.count(op) > 0;
}

bool is_elementwise_unary(const std::string& op) {
  // Same shape out as in, each output element depends on one input element.
  static const std::unordered_set<std::string> ops = {
      "aten::relu",      "aten::relu_",        "aten::relu6",       "aten::gelu",
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
      "aten::type_as"};
  return ops.count(op) > 0;
}

bool is_elementwise_binary(const std::string& op) {
  static const std::unordered_set<std::string> ops = {
      "aten::add", "aten::add_", "aten::sub", "aten::sub_", "aten::mul",     "aten::mul_",
      "aten::div", "aten::div_", "aten::maximum", "aten::minimum"};
  return ops.count(op) > 0;
}

// Pooling over the last `n` dims; 0 when `op` is not a pooling op.
int64_t pooled_dims(const std::string& op) {
  static const std::unordered_map<std::string, int64_t> ops = {
      {"aten::max_pool1d", 1},          {"aten::max_pool2d", 2},
      {"aten::max_pool3d", 3},          {"aten::avg_pool1d", 1},
      {"aten::avg_pool2d", 2},          {"aten::avg_pool3d", 3},
      {"aten::adaptive_avg_pool1d", 1}, {"aten::adaptive_avg_pool2d", 2},
      {"aten::adaptive_avg_pool3d", 3}, {"aten::adaptive_max_pool1d", 1},
      {"aten::adaptive_max_pool2d", 2}, {"aten::adaptive_max_pool3d", 3},
      {"aten::max_pool2d_with_indices", 2}, {"aten::max_pool1d_with_indices", 1}};
  auto it = ops.find(op);
  return it == ops.end() ? 0 : it->second;
}

int64_t conv_spatial_dims(const std::string& op) {
  if (op == "aten::conv1d") return 1;
  if (op == "aten::conv2d") return 2;
  if (op == "aten::conv3d") return 3;
  return 0;
}

std::string op_name(const Node* node) { return node->kind().toQualString(); }

// "aten::linear (fc1)" for a node reading fc1's weight, else the op and its
// source line when known; used in frozen-group reasons.
std::string describe(const Node* node) {
  for (const Value* input : node->inputs()) {
    if (auto path = attribute_path(input)) {
      if (!path->module_path.empty()) return fmt::format("{} ({})", op_name(node), path->module_path);
    }
  }
  auto location = node->sourceRange().file_line_col();
  if (location && !std::get<0>(*location).empty()) {
    const std::string& file = std::get<0>(*location);
    return fmt::format("{} at {}:{}", op_name(node), file.substr(file.find_last_of('/') + 1),
                       std::get<1>(*location));
  }
  return op_name(node);
}

std::optional<int64_t> constant_int(const Value* value) {
  auto ivalue = torch::jit::toIValue(value);
  if (ivalue && ivalue->isInt()) return ivalue->toInt();
  return std::nullopt;
}

std::optional<bool> constant_bool(const Value* value) {
  auto ivalue = torch::jit::toIValue(value);
  if (ivalue && ivalue->isBool()) return ivalue->toBool();
  return std::nullopt;
}

// A literal list such as [0, 2, 3, 1]: a constant, or a ListConstruct of constants.
std::optional<std::vector<int64_t>> constant_int_list(const Value* value) {
  auto ivalue = torch::jit::toIValue(value);
  if (ivalue && ivalue->isIntList()) return ivalue->toIntVector();
  if (value->node()->kind() != c10::prim::ListConstruct) return std::nullopt;
  std::vector<int64_t> list;
  for (const Value* element : value->node()->inputs()) {
    auto entry = constant_int(element);
    if (!entry) return std::nullopt;
    list.push_back(*entry);
  }
  return list;
}

int64_t product(const Shape& shape, size_t begin, size_t end) {
  int64_t result = 1;
  for (size_t i = begin; i < end && i < shape.size(); ++i) result *= shape[i];
  return result;
}

int64_t normalize_dim(int64_t dim, int64_t rank) { return dim < 0 ? dim + rank : dim; }

// ---------------------------------------------------------------------------
// Union-find over channel groups.

struct MemberRecord {
  ChannelMember member;
  int64_t sequence = 0;  // graph order, to keep member lists readable after merges
};

struct GroupRecord {
  int64_t size = 0;
  int64_t created = 0;
  int64_t parts = 1;
  std::vector<MemberRecord> members;
  std::vector<std::string> frozen_reasons;
};

class GroupSet {
 public:
  int64_t create(int64_t size) {
    parent_.push_back(static_cast<int64_t>(parent_.size()));
    GroupRecord record;
    record.size = size;
    record.created = static_cast<int64_t>(records_.size());
    records_.push_back(std::move(record));
    return parent_.back();
  }

  int64_t find(int64_t group) {
    while (parent_[group] != group) {
      parent_[group] = parent_[parent_[group]];
      group = parent_[group];
    }
    return group;
  }

  // Coupled channels must be removed together. Groups of different sizes
  // cannot be the same channels: both are frozen and stay separate.
  int64_t merge(int64_t a, int64_t b, const std::string& where) {
    a = find(a);
    b = find(b);
    if (a == b) return a;
    if (records_[a].size != records_[b].size) {
      const auto reason = fmt::format("{} couples it with {} channels, this group has {}", where,
                                      records_[b].size, records_[a].size);
      freeze(a, reason);
      freeze(b, reason);
      return a;
    }
    if (records_[b].created < records_[a].created) std::swap(a, b);
    parent_[b] = a;
    auto& into = records_[a];
    auto& from = records_[b];
    into.members.insert(into.members.end(), from.members.begin(), from.members.end());
    into.frozen_reasons.insert(into.frozen_reasons.end(), from.frozen_reasons.begin(),
                               from.frozen_reasons.end());
    into.parts = std::lcm(into.parts, from.parts);
    from = GroupRecord{};
    return a;
  }

  void add_member(int64_t group, ChannelMember member) {
    records_[find(group)].members.push_back({std::move(member), next_sequence_++});
  }

  void freeze(int64_t group, const std::string& reason) {
    auto& reasons = records_[find(group)].frozen_reasons;
    if (std::find(reasons.begin(), reasons.end(), reason) == reasons.end()) reasons.push_back(reason);
  }

  int64_t size(int64_t group) { return records_[find(group)].size; }
  void require_parts(int64_t group, int64_t parts) {
    auto& record = records_[find(group)];
    record.parts = std::lcm(record.parts, parts);
  }
  GroupRecord& record(int64_t group) { return records_[find(group)]; }
  std::vector<int64_t> roots() {
    std::vector<int64_t> result;
    for (int64_t i = 0; i < static_cast<int64_t>(parent_.size()); ++i) {
      if (find(i) == i) result.push_back(i);
    }
    return result;
  }

 private:
  std::vector<int64_t> parent_;
  std::vector<GroupRecord> records_;
  int64_t next_sequence_ = 0;
};

// A run of consecutive channels of one group; group -1 marks channels that
// belong to no group (e.g. the model input concatenated with features).
struct Segment {
  int64_t group = -1;
  int64_t channels = 0;
};

// Where a value's channels are: which groups (one, or several index ranges
// after a concatenation), along which dim of a tensor of which rank, and how
// many consecutive entries of that dim one channel owns.
struct ChannelTrack {
  std::vector<Segment> segments;
  int64_t dim = 0;
  int64_t rank = 0;
  int64_t block = 1;

  static ChannelTrack of_group(int64_t group, int64_t channels, int64_t dim, int64_t rank) {
    return ChannelTrack{{Segment{group, channels}}, dim, rank, 1};
  }
  bool single() const { return segments.size() == 1 && segments[0].group >= 0; }
  int64_t group() const { return segments.front().group; }
  int64_t channels() const {
    int64_t total = 0;
    for (const auto& segment : segments) total += segment.channels;
    return total;
  }
  bool same_layout(const ChannelTrack& other) const {
    if (rank - dim != other.rank - other.dim || block != other.block ||
        segments.size() != other.segments.size()) {
      return false;
    }
    for (size_t i = 0; i < segments.size(); ++i) {
      if (segments[i].channels != other.segments[i].channels ||
          (segments[i].group < 0) != (other.segments[i].group < 0)) {
        return false;
      }
    }
    return true;
  }
};

// The shape of every top-level tensor value. Running a large model at its
// real input size dominates the analysis, yet most shapes it needs (ranks,
// channel counts, the output of adaptive pooling) do not depend on the
// spatial size: images are first run at two small sizes, and dims that differ
// between the two runs are `varying`. Only when the analysis needs a varying
// dim (a flatten of a feature map whose size follows the input) is the model
// run again at the real size.
struct ObservedShapes {
  std::unordered_map<const Value*, Shape> shapes;
  std::unordered_map<const Value*, std::vector<bool>> varying;  // empty when observed at the real size
};

// The shapes of every top-level tensor value of the graph for each of
// `inputs`. The graph taps each value's size rather than the value itself, so
// activations are freed as the model runs instead of all being held to the end.
std::vector<std::unordered_map<const Value*, Shape>> run_for_shapes(const torch::jit::Module& model,
                                                                    const std::shared_ptr<torch::jit::Graph>& graph,
                                                                    const std::vector<torch::Tensor>& inputs) {
  std::vector<Value*> tensors;
  for (Node* node : graph->nodes()) {
    for (Value* output : node->outputs()) {
      if (output->type()->kind() == c10::TypeKind::TensorType) tensors.push_back(output);
    }
  }
  std::vector<Value*> sizes;
  for (Value* tensor : tensors) {
    torch::jit::WithInsertPoint after(tensor->node()->next());
    sizes.push_back(graph->insert(torch::jit::aten::size, {tensor}));
  }
  auto remove_sizes = [&] {
    for (Value* size : sizes) size->node()->destroy();
  };
  std::vector<std::vector<c10::IValue>> input_sets;
  for (const auto& input : inputs) input_sets.push_back({input});
  std::vector<std::vector<c10::IValue>> runs;
  try {
    EvalModeGuard eval_mode(model);
    torch::NoGradGuard no_grad;
    runs = run_with_taps_on_each(model, graph, sizes, input_sets);
  } catch (...) {
    remove_sizes();
    throw;
  }
  remove_sizes();
  std::vector<std::unordered_map<const Value*, Shape>> result(inputs.size());
  for (size_t run = 0; run < runs.size(); ++run) {
    auto& shapes = result[run];
    for (size_t i = 0; i < tensors.size(); ++i) shapes[tensors[i]] = runs[run][i].toIntVector();
    if (graph->inputs().size() > 1) shapes[graph->inputs()[1]] = inputs[run].sizes().vec();
  }
  return result;
}

ObservedShapes observe_real_shapes(const torch::jit::Module& model, const std::shared_ptr<torch::jit::Graph>& graph,
                                   const torch::Tensor& example_input) {
  try {
    return ObservedShapes{std::move(run_for_shapes(model, graph, {example_input}).front()), {}};
  } catch (const std::exception& error) {
    throw Error(fmt::format(
        "dependency analysis could not run the model on an example input of shape {}: {}",
        c10::str(example_input.sizes()), error.what()));
  }
}

// std::nullopt when the input is not a large image or the model refuses small ones.
std::optional<ObservedShapes> observe_small_shapes(const torch::jit::Module& model,
                                                   const std::shared_ptr<torch::jit::Graph>& graph,
                                                   const torch::Tensor& example_input) {
  // 64 apart, so a dim computed by integer division by any stride up to 64
  // differs between the two runs whenever it follows the input size.
  constexpr int64_t kSmall = 32, kLarger = 96;
  if (example_input.dim() != 4 || example_input.size(2) <= kLarger || example_input.size(3) <= kLarger) {
    return std::nullopt;
  }
  auto sized = [&](int64_t side) {
    return torch::randn({1, example_input.size(1), side, side}, example_input.options());
  };
  ObservedShapes observed;
  std::unordered_map<const Value*, Shape> larger;
  try {
    // Side by side, one thread each: the larger run takes most of the time.
    auto runs = run_for_shapes(model, graph, {sized(kSmall), sized(kLarger)});
    observed.shapes = std::move(runs[0]);
    larger = std::move(runs[1]);
  } catch (const std::exception&) {
    return std::nullopt;  // e.g. a model that needs its full input size
  }
  for (auto& [value, shape] : observed.shapes) {
    auto it = larger.find(value);
    std::vector<bool> varies(shape.size(), true);
    if (it != larger.end() && it->second.size() == shape.size()) {
      for (size_t d = 0; d < shape.size(); ++d) varies[d] = shape[d] != it->second[d];
    }
    observed.varying[value] = std::move(varies);
  }
  return observed;
}

// A tensor held by a module attribute, as a layer argument refers to it.
struct TensorAttribute {
  AttributePath path;
  torch::Tensor tensor;
  MemberKind kind = MemberKind::Parameter;
};

// An int argument of an op: its value and, when it is not a constant in the
// code, the module attribute it is read from.
struct IntArgument {
  int64_t value = 0;
  std::optional<AttributePath> attribute;
  // Set when the code computes it as `weight.size(0)` of this tensor
  // (channel_count_rewrite.h), so it follows the pruned weight by itself.
  std::optional<AttributePath> size_of;
};

// A Tensor[] built in the graph (ListConstruct, then append): what it holds
// at the point the traversal has reached. A list used in any other way is
// `escaped`: its channels and anything appended later are frozen.
struct ListContent {
  std::vector<const Value*> elements;
  const Block* block = nullptr;  // appends elsewhere are conditional
  bool escaped = false;
};

// ---------------------------------------------------------------------------

class DependencyAnalyzer {
 public:
  DependencyAnalyzer(const torch::jit::Module& model, std::shared_ptr<torch::jit::Graph> graph,
                     ObservedShapes shapes)
      : model_(model), graph_(std::move(graph)), shapes_(std::move(shapes.shapes)),
        varying_(std::move(shapes.varying)) {}

  // The analysis met a dim that depends on the input size while shapes were
  // observed on smaller inputs: run it again with shapes at the real size.
  bool needs_real_shapes() const { return needs_real_shapes_; }

  DependencyGraph analyze() {
    visit_block(graph_->block());
    freeze_inputs(graph_->return_node(), "feeds the model output");
    find_parameters_used_elsewhere(graph_->block());
    merge_groups_sharing_tensors();
    freeze_overlapping_ranges();
    freeze_groups_with_fixed_dims();
    return collect_groups();
  }

 private:
  // --- traversal -----------------------------------------------------------

  void visit_block(Block* block) {
    for (Node* node : block->nodes()) visit_node(node);
  }

  void visit_node(Node* node) {
    const std::string op = op_name(node);
    if (node->kind() == c10::prim::If) return visit_if(node);
    if (node->kind() == c10::prim::Loop) return visit_loop(node);
    if (node->kind() == c10::prim::ListConstruct && is_tensor_list(node->output())) {
      return visit_list_construct(node);
    }
    if (uses_list(node) && visit_list_use(node)) return;
    if (!has_tracked_input(node) && !is_layer(op)) return;
    if (op == "aten::size" && reads_channel_count(node)) {
      return freeze_inputs(node, fmt::format("{} reads the channel count, which pruning would change",
                                             describe(node)));
    }
    if (is_metadata_read(op)) return;
    if (is_elementwise_unary(op) || node->kind() == c10::prim::unchecked_cast) return pass_through(node);
    if (is_elementwise_binary(op)) return visit_binary(node);
    if (pooled_dims(op) > 0) return visit_pooling(node, pooled_dims(op));
    if (op == "aten::linear") return visit_linear(node);
    if (conv_spatial_dims(op) > 0) return visit_conv(node, conv_spatial_dims(op));
    if (op == "aten::batch_norm" || op == "aten::instance_norm") return visit_batch_norm(node);
    if (op == "aten::layer_norm") return visit_layer_norm(node);
    if (op == "aten::group_norm") return visit_group_norm(node);
    if (op == "aten::flatten") return visit_flatten(node);
    if (op == "aten::view" || op == "aten::reshape") return visit_view(node);
    if (op == "aten::mean" || op == "aten::sum" || op == "aten::amax") return visit_reduction(node);
    if (op == "aten::softmax" || op == "aten::log_softmax") return visit_softmax(node);
    if (op == "aten::permute") return visit_permute(node);
    if (op == "aten::transpose") return visit_transpose(node);
    if (node->kind() == c10::prim::ListConstruct || node->kind() == c10::prim::TupleConstruct) {
      return freeze_inputs(node, describe_packing(node));
    }
    freeze_inputs(node, fmt::format("used by {}, which the dependency analysis does not support",
                                    describe(node)));
  }

  // x.size(1), x.size()[1] or `n, c, h, w = x.size()` with c used: code that
  // builds shapes from the channel count would break when it changes.
  bool reads_channel_count(const Node* node) {
    auto track = track_of(node->input(0));
    if (!track) return false;
    if (node->inputs().size() > 1) {
      auto dim = constant_int(node->input(1));
      return !dim || normalize_dim(*dim, track->rank) == track->dim;
    }
    for (const auto& use : node->output()->uses()) {
      const Node* user = use.user;
      if (user->kind() == c10::prim::ListUnpack &&
          static_cast<int64_t>(user->outputs().size()) > track->dim &&
          user->output(track->dim)->hasUses()) {
        return true;
      }
      if (user->kind() == c10::aten::__getitem__) {
        auto index = constant_int(user->input(1));
        if (!index || normalize_dim(*index, track->rank) == track->dim) {
          // A computed index may read any dim; loops over spatial dims (BN's
          // batch-size check) index from 2 upwards and stay allowed.
          if (index || !inside_loop(user)) return true;
        }
      }
    }
    return false;
  }

  static bool inside_loop(const Node* node) {
    for (const Block* block = node->owningBlock(); block && block->owningNode();
         block = block->owningNode()->owningBlock()) {
      if (block->owningNode()->kind() == c10::prim::Loop) return true;
    }
    return false;
  }

  // Tensors reach stack/tuples through a list; name the op that consumes it.
  static std::string describe_packing(const Node* node) {
    const auto& uses = node->output()->uses();
    if (uses.empty()) return fmt::format("packed into a {}", op_name(node));
    const Node* user = uses.front().user;
    if (user == user->owningGraph()->return_node()) return "feeds the model output";
    return fmt::format("passed in a {} to {}, which the dependency analysis does not support",
                       op_name(node), describe(user));
  }

  static bool is_layer(const std::string& op) {
    // Layers record how they use their parameters even when their input is untracked.
    return op == "aten::linear" || conv_spatial_dims(op) > 0 || op == "aten::batch_norm" ||
           op == "aten::instance_norm" || op == "aten::layer_norm" || op == "aten::group_norm";
  }

  // A branch may carry the channels only if every branch carries the same ones.
  void visit_if(Node* node) {
    for (Block* block : node->blocks()) visit_block(block);
    for (size_t i = 0; i < node->outputs().size(); ++i) {
      std::vector<const Value*> branches;
      for (Block* block : node->blocks()) branches.push_back(block->outputs()[i]);
      join_branches(node->outputs()[i], branches);
    }
  }

  void join_branches(Value* output, const std::vector<const Value*>& branches) {
    std::optional<ChannelTrack> joined;
    bool any_untracked = false;
    for (const Value* branch : branches) {
      if (lists_.count(branch)) {
        escape_list(branch, "a list returned from a prim::If branch");
        continue;
      }
      auto track = track_of(branch);
      if (!track) {
        any_untracked = true;
        continue;
      }
      if (!joined) {
        joined = track;
      } else if (joined->same_layout(*track)) {
        merge_tracks(*joined, *track, "a prim::If joining branches");
      } else {
        freeze_track(*joined, "prim::If branches return channels in different layouts");
        freeze_track(*track, "prim::If branches return channels in different layouts");
        return;
      }
    }
    if (!joined) return;
    // Keep tracking a frozen group: what it meets downstream is frozen with it.
    if (any_untracked) freeze_track(*joined, "only some branches of a prim::If carry these channels");
    tracks_[output] = *track_of_joined(*joined);
  }

  std::optional<ChannelTrack> track_of_joined(ChannelTrack track) {
    for (auto& segment : track.segments) {
      if (segment.group >= 0) segment.group = groups_.find(segment.group);
    }
    return track;
  }

  // Loop-carried channels could change size per iteration; not supported.
  void visit_loop(Node* node) {
    freeze_inputs(node, "carried through a prim::Loop (not supported)");
    for (Block* block : node->blocks()) {
      visit_block(block);
      for (const Value* output : block->outputs()) {
        if (auto track = track_of(output)) freeze_track(*track, "carried through a prim::Loop");
        if (lists_.count(output)) escape_list(output, "a list carried through a prim::Loop");
      }
    }
  }

  // --- lists and concatenation ----------------------------------------------

  static bool is_tensor_list(const Value* value) {
    auto list = value->type()->cast<c10::ListType>();
    return list && list->getElementType()->kind() == c10::TypeKind::TensorType;
  }

  void visit_list_construct(Node* node) {
    auto content = std::make_shared<ListContent>();
    content->block = node->owningBlock();
    for (const Value* input : node->inputs()) content->elements.push_back(input);
    lists_[node->output()] = std::move(content);
  }

  bool uses_list(const Node* node) {
    return std::any_of(node->inputs().begin(), node->inputs().end(),
                       [&](const Value* input) { return lists_.count(input) > 0; });
  }

  // Handles cat, append and aliases of tracked lists; returns false for other
  // uses, after the list's channels have been frozen.
  bool visit_list_use(Node* node) {
    const std::string op = op_name(node);
    if (op == "aten::cat" && lists_.count(node->input(0))) return visit_cat(node), true;
    if (op == "aten::append" && lists_.count(node->input(0))) {
      auto content = lists_.at(node->input(0));
      const Value* element = node->input(1);
      if (content->escaped || node->owningBlock() != content->block) {
        if (auto track = track_of(element)) {
          freeze_track(*track, content->escaped
                                   ? "appended to a list that is used in an unsupported way"
                                   : "appended to a list inside a branch");
        }
        content->escaped = true;
      } else {
        content->elements.push_back(element);
      }
      lists_[node->output()] = content;
      return true;
    }
    if (node->kind() == c10::prim::unchecked_cast && lists_.count(node->input(0))) {
      lists_[node->output()] = lists_.at(node->input(0));
      return true;
    }
    if (op == "aten::len") return true;
    for (const Value* input : node->inputs()) {
      if (lists_.count(input)) {
        escape_list(input, fmt::format("in a list used by {}, which the dependency analysis does"
                                       " not support", describe(node)));
      }
    }
    return false;
  }

  void escape_list(const Value* list, const std::string& reason) {
    auto content = lists_.at(list);
    content->escaped = true;
    for (const Value* element : content->elements) {
      if (auto track = track_of(element)) freeze_track(*track, reason);
    }
  }

  // Concatenating along the channel dim gives each input an index range of
  // the output; along another dim the inputs' channels must be the same ones.
  void visit_cat(Node* node) {
    auto content = lists_.at(node->input(0));
    auto dim = constant_int(node->input(1));
    std::vector<std::optional<ChannelTrack>> tracks;
    std::optional<ChannelTrack> first;
    for (const Value* element : content->elements) {
      tracks.push_back(track_of(element));
      if (tracks.back() && !first) first = tracks.back();
    }
    if (!first) return;  // nothing prunable flows through
    const std::string where = describe(node);
    auto fail = [&](const std::string& reason) {
      escape_list(node->input(0), reason);
    };
    if (content->escaped) return fail(fmt::format("{} reads a list used in an unsupported way", where));
    if (!dim) return fail(fmt::format("{} along a computed dim", where));
    const int64_t rank = first->rank;
    const int64_t cat_dim = normalize_dim(*dim, rank);
    if (cat_dim != first->dim) {
      // e.g. batches or sequences joined: every input must carry the same channels.
      ChannelTrack joined = *first;
      for (const auto& track : tracks) {
        if (!track || !track->same_layout(joined) || track->dim != joined.dim) {
          return fail(fmt::format("{} joins values whose channels differ", where));
        }
        merge_tracks(joined, *track, where);
      }
      tracks_[node->output()] = *track_of_joined(joined);
      return;
    }
    ChannelTrack result;
    result.dim = cat_dim;
    result.rank = rank;
    result.block = 1;
    for (size_t i = 0; i < tracks.size(); ++i) {
      if (tracks[i]) {
        if (tracks[i]->dim != cat_dim || tracks[i]->rank != rank || tracks[i]->block != 1) {
          return fail(fmt::format("{} concatenates channels in different layouts", where));
        }
        result.segments.insert(result.segments.end(), tracks[i]->segments.begin(),
                               tracks[i]->segments.end());
        continue;
      }
      auto shape = shape_of(content->elements[i]);
      if (!shape || static_cast<int64_t>(shape->size()) != rank) {
        return fail(fmt::format("{} concatenates a value of unknown shape", where));
      }
      result.segments.push_back(Segment{-1, (*shape)[cat_dim]});
    }
    tracks_[node->output()] = result;
  }

  // --- pass-through ops ------------------------------------------------------

  void pass_through(Node* node) {
    auto track = track_of(node->input(0));
    if (!track) return freeze_inputs(node, fmt::format("{} takes these channels in an unexpected"
                                                       " argument", describe(node)));
    for (Value* output : node->outputs()) {
      if (output->type()->kind() == c10::TypeKind::TensorType) tracks_[output] = *track;
    }
  }

  // Residual adds and squeeze-excitation multiplies ([N,C,H,W] * [N,C,1,1])
  // tie the channels of both operands.
  void visit_binary(Node* node) {
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
  bool add_per_channel_parameter(Node* node, size_t index, const ChannelTrack& track) {
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

  void merge_tracks(ChannelTrack& into, const ChannelTrack& from, const std::string& where) {
    for (size_t i = 0; i < into.segments.size(); ++i) {
      if (into.segments[i].group < 0) continue;
      into.segments[i].group = groups_.merge(into.segments[i].group, from.segments[i].group, where);
    }
  }

  // Whether `other`, broadcast against a value tracked by `track`, has more
  // than one entry along the channel dim (then it would have to be pruned too).
  bool spans_channel_dim(const Value* other, const ChannelTrack& track) {
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
  std::optional<Shape> created_shape(const Value* value, int depth = 0) {
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

  std::optional<Shape> int_list_value(const Value* list, int depth) {
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

  std::optional<int64_t> int_value(const Value* value, int depth) {
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

  void visit_pooling(Node* node, int64_t dims) {
    auto track = track_of(node->input(0));
    if (track && track->block == 1 && track->dim < track->rank - dims) return pass_through(node);
    freeze_inputs(node, fmt::format("{} pools over the channel dim", describe(node)));
  }

  void visit_softmax(Node* node) {
    auto track = track_of(node->input(0));
    auto dim = constant_int(node->input(1));
    if (track && dim && normalize_dim(*dim, track->rank) != track->dim) return pass_through(node);
    freeze_inputs(node, fmt::format("{} normalises across channels", describe(node)));
  }

  // --- layers ----------------------------------------------------------------

  void visit_linear(Node* node) {
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

  void visit_conv(Node* node, int64_t spatial_dims) {
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
      freeze_inputs(node, fmt::format("grouped {} (groups={}) is not supported", describe(node),
                                      groups->value));
      fix_dim(weight->path.full(), kAllDims, fmt::format("{} is a grouped convolution", weight->path.full()));
    }
  }

  // A depthwise conv maps channel c to channel c: input and output are one group.
  void visit_depthwise_conv(Node* node, const TensorAttribute& weight,
                            const IntArgument& groups, int64_t channel_dim);

  void visit_batch_norm(Node* node) {
    auto track = track_of(node->input(0));
    if (track && (track->dim != 1 || track->block != 1)) {
      return freeze_inputs(node, fmt::format("{} normalises along a dim that is not the channel"
                                             " dim", describe(node)));
    }
    add_norm_members(node, track, {1, 2, 3, 4}, "num_features");
  }

  void visit_layer_norm(Node* node) {
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
  bool shape_follows(const Value* list, const AttributePath& weight) {
    const Node* node = list->node();
    if (node->kind() != c10::prim::ListConstruct || node->inputs().size() != 1) return false;
    auto count = int_argument(node->input(0));
    return count && count->size_of && count->size_of->full() == weight.full();
  }

  // GroupNorm keeps its number of groups: each of its parts keeps the same
  // number of channels, and the survivors of a part stay normalised together.
  void visit_group_norm(Node* node) {
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

  void visit_flatten(Node* node) {
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
  void visit_view(Node* node) {
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

  bool channel_size_is_inferred(const Value* shape_list, int64_t dim) {
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

  void visit_reduction(Node* node) {
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

  void visit_permute(Node* node) {
    auto track = track_of(node->input(0));
    auto order = int_list_argument(node->input(1));
    if (!track || !order) return freeze_inputs(node, fmt::format("{} with a computed order", describe(node)));
    ChannelTrack result = *track;
    for (size_t i = 0; i < order->size(); ++i) {
      if (normalize_dim((*order)[i], track->rank) == track->dim) result.dim = static_cast<int64_t>(i);
    }
    tracks_[node->output(0)] = result;
  }

  void visit_transpose(Node* node) {
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

  // --- members ---------------------------------------------------------------

  // Adds the layer's input dim (weight dim 1) to the groups of its input, one
  // member per index range, or records that dim as fixed when the input's
  // channels are not prunable.
  void couple_input(Node* node, const TensorAttribute& weight, const Value* input,
                    int64_t channel_dim, int64_t expected_inputs, const char* count_attribute);

  void create_output_group(Node* node, const TensorAttribute& weight, int64_t channels,
                           int64_t channel_dim, int64_t rank, const char* count_attribute);

  void add_norm_members(Node* node, const std::optional<ChannelTrack>& track,
                        const std::vector<size_t>& inputs, const char* count_attribute);

  // Calls add(group, offset in entries, extent) for every tracked range.
  template <typename Add>
  static void for_each_range(const ChannelTrack& track, Add add) {
    const int64_t extent = track.channels() * track.block;
    int64_t offset = 0;
    for (const auto& segment : track.segments) {
      if (segment.group >= 0) add(segment.group, offset, extent);
      offset += segment.channels * track.block;
    }
  }

  // Counts such as in_features must follow the pruned size when the module
  // stores them as attributes (TorchScript constants cannot and need not change).
  void add_int_attribute_member(int64_t group, const std::string& module_path,
                                const std::string& attribute, MemberRole role, int64_t block = 1,
                                int64_t offset = 0, int64_t extent = 0) {
    if (attribute.empty()) return;
    auto module = submodule_at(model_, module_path);
    // hasattr() is also true for constants, which are baked into the code.
    auto slot = module.type()->findAttributeSlot(attribute);
    if (!slot || !module._ivalue()->getSlot(*slot).isInt()) return;
    ChannelMember member{module_path, attribute, MemberKind::IntAttribute, role, 0, block};
    member.offset = offset;
    member.extent = extent;
    groups_.add_member(group, member);
  }

  // --- freezing --------------------------------------------------------------

  void freeze_track(const ChannelTrack& track, const std::string& reason) {
    for (const auto& segment : track.segments) {
      if (segment.group >= 0) groups_.freeze(segment.group, reason);
    }
  }

  void freeze_inputs(Node* node, const std::string& reason) {
    for (const Value* input : node->inputs()) {
      if (auto track = track_of(input)) freeze_track(*track, reason);
      if (lists_.count(input)) escape_list(input, reason);
    }
  }

  void fix_dim(const std::string& tensor, int64_t dim, const std::string& reason) {
    fixed_dims_[tensor].emplace(dim, reason);
  }

  // A parameter read by anything other than the layers that declared it as a
  // member (weight tying, a matmul with a parameter, ...) cannot be sliced.
  void find_parameters_used_elsewhere(Block* block) {
    for (Node* node : block->nodes()) {
      for (Block* inner : node->blocks()) find_parameters_used_elsewhere(inner);
      if (node->kind() != c10::prim::GetAttr) continue;
      auto path = attribute_path(node->output());
      if (!path || !is_tensor_type(node->output())) continue;
      check_uses(node->output(), path->full());
    }
  }

  void check_uses(const Value* value, const std::string& tensor) {
    for (const auto& use : value->uses()) {
      const Node* user = use.user;
      if (understood_uses_.count({user, use.offset}) || is_metadata_read(op_name(user))) continue;
      const Node* owner = user->owningBlock()->owningNode();
      if (user->kind() == c10::prim::Return && owner && owner->kind() == c10::prim::If) {
        check_uses(owner->outputs()[use.offset], tensor);
      } else if (user->kind() == c10::prim::unchecked_cast) {
        check_uses(user->output(), tensor);
      } else {
        fix_dim(tensor, kAllDims, fmt::format("{} is also used by {}", tensor, describe(user)));
      }
    }
  }

  // --- final assembly --------------------------------------------------------

  // One tensor range sliced by two groups means those groups are the same channels.
  void merge_groups_sharing_tensors() {
    std::map<std::tuple<std::string, MemberKind, int64_t, int64_t>, int64_t> owner;
    for (int64_t root : groups_.roots()) {
      for (const auto& record : std::vector<MemberRecord>(groups_.record(root).members)) {
        const auto& m = record.member;
        const auto key = std::make_tuple(m.full_name(), m.kind, m.dim, m.offset);
        auto [it, inserted] = owner.emplace(key, root);
        if (!inserted) {
          it->second = groups_.merge(it->second, root,
                                     fmt::format("{} (shared by two layers)", m.full_name()));
        }
      }
    }
  }

  // Two layouts of one tensor dim (a layer reading a concatenation in one
  // place and something else in another) cannot both be sliced.
  void freeze_overlapping_ranges() {
    struct Range {
      int64_t begin, end, extent, group;
    };
    std::map<std::tuple<std::string, MemberKind, int64_t>, std::vector<Range>> ranges;
    for (int64_t root : groups_.roots()) {
      const auto& record = groups_.record(root);
      for (const auto& member_record : record.members) {
        const auto& m = member_record.member;
        ranges[std::make_tuple(m.full_name(), m.kind, m.dim)].push_back(
            {m.offset, m.offset + record.size * m.block_size, m.entries(record.size), root});
      }
    }
    for (auto& [key, list] : ranges) {
      std::sort(list.begin(), list.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
      for (size_t i = 0; i < list.size(); ++i) {
        for (size_t j = i + 1; j < list.size(); ++j) {
          const bool same = list[i].begin == list[j].begin && list[i].end == list[j].end;
          const bool overlap = list[j].begin < list[i].end;
          if ((overlap && !same) || list[i].extent != list[j].extent) {
            const auto reason = fmt::format("{} is read in two different channel layouts", std::get<0>(key));
            groups_.freeze(list[i].group, reason);
            groups_.freeze(list[j].group, reason);
          }
        }
      }
    }
  }

  void freeze_groups_with_fixed_dims() {
    for (int64_t root : groups_.roots()) {
      for (const auto& record : groups_.record(root).members) {
        auto it = fixed_dims_.find(record.member.full_name());
        if (it == fixed_dims_.end() || !record.member.is_tensor()) continue;
        for (const auto& [dim, reason] : it->second) {
          if (dim == kAllDims || dim == record.member.dim) groups_.freeze(root, reason);
        }
      }
    }
  }

  DependencyGraph collect_groups() {
    std::vector<int64_t> roots = groups_.roots();
    std::sort(roots.begin(), roots.end(), [&](int64_t a, int64_t b) {
      return groups_.record(a).created < groups_.record(b).created;
    });
    DependencyGraph result;
    for (int64_t root : roots) {
      result.groups.push_back(make_group(groups_.record(root), static_cast<int64_t>(result.groups.size())));
    }
    return result;
  }

  ChannelGroup make_group(GroupRecord& record, int64_t id) {
    std::stable_sort(record.members.begin(), record.members.end(),
                     [](const MemberRecord& a, const MemberRecord& b) { return a.sequence < b.sequence; });
    ChannelGroup group;
    group.id = id;
    group.size = record.size;
    group.parts = record.parts;
    std::vector<std::string> reasons = record.frozen_reasons;
    for (const auto& member_record : record.members) {
      ChannelMember member = member_record.member;
      // A member owned by this group alone needs no extent.
      if (member.offset == 0 && member.extent == record.size * member.block_size) member.extent = 0;
      if (contains_member(group, member)) continue;
      if (auto problem = check_member_size(member, record.size)) reasons.push_back(*problem);
      group.members.push_back(member);
    }
    if (record.size % record.parts != 0) {
      reasons.push_back(fmt::format("{} channels cannot be split into {} equal normalisation groups",
                                    record.size, record.parts));
    }
    const auto producers = group.producer_layers();
    group.name = producers.empty() ? fmt::format("group {}", id) : producers.front();
    if (producers.size() > 1) group.name += fmt::format(" (+{} coupled)", producers.size() - 1);
    group.frozen = !reasons.empty();
    for (const auto& reason : reasons) {
      if (group.frozen_reason.find(reason) != std::string::npos) continue;
      group.frozen_reason += (group.frozen_reason.empty() ? "" : "; ") + reason;
    }
    return group;
  }

  static bool contains_member(const ChannelGroup& group, const ChannelMember& member) {
    return std::any_of(group.members.begin(), group.members.end(), [&](const ChannelMember& m) {
      return m.full_name() == member.full_name() && m.kind == member.kind && m.dim == member.dim &&
             m.block_size == member.block_size && m.offset == member.offset;
    });
  }

  // The last line of defence: a member whose real size does not match the
  // group would be sliced wrongly, so the group is frozen instead.
  std::optional<std::string> check_member_size(const ChannelMember& member, int64_t channels) {
    const int64_t expected = member.entries(channels);
    const c10::IValue value = submodule_at(model_, member.module_path).attr(member.attribute);
    int64_t actual = -1;
    if (member.is_tensor() && value.isTensor() && member.dim < value.toTensor().dim()) {
      actual = value.toTensor().size(member.dim);
    } else if (member.kind == MemberKind::IntAttribute && value.isInt()) {
      actual = value.toInt();
    } else if (member.kind == MemberKind::IntListAttribute && value.isIntList()) {
      auto list = value.toIntVector();
      if (member.dim < static_cast<int64_t>(list.size())) actual = list[member.dim];
    }
    if (actual == expected && member.offset + channels * member.block_size <= expected) return std::nullopt;
    return fmt::format("{} has {} entries where {} were expected", member.full_name(), actual, expected);
  }

  // --- value helpers ---------------------------------------------------------

  std::optional<ChannelTrack> track_of(const Value* value) {
    auto it = tracks_.find(value);
    if (it == tracks_.end()) return std::nullopt;
    return track_of_joined(it->second);
  }

  bool has_tracked_input(const Node* node) {
    return std::any_of(node->inputs().begin(), node->inputs().end(),
                       [&](const Value* input) { return tracks_.count(input) > 0; });
  }

  // Whether dims [begin, end) of `value` are what they are at the real input size.
  bool dims_exact(const Value* value, size_t begin, size_t end) {
    auto it = varying_.find(value);
    if (it == varying_.end()) return varying_.empty();
    for (size_t d = begin; d < end && d < it->second.size(); ++d) {
      if (it->second[d]) {
        needs_real_shapes_ = true;
        return false;
      }
    }
    return true;
  }

  std::optional<Shape> shape_of(const Value* value) {
    auto it = shapes_.find(value);
    if (it != shapes_.end()) return it->second;
    return std::nullopt;
  }

  std::optional<int64_t> rank_of(const Value* value) {
    if (auto track = track_of(value)) return track->rank;
    if (auto shape = shape_of(value)) return static_cast<int64_t>(shape->size());
    if (auto type = value->type()->cast<c10::TensorType>()) {
      if (auto dims = type->dim()) return static_cast<int64_t>(*dims);
    }
    return std::nullopt;
  }

  static bool is_tensor_type(const Value* value) {
    auto type = value->type();
    if (auto optional = type->cast<c10::OptionalType>()) type = optional->getElementType();
    return type->kind() == c10::TypeKind::TensorType;
  }

  // Sees through the branches TorchScript inserts around optional attributes
  // ("self.running_mean if ... else None").
  std::optional<AttributePath> resolve_attribute(const Value* value) {
    if (auto path = attribute_path(value)) return path;
    const Node* node = value->node();
    if (node->kind() == c10::prim::unchecked_cast) return resolve_attribute(node->input(0));
    if (node->kind() != c10::prim::If) return std::nullopt;
    std::optional<AttributePath> found;
    for (const Block* block : node->blocks()) {
      const Value* branch = block->outputs()[value->offset()];
      if (branch->mustBeNone()) continue;
      auto path = resolve_attribute(branch);
      if (!path || (found && found->full() != path->full())) return std::nullopt;
      found = path;
    }
    return found;
  }

  std::optional<IntArgument> int_argument(const Value* value) {
    if (auto constant = constant_int(value)) return IntArgument{*constant, std::nullopt, std::nullopt};
    const Node* node = value->node();
    if (node->kind() == c10::aten::size && node->inputs().size() == 2 && constant_int(node->input(1)) == 0) {
      if (auto tensor = tensor_attribute(node->input(0)); tensor && tensor->tensor.dim() > 0) {
        return IntArgument{tensor->tensor.size(0), std::nullopt, tensor->path};
      }
      return std::nullopt;
    }
    auto path = resolve_attribute(value);
    if (!path) return std::nullopt;
    const c10::IValue held = submodule_at(model_, path->module_path).attr(path->attribute);
    if (!held.isInt()) return std::nullopt;
    return IntArgument{held.toInt(), path, std::nullopt};
  }

  // A constant list, or one read from a module attribute (e.g. torchvision's
  // Permute.dims); only for lists that do not depend on channel counts.
  std::optional<std::vector<int64_t>> int_list_argument(const Value* value) {
    if (auto constant = constant_int_list(value)) return constant;
    return int_list_attribute_value(resolve_attribute(value));
  }

  std::optional<std::vector<int64_t>> int_list_attribute_value(const std::optional<AttributePath>& path) {
    if (!path) return std::nullopt;
    const c10::IValue held = submodule_at(model_, path->module_path).attr(path->attribute);
    if (!held.isIntList()) return std::nullopt;
    return held.toIntVector();
  }

  std::optional<TensorAttribute> tensor_attribute(const Value* value);

  static constexpr int64_t kAllDims = -1;

  const torch::jit::Module& model_;
  std::shared_ptr<torch::jit::Graph> graph_;
  std::unordered_map<const Value*, Shape> shapes_;
  std::unordered_map<const Value*, std::vector<bool>> varying_;
  bool needs_real_shapes_ = false;
  std::unordered_map<const Value*, ChannelTrack> tracks_;
  std::unordered_map<const Value*, std::shared_ptr<ListContent>> lists_;
  GroupSet groups_;
  std::set<std::pair<const Node*, size_t>> understood_uses_;
  std::map<std::string, std::map<int64_t, std::string>> fixed_dims_;
};

std::optional<TensorAttribute> DependencyAnalyzer::tensor_attribute(const Value* value) {
  auto path = resolve_attribute(value);
  if (!path) return std::nullopt;
  auto module = submodule_at(model_, path->module_path);
  auto slot = module.type()->findAttributeSlot(path->attribute);
  if (!slot) return std::nullopt;
  const c10::IValue held = module._ivalue()->getSlot(*slot);
  if (!held.isTensor()) return std::nullopt;
  const bool is_buffer = !module.type()->is_parameter(*slot);
  return TensorAttribute{*path, held.toTensor(), is_buffer ? MemberKind::Buffer : MemberKind::Parameter};
}

void DependencyAnalyzer::couple_input(Node* node, const TensorAttribute& weight, const Value* input,
                                      int64_t channel_dim, int64_t expected_inputs,
                                      const char* count_attribute) {
  understood_uses_.insert({node, 1});
  auto track = track_of(input);
  if (!track) return fix_dim(weight.path.full(), 1, fmt::format(
                                 "{} also reads an input whose channels are not prunable",
                                 weight.path.full()));
  if (track->dim != channel_dim || track->channels() * track->block != expected_inputs) {
    freeze_track(*track, fmt::format("{} reads these channels in an unexpected layout", describe(node)));
    return fix_dim(weight.path.full(), 1, fmt::format("{} reads channels in an unexpected layout",
                                                      weight.path.full()));
  }
  for_each_range(*track, [&](int64_t group, int64_t offset, int64_t extent) {
    ChannelMember member{weight.path.module_path, weight.path.attribute, weight.kind,
                         MemberRole::Consumer, 1, track->block};
    member.offset = offset;
    member.extent = extent;
    groups_.add_member(group, member);
    add_int_attribute_member(group, weight.path.module_path, count_attribute, MemberRole::Consumer,
                             track->block, offset, extent);
  });
}

void DependencyAnalyzer::create_output_group(Node* node, const TensorAttribute& weight, int64_t channels,
                                             int64_t channel_dim, int64_t rank,
                                             const char* count_attribute) {
  const int64_t group = groups_.create(channels);
  groups_.add_member(group, ChannelMember{weight.path.module_path, weight.path.attribute, weight.kind,
                                          MemberRole::Producer, 0, 1});
  const Value* bias_value = node->input(2);
  understood_uses_.insert({node, 2});
  if (!bias_value->mustBeNone()) {
    auto bias = tensor_attribute(bias_value);
    if (bias) {
      groups_.add_member(group, ChannelMember{bias->path.module_path, bias->path.attribute, bias->kind,
                                              MemberRole::Producer, 0, 1});
    } else if (!resolve_attribute(bias_value)) {
      groups_.freeze(group, fmt::format("{} has a bias that is not a module parameter", describe(node)));
    }
  }
  add_int_attribute_member(group, weight.path.module_path, count_attribute, MemberRole::Producer);
  tracks_[node->output(0)] = ChannelTrack::of_group(group, channels, channel_dim, rank);
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

void DependencyAnalyzer::add_norm_members(Node* node, const std::optional<ChannelTrack>& track,
                                          const std::vector<size_t>& inputs,
                                          const char* count_attribute) {
  std::string module_path;
  for (size_t index : inputs) {
    const Value* value = node->input(index);
    if (value->mustBeNone()) continue;
    auto attribute = tensor_attribute(value);
    if (!attribute) {
      if (resolve_attribute(value)) continue;  // an optional attribute holding None
      if (track) freeze_track(*track, fmt::format("{} has computed affine parameters", describe(node)));
      continue;
    }
    understood_uses_.insert({node, index});
    module_path = attribute->path.module_path;
    if (!track) {
      fix_dim(attribute->path.full(), 0, fmt::format("{} also normalises channels that are not"
                                                     " prunable", attribute->path.full()));
      continue;
    }
    for_each_range(*track, [&](int64_t group, int64_t offset, int64_t extent) {
      ChannelMember member{attribute->path.module_path, attribute->path.attribute, attribute->kind,
                           MemberRole::Normalization, 0, 1};
      member.offset = offset;
      member.extent = extent;
      groups_.add_member(group, member);
    });
  }
  if (track) {
    if (!module_path.empty()) {
      for_each_range(*track, [&](int64_t group, int64_t offset, int64_t extent) {
        add_int_attribute_member(group, module_path, count_attribute, MemberRole::Normalization, 1,
                                 offset, extent);
      });
    }
    tracks_[node->output(0)] = *track;
  }
}

}  // namespace

DependencyGraph analyze_dependencies(const torch::jit::Module& model, const torch::Tensor& example_input) {
  // The model runs on tiny inputs, where waking a second thread per op costs
  // more than the op.
  SingleThreadScope one_thread;
  auto graph = inlined_forward_graph(model);
  // Int attributes stay reads: they may be channel counts that pruning updates.
  fold_flag_attributes(graph, model, /*include_ints=*/false, {"training"});
  if (auto small = observe_small_shapes(model, graph, example_input)) {
    DependencyAnalyzer analyzer(model, graph, std::move(*small));
    DependencyGraph result = analyzer.analyze();
    if (!analyzer.needs_real_shapes()) return result;
  }
  return DependencyAnalyzer(model, graph, observe_real_shapes(model, graph, example_input)).analyze();
}

}  // namespace mcompress
