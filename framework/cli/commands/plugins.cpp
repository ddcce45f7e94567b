// `mcompress plugins`
#include "cli_support.h"
#include "commands/commands.h"

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include <iostream>

#include "mcompress/framework/loader/plugin_host.h"
#include "mcompress/sdk/pass.h"
#include "mcompress/sdk/probe.h"

namespace mcompress::cli {

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

}  // namespace mcompress::cli
