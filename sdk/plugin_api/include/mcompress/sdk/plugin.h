#pragma once
// What a plugin source file includes to declare itself:
//
//   static void register_passes(mcompress::PassRegistry& registry) {
//     registry.add(std::make_unique<MyPass>());
//   }
//   MCOMPRESS_PLUGIN("my_plugin", "1.0.0", register_passes)
//
// expands to the single exported C entry symbol declared in plugin_abi.h,
// carrying the SDK version, LibTorch version and C++ ABI tag this file is
// compiled with. The register function runs after the host's checks; an
// exception it throws, of any type, is caught here and reported to the host,
// which refuses the plugin with the message. Nothing LibTorch may run in
// static initialisers (see version.h).
#include <torch/version.h>

#include "mcompress/sdk/error.h"
#include "mcompress/sdk/pass.h"
#include "mcompress/sdk/plugin_abi.h"

#if MCOMPRESS_SDK_TARGET_MINOR >= 1
// No exception leaves the plugin through the C entry's register function.
#define MCOMPRESS_PLUGIN_REGISTER_BODY_(REGISTER_FN)                                          \
  auto& typed = *static_cast<::mcompress::PassRegistry*>(registry);                           \
  try {                                                                                       \
    REGISTER_FN(typed);                                                                       \
  } catch (...) {                                                                             \
    typed.fail(::mcompress::current_exception_message());                                     \
  }
#else
// SDK 1.0 had no PassRegistry::fail; its host catches what escapes.
#define MCOMPRESS_PLUGIN_REGISTER_BODY_(REGISTER_FN)                                          \
  REGISTER_FN(*static_cast<::mcompress::PassRegistry*>(registry));
#endif

#define MCOMPRESS_PLUGIN(NAME, VERSION, REGISTER_FN)                                          \
  namespace mcompress_plugin_entry_impl {                                                     \
  static void register_thunk(void* registry) { MCOMPRESS_PLUGIN_REGISTER_BODY_(REGISTER_FN) } \
  static const ::mcompress_plugin_info info = {                                               \
      sizeof(::mcompress_plugin_info), MCOMPRESS_SDK_VERSION_MAJOR,                           \
      MCOMPRESS_SDK_TARGET_MINOR,      NAME,                                                  \
      VERSION,                         TORCH_VERSION,                                         \
      MCOMPRESS_CXX_ABI_TAG,           MCOMPRESS_COMPILER_ID,                                 \
      &register_thunk};                                                                       \
  static const ::mcompress_plugin_info* entry() { return &info; }                             \
  }                                                                                           \
  extern "C" {                                                                                \
  const mcompress_plugin_entry_fn mcompress_plugin_entry = &mcompress_plugin_entry_impl::entry; \
  }
