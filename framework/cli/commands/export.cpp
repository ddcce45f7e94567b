// `mcompress export gguf CHECKPOINT_DIR --type q8_0 --out FILE.gguf`: a
// Hugging Face checkpoint as one GGUF file llama.cpp runs.
// `mcompress export onnx MODEL.pt --input-shape 1,1,28,28 --out FILE.onnx`:
// a TorchScript image model as an ONNX file, float32 or int8 as QDQ (docs/onnx.md).
#include "cli_support.h"
#include "commands/commands.h"

#include <boost/program_options.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <torch/script.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "mcompress/formats/gguf.h"
#include "mcompress/formats/onnx_export.h"
#include "mcompress/framework/run/input_error.h"
#include "mcompress/sdk/error.h"

namespace mcompress::cli {
namespace {

constexpr const char* kFormats = "gguf (llama.cpp), onnx (ONNX Runtime)";

struct ExportOptions {
  std::string checkpoint;
  std::string type = "f16";
  std::string out;
  std::string name;
  bool force = false;
};

fs::path default_output(const ExportOptions& o) {
  auto name = fs::absolute(o.checkpoint).lexically_normal();
  if (!name.has_filename()) name = name.parent_path();
  return fs::path(fmt::format("{}-{}.gguf", name.filename().string(), o.type));
}

int export_gguf_command(const std::vector<std::string>& args) {
  CommonOptions common;
  ExportOptions o;
  po::options_description desc(
      "mcompress export gguf CHECKPOINT_DIR [--type f16|q8_0|q4_0] [--out FILE.gguf] [options]\n"
      "Writes a Hugging Face checkpoint (model_type llama, mistral, qwen2, qwen3) with its tokenizer as one\n"
      "GGUF file for llama.cpp (and ollama, LM Studio, node-llama-cpp). Matrices are stored as --type\n"
      "(q4_0 keeps the output matrix Q8_0), norms and biases F32; docs/language-models.md has the details");
  desc.add_options()("checkpoint", po::value(&o.checkpoint), "the checkpoint directory")(
      "type", po::value(&o.type)->default_value(o.type), "tensor type of the matrices: f16, q8_0 or q4_0")(
      "out", po::value(&o.out), "the GGUF file; default: <CHECKPOINT_DIR name>-<type>.gguf here")(
      "name", po::value(&o.name), "general.name in the file; default: the checkpoint directory's name")(
      "force", po::bool_switch(&o.force), "replace the output if it exists");
  add_common(desc, common);
  if (auto done = parse_single_positional(args, desc, "checkpoint", o.checkpoint)) return *done;
  GgufExportOptions options;
  options.name = o.name;
  try {
    options.type = parse_gguf_file_type(o.type);
  } catch (const Error& e) {
    throw InputError(fmt::format("--type: {}", e.what()));
  }
  o.type = gguf_file_type_name(options.type);
  if (!fs::is_directory(o.checkpoint))
    throw InputError(fmt::format("{} is not a directory; CHECKPOINT_DIR is a Hugging Face checkpoint directory "
                                 "(config.json, safetensors, tokenizer.json)",
                                 o.checkpoint));
  const fs::path out = o.out.empty() ? default_output(o) : fs::path(o.out);
  if (fs::exists(out) && !o.force)
    throw InputError(fmt::format("{} exists; remove it, choose another --out, or pass --force to replace it",
                                 out.string()));
  if (fs::is_directory(out)) throw InputError(fmt::format("--out {} is a directory; name the GGUF file", out.string()));

  const auto started = std::chrono::steady_clock::now();
  GgufExportSummary summary;
  try {
    summary = export_gguf(o.checkpoint, out, options);
  } catch (const Error& e) {
    throw InputError(fmt::format("cannot export {} to GGUF: {}", o.checkpoint, e.what()));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  if (common.json) {
    nlohmann::json result{{"checkpoint", o.checkpoint},
                          {"out", out.string()},
                          {"format", "gguf"},
                          {"type", o.type},
                          {"architecture", summary.architecture},
                          {"tokenizer_model", summary.tokenizer_model},
                          {"tokenizer_pre", summary.tokenizer_pre},
                          {"tensors", summary.tensors},
                          {"tensors_by_type", summary.tensors_by_type},
                          {"metadata_entries", summary.metadata_entries},
                          {"bytes", summary.bytes},
                          {"seconds", seconds}};
    std::cout << result.dump(2) << "\n";
    return kExitOk;
  }
  if (common.quiet) return kExitOk;
  std::vector<std::string> types;
  for (const auto& [type, count] : summary.tensors_by_type) types.push_back(fmt::format("{} {}", count, type));
  std::cout << fmt::format("{} -> {} (GGUF {}, {}): {} tensors ({}), {:.1f} MB in {:.1f} s\n", o.checkpoint,
                           out.string(), summary.architecture, o.type, summary.tensors, fmt::join(types, ", "),
                           summary.bytes / 1e6, seconds);
  return kExitOk;
}

// ------------------------------------------------------------------ onnx

struct OnnxOptions {
  std::string model;
  std::string input_shape;
  std::string out;
  bool force = false;
  bool fixed_batch = false;
};

// "1,1,28,28" (or separated by spaces).
std::vector<int64_t> parse_input_shape(const std::string& text) {
  std::string normalized = text;
  for (char& ch : normalized)
    if (ch == ',') ch = ' ';
  std::istringstream in(normalized);
  std::vector<int64_t> shape;
  std::string item;
  while (in >> item) {
    size_t used = 0;
    int64_t dim = 0;
    try {
      dim = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || dim <= 0)
      throw InputError(fmt::format("--input-shape {}: '{}' is not a positive integer; write the full shape, batch "
                                   "first, e.g. --input-shape 1,1,28,28",
                                   text, item));
    shape.push_back(dim);
  }
  if (shape.empty())
    throw InputError(fmt::format("--input-shape '{}' is empty; write the full shape, batch first, e.g. 1,1,28,28", text));
  return shape;
}

// The per-sample input shape (`model.input_shape`) of the run that wrote
// `model`: its stage's record.json, its run's run.json (a final model.pt), or
// the run.json two levels up (stages/NN_name/model.pt). Returns the file it
// came from too.
std::optional<std::pair<std::vector<int64_t>, fs::path>> recorded_input_shape(const fs::path& model) {
  const fs::path dir = fs::absolute(model).parent_path();
  for (const fs::path& record : {dir / "record.json", dir / "run.json", dir.parent_path().parent_path() / "run.json"}) {
    if (!fs::is_regular_file(record)) continue;
    try {
      std::ifstream in(record);
      const auto json = nlohmann::json::parse(in);
      const auto& shape = json.at("recipe").at("model").at("input_shape");
      if (!shape.is_array() || shape.empty()) continue;
      std::vector<int64_t> full{1};
      for (const auto& dim : shape) full.push_back(dim.get<int64_t>());
      return std::make_pair(full, record);
    } catch (const std::exception&) {
      continue;  // not a run record of this kind: look further, then ask for --input-shape
    }
  }
  return std::nullopt;
}

fs::path default_onnx_output(const std::string& model) {
  fs::path out = fs::path(model).filename();
  out.replace_extension(".onnx");
  return out;
}

int export_onnx_command(const std::vector<std::string>& args) {
  CommonOptions common;
  OnnxOptions o;
  po::options_description desc(
      "mcompress export onnx MODEL.pt [--input-shape 1,1,28,28] [--out FILE.onnx] [options]\n"
      "Writes a TorchScript image model (zoo CNNs, pruned or optimized models, torchvision CNNs) as a float32\n"
      "ONNX file (opset 13) for ONNX Runtime and other ONNX consumers; int8_quant's int8 models as\n"
      "QuantizeLinear/DequantizeLinear pairs, which ONNX Runtime runs with its int8 kernels. The model is frozen in eval mode\n"
      "(BatchNorm folded) and specialised to the input shape; the batch dimension stays dynamic.\n"
      "docs/onnx.md lists the supported ops");
  desc.add_options()("model", po::value(&o.model), "the TorchScript model file")(
      "input-shape", po::value(&o.input_shape),
      "the input's full shape, batch first (e.g. 1,3,224,224); default: the shape recorded by the run "
      "that wrote MODEL")(
      "out", po::value(&o.out), "the ONNX file; default: MODEL's name with .onnx, here")(
      "fixed-batch", po::bool_switch(&o.fixed_batch),
      "keep the batch size of --input-shape fixed (for models that compute shapes from it)")(
      "force", po::bool_switch(&o.force), "replace the output if it exists");
  add_common(desc, common);
  if (auto done = parse_single_positional(args, desc, "model", o.model)) return *done;
  if (fs::is_directory(o.model))
    throw InputError(fmt::format("{} is a directory; MODEL is a TorchScript file (.pt). A Hugging Face checkpoint "
                                 "directory exports with `mcompress export gguf`",
                                 o.model));
  if (!fs::is_regular_file(o.model)) throw InputError(fmt::format("{} not found; MODEL is a TorchScript file (.pt)", o.model));

  OnnxExportOptions options;
  options.dynamic_batch = !o.fixed_batch;
  options.producer_version = MCOMPRESS_VERSION;
  options.model_name = fs::path(o.model).stem().string();
  std::string shape_source = "--input-shape";
  if (!o.input_shape.empty()) {
    options.input_shape = parse_input_shape(o.input_shape);
  } else if (auto recorded = recorded_input_shape(o.model)) {
    options.input_shape = recorded->first;
    shape_source = recorded->second.string();
  } else {
    throw InputError(fmt::format("{} has no recorded input shape (no run record beside it); pass the input's full "
                                 "shape, batch first, e.g. --input-shape 1,1,28,28 for the zoo's 28x28 models",
                                 o.model));
  }
  const fs::path out = o.out.empty() ? default_onnx_output(o.model) : fs::path(o.out);
  if (fs::is_directory(out)) throw InputError(fmt::format("--out {} is a directory; name the ONNX file", out.string()));
  if (fs::exists(out) && !o.force)
    throw InputError(fmt::format("{} exists; remove it, choose another --out, or pass --force to replace it",
                                 out.string()));

  const auto started = std::chrono::steady_clock::now();
  torch::jit::Module model;
  try {
    model = torch::jit::load(o.model);
  } catch (const c10::Error& e) {
    throw InputError(fmt::format("cannot load {} as TorchScript: {}", o.model, e.what_without_backtrace()));
  }
  OnnxExportSummary summary;
  try {
    summary = export_onnx(model, out, options);
  } catch (const Error& e) {
    throw InputError(fmt::format("cannot export {} to ONNX: {}", o.model, e.what()));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  if (common.json) {
    nlohmann::json result{{"model", o.model},
                          {"out", out.string()},
                          {"format", "onnx"},
                          {"opset", summary.opset},
                          {"ir_version", summary.ir_version},
                          {"input_shape", summary.input_shape},
                          {"input_shape_from", shape_source},
                          {"dynamic_batch", options.dynamic_batch},
                          {"output_shapes", summary.output_shapes},
                          {"nodes", summary.nodes},
                          {"nodes_by_op", summary.nodes_by_op},
                          {"initializers", summary.initializers},
                          {"initializer_values", summary.initializer_values},
                          {"bytes", summary.bytes},
                          {"seconds", seconds}};
    std::cout << result.dump(2) << "\n";
    return kExitOk;
  }
  if (common.quiet) return kExitOk;
  std::vector<std::string> ops;
  for (const auto& [op, count] : summary.nodes_by_op) ops.push_back(fmt::format("{} {}", count, op));
  // int8 models (int8_quant) export as QuantizeLinear/DequantizeLinear pairs around float ops.
  const bool qdq = summary.nodes_by_op.count("QuantizeLinear") > 0;
  std::cout << fmt::format("{} -> {} (ONNX opset {}, {}, input [{}]{}): {} nodes ({}), {} weights, {:.1f} MB "
                           "in {:.1f} s\n",
                           o.model, out.string(), summary.opset, qdq ? "int8 as QDQ" : "float32",
                           fmt::join(summary.input_shape, ", "),
                           options.dynamic_batch ? ", batch dynamic" : "", summary.nodes, fmt::join(ops, ", "),
                           summary.initializer_values, summary.bytes / 1e6, seconds);
  return kExitOk;
}

}  // namespace

int command_export(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << fmt::format(
        "usage: mcompress export FORMAT ...\nformats: {}\n(mcompress export gguf --help, mcompress export onnx --help)\n",
        kFormats);
    return args.empty() ? kExitBadInput : kExitOk;
  }
  if (args[0] == "gguf") return export_gguf_command({args.begin() + 1, args.end()});
  if (args[0] == "onnx") return export_onnx_command({args.begin() + 1, args.end()});
  throw InputError(fmt::format("export format '{}' is not known; formats: {}", args[0], kFormats));
}

}  // namespace mcompress::cli
