// `mcompress compare`
#include "cli_support.h"
#include "commands/commands.h"

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include <iostream>
#include <sstream>

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

void parse_shard(const std::string& text, mcompress::CompareOptions& options) {
  int index = -1, count = 0;
  char slash = 0;
  std::istringstream in(text);
  in >> index >> slash >> count;
  if (!in || slash != '/' || count < 1 || index < 0 || index >= count || !in.eof()) {
    throw po::error(fmt::format("--shard must be I/N with 0 <= I < N (e.g. 0/4), got '{}'", text));
  }
  options.shard_index = index;
  options.shard_count = count;
}

}  // namespace

int command_compare(const std::vector<std::string>& args) {
  CommonOptions common;
  std::string sweep_path, out_dir, shard = "0/1";
  std::vector<std::string> extra_overrides;
  int jobs = 1;
  bool dry_run = false;
  bool no_isolate = false;
  po::options_description desc("mcompress compare SWEEP.yaml [options]");
  desc.add_options()
      ("sweep", po::value(&sweep_path), "sweep file")
      ("out,o", po::value(&out_dir), "sweep directory (default: runs/<sweep name>); rerun to resume")
      ("jobs,j", po::value(&jobs), "candidates run in parallel (child processes)")
      ("shard", po::value(&shard), "run shard I of N (I/N, 0-based) of the candidates")
      ("set", po::value(&extra_overrides)->composing(), "override a base recipe value for every candidate (repeatable)")
      ("dry-run", po::bool_switch(&dry_run), "validate every candidate and list them; run nothing")
      ("no-isolate", po::bool_switch(&no_isolate),
       "run each candidate's passes inside its `mcompress run` process (default: each stage in a child "
       "process of its own, `run --isolate`)");
  TrackingOptions tracking;
  add_tracking(desc, tracking);
  add_common(desc, common);
  po::positional_options_description positional;
  positional.add("sweep", 1);
  auto vm = parse(args, desc, positional);
  if (vm.count("help")) {
    std::cout << desc;
    return kExitOk;
  }
  if (common.json) common.quiet = true;
  if (sweep_path.empty()) throw po::error("no sweep file given (mcompress compare SWEEP.yaml)");
  mcompress::CompareOptions options;
  parse_shard(shard, options);
  options.jobs = jobs;
  options.plugin_dirs = common.plugin_dirs;
  options.executable = mcompress::this_executable();
  options.isolate = !no_isolate;
  if (!tracking.disabled) options.tracking_root = mcompress::tracking_root(tracking.mlruns);

  auto plugins = load_plugins(common);
  if (refuse_unusable_plugin_dirs(*plugins, common)) return kExitBadInput;
  mcompress::Sweep sweep;
  try {
    sweep = mcompress::load_sweep(sweep_path);
    sweep.overrides.insert(sweep.overrides.end(), extra_overrides.begin(), extra_overrides.end());
    mcompress::validate_candidates(sweep, *plugins);
  } catch (const mcompress::RecipeError& e) {
    for (const auto& d : e.diagnostics()) std::cerr << mcompress::format_diagnostic(d) << "\n";
    std::cerr << fmt::format("{} problem(s); nothing was run\n", e.diagnostics().size());
    return kExitBadInput;
  }
  options.out_dir = out_dir.empty() ? fs::path("runs") / sweep.name : fs::path(out_dir);
  if (dry_run) {
    for (const auto& c : mcompress::shard_of(sweep.candidates, options.shard_index, options.shard_count)) {
      std::cout << fmt::format("{:>3}  {}\n", c.index, c.name);
      for (const auto& o : c.overrides) std::cout << "       --set " << o << "\n";
    }
    return kExitOk;
  }
  mcompress::TerminalLogger logger(common.quiet);
  mcompress::TerminalProgress progress(common.quiet);
  auto outcome = mcompress::run_sweep(sweep, options, logger, progress);
  print_comparison(outcome.comparison, options.out_dir, common.json);
  return kExitOk;
}

}  // namespace mcompress::cli
