#pragma once
// Writing the safetensors format (https://github.com/huggingface/safetensors):
// an 8-byte little-endian header length, a JSON header mapping each tensor
// name to {"dtype", "shape", "data_offsets": [begin, end]} (plus an optional
// "__metadata__" object of strings), padded with spaces to a multiple of 8
// bytes, then the raw little-endian tensor bytes in header order.
#include <torch/types.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "mcompress/sdk/export.h"

namespace mcompress {

struct SafetensorsEntry {
  std::string name;
  torch::Tensor tensor;  // CPU; written in row-major order
  // safetensors dtype ("F32", "F16", "BF16", "U32", "I64", ...); empty: from
  // the tensor's dtype. "U32" accepts an int32 tensor (LibTorch 1.13 has no
  // uint32; the bits are the same).
  std::string dtype;
};

// The safetensors dtype name of a LibTorch dtype; throws mcompress::Error for
// dtypes the format has no name for.
MCOMPRESS_SDK_API std::string safetensors_dtype(c10::ScalarType type);

// Writes `entries` (names unique) to `path` through a temporary file in the
// same directory, so a failure never leaves a partial file. Returns the bytes
// written.
MCOMPRESS_SDK_API int64_t write_safetensors(const std::filesystem::path& path,
                                            const std::vector<SafetensorsEntry>& entries,
                                            const std::map<std::string, std::string>& metadata = {});

}  // namespace mcompress
