#pragma once
#include <stdexcept>
#include <string>

#include "mcompress/sdk/export.h"

namespace mcompress {

// The error type of mcompress: a message a user can act on (what was wrong,
// where, what to do). Passes throw it (or any std::exception); the host adds
// plugin, pass and stage names before it reaches the user.
class MCOMPRESS_SDK_API Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message);
  ~Error() override;
};

}  // namespace mcompress
