#pragma once
// A run refused before it started because something the user supplied is
// unusable: a model file that is not TorchScript, data files that are
// missing or corrupted, a model that does not accept the data's inputs.
// The CLI reports it like a recipe error (exit code 2) and nothing is written.
#include <string>

#include "mcompress/sdk/error.h"

namespace mcompress {

class InputError : public Error {
 public:
  explicit InputError(const std::string& message) : Error(message) {}
};

}  // namespace mcompress
