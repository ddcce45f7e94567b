#include "saveable_onednn_module.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/jit.h>

#include <sstream>
#include <vector>

#include <fmt/format.h>

namespace mcompress::detail {
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

// TorchScript for the ops optimize_for_inference inserts that cannot be
// printed: BroadcastMKLDNNTensors (its schema is variadic) and
// MKLDNNHardTanh_ (its bounds are node attributes); and for its classifier,
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

std::string int_list(const Value* value) {
  auto list = torch::jit::toIValue(value);
  if (!list || !list->isIntList()) return "";
  return fmt::format("[{}]", fmt::join(list->toIntVector(), ", "));
}

// A convolution weight is reordered for its convolution, as the pass did.
std::string rebuild_expression(const Node* constant) {
  for (const auto& use : constant->output()->uses()) {
    const Node* user = use.user;
    if (user->kind().toQualString() != std::string("prim::mkldnn_convolution") || use.offset != 1) continue;
    // (input, weight, bias, stride, padding, dilation, groups)
    const std::string stride = int_list(user->input(3)), padding = int_list(user->input(4)),
                      dilation = int_list(user->input(5));
    auto groups = torch::jit::toIValue(user->input(6));
    if (stride.empty() || padding.empty() || dilation.empty() || !groups || !groups->isInt()) break;
    return fmt::format("torch.mkldnn_reorder_conv2d_weight(w.to_mkldnn(), {}, {}, {}, {})", padding, stride,
                       dilation, groups->toInt());
  }
  return "w.to_mkldnn()";
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

// optimize_for_inference turns a linear layer into matmul(x, weight^T) + bias,
// a product OpenBLAS runs: with Debian's OpenBLAS spinning its own threads
// beside OpenMP's, its speed would depend on how the caller set BLAS up. On a
// flattened activation it becomes a oneDNN inner product instead; the
// weight joins the oneDNN weights (a constant node the caller converts).
void route_classifier_through_onednn(Graph& graph) {
  for (auto it = graph.nodes().begin(); it != graph.nodes().end();) {
    Node* matmul = *it++;
    if (matmul->kind() != c10::aten::matmul || matmul->input(0)->node()->kind() != c10::aten::flatten) continue;
    auto transposed = constant_tensor(matmul->input(1));
    if (!transposed || transposed->dim() != 2 || !transposed->is_floating_point()) continue;
    Value* bias = nullptr;
    Node* add = nullptr;
    if (matmul->output()->uses().size() == 1) {
      Node* user = matmul->output()->uses()[0].user;
      auto candidate = user->kind() == c10::aten::add && user->inputs().size() == 3 && user->input(0) == matmul->output()
                           ? constant_tensor(user->input(1))
                           : std::nullopt;
      auto alpha = user->inputs().size() == 3 ? torch::jit::toIValue(user->input(2)) : c10::nullopt;
      if (candidate && candidate->dim() == 1 && candidate->size(0) == transposed->size(1) && alpha &&
          alpha->isInt() && alpha->toInt() == 1) {
        bias = user->input(1);
        add = user;
      }
    }
    torch::jit::WithInsertPoint insert_here(matmul);
    Node* weight = graph.create(c10::Symbol::fromQualString("prim::ConstantMKLDNNTensor"));
    weight->t_(c10::attr::value, transposed->t().contiguous().to_mkldnn());
    weight->output()->setType(c10::TensorType::get());
    graph.insertNode(weight);
    if (!bias) bias = graph.insertConstant(c10::IValue());
    Value* result = inline_helper(graph, matmul, "linear_onednn", {matmul->input(0), weight->output(), bias}).at(0);
    if (add) {
      add->output()->replaceAllUsesWith(result);
      if (*it == add) ++it;
      add->destroy();
    } else {
      matmul->output()->replaceAllUsesWith(result);
    }
    matmul->destroy();
  }
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
  std::vector<Node*> constants;
  collect_constants(graph->block(), constants);
  std::vector<OneDnnWeight> weights;
  for (Node* node : constants) {
    const at::Tensor onednn = node->t(c10::attr::value);
    at::Tensor plain = onednn.to_dense();
    // Grouped convolution weights are [groups, out/groups, in/groups, kh, kw] in oneDNN.
    if (plain.dim() == 5) plain = plain.reshape({plain.size(0) * plain.size(1), plain.size(2), plain.size(3), plain.size(4)});
    weights.push_back({plain.contiguous(), onednn, rebuild_expression(node)});
  }
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
