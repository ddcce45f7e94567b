// `mcompress version`
#include <torch/version.h>

#include <fmt/format.h>

#include <iostream>

#include "cli_support.h"
#include "commands/commands.h"
#include "mcompress/sdk/version.h"

namespace mcompress::cli {

int command_version() {
  std::cout << fmt::format("mcompress {} (plugin SDK {}.{}, LibTorch {}, {})\n", MCOMPRESS_VERSION,
                           MCOMPRESS_SDK_VERSION_MAJOR, MCOMPRESS_SDK_VERSION_MINOR, TORCH_VERSION,
                           MCOMPRESS_CXX_ABI_TAG);
  return kExitOk;
}

}  // namespace mcompress::cli
