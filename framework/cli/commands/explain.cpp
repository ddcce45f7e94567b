// `mcompress explain`
#include "cli_support.h"
#include "commands/commands.h"

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include <iostream>

#include "mcompress/framework/loader/plugin_host.h"
#include "mcompress/framework/recipe/recipe.h"
#include "mcompress/sdk/pass.h"
#include "mcompress/sdk/probe.h"

namespace mcompress::cli {

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

}  // namespace mcompress::cli
