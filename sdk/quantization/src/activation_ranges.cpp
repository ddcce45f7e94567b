#include "activation_ranges.h"

#include <torch/csrc/jit/api/function_impl.h>

#include <algorithm>

#include <fmt/format.h>

#include "mcompress/sdk/error.h"

namespace mcompress::int8 {
namespace {

using torch::jit::Value;

// Percentiles are taken over at most this many values of a batch (evenly
// strided), so large activations cost a bounded sort.
constexpr int64_t kPercentileSample = int64_t(1) << 20;

std::pair<double, double> batch_percentiles(const torch::Tensor& values, double percentile) {
  torch::Tensor flat = values.detach().reshape({-1}).to(torch::kFloat);
  if (flat.numel() > kPercentileSample) flat = flat.slice(0, 0, flat.numel(), flat.numel() / kPercentileSample);
  const int64_t n = flat.numel();
  auto kth = [&](double q) {
    const int64_t k = std::clamp<int64_t>(int64_t(std::llround(q / 100.0 * double(n - 1))), 0, n - 1);
    return std::get<0>(flat.kthvalue(k + 1)).item<double>();
  };
  return {kth(100.0 - percentile), kth(percentile)};
}

}  // namespace

std::unordered_map<const Value*, ActivationRange> record_activation_ranges(
    const std::shared_ptr<torch::jit::Graph>& graph, const c10::IValue& self, const std::vector<Value*>& observed,
    const std::vector<torch::Tensor>& batches, RangeObserver observer, double percentile) {
  // The copy has the same nodes in the same order: map values by position.
  auto copy = graph->copy();
  std::unordered_map<const Value*, Value*> in_copy;
  for (size_t i = 0; i < graph->inputs().size(); ++i) in_copy[graph->inputs()[i]] = copy->inputs()[i];
  auto original_nodes = graph->nodes();
  auto copied_nodes = copy->nodes();
  for (auto o = original_nodes.begin(), c = copied_nodes.begin(); o != original_nodes.end(); ++o, ++c) {
    for (size_t i = 0; i < o->outputs().size(); ++i) in_copy[o->outputs()[i]] = c->outputs()[i];
  }
  std::vector<Value*> outputs;
  for (Value* value : observed) outputs.push_back(in_copy.at(value));
  torch::jit::Node* tuple = copy->createTuple(outputs);
  copy->appendNode(tuple);
  while (!copy->outputs().empty()) copy->eraseOutput(0);
  copy->registerOutput(tuple->output());

  torch::jit::GraphFunction run("record_activation_ranges", copy, nullptr);
  std::vector<ActivationRange> ranges(observed.size());
  std::vector<int64_t> seen(observed.size(), 0);
  torch::NoGradGuard no_grad;
  for (const auto& batch : batches) {
    const auto values = run({self, batch}).toTupleRef().elements();
    for (size_t i = 0; i < observed.size(); ++i) {
      if (!values[i].isTensor()) continue;
      const torch::Tensor t = values[i].toTensor();
      if (!t.is_floating_point() || t.numel() == 0) continue;
      double low, high;
      if (observer == RangeObserver::Percentile) {
        std::tie(low, high) = batch_percentiles(t, percentile);
      } else {
        const auto [min, max] = torch::aminmax(t.detach());
        low = min.item<double>();
        high = max.item<double>();
      }
      auto& range = ranges[i];
      if (seen[i] == 0) {
        range = {low, high};
      } else if (observer == RangeObserver::Percentile) {  // running mean over batches
        range.min += (low - range.min) / double(seen[i] + 1);
        range.max += (high - range.max) / double(seen[i] + 1);
      } else {
        range.min = std::min(range.min, low);
        range.max = std::max(range.max, high);
      }
      ++seen[i];
    }
  }
  std::unordered_map<const Value*, ActivationRange> result;
  for (size_t i = 0; i < observed.size(); ++i) {
    if (seen[i] > 0) result[observed[i]] = ranges[i];
  }
  return result;
}

}  // namespace mcompress::int8
