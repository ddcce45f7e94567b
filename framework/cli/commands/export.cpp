// `mcompress export gguf CHECKPOINT_DIR --type q8_0 --out FILE.gguf`: a
// Hugging Face checkpoint as one GGUF file llama.cpp runs.
#include "cli_support.h"
#include "commands/commands.h"

#include <boost/program_options.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <iostream>

#include "mcompress/formats/gguf.h"
#include "mcompress/framework/run/input_error.h"
#include "mcompress/sdk/error.h"

namespace mcompress::cli {
namespace {

constexpr const char* kFormats = "gguf (llama.cpp)";

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

}  // namespace

int command_export(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << fmt::format("usage: mcompress export FORMAT ...\nformats: {}\n(mcompress export gguf --help)\n",
                             kFormats);
    return args.empty() ? kExitBadInput : kExitOk;
  }
  if (args[0] == "gguf") return export_gguf_command({args.begin() + 1, args.end()});
  throw InputError(fmt::format("export format '{}' is not known; formats: {}", args[0], kFormats));
}

}  // namespace mcompress::cli
