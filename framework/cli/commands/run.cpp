// `mcompress run`
#include "cli_support.h"
#include "commands/commands.h"

#include <c10/util/Exception.h>

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include <ctime>
#include <iostream>

#include "mcompress/framework/loader/plugin_host.h"
#include "mcompress/framework/recipe/recipe.h"
#include "mcompress/framework/run/input_error.h"
#include "mcompress/framework/run/runner.h"
#include "mcompress/framework/strategy/auto_prune.h"
#include "mcompress/framework/support/child_process.h"
#include "mcompress/framework/support/terminal.h"
#include "mcompress/framework/sweep/compare.h"
#include "mcompress/framework/tracking/run_tracking.h"
#include "mcompress/framework/tracking/runs_view.h"
#include "mcompress/framework/sources/zoo.h"
#include "mcompress/sdk/error.h"
#include "mcompress/sdk/pass.h"
#include "mcompress/sdk/probe.h"
#include "mcompress/sdk/version.h"

namespace mcompress::cli {
namespace {

std::string default_out_dir(const std::string& recipe_name) {
  const std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  return (fs::path("runs") / fmt::format("{}-{}", recipe_name, stamp)).string();
}

}  // namespace

int command_run(const std::vector<std::string>& args) {
  CommonOptions common;
  std::string recipe_path, out_dir, resume_dir;
  std::vector<std::string> overrides;
  bool dry_run = false;
  bool isolate = false;
  TrackingOptions tracking;
  po::options_description desc("mcompress run RECIPE.yaml [options]");
  desc.add_options()
      ("recipe", po::value(&recipe_path), "recipe file")
      ("out,o", po::value(&out_dir), "run directory (default: runs/<name>-<time>)")
      ("set", po::value(&overrides)->composing(), "override a recipe value: key.path=value (repeatable)")
      ("dry-run", po::bool_switch(&dry_run), "validate and print the resolved plan; run nothing")
      ("resume", po::value(&resume_dir), "continue the run in DIR from its last completed stage")
      ("isolate", po::bool_switch(&isolate),
       "run each stage's pass in a child process under the recipe's `isolation` limits: a pass that "
       "crashes, leaks or hangs fails its stage instead of the run");
  add_tracking(desc, tracking);
  add_common(desc, common);
  po::positional_options_description positional;
  positional.add("recipe", 1);
  auto vm = parse(args, desc, positional);
  if (vm.count("help")) {
    std::cout << desc;
    return kExitOk;
  }
  if (common.json) common.quiet = true;
  if (!resume_dir.empty()) {
    if (!recipe_path.empty() || !overrides.empty() || !out_dir.empty()) {
      throw po::error("--resume DIR takes the recipe, --set values and --out from the run in DIR");
    }
    auto source = mcompress::read_resume_source(resume_dir);
    recipe_path = source.recipe_path;
    overrides = source.overrides;
    out_dir = resume_dir;
  }
  if (recipe_path.empty()) throw po::error("no recipe given (mcompress run RECIPE.yaml)");

  auto plugins = load_plugins(common);
  if (plugins->has_duplicate_passes()) {
    print_refusals(*plugins, std::cerr);
    std::cerr << "error: two plugins provide the same pass; remove one from the plugin path\n";
    return kExitBadInput;
  }
  if (refuse_unusable_plugin_dirs(*plugins, common)) return kExitBadInput;
  mcompress::Recipe recipe;
  try {
    recipe = mcompress::load_recipe(recipe_path, overrides, *plugins);
  } catch (const mcompress::RecipeError& e) {
    for (const auto& d : e.diagnostics()) std::cerr << mcompress::format_diagnostic(d) << "\n";
    std::cerr << fmt::format("{} problem(s) in {}; nothing was run\n", e.diagnostics().size(), recipe_path);
    if (!plugins->refusals().empty()) print_refusals(*plugins, std::cerr);
    return kExitBadInput;
  }
  if (dry_run) {
    if (common.json) {
      std::cout << mcompress::to_json(recipe).dump(2) << "\n";
    } else {
      std::cout << mcompress::describe_plan(recipe, *plugins);
    }
    return kExitOk;
  }

  mcompress::RunOptions options;
  options.out_dir = out_dir.empty() ? default_out_dir(recipe.name) : out_dir;
  options.overrides = overrides;
  options.resume = !resume_dir.empty();
  if (isolate) options.isolation = mcompress::IsolationOptions{mcompress::this_executable(), common.plugin_dirs, !common.quiet};
  mcompress::TerminalLogger logger(common.quiet);
  mcompress::TerminalProgress progress(common.quiet);
  logger.info(fmt::format("run directory: {}", options.out_dir.string()));
  mcompress::RunLogRequest track;
  track.run_dir = options.out_dir;
  track.experiment = recipe.name;
  track.start_time_ms = mcompress::now_ms();
  if (options.resume) track.tags["mcompress.resumed"] = "true";
  const bool new_run_dir = !fs::exists(options.out_dir / "run.json");
  mcompress::RunResult result;
  try {
    result = mcompress::run_recipe(recipe, *plugins, options, logger, progress);
  } catch (const std::exception& e) {
    // A new run that ended without a report of its own (e.g. its data is
    // missing) is still a failed run worth finding later; a refusal to start
    // (the directory holds another run, a resume that does not match) is not.
    if (!options.resume && new_run_dir && fs::exists(options.out_dir / "run.json")) {
      const auto* c10 = dynamic_cast<const c10::Error*>(&e);
      track.error = c10 ? c10->what_without_backtrace() : e.what();
      track.status = "failed";
      track_run(tracking, track, logger);
    }
    throw;
  }
  track_run(tracking, track, logger);

  if (common.json) {
    std::cout << result.report.dump(2) << "\n";
  } else {
    std::cout << "\n" << mcompress::summary_table(result.stages);
    if (!result.final_model.empty()) std::cout << "\nfinal model: " << result.final_model.string() << "\n";
    std::cout << "report: " << (options.out_dir / "report.md").string() << "\n";
  }
  switch (result.status) {
    case mcompress::RunStatus::Completed: return kExitOk;
    case mcompress::RunStatus::StoppedByGate:
      std::cerr << "stopped: " << result.message << "\n";
      return kExitGateStop;
    case mcompress::RunStatus::Failed:
      std::cerr << "error: " << result.message << "\n";
      return kExitFailed;
  }
  return kExitFailed;
}

}  // namespace mcompress::cli
