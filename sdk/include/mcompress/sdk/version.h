#pragma once
// SDK version and the C++ ABI tag a plugin was built with.
//
// Compatibility rule (checked by the host before any C++ object crosses the
// plugin boundary):
//   * MAJOR must be equal. A major bump may change any layout or interface.
//   * A plugin's MINOR must be <= the host's MINOR. Minor versions only append:
//     new fields at the end of mcompress_plugin_info, new virtual functions at
//     the end of interfaces, new enum values; nothing is reordered or removed.
//   * The LibTorch major.minor and the C++ ABI tag must be equal, because
//     torch::jit::Module and std:: types cross the boundary after the check.
#include <cstddef>  // also defines _GLIBCXX_USE_CXX11_ABI

#define MCOMPRESS_SDK_VERSION_MAJOR 1
#define MCOMPRESS_SDK_VERSION_MINOR 0

#define MCOMPRESS_STRINGIFY_(x) #x
#define MCOMPRESS_STRINGIFY(x) MCOMPRESS_STRINGIFY_(x)

// The part of the C++ ABI that must match between host and plugin: the
// standard library and its string/list ABI. The compiler is informational.
#if defined(_GLIBCXX_USE_CXX11_ABI)
#define MCOMPRESS_CXX_ABI_TAG "libstdc++ cxx11abi=" MCOMPRESS_STRINGIFY(_GLIBCXX_USE_CXX11_ABI)
#elif defined(_LIBCPP_VERSION)
#define MCOMPRESS_CXX_ABI_TAG "libc++ abi=" MCOMPRESS_STRINGIFY(_LIBCPP_ABI_VERSION)
#else
#define MCOMPRESS_CXX_ABI_TAG "unknown"
#endif

#if defined(__clang__)
#define MCOMPRESS_COMPILER_ID "clang " __clang_version__
#elif defined(__GNUC__)
#define MCOMPRESS_COMPILER_ID "gcc " __VERSION__
#else
#define MCOMPRESS_COMPILER_ID "unknown"
#endif
