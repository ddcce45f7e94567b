#pragma once
// Whether a plugin library fits this SDK, decided from its plain C info
// alone (the rule in version.h), before any C++ object crosses the boundary.
// The host's loader and mcompress::testing's plugin loader both ask it.
#include <string>

#include "mcompress/sdk/export.h"
#include "mcompress/sdk/plugin_abi.h"

namespace mcompress {

// Empty when the plugin fits; otherwise what it was built with, what this
// SDK needs and what to do.
MCOMPRESS_SDK_API std::string plugin_incompatibility(const mcompress_plugin_info* info);

}  // namespace mcompress
