// mcompress: the command-line host.
//   mcompress run RECIPE.yaml [--out DIR] [--set key=value ...] [--dry-run] [--quiet] [--json] [--isolate]
//   mcompress run --resume DIR
//   mcompress runs list | show RUN | diff RUN_A RUN_B
//   mcompress plugins | explain PASS | zoo | version
#include <torch/version.h>

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <map>
#include <sstream>

#include "mcompress/framework/auto_prune.h"
#include "mcompress/framework/child_process.h"
#include "mcompress/framework/compare.h"
#include "mcompress/framework/input_error.h"
#include "mcompress/framework/plugin_host.h"
#include "mcompress/framework/recipe.h"
#include "mcompress/framework/run_tracking.h"
#include "mcompress/framework/runner.h"
#include "mcompress/framework/runs_view.h"
#include "mcompress/framework/terminal.h"
#include "mcompress/framework/zoo.h"
#include "mcompress/sdk/error.h"
#include "mcompress/sdk/pass.h"
#include "mcompress/sdk/probe.h"
#include "mcompress/sdk/version.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace {

// Exit codes (documented in the README).
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;      // a stage or the run failed
constexpr int kExitBadInput = 2;    // usage error, invalid recipe, refused plugins
constexpr int kExitGateStop = 3;    // a quality gate with on_fail: stop

const char* kUsage = R"(usage: mcompress <command> [options]

commands:
  run RECIPE.yaml   validate and run a recipe   (mcompress run --help)
  run --resume DIR  continue an interrupted run from its last completed stage
  compare SWEEP.yaml  run, rank and report many candidate pipelines (mcompress compare --help)
  report DIR...     merge and rank the results of sweep directories (e.g. shards)
  runs list|show|diff  query the runs tracked in the MLflow store (mcompress runs --help)
  plugins           list loaded plugins, their passes, and refused libraries
  explain PASS      show a pass's summary, needs and parameters
  zoo               list the built-in models
  version           print versions (mcompress, SDK, LibTorch)

plugins are searched in the build/installed plugin folder, then
MCOMPRESS_PLUGIN_PATH (colon-separated), then each --plugin-dir.
runs are tracked in an MLflow file store: --mlruns DIR, else MCOMPRESS_MLRUNS,
else ./mlruns (--no-tracking: none).
)";

// Where `run` and `compare` log their runs (docs/tracking.md).
struct TrackingOptions {
  std::string mlruns;
  bool disabled = false;
};

void add_tracking(po::options_description& desc, TrackingOptions& tracking) {
  desc.add_options()
      ("mlruns", po::value(&tracking.mlruns), "MLflow file store to log runs in (default: $MCOMPRESS_MLRUNS or ./mlruns)")
      ("no-tracking", po::bool_switch(&tracking.disabled), "log nothing to the tracking store");
}

// A store that cannot be written costs the run its record, never its result
// or exit code: the run directory holds everything.
void track_run(const TrackingOptions& tracking, const mcompress::RunLogRequest& request, mcompress::Logger& log) {
  if (tracking.disabled) return;
  const fs::path root = mcompress::tracking_root(tracking.mlruns);
  try {
    mcompress::TrackingStore store(root);
    const auto logged = mcompress::log_run_directory(store, request);
    log.info(fmt::format("tracked as run {} in {}", logged.run_id, logged.dir.string()));
  } catch (const std::exception& e) {
    log.warn(fmt::format("the run was not logged to the tracking store {}: {}", root.string(), e.what()));
  }
}

struct CommonOptions {
  std::vector<std::string> plugin_dirs;
  bool quiet = false;
  bool json = false;
};

void add_common(po::options_description& desc, CommonOptions& common) {
  desc.add_options()
      ("plugin-dir", po::value(&common.plugin_dirs)->composing(), "also load plugins from DIR (repeatable)")
      ("quiet,q", po::bool_switch(&common.quiet), "no progress or informational output")
      ("json", po::bool_switch(&common.json), "machine-readable JSON on stdout (implies --quiet)")
      ("help,h", "show this help");
}

po::variables_map parse(const std::vector<std::string>& args, const po::options_description& desc,
                        const po::positional_options_description& positional) {
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(desc).positional(positional).run(), vm);
  po::notify(vm);
  return vm;
}

std::unique_ptr<mcompress::PluginHost> load_plugins(const CommonOptions& common) {
  auto host = std::make_unique<mcompress::PluginHost>();
  mcompress::register_builtin_passes(*host);
  std::vector<fs::path> extra(common.plugin_dirs.begin(), common.plugin_dirs.end());
  host->load_directories(mcompress::PluginHost::search_path(extra));
  return host;
}

void print_refusals(const mcompress::PluginHost& host, std::ostream& out) {
  for (const auto& r : host.refusals()) out << fmt::format("refused {}: {}\n", r.path, r.reason);
}

bool is_inside_or_same(const fs::path& path, const fs::path& place) {
  std::error_code ec;
  const auto a = fs::weakly_canonical(path, ec);
  const auto b = fs::weakly_canonical(place, ec);
  return a == b || a.parent_path() == b;
}

// A plugin path the user named with --plugin-dir is one they expect to be
// used: if it is missing, or a library in it is refused, running without it
// would silently run something else, so `run` and `compare` stop (exit 2)
// and say which library was refused and why. Refusals elsewhere on the search
// path only matter when a recipe needs a pass they would have provided.
bool refuse_unusable_plugin_dirs(const mcompress::PluginHost& host, const CommonOptions& common) {
  bool refused = false;
  for (const auto& named : common.plugin_dirs) {
    std::error_code ec;
    if (!fs::exists(named, ec)) {
      std::cerr << fmt::format("error: --plugin-dir {}: no such file or directory\n", named);
      refused = true;
      continue;
    }
    for (const auto& r : host.refusals()) {
      if (!r.duplicate_pass && is_inside_or_same(r.path, named)) {
        std::cerr << fmt::format("error: plugin {} (from --plugin-dir {}) was refused: {}\n", r.path, named,
                                 r.reason);
        refused = true;
      }
    }
  }
  if (refused) std::cerr << "nothing was run; fix or remove the refused plugins, or drop the --plugin-dir\n";
  return refused;
}

std::string default_out_dir(const std::string& recipe_name) {
  const std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  return (fs::path("runs") / fmt::format("{}-{}", recipe_name, stamp)).string();
}

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

void print_comparison(const mcompress::Comparison& comparison, const fs::path& dir, bool json) {
  if (json) {
    std::cout << mcompress::comparison_json(comparison).dump(2) << "\n";
    return;
  }
  std::cout << "\n" << mcompress::comparison_table(comparison);
  std::cout << "reports: " << (dir / "comparison.html").string() << " (.md, .csv, .json)\n";
}

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

int command_report(const std::vector<std::string>& args) {
  CommonOptions common;
  std::vector<std::string> dirs;
  std::string out_dir;
  po::options_description desc("mcompress report DIR... [options]");
  desc.add_options()
      ("dirs", po::value(&dirs)->composing(), "sweep directories (shards of one sweep)")
      ("out,o", po::value(&out_dir), "where to write comparison.* (default: the first DIR)");
  add_common(desc, common);
  po::positional_options_description positional;
  positional.add("dirs", -1);
  auto vm = parse(args, desc, positional);
  if (vm.count("help") || dirs.empty()) {
    std::cout << desc;
    return dirs.empty() && !vm.count("help") ? kExitBadInput : kExitOk;
  }
  const auto comparison = mcompress::merge_sweep_results({dirs.begin(), dirs.end()});
  const fs::path out = out_dir.empty() ? fs::path(dirs.front()) : fs::path(out_dir);
  fs::create_directories(out);
  mcompress::write_comparison(out.string(), comparison);
  print_comparison(comparison, out, common.json);
  return kExitOk;
}

// `mcompress runs list|show|diff`: reads the tracking store (run_tracking.h).
int command_runs(const std::vector<std::string>& args) {
  CommonOptions common;
  TrackingOptions tracking;
  std::vector<std::string> words;
  std::string experiment;
  po::options_description desc(
      "mcompress runs list [--experiment NAME] | show RUN | diff RUN_A RUN_B [options]\n"
      "RUN: a run id or its first digits");
  desc.add_options()
      ("words", po::value(&words)->composing(), "list | show RUN | diff RUN_A RUN_B")
      ("experiment,e", po::value(&experiment), "list: only the runs of this experiment (a recipe or sweep name)")
      ("mlruns", po::value(&tracking.mlruns), "the store to read (default: $MCOMPRESS_MLRUNS or ./mlruns)")
      ("json", po::bool_switch(&common.json), "machine-readable JSON on stdout")
      ("help,h", "show this help");
  po::positional_options_description positional;
  positional.add("words", -1);
  auto vm = parse(args, desc, positional);
  if (vm.count("help")) {
    std::cout << desc;
    return kExitOk;
  }
  const std::map<std::string, size_t> operands{{"list", 0}, {"show", 1}, {"diff", 2}};
  const auto wanted = words.empty() ? operands.end() : operands.find(words.front());
  if (wanted == operands.end() || words.size() - 1 != wanted->second) {
    throw po::error("expected `runs list`, `runs show RUN` or `runs diff RUN_A RUN_B`");
  }
  const std::string& action = words.front();
  if (action != "list" && !experiment.empty()) throw po::error("--experiment applies to `runs list` only");
  const mcompress::TrackingStore store(mcompress::tracking_root(tracking.mlruns));
  try {
    if (action == "list") {
      const auto runs = store.runs(experiment);
      std::cout << (common.json ? mcompress::runs_json(runs).dump(2) + "\n" : mcompress::runs_table(runs));
    } else if (action == "show") {
      const auto run = store.find_run(words[1]);
      std::cout << (common.json ? mcompress::run_json(run).dump(2) + "\n" : mcompress::run_details(run));
    } else {
      const auto a = store.find_run(words[1]);
      const auto b = store.find_run(words[2]);
      std::cout << (common.json ? mcompress::runs_diff_json(a, b).dump(2) + "\n" : mcompress::runs_diff(a, b));
    }
  } catch (const mcompress::Error& e) {
    std::cerr << "error: " << e.what() << "\n";  // no such store, experiment or run
    return kExitBadInput;
  }
  return kExitOk;
}

int command_plugins(const std::vector<std::string>& args) {
  CommonOptions common;
  po::options_description desc("mcompress plugins [options]");
  add_common(desc, common);
  auto vm = parse(args, desc, {});
  if (vm.count("help")) {
    std::cout << desc;
    return kExitOk;
  }
  auto host = load_plugins(common);
  if (common.json) {
    nlohmann::json out = {{"plugins", nlohmann::json::array()}, {"refused", nlohmann::json::array()}};
    for (const auto& p : host->plugins()) {
      out["plugins"].push_back({{"path", p.path}, {"name", p.name}, {"version", p.version},
                                {"sdk", fmt::format("{}.{}", p.sdk_major, p.sdk_minor)},
                                {"torch", p.torch_version}, {"cxx_abi", p.cxx_abi},
                                {"passes", p.passes}, {"probes", p.probes}, {"sha256", p.sha256}});
    }
    out["libraries"] = nlohmann::json::array();
    for (const auto& library : host->library_files()) {
      out["libraries"].push_back({{"role", library.role}, {"path", library.path}, {"sha256", library.sha256}});
    }
    for (const auto& r : host->refusals()) out["refused"].push_back({{"path", r.path}, {"reason", r.reason}});
    std::cout << out.dump(2) << "\n";
    return host->refusals().empty() ? kExitOk : kExitBadInput;
  }
  std::cout << "search path:\n";
  for (const auto& dir : mcompress::PluginHost::search_path({common.plugin_dirs.begin(), common.plugin_dirs.end()})) {
    std::cout << "  " << dir.string() << "\n";
  }
  std::cout << "\nloaded plugins:\n";
  for (const auto& p : host->plugins()) {
    std::cout << fmt::format("  {} {} (SDK {}.{}, LibTorch {}, {})\n    {}\n", p.name, p.version,
                             p.sdk_major, p.sdk_minor, p.torch_version, p.cxx_abi, p.path);
    for (const auto& name : p.passes) {
      const auto* info = host->find(name);
      std::cout << fmt::format("    - {:<18} [{}] {}\n", name, mcompress::to_string(info->kind), info->summary);
    }
    for (const auto& name : p.probes) {
      std::cout << fmt::format("    - {:<18} [probe] {}\n", name, host->find_probe(name)->info().summary);
    }
  }
  std::cout << "\nlibraries (SHA-256):\n";
  for (const auto& library : host->library_files()) {
    std::cout << fmt::format("  {}  {:<10} {}\n", library.sha256.empty() ? std::string(64, '?') : library.sha256,
                             library.role, library.path);
  }
  if (!host->refusals().empty()) {
    std::cout << "\nrefused:\n";
    for (const auto& r : host->refusals()) std::cout << fmt::format("  {}\n    {}\n", r.path, r.reason);
  }
  return host->refusals().empty() ? kExitOk : kExitBadInput;
}

int command_explain(const std::vector<std::string>& args) {
  CommonOptions common;
  std::string name;
  po::options_description desc("mcompress explain PASS [options]");
  desc.add_options()("pass", po::value(&name), "pass name");
  add_common(desc, common);
  po::positional_options_description positional;
  positional.add("pass", 1);
  auto vm = parse(args, desc, positional);
  if (vm.count("help") || name.empty()) {
    std::cout << desc;
    return name.empty() && !vm.count("help") ? kExitBadInput : kExitOk;
  }
  auto host = load_plugins(common);
  const auto* info = host->find(name);
  if (!info) {
    std::string hint;
    if (auto close = mcompress::closest_match(name, host->names())) hint = fmt::format(" (did you mean `{}`?)", *close);
    std::cerr << fmt::format("error: no pass named '{}'{}; `mcompress plugins` lists them\n", name, hint);
    return kExitBadInput;
  }
  const auto* plugin = host->plugin_of(name);
  std::cout << fmt::format("{} [{}] — {}\nplugin: {} {} ({})\n", info->name, mcompress::to_string(info->kind),
                           info->summary, plugin->name, plugin->version, plugin->path);
  std::vector<std::string> needs;
  if (info->needs.train_data) needs.push_back("training data");
  if (info->needs.calibration_data) needs.push_back("calibration data");
  if (info->needs.teacher) needs.push_back("a teacher");
  std::cout << "needs: " << (needs.empty() ? "nothing beyond the model" : fmt::format("{}", fmt::join(needs, ", ")))
            << "\n\nparameters:\n";
  for (const auto& p : info->params) {
    std::string constraint;
    if (p.min || p.max) {
      constraint = fmt::format(" in [{}, {}]", p.min ? fmt::format("{}", *p.min) : "-inf",
                               p.max ? fmt::format("{}", *p.max) : "inf");
    }
    if (!p.choices.empty()) constraint = fmt::format(" one of {{{}}}", fmt::join(p.choices, ", "));
    const std::string def = p.default_value ? "default " + mcompress::to_string(*p.default_value) : "required";
    std::cout << fmt::format("  {:<14} {}{}, {}\n      {}\n", p.name, mcompress::to_string(p.type), constraint,
                             def, p.doc);
  }
  return kExitOk;
}

// `mcompress stage-exec DIR`: one stage of `mcompress run --isolate`, started
// by the run's host process (never by users; not in the usage text).
int command_stage_exec(const std::vector<std::string>& args) {
  CommonOptions common;
  std::string exchange_dir;
  po::options_description desc("mcompress stage-exec DIR [--plugin-dir DIR ...]");
  desc.add_options()("dir", po::value(&exchange_dir), "the stage's exchange folder");
  add_common(desc, common);
  po::positional_options_description positional;
  positional.add("dir", 1);
  parse(args, desc, positional);
  if (exchange_dir.empty()) throw po::error("no exchange folder given");
  auto plugins = load_plugins(common);
  mcompress::TerminalLogger logger(false);  // into stage.log, which the host shows or keeps
  mcompress::TerminalProgress progress(false);
  mcompress::run_isolated_stage(exchange_dir, *plugins, logger, progress);
  // The result is on disk: skip static destructors, which plugin code may
  // not survive, and end at once.
  std::fflush(nullptr);
  std::_Exit(kExitOk);
}

int command_zoo() {
  for (const auto& m : mcompress::zoo_models()) {
    std::cout << fmt::format("{:<8} {} (options: {})\n", m.name, m.summary, fmt::join(m.options, ", "));
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
    std::cout << kUsage;
    return args.empty() ? kExitBadInput : kExitOk;
  }
  const std::string command = args[0];
  args.erase(args.begin());
  try {
    if (command == "run") return command_run(args);
    if (command == "compare") return command_compare(args);
    if (command == "report") return command_report(args);
    if (command == "runs") return command_runs(args);
    if (command == "plugins") return command_plugins(args);
    if (command == "explain") return command_explain(args);
    if (command == "zoo") return command_zoo();
    if (command == "stage-exec") return command_stage_exec(args);
    if (command == "version" || command == "--version") {
      std::cout << fmt::format("mcompress {} (plugin SDK {}.{}, LibTorch {}, {})\n", MCOMPRESS_VERSION,
                               MCOMPRESS_SDK_VERSION_MAJOR, MCOMPRESS_SDK_VERSION_MINOR, TORCH_VERSION,
                               MCOMPRESS_CXX_ABI_TAG);
      return kExitOk;
    }
    std::cerr << fmt::format("error: unknown command '{}'\n\n{}", command, kUsage);
    return kExitBadInput;
  } catch (const mcompress::InputError& e) {
    std::cerr << "error: " << e.what() << "\nnothing was run\n";
    return kExitBadInput;
  } catch (const po::error& e) {
    std::cerr << fmt::format("error: {}\n(see mcompress {} --help)\n", e.what(), command);
    return kExitBadInput;
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << "\n";
    return kExitFailed;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitFailed;
  }
}
