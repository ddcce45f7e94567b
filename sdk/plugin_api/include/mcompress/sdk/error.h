#pragma once
#include <stdexcept>
#include <string>

#include "mcompress/sdk/export.h"
#include "mcompress/sdk/version.h"

namespace mcompress {

// The error type of mcompress: a message a user can act on (what was wrong,
// where, what to do). Passes throw it (or any std::exception); the host adds
// plugin, pass and stage names before it reaches the user.
class MCOMPRESS_SDK_API Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message);
  ~Error() override;
};

#if MCOMPRESS_SDK_TARGET_MINOR >= 1
// SDK 1.1. Inside a catch block: what the exception being handled says. what() of a
// std::exception (a LibTorch error without its C++ backtrace); for anything
// else (`throw 42`, another library's type), its type: "an exception of type
// 'int' (not a std::exception)". Never throws.
MCOMPRESS_SDK_API std::string current_exception_message() noexcept;
#endif

}  // namespace mcompress
