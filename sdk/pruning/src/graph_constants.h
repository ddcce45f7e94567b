#pragma once
// Literal values in a TorchScript graph, as the pruning analyses read them.
#include <torch/csrc/jit/ir/ir.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace mcompress::detail {

// The value of a prim::Constant int (bool), or nullopt for anything computed.
std::optional<int64_t> constant_int(const torch::jit::Value* value);
std::optional<bool> constant_bool(const torch::jit::Value* value);
// A literal list such as [0, 2, 3, 1]: a constant, or a ListConstruct of constants.
std::optional<std::vector<int64_t>> constant_int_list(const torch::jit::Value* value);

}  // namespace mcompress::detail
