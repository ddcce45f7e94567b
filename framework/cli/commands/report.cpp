// `mcompress report`
#include "cli_support.h"
#include "commands/commands.h"

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include <iostream>

#include "mcompress/framework/sweep/comparison.h"
#include "mcompress/framework/sweep/compare.h"

namespace mcompress::cli {

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

}  // namespace mcompress::cli
