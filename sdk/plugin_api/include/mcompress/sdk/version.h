#pragma once
// SDK version and the C++ ABI tag a plugin was built with.
//
// Compatibility rule (checked by the host before any C++ object crosses the
// plugin boundary):
//   * MAJOR must be equal. A major bump may change any layout or interface.
//   * A plugin's MINOR must be <= the host's MINOR: a host runs every plugin
//     built for an older minor of its major, unchanged. So a minor version
//     may only add what an older plugin cannot be hurt by:
//       - Interfaces the host implements and plugins call (PassRegistry,
//         Logger, Progress) may gain virtual functions at the end: an older
//         plugin never calls them.
//       - Structs the host fills and plugins read (PassContext,
//         ProbeContext) may gain fields at the end: an older plugin never
//         reads them.
//       - Interfaces a plugin implements (Pass, Probe) never gain a virtual
//         function: an older plugin's vtable has no slot for it. New
//         capabilities arrive as extensions the host asks for by id
//         (Pass::extension / Probe::extension, SDK 1.1, in the way CLAP's
//         get_extension works); the host asks only plugins built for
//         SDK >= 1.1, whose vtables have that slot (sdk_minor in their info).
//       - Structs a plugin fills and the host reads (mcompress_plugin_info,
//         PassInfo, PassNeeds, ParamSpec, ProbeInfo, PassResult) keep their
//         SDK 1.0 layout (frozen by static_asserts). mcompress_plugin_info
//         and every extension struct start with their size, so fields
//         appended later are read only when the plugin's struct has them.
//       - New enum values, new free functions, new headers.
//     Nothing is reordered, removed or changed in meaning.
//   * The LibTorch major.minor and the C++ ABI tag must be equal, because
//     torch::jit::Module and std:: types cross the boundary after the check.
//
// Building for an older minor: define MCOMPRESS_SDK_TARGET_MINOR (e.g.
// -DMCOMPRESS_SDK_TARGET_MINOR=0) and the headers declare only what that
// minor had, and the plugin says it was built for it, so it also loads in
// hosts of that minor.
//
// Plugin code must not touch LibTorch (tensors, modules, torch:: globals) in
// static initialisers: they run when the library is loaded, before the host
// has checked the versions above. Build such objects in the register function
// or in Pass::run.
#include <cstddef>  // also defines _GLIBCXX_USE_CXX11_ABI

#define MCOMPRESS_SDK_VERSION_MAJOR 1
#define MCOMPRESS_SDK_VERSION_MINOR 1

#ifndef MCOMPRESS_SDK_TARGET_MINOR
#define MCOMPRESS_SDK_TARGET_MINOR MCOMPRESS_SDK_VERSION_MINOR
#endif
#if MCOMPRESS_SDK_TARGET_MINOR > MCOMPRESS_SDK_VERSION_MINOR || MCOMPRESS_SDK_TARGET_MINOR < 0
#error "MCOMPRESS_SDK_TARGET_MINOR must be between 0 and MCOMPRESS_SDK_VERSION_MINOR"
#endif

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
