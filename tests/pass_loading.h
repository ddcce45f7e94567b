#pragma once
// The in-tree plugins' passes, loaded with mcompress::testing's plugin loader
// to be called directly, without the CLI.
#include <filesystem>
#include <stdexcept>
#include <string>

#include "mcompress/framework/testing/plugin_loader.h"

namespace mcompress::testing {

// The only pass of plugin `name` (MCOMPRESS_PLUGIN_DIR/name.so).
inline const Pass& plugin_pass(const std::string& name) {
  const auto& plugin = load_plugin(std::filesystem::path(MCOMPRESS_PLUGIN_DIR) / (name + ".so"));
  if (plugin.name != name || plugin.passes.size() != 1) {
    throw std::runtime_error("expected one pass in plugin " + name);
  }
  return *plugin.passes.front();
}

}  // namespace mcompress::testing
