#include "saveable_onednn_module.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/jit.h>

#include <functional>
#include <sstream>
#include <vector>

#include <fmt/format.h>

namespace mcompress::detail {
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

// TorchScript for the ops optimize_for_inference inserts that cannot be
// printed: BroadcastMKLDNNTensors (its schema is variadic) and an
// MKLDNNHardTanh_ not expressed through hardsigmoid (its bounds are node
// attributes). And for a classifier on features that are not pooled,
// which it leaves as a dense matmul.
constexpr const char* kHelperSource = R"(
def broadcast_onednn(a: Tensor, b: Tensor) -> Tuple[Tensor, Tensor]:
    if a.size() == b.size():
        return a, b
    x, y = torch.broadcast_tensors(a.to_dense(), b.to_dense())
    return x.contiguous().to_mkldnn(), y.contiguous().to_mkldnn()

def hardtanh_onednn(x: Tensor, low: float, high: float) -> Tensor:
    return torch.hardtanh(x.to_dense(), low, high).to_mkldnn()

def linear_onednn(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    return torch.mkldnn_linear(x.to_mkldnn(), weight, bias).to_dense()
)";

std::shared_ptr<Graph> helper_graph(const std::string& name) {
  static const auto unit = torch::jit::compile(kHelperSource);
  return torch::jit::toGraphFunction(unit->get_function(name)).graph();
}

// A weight held as a plain tensor and turned into oneDNN's form at load.
struct OneDnnWeight {
  at::Tensor plain;
  at::Tensor onednn;       // what optimize_for_inference computed
  std::string expression;  // TorchScript that rebuilds `onednn` from `w`
};

bool is_kind(const Node* node, const char* kind) { return node->kind().toQualString() == std::string(kind); }

struct ConvolutionShape {
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups;
};

// prim::mkldnn_convolution(input, weight, bias, stride, padding, dilation, groups)
std::optional<ConvolutionShape> convolution_shape(const Node* convolution) {
  if (!is_kind(convolution, "prim::mkldnn_convolution")) return std::nullopt;
  auto stride = torch::jit::toIValue(convolution->input(3)), padding = torch::jit::toIValue(convolution->input(4)),
       dilation = torch::jit::toIValue(convolution->input(5)), groups = torch::jit::toIValue(convolution->input(6));
  if (!stride || !stride->isIntList() || !padding || !padding->isIntList() || !dilation || !dilation->isIntList() ||
      !groups || !groups->isInt() || stride->toIntVector().size() != 2)  // 3-D convolutions have other reorders
    return std::nullopt;
  return ConvolutionShape{stride->toIntVector(), padding->toIntVector(), dilation->toIntVector(), groups->toInt()};
}

// A convolution weight is reordered for its convolution, as the pass did.
std::string rebuild_expression(const Node* constant) {
  for (const auto& use : constant->output()->uses()) {
    if (use.offset != 1) continue;
    auto shape = convolution_shape(use.user);
    if (!shape) continue;
    return fmt::format("torch.mkldnn_reorder_conv2d_weight(w.to_mkldnn(), [{}], [{}], [{}], {})",
                       fmt::join(shape->padding, ", "), fmt::join(shape->stride, ", "),
                       fmt::join(shape->dilation, ", "), shape->groups);
  }
  return "w.to_mkldnn()";
}

// The plain form of a oneDNN constant; grouped convolution weights are
// [groups, out/groups, in/groups, kh, kw] in oneDNN.
at::Tensor plain_tensor(const Node* constant) {
  at::Tensor plain = constant->t(c10::attr::value).to_dense();
  if (plain.dim() == 5) plain = plain.reshape({plain.size(0) * plain.size(1), plain.size(2), plain.size(3), plain.size(4)});
  return plain.contiguous();
}

Value* insert_onednn_constant(Graph& graph, const at::Tensor& onednn) {
  Node* constant = graph.create(c10::Symbol::fromQualString("prim::ConstantMKLDNNTensor"));
  constant->t_(c10::attr::value, onednn);
  constant->output()->setType(c10::TensorType::get());
  return graph.insertNode(constant)->output();
}

// Gives `convolution` its own copy of its weight (input 1) or bias (input 2)
// with `change` applied, laid out as the pass laid it out.
void change_convolution_constant(Graph& graph, Node* convolution, size_t input,
                                 const std::function<at::Tensor(const at::Tensor&)>& change) {
  Node* old = convolution->input(input)->node();
  const at::Tensor changed = change(plain_tensor(old));
  at::Tensor onednn = changed.to_mkldnn();
  if (input == 1) {
    const ConvolutionShape shape = *convolution_shape(convolution);
    onednn = at::mkldnn_reorder_conv2d_weight(onednn, shape.padding, shape.stride, shape.dilation, shape.groups);
  }
  torch::jit::WithInsertPoint insert_here(convolution);
  convolution->replaceInput(input, insert_onednn_constant(graph, onednn));
  if (!old->hasUses()) old->destroy();
}

bool convolution_with_constants(const Node* node) {
  return convolution_shape(node) && is_kind(node->input(1)->node(), "prim::ConstantMKLDNNTensor") &&
         is_kind(node->input(2)->node(), "prim::ConstantMKLDNNTensor");
}

// oneDNN's blocked layouts hold channels in blocks of 8 (AVX2) or 16
// (AVX-512). PyTorch 1.13's MKLDNNHardSigmoid_ computes wrong values when
// the last block is padded, so it is used only on whole blocks.
constexpr int64_t kLargestChannelBlock = 16;

int64_t output_channels(const Node* convolution) {
  const auto weight = convolution->input(1)->node()->t(c10::attr::value).sizes();  // [groups,] out, in, kh, kw
  return weight.size() == 5 ? weight[0] * weight[1] : weight[0];
}

// ReLU6, and any hardtanh from 0 to `high`: the pass's in-place oneDNN
// hardtanh keeps its bounds in node attributes, which a saved model loses;
// its hardsigmoid has none, and hardtanh(x, 0, high) =
// high * hardsigmoid(6x/high - 3). The affine map before goes into the
// convolution that makes x, the factor after into the convolution that reads
// the result (else one in-place multiply), so it costs the one in-place pass
// over the activations the hardtanh cost.
void express_hardtanh_through_hardsigmoid(Graph& graph) {
  std::vector<Node*> hardtanhs;  // first: rewriting one destroys constants that follow it
  for (Node* node : graph.nodes())
    if (is_kind(node, "prim::MKLDNNHardTanh_")) hardtanhs.push_back(node);
  for (Node* node : hardtanhs) {
    const double low = node->f(c10::Symbol::attr("min_val")), high = node->f(c10::Symbol::attr("max_val"));
    Value* x = node->input(0);
    Node* producer = x->node();
    if (low != 0 || !(high > 0) || x->uses().size() != 1 || !convolution_with_constants(producer) ||
        output_channels(producer) % kLargestChannelBlock != 0)
      continue;
    const double scale = 6 / high;
    if (scale != 1) change_convolution_constant(graph, producer, 1, [&](const at::Tensor& w) { return w * scale; });
    change_convolution_constant(graph, producer, 2, [&](const at::Tensor& b) { return b * scale - 3; });

    torch::jit::WithInsertPoint insert_here(node);
    Value* result =
        graph.insertNode(graph.create(c10::Symbol::fromQualString("prim::MKLDNNHardSigmoid_"), {x}))->output();
    result->setType(c10::TensorType::get());
    const auto& uses = node->output()->uses();
    const Node* reader = uses.size() == 1 && uses[0].offset == 0 ? uses[0].user : nullptr;
    if (reader && convolution_shape(reader) && is_kind(reader->input(1)->node(), "prim::ConstantMKLDNNTensor")) {
      change_convolution_constant(graph, uses[0].user, 1, [&](const at::Tensor& w) { return w * high; });
    } else {
      Value* factor = graph.insertConstant(high);
      result = graph.insertNode(graph.create(c10::Symbol::fromQualString("prim::MKLDNNScalarMul_"), {result, factor}))
                   ->output();
      result->setType(c10::TensorType::get());
    }
    node->output()->replaceAllUsesWith(result);
    node->destroy();
  }
}

void collect_constants(torch::jit::Block* block, std::vector<Node*>& found) {
  for (Node* node : block->nodes()) {
    for (torch::jit::Block* inner : node->blocks()) collect_constants(inner, found);
    if (node->kind().toQualString() == std::string("prim::ConstantMKLDNNTensor")) found.push_back(node);
  }
}

// Replaces `node` by the helper's graph inlined at its place.
std::vector<Value*> inline_helper(Graph& graph, Node* node, const std::string& helper,
                                  const std::vector<Value*>& inputs) {
  torch::jit::WithInsertPoint insert_here(node);
  auto outputs = torch::jit::insertGraph(graph, *helper_graph(helper), inputs);
  if (outputs.size() == 1 && outputs[0]->type()->kind() == c10::TypeKind::TupleType) {
    outputs = graph.insertNode(graph.createTupleUnpack(outputs[0]))->outputs().vec();
  }
  return outputs;
}

std::optional<at::Tensor> constant_tensor(const Value* value) {
  if (value->node()->kind() != c10::prim::Constant) return std::nullopt;
  auto held = torch::jit::toIValue(value);
  if (!held || !held->isTensor()) return std::nullopt;
  return held->toTensor();
}

// The features a classifier reads when they are pooled to 1x1 pixels:
// x in flatten(adaptive_avg_pool2d(x, [1, 1]), 1, -1), a plain tensor, or in
// flatten(to_dense(adaptive_avg_pool2d(x, [1, 1])), 1, -1), a oneDNN one.
struct PooledFeatures {
  Value* value;
  bool onednn;
};

std::optional<PooledFeatures> pooled_features(Node* flatten) {
  if (flatten->kind() != c10::aten::flatten) return std::nullopt;
  auto start = torch::jit::toIValue(flatten->input(1)), end = torch::jit::toIValue(flatten->input(2));
  if (!start || !start->isInt() || start->toInt() != 1 || !end || !end->isInt() || end->toInt() != -1)
    return std::nullopt;
  Node* pool = flatten->input(0)->node();
  const bool onednn = pool->kind() == c10::aten::to_dense;
  if (onednn) {  // to_dense(self, dtype) in PyTorch 1.13 (later versions add masked_grad)
    if (pool->inputs().size() != 2 || !pool->input(1)->type()->cast<c10::NoneType>()) return std::nullopt;
    pool = pool->input(0)->node();
  }
  if (pool->kind() != c10::aten::adaptive_avg_pool2d) return std::nullopt;
  auto size = torch::jit::toIValue(pool->input(1));
  if (!size || !size->isIntList() || size->toIntVector() != std::vector<int64_t>{1, 1}) return std::nullopt;
  return PooledFeatures{pool->output(), onednn};
}

// A classifier: y = x W^T + b on flattened features. optimize_for_inference
// writes it matmul(x, W^T) followed by add(_, b, 1); freezing leaves linear(x, W, b).
struct Classifier {
  Node* product;
  Node* add = nullptr;  // the matmul's bias
  at::Tensor weight;    // W
  Value* bias = nullptr;
};

std::optional<Classifier> classifier_at(Node* node) {
  const bool matmul = node->kind() == c10::aten::matmul, linear = node->kind() == c10::aten::linear;
  if ((!matmul && !linear) || node->input(0)->node()->kind() != c10::aten::flatten) return std::nullopt;
  auto weight = constant_tensor(node->input(1));
  if (!weight || weight->dim() != 2 || !weight->is_floating_point()) return std::nullopt;
  Classifier found{node, nullptr, matmul ? weight->t().contiguous() : weight->contiguous(), nullptr};
  if (linear) {
    if (node->inputs().size() != 3) return std::nullopt;
    if (!node->input(2)->type()->cast<c10::NoneType>()) {
      if (!constant_tensor(node->input(2))) return std::nullopt;
      found.bias = node->input(2);
    }
    return found;
  }
  if (node->output()->uses().size() == 1) {
    Node* user = node->output()->uses()[0].user;
    auto candidate = user->kind() == c10::aten::add && user->inputs().size() == 3 && user->input(0) == node->output()
                         ? constant_tensor(user->input(1))
                         : std::nullopt;
    auto alpha = user->inputs().size() == 3 ? torch::jit::toIValue(user->input(2)) : c10::nullopt;
    if (candidate && candidate->dim() == 1 && candidate->size(0) == found.weight.size(0) && alpha && alpha->isInt() &&
        alpha->toInt() == 1) {
      found.bias = user->input(1);
      found.add = user;
    }
  }
  return found;
}

// The classifier as a 1x1 oneDNN convolution of the pooled features.
Value* insert_classifier_convolution(Graph& graph, const Classifier& classifier, const PooledFeatures& features) {
  const at::Tensor& w = classifier.weight;
  Value* weight = insert_onednn_constant(
      graph, at::mkldnn_reorder_conv2d_weight(w.reshape({w.size(0), w.size(1), 1, 1}).to_mkldnn(), {0, 0}, {1, 1},
                                              {1, 1}, 1));
  Value* bias = classifier.bias
                    ? insert_onednn_constant(graph, constant_tensor(classifier.bias)->contiguous().to_mkldnn())
                    : graph.insertConstant(c10::IValue());
  Value* input = features.onednn ? features.value : graph.insert(c10::aten::to_mkldnn, {features.value});
  const std::vector<int64_t> ones{1, 1}, zeros{0, 0};
  Node* convolution = graph.create(c10::Symbol::fromQualString("prim::mkldnn_convolution"),
                                   {input, weight, bias, graph.insertConstant(ones), graph.insertConstant(zeros),
                                    graph.insertConstant(ones), graph.insertConstant(int64_t{1})});
  convolution->output()->setType(c10::TensorType::get());
  Value* dense = graph.insert(c10::aten::to_dense, {graph.insertNode(convolution)->output()});
  return graph.insert(c10::aten::flatten, {dense, int64_t{1}, int64_t{-1}});
}

// A classifier is a product OpenBLAS runs: with Debian's OpenBLAS spinning
// its own threads beside OpenMP's, its speed would depend on how the caller
// set BLAS up. It runs in oneDNN instead: on pooled features as a 1x1
// convolution, whose weight is reordered once like every convolution's
// (oneDNN's inner product would reorder a plain weight on every call); on
// other flattened activations of optimize_for_inference's graph as an inner
// product. The weight joins the oneDNN weights (a constant node the caller
// converts).
void route_classifier_through_onednn(Graph& graph) {
  std::vector<Classifier> classifiers;  // first: rewriting one destroys the bias add after it
  for (Node* node : graph.nodes())
    if (auto found = classifier_at(node)) classifiers.push_back(*found);
  for (const Classifier& classifier : classifiers) {
    Node* product = classifier.product;
    const auto features = pooled_features(product->input(0)->node());
    if (!features && product->kind() != c10::aten::matmul) continue;
    torch::jit::WithInsertPoint insert_here(product);
    Value* result = nullptr;
    if (features) {
      result = insert_classifier_convolution(graph, classifier, *features);
    } else {
      Value* weight = insert_onednn_constant(graph, classifier.weight.to_mkldnn());
      Value* bias = classifier.bias ? classifier.bias : graph.insertConstant(c10::IValue());
      result = inline_helper(graph, product, "linear_onednn", {product->input(0), weight, bias}).at(0);
    }
    Node* last = classifier.add ? classifier.add : product;
    last->output()->replaceAllUsesWith(result);
    if (classifier.add) classifier.add->destroy();
    product->destroy();
  }
  torch::jit::EliminateDeadCode(graph.block());  // the plain features the product read
}

// Returns the reason when an op cannot be rewritten.
std::optional<std::string> rewrite_unprintable_ops(Graph& graph, torch::jit::Block* block) {
  for (auto it = block->nodes().begin(); it != block->nodes().end();) {
    Node* node = *it++;
    for (torch::jit::Block* inner : node->blocks()) {
      if (auto problem = rewrite_unprintable_ops(graph, inner)) return problem;
    }
    const std::string kind = node->kind().toQualString();
    std::vector<Value*> replacement;
    if (kind == "prim::BroadcastMKLDNNTensors" && node->inputs().size() == 2) {
      replacement = inline_helper(graph, node, "broadcast_onednn", {node->input(0), node->input(1)});
    } else if (kind == "prim::MKLDNNHardTanh_") {
      // In place: fine only when nothing reads the input afterwards.
      if (node->input(0)->uses().size() != 1) return "an in-place hardtanh whose input is read again";
      Value* low = graph.insertConstant(node->f(c10::Symbol::attr("min_val")), c10::nullopt, node->scope());
      Value* high = graph.insertConstant(node->f(c10::Symbol::attr("max_val")), c10::nullopt, node->scope());
      low->node()->moveBefore(node);
      high->node()->moveBefore(node);
      replacement = inline_helper(graph, node, "hardtanh_onednn", {node->input(0), low, high});
    } else if (kind == "prim::MKLDNNHardSigmoid_" || kind == "prim::MKLDNNScalarMul_") {
      continue;  // no attributes: printed and loaded as ops.prim.<name>(...)
    } else if (kind.rfind("prim::MKLDNN", 0) == 0) {
      return kind + " (not supported in a saved model)";
    } else {
      continue;
    }
    for (size_t i = 0; i < node->outputs().size(); ++i) node->output(i)->replaceAllUsesWith(replacement.at(i));
    node->destroy();
  }
  return std::nullopt;
}

std::string state_methods(const std::vector<OneDnnWeight>& weights) {
  std::string names;
  for (size_t i = 0; i < weights.size(); ++i) names += fmt::format("{}self.weight_{}", i ? ", " : "", i);
  std::string source = fmt::format(
      "def __getstate__(self) -> Tuple[List[Tensor], bool]:\n"
      "    return ([{}], self.training)\n"
      "def __setstate__(self, state: Tuple[List[Tensor], bool]) -> None:\n"
      "    self.training = state[1]\n",
      names);
  for (size_t i = 0; i < weights.size(); ++i) {
    source += fmt::format("    w = state[0][{0}]\n    self.weight_{0} = w\n    self.onednn_{0} = {1}\n", i,
                          weights[i].expression);
  }
  return source;
}

}  // namespace

std::optional<torch::jit::Module> saveable_onednn_module(const torch::jit::Module& optimized, std::string& why_not) {
  auto graph = optimized.get_method("forward").graph()->copy();
  route_classifier_through_onednn(*graph);
  express_hardtanh_through_hardsigmoid(*graph);
  std::vector<Node*> constants;
  collect_constants(graph->block(), constants);
  std::vector<OneDnnWeight> weights;
  for (Node* node : constants) weights.push_back({plain_tensor(node), node->t(c10::attr::value), rebuild_expression(node)});
  if (auto problem = rewrite_unprintable_ops(*graph, graph->block())) {
    why_not = *problem;
    return std::nullopt;
  }

  torch::jit::Module result(c10::QualifiedName("__torch__.mcompress.OneDnnModel"),
                            std::make_shared<torch::jit::CompilationUnit>(), /*shouldMangle=*/true);
  result.register_attribute("training", c10::BoolType::get(), false);
  for (size_t i = 0; i < weights.size(); ++i) {
    result.register_attribute(fmt::format("weight_{}", i), c10::TensorType::get(), weights[i].plain);
    result.register_attribute(fmt::format("onednn_{}", i), c10::TensorType::get(), weights[i].onednn);
  }
  Value* self = graph->inputs().at(0);
  if (self->hasUses()) {
    why_not = "the optimised graph still reads module attributes";
    return std::nullopt;
  }
  self->setType(result.type());
  for (size_t i = 0; i < constants.size(); ++i) {
    torch::jit::WithInsertPoint insert_here(constants[i]);
    Value* read = graph->insertGetAttr(self, fmt::format("onednn_{}", i));
    constants[i]->output()->replaceAllUsesWith(read);
    constants[i]->destroy();
  }
  auto* forward = result.type()->compilation_unit()->create_function(
      c10::QualifiedName(*result.type()->name(), "forward"), graph);
  result.type()->addMethod(forward);
  try {
    result.define(state_methods(weights));
    // What is returned has been saved and loaded: a file of it loads too.
    std::stringstream file;
    result.save(file);
    file.seekg(0);
    return torch::jit::load(file);
  } catch (const c10::Error& error) {
    why_not = error.what_without_backtrace();
    return std::nullopt;
  }
}

}  // namespace mcompress::detail
