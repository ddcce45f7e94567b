#pragma once
// Writing the GGUF container, version 3 (llama.cpp, ggml; the layout of
// ggml/src/gguf.cpp and gguf-py's writer), all little-endian:
//
//   "GGUF"  uint32 version = 3  int64 tensor count  int64 metadata count
//   metadata: string key, uint32 value type, value        (strings: uint64 length + UTF-8 bytes;
//                                                          arrays: uint32 element type, uint64 count, elements)
//   tensor infos: string name, uint32 dims, int64 ne[dims] (ggml order: the reverse of torch's shape),
//                 uint32 ggml type, uint64 offset from the start of the data section
//   zero padding to `general.alignment` (32)
//   data: each tensor's bytes, padded with zeros to the alignment
//
// llama.cpp checks the type of every metadata value it reads, so each value
// carries the type the reference converter (convert_hf_to_gguf.py) gives it.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "mcompress/sdk/export.h"

namespace mcompress {

// ggml tensor types mcompress writes (values of ggml's enum ggml_type).
enum class GgmlType : uint32_t { F32 = 0, F16 = 1, Q4_0 = 2, Q8_0 = 8 };

// "F32", "F16", "Q4_0", "Q8_0".
MCOMPRESS_SDK_API const char* ggml_type_name(GgmlType type);
// Values per block (1 for F32/F16, 32 for Q8_0/Q4_0) and bytes per block.
MCOMPRESS_SDK_API int64_t ggml_block_values(GgmlType type);
MCOMPRESS_SDK_API int64_t ggml_block_bytes(GgmlType type);

// Metadata value types (values of gguf's enum gguf_type).
enum class GgufValueType : uint32_t {
  UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6,
  Bool = 7, String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
};

// One metadata value, kept encoded as the file stores it (after the type tag).
struct MCOMPRESS_SDK_API GgufValue {
  GgufValueType type = GgufValueType::UInt32;
  GgufValueType element_type = GgufValueType::UInt32;  // arrays only
  std::string encoded;

  static GgufValue uint32(uint32_t value);
  static GgufValue int32(int32_t value);
  static GgufValue float32(float value);
  static GgufValue boolean(bool value);
  static GgufValue string(const std::string& value);
  static GgufValue strings(const std::vector<std::string>& values);
  static GgufValue int32s(const std::vector<int32_t>& values);
  static GgufValue float32s(const std::vector<float>& values);
};

// Collects metadata and tensors, then writes the file in one pass: tensor
// bytes are produced one tensor at a time while writing, so a model never
// needs to be in memory twice.
class MCOMPRESS_SDK_API GgufWriter {
 public:
  // Produces a tensor's bytes; their count must be the one its shape and type give.
  using TensorBytes = std::function<std::string()>;

  // Keys are unique; throws mcompress::Error for a repeated key.
  void set(const std::string& key, GgufValue value);
  // `shape` in torch order (rows first), at most 4 dimensions; the last
  // dimension (ggml's ne[0]) must be a multiple of the type's block. Names are
  // unique and shorter than 64 bytes (ggml's GGML_MAX_NAME). Throws
  // mcompress::Error naming the tensor otherwise.
  void add_tensor(const std::string& name, const std::vector<int64_t>& shape, GgmlType type, TensorBytes bytes);

  int64_t metadata_count() const { return static_cast<int64_t>(metadata_.size()); }
  int64_t tensor_count() const { return static_cast<int64_t>(tensors_.size()); }

  // Writes the file through a temporary file beside `path`, renamed into
  // place only when complete; on any failure the temporary file is removed
  // and `path` is left as it was. Returns the bytes written. Throws
  // mcompress::Error naming the file (or the tensor whose bytes failed).
  int64_t write(const std::filesystem::path& path) const;

  static constexpr uint32_t kAlignment = 32;

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> shape;
    GgmlType type;
    TensorBytes bytes;
    int64_t size = 0;  // bytes of data
  };
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Tensor> tensors_;
};

}  // namespace mcompress
