#include "mcompress/quantization/quantized_model.h"

#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "mcompress/runtime/affine_quantization.h"
#include "mcompress/runtime/quantized_linear.h"
#include "mcompress/sdk/error.h"
#include "mcompress/models/graph.h"
#include "linear_layer_code.h"

namespace mcompress {
namespace {

using torch::jit::Node;
using torch::jit::Value;

const c10::Symbol kQuantizedLinear = c10::Symbol::fromQualString("mcompress::quantized_linear");

using linear_code::for_each_node;
using linear_code::is_self_attribute;
using linear_code::method_graphs;

std::string display(const std::string& path) { return path.empty() ? "(root)" : path; }

bool calls_own_linear(const torch::jit::Module& module) {
  return !linear_code::own_linear_calls(module.type()).empty();
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
  for (const auto& [graph, calls] : linear_code::own_linear_calls(type)) {
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

// The model's modules grouped by class, classes in module order.
struct ModulesByClass {
  std::map<c10::ClassTypePtr, std::vector<Instance>> instances;
  std::vector<c10::ClassTypePtr> types;
};

ModulesByClass modules_by_class(const torch::jit::Module& model,
                                const std::map<std::string, const LayerQuantization*>& planned) {
  ModulesByClass result;
  for (const auto& named : model.named_modules()) {
    const auto type = named.value.type();
    if (!result.instances.count(type)) result.types.push_back(type);
    auto it = planned.find(named.name);
    result.instances[type].push_back({named.name, named.value, it == planned.end() ? nullptr : it->second});
  }
  return result;
}

std::map<std::string, const LayerQuantization*> plan_by_path(const torch::jit::Module& model,
                                                             const std::vector<LayerQuantization>& plan) {
  for (const auto& entry : plan) {
    try {
      runtime::check_affine_format(entry.bits, entry.group_size);
    } catch (const std::invalid_argument& e) {
      throw Error(fmt::format("layer {}: {}", display(entry.path), e.what()));
    }
  }
  std::set<std::string> linear_paths;
  for (const auto& layer : find_linear_layers(model)) linear_paths.insert(layer.path);
  std::map<std::string, const LayerQuantization*> planned;
  for (const auto& entry : plan) {
    if (!linear_paths.count(entry.path)) {
      throw Error(fmt::format("`{}` is not a linear layer of the model (one whose code calls "
                              "torch.linear on its own 2-D weight)",
                              display(entry.path)));
    }
    planned[entry.path] = &entry;
  }
  return planned;
}

// Why planned layers cannot be quantized. Every module of a class runs the
// same code, so a class is rewritten for all its modules or for none: when
// one planned module of a class has a problem, all of them are listed.
std::map<std::string, std::string> planned_layer_problems(const ModulesByClass& modules) {
  std::map<std::string, std::string> problems;
  for (const auto& type : modules.types) {
    const auto& instances = modules.instances.at(type);
    bool any_planned = false;
    for (const auto& instance : instances) any_planned = any_planned || instance.plan;
    if (!any_planned) continue;

    std::string class_problem = weight_read_elsewhere(type);
    if (class_problem.empty()) class_problem = weight_read_by_others(type, modules.types);
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
    for (const auto& instance : instances) {
      if (!instance.plan) continue;
      if (layer_problem.count(instance.path)) {
        problems[instance.path] = layer_problem[instance.path];
      } else if (!class_problem.empty()) {
        problems[instance.path] = class_problem;
      }
    }
  }
  return problems;
}

std::string shape_text(const torch::Tensor& t) { return fmt::format("[{}]", fmt::join(t.sizes(), ", ")); }

// A weight quantized elsewhere (GPTQ, ...) must be exactly what this layer
// would store: same settings, shapes and scale dtype.
void check_precomputed(const std::string& path, const LayerQuantization& entry, const torch::Tensor& weight,
                       c10::ScalarType storage, const runtime::QuantizedWeight& q) {
  auto fail = [&](const std::string& what) {
    throw Error(fmt::format("layer {}: the precomputed quantized weight {}; compute it for this layer's "
                            "weight [{}, {}] with bits {} and group size {}, scales in {}",
                            display(path), what, weight.size(0), weight.size(1), entry.bits,
                            entry.group_size, c10::toString(storage)));
  };
  if (q.bits != entry.bits || q.group_size != entry.group_size) {
    fail(fmt::format("has bits {} and group size {}, but the plan says {} and {}", q.bits, q.group_size,
                     entry.bits, entry.group_size));
  }
  const int64_t rows = weight.size(0), columns = weight.size(1);
  const std::vector<int64_t> packed_shape{rows, runtime::packed_words(columns, entry.bits)};
  const std::vector<int64_t> scale_shape{rows, columns / entry.group_size};
  if (!q.packed.defined() || q.packed.scalar_type() != torch::kInt || q.packed.sizes() != packed_shape) {
    fail(fmt::format("has packed words {}, not int32 [{}, {}]",
                     q.packed.defined() ? shape_text(q.packed) : "(none)", packed_shape[0], packed_shape[1]));
  }
  for (const auto* tensor : {&q.scales, &q.biases}) {
    if (!tensor->defined() || tensor->sizes() != scale_shape) {
      fail(fmt::format("has scales/biases {}, not [{}, {}]", tensor->defined() ? shape_text(*tensor) : "(none)",
                       scale_shape[0], scale_shape[1]));
    }
    if (tensor->scalar_type() != storage) {
      fail(fmt::format("stores scales/biases as {}", c10::toString(tensor->scalar_type())));
    }
  }
}

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

std::map<std::string, std::string> unquantizable_layers(const torch::jit::Module& model,
                                                        const std::vector<LayerQuantization>& plan) {
  return planned_layer_problems(modules_by_class(model, plan_by_path(model, plan)));
}

QuantizedModel quantize_linear_layers(const torch::jit::Module& model,
                                      const std::vector<LayerQuantization>& plan,
                                      const QuantizationOptions& options) {
  // New class types and code (tensors shared): the host's other copies of
  // the model, and their compiled code, are never touched.
  QuantizedModel result{model.clone(/*inplace=*/true), {}};
  torch::jit::Module& out = result.model;
  const auto planned = plan_by_path(out, plan);
  const ModulesByClass modules = modules_by_class(out, planned);
  const auto problems = planned_layer_problems(modules);
  for (const auto& [path, weight] : options.precomputed) {
    if (!planned.count(path)) {
      throw Error(fmt::format("a precomputed quantized weight is given for `{}`, which the plan does not "
                              "quantize; plan the layer or drop the weight",
                              display(path)));
    }
  }

  std::map<std::string, QuantizedLayerReport> reports;
  for (const auto& type : modules.types) {
    const auto& instances = modules.instances.at(type);
    bool any_planned = false, any_problem = false;
    for (const auto& instance : instances) {
      if (!instance.plan) continue;
      any_planned = true;
      const auto weight = *own_tensor(instance.module, "weight");
      QuantizedLayerReport report;
      report.path = instance.path;
      report.in_features = weight.size(1);
      report.out_features = weight.size(0);
      report.bits = instance.plan->bits;
      report.group_size = instance.plan->group_size;
      report.bytes_before = report.bytes_after = int64_t(tensor_bytes(weight));
      if (auto problem = problems.find(instance.path); problem != problems.end()) {
        report.reason = problem->second;
        any_problem = true;
      }
      reports[instance.path] = report;
    }
    if (!any_planned || any_problem) continue;

    for (const auto& instance : instances) {
      torch::NoGradGuard no_grad;
      const auto original = own_tensor(instance.module, "weight")->detach();
      const auto source = options.storage_dtype ? original.to(*options.storage_dtype) : original;
      runtime::QuantizedWeight q;
      if (auto given = options.precomputed.find(instance.path); given != options.precomputed.end()) {
        check_precomputed(instance.path, *instance.plan, original, source.scalar_type(), given->second);
        q = given->second;
      } else {
        try {
          q = runtime::quantize_weight(source, instance.plan->bits, instance.plan->group_size);
        } catch (const std::invalid_argument& e) {
          throw Error(fmt::format("layer {}: {}", display(instance.path), e.what()));
        }
      }
      torch::jit::Module m = instance.module;
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
    for (const auto& instance : instances) instance.module._ivalue()->unsafeRemoveAttr("weight");
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
