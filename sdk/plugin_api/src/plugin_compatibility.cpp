#include "mcompress/sdk/plugin_compatibility.h"

#include <torch/version.h>

#include <fmt/format.h>

namespace mcompress {
namespace {

std::string major_minor(const std::string& version) {
  auto first = version.find('.');
  if (first == std::string::npos) return version;
  auto second = version.find('.', first + 1);
  return version.substr(0, second);
}

const char* text_or(const char* s, const char* fallback) { return s ? s : fallback; }

}  // namespace

std::string plugin_incompatibility(const mcompress_plugin_info* info) {
  if (!info) return "its entry point returned no plugin info";
  if (info->struct_size < MCOMPRESS_PLUGIN_INFO_V1_0_SIZE) {
    return fmt::format("its plugin info is {} bytes, smaller than SDK 1.0's {} bytes (corrupt or "
                       "not built with MCOMPRESS_PLUGIN)",
                       info->struct_size, MCOMPRESS_PLUGIN_INFO_V1_0_SIZE);
  }
  if (info->sdk_major != MCOMPRESS_SDK_VERSION_MAJOR) {
    return fmt::format("it was built for mcompress SDK {}.{} but this host provides SDK {}.{}; "
                       "rebuild the plugin against SDK {}.x",
                       info->sdk_major, info->sdk_minor, MCOMPRESS_SDK_VERSION_MAJOR,
                       MCOMPRESS_SDK_VERSION_MINOR, MCOMPRESS_SDK_VERSION_MAJOR);
  }
  if (info->sdk_minor > MCOMPRESS_SDK_VERSION_MINOR) {
    return fmt::format("it was built for mcompress SDK {}.{}, newer than this host's SDK {}.{}; "
                       "upgrade mcompress or rebuild the plugin against SDK {}.{}",
                       info->sdk_major, info->sdk_minor, MCOMPRESS_SDK_VERSION_MAJOR,
                       MCOMPRESS_SDK_VERSION_MINOR, MCOMPRESS_SDK_VERSION_MAJOR,
                       MCOMPRESS_SDK_VERSION_MINOR);
  }
  if (!info->plugin_name || !*info->plugin_name || !info->register_passes) {
    return "its plugin info has no name or no register function";
  }
  const std::string torch = text_or(info->torch_version, "unknown");
  if (major_minor(torch) != major_minor(TORCH_VERSION)) {
    return fmt::format("it was built with LibTorch {} but this host uses LibTorch {}; rebuild "
                       "the plugin against the same LibTorch",
                       torch, TORCH_VERSION);
  }
  const std::string abi = text_or(info->cxx_abi, "unknown");
  if (abi != MCOMPRESS_CXX_ABI_TAG) {
    return fmt::format("it was built with C++ ABI '{}' ({}) but this host needs '{}' ({}); "
                       "rebuild with the same standard library settings",
                       abi, text_or(info->compiler, "unknown compiler"), MCOMPRESS_CXX_ABI_TAG,
                       MCOMPRESS_COMPILER_ID);
  }
  return {};
}

}  // namespace mcompress
