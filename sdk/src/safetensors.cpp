#include "mcompress/sdk/safetensors.h"

#include <fstream>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

int64_t element_bytes(const std::string& dtype) {
  static const std::map<std::string, int64_t> sizes = {
      {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2}, {"BF16", 2},
      {"I32", 4},  {"U32", 4}, {"F32", 4}, {"I64", 8}, {"U64", 8}, {"F64", 8}};
  auto it = sizes.find(dtype);
  if (it == sizes.end()) throw Error(fmt::format("safetensors: unknown dtype {}", dtype));
  return it->second;
}

}  // namespace

std::string safetensors_dtype(c10::ScalarType type) {
  switch (type) {
    case c10::kBool: return "BOOL";
    case c10::kByte: return "U8";
    case c10::kChar: return "I8";
    case c10::kShort: return "I16";
    case c10::kInt: return "I32";
    case c10::kLong: return "I64";
    case c10::kHalf: return "F16";
    case c10::kBFloat16: return "BF16";
    case c10::kFloat: return "F32";
    case c10::kDouble: return "F64";
    default: break;
  }
  throw Error(fmt::format("safetensors has no dtype for {}", c10::toString(type)));
}

int64_t write_safetensors(const std::filesystem::path& path, const std::vector<SafetensorsEntry>& entries,
                          const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  std::set<std::string> names;
  int64_t offset = 0;
  for (const auto& entry : entries) {
    if (!names.insert(entry.name).second) {
      throw Error(fmt::format("safetensors: tensor name `{}` appears twice", entry.name));
    }
    const std::string dtype = entry.dtype.empty() ? safetensors_dtype(entry.tensor.scalar_type()) : entry.dtype;
    if (element_bytes(dtype) != int64_t(entry.tensor.element_size())) {
      throw Error(fmt::format("safetensors: `{}` is {} but its tensor has {}-byte elements", entry.name,
                              dtype, entry.tensor.element_size()));
    }
    const auto tensor = entry.tensor.detach().to(torch::kCPU).contiguous();
    const int64_t bytes = tensor.numel() * int64_t(tensor.element_size());
    header[entry.name] = {{"dtype", dtype},
                          {"shape", tensor.sizes().vec()},
                          {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(tensor);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  const auto temp = path.parent_path() / (path.filename().string() + ".tmp");
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(fmt::format("cannot write {}", temp.string()));
    const uint64_t length = text.size();
    unsigned char length_bytes[8];
    for (int i = 0; i < 8; ++i) length_bytes[i] = static_cast<unsigned char>(length >> (8 * i));
    out.write(reinterpret_cast<const char*>(length_bytes), 8);
    out.write(text.data(), std::streamsize(text.size()));
    for (const auto& tensor : data) {
      out.write(static_cast<const char*>(tensor.data_ptr()),
                std::streamsize(tensor.numel() * tensor.element_size()));
    }
    out.flush();
    if (!out) throw Error(fmt::format("writing {} failed", temp.string()));
  }
  std::filesystem::rename(temp, path);
  return int64_t(8 + text.size()) + offset;
}

}  // namespace mcompress
