// `mcompress zoo`
#include "cli_support.h"
#include "commands/commands.h"

#include <fmt/format.h>

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

int command_zoo() {
  for (const auto& m : mcompress::zoo_models()) {
    std::cout << fmt::format("{:<8} {} (options: {})\n", m.name, m.summary, fmt::join(m.options, ", "));
  }
  return kExitOk;
}

}  // namespace mcompress::cli
