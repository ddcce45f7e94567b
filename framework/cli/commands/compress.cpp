// `mcompress compress MODEL.pt --target-ratio R --max-accuracy-loss L`: plans
// candidate pipelines for the targets (strategy/compression_search.h), runs
// and ranks them as `mcompress compare` does, and writes the fastest model
// that meets both targets, or says which candidate came closest.
#include "cli_support.h"
#include "commands/commands.h"

#include <boost/program_options.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/script.h>

#include <fstream>
#include <iostream>

#include "mcompress/framework/loader/plugin_host.h"
#include "mcompress/framework/recipe/recipe.h"
#include "mcompress/framework/run/input_error.h"
#include "mcompress/framework/strategy/compression_search.h"
#include "mcompress/framework/support/atomic_file.h"
#include "mcompress/framework/support/child_process.h"
#include "mcompress/framework/support/terminal.h"
#include "mcompress/framework/sweep/compare.h"
#include "mcompress/framework/tracking/run_tracking.h"
#include "mcompress/sdk/error.h"

namespace mcompress::cli {
namespace {

struct CompressOptions {
  std::string model, out, target_ratio, max_loss;
  int jobs = 1;
  bool no_isolate = false;
  bool dry_run = false;
};

// The final model of a candidate's run, as its report names it.
fs::path final_model_of(const mcompress::CandidateResult& result) {
  const fs::path report_path = fs::path(result.run_dir) / "report.json";
  std::ifstream in(report_path);
  const auto report = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (report.is_object() && report.contains("final_model")) return report["final_model"].get<std::string>();
  return fs::path(result.run_dir) / "model.pt";
}

std::string metric(const mcompress::CandidateResult& result, const char* name, const char* format, double scale = 1) {
  const auto it = result.metrics.find(name);
  return it == result.metrics.end() ? "?" : fmt::format(fmt::runtime(format), it->second * scale);
}

}  // namespace

int command_compress(const std::vector<std::string>& args) {
  CommonOptions common;
  CompressOptions o;
  mcompress::CompressionRequest request;
  std::string data_path = request.data_path.string();
  po::options_description desc(
      "mcompress compress MODEL.pt --target-ratio R --max-accuracy-loss L [options]\n"
      "Finds a compressed model at least R times smaller than MODEL.pt (a TorchScript classifier) that loses\n"
      "at most L accuracy, and the fastest such at batch 1: plans candidate pipelines (structured pruning by\n"
      "each criterion, recovered by fine-tuning or distillation from MODEL, and int8 quantization where the\n"
      "int8_quant pass is loaded), runs and ranks them as `mcompress compare` does, and writes the best as\n"
      "OUT/model.pt (OUT/recipe.yaml and OUT/sweep.yaml are the plan; rerunning resumes)");
  desc.add_options()("model", po::value(&o.model), "the TorchScript model")(
      "target-ratio", po::value(&o.target_ratio), "how many times smaller the file must get, e.g. 4")(
      "max-accuracy-loss", po::value(&o.max_loss), "accuracy that may be lost: 0.01 or 1% (one point)")(
      "out,o", po::value(&o.out), "output directory (default: runs/compress_<MODEL name>)")(
      "dataset", po::value(&request.dataset)->default_value(request.dataset), "the recipe dataset MODEL classifies")(
      "data-path", po::value(&data_path)->default_value(data_path), "where the dataset is")(
      "train-limit", po::value(&request.train_limit)->default_value(request.train_limit),
      "training samples used to recover accuracy")(
      "epochs", po::value(&request.recovery_epochs)->default_value(request.recovery_epochs), "recovery epochs")(
      "threads", po::value(&request.threads)->default_value(0), "intra-op threads of every candidate (0: all cores)")(
      "thorough", po::bool_switch(&request.thorough), "every criterion and a stronger sparsity too (twice the candidates)")(
      "jobs,j", po::value(&o.jobs)->default_value(1), "candidates run in parallel")(
      "no-isolate", po::bool_switch(&o.no_isolate), "run each candidate's passes inside its own process")(
      "dry-run", po::bool_switch(&o.dry_run), "write and validate the plan, list the candidates; run nothing");
  add_common(desc, common);
  if (auto done = parse_single_positional(args, desc, "model", o.model)) return *done;
  if (common.json) common.quiet = true;
  if (o.target_ratio.empty()) throw po::error("--target-ratio is required (e.g. --target-ratio 4: four times smaller)");
  if (o.max_loss.empty()) throw po::error("--max-accuracy-loss is required (e.g. --max-accuracy-loss 1%)");
  try {
    request.target_ratio = mcompress::parse_fraction(o.target_ratio, "--target-ratio");
    request.max_accuracy_loss = mcompress::parse_fraction(o.max_loss, "--max-accuracy-loss");
  } catch (const mcompress::Error& e) {
    throw InputError(e.what());
  }
  if (!fs::is_regular_file(o.model)) throw InputError(fmt::format("{}: no such file", o.model));
  try {
    torch::jit::load(o.model);
  } catch (const c10::Error& e) {
    throw InputError(fmt::format("{}: not a TorchScript model ({}); `mcompress compress` takes a file written by "
                                 "torch.jit.save",
                                 o.model, std::string(e.what_without_backtrace()).substr(0, 200)));
  }
  request.model = fs::absolute(o.model).lexically_normal();
  request.data_path = fs::absolute(data_path).lexically_normal();

  auto plugins = load_plugins(common);
  if (refuse_unusable_plugin_dirs(*plugins, common)) return kExitBadInput;
  request.int8_available = plugins->find("int8_quant") != nullptr;
  mcompress::CompressionPlan plan;
  try {
    plan = mcompress::plan_compression(request, fs::file_size(request.model));
  } catch (const mcompress::Error& e) {
    throw InputError(e.what());
  }
  const fs::path out = o.out.empty() ? fs::path("runs") / ("compress_" + request.model.stem().string()) : fs::path(o.out);
  fs::create_directories(out);
  mcompress::write_file_atomically(out / "recipe.yaml", plan.recipe_yaml);
  mcompress::write_file_atomically(out / "sweep.yaml", plan.sweep_yaml);
  mcompress::Sweep sweep;
  try {
    sweep = mcompress::load_sweep((out / "sweep.yaml").string());
    mcompress::validate_candidates(sweep, *plugins);
  } catch (const mcompress::RecipeError& e) {
    for (const auto& d : e.diagnostics()) std::cerr << mcompress::format_diagnostic(d) << "\n";
    std::cerr << fmt::format("{} problem(s) with the planned candidates; nothing was run\n", e.diagnostics().size());
    return kExitBadInput;
  }
  if (o.dry_run) {
    for (const auto& c : sweep.candidates) std::cout << fmt::format("{:>3}  {}\n", c.index, c.name);
    std::cout << fmt::format("plan: {} and {}\n", (out / "recipe.yaml").string(), (out / "sweep.yaml").string());
    return kExitOk;
  }
  mcompress::CompareOptions options;
  options.out_dir = out;
  options.jobs = std::max(1, o.jobs);
  options.plugin_dirs = common.plugin_dirs;
  options.executable = mcompress::this_executable();
  options.isolate = !o.no_isolate;
  mcompress::TerminalLogger logger(common.quiet);
  mcompress::TerminalProgress progress(common.quiet);
  logger.log(mcompress::LogLevel::Info,
             fmt::format("{} candidates for {:g}x smaller (at most {:.3f} MB) losing at most {:g} points; plan in {}",
                         plan.candidates.size(), request.target_ratio, plan.max_size_mb,
                         100.0 * request.max_accuracy_loss, (out / "sweep.yaml").string()));
  const auto outcome = mcompress::run_sweep(sweep, options, logger, progress);
  const auto& ranked = outcome.comparison.ranked;
  const bool met = !ranked.empty() && ranked.front().feasible;
  nlohmann::json summary = {{"met", met}, {"comparison", (out / "comparison.json").string()}};
  if (met) {
    const auto& best = ranked.front().result;
    const fs::path source = final_model_of(best), target = out / "model.pt";
    mcompress::write_via_temp_path(target, [&](const fs::path& temp) { fs::copy_file(source, temp); });
    const double ratio = double(fs::file_size(request.model)) / double(fs::file_size(target));
    summary["model"] = target.string();
    summary["candidate"] = best.name;
    summary["size_ratio"] = ratio;
    summary["metrics"] = best.metrics;
    if (!common.json) {
      print_comparison(outcome.comparison, out, false);
      std::cout << fmt::format(
          "\nwrote {}: `{}`, {:.1f}x smaller ({} MB), accuracy {}% ({} points lost), batch-1 latency {} ms\n",
          target.string(), best.name, ratio, metric(best, "size_mb", "{:.3f}"), metric(best, "accuracy", "{:.2f}", 100.0),
          metric(best, "accuracy_drop", "{:.2f}", 100.0), metric(best, "latency_b1_median_ms", "{:.3f}"));
    }
  } else if (!common.json) {
    print_comparison(outcome.comparison, out, false);
    std::cout << "\nno candidate met both targets; nothing was written as the model. " << outcome.comparison.recommendation
              << "\n";
  }
  summary["recommendation"] = outcome.comparison.recommendation;
  if (common.json) std::cout << summary.dump(2) << "\n";
  return met ? kExitOk : kExitFailed;
}

}  // namespace mcompress::cli
