#pragma once
// Union-find over channel groups: the dependency analysis creates a group per
// layer output and merges groups whose channels turn out to be the same ones
// (residual adds, concatenated inputs read by one layer, ...).
#include <cstdint>
#include <string>
#include <vector>

#include "mcompress/pruning/dependency_graph.h"

namespace mcompress::detail {

struct MemberRecord {
  ChannelMember member;
  int64_t sequence = 0;  // graph order, to keep member lists readable after merges
};

struct GroupRecord {
  int64_t size = 0;
  int64_t created = 0;
  int64_t parts = 1;
  int64_t tied_parts = 1;
  std::vector<MemberRecord> members;
  std::vector<std::string> frozen_reasons;
};

class GroupSet {
 public:
  int64_t create(int64_t size);
  int64_t find(int64_t group);

  // Coupled channels must be removed together. Groups of different sizes
  // cannot be the same channels: both are frozen and stay separate.
  int64_t merge(int64_t a, int64_t b, const std::string& where);

  void add_member(int64_t group, ChannelMember member);
  void freeze(int64_t group, const std::string& reason);

  int64_t size(int64_t group) { return records_[find(group)].size; }
  void require_parts(int64_t group, int64_t parts);
  // `parts` blocks that keep the same positions (and so also equal counts).
  void require_tied_parts(int64_t group, int64_t parts);
  GroupRecord& record(int64_t group) { return records_[find(group)]; }
  std::vector<int64_t> roots();

 private:
  std::vector<int64_t> parent_;
  std::vector<GroupRecord> records_;
  int64_t next_sequence_ = 0;
};

}  // namespace mcompress::detail
