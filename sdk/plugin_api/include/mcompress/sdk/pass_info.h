#pragma once
// How a pass declares itself. Torch-free: the recipe validator, `mcompress
// plugins` and `mcompress explain` read only this.
#include <string>
#include <vector>

#include "mcompress/sdk/export.h"
#include "mcompress/sdk/params.h"

namespace mcompress {

enum class PassKind { Prune, Distill, Quantize, Train, Other };
MCOMPRESS_SDK_API const char* to_string(PassKind kind);

// Inputs a pass cannot run without; the validator reports a recipe that does
// not provide them before anything runs.
// PassNeeds, PassInfo (and ParamSpec, params.h): layouts frozen for SDK 1.x
// (version.h); a plugin fills them and the host reads them.
struct PassNeeds {
  bool train_data = false;
  bool calibration_data = false;
  bool teacher = false;
};

struct PassInfo {
  std::string name;     // unique across all loaded plugins, e.g. "magnitude_prune"
  std::string summary;  // one line
  PassKind kind = PassKind::Other;
  PassNeeds needs;
  std::vector<ParamSpec> params;
};
static_assert(sizeof(PassNeeds) == 3, "PassNeeds's layout is frozen for SDK 1.x");
static_assert(sizeof(PassInfo) == 96, "PassInfo's layout is frozen for SDK 1.x");

}  // namespace mcompress
