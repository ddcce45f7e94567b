#include "mcompress/framework/testing/plugin_loader.h"

#include <dlfcn.h>

#include <fmt/format.h>

#include <map>

#include "mcompress/sdk/error.h"
#include "mcompress/sdk/plugin_abi.h"
#include "mcompress/sdk/plugin_compatibility.h"

namespace mcompress::testing {
namespace {

class CollectingRegistry final : public PassRegistry {
 public:
  explicit CollectingRegistry(LoadedPlugin& plugin) : plugin_(plugin) {}
  void add(std::unique_ptr<Pass> pass) override { plugin_.passes.push_back(std::move(pass)); }
  void add_probe(std::unique_ptr<Probe> probe) override { plugin_.probes.push_back(std::move(probe)); }
  void fail(const std::string& message) override { failure = message; }
  std::string failure;

 private:
  LoadedPlugin& plugin_;
};

LoadedPlugin load(const std::filesystem::path& library) {
  const std::string file = library.string();
  void* handle = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) throw Error(fmt::format("cannot load {}: {}", file, dlerror()));
  auto* entry = static_cast<const mcompress_plugin_entry_fn*>(dlsym(handle, MCOMPRESS_PLUGIN_ENTRY_SYMBOL));
  if (!entry || !*entry) {
    throw Error(fmt::format("{} is not an mcompress plugin (no '{}' symbol)", file, MCOMPRESS_PLUGIN_ENTRY_SYMBOL));
  }
  const mcompress_plugin_info* info = (*entry)();
  if (std::string why = plugin_incompatibility(info); !why.empty()) {
    throw Error(fmt::format("{} does not fit this SDK: {}", file, why));
  }
  LoadedPlugin plugin;
  plugin.name = info->plugin_name;
  plugin.path = library;
  CollectingRegistry registry(plugin);
  try {
    info->register_passes(&registry);
  } catch (...) {
    registry.fail(current_exception_message());
  }
  if (!registry.failure.empty()) {
    throw Error(fmt::format("plugin '{}' ({}) failed to register its passes: {}", plugin.name, file,
                            registry.failure));
  }
  return plugin;
}

}  // namespace

const Pass& LoadedPlugin::pass(const std::string& pass_name) const {
  for (const auto& p : passes) {
    if (p->info().name == pass_name) return *p;
  }
  throw Error(fmt::format("plugin '{}' ({}) has no pass '{}'", name, path.string(), pass_name));
}

const Probe& LoadedPlugin::probe(const std::string& probe_name) const {
  for (const auto& p : probes) {
    if (p->info().name == probe_name) return *p;
  }
  throw Error(fmt::format("plugin '{}' ({}) has no probe '{}'", name, path.string(), probe_name));
}

const LoadedPlugin& load_plugin(const std::filesystem::path& library) {
  // Never destroyed, like the libraries (LeakSanitizer sees them reachable).
  static auto* loaded = new std::map<std::string, LoadedPlugin*>;
  const std::string key = std::filesystem::absolute(library).lexically_normal().string();
  auto& plugin = (*loaded)[key];
  if (!plugin) plugin = new LoadedPlugin(load(library));
  return *plugin;
}

}  // namespace mcompress::testing
