// `mcompress runs`
#include "cli_support.h"
#include "commands/commands.h"

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <iostream>
#include <map>

#include "mcompress/framework/tracking/run_tracking.h"
#include "mcompress/framework/tracking/runs_view.h"
#include "mcompress/sdk/error.h"

namespace mcompress::cli {

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

}  // namespace mcompress::cli
