// `mcompress benchmark MODEL`: the probes on any model, without a recipe.
#include "cli_support.h"
#include "commands/commands.h"

#include <unistd.h>

#include <ATen/Parallel.h>
#include <torch/script.h>

#include <boost/program_options.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <iostream>

#include "mcompress/formats/hf_model.h"
#include "mcompress/formats/tokenizer.h"
#include "mcompress/framework/probes/generation_probes.h"
#include "mcompress/framework/probes/probes.h"
#include "mcompress/framework/run/input_error.h"
#include "mcompress/framework/sources/token_text.h"
#include "mcompress/framework/support/child_process.h"
#include "mcompress/framework/support/terminal.h"
#include "mcompress/models/causal_lm.h"
#include "mcompress/sdk/error.h"

namespace mcompress::cli {
namespace {

struct BenchmarkOptions {
  std::string model;
  std::string dtype = "checkpoint";
  std::vector<std::string> data;
  int64_t context = 256;
  int64_t eval_stride = 128;
  int64_t eval_windows = 32;
  int64_t prompt_length = 128;
  int64_t new_tokens = 32;
  std::vector<int64_t> input_shape{1, 28, 28};
  int threads = 0;
};

}  // namespace

int command_benchmark(const std::vector<std::string>& args) {
  CommonOptions common;
  BenchmarkOptions o;
  po::options_description desc(
      "mcompress benchmark MODEL [options]\n"
      "MODEL: a Hugging Face checkpoint directory or a TorchScript file. Prints its probes:\n"
      "parameters, size, peak memory, load time; for checkpoints prefill and decode throughput\n"
      "and time to first token, and with --data held-out perplexity and next-token accuracy;\n"
      "for TorchScript models latency and MACs");
  desc.add_options()("model", po::value(&o.model), "the model")(
      "dtype", po::value(&o.dtype)->default_value(o.dtype),
      "checkpoints: compute in float32, bfloat16, float16 or checkpoint (as stored)")(
      "data", po::value(&o.data)->multitoken(),
      "checkpoints: UTF-8 text or .jsonl files; perplexity on their last 10%")(
      "context", po::value(&o.context)->default_value(o.context), "perplexity window (tokens)")(
      "eval-stride", po::value(&o.eval_stride)->default_value(o.eval_stride), "perplexity window stride")(
      "eval-windows", po::value(&o.eval_windows)->default_value(o.eval_windows),
      "at most this many held-out windows (0: all)")(
      "prompt-length", po::value(&o.prompt_length)->default_value(o.prompt_length), "prefill tokens")(
      "new-tokens", po::value(&o.new_tokens)->default_value(o.new_tokens), "decoded tokens")(
      "input-shape", po::value(&o.input_shape)->multitoken(), "TorchScript models: one sample's shape")(
      "threads", po::value(&o.threads)->default_value(0), "intra-op threads (0: all cores)");
  add_common(desc, common);
  if (auto done = parse_single_positional(args, desc, "model", o.model)) return *done;
  if (!fs::exists(o.model)) throw InputError(fmt::format("{} not found; MODEL is a checkpoint directory or a TorchScript file", o.model));
  if (o.threads > 0) at::set_num_threads(o.threads);
  mcompress::TerminalProgress progress(common.quiet || common.json);

  const auto started = std::chrono::steady_clock::now();
  torch::jit::Module model;
  try {
    model = fs::is_directory(o.model) ? load_hf_model(o.model, o.dtype) : torch::jit::load(o.model);
  } catch (const Error& e) {
    throw InputError(fmt::format("cannot load {}: {}", o.model, e.what()));
  } catch (const c10::Error& e) {
    throw InputError(fmt::format("cannot load {} as TorchScript: {}", o.model, e.what_without_backtrace()));
  }
  model.eval();
  Metrics metrics;
  metrics["load_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  metrics["load_peak_rss_mb"] = peak_resident_memory_mb(::getpid());

  ProbeSpec spec;
  spec.prompt_length = o.prompt_length;
  spec.new_tokens = o.new_tokens;
  spec.latency_batch_sizes = {1};
  torch::Tensor example;
  std::shared_ptr<const Dataset> eval;
  if (is_causal_lm(model)) {
    spec.enabled = {"generation", "params", "size"};
    if (!o.data.empty()) {
      spec.enabled.push_back("perplexity");
      spec.eval_batch_size = 1;
      try {
        const Tokenizer tokenizer = Tokenizer::from_directory(o.model);
        TokenTextSpec text;
        text.paths = o.data;
        text.context = o.context;
        text.eval_stride = o.eval_stride;
        const TokenText tokens = load_token_text(text, tokenizer);
        eval = o.eval_windows > 0 ? std::make_shared<Dataset>(tokens.test->slice(0, o.eval_windows)) : tokens.test;
      } catch (const Error& e) {
        throw InputError(e.what());
      }
    }
    example = torch::zeros({1, std::min<int64_t>(o.prompt_length, 16)}, torch::kLong);
  } else {
    spec.enabled = {"latency", "params", "macs", "size"};
    std::vector<int64_t> shape{1};
    shape.insert(shape.end(), o.input_shape.begin(), o.input_shape.end());
    example = torch::randn(shape);
  }
  for (const auto& [key, value] : run_probes(model, eval.get(), example, spec, progress)) metrics[key] = value;
  metrics["peak_rss_mb"] = peak_resident_memory_mb(::getpid());

  if (common.json) {
    std::cout << nlohmann::json{{"model", o.model}, {"metrics", metrics}}.dump(2) << "\n";
    return kExitOk;
  }
  std::cout << fmt::format("{}\n", o.model);
  for (const auto& [key, value] : metrics) std::cout << fmt::format("  {:<26} {:>14.6g}\n", key, value);
  return kExitOk;
}

}  // namespace mcompress::cli
