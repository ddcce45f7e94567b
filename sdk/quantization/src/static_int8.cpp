#include "mcompress/quantization/static_int8.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <fnmatch.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/frontend/resolver.h>
#include <torch/csrc/jit/frontend/sugared_value.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/remove_mutation.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "mcompress/models/module_copy.h"
#include "mcompress/sdk/error.h"
#include "activation_ranges.h"

namespace mcompress {
namespace {

using int8::ActivationRange;
using torch::jit::Node;
using torch::jit::Value;

constexpr int kQUInt8 = 13;  // c10::ScalarType::QUInt8, as TorchScript spells a dtype

struct QuantParams {
  double scale = 1;
  int64_t zero_point = 0;
};

// uint8, affine, over the observed range widened to contain 0 (so that zero
// padding and relu are exact), as PyTorch's observers compute it.
QuantParams activation_qparams(const ActivationRange& range) {
  const double low = std::min(range.min, 0.0), high = std::max(range.max, 0.0);
  const double scale = std::max((high - low) / 255.0, double(std::numeric_limits<float>::epsilon()));
  return {scale, std::clamp<int64_t>(std::llround(-low / scale), 0, 255)};
}

// int8 symmetric per output channel (PyTorch's per_channel_symmetric qint8).
torch::Tensor per_channel_int8(const torch::Tensor& weight) {
  const auto amax = weight.detach().abs().reshape({weight.size(0), -1}).amax(1).to(torch::kDouble);
  const auto scales = (amax / 127.5).clamp_min(double(std::numeric_limits<float>::epsilon()));
  return torch::quantize_per_channel(weight.detach().contiguous(), scales,
                                     torch::zeros({weight.size(0)}, torch::kLong), 0, torch::kQInt8);
}

c10::IValue call_operator(const char* name, std::vector<c10::IValue> arguments) {
  const auto op = c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
  torch::jit::Stack stack(std::move(arguments));
  op.callBoxed(&stack);
  return stack.front();
}

std::optional<c10::IValue> constant(Value* value) {
  if (value->node()->kind() != c10::prim::Constant) return std::nullopt;
  return torch::jit::toIValue(value);
}

bool is_tensor(const Value* value) { return value->type()->kind() == c10::TypeKind::TensorType; }

std::string where(const Node* node) {
  const auto range = node->sourceRange();
  const auto text = range.source() ? range.text().str() : std::string();
  return fmt::format("`{}`{}", node->kind().toQualString(), text.empty() ? "" : fmt::format(" at `{}`", text));
}

std::string float_literal(double x) {
  if (std::isinf(x)) return x > 0 ? "float(\"inf\")" : "float(\"-inf\")";
  if (std::isnan(x)) return "float(\"nan\")";
  std::string text = fmt::format("{:.17g}", x);
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

std::string literal(const c10::IValue& v, const Node* node) {
  if (v.isNone()) return "None";
  if (v.isBool()) return v.toBool() ? "True" : "False";
  if (v.isInt()) return std::to_string(v.toInt());
  if (v.isDouble()) return float_literal(v.toDouble());
  if (v.isString()) return fmt::format("\"{}\"", v.toStringRef());
  if (v.isDevice()) return fmt::format("torch.device(\"{}\")", v.toDevice().str());
  if (v.isIntList()) return fmt::format("[{}]", fmt::join(v.toIntVector(), ", "));
  if (v.isDoubleList()) {
    std::vector<std::string> items;
    for (double x : v.toDoubleVector()) items.push_back(float_literal(x));
    return fmt::format("[{}]", fmt::join(items, ", "));
  }
  if (v.isBoolList()) {
    std::vector<std::string> items;
    for (bool b : v.toBoolList()) items.push_back(b ? "True" : "False");
    return fmt::format("[{}]", fmt::join(items, ", "));
  }
  throw Error(fmt::format("static int8: the frozen graph has a constant of type {} ({}), which the int8 "
                          "writer cannot spell in TorchScript source",
                          v.type()->str(), where(node)));
}

// "self.layer1.0.conv1.weight_fused_bn" -> "layer1.0.conv1": the module path
// freezing keeps in the names of the constants it makes.
std::optional<std::string> layer_name_from(const Value* weight) {
  const std::string name = weight->debugName();
  const std::string prefix = "self.";
  const auto end = name.rfind(".weight");
  if (name.rfind(prefix, 0) != 0 || end == std::string::npos || end <= prefix.size()) return std::nullopt;
  return name.substr(prefix.size(), end - prefix.size());
}

std::string identifier(const std::string& text) {
  std::string id;
  for (char c : text) id += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  if (id.empty() || std::isdigit(static_cast<unsigned char>(id[0]))) id = "t_" + id;
  return id;
}


// prim::If nodes that only check their inputs and raise (adaptive pooling's
// dimension check): they compute nothing the int8 forward needs.
void remove_input_checks(torch::jit::Graph& graph) {
  for (auto it = graph.nodes().begin(); it != graph.nodes().end();) {
    Node* node = *it++;
    if (node->kind() != c10::prim::If || !node->outputs().empty()) continue;
    bool only_raises = true;
    for (auto* block : node->blocks())
      for (auto* inner : block->nodes()) only_raises &= inner->kind() == c10::prim::RaiseException;
    if (only_raises) node->destroy();
  }
  torch::jit::EliminateDeadCode(graph.block());
}

// A relu (or hardtanh clamping at 0, as ReLU6) that is the only use of
// `value`: the quantized op computes it, its output range clamping the top.
Node* fusable_relu(Value* value) {
  if (value->uses().size() != 1) return nullptr;
  Node* user = value->uses()[0].user;
  if (user->input(0) != value) return nullptr;
  if (user->kind() == c10::aten::relu) return user;
  if (user->kind() == c10::aten::hardtanh) {
    const auto low = constant(user->input(1));
    if (low && low->isScalar() && low->toScalar().toDouble() == 0.0) return user;
  }
  return nullptr;
}

// Ops that take an int8 tensor and give one with the same scale and zero
// point (LibTorch has quantized kernels for them).
const std::set<c10::Symbol>& int8_passthrough_ops() {
  static const std::set<c10::Symbol> ops = {
      c10::aten::max_pool2d, c10::aten::adaptive_avg_pool2d, c10::aten::avg_pool2d,
      c10::aten::flatten,    c10::aten::reshape,             c10::aten::view,
      c10::aten::relu,       c10::aten::hardtanh,            c10::aten::contiguous,
      c10::aten::mean};
  return ops;
}

bool is_eval_dropout(const Node* node) {
  static const std::set<c10::Symbol> dropouts = {c10::aten::dropout, c10::aten::feature_dropout,
                                                 c10::aten::alpha_dropout};
  if (!dropouts.count(node->kind()) || node->inputs().size() != 3) return false;
  const auto train = constant(node->input(2));
  return train && train->isBool() && !train->toBool();
}

class Int8Writer {
 public:
  Int8Writer(torch::jit::Graph& graph, const std::unordered_map<const Value*, ActivationRange>& ranges,
             const StaticInt8Options& options, torch::jit::Module& out, StaticInt8Model& result)
      : graph_(graph), ranges_(ranges), options_(options), out_(out), result_(result) {}

  std::string write() {
    std::vector<std::string> parameters;
    for (size_t i = 1; i < graph_.inputs().size(); ++i) {
      Value* input = graph_.inputs()[i];
      const std::string name = fmt::format("input{}", i - 1);
      parameters.push_back(fmt::format("{}: {}", name, input->type()->annotation_str()));
      (is_tensor(input) ? names_[input].float_name : expressions_[input]) = name;
    }
    for (Node* node : graph_.nodes()) {
      if (fused_.count(node)) continue;
      write_node(node);
    }
    std::vector<std::string> returned;
    for (Value* output : graph_.outputs()) returned.push_back(float_argument(output));
    line("return " + (returned.size() == 1 ? returned[0] : fmt::format("({})", fmt::join(returned, ", "))));
    for (const auto& [kind, count] : float_op_counts_) {
      result_.float_ops.push_back(count == 1 ? kind : fmt::format("{} x{}", kind, count));
    }
    return fmt::format("def forward(self, {}):\n{}", fmt::join(parameters, ", "), body_);
  }

 private:
  struct Names {
    std::string float_name;  // set once the float value is computed
    std::string int8_name;   // set once the int8 value is computed
    QuantParams qparams;
  };

  void line(const std::string& text) { body_ += "    " + text + "\n"; }
  std::string fresh() { return fmt::format("v{}", next_++); }

  std::string attribute_name(const std::string& base) {
    std::string name = identifier(base);
    for (int i = 1; out_.hasattr(name); ++i) name = fmt::format("{}_{}", identifier(base), i);
    return name;
  }

  void write_node(Node* node) {
    const auto kind = node->kind();
    if (kind == c10::prim::Constant || kind == c10::prim::ListConstruct || kind == c10::prim::TupleConstruct) {
      return;  // spelled where they are used
    }
    if (kind == c10::aten::conv2d || kind == c10::aten::linear) return write_layer(node);
    if (is_eval_dropout(node)) {
      names_[node->output()] = names_.at(node->input(0));
      return;
    }
    Value* first = node->inputs().empty() ? nullptr : node->input(0);
    const bool int8_input = first && is_tensor(first) && names_.count(first) && !names_.at(first).int8_name.empty();
    if (int8_input && int8_passthrough_ops().count(kind) && node->outputs().size() == 1) {
      const auto& in = names_.at(first);
      std::vector<std::string> arguments = {in.int8_name};
      for (size_t i = 1; i < node->inputs().size(); ++i) arguments.push_back(float_argument(node->input(i)));
      const std::string name = fresh();
      line(fmt::format("{} = torch.{}({})", name, kind.toUnqualString(), fmt::join(arguments, ", ")));
      names_[node->output()].int8_name = name;
      names_[node->output()].qparams = in.qparams;
      return;
    }
    if (kind == c10::aten::add && write_int8_add(node)) return;
    if (kind == c10::aten::cat && write_int8_cat(node)) return;
    if (kind == c10::aten::hardswish && int8_input && ranges_.count(node->output())) {
      const auto q = activation_qparams(ranges_.at(node->output()));
      set_int8(node->output(), fmt::format("quantized.hardswish({}, {}, {})", names_.at(first).int8_name,
                                           float_literal(q.scale), q.zero_point),
               q);
      return;
    }
    write_float_op(node);
  }

  void set_int8(Value* value, const std::string& expression, QuantParams q) {
    const std::string name = fresh();
    line(fmt::format("{} = {}", name, expression));
    names_[value].int8_name = name;
    names_[value].qparams = q;
  }

  // The value as an int8 tensor: quantized with its observed range if it is
  // float so far. Needs a range (every computed tensor has one).
  std::string int8_argument(Value* value) {
    auto& names = names_[value];
    if (!names.int8_name.empty()) return names.int8_name;
    const auto q = activation_qparams(ranges_.at(value));
    const std::string source = float_argument(value);
    ++result_.quantize_calls;
    auto& updated = names_[value];
    updated.int8_name = fresh();
    updated.qparams = q;
    line(fmt::format("{} = torch.quantize_per_tensor({}, {}, {}, {})", updated.int8_name, source,
                     float_literal(q.scale), q.zero_point, kQUInt8));
    return updated.int8_name;
  }

  // The value as an argument of a float op: a float tensor (dequantized if
  // computed in int8), a constant, a list or tuple built from such.
  std::string float_argument(Value* value) {
    if (auto found = expressions_.find(value); found != expressions_.end()) return found->second;
    Node* producer = value->node();
    if (producer->kind() == c10::prim::ListConstruct || producer->kind() == c10::prim::TupleConstruct) {
      std::vector<std::string> items;
      for (Value* item : producer->inputs()) items.push_back(float_argument(item));
      if (producer->kind() == c10::prim::ListConstruct) return fmt::format("[{}]", fmt::join(items, ", "));
      return fmt::format("({}{})", fmt::join(items, ", "), items.size() == 1 ? "," : "");
    }
    if (producer->kind() == c10::prim::Constant) {
      const auto v = torch::jit::toIValue(value);
      if (v->isTensor()) {  // stored as a buffer of the new module
        const std::string base = value->debugName().rfind("self.", 0) == 0 ? value->debugName().substr(5)
                                                                             : "constant_" + value->debugName();
        const std::string name = attribute_name(base);
        out_.register_buffer(name, v->toTensor().detach().clone());
        expressions_[value] = "self." + name;
      } else {
        expressions_[value] = literal(*v, producer);
      }
      return expressions_.at(value);
    }
    if (!is_tensor(value)) {
      throw Error(fmt::format("static int8: {} uses a value the writer has not computed (internal error)",
                              where(producer)));
    }
    auto& names = names_.at(value);
    if (names.float_name.empty()) {
      ++result_.dequantize_calls;
      names.float_name = fresh();
      line(fmt::format("{} = torch.dequantize({})", names.float_name, names.int8_name));
    }
    return names.float_name;
  }

  void write_float_op(Node* node) {
    const auto kind = node->kind();
    const auto* schema = node->maybeSchema();
    if (kind == c10::prim::ListUnpack || kind == c10::prim::TupleUnpack) {
      const std::string source = float_argument(node->input(0));
      return assign_outputs(node, source);
    }
    if (!kind.is_aten() || !schema || !node->blocks().empty() || kind.toUnqualString()[0] == '_') {
      throw Error(fmt::format("static int8: the frozen forward has {}, which the int8 writer cannot express "
                              "(it writes aten ops, constants, lists and tuples, without control flow); "
                              "make the model's forward free of it, or leave this model in float",
                              where(node)));
    }
    std::vector<std::string> arguments;
    for (size_t i = 0; i < node->inputs().size(); ++i) {
      const auto& argument = schema->arguments().at(i);
      const std::string value = float_argument(node->input(i));
      arguments.push_back(argument.kwarg_only() ? fmt::format("{}={}", argument.name(), value) : value);
    }
    bool computes_tensor = false;
    for (Value* output : node->outputs()) computes_tensor |= is_tensor(output);
    if (computes_tensor) ++float_op_counts_[kind.toQualString()];
    assign_outputs(node, fmt::format("torch.{}({})", kind.toUnqualString(), fmt::join(arguments, ", ")));
  }

  void assign_outputs(Node* node, const std::string& expression) {
    if (node->outputs().empty()) return line(expression);
    std::vector<std::string> targets;
    for (Value* output : node->outputs()) {
      const std::string name = fresh();
      targets.push_back(name);
      (is_tensor(output) ? names_[output].float_name : expressions_[output]) = name;
    }
    line(fmt::format("{} = {}", fmt::join(targets, ", "), expression));
  }

  std::optional<std::string> ignored_by(const std::string& name) const {
    for (const auto& pattern : options_.ignore) {
      if (fnmatch(pattern.c_str(), name.c_str(), 0) == 0) return pattern;
    }
    return std::nullopt;
  }

  void write_layer(Node* node) {
    const bool conv = node->kind() == c10::aten::conv2d;
    Int8LayerReport report;
    report.op = conv ? "conv2d" : "linear";
    report.name = layer_name_from(node->input(1)).value_or(fmt::format("op{}", layer_index_));
    ++layer_index_;
    const auto weight = constant(node->input(1));
    const auto bias = constant(node->input(2));
    if (weight && weight->isTensor()) {
      report.bytes_before = weight->toTensor().numel() * 4;
      if (bias && bias->isTensor()) report.bytes_before += bias->toTensor().numel() * 4;
    }
    report.bytes_after = report.bytes_before;
    Node* relu = fusable_relu(node->output());
    Value* result = relu ? relu->output() : node->output();

    std::vector<c10::IValue> conv_settings;  // stride, padding, dilation, groups
    if (conv) {
      for (size_t i = 3; i < 7; ++i) {
        const auto setting = constant(node->input(i));
        if (setting) conv_settings.push_back(*setting);
      }
    }
    if (const auto pattern = ignored_by(report.name)) {
      report.reason = fmt::format("ignored by pattern `{}`", *pattern);
    } else if (!weight || !weight->isTensor() || !weight->toTensor().is_floating_point()) {
      report.reason = "its weight is computed in forward, not a frozen constant";
    } else if (!bias || !(bias->isNone() || bias->isTensor())) {
      report.reason = "its bias is computed in forward, not a frozen constant";
    } else if (conv && conv_settings.size() != 4) {
      report.reason = "its stride, padding, dilation or groups are computed in forward";
    } else if (conv && weight->toTensor().dim() != 4) {
      report.reason = fmt::format("its weight has {} dimensions, not 4", weight->toTensor().dim());
    } else if (!conv && weight->toTensor().dim() != 2) {
      report.reason = fmt::format("its weight has {} dimensions, not 2", weight->toTensor().dim());
    } else if (!ranges_.count(node->input(0)) || !ranges_.count(result)) {
      report.reason = "no calibration batch reached it";
    }
    if (!report.reason.empty()) {
      result_.layers.push_back(report);
      return write_float_op(node);
    }

    const torch::Tensor float_weight = weight->toTensor();
    const torch::Tensor qweight = per_channel_int8(float_weight);
    const c10::IValue float_bias = bias->isTensor() ? c10::IValue(bias->toTensor().detach().to(torch::kFloat))
                                                    : c10::IValue();
    c10::IValue packed;
    try {
      if (conv) {
        packed = call_operator("quantized::conv2d_prepack", {qweight, float_bias, conv_settings[0],
                                                             conv_settings[1], conv_settings[2], conv_settings[3]});
      } else {
        packed = call_operator("quantized::linear_prepack", {qweight, float_bias});
      }
    } catch (const c10::Error& e) {
      report.reason = fmt::format("the int8 engine cannot pack it: {}", e.what_without_backtrace());
      result_.layers.push_back(report);
      return write_float_op(node);
    }
    const std::string attribute = attribute_name(report.name + "_packed");
    out_.register_attribute(attribute, packed.type(), packed);

    const std::string input = int8_argument(node->input(0));
    const auto q = activation_qparams(ranges_.at(result));
    set_int8(result,
             fmt::format("quantized.{}{}({}, self.{}, {}, {})", conv ? "conv2d" : "linear",
                         relu ? "_relu" : "", input, attribute, float_literal(q.scale), q.zero_point),
             q);
    if (relu) {
      fused_.insert(relu);
      report.fused = "relu";
    }
    report.quantized = true;
    report.bytes_after = qweight.numel() + float_weight.size(0) * 16 +
                         (float_bias.isTensor() ? float_bias.toTensor().numel() * 4 : 0);
    result_.layers.push_back(report);
  }

  bool has_int8(Value* value) const {
    const auto found = names_.find(value);
    return found != names_.end() && !found->second.int8_name.empty();
  }

  // a + b of two tensors (alpha 1) where either is int8 already.
  bool write_int8_add(Node* node) {
    if (node->inputs().size() != 3 || !is_tensor(node->input(0)) || !is_tensor(node->input(1))) return false;
    const auto alpha = constant(node->input(2));
    if (!alpha || !alpha->isScalar() || alpha->toScalar().toDouble() != 1.0) return false;
    if (!has_int8(node->input(0)) && !has_int8(node->input(1))) return false;
    Node* relu = fusable_relu(node->output());
    Value* result = relu ? relu->output() : node->output();
    if (!ranges_.count(result) || !ranges_.count(node->input(0)) || !ranges_.count(node->input(1))) return false;
    const std::string a = int8_argument(node->input(0)), b = int8_argument(node->input(1));
    const auto q = activation_qparams(ranges_.at(result));
    set_int8(result,
             fmt::format("quantized.add{}({}, {}, {}, {})", relu ? "_relu" : "", a, b,
                         float_literal(q.scale), q.zero_point),
             q);
    if (relu) fused_.insert(relu);
    return true;
  }

  // cat of a list built in forward, any of whose tensors is int8 already.
  bool write_int8_cat(Node* node) {
    Node* list = node->input(0)->node();
    if (list->kind() != c10::prim::ListConstruct || !ranges_.count(node->output())) return false;
    bool any_int8 = false;
    for (Value* item : list->inputs()) {
      any_int8 |= has_int8(item);
      if (!ranges_.count(item)) return false;
    }
    const auto dim = constant(node->input(1));
    if (!any_int8 || !dim) return false;
    std::vector<std::string> items;
    for (Value* item : list->inputs()) items.push_back(int8_argument(item));
    const auto q = activation_qparams(ranges_.at(node->output()));
    set_int8(node->output(),
             fmt::format("quantized.cat([{}], {}, {}, {})", fmt::join(items, ", "), dim->toInt(),
                         float_literal(q.scale), q.zero_point),
             q);
    return true;
  }

  torch::jit::Graph& graph_;
  const std::unordered_map<const Value*, ActivationRange>& ranges_;
  const StaticInt8Options& options_;
  torch::jit::Module& out_;
  StaticInt8Model& result_;
  std::unordered_map<const Value*, Names> names_;
  std::unordered_map<const Value*, std::string> expressions_;  // constants and non-tensor values
  std::set<const Node*> fused_;
  std::map<std::string, int64_t> float_op_counts_;
  std::string body_;
  int next_ = 0;
  int layer_index_ = 0;
};

// The generated source calls LibTorch's quantized operators as
// `quantized.<op>` (saved files spell them `ops.quantized.<op>`).
struct QuantizedOpsResolver final : torch::jit::Resolver {
  std::shared_ptr<torch::jit::SugaredValue> resolveValue(const std::string& name, torch::jit::GraphFunction& function,
                                                         const torch::jit::SourceRange& location) override {
    if (name == "quantized") return std::make_shared<torch::jit::BuiltinModule>("quantized");
    return torch::jit::nativeResolver()->resolveValue(name, function, location);
  }
  c10::TypePtr resolveType(const std::string& name, const torch::jit::SourceRange& location) override {
    return torch::jit::nativeResolver()->resolveType(name, location);
  }
};

void use_int8_engine() {
  auto& context = at::globalContext();
  const auto& engines = context.supportedQEngines();
  for (const auto engine : {at::QEngine::ONEDNN, at::QEngine::QNNPACK}) {
    if (std::find(engines.begin(), engines.end(), engine) != engines.end()) {
      context.setQEngine(engine);
      return;
    }
  }
  throw Error("static int8: this LibTorch has no quantized engine (neither oneDNN nor QNNPACK); "
              "use a LibTorch built with either");
}

}  // namespace

StaticInt8Model quantize_static_int8(const torch::jit::Module& model, const std::vector<torch::Tensor>& batches,
                                     const StaticInt8Options& options) {
  if (batches.empty()) throw Error("static int8: no calibration batch given; give at least one batch of inputs");
  if (!(options.percentile > 50.0 && options.percentile <= 100.0)) {
    throw Error(fmt::format("static int8: percentile {} is outside (50, 100]", options.percentile));
  }
  if (!model.find_method("forward")) throw Error("static int8: the model has no forward method");
  use_int8_engine();

  torch::jit::Module frozen;
  try {
    torch::jit::Module copy = deep_copy(model);
    copy.eval();
    frozen = torch::jit::freeze(copy, c10::nullopt, /*optimize_numerics=*/true);
  } catch (const c10::Error& e) {
    throw Error(fmt::format("static int8: the model cannot be frozen: {}", e.what_without_backtrace()));
  }
  auto graph = frozen.get_method("forward").graph();
  torch::jit::RemoveTensorMutation(graph);  // so that each value keeps what it had when computed
  remove_input_checks(*graph);
  if (graph->inputs().size() != 2 || !is_tensor(graph->inputs()[1])) {
    throw Error(fmt::format("static int8: forward must take one tensor (it takes {} arguments)",
                            graph->inputs().size() - 1));
  }

  std::vector<Value*> observed = {graph->inputs()[1]};
  for (Node* node : graph->nodes()) {
    if (node->kind() == c10::prim::Constant) continue;
    for (Value* output : node->outputs())
      if (is_tensor(output)) observed.push_back(output);
  }
  std::unordered_map<const Value*, ActivationRange> ranges;
  try {
    ranges = int8::record_activation_ranges(graph, frozen._ivalue(), observed, batches, options.observer,
                                            options.percentile);
  } catch (const c10::Error& e) {
    throw Error(fmt::format("static int8: calibration failed running the model: {}", e.what_without_backtrace()));
  }

  StaticInt8Model result;
  torch::jit::Module out(c10::QualifiedName("__torch__.mcompress.Int8Model"),
                         std::make_shared<torch::jit::CompilationUnit>(), /*shouldMangle=*/true);
  out.register_attribute("training", c10::BoolType::get(), false);
  Int8Writer writer(*graph, ranges, options, out, result);
  result.code = writer.write();
  try {
    out.define(result.code, std::make_shared<QuantizedOpsResolver>());
  } catch (const c10::Error& e) {
    throw Error(fmt::format("static int8: the generated forward does not compile (internal error): {}\n{}",
                            e.what_without_backtrace(), result.code));
  }
  result.model = out;
  return result;
}

}  // namespace mcompress
