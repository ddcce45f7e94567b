#pragma once
// Symbols of libmcompress_sdk that hosts and plugins may use. Everything else
// in the library is hidden (CMAKE_CXX_VISIBILITY_PRESET hidden).
#define MCOMPRESS_SDK_API __attribute__((visibility("default")))
