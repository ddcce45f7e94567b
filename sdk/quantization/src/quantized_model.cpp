#include "mcompress/quantization/quantized_model.h"

#include <torch/csrc/jit/api/function_impl.h>

#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

#include "mcompress/runtime/affine_quantization.h"
#include "mcompress/runtime/quantized_linear.h"
#include "mcompress/sdk/error.h"
#include "mcompress/models/graph.h"

namespace mcompress {
namespace {

using torch::jit::Block;
using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

const c10::Symbol kQuantizedLinear = c10::Symbol::fromQualString("mcompress::quantized_linear");

std::string display(const std::string& path) { return path.empty() ? "(root)" : path; }

bool is_self_attribute(const Value* value, const Graph& graph, const std::string& name) {
  const Node* node = value->node();
  return node->kind() == c10::prim::GetAttr && node->s(c10::attr::name) == name &&
         node->input() == graph.inputs()[0];
}

// aten::linear(x, self.weight, ...) in the code of the module itself.
bool is_own_linear(const Node* node, const Graph& graph) {
  return node->kind() == c10::aten::linear && is_self_attribute(node->input(1), graph, "weight");
}

template <typename Visit>
void for_each_node(Block* block, const Visit& visit) {
  for (Node* node : block->nodes()) {
    for (Block* inner : node->blocks()) for_each_node(inner, visit);
    visit(node);
  }
}

std::vector<std::shared_ptr<Graph>> method_graphs(const c10::ClassTypePtr& type) {
  std::vector<std::shared_ptr<Graph>> graphs;
  for (torch::jit::Function* method : type->methods()) {
    graphs.push_back(torch::jit::toGraphFunction(*method).graph());
  }
  return graphs;
}

bool calls_own_linear(const torch::jit::Module& module) {
  for (const auto& graph : method_graphs(module.type())) {
    bool found = false;
    for_each_node(graph->block(), [&](Node* node) { found = found || is_own_linear(node, *graph); });
    if (found) return true;
  }
  return false;
}

// Why the class's code cannot lose `weight`, or "" when every read of it is
// the weight operand of torch.linear.
std::string weight_read_elsewhere(const c10::ClassTypePtr& type) {
  for (const auto& graph : method_graphs(type)) {
    std::string problem;
    for_each_node(graph->block(), [&](Node* node) {
      if (!problem.empty() || !is_self_attribute(node->output(), *graph, "weight")) return;
      for (const auto& use : node->output()->uses()) {
        if (!(use.user->kind() == c10::aten::linear && use.offset == 1)) {
          problem = fmt::format("its code also reads `weight` outside torch.linear (in {})",
                                use.user->kind().toQualString());
        }
      }
    });
    if (!problem.empty()) return problem;
  }
  return "";
}

// Other classes' code reading `<layer>.weight` (e.g. a tied output layer).
std::string weight_read_by_others(const c10::ClassTypePtr& type,
                                  const std::vector<c10::ClassTypePtr>& all_types) {
  for (const auto& other : all_types) {
    if (other == type) continue;
    for (const auto& graph : method_graphs(other)) {
      std::string problem;
      for_each_node(graph->block(), [&](Node* node) {
        if (node->kind() != c10::prim::GetAttr || node->s(c10::attr::name) != "weight") return;
        if (node->input()->type()->cast<c10::ClassType>() == type) {
          problem = fmt::format("its weight is read by the code of {}", other->name()->qualifiedName());
        }
      });
      if (!problem.empty()) return problem;
    }
  }
  return "";
}

// Replaces every torch.linear(x, self.weight, b) in the class's code.
void rewrite_linear_calls(const c10::ClassTypePtr& type) {
  for (const auto& graph : method_graphs(type)) {
    std::vector<Node*> calls;
    for_each_node(graph->block(), [&](Node* node) {
      if (is_own_linear(node, *graph)) calls.push_back(node);
    });
    Value* self = graph->inputs()[0];
    for (Node* call : calls) {
      torch::jit::WithInsertPoint insert_before(call);
      std::vector<torch::jit::NamedValue> inputs{call->input(0)};
      for (const char* name : {kPackedWeightName, kScalesName, kBiasesName}) {
        inputs.emplace_back(graph->insertGetAttr(self, name));
      }
      inputs.emplace_back(call->input(2));
      inputs.emplace_back(graph->insertGetAttr(self, kBitsName));
      inputs.emplace_back(graph->insertGetAttr(self, kGroupSizeName));
      Value* replacement = graph->insert(kQuantizedLinear, inputs);
      call->output()->replaceAllUsesWith(replacement);
      Node* weight_read = call->input(1)->node();
      call->destroy();
      if (!weight_read->hasUses()) weight_read->destroy();
    }
  }
}

double tensor_bytes(const torch::Tensor& t) { return double(t.numel() * t.element_size()); }

struct Instance {
  std::string path;
  torch::jit::Module module;
  const LayerQuantization* plan = nullptr;  // null: not planned
};

}  // namespace

std::vector<LinearLayer> find_linear_layers(const torch::jit::Module& model) {
  std::vector<LinearLayer> layers;
  for (const auto& named : model.named_modules()) {
    const auto weight = own_tensor(named.value, "weight");
    if (!weight || weight->dim() != 2 || !weight->is_floating_point()) continue;
    if (!calls_own_linear(named.value)) continue;
    const auto bias = own_tensor(named.value, "bias");
    layers.push_back({named.name, weight->size(1), weight->size(0), bias.has_value() && bias->defined()});
  }
  return layers;
}

QuantizedModel quantize_linear_layers(const torch::jit::Module& model,
                                      const std::vector<LayerQuantization>& plan,
                                      const QuantizationOptions& options) {
  for (const auto& entry : plan) {
    try {
      runtime::check_affine_format(entry.bits, entry.group_size);
    } catch (const std::invalid_argument& e) {
      throw Error(fmt::format("layer {}: {}", display(entry.path), e.what()));
    }
  }
  // New class types and code (tensors shared): the host's other copies of
  // the model, and their compiled code, are never touched.
  QuantizedModel result{model.clone(/*inplace=*/true), {}};
  torch::jit::Module& out = result.model;

  std::map<std::string, const LayerQuantization*> planned;
  for (const auto& entry : plan) planned[entry.path] = &entry;
  const auto linear = find_linear_layers(out);
  std::set<std::string> linear_paths;
  for (const auto& layer : linear) linear_paths.insert(layer.path);
  for (const auto& entry : plan) {
    if (!linear_paths.count(entry.path)) {
      throw Error(fmt::format("`{}` is not a linear layer of the model (one whose code calls "
                              "torch.linear on its own 2-D weight)",
                              display(entry.path)));
    }
  }

  // Every module of a class runs the same code, so a class is rewritten for
  // all its modules or for none.
  std::map<c10::ClassTypePtr, std::vector<Instance>> by_type;
  std::vector<c10::ClassTypePtr> all_types;
  for (const auto& named : out.named_modules()) {
    const auto type = named.value.type();
    if (!by_type.count(type)) all_types.push_back(type);
    auto it = planned.find(named.name);
    by_type[type].push_back({named.name, named.value, it == planned.end() ? nullptr : it->second});
  }

  std::map<std::string, QuantizedLayerReport> reports;
  for (auto& [type, instances] : by_type) {
    bool any_planned = false;
    for (const auto& instance : instances) any_planned = any_planned || instance.plan;
    if (!any_planned) continue;

    std::string class_problem = weight_read_elsewhere(type);
    if (class_problem.empty()) class_problem = weight_read_by_others(type, all_types);
    for (const auto& instance : instances) {
      if (!class_problem.empty()) break;
      if (!instance.plan) {
        class_problem = fmt::format("it shares its class ({}) and code with `{}`, which is not selected",
                                    type->name()->qualifiedName(), display(instance.path));
      }
    }
    std::map<std::string, std::string> layer_problem;
    for (const auto& instance : instances) {
      const auto weight = own_tensor(instance.module, "weight");
      if (!instance.plan || !weight || weight->dim() != 2) continue;
      if (weight->size(1) % instance.plan->group_size != 0) {
        layer_problem[instance.path] =
            fmt::format("its input size {} is not a multiple of the group size {}", weight->size(1),
                        instance.plan->group_size);
        if (class_problem.empty() && instances.size() > 1) {
          class_problem = fmt::format("it shares its class with `{}`, which {}", display(instance.path),
                                      layer_problem[instance.path]);
        }
      }
    }

    for (auto& instance : instances) {
      if (!instance.plan) continue;
      const auto weight = *own_tensor(instance.module, "weight");
      QuantizedLayerReport report;
      report.path = instance.path;
      report.in_features = weight.size(1);
      report.out_features = weight.size(0);
      report.bits = instance.plan->bits;
      report.group_size = instance.plan->group_size;
      report.bytes_before = report.bytes_after = int64_t(tensor_bytes(weight));
      if (layer_problem.count(instance.path)) {
        report.reason = layer_problem[instance.path];
      } else if (!class_problem.empty()) {
        report.reason = class_problem;
      }
      reports[instance.path] = report;
    }
    if (!class_problem.empty() || !layer_problem.empty()) continue;

    for (auto& instance : instances) {
      torch::NoGradGuard no_grad;
      const auto original = own_tensor(instance.module, "weight")->detach();
      const auto source = options.storage_dtype ? original.to(*options.storage_dtype) : original;
      runtime::QuantizedWeight q;
      try {
        q = runtime::quantize_weight(source, instance.plan->bits, instance.plan->group_size);
      } catch (const std::invalid_argument& e) {
        throw Error(fmt::format("layer {}: {}", display(instance.path), e.what()));
      }
      torch::jit::Module& m = instance.module;
      m.register_buffer(kPackedWeightName, q.packed);
      m.register_buffer(kScalesName, q.scales);
      m.register_buffer(kBiasesName, q.biases);
      m.register_attribute(kBitsName, c10::IntType::get(), int64_t(q.bits));
      m.register_attribute(kGroupSizeName, c10::IntType::get(), int64_t(q.group_size));

      auto& report = reports[instance.path];
      report.quantized = true;
      report.bytes_after =
          int64_t(tensor_bytes(q.packed) + tensor_bytes(q.scales) + tensor_bytes(q.biases));
      const auto error = runtime::dequantize_weight(q.packed, q.scales, q.biases, q.bits,
                                                    q.group_size) - original.to(torch::kFloat);
      report.max_abs_error = error.abs().max().item<double>();
      report.rms_error = std::sqrt(error.pow(2).mean().item<double>());
    }
    rewrite_linear_calls(type);
    // The floating weight goes: the packed one replaces it.
    for (auto& instance : instances) instance.module._ivalue()->unsafeRemoveAttr("weight");
    type->unsafeRemoveAttribute("weight");
  }

  for (const auto& entry : plan) result.layers.push_back(reports.at(entry.path));
  if (!quantized_layers(out).empty() && !out.type()->hasAttribute(kRuntimeRequirementName)) {
    out.register_attribute(
        kRuntimeRequirementName, c10::StringType::get(),
        std::string("mcompress runtime: this model calls mcompress::quantized_linear; load "
                    "libmcompress_runtime.so first (C++: link or dlopen it; Python: "
                    "torch.ops.load_library(path)) before torch.jit.load"));
  }
  return result;
}

}  // namespace mcompress
