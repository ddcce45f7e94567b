#include "mcompress/sdk/pass.h"

namespace mcompress {

// Out-of-line virtual destructors anchor the vtables and type info in the SDK
// library, so host and plugins agree on one copy.
Pass::~Pass() = default;
PassRegistry::~PassRegistry() = default;
Probe::~Probe() = default;
Logger::~Logger() = default;
Progress::~Progress() = default;

const void* Pass::extension(const char*) const { return nullptr; }
const void* Probe::extension(const char*) const { return nullptr; }

const char* to_string(PassKind kind) {
  switch (kind) {
    case PassKind::Prune: return "prune";
    case PassKind::Distill: return "distill";
    case PassKind::Quantize: return "quantize";
    case PassKind::Train: return "train";
    case PassKind::Other: return "other";
  }
  return "?";
}

}  // namespace mcompress
