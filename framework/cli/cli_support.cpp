#include "cli_support.h"

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include <cstdio>
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

void add_tracking(po::options_description& desc, TrackingOptions& tracking) {
  desc.add_options()
      ("mlruns", po::value(&tracking.mlruns), "MLflow file store to log runs in (default: $MCOMPRESS_MLRUNS or ./mlruns)")
      ("no-tracking", po::bool_switch(&tracking.disabled), "log nothing to the tracking store");
}

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

std::optional<int> parse_single_positional(const std::vector<std::string>& args, const po::options_description& desc,
                                           const char* name, const std::string& value) {
  po::positional_options_description positional;
  positional.add(name, 1);
  const auto vm = parse(args, desc, positional);
  if (!vm.count("help") && !value.empty()) return std::nullopt;
  std::cout << desc;
  return vm.count("help") ? kExitOk : kExitBadInput;
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

void print_comparison(const mcompress::Comparison& comparison, const fs::path& dir, bool json) {
  if (json) {
    std::cout << mcompress::comparison_json(comparison).dump(2) << "\n";
    return;
  }
  std::cout << "\n" << mcompress::comparison_table(comparison);
  std::cout << "reports: " << (dir / "comparison.html").string() << " (.md, .csv, .json)\n";
}

}  // namespace mcompress::cli
