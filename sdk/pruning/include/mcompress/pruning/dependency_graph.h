#pragma once
// Which channels of a model must be pruned together.
//
// Removing output channel k of a layer also removes input k of every layer
// that reads it, entry k of the batch norms in between, and - across residual
// adds - channel k of every other layer whose output is added to it. Such a
// set of coupled tensor slices is a ChannelGroup. analyze_dependencies finds
// the groups from the inlined TorchScript graph; prune_channels
// (channel_pruning.h) applies one group's selection to every member at once,
// which is what keeps a pruned model runnable.
//
// Concatenation (`torch.cat` along the channel dim, also of lists built with
// `append` as DenseNet does) gives every input its index range of the result:
// a layer reading the concatenation has one member per input group, each with
// its `offset`. GroupNorm splits its channels into fixed parts that must keep
// equal sizes (ChannelGroup::parts). A grouped convolution (groups = G, not
// depthwise) keeps G: its output channels are a group of G parts, and its
// input channels (the producing layer's group) keep the same positions in
// each of the G blocks (ChannelGroup::tied_parts), so the weight's input dim
// loses the same columns for every convolution group.
//
// Safety rule: whatever the analysis does not understand (an unknown op, a
// reshape that hard-codes a channel count, a parameter used outside its
// layer, a count the model's code holds as a constant, a loop, the model
// output) freezes the groups it touches with a recorded reason. A frozen group
// is never pruned, so an unsupported model is compressed less, never broken.
//
// Configuration flags are read with their current values: branches selected
// by bool and float module attributes (torchvision's `use_res_connect`,
// DenseNet's `memory_efficient` and `drop_rate`) are resolved before the
// analysis; `training` is not, so both training and eval code are analysed.
//
// Torch-free on purpose (the reports and the recipe tools read groups); the two
// torch types in the signature are only declared here.
#include <cstdint>
#include <string>
#include <vector>

#include "mcompress/sdk/export.h"

namespace at {
class Tensor;
}
namespace torch::jit {
struct Module;
}

namespace mcompress {

// What a member is: a tensor slice, or a count stored in the module that must
// follow the new channel count (e.g. in_features, BatchNorm's num_features).
enum class MemberKind {
  Parameter,       // a registered parameter; `dim` is sliced
  Buffer,          // a registered buffer (running statistics); `dim` is sliced
  IntAttribute,    // an int attribute set to kept * block_size (`dim` unused)
  IntListAttribute // element `dim` of an int-list attribute set to kept * block_size
};

// Why the member is coupled; used for reports and importance scores.
enum class MemberRole {
  Producer,       // creates the channels: output rows of a linear/conv (+ bias)
  Consumer,       // reads the channels: input columns of a linear/conv
  Normalization,  // per-channel affine parameters and statistics (BN, LayerNorm)
};

MCOMPRESS_SDK_API const char* to_string(MemberKind kind);
MCOMPRESS_SDK_API const char* to_string(MemberRole role);

struct ChannelMember {
  std::string module_path;  // owner, e.g. "layer1.0.conv1" ("" for the root module)
  std::string attribute;    // e.g. "weight", "running_mean", "in_features"
  MemberKind kind = MemberKind::Parameter;
  MemberRole role = MemberRole::Producer;
  int64_t dim = 0;
  // Entries of `dim` per channel: 1, or H*W where a [N,C,H,W] activation was
  // flattened into a linear layer (channel c owns entries [c*H*W, (c+1)*H*W)).
  int64_t block_size = 1;
  // Where channel 0 starts along `dim`, in entries: non-zero for a layer that
  // reads a concatenation, where this group is one index range of the input.
  int64_t offset = 0;
  // Entries of `dim` (or the int attribute's value) when analysed; 0 means
  // size * block_size, i.e. the member belongs to this group alone.
  int64_t extent = 0;
  // The input dim (1) of a grouped convolution's weight: the group's channels
  // form `conv_groups` equal blocks, one per convolution group, and the dim
  // holds one block's worth of entries: channel g * (size / conv_groups) + j
  // is entry j of the rows of convolution group g. 1 for every other member.
  int64_t conv_groups = 1;

  bool is_buffer() const { return kind == MemberKind::Buffer; }
  bool is_tensor() const { return kind == MemberKind::Parameter || kind == MemberKind::Buffer; }
  // Entries of `dim` this group's channels span.
  int64_t span(int64_t group_size) const { return group_size * block_size / conv_groups; }
  int64_t entries(int64_t group_size) const { return extent > 0 ? extent : span(group_size); }
  // "layer1.0.conv1.weight"
  std::string full_name() const {
    return module_path.empty() ? attribute : module_path + "." + attribute;
  }
};

struct MCOMPRESS_SDK_API ChannelGroup {
  int64_t id = 0;       // index in DependencyGraph::groups
  int64_t size = 0;     // number of channels
  std::string name;     // the first producing layer's path, "+N" when N more are coupled
  std::vector<ChannelMember> members;
  // A frozen group is never pruned; frozen_reason says why ("; "-separated
  // when there are several), e.g. "feeds the model output".
  bool frozen = false;
  std::string frozen_reason;
  // The channels form this many consecutive equal parts (GroupNorm's groups)
  // that must keep equal numbers of channels, so the kept count is a multiple
  // of it and each part keeps its own best channels.
  int64_t parts = 1;
  // The channels form this many consecutive equal blocks that must keep the
  // same positions: a grouped convolution reads position j of every block
  // through one weight column (ChannelMember::conv_groups). Divides `parts`.
  int64_t tied_parts = 1;

  // Module paths of the layers that produce these channels, in graph order.
  std::vector<std::string> producer_layers() const;
};

// Every channel group of a model, in the order their first producer runs.
// Channels of values that are not tracked (the model input, the outputs of
// frozen or unsupported layers) belong to no group and are never pruned.
struct MCOMPRESS_SDK_API DependencyGraph {
  std::vector<ChannelGroup> groups;

  std::vector<const ChannelGroup*> prunable_groups() const;
  std::vector<const ChannelGroup*> frozen_groups() const;
};

// Analyses `model`'s forward method. Runs the model once, in eval mode and
// without gradients, on `example_input` (batch 1) to learn activation shapes;
// the model's training flags are restored afterwards and nothing else changes.
// Throws mcompress::Error when the model has no forward or fails on the input.
MCOMPRESS_SDK_API DependencyGraph analyze_dependencies(const torch::jit::Module& model,
                                                       const at::Tensor& example_input);

}  // namespace mcompress
