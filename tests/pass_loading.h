#pragma once
// Loading an in-tree plugin the way the host does (dlopen, entry symbol,
// register function) to call its passes directly, without the CLI. Libraries
// are never unloaded: the pass objects and their code live until exit.
#include <dlfcn.h>

#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <mcompress/sdk/pass.h>
#include <mcompress/sdk/plugin_abi.h>
#include <mcompress/sdk/version.h>

namespace mcompress::testing {

class CollectingRegistry : public PassRegistry {
 public:
  void add(std::unique_ptr<Pass> pass) override { passes.push_back(std::move(pass)); }
  void add_probe(std::unique_ptr<Probe> probe) override { probes.push_back(std::move(probe)); }
  std::vector<std::unique_ptr<Pass>> passes;
  std::vector<std::unique_ptr<Probe>> probes;
};

// The only pass of plugin `name` (MCOMPRESS_PLUGIN_DIR/name.so).
inline const Pass& plugin_pass(const std::string& name) {
  // Never destroyed, like the plugin libraries: the passes stay reachable to
  // the end of the process (LeakSanitizer checks after static destructors).
  static auto* registries = new std::map<std::string, CollectingRegistry*>;
  auto& registry = (*registries)[name];
  if (!registry) {
    const std::filesystem::path file = std::filesystem::path(MCOMPRESS_PLUGIN_DIR) / (name + ".so");
    void* library = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!library) throw std::runtime_error("cannot load " + file.string() + ": " + dlerror());
    // Boost.DLL's alias is a variable holding the entry function's address.
    auto* alias = static_cast<const void* const*>(dlsym(library, MCOMPRESS_PLUGIN_ENTRY_SYMBOL));
    if (!alias) throw std::runtime_error("no entry symbol in " + file.string());
    auto entry = reinterpret_cast<mcompress_plugin_entry_fn>(const_cast<void*>(*alias));
    const mcompress_plugin_info* info = entry();
    if (std::string(info->plugin_name) != name || info->sdk_major != MCOMPRESS_SDK_VERSION_MAJOR) {
      throw std::runtime_error("unexpected plugin info in " + file.string());
    }
    registry = new CollectingRegistry;
    info->register_passes(registry);
  }
  if (registry->passes.size() != 1) throw std::runtime_error("expected one pass in " + name);
  return *registry->passes.front();
}

}  // namespace mcompress::testing
