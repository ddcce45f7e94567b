#include "mcompress/sdk/error.h"

namespace mcompress {
Error::Error(const std::string& message) : std::runtime_error(message) {}
Error::~Error() = default;
}  // namespace mcompress
