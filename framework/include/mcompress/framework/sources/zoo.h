#pragma once
// Built-in models written as TorchScript in C++ (Module::define): image
// classifiers for 28x28 grayscale input and 10 classes by default, and a
// character-level language model whose classes are its vocabulary.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "mcompress/sdk/export.h"

namespace torch::jit {
struct Module;
}

namespace mcompress {

struct ZooModelInfo {
  std::string name;
  std::string summary;
  std::vector<std::string> options;  // accepted integer size options, e.g. "width"
  bool takes_tokens = false;  // true: token ids [N, T] in, logits [N, T, classes] out
};

MCOMPRESS_SDK_API std::vector<ZooModelInfo> zoo_models();

// `options` with every option `name` accepts filled in with its default.
// Unknown names or options throw mcompress::Error listing what exists.
MCOMPRESS_SDK_API std::map<std::string, int64_t> resolved_zoo_options(const std::string& name,
                                                    const std::map<std::string, int64_t>& options);

// Builds `name` with fresh weights drawn from `seed`. Unknown names or options
// throw mcompress::Error listing what exists.
MCOMPRESS_SDK_API torch::jit::Module build_zoo_model(const std::string& name,
                                   const std::map<std::string, int64_t>& options,
                                   int64_t num_classes, uint64_t seed);

}  // namespace mcompress
