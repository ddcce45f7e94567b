#include "group_set.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include <fmt/format.h>

namespace mcompress::detail {

int64_t GroupSet::create(int64_t size) {
  parent_.push_back(static_cast<int64_t>(parent_.size()));
  GroupRecord record;
  record.size = size;
  record.created = static_cast<int64_t>(records_.size());
  records_.push_back(std::move(record));
  return parent_.back();
}

int64_t GroupSet::find(int64_t group) {
  while (parent_[group] != group) {
    parent_[group] = parent_[parent_[group]];
    group = parent_[group];
  }
  return group;
}

int64_t GroupSet::merge(int64_t a, int64_t b, const std::string& where) {
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
  into.tied_parts = std::lcm(into.tied_parts, from.tied_parts);
  from = GroupRecord{};
  return a;
}

void GroupSet::add_member(int64_t group, ChannelMember member) {
  records_[find(group)].members.push_back({std::move(member), next_sequence_++});
}

void GroupSet::freeze(int64_t group, const std::string& reason) {
  auto& reasons = records_[find(group)].frozen_reasons;
  if (std::find(reasons.begin(), reasons.end(), reason) == reasons.end()) reasons.push_back(reason);
}

void GroupSet::require_parts(int64_t group, int64_t parts) {
  auto& record = records_[find(group)];
  record.parts = std::lcm(record.parts, parts);
}

void GroupSet::require_tied_parts(int64_t group, int64_t parts) {
  auto& record = records_[find(group)];
  record.tied_parts = std::lcm(record.tied_parts, parts);
  record.parts = std::lcm(record.parts, parts);
}

std::vector<int64_t> GroupSet::roots() {
  std::vector<int64_t> result;
  for (int64_t i = 0; i < static_cast<int64_t>(parent_.size()); ++i) {
    if (find(i) == i) result.push_back(i);
  }
  return result;
}

}  // namespace mcompress::detail
