#include "mcompress/formats/gguf_file.h"

#include <unistd.h>

#include <fmt/format.h>

#include <cstring>
#include <fstream>
#include <set>

#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

constexpr uint32_t kVersion = 3;
constexpr size_t kMaxTensorName = 64;  // ggml's GGML_MAX_NAME, including the terminating zero
constexpr size_t kMaxDims = 4;         // ggml's GGML_MAX_DIMS

template <typename T>
void put(std::string& out, T value) {
  // Little-endian hosts only (x86-64, AArch64): the bytes are the value's.
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "GGUF is written little-endian");
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

void put_string(std::string& out, const std::string& text) {
  put<uint64_t>(out, text.size());
  out += text;
}

int64_t padded(int64_t size) {
  const int64_t alignment = GgufWriter::kAlignment;
  return (size + alignment - 1) / alignment * alignment;
}

}  // namespace

const char* ggml_type_name(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return "F32";
    case GgmlType::F16: return "F16";
    case GgmlType::Q4_0: return "Q4_0";
    case GgmlType::Q8_0: return "Q8_0";
  }
  return "?";
}

int64_t ggml_block_values(GgmlType type) {
  return type == GgmlType::Q4_0 || type == GgmlType::Q8_0 ? 32 : 1;
}

int64_t ggml_block_bytes(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return 4;
    case GgmlType::F16: return 2;
    case GgmlType::Q4_0: return 2 + 16;
    case GgmlType::Q8_0: return 2 + 32;
  }
  return 0;
}

GgufValue GgufValue::uint32(uint32_t value) {
  GgufValue v;
  v.type = GgufValueType::UInt32;
  put(v.encoded, value);
  return v;
}

GgufValue GgufValue::int32(int32_t value) {
  GgufValue v;
  v.type = GgufValueType::Int32;
  put(v.encoded, value);
  return v;
}

GgufValue GgufValue::float32(float value) {
  GgufValue v;
  v.type = GgufValueType::Float32;
  put(v.encoded, value);
  return v;
}

GgufValue GgufValue::boolean(bool value) {
  GgufValue v;
  v.type = GgufValueType::Bool;
  put<uint8_t>(v.encoded, value ? 1 : 0);
  return v;
}

GgufValue GgufValue::string(const std::string& value) {
  GgufValue v;
  v.type = GgufValueType::String;
  put_string(v.encoded, value);
  return v;
}

GgufValue GgufValue::strings(const std::vector<std::string>& values) {
  GgufValue v;
  v.type = GgufValueType::Array;
  v.element_type = GgufValueType::String;
  put<uint32_t>(v.encoded, static_cast<uint32_t>(GgufValueType::String));
  put<uint64_t>(v.encoded, values.size());
  for (const auto& value : values) put_string(v.encoded, value);
  return v;
}

GgufValue GgufValue::int32s(const std::vector<int32_t>& values) {
  GgufValue v;
  v.type = GgufValueType::Array;
  v.element_type = GgufValueType::Int32;
  put<uint32_t>(v.encoded, static_cast<uint32_t>(GgufValueType::Int32));
  put<uint64_t>(v.encoded, values.size());
  for (int32_t value : values) put(v.encoded, value);
  return v;
}

GgufValue GgufValue::float32s(const std::vector<float>& values) {
  GgufValue v;
  v.type = GgufValueType::Array;
  v.element_type = GgufValueType::Float32;
  put<uint32_t>(v.encoded, static_cast<uint32_t>(GgufValueType::Float32));
  put<uint64_t>(v.encoded, values.size());
  for (float value : values) put(v.encoded, value);
  return v;
}

void GgufWriter::set(const std::string& key, GgufValue value) {
  for (const auto& [existing, ignored] : metadata_) {
    if (existing == key) throw Error(fmt::format("GGUF metadata key '{}' is set twice", key));
  }
  if (key == "general.alignment" &&
      (value.type != GgufValueType::UInt32 || value.encoded != GgufValue::uint32(kAlignment).encoded))
    throw Error(fmt::format("general.alignment must be the uint32 {} this writer pads to", kAlignment));
  metadata_.emplace_back(key, std::move(value));
}

void GgufWriter::add_tensor(const std::string& name, const std::vector<int64_t>& shape, GgmlType type,
                            TensorBytes bytes) {
  if (name.empty() || name.size() >= kMaxTensorName)
    throw Error(fmt::format("GGUF tensor name '{}' must have 1 to {} bytes", name, kMaxTensorName - 1));
  for (const auto& tensor : tensors_) {
    if (tensor.name == name) throw Error(fmt::format("GGUF tensor '{}' is added twice", name));
  }
  if (shape.empty() || shape.size() > kMaxDims)
    throw Error(fmt::format("GGUF tensor '{}' has {} dimensions; ggml takes 1 to {}", name, shape.size(), kMaxDims));
  int64_t elements = 1;
  for (int64_t size : shape) {
    if (size <= 0) throw Error(fmt::format("GGUF tensor '{}' has an empty dimension", name));
    elements *= size;
  }
  const int64_t row = shape.back();
  if (row % ggml_block_values(type) != 0)
    throw Error(fmt::format("GGUF tensor '{}': rows of {} values are not a whole number of {}-value {} blocks", name,
                            row, ggml_block_values(type), ggml_type_name(type)));
  const int64_t size = elements / ggml_block_values(type) * ggml_block_bytes(type);
  tensors_.push_back({name, shape, type, std::move(bytes), size});
}

int64_t GgufWriter::write(const std::filesystem::path& path) const {
  std::string header;
  header += "GGUF";
  put<uint32_t>(header, kVersion);
  put<int64_t>(header, tensor_count());
  put<int64_t>(header, metadata_count());
  for (const auto& [key, value] : metadata_) {
    put_string(header, key);
    put<uint32_t>(header, static_cast<uint32_t>(value.type));
    header += value.encoded;
  }
  int64_t offset = 0;
  for (const auto& tensor : tensors_) {
    put_string(header, tensor.name);
    put<uint32_t>(header, static_cast<uint32_t>(tensor.shape.size()));
    for (auto dim = tensor.shape.rbegin(); dim != tensor.shape.rend(); ++dim) put<int64_t>(header, *dim);
    put<uint32_t>(header, static_cast<uint32_t>(tensor.type));
    put<uint64_t>(header, static_cast<uint64_t>(offset));
    offset += padded(tensor.size);
  }
  header.resize(static_cast<size_t>(padded(static_cast<int64_t>(header.size()))), '\0');

  // A name unique to this process, so two writers of one file never share it.
  const auto temp = path.parent_path() / fmt::format("{}.tmp-{}", path.filename().string(), ::getpid());
  auto remove_temp = [&temp] {
    std::error_code ignored;
    std::filesystem::remove(temp, ignored);
  };
  int64_t written = 0;
  try {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out)
      throw Error(fmt::format("cannot create {}: {}; check that the folder exists and is writable", temp.string(),
                              std::strerror(errno)));
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    written += static_cast<int64_t>(header.size());
    for (const auto& tensor : tensors_) {
      std::string data = tensor.bytes();
      if (static_cast<int64_t>(data.size()) != tensor.size)
        throw Error(fmt::format("GGUF tensor '{}' produced {} bytes; its shape and type {} need {}", tensor.name,
                                data.size(), ggml_type_name(tensor.type), tensor.size));
      data.resize(static_cast<size_t>(padded(tensor.size)), '\0');
      out.write(data.data(), static_cast<std::streamsize>(data.size()));
      written += static_cast<int64_t>(data.size());
      if (!out) break;
    }
    out.flush();
    if (!out)
      throw Error(fmt::format("writing {} failed after {} bytes ({}); check free space", temp.string(), written,
                              std::strerror(errno)));
    out.close();
    std::filesystem::rename(temp, path);
  } catch (const std::filesystem::filesystem_error& e) {
    remove_temp();
    throw Error(fmt::format("cannot move {} to {}: {}", temp.string(), path.string(), e.code().message()));
  } catch (...) {
    remove_temp();
    throw;
  }
  return written;
}

}  // namespace mcompress
