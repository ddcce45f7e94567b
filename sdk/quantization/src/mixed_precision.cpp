#include "mcompress/quantization/mixed_precision.h"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "mcompress/runtime/affine_quantization.h"
#include "mcompress/runtime/quantized_linear.h"
#include "mcompress/sdk/error.h"
#include "mcompress/sdk/progress.h"

namespace mcompress {
namespace {

torch::jit::Module submodule(const torch::jit::Module& model, const std::string& path) {
  torch::jit::Module module = model;
  size_t start = 0;
  while (start < path.size()) {
    const auto dot = path.find('.', start);
    const auto name = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!module.hasattr(name) || !module.attr(name).isModule())
      throw Error(fmt::format("mixed precision: `{}` is not a module of the model", path));
    module = module.attr(name).toModule();
    start = dot == std::string::npos ? path.size() : dot + 1;
  }
  return module;
}

torch::Tensor log_probabilities(torch::jit::Module& model, const torch::Tensor& batch) {
  auto output = model.forward({batch}).toTensor().to(torch::kFloat);
  return torch::log_softmax(output.reshape({-1, output.size(-1)}), -1);
}

}  // namespace

BitAllocation allocate_bits_by_sensitivity(const torch::jit::Module& model, const std::vector<std::string>& paths,
                                           const std::vector<torch::Tensor>& batches,
                                           const BitAllocationOptions& options) {
  for (int bits : {options.low_bits, options.high_bits}) {
    try {
      runtime::check_affine_format(bits, options.group_size);
    } catch (const std::invalid_argument& e) {
      throw Error(fmt::format("mixed precision: {}", e.what()));
    }
  }
  if (options.high_bits <= options.low_bits)
    throw Error(fmt::format("mixed precision: high bits ({}) must exceed low bits ({})", options.high_bits,
                            options.low_bits));
  if (!(options.target_bits_per_weight >= options.low_bits && options.target_bits_per_weight <= options.high_bits))
    throw Error(fmt::format("mixed precision: the target of {} bits per weight must lie between {} and {} bits",
                            options.target_bits_per_weight, options.low_bits, options.high_bits));
  if (batches.empty()) throw Error("mixed precision: no calibration batches to measure sensitivity on");

  torch::NoGradGuard no_grad;
  torch::jit::Module runner = model;  // shares the tensors: a weight is changed, measured and restored
  runner.eval();
  std::vector<torch::Tensor> reference;
  for (const auto& batch : batches) reference.push_back(log_probabilities(runner, batch));

  BitAllocation allocation;
  if (options.progress) options.progress->start("sensitivity", int64_t(paths.size()));
  for (const auto& path : paths) {
    LayerSensitivity layer;
    layer.path = path;
    layer.bits = options.low_bits;
    auto module = submodule(model, path);
    if (!module.hasattr("weight") || !module.attr("weight").isTensor())
      throw Error(fmt::format("mixed precision: `{}` has no weight; name linear layers", path));
    torch::Tensor weight = module.attr("weight").toTensor();
    // A layer whose input does not fit the group stays floating whatever it is given.
    if (weight.dim() == 2 && weight.size(1) % options.group_size == 0) {
      layer.weights = weight.numel();
      const torch::Tensor original = weight.clone();
      const auto q = runtime::quantize_weight(weight.detach(), options.low_bits, options.group_size);
      weight.detach().copy_(
          runtime::dequantize_weight(q.packed, q.scales, q.biases, q.bits, q.group_size).to(weight.scalar_type()));
      double kl = 0;
      int64_t positions = 0;
      for (size_t b = 0; b < batches.size(); ++b) {
        const auto log_q = log_probabilities(runner, batches[b]);
        kl += (reference[b].exp() * (reference[b] - log_q)).sum().item<double>();
        positions += reference[b].size(0);
      }
      weight.detach().copy_(original);
      layer.kl = kl / double(std::max<int64_t>(positions, 1));
    }
    allocation.layers.push_back(layer);
    if (options.progress) options.progress->update(int64_t(allocation.layers.size()), path);
  }

  // Most harm per weight first; a layer moves up while the budget allows.
  std::vector<size_t> order(allocation.layers.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const auto& la = allocation.layers[a];
    const auto& lb = allocation.layers[b];
    return la.kl / double(std::max<int64_t>(la.weights, 1)) > lb.kl / double(std::max<int64_t>(lb.weights, 1));
  });
  double total = 0, spent = 0;
  for (const auto& layer : allocation.layers) {
    total += double(layer.weights);
    spent += double(layer.weights) * layer.bits;
  }
  const double budget = options.target_bits_per_weight * total;
  for (size_t i : order) {
    auto& layer = allocation.layers[i];
    if (layer.weights == 0) continue;
    const double extra = double(layer.weights) * (options.high_bits - options.low_bits);
    if (spent + extra > budget + 1e-9) continue;
    layer.bits = options.high_bits;
    spent += extra;
  }
  for (const auto& layer : allocation.layers)
    allocation.plan.push_back({layer.path, layer.bits, options.group_size});
  allocation.bits_per_weight = total > 0 ? spent / total : 0;
  if (options.progress)
    options.progress->finish(fmt::format("{:.3f} bits per weight", allocation.bits_per_weight));
  return allocation;
}

}  // namespace mcompress
