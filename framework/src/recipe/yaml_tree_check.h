#pragma once
// Checks of a whole parsed YAML tree, made once before anything reads it:
// every scalar must be UTF-8 (YAML is Unicode, and every value ends up in JSON
// records, which cannot hold anything else; yaml-cpp itself decodes UTF-16
// and UTF-32 input and escapes such as "\U0011FFFF" into bytes that are not),
// and the tree must stay small once aliases are expanded (a few bytes of
// aliases can stand for billions of nodes, or for a cycle). Private to the
// framework.
#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>
#include <vector>

#include "sources/utf8_text.h"

namespace mcompress::yaml_tree_check {

struct Problem {
  YAML::Node at;        // where to point the user
  std::string message;  // what is wrong and what to do
};

// The first problem of the tree under `root`, visiting at most `max_nodes`
// nodes (aliases expanded), or none.
inline std::optional<Problem> first_problem(const YAML::Node& root, size_t max_nodes) {
  std::vector<YAML::Node> pending{root};  // a stack, not recursion: cycles cannot overflow it
  size_t visited = 0;
  while (!pending.empty()) {
    const YAML::Node node = pending.back();
    pending.pop_back();
    if (++visited > max_nodes) {
      return Problem{root, "the YAML is too large: more than " + std::to_string(max_nodes) +
                               " nodes once its aliases (*name) are expanded; write the values out instead"};
    }
    if (node.IsScalar()) {
      if (utf8_text::first_invalid_byte(node.Scalar()) != std::string::npos)
        return Problem{node, "this value is not valid UTF-8 text; write it as UTF-8"};
    } else if (node.IsMap()) {
      for (auto it = node.begin(); it != node.end(); ++it) {
        pending.push_back(it->first);
        pending.push_back(it->second);
      }
    } else if (node.IsSequence()) {
      for (const auto& item : node) pending.push_back(item);
    }
  }
  return std::nullopt;
}

}  // namespace mcompress::yaml_tree_check
