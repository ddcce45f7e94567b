#pragma once
// What a plugin source file includes to declare itself:
//
//   static void register_passes(mcompress::PassRegistry& registry) {
//     registry.add(std::make_unique<MyPass>());
//   }
//   MCOMPRESS_PLUGIN("my_plugin", "1.0.0", register_passes)
//
// expands to the single exported C entry symbol (via Boost.DLL) carrying the
// SDK version, LibTorch version and C++ ABI tag this file is compiled with.
#include <torch/version.h>

#include <boost/dll/alias.hpp>

#include "mcompress/sdk/pass.h"
#include "mcompress/sdk/plugin_abi.h"

#define MCOMPRESS_PLUGIN(NAME, VERSION, REGISTER_FN)                                          \
  namespace mcompress_plugin_entry_impl {                                                     \
  static void register_thunk(void* registry) {                                                \
    REGISTER_FN(*static_cast<::mcompress::PassRegistry*>(registry));                          \
  }                                                                                           \
  static const ::mcompress_plugin_info info = {                                               \
      sizeof(::mcompress_plugin_info), MCOMPRESS_SDK_VERSION_MAJOR,                           \
      MCOMPRESS_SDK_VERSION_MINOR,     NAME,                                                  \
      VERSION,                         TORCH_VERSION,                                         \
      MCOMPRESS_CXX_ABI_TAG,           MCOMPRESS_COMPILER_ID,                                 \
      &register_thunk};                                                                       \
  const ::mcompress_plugin_info* entry() { return &info; }                                    \
  }                                                                                           \
  BOOST_DLL_ALIAS(mcompress_plugin_entry_impl::entry, mcompress_plugin_entry)
