#pragma once
// Calibration for static int8 quantization: the range of every tensor a
// frozen forward graph computes, over calibration batches.
#include <torch/script.h>

#include <unordered_map>
#include <vector>

#include "mcompress/quantization/static_int8.h"

namespace mcompress::int8 {

struct ActivationRange {
  double min = 0;
  double max = 0;
};

// Runs a copy of `graph` (a frozen forward: input 0 is the module `self`,
// input 1 the batch) on each batch, with every value of `observed` (tensors
// of graph's top-level block) made an output, and returns each one's range
// by `observer`. `graph` itself is not changed.
std::unordered_map<const torch::jit::Value*, ActivationRange> record_activation_ranges(
    const std::shared_ptr<torch::jit::Graph>& graph, const c10::IValue& self,
    const std::vector<torch::jit::Value*>& observed, const std::vector<torch::Tensor>& batches,
    RangeObserver observer, double percentile);

}  // namespace mcompress::int8
