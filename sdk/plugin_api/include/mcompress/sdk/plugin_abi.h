#pragma once
// The C boundary of a plugin library: one exported symbol,
// mcompress_plugin_entry (MCOMPRESS_PLUGIN_ENTRY_SYMBOL), a constant pointer
// to a function returning a pointer to a static mcompress_plugin_info. The host reads only this plain struct until the
// version and ABI checks pass; after that it calls register_passes and talks
// C++ (see pass.h). Plugins declare the entry with MCOMPRESS_PLUGIN (plugin.h).
#include <cstddef>
#include <cstdint>

#include "mcompress/sdk/version.h"

#define MCOMPRESS_PLUGIN_ENTRY_SYMBOL "mcompress_plugin_entry"

extern "C" {

// Layout frozen for SDK major 1; fields may only be appended (minor bump).
// Every pointer is owned by the plugin and must stay valid while the library
// is loaded (the host never unloads plugin libraries).
struct mcompress_plugin_info {
  uint32_t struct_size;     // sizeof(mcompress_plugin_info) in the plugin's SDK
  uint16_t sdk_major;       // MCOMPRESS_SDK_VERSION_MAJOR the plugin was built with
  uint16_t sdk_minor;       // MCOMPRESS_SDK_VERSION_MINOR the plugin was built with
  const char* plugin_name;  // e.g. "magnitude_prune"
  const char* plugin_version;
  const char* torch_version;  // TORCH_VERSION of the LibTorch headers used
  const char* cxx_abi;        // MCOMPRESS_CXX_ABI_TAG
  const char* compiler;       // MCOMPRESS_COMPILER_ID (informational)
  // Called once, after all checks passed, with a mcompress::PassRegistry*.
  void (*register_passes)(void* registry);
};

typedef const struct mcompress_plugin_info* (*mcompress_plugin_entry_fn)(void);

// The entry symbol in its real form, so the compiler checks the definition
// MCOMPRESS_PLUGIN writes against it. A pointer-sized constant holding the
// entry function's address: the form Boost.DLL's BOOST_DLL_ALIAS exported
// for SDK 1.0 plugins, which therefore load unchanged.
__attribute__((visibility("default"))) extern const mcompress_plugin_entry_fn mcompress_plugin_entry;

}  // extern "C"

static_assert(offsetof(mcompress_plugin_info, struct_size) == 0, "ABI frozen");
static_assert(offsetof(mcompress_plugin_info, sdk_major) == 4, "ABI frozen");
static_assert(offsetof(mcompress_plugin_info, sdk_minor) == 6, "ABI frozen");
static_assert(offsetof(mcompress_plugin_info, plugin_name) == 8, "ABI frozen");
static_assert(offsetof(mcompress_plugin_info, register_passes) == 48, "ABI frozen");
static_assert(sizeof(mcompress_plugin_info) == 56, "SDK 1.0 plugin info is 56 bytes");

// The smallest struct_size a host of major 1 accepts: SDK 1.0's layout.
#define MCOMPRESS_PLUGIN_INFO_V1_0_SIZE 56u
