#pragma once
// Loading a plugin library in a plugin's own tests the way the host loads it
// (entry symbol, the SDK's compatibility check, the register function), to
// call its passes and probes directly without the CLI. Part of
// mcompress::testing, with the zoo models and datasets (sources/).
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "mcompress/sdk/pass.h"

namespace mcompress::testing {

// What one library registered. Owned by the loader and never destroyed,
// like the library itself: its objects' code lives until the process exits.
struct MCOMPRESS_SDK_API LoadedPlugin {
  std::string name;     // the plugin's declared name
  std::filesystem::path path;
  std::vector<std::unique_ptr<Pass>> passes;
  std::vector<std::unique_ptr<Probe>> probes;

  // Throws mcompress::Error if the plugin has no pass (probe) of that name.
  const Pass& pass(const std::string& pass_name) const;
  const Probe& probe(const std::string& probe_name) const;
};

// Loads `library` once per process (later calls return the same plugin).
// Throws mcompress::Error naming the file when it cannot be loaded, is not an
// mcompress plugin, does not fit this SDK, or its register function fails.
MCOMPRESS_SDK_API const LoadedPlugin& load_plugin(const std::filesystem::path& library);

}  // namespace mcompress::testing
