#include "mcompress/quantization/gptq_calibration.h"

#include <torch/library.h>

#include <algorithm>
#include <functional>
#include <set>
#include <unordered_map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "linear_layer_code.h"
#include "mcompress/models/evaluate.h"
#include "mcompress/models/graph.h"
#include "mcompress/runtime/quantized_linear.h"
#include "mcompress/sdk/error.h"
#include "mcompress/sdk/progress.h"

// What the recording copies' layers call before their torch.linear: adds
// x's rows to the layer's Hessian sums, or nothing while the layer is not
// being calibrated (empty sums). CONSERVATIVE: TorchScript must treat it as
// having side effects, never remove or reorder it.
TORCH_LIBRARY_FRAGMENT(mcompress, m) {
  m.def(torch::schema("gptq_record_linear_input(Tensor x, Tensor sum, Tensor rows) -> ()",
                      c10::AliasAnalysisKind::CONSERVATIVE),
        [](const at::Tensor& x, const at::Tensor& sum, const at::Tensor& rows) {
          if (sum.numel() > 0) mcompress::HessianAccumulator::add_to(sum, rows, x);
        });
}

namespace mcompress {
namespace {

using torch::jit::Block;
using torch::jit::Module;
using torch::jit::Node;
using torch::jit::Value;

const c10::Symbol kRecordInput = c10::Symbol::fromQualString("mcompress::gptq_record_linear_input");
constexpr const char* kSumName = "mcompress_gptq_input_sum";
constexpr const char* kRowsName = "mcompress_gptq_input_rows";

std::string display(const std::string& path) { return path.empty() ? "(root)" : path; }
std::string shape_of(const at::Tensor& t) { return fmt::format("[{}]", fmt::join(t.sizes(), ", ")); }

at::Tensor inactive() { return at::empty({0}, at::kDouble); }

// A private copy of the model whose planned layers record their inputs into
// the accumulators made active, and whose weights can be replaced (by their
// quantized values) without touching the caller's model.
class RecordingCopy {
 public:
  RecordingCopy(const Module& model, const std::set<std::string>& paths) : copy_(model.clone(/*inplace=*/true)) {
    std::set<c10::ClassTypePtr> recording_types;
    for (const auto& named : copy_.named_modules()) {
      if (paths.count(named.name)) recording_types.insert(named.value.type());
    }
    // Every module of a recording class runs its code, so each gets (empty) sums.
    for (const auto& named : copy_.named_modules()) {
      if (!recording_types.count(named.value.type())) continue;
      Module module = named.value;
      module.register_buffer(kSumName, inactive());
      module.register_buffer(kRowsName, inactive());
    }
    for (const auto& type : recording_types) {
      for (const auto& [graph, calls] : linear_code::own_linear_calls(type)) {
        Value* self = graph->inputs()[0];
        for (Node* call : calls) {
          torch::jit::WithInsertPoint insert_before(call);
          Value* sum = graph->insertGetAttr(self, kSumName);
          Value* rows = graph->insertGetAttr(self, kRowsName);
          graph->insert(kRecordInput, {call->input(0), sum, rows});
        }
      }
    }
  }

  void record(const std::string& path, const HessianAccumulator& accumulator) {
    Module layer = submodule_at(copy_, path);
    layer.setattr(kSumName, accumulator.sum());
    layer.setattr(kRowsName, accumulator.row_count());
  }
  void stop_recording(const std::string& path) {
    Module layer = submodule_at(copy_, path);
    layer.setattr(kSumName, inactive());
    layer.setattr(kRowsName, inactive());
  }
  void set_weight(const std::string& path, const at::Tensor& weight) {
    submodule_at(copy_, path).setattr("weight", weight);
  }

  void run(const std::vector<torch::Tensor>& batches) {
    EvalModeGuard eval(copy_);
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < batches.size(); ++i) {
      try {
        copy_.forward({batches[i]});
      } catch (const c10::Error& e) {
        throw Error(fmt::format("GPTQ calibration: the model failed on calibration batch {} {}: {}", i,
                                shape_of(batches[i]), e.what_without_backtrace()));
      } catch (const std::exception& e) {
        throw Error(fmt::format("GPTQ calibration: the model failed on calibration batch {} {}: {}", i,
                                shape_of(batches[i]), e.what()));
      }
    }
  }

 private:
  Module copy_;
};

void require_linear_layers(const Module& model, const std::vector<std::string>& paths) {
  std::set<std::string> linear;
  std::vector<std::string> known;
  for (const auto& layer : find_linear_layers(model)) {
    linear.insert(layer.path);
    known.push_back(display(layer.path));
  }
  for (const auto& path : paths) {
    if (!linear.count(path)) {
      throw Error(fmt::format("GPTQ calibration: `{}` is not a linear layer of the model (one whose code "
                              "calls torch.linear on its own 2-D weight); its linear layers are: {}",
                              display(path), fmt::join(known, ", ")));
    }
  }
}

void require_batches(const std::vector<torch::Tensor>& batches) {
  if (batches.empty()) {
    throw Error("GPTQ calibration needs at least one batch of model inputs (token ids [B, T] for a language "
                "model); none were given");
  }
}

bool is_in_place(const Node* node) {
  const std::string name = node->kind().toUnqualString();
  return node->kind().is_aten() && !name.empty() && name.back() == '_' && node->inputs().size() > 0;
}

// The round of each layer at `paths`: how many of those layers lie on the
// longest path from the model's inputs to the layer's input in the inlined
// forward graph (rounds renumbered 0, 1, ...). A layer fed through
// branches or in-place updates counts everything they depend on, so a
// layer never shares a round with one whose output reaches it.
std::map<std::string, int> dependency_rounds(const Module& model, const std::set<std::string>& paths) {
  const auto graph = inlined_forward_graph(model);
  std::unordered_map<const Value*, int> depth;
  std::map<std::string, int> level;
  auto depth_of = [&](const Value* v) {
    const auto it = depth.find(v);
    return it == depth.end() ? 0 : it->second;
  };
  std::function<int(Block*, int)> visit = [&](Block* block, int enclosing) {
    int deepest = enclosing;
    for (Node* node : block->nodes()) {
      int in = enclosing;
      for (const Value* v : node->inputs()) in = std::max(in, depth_of(v));
      for (Block* inner : node->blocks()) {
        for (const Value* v : inner->inputs()) depth[v] = in;
        in = std::max(in, visit(inner, in));
      }
      int out = in;
      if (node->kind() == c10::aten::linear) {
        const auto weight = attribute_path(node->input(1));
        if (weight && weight->attribute == "weight" && paths.count(weight->module_path)) {
          auto [it, added] = level.emplace(weight->module_path, in);
          if (!added) it->second = std::max(it->second, in);
          out = in + 1;
        }
      }
      for (const Value* v : node->outputs()) depth[v] = out;
      if (is_in_place(node)) depth[node->input(0)] = std::max(depth_of(node->input(0)), out);
      deepest = std::max(deepest, out);
    }
    return deepest;
  };
  visit(graph->block(), 0);
  std::set<int> levels;
  for (const auto& path : paths) levels.insert(level.count(path) ? level[path] : 0);
  std::map<int, int> renumbered;
  for (int l : levels) renumbered.emplace(l, int(renumbered.size()));
  std::map<std::string, int> rounds;
  for (const auto& path : paths) rounds[path] = renumbered.at(level.count(path) ? level[path] : 0);
  return rounds;
}

at::Tensor dequantized(const runtime::QuantizedWeight& q) {
  return runtime::dequantize_weight(q.packed, q.scales, q.biases, q.bits, q.group_size);
}

}  // namespace

std::map<std::string, HessianAccumulator> collect_linear_input_hessians(const Module& model,
                                                                        const std::vector<std::string>& paths,
                                                                        const std::vector<torch::Tensor>& batches) {
  require_linear_layers(model, paths);
  require_batches(batches);
  const std::set<std::string> unique(paths.begin(), paths.end());
  RecordingCopy copy(model, unique);
  std::map<std::string, HessianAccumulator> accumulators;
  for (const auto& path : unique) {
    const auto weight = *own_tensor(submodule_at(model, path), "weight");
    const auto& accumulator = accumulators.emplace(path, HessianAccumulator(weight.size(1))).first->second;
    copy.record(path, accumulator);
  }
  copy.run(batches);
  return accumulators;
}

GptqModelResult gptq_quantize_layers(const Module& model, const std::vector<LayerQuantization>& plan,
                                     const std::vector<torch::Tensor>& batches,
                                     const GptqCalibrationOptions& options) {
  const auto unquantizable = unquantizable_layers(model, plan);
  require_batches(batches);

  GptqModelResult result;
  std::map<std::string, size_t> index_of;
  std::set<std::string> paths;
  for (const auto& entry : plan) {
    GptqLayerResult layer;
    layer.path = entry.path;
    if (auto reason = unquantizable.find(entry.path); reason != unquantizable.end()) {
      layer.skipped = true;
      layer.note = "not quantized: " + reason->second;
    } else {
      paths.insert(entry.path);
    }
    index_of[entry.path] = result.layers.size();
    result.layers.push_back(layer);
  }
  std::map<int, std::vector<const LayerQuantization*>> rounds;
  const auto round_of = options.sequential ? dependency_rounds(model, paths) : std::map<std::string, int>{};
  for (const auto& entry : plan) {
    if (!paths.count(entry.path)) continue;
    const int round = options.sequential ? round_of.at(entry.path) : 0;
    auto& members = rounds[round];
    const bool listed = std::any_of(members.begin(), members.end(),
                                    [&](const LayerQuantization* m) { return m->path == entry.path; });
    if (!listed) members.push_back(&entry);
    result.layers[index_of[entry.path]].round = round;
  }

  RecordingCopy copy(model, paths);
  if (options.progress) options.progress->start("GPTQ", int64_t(paths.size()));
  int64_t done = 0;
  for (const auto& [round, members] : rounds) {
    std::map<std::string, HessianAccumulator> accumulators;
    for (const auto* entry : members) {
      const auto weight = *own_tensor(submodule_at(model, entry->path), "weight");
      copy.record(entry->path, accumulators.emplace(entry->path, HessianAccumulator(weight.size(1))).first->second);
    }
    copy.run(batches);
    ++result.calibration_passes;
    for (const auto* entry : members) copy.stop_recording(entry->path);

    for (const auto* entry : members) {
      auto& layer = result.layers[index_of[entry->path]];
      const HessianAccumulator& accumulator = accumulators.at(entry->path);
      torch::NoGradGuard no_grad;
      const at::Tensor original = own_tensor(submodule_at(model, entry->path), "weight")->detach();
      const at::Tensor source =
          options.gptq.storage_dtype ? original.to(*options.gptq.storage_dtype) : original;
      layer.calibration_rows = accumulator.rows();
      runtime::QuantizedWeight rtn;
      try {
        rtn = runtime::quantize_weight(source, entry->bits, entry->group_size);
      } catch (const std::invalid_argument& e) {
        throw Error(fmt::format("layer {}: {}", display(entry->path), e.what()));
      }
      at::Tensor quantized_value = dequantized(rtn);
      if (layer.calibration_rows == 0) {
        layer.note = "no calibration input reached it, so it is rounded to nearest";
      } else {
        const at::Tensor hessian = accumulator.hessian();
        GptqOptions gptq = options.gptq;
        gptq.storage_dtype = source.scalar_type();
        try {
          layer.weight = gptq_quantize_weight(source, hessian, entry->bits, entry->group_size, gptq, &layer.report);
        } catch (const Error& e) {
          throw Error(fmt::format("layer {}: {}", display(entry->path), e.what()));
        }
        quantized_value = dequantized(*layer.weight);
        layer.output_mse = output_mse(original, quantized_value, hessian);
        layer.rtn_output_mse = output_mse(original, dequantized(rtn), hessian);
        if (layer.report.damping_retries > 0) {
          layer.note = fmt::format("the damped Hessian was not positive definite with damp {}; GPTQ used {} "
                                   "of its mean diagonal (more calibration data avoids this)",
                                   options.gptq.damp, layer.report.damp);
        }
      }
      // Later rounds see this layer as it will be.
      if (options.sequential) copy.set_weight(entry->path, quantized_value.to(original.scalar_type()));
      if (options.progress) options.progress->update(++done, display(entry->path));
    }
  }
  if (options.progress) options.progress->finish(fmt::format("{} layers, {} calibration passes", done,
                                                             result.calibration_passes));
  return result;
}

}  // namespace mcompress
