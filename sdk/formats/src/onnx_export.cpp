#include "mcompress/formats/onnx_export.h"

#include <torch/script.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "mcompress/sdk/error.h"
#include "onnx_conversion.h"
#include "onnx_graph_preparation.h"

namespace mcompress {
namespace {

using onnx_conversion::Conversion;
using onnx_conversion::Operand;
using torch::jit::Node;
using torch::jit::Value;

const c10::Symbol kSize = c10::Symbol::fromQualString("aten::size");
const c10::Symbol kDim = c10::Symbol::fromQualString("aten::dim");
const c10::Symbol kNumel = c10::Symbol::fromQualString("aten::numel");
const c10::Symbol kGetItem = c10::Symbol::fromQualString("aten::__getitem__");

bool is_computed(const Operand& o) { return o.kind != Operand::Kind::Known; }

bool mentions_batch(const Operand& o) {
  return o.derived_from_batch || std::find(o.batch_entries.begin(), o.batch_entries.end(), true) != o.batch_entries.end();
}

// Shape queries on the input's data: known on the example input. The batch
// size stays marked, so a Reshape can keep it dynamic.
void query_shape(Conversion& c, const Node* node) {
  const Operand& x = c.operand(node->input(0));
  if (x.kind != Operand::Kind::Tensor) c.fail("queries the shape of something that is not a tensor");
  Operand result;
  result.value = c.observed(node->output());
  if (node->kind() == kSize && node->inputs().size() == 1) {
    result.batch_entries.assign(x.shape.size(), false);
    if (x.batch_axis >= 0) result.batch_entries[static_cast<size_t>(x.batch_axis)] = true;
  } else if (node->kind() == kSize) {
    int64_t axis = c.int_input(1);
    if (axis < 0) axis += static_cast<int64_t>(x.shape.size());
    result.batch_entries = {axis == x.batch_axis && x.batch_axis >= 0};
  } else if (node->kind() == kNumel) {
    result.derived_from_batch = x.batch_axis >= 0;
  }
  c.set_known(node->output(), std::move(result));
}

// A node on known values only: its outputs are what the example run saw
// (constant folding). Lists and list items pass batch marks along; anything
// else computed from the batch size is valid at the example batch only.
void fold(Conversion& c, const Node* node) {
  if (node->isNondeterministic())
    c.fail("a random op on constant inputs would be frozen to one draw; remove it from the inference path");
  std::vector<const Operand*> inputs;
  for (const Value* input : node->inputs()) inputs.push_back(&c.operand(input));
  const bool any_batch = std::any_of(inputs.begin(), inputs.end(), [](const Operand* o) { return mentions_batch(*o); });
  const bool is_list = node->kind() == c10::prim::ListConstruct || node->kind() == c10::prim::TupleConstruct;
  for (size_t i = 0; i < node->outputs().size(); ++i) {
    const Value* output = node->output(i);
    Operand result;
    result.value = node->kind() == c10::prim::Constant ? *torch::jit::toIValue(output) : c.observed(output);
    if (!any_batch) {
    } else if (is_list) {
      for (const Operand* element : inputs) {
        result.batch_entries.push_back(element->batch_entries.size() == 1 && element->batch_entries[0]);
        result.derived_from_batch |= element->derived_from_batch;
      }
    } else if (node->kind() == kGetItem && inputs[1]->value.isInt() && !inputs[1]->derived_from_batch) {
      int64_t index = inputs[1]->value.toInt();
      const auto& entries = inputs[0]->batch_entries;
      if (index < 0) index += static_cast<int64_t>(entries.size());
      result.batch_entries = {index >= 0 && index < static_cast<int64_t>(entries.size()) && entries[index]};
      result.derived_from_batch = inputs[0]->derived_from_batch;
    } else if (node->kind() == c10::prim::ListUnpack && i < inputs[0]->batch_entries.size()) {
      result.batch_entries = {inputs[0]->batch_entries[i]};
      result.derived_from_batch = inputs[0]->derived_from_batch;
    } else {
      result.derived_from_batch = true;
    }
    c.set_known(output, std::move(result));
  }
}

// An in-place op is safe to convert as a pure one only when nothing reads
// the tensor it overwrote afterwards.
void check_in_place(Conversion& c, const Node* node) {
  const std::string name = node->kind().toUnqualString();
  if (name.empty() || name.back() != '_' || node->inputs().empty()) return;
  for (const torch::jit::Use& use : node->input(0)->uses())
    if (use.user != node && use.user->isAfter(node))
      c.fail("an in-place op whose input is read again afterwards; write it out of place (y = f(x))");
}

void convert_node(Conversion& c, const Node* node) {
  c.begin(node);
  if (node->kind() == c10::prim::Constant) return fold(c, node);
  bool computed = false;
  for (const Value* input : node->inputs()) computed |= is_computed(c.operand(input));
  if (node->kind() == c10::prim::If)
    c.fail("a branch whose condition depends on the input's values (not its shape); ONNX export needs one path");
  if (node->kind() == c10::prim::Loop) c.fail("loops are not supported by the ONNX export");
  if (!computed) return fold(c, node);
  if (node->kind() == kSize || node->kind() == kDim || node->kind() == kNumel) return query_shape(c, node);
  check_in_place(c, node);
  if (!onnx_conversion::convert_quantized_node(c) && !onnx_conversion::convert_aten_node(c))
    c.fail("no ONNX conversion exists for this op (docs/onnx.md lists the supported ops); rewrite that part "
           "of the model with supported ops");
  // Pooling, flatten, relu... on an int8 tensor convert as float ops on its
  // dequantized values; this puts back LibTorch's rounding after them.
  onnx_conversion::quantize_outputs(c);
}

OnnxValueInfo value_info(const std::string& name, const std::vector<int64_t>& shape, int64_t batch_axis) {
  OnnxValueInfo info;
  info.name = name;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (static_cast<int64_t>(i) == batch_axis)
      info.shape.emplace_back(std::string("batch"));
    else
      info.shape.emplace_back(shape[i]);
  }
  return info;
}

// Model outputs get plain names ("output", or "output_0", "output_1", ...).
void add_outputs(Conversion& c, const std::shared_ptr<torch::jit::Graph>& graph, OnnxGraph& onnx,
                 OnnxExportSummary& summary) {
  c.begin(nullptr);
  std::vector<Operand> outputs;
  for (const Value* output : graph->outputs()) {
    const Operand& o = c.operand(output);
    if (o.kind == Operand::Kind::TensorList)
      outputs.insert(outputs.end(), o.elements.begin(), o.elements.end());
    else
      outputs.push_back(o);
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Operand& o = outputs[i];
    if (o.kind == Operand::Kind::Known && !o.value.isTensor())
      c.fail(fmt::format("output {} is not a tensor; the ONNX export writes tensor outputs only", i));
    const std::string name = outputs.size() == 1 ? "output" : fmt::format("output_{}", i);
    std::vector<int64_t> shape = o.kind == Operand::Kind::Tensor ? o.shape : o.value.toTensor().sizes().vec();
    onnx.nodes.push_back(OnnxNode{"Identity", name, {c.name_of(o, name)}, {name}, {}, "model output"});
    onnx.outputs.push_back(value_info(name, shape, o.kind == Operand::Kind::Tensor ? o.batch_axis : -1));
    summary.output_shapes.push_back(shape);
  }
}

}  // namespace

OnnxModel torchscript_to_onnx(const torch::jit::Module& model, const OnnxExportOptions& options,
                              OnnxExportSummary* summary_out) {
  if (options.input_shape.empty()) throw Error("the ONNX export needs the input shape (batch first, e.g. 1,1,28,28)");
  for (int64_t dim : options.input_shape)
    if (dim <= 0)
      throw Error(fmt::format("input shape [{}] has a dimension that is not positive", fmt::join(options.input_shape, ", ")));
  auto generator = at::detail::createCPUGenerator(0);
  const at::Tensor example = at::randn(options.input_shape, generator, at::TensorOptions(at::kFloat));
  ExportableForward forward = prepare_forward_for_export(model, example);
  if (forward.graph->inputs().size() != 2)
    throw Error(fmt::format("the model's forward takes {} inputs; the ONNX export handles models of one tensor input",
                            forward.graph->inputs().size() - 1));

  OnnxModel onnx;
  onnx.producer_version = options.producer_version;
  onnx.graph.name = options.model_name.empty() ? "model" : options.model_name;
  OnnxExportSummary summary;
  Conversion c(forward.observed, options.dynamic_batch, onnx.graph);

  Operand input;
  input.kind = Operand::Kind::Tensor;
  input.name = "input";
  input.shape = options.input_shape;
  input.batch_axis = options.dynamic_batch ? 0 : -1;
  onnx.graph.inputs.push_back(value_info(input.name, input.shape, input.batch_axis));
  c.set_known(forward.graph->inputs()[0], Operand{});  // self: the frozen module, never read
  c.set_known(forward.graph->inputs()[1], input);

  for (const Node* node : forward.graph->nodes()) convert_node(c, node);
  add_outputs(c, forward.graph, onnx.graph, summary);

  summary.nodes = static_cast<int64_t>(onnx.graph.nodes.size());
  for (const auto& node : onnx.graph.nodes) ++summary.nodes_by_op[node.op_type];
  summary.initializers = static_cast<int64_t>(onnx.graph.initializers.size());
  for (const auto& tensor : onnx.graph.initializers) {
    int64_t values = 1;
    for (int64_t d : tensor.dims) values *= d;
    summary.initializer_values += values;
  }
  summary.input_shape = options.input_shape;
  summary.opset = onnx.opset;
  summary.ir_version = onnx.ir_version;
  if (summary_out) *summary_out = summary;
  return onnx;
}

OnnxExportSummary export_onnx(const torch::jit::Module& model, const std::filesystem::path& path,
                              const OnnxExportOptions& options) {
  OnnxExportSummary summary;
  const std::string bytes = encode_onnx_model(torchscript_to_onnx(model, options, &summary));
  // A name unique to this process, so two writers of one file never share it.
  const auto temp = path.parent_path() / fmt::format("{}.tmp-{}", path.filename().string(), ::getpid());
  try {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out)
      throw Error(fmt::format("cannot create {}: {}; check that the folder exists and is writable", temp.string(),
                              std::strerror(errno)));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out)
      throw Error(fmt::format("writing {} failed ({}); check free space", temp.string(), std::strerror(errno)));
    out.close();
    std::filesystem::rename(temp, path);
  } catch (const std::filesystem::filesystem_error& e) {
    std::error_code ignored;
    std::filesystem::remove(temp, ignored);
    throw Error(fmt::format("cannot move {} to {}: {}", temp.string(), path.string(), e.code().message()));
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(temp, ignored);
    throw;
  }
  summary.bytes = static_cast<int64_t>(bytes.size());
  return summary;
}

}  // namespace mcompress
