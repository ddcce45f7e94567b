#pragma once
// Real torchvision architectures (Debian's python3-torchvision, random
// weights, num_classes=10) scripted to TorchScript once per build tree: tests
// share the cached files, since scripting DenseNet or VGG takes seconds.
#include <filesystem>
#include <stdexcept>
#include <string>

#include "test_support.h"

namespace mcompress::testing {

// With `batch_statistics`, BatchNorm holds the statistics of the model's own
// activations on one random batch (64x64), so every layer sees values of
// order one as in a trained model; torchvision's initial statistics shrink
// some outputs (MobileNetV2's to about 1e-10).
inline std::filesystem::path scripted_torchvision_model(const std::string& name, bool batch_statistics = false) {
  const std::filesystem::path dir = std::filesystem::path(MCOMPRESS_BINARY_DIR) / "test-models";
  const std::string stem = "torchvision-" + name + (batch_statistics ? "-batch-statistics" : "");
  const std::filesystem::path file = dir / (stem + ".pt");
  if (std::filesystem::exists(file)) return file;
  std::filesystem::create_directories(dir);
  // A private partial file renamed at the end: parallel tests see complete files only.
  const std::filesystem::path partial = dir / (stem + ".pt." + std::to_string(::getpid()));
  const std::string statistics =
      batch_statistics ? "[setattr(b, 'momentum', None) for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]; "
                         "m.train(); torch.no_grad()(m)(torch.randn(8, 3, 64, 64)); "
                       : "";
  const auto result = run_command(
      std::string(MCOMPRESS_PYTHON) + " -c \"import torch, torchvision; torch.manual_seed(0); "
      "m = getattr(torchvision.models, '" + name + "')(num_classes=10); " + statistics + "m.eval(); "
      "torch.jit.script(m).save(r'" + partial.string() + "')\"");
  if (result.exit_code != 0) throw std::runtime_error("cannot script " + name + ": " + result.output);
  std::filesystem::rename(partial, file);
  return file;
}

}  // namespace mcompress::testing
