#pragma once
// The analysis behind analyze_dependencies: one walk over the inlined forward
// graph that tracks which channel group each tensor's channels belong to, and
// records every tensor slice and count that must change with a group.
// How each op moves channels is its rule in op_rules.cpp; the traversal, the
// bookkeeping the rules share and the final assembly of the groups are in
// dependency_graph.cpp.
#include <torch/script.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mcompress/models/graph.h"
#include "mcompress/pruning/dependency_graph.h"
#include "graph_constants.h"
#include "group_set.h"
#include "shape_observation.h"

namespace mcompress::detail {

using torch::jit::Block;
using torch::jit::Node;
using torch::jit::Value;

// --- reading graph values ---------------------------------------------------

std::string op_name(const Node* node);

// "aten::linear (fc1)" for a node reading fc1's weight, else the op and its
// source line when known; used in frozen-group reasons.
std::string describe(const Node* node);


inline int64_t normalize_dim(int64_t dim, int64_t rank) { return dim < 0 ? dim + rank : dim; }

// --- what the analysis tracks -----------------------------------------------

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

  DependencyGraph analyze();

 private:
  // --- traversal ------------------------------------------------------------

  void visit_block(Block* block);
  void visit_node(Node* node);
  bool reads_channel_count(const Node* node);
  static bool inside_loop(const Node* node);
  static std::string describe_packing(const Node* node);
  void visit_if(Node* node);
  void join_branches(Value* output, const std::vector<const Value*>& branches);
  std::optional<ChannelTrack> track_of_joined(ChannelTrack track);
  void merge_tracks(ChannelTrack& into, const ChannelTrack& from, const std::string& where);
  void visit_loop(Node* node);

  // --- lists and concatenation ----------------------------------------------

  static bool is_tensor_list(const Value* value);
  void visit_list_construct(Node* node);
  bool uses_list(const Node* node);
  bool visit_list_use(Node* node);
  void escape_list(const Value* list, const std::string& reason);
  void visit_cat(Node* node);

  // --- op rules (op_rules.cpp) ----------------------------------------------

  // Supporting an op is one entry in the table in op_rules.cpp, plus a
  // visit_ member below when no existing handler fits.
  using OpHandler = std::function<void(DependencyAnalyzer&, Node*)>;
  struct OpRule {
    OpHandler handle;
    // Layers record how they use their parameters even when their input is untracked.
    bool layer = false;
  };
  // The rule for `op`; nullptr for an op the analysis does not support.
  static const OpRule* rule_for(const std::string& op);

  void pass_through(Node* node);
  void visit_binary(Node* node);
  bool add_per_channel_parameter(Node* node, size_t index, const ChannelTrack& track);
  bool spans_channel_dim(const Value* other, const ChannelTrack& track);
  std::optional<Shape> created_shape(const Value* value, int depth = 0);
  std::optional<Shape> int_list_value(const Value* list, int depth);
  std::optional<int64_t> int_value(const Value* value, int depth);
  void visit_pooling(Node* node, int64_t dims);
  void visit_softmax(Node* node);

  void visit_linear(Node* node);
  void visit_conv(Node* node, int64_t spatial_dims);
  // A depthwise conv maps channel c to channel c: input and output are one group.
  void visit_depthwise_conv(Node* node, const TensorAttribute& weight,
                            const IntArgument& groups, int64_t channel_dim);
  // A grouped conv keeps its groups: output channels in equal parts, input
  // channels at the same positions in every convolution group.
  void visit_grouped_conv(Node* node, const TensorAttribute& weight, int64_t groups,
                          int64_t channel_dim, int64_t rank);
  void visit_batch_norm(Node* node);
  void visit_layer_norm(Node* node);
  bool shape_follows(const Value* list, const AttributePath& weight);
  void visit_group_norm(Node* node);
  void visit_flatten(Node* node);
  void visit_view(Node* node);
  bool channel_size_is_inferred(const Value* shape_list, int64_t dim);
  void visit_reduction(Node* node);
  void visit_permute(Node* node);
  void visit_transpose(Node* node);

  // --- members --------------------------------------------------------------

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

  void add_int_attribute_member(int64_t group, const std::string& module_path,
                                const std::string& attribute, MemberRole role, int64_t block = 1,
                                int64_t offset = 0, int64_t extent = 0);

  // --- freezing -------------------------------------------------------------

  void freeze_track(const ChannelTrack& track, const std::string& reason);
  void freeze_inputs(Node* node, const std::string& reason);
  void fix_dim(const std::string& tensor, int64_t dim, const std::string& reason);
  void find_parameters_used_elsewhere(Block* block);
  void check_uses(const Value* value, const std::string& tensor);

  // --- final assembly -------------------------------------------------------

  void merge_groups_sharing_tensors();
  void freeze_overlapping_ranges();
  void freeze_groups_with_fixed_dims();
  DependencyGraph collect_groups();
  ChannelGroup make_group(GroupRecord& record, int64_t id);
  static bool contains_member(const ChannelGroup& group, const ChannelMember& member);
  std::optional<std::string> check_member_size(const ChannelMember& member, int64_t channels);

  // --- value helpers --------------------------------------------------------

  std::optional<ChannelTrack> track_of(const Value* value);
  bool has_tracked_input(const Node* node);
  bool dims_exact(const Value* value, size_t begin, size_t end);
  std::optional<Shape> shape_of(const Value* value);
  std::optional<int64_t> rank_of(const Value* value);
  static bool is_tensor_type(const Value* value);
  std::optional<AttributePath> resolve_attribute(const Value* value);
  std::optional<IntArgument> int_argument(const Value* value);
  std::optional<std::vector<int64_t>> int_list_argument(const Value* value);
  std::optional<std::vector<int64_t>> int_list_attribute_value(const std::optional<AttributePath>& path);
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

}  // namespace mcompress::detail
