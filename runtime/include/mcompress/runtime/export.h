#pragma once
// Symbols of libmcompress_runtime that hosts, the SDK and tests may use;
// everything else in the library is hidden (CMAKE_CXX_VISIBILITY_PRESET hidden).
#define MCOMPRESS_RUNTIME_API __attribute__((visibility("default")))
