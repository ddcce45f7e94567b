// A plugin whose info claims another SDK version, LibTorch or C++ ABI: the
// host must refuse it before calling anything C++ in it.
#include <torch/version.h>

#include <boost/dll/alias.hpp>

#include <stdexcept>

#include "mcompress/sdk/plugin_abi.h"

#ifndef TEST_SDK_MAJOR
#define TEST_SDK_MAJOR MCOMPRESS_SDK_VERSION_MAJOR
#endif
#ifndef TEST_SDK_MINOR
#define TEST_SDK_MINOR MCOMPRESS_SDK_VERSION_MINOR
#endif
#ifndef TEST_TORCH_VERSION
#define TEST_TORCH_VERSION TORCH_VERSION
#endif
#ifndef TEST_CXX_ABI
#define TEST_CXX_ABI MCOMPRESS_CXX_ABI_TAG
#endif

namespace mismatched {
static void register_passes(void*) { throw std::logic_error("must never be called"); }
static const mcompress_plugin_info info = {sizeof(mcompress_plugin_info), TEST_SDK_MAJOR,
                                           TEST_SDK_MINOR, "mismatched", "0.0.1",
                                           TEST_TORCH_VERSION, TEST_CXX_ABI,
                                           MCOMPRESS_COMPILER_ID, &register_passes};
const mcompress_plugin_info* entry() { return &info; }
}  // namespace mismatched
BOOST_DLL_ALIAS(mismatched::entry, mcompress_plugin_entry)
