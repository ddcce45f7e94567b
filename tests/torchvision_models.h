#pragma once
// Real torchvision architectures (Debian's python3-torchvision, random
// weights, num_classes=10) scripted to TorchScript once per build tree: tests
// share the cached files, since scripting DenseNet or VGG takes seconds.
#include <filesystem>
#include <stdexcept>
#include <string>

#include "test_support.h"

namespace mcompress::testing {

inline std::filesystem::path scripted_torchvision_model(const std::string& name) {
  const std::filesystem::path dir = std::filesystem::path(MCOMPRESS_BINARY_DIR) / "test-models";
  const std::filesystem::path file = dir / ("torchvision-" + name + ".pt");
  if (std::filesystem::exists(file)) return file;
  std::filesystem::create_directories(dir);
  // A private partial file renamed at the end: parallel tests see complete files only.
  const std::filesystem::path partial = dir / ("torchvision-" + name + ".pt." + std::to_string(::getpid()));
  const auto result = run_command(
      std::string(MCOMPRESS_PYTHON) + " -c \"import torch, torchvision; torch.manual_seed(0); "
      "m = getattr(torchvision.models, '" + name + "')(num_classes=10).eval(); "
      "torch.jit.script(m).save(r'" + partial.string() + "')\"");
  if (result.exit_code != 0) throw std::runtime_error("cannot script " + name + ": " + result.output);
  std::filesystem::rename(partial, file);
  return file;
}

}  // namespace mcompress::testing
