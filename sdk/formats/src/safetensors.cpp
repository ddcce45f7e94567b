#include "mcompress/formats/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

constexpr const char* kMetadataKey = "__metadata__";
// The reference implementation's limit: a larger header is not a model file.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// LibTorch's kernels handle at most a few dozen dimensions.
constexpr size_t kMaxDimensions = 64;

struct DtypeInfo {
  int64_t bytes;
  c10::ScalarType type;  // what LibTorch holds it as (same size, same bits)
};

const DtypeInfo* find_dtype(const std::string& dtype) {
  static const std::map<std::string, DtypeInfo> dtypes = {
      {"BOOL", {1, c10::kBool}},   {"U8", {1, c10::kByte}},      {"I8", {1, c10::kChar}},
      {"I16", {2, c10::kShort}},   {"U16", {2, c10::kShort}},    {"F16", {2, c10::kHalf}},
      {"BF16", {2, c10::kBFloat16}}, {"I32", {4, c10::kInt}},    {"U32", {4, c10::kInt}},
      {"F32", {4, c10::kFloat}},   {"I64", {8, c10::kLong}},     {"U64", {8, c10::kLong}},
      {"F64", {8, c10::kDouble}}};
  auto it = dtypes.find(dtype);
  return it == dtypes.end() ? nullptr : &it->second;
}

int64_t element_bytes(const std::string& dtype) {
  const DtypeInfo* info = find_dtype(dtype);
  if (!info) throw Error(fmt::format("safetensors: unknown dtype {}", dtype));
  return info->bytes;
}

// One tensor of a parsed header, before its bytes are copied out.
struct TensorRecord {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

uint64_t header_integer(const nlohmann::json& value, const std::string& what, const std::string& name) {
  if (!value.is_number_unsigned() || value.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
    throw Error(fmt::format("safetensors: {} of tensor `{}` must be non-negative integers", what, name));
  return value.get<uint64_t>();
}

TensorRecord read_record(const std::string& name, const nlohmann::json& info, uint64_t data_bytes) {
  if (!info.is_object()) throw Error(fmt::format("safetensors: the header entry of `{}` is not an object", name));
  TensorRecord record;
  record.name = name;
  const auto dtype = info.find("dtype");
  const auto shape = info.find("shape");
  const auto offsets = info.find("data_offsets");
  if (dtype == info.end() || shape == info.end() || offsets == info.end())
    throw Error(fmt::format("safetensors: tensor `{}` needs `dtype`, `shape` and `data_offsets`", name));
  if (!dtype->is_string()) throw Error(fmt::format("safetensors: the dtype of `{}` is not a string", name));
  record.dtype = dtype->get<std::string>();
  const DtypeInfo* type = find_dtype(record.dtype);
  if (!type)
    throw Error(fmt::format("safetensors: tensor `{}` has unknown or unsupported dtype `{}` (mcompress reads BOOL, "
                            "U8, I8, I16, U16, F16, BF16, I32, U32, F32, I64, U64, F64: convert the tensor to one "
                            "of them)",
                            name, record.dtype));

  if (!shape->is_array() || shape->size() > kMaxDimensions)
    throw Error(fmt::format("safetensors: the shape of `{}` must be a list of at most {} sizes", name, kMaxDimensions));
  // Products bounded even with zero-sized dimensions left out, so LibTorch's
  // strides cannot overflow either.
  uint64_t elements = 1;
  uint64_t strides = 1;
  for (const auto& size : *shape) {
    const uint64_t n = header_integer(size, "the shape", name);
    record.shape.push_back(int64_t(n));
    const uint64_t limit = uint64_t(std::numeric_limits<int64_t>::max());
    const uint64_t factor = std::max<uint64_t>(n, 1);
    if (strides > limit / factor) throw Error(fmt::format("safetensors: the shape of `{}` is too large", name));
    strides *= factor;
    elements *= n;
  }
  if (!offsets->is_array() || offsets->size() != 2)
    throw Error(fmt::format("safetensors: the data_offsets of `{}` must be [begin, end]", name));
  record.begin = header_integer((*offsets)[0], "the data_offsets", name);
  record.end = header_integer((*offsets)[1], "the data_offsets", name);
  if (record.begin > record.end)
    throw Error(fmt::format("safetensors: tensor `{}` claims bytes [{}, {}), which end before they begin", name,
                            record.begin, record.end));
  if (record.end > data_bytes)
    throw Error(fmt::format("safetensors: tensor `{}` claims bytes [{}, {}) of a data section of {} bytes: the file "
                            "is truncated (copy or download it again) or its header is wrong",
                            name, record.begin, record.end, data_bytes));
  const uint64_t expected = elements > data_bytes ? data_bytes + 1 : elements * uint64_t(type->bytes);
  if (record.end - record.begin != expected)
    throw Error(fmt::format("safetensors: tensor `{}` ({} of shape [{}]) needs {} bytes but its data_offsets "
                            "give {}",
                            name, record.dtype, fmt::join(record.shape, ", "),
                            elements > data_bytes ? std::string("more") : std::to_string(expected),
                            record.end - record.begin));
  return record;
}

std::map<std::string, std::string> read_metadata(const nlohmann::json& value) {
  if (!value.is_object()) throw Error("safetensors: `__metadata__` must be an object of strings");
  std::map<std::string, std::string> metadata;
  for (const auto& [key, text] : value.items()) {
    if (!text.is_string()) throw Error(fmt::format("safetensors: metadata `{}` is not a string", key));
    metadata[key] = text.get<std::string>();
  }
  return metadata;
}

// A header checked against the bytes it describes: the one validation both
// parse_safetensors (copies) and map_safetensors (views) rely on.
struct SafetensorsLayout {
  std::map<std::string, std::string> metadata;
  std::vector<TensorRecord> records;  // in the order of their data
  uint64_t data_start = 0;            // where the data section begins in the file
};

SafetensorsLayout parse_layout(std::string_view bytes) {
  if (bytes.size() < 8) throw Error(fmt::format("safetensors: {} bytes are too few for the 8-byte header length", bytes.size()));
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | uint8_t(bytes[size_t(i)]);
  if (header_bytes > kMaxHeaderBytes || header_bytes > bytes.size() - 8)
    throw Error(fmt::format("safetensors: the header length {} does not fit the file's {} bytes (a truncated file "
                            "or not safetensors)",
                            header_bytes, bytes.size()));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.substr(8, header_bytes));
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("safetensors: the header is not valid JSON ({})", e.what()));
  }
  if (!header.is_object()) throw Error("safetensors: the header is not a JSON object");
  const std::string_view data = bytes.substr(8 + header_bytes);

  SafetensorsLayout layout;
  layout.data_start = 8 + header_bytes;
  auto& records = layout.records;
  for (const auto& [name, info] : header.items()) {
    if (name == kMetadataKey) {
      layout.metadata = read_metadata(info);
    } else {
      records.push_back(read_record(name, info, data.size()));
    }
  }
  // The data section is the tensors' bytes back to back: no overlap, no gap.
  std::sort(records.begin(), records.end(), [](const TensorRecord& a, const TensorRecord& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t covered = 0;
  for (const auto& record : records) {
    if (record.begin != covered)
      throw Error(fmt::format("safetensors: tensor `{}` starts at byte {} of the data, but the tensors before it "
                              "end at {} (overlapping data or a gap)",
                              record.name, record.begin, covered));
    covered = record.end;
  }
  if (covered != data.size())
    throw Error(fmt::format("safetensors: the tensors hold {} bytes but the data section has {}", covered, data.size()));

  for (const auto& record : records) {
    const auto bytes_of = data.substr(record.begin, record.end - record.begin);
    if (record.dtype == "BOOL" &&
        std::any_of(bytes_of.begin(), bytes_of.end(), [](char c) { return uint8_t(c) > 1; }))
      throw Error(fmt::format("safetensors: BOOL tensor `{}` holds bytes other than 0 and 1", record.name));
  }
  return layout;
}

// A tensor that owns a copy of its bytes.
torch::Tensor copied_tensor(const TensorRecord& record, const char* bytes) {
  auto tensor = torch::empty(record.shape, torch::TensorOptions().dtype(find_dtype(record.dtype)->type));
  if (record.end > record.begin) std::memcpy(tensor.data_ptr(), bytes, record.end - record.begin);
  return tensor;
}

// A whole file mapped privately: readable and writable, a write copying the
// page instead of reaching the file.
// The address ranges of the live mappings, so release_mapped_pages can tell
// a view of a mapping from a tensor that owns heap memory.
std::mutex mapped_ranges_mutex;
std::map<uintptr_t, uintptr_t> mapped_ranges;  // begin -> end

class FileMapping {
 public:
  explicit FileMapping(const std::filesystem::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(fmt::format("cannot open safetensors file {}: {}", path.string(), std::strerror(errno)));
    struct stat status {};
    const bool stated = ::fstat(fd, &status) == 0;
    const int error = errno;
    if (!stated || !S_ISREG(status.st_mode)) {
      ::close(fd);
      throw Error(fmt::format("cannot map {}: {}", path.string(), stated ? "not a regular file" : std::strerror(error)));
    }
    size_ = size_t(status.st_size);
    // mmap refuses an empty range; an empty file is then just zero bytes to parse.
    if (size_ > 0) {
      void* address = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
      if (address == MAP_FAILED) {
        const int map_error = errno;
        ::close(fd);
        throw Error(fmt::format("cannot map {} ({} bytes) into memory: {}", path.string(), size_,
                                std::strerror(map_error)));
      }
      data_ = static_cast<char*>(address);
      std::lock_guard<std::mutex> lock(mapped_ranges_mutex);
      mapped_ranges[uintptr_t(data_)] = uintptr_t(data_) + size_;
    }
    ::close(fd);  // the mapping keeps the file alive
  }
  ~FileMapping() {
    if (!data_) return;
    {
      std::lock_guard<std::mutex> lock(mapped_ranges_mutex);
      mapped_ranges.erase(uintptr_t(data_));
    }
    ::munmap(data_, size_);
  }
  FileMapping(const FileMapping&) = delete;
  FileMapping& operator=(const FileMapping&) = delete;

  char* data() const { return data_; }
  std::string_view bytes() const { return {data_, size_}; }

 private:
  char* data_ = nullptr;
  size_t size_ = 0;
};

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

int64_t write_safetensors(std::ostream& out, const std::vector<SafetensorsEntry>& entries,
                          const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  std::vector<torch::Tensor> data;
  std::set<std::string> names;
  int64_t offset = 0;
  for (const auto& entry : entries) {
    if (entry.name == kMetadataKey)
      throw Error(fmt::format("safetensors: a tensor cannot be called `{}`; the format keeps that key for metadata",
                              kMetadataKey));
    if (!names.insert(entry.name).second) {
      throw Error(fmt::format("safetensors: tensor name `{}` appears twice", entry.name));
    }
    if (!entry.tensor.defined()) throw Error(fmt::format("safetensors: `{}` has no tensor", entry.name));
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
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception&) {
    throw Error("safetensors: tensor names and metadata must be valid UTF-8");
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  const uint64_t length = text.size();
  unsigned char length_bytes[8];
  for (int i = 0; i < 8; ++i) length_bytes[i] = static_cast<unsigned char>(length >> (8 * i));
  out.write(reinterpret_cast<const char*>(length_bytes), 8);
  out.write(text.data(), std::streamsize(text.size()));
  for (const auto& tensor : data) {
    out.write(static_cast<const char*>(tensor.data_ptr()), std::streamsize(tensor.numel() * tensor.element_size()));
  }
  return int64_t(8 + text.size()) + offset;
}

int64_t write_safetensors(const std::filesystem::path& path, const std::vector<SafetensorsEntry>& entries,
                          const std::map<std::string, std::string>& metadata) {
  const auto temp = path.parent_path() / (path.filename().string() + ".tmp");
  int64_t written = 0;
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(fmt::format("cannot write {}", temp.string()));
    try {
      written = write_safetensors(out, entries, metadata);
    } catch (...) {
      out.close();
      std::error_code ignored;
      std::filesystem::remove(temp, ignored);
      throw;
    }
    out.flush();
    if (!out) throw Error(fmt::format("writing {} failed", temp.string()));
  }
  std::filesystem::rename(temp, path);
  return written;
}

SafetensorsContents parse_safetensors(std::string_view bytes) {
  SafetensorsLayout layout = parse_layout(bytes);
  SafetensorsContents contents;
  contents.metadata = std::move(layout.metadata);
  for (const auto& record : layout.records) {
    contents.entries.push_back(
        {record.name, copied_tensor(record, bytes.data() + layout.data_start + record.begin), record.dtype});
  }
  return contents;
}

SafetensorsContents read_safetensors(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot read safetensors file {}", path.string()));
  std::stringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) throw Error(fmt::format("cannot read safetensors file {}", path.string()));
  try {
    return parse_safetensors(bytes.str());
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", path.string(), e.what()));
  }
}

SafetensorsContents map_safetensors(const std::filesystem::path& path) {
  const auto mapping = std::make_shared<FileMapping>(path);
  try {
    SafetensorsLayout layout = parse_layout(mapping->bytes());
    SafetensorsContents contents;
    contents.metadata = std::move(layout.metadata);
    for (const auto& record : layout.records) {
      char* bytes = mapping->data() + layout.data_start + record.begin;
      const auto& type = *find_dtype(record.dtype);
      // The format does not align data to the element size (only writers pad
      // the header to 8 bytes), and kernels may assume aligned elements: such
      // a tensor gets its own copy, as does an empty one (no bytes to share).
      const bool aligned = reinterpret_cast<uintptr_t>(bytes) % uintptr_t(type.bytes) == 0;
      torch::Tensor tensor;
      if (!aligned || record.end == record.begin) {
        tensor = copied_tensor(record, bytes);
      } else {
        // Every tensor holds the mapping; the last one to go unmaps it.
        tensor = torch::from_blob(
            bytes, record.shape, [mapping](void*) {}, torch::TensorOptions().dtype(type.type));
      }
      contents.entries.push_back({record.name, tensor, record.dtype});
    }
    return contents;
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", path.string(), e.what()));
  }
}

void release_mapped_pages(const torch::Tensor& tensor) {
  if (!tensor.defined() || tensor.numel() == 0) return;
  const auto begin = uintptr_t(tensor.data_ptr());
  const auto end = begin + uintptr_t(tensor.numel()) * uintptr_t(tensor.element_size());
  std::lock_guard<std::mutex> lock(mapped_ranges_mutex);
  auto it = mapped_ranges.upper_bound(begin);
  if (it == mapped_ranges.begin()) return;
  --it;
  if (end > it->second) return;  // not inside one mapping: memory of its own
  // Whole pages only, within the mapping (which starts on a page boundary).
  const auto page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const auto first = std::max(begin & ~(page - 1), it->first);
  const auto last = std::min((end + page - 1) & ~(page - 1), it->second);
  ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

}  // namespace mcompress
