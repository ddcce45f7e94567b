#pragma once
// Reading and writing the safetensors format (https://github.com/huggingface/safetensors):
// an 8-byte little-endian header length, a JSON header mapping each tensor
// name to {"dtype", "shape", "data_offsets": [begin, end]} (plus an optional
// "__metadata__" object of strings), padded with spaces to a multiple of 8
// bytes, then the raw little-endian tensor bytes in header order.
#include <torch/types.h>

#include <filesystem>
#include <iosfwd>
#include <map>
#include <string>
#include <string_view>
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
// The same bytes to a stream (no temporary file); throws mcompress::Error
// before writing anything when an entry cannot be written.
MCOMPRESS_SDK_API int64_t write_safetensors(std::ostream& out, const std::vector<SafetensorsEntry>& entries,
                                            const std::map<std::string, std::string>& metadata = {});

// What a safetensors file holds: entries in the order of their data in the
// file, each a CPU tensor that owns its memory, with the dtype name the file
// gave (unsigned dtypes LibTorch 1.13 lacks, "U16", "U32", "U64", become
// the signed dtype of the same size with the same bits).
struct SafetensorsContents {
  std::vector<SafetensorsEntry> entries;
  std::map<std::string, std::string> metadata;
};

// Parses a whole safetensors file already in memory. Anything malformed
// (header length or JSON, unknown dtype, shape and byte range that disagree,
// overlapping or out-of-bounds data, bytes no tensor claims, BOOL bytes other
// than 0 and 1) throws mcompress::Error saying what; memory is only
// allocated for tensors the bytes really hold.
MCOMPRESS_SDK_API SafetensorsContents parse_safetensors(std::string_view bytes);
// Reads and parses the file at `path`; errors name it.
MCOMPRESS_SDK_API SafetensorsContents read_safetensors(const std::filesystem::path& path);
// The same checks as read_safetensors, but the tensors are views of the file
// mapped into memory (a private mapping: pages are read on first touch and a
// write to a tensor copies its page, never changing the file). The mapping
// lives as long as any of its tensors. Entries are in header order of offsets.
MCOMPRESS_SDK_API SafetensorsContents map_safetensors(const std::filesystem::path& path);

// Drops the resident pages of `tensor` if it is a view of a mapping made by
// map_safetensors; they are read from the file again when touched. Does
// nothing for any other tensor. Changes written through the view are lost,
// so it is for readers that visit each tensor once (converters), keeping
// only what they work on in memory.
MCOMPRESS_SDK_API void release_mapped_pages(const torch::Tensor& tensor);

}  // namespace mcompress
