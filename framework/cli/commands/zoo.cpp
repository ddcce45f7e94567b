// `mcompress zoo`
#include "cli_support.h"
#include "commands/commands.h"

#include <fmt/format.h>

#include <iostream>

#include "mcompress/framework/sources/zoo.h"

namespace mcompress::cli {

int command_zoo() {
  for (const auto& m : mcompress::zoo_models()) {
    std::cout << fmt::format("{:<8} {} (options: {})\n", m.name, m.summary, fmt::join(m.options, ", "));
  }
  return kExitOk;
}

}  // namespace mcompress::cli
