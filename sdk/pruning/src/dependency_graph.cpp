#include "mcompress/pruning/dependency_graph.h"

#include <torch/script.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <unordered_set>

#include <fmt/format.h>

#include "mcompress/models/graph.h"
#include "dependency_analyzer.h"
#include "shape_observation.h"
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

namespace detail {
namespace {

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

}  // namespace

// --- reading graph values ---------------------------------------------------

std::string op_name(const Node* node) { return node->kind().toQualString(); }

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

DependencyGraph DependencyAnalyzer::analyze() {
  visit_block(graph_->block());
  freeze_inputs(graph_->return_node(), "feeds the model output");
  find_parameters_used_elsewhere(graph_->block());
  merge_groups_sharing_tensors();
  freeze_overlapping_ranges();
  freeze_groups_with_fixed_dims();
  return collect_groups();
}

// --- traversal --------------------------------------------------------------

void DependencyAnalyzer::visit_block(Block* block) {
  for (Node* node : block->nodes()) visit_node(node);
}

void DependencyAnalyzer::visit_node(Node* node) {
  const std::string op = op_name(node);
  if (node->kind() == c10::prim::If) return visit_if(node);
  if (node->kind() == c10::prim::Loop) return visit_loop(node);
  if (node->kind() == c10::prim::ListConstruct && is_tensor_list(node->output())) {
    return visit_list_construct(node);
  }
  if (uses_list(node) && visit_list_use(node)) return;
  const OpRule* rule = rule_for(op);
  if (!has_tracked_input(node) && !(rule && rule->layer)) return;
  if (op == "aten::size" && reads_channel_count(node)) {
    return freeze_inputs(node, fmt::format("{} reads the channel count, which pruning would change",
                                           describe(node)));
  }
  if (is_metadata_read(op)) return;
  if (rule) return rule->handle(*this, node);
  if (node->kind() == c10::prim::ListConstruct || node->kind() == c10::prim::TupleConstruct) {
    return freeze_inputs(node, describe_packing(node));
  }
  freeze_inputs(node, fmt::format("used by {}, which the dependency analysis does not support",
                                  describe(node)));
}

// x.size(1), x.size()[1] or `n, c, h, w = x.size()` with c used: code that
// builds shapes from the channel count would break when it changes.
bool DependencyAnalyzer::reads_channel_count(const Node* node) {
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

bool DependencyAnalyzer::inside_loop(const Node* node) {
  for (const Block* block = node->owningBlock(); block && block->owningNode();
       block = block->owningNode()->owningBlock()) {
    if (block->owningNode()->kind() == c10::prim::Loop) return true;
  }
  return false;
}

// Tensors reach stack/tuples through a list; name the op that consumes it.
std::string DependencyAnalyzer::describe_packing(const Node* node) {
  const auto& uses = node->output()->uses();
  if (uses.empty()) return fmt::format("packed into a {}", op_name(node));
  const Node* user = uses.front().user;
  if (user == user->owningGraph()->return_node()) return "feeds the model output";
  return fmt::format("passed in a {} to {}, which the dependency analysis does not support",
                     op_name(node), describe(user));
}

// A branch may carry the channels only if every branch carries the same ones.
void DependencyAnalyzer::visit_if(Node* node) {
  for (Block* block : node->blocks()) visit_block(block);
  for (size_t i = 0; i < node->outputs().size(); ++i) {
    std::vector<const Value*> branches;
    for (Block* block : node->blocks()) branches.push_back(block->outputs()[i]);
    join_branches(node->outputs()[i], branches);
  }
}

void DependencyAnalyzer::join_branches(Value* output, const std::vector<const Value*>& branches) {
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

std::optional<ChannelTrack> DependencyAnalyzer::track_of_joined(ChannelTrack track) {
  for (auto& segment : track.segments) {
    if (segment.group >= 0) segment.group = groups_.find(segment.group);
  }
  return track;
}

void DependencyAnalyzer::merge_tracks(ChannelTrack& into, const ChannelTrack& from,
                                      const std::string& where) {
  for (size_t i = 0; i < into.segments.size(); ++i) {
    if (into.segments[i].group < 0) continue;
    into.segments[i].group = groups_.merge(into.segments[i].group, from.segments[i].group, where);
  }
}

// Loop-carried channels could change size per iteration; not supported.
void DependencyAnalyzer::visit_loop(Node* node) {
  freeze_inputs(node, "carried through a prim::Loop (not supported)");
  for (Block* block : node->blocks()) {
    visit_block(block);
    for (const Value* output : block->outputs()) {
      if (auto track = track_of(output)) freeze_track(*track, "carried through a prim::Loop");
      if (lists_.count(output)) escape_list(output, "a list carried through a prim::Loop");
    }
  }
}

// --- lists and concatenation ------------------------------------------------

bool DependencyAnalyzer::is_tensor_list(const Value* value) {
  auto list = value->type()->cast<c10::ListType>();
  return list && list->getElementType()->kind() == c10::TypeKind::TensorType;
}

void DependencyAnalyzer::visit_list_construct(Node* node) {
  auto content = std::make_shared<ListContent>();
  content->block = node->owningBlock();
  for (const Value* input : node->inputs()) content->elements.push_back(input);
  lists_[node->output()] = std::move(content);
}

bool DependencyAnalyzer::uses_list(const Node* node) {
  return std::any_of(node->inputs().begin(), node->inputs().end(),
                     [&](const Value* input) { return lists_.count(input) > 0; });
}

// Handles cat, append and aliases of tracked lists; returns false for other
// uses, after the list's channels have been frozen.
bool DependencyAnalyzer::visit_list_use(Node* node) {
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

void DependencyAnalyzer::escape_list(const Value* list, const std::string& reason) {
  auto content = lists_.at(list);
  content->escaped = true;
  for (const Value* element : content->elements) {
    if (auto track = track_of(element)) freeze_track(*track, reason);
  }
}

// Concatenating along the channel dim gives each input an index range of
// the output; along another dim the inputs' channels must be the same ones.
void DependencyAnalyzer::visit_cat(Node* node) {
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

// --- members ----------------------------------------------------------------

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

// Counts such as in_features must follow the pruned size when the module
// stores them as attributes (TorchScript constants cannot and need not change).
void DependencyAnalyzer::add_int_attribute_member(int64_t group, const std::string& module_path,
                                                  const std::string& attribute, MemberRole role,
                                                  int64_t block, int64_t offset, int64_t extent) {
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

// --- freezing ---------------------------------------------------------------

void DependencyAnalyzer::freeze_track(const ChannelTrack& track, const std::string& reason) {
  for (const auto& segment : track.segments) {
    if (segment.group >= 0) groups_.freeze(segment.group, reason);
  }
}

void DependencyAnalyzer::freeze_inputs(Node* node, const std::string& reason) {
  for (const Value* input : node->inputs()) {
    if (auto track = track_of(input)) freeze_track(*track, reason);
    if (lists_.count(input)) escape_list(input, reason);
  }
}

void DependencyAnalyzer::fix_dim(const std::string& tensor, int64_t dim, const std::string& reason) {
  fixed_dims_[tensor].emplace(dim, reason);
}

// A parameter read by anything other than the layers that declared it as a
// member (weight tying, a matmul with a parameter, ...) cannot be sliced.
void DependencyAnalyzer::find_parameters_used_elsewhere(Block* block) {
  for (Node* node : block->nodes()) {
    for (Block* inner : node->blocks()) find_parameters_used_elsewhere(inner);
    if (node->kind() != c10::prim::GetAttr) continue;
    auto path = attribute_path(node->output());
    if (!path || !is_tensor_type(node->output())) continue;
    check_uses(node->output(), path->full());
  }
}

void DependencyAnalyzer::check_uses(const Value* value, const std::string& tensor) {
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

// --- final assembly ---------------------------------------------------------

// One tensor range sliced by two groups means those groups are the same channels.
void DependencyAnalyzer::merge_groups_sharing_tensors() {
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
void DependencyAnalyzer::freeze_overlapping_ranges() {
  struct Range {
    int64_t begin, end, extent, group;
  };
  std::map<std::tuple<std::string, MemberKind, int64_t>, std::vector<Range>> ranges;
  for (int64_t root : groups_.roots()) {
    const auto& record = groups_.record(root);
    for (const auto& member_record : record.members) {
      const auto& m = member_record.member;
      ranges[std::make_tuple(m.full_name(), m.kind, m.dim)].push_back(
          {m.offset, m.offset + m.span(record.size), m.entries(record.size), root});
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

void DependencyAnalyzer::freeze_groups_with_fixed_dims() {
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

DependencyGraph DependencyAnalyzer::collect_groups() {
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

ChannelGroup DependencyAnalyzer::make_group(GroupRecord& record, int64_t id) {
  std::stable_sort(record.members.begin(), record.members.end(),
                   [](const MemberRecord& a, const MemberRecord& b) { return a.sequence < b.sequence; });
  ChannelGroup group;
  group.id = id;
  group.size = record.size;
  group.parts = record.parts;
  group.tied_parts = record.tied_parts;
  std::vector<std::string> reasons = record.frozen_reasons;
  for (const auto& member_record : record.members) {
    ChannelMember member = member_record.member;
    // A member owned by this group alone needs no extent.
    if (member.offset == 0 && member.extent == member.span(record.size)) member.extent = 0;
    if (contains_member(group, member)) continue;
    if (auto problem = check_member_size(member, record.size)) reasons.push_back(*problem);
    group.members.push_back(member);
  }
  if (record.size % record.parts != 0) {
    reasons.push_back(fmt::format("{} channels cannot be split into {} equal parts (normalisation or"
                                  " convolution groups)",
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

bool DependencyAnalyzer::contains_member(const ChannelGroup& group, const ChannelMember& member) {
  return std::any_of(group.members.begin(), group.members.end(), [&](const ChannelMember& m) {
    return m.full_name() == member.full_name() && m.kind == member.kind && m.dim == member.dim &&
           m.block_size == member.block_size && m.offset == member.offset;
  });
}

// The last line of defence: a member whose real size does not match the
// group would be sliced wrongly, so the group is frozen instead.
std::optional<std::string> DependencyAnalyzer::check_member_size(const ChannelMember& member,
                                                                 int64_t channels) {
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
  if (actual == expected && member.offset + member.span(channels) <= expected) return std::nullopt;
  return fmt::format("{} has {} entries where {} were expected", member.full_name(), actual, expected);
}

// --- value helpers ----------------------------------------------------------

std::optional<ChannelTrack> DependencyAnalyzer::track_of(const Value* value) {
  auto it = tracks_.find(value);
  if (it == tracks_.end()) return std::nullopt;
  return track_of_joined(it->second);
}

bool DependencyAnalyzer::has_tracked_input(const Node* node) {
  return std::any_of(node->inputs().begin(), node->inputs().end(),
                     [&](const Value* input) { return tracks_.count(input) > 0; });
}

// Whether dims [begin, end) of `value` are what they are at the real input size.
bool DependencyAnalyzer::dims_exact(const Value* value, size_t begin, size_t end) {
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

std::optional<Shape> DependencyAnalyzer::shape_of(const Value* value) {
  auto it = shapes_.find(value);
  if (it != shapes_.end()) return it->second;
  return std::nullopt;
}

std::optional<int64_t> DependencyAnalyzer::rank_of(const Value* value) {
  if (auto track = track_of(value)) return track->rank;
  if (auto shape = shape_of(value)) return static_cast<int64_t>(shape->size());
  if (auto type = value->type()->cast<c10::TensorType>()) {
    if (auto dims = type->dim()) return static_cast<int64_t>(*dims);
  }
  return std::nullopt;
}

bool DependencyAnalyzer::is_tensor_type(const Value* value) {
  auto type = value->type();
  if (auto optional = type->cast<c10::OptionalType>()) type = optional->getElementType();
  return type->kind() == c10::TypeKind::TensorType;
}

// Sees through the branches TorchScript inserts around optional attributes
// ("self.running_mean if ... else None").
std::optional<AttributePath> DependencyAnalyzer::resolve_attribute(const Value* value) {
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

std::optional<IntArgument> DependencyAnalyzer::int_argument(const Value* value) {
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
std::optional<std::vector<int64_t>> DependencyAnalyzer::int_list_argument(const Value* value) {
  if (auto constant = constant_int_list(value)) return constant;
  return int_list_attribute_value(resolve_attribute(value));
}

std::optional<std::vector<int64_t>> DependencyAnalyzer::int_list_attribute_value(
    const std::optional<AttributePath>& path) {
  if (!path) return std::nullopt;
  const c10::IValue held = submodule_at(model_, path->module_path).attr(path->attribute);
  if (!held.isIntList()) return std::nullopt;
  return held.toIntVector();
}

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

}  // namespace detail

DependencyGraph analyze_dependencies(const torch::jit::Module& model, const torch::Tensor& example_input) {
  // The model runs on tiny inputs, where waking a second thread per op costs
  // more than the op.
  SingleThreadScope one_thread;
  auto graph = inlined_forward_graph(model);
  // Int attributes stay reads: they may be channel counts that pruning updates.
  fold_flag_attributes(graph, model, /*include_ints=*/false, {"training"});
  if (auto small = detail::observe_small_shapes(model, graph, example_input)) {
    detail::DependencyAnalyzer analyzer(model, graph, std::move(*small));
    DependencyGraph result = analyzer.analyze();
    if (!analyzer.needs_real_shapes()) return result;
  }
  return detail::DependencyAnalyzer(model, graph, detail::observe_real_shapes(model, graph, example_input))
      .analyze();
}

}  // namespace mcompress
