#include "graph_constants.h"

#include <torch/csrc/jit/ir/constants.h>

namespace mcompress::detail {

using torch::jit::Value;

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

}  // namespace mcompress::detail
