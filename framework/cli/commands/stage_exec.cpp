// `mcompress stage-exec`
#include "cli_support.h"
#include "commands/commands.h"

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include <cstdio>

#include "mcompress/framework/run/runner.h"
#include "mcompress/framework/support/terminal.h"

namespace mcompress::cli {

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

}  // namespace mcompress::cli
