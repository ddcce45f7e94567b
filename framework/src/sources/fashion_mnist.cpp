#include "mcompress/framework/sources/fashion_mnist.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

constexpr int64_t kSide = 28;
constexpr int64_t kClasses = 10;
constexpr uint32_t kImagesMagic = 0x00000803;  // IDX: unsigned bytes, 3 dimensions
constexpr uint32_t kLabelsMagic = 0x00000801;  // IDX: unsigned bytes, 1 dimension
// Mean and standard deviation of the 60000 training images' pixels scaled to
// [0,1] (0.28604, 0.35302). Constants, not recomputed per load, so the test
// split and `limit`ed loads are normalized exactly like the full training set.
constexpr double kPixelMean = 0.2860;
constexpr double kPixelStd = 0.3530;

// The decompressed bytes of one IDX file and the checks every read makes;
// where the bytes come from (a file, memory) is up to the subclass. Errors
// name the file.
class IdxInput {
 public:
  explicit IdxInput(std::string name) : name_(std::move(name)) {}
  virtual ~IdxInput() = default;
  IdxInput(const IdxInput&) = delete;
  IdxInput& operator=(const IdxInput&) = delete;

  // Reads exactly `size` bytes; `what` says what they are in the error.
  void read(void* out, size_t size, const std::string& what) {
    const size_t got = read_up_to(out, size, what);
    if (got < size) truncated(what, size, got);
  }

  // Reads `size` bytes or up to the end of the data; returns how many.
  size_t read_up_to(void* out, size_t size, const std::string& what) {
    auto* bytes = static_cast<unsigned char*>(out);
    size_t total = 0;
    while (total < size) {
      const size_t n = read_some(bytes + total, std::min<size_t>(size - total, 1u << 30), what);
      if (n == 0) break;
      total += n;
    }
    return total;
  }

  [[noreturn]] void truncated(const std::string& what, size_t needed, size_t present) const {
    throw Error(fmt::format("Fashion-MNIST file {} is truncated: {} needs {} bytes but only {} are there",
                            name_, what, needed, present));
  }

  uint32_t read_big_endian(const std::string& what) {
    std::array<unsigned char, 4> b{};
    read(b.data(), b.size(), what);
    return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | b[3];
  }

  void expect(uint32_t value, uint32_t expected, const std::string& what) {
    if (value != expected) {
      throw Error(fmt::format("Fashion-MNIST file {} is not what was expected: {} is {} ({:#010x}), "
                              "expected {} ({:#010x}); is it the right, uncorrupted file?",
                              name_, what, value, value, expected, expected));
    }
  }

  const std::string& name() const { return name_; }

 protected:
  // Up to `size` (> 0) bytes; 0 at the end of the data; throws on corrupted data.
  virtual size_t read_some(unsigned char* out, size_t size, const std::string& what) = 0;

  [[noreturn]] void corrupted(const std::string& why, const std::string& what) const {
    throw Error(fmt::format("Fashion-MNIST file {} is corrupted ({}) while reading {}", name_, why, what));
  }

 private:
  std::string name_;
};

// A gzip (or plain: zlib reads both) file.
class GzFileInput : public IdxInput {
 public:
  explicit GzFileInput(const std::filesystem::path& path) : IdxInput(path.string()) {
    file_ = gzopen(path.c_str(), "rb");
    if (!file_) throw Error(fmt::format("cannot open Fashion-MNIST file {}", path.string()));
  }
  ~GzFileInput() override { gzclose(file_); }

 protected:
  size_t read_some(unsigned char* out, size_t size, const std::string& what) override {
    const int n = gzread(file_, out, static_cast<unsigned>(size));
    if (n < 0) {
      int code = 0;
      corrupted(gzerror(file_, &code), what);
    }
    return static_cast<size_t>(n);
  }

 private:
  gzFile file_ = nullptr;
};

// Bytes in memory: gzip members (inflated as they are read) when they start
// with the gzip magic, plain bytes otherwise, as gzread treats files.
class MemoryInput : public IdxInput {
 public:
  MemoryInput(std::string_view bytes, std::string name) : IdxInput(std::move(name)), bytes_(bytes) {
    gzipped_ = bytes.size() >= 2 && uint8_t(bytes[0]) == 0x1f && uint8_t(bytes[1]) == 0x8b;
    if (!gzipped_) return;
    // 16 + MAX_WBITS: a gzip header and trailer around the deflate stream.
    if (inflateInit2(&stream_, 16 + MAX_WBITS) != Z_OK) throw Error("zlib cannot start inflating");
    stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
    stream_.avail_in = static_cast<uInt>(std::min<size_t>(bytes.size(), kMaxChunk));
    consumed_ = stream_.avail_in;
  }
  ~MemoryInput() override {
    if (gzipped_) inflateEnd(&stream_);
  }

 protected:
  size_t read_some(unsigned char* out, size_t size, const std::string& what) override {
    if (!gzipped_) {
      const size_t n = std::min(size, bytes_.size() - position_);
      std::copy_n(bytes_.data() + position_, n, out);
      position_ += n;
      return n;
    }
    stream_.next_out = out;
    stream_.avail_out = static_cast<uInt>(std::min<size_t>(size, kMaxChunk));
    while (stream_.avail_out > 0 && !finished_) {
      if (stream_.avail_in == 0 && consumed_ < bytes_.size()) feed();
      const uInt before = stream_.avail_out;
      const int status = inflate(&stream_, Z_NO_FLUSH);
      if (status == Z_STREAM_END) {
        next_member();
      } else if (status == Z_DATA_ERROR || status == Z_NEED_DICT) {
        corrupted(stream_.msg ? stream_.msg : "invalid deflate data", what);
      } else if (status == Z_MEM_ERROR) {
        corrupted("out of memory", what);
      } else if (stream_.avail_out == before && stream_.avail_in == 0 && consumed_ == bytes_.size()) {
        finished_ = true;  // the stream stops mid-member: read() reports the truncation
      }
    }
    return static_cast<size_t>(stream_.next_out - out);
  }

 private:
  // zlib counts in 32-bit units.
  static constexpr size_t kMaxChunk = 1u << 30;

  void feed() {
    const size_t n = std::min(bytes_.size() - consumed_, kMaxChunk);
    stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes_.data() + consumed_));
    stream_.avail_in = static_cast<uInt>(n);
    consumed_ += n;
  }

  // After a member, another may follow (as `cat a.gz b.gz`); anything else
  // after the last member is ignored, as gzread does.
  void next_member() {
    if (stream_.avail_in == 0 && consumed_ < bytes_.size()) feed();
    const bool another = stream_.avail_in >= 2 && stream_.next_in[0] == 0x1f && stream_.next_in[1] == 0x8b;
    if (!another || inflateReset(&stream_) != Z_OK) finished_ = true;
  }

  std::string_view bytes_;
  bool gzipped_ = false;
  size_t position_ = 0;  // plain bytes
  z_stream stream_{};    // gzipped bytes
  size_t consumed_ = 0;  // bytes handed to zlib so far
  bool finished_ = false;
};

// The file for `stem`: the .gz of the Debian package, or an unpacked copy.
std::filesystem::path locate(const std::filesystem::path& directory, const std::string& stem) {
  const auto gz = directory / (stem + ".gz");
  if (std::filesystem::exists(gz)) return gz;
  if (std::filesystem::exists(directory / stem)) return directory / stem;
  throw Error(fmt::format(
      "Fashion-MNIST file {} not found. Install the Debian package: apt-get install "
      "dataset-fashion-mnist (it puts the data in /usr/share/datasets/fashion-mnist), or set "
      "data.path to the directory that holds {}.gz",
      gz.string(), stem));
}

// Far above Fashion-MNIST's 60000: a larger count means a corrupted header.
constexpr uint32_t kMaxSamples = 1000000;

// The header's sample count; the first `wanted` (0: all) samples are read.
int64_t samples_to_read(const IdxInput& input, uint32_t count, int64_t wanted) {
  if (count > kMaxSamples) {
    throw Error(fmt::format("Fashion-MNIST file {} is corrupted: its header claims {} samples",
                            input.name(), count));
  }
  return wanted > 0 ? std::min<int64_t>(count, wanted) : int64_t(count);
}

// `samples` records of `record_bytes` each. The buffer grows as data arrives,
// so a header that claims more than the file holds costs no memory.
torch::Tensor read_records(IdxInput& input, int64_t samples, int64_t record_bytes, const std::string& what) {
  constexpr int64_t kChunkBytes = int64_t(1) << 20;
  const int64_t total = samples * record_bytes;
  std::vector<uint8_t> bytes;
  while (int64_t(bytes.size()) < total) {
    const int64_t done = int64_t(bytes.size());
    const int64_t chunk = std::min(kChunkBytes, total - done);
    bytes.resize(size_t(done + chunk));
    const size_t got = input.read_up_to(bytes.data() + done, size_t(chunk), what);
    if (got < size_t(chunk)) input.truncated(what, size_t(total), size_t(done) + got);
  }
  if (bytes.empty()) return torch::empty({0}, torch::kUInt8);
  return torch::from_blob(bytes.data(), {int64_t(bytes.size())}, torch::kUInt8).clone();
}

IdxSamples read_images(IdxInput& input, int64_t wanted) {
  input.expect(input.read_big_endian("the magic number"), kImagesMagic, "the magic number");
  IdxSamples images;
  images.count = input.read_big_endian("the image count");
  input.expect(input.read_big_endian("the row count"), kSide, "the row count");
  input.expect(input.read_big_endian("the column count"), kSide, "the column count");
  const int64_t n = samples_to_read(input, images.count, wanted);
  auto pixels = read_records(input, n, kSide * kSide, fmt::format("the pixels of {} images", n));
  images.values = pixels.view({n, 1, kSide, kSide}).to(torch::kFloat).div_(255.0).sub_(kPixelMean).div_(kPixelStd);
  return images;
}

IdxSamples read_labels(IdxInput& input, int64_t wanted) {
  input.expect(input.read_big_endian("the magic number"), kLabelsMagic, "the magic number");
  IdxSamples labels;
  labels.count = input.read_big_endian("the label count");
  const int64_t n = samples_to_read(input, labels.count, wanted);
  auto values = read_records(input, n, 1, fmt::format("{} labels", n));
  if (n > 0 && values.max().item<int64_t>() >= kClasses) {
    throw Error(fmt::format("Fashion-MNIST file {} is corrupted: it has label {}, but classes are 0-9",
                            input.name(), values.max().item<int64_t>()));
  }
  labels.values = values.to(torch::kLong);
  return labels;
}

}  // namespace

IdxSamples read_fashion_mnist_images(std::string_view bytes, const std::string& name, int64_t limit) {
  MemoryInput input(bytes, name);
  return read_images(input, limit);
}

IdxSamples read_fashion_mnist_labels(std::string_view bytes, const std::string& name, int64_t limit) {
  MemoryInput input(bytes, name);
  return read_labels(input, limit);
}

DatasetPtr load_fashion_mnist(const std::string& directory, Split split, int64_t limit) {
  const std::string prefix = split == Split::Train ? "train" : "t10k";
  const auto images_path = locate(directory, prefix + "-images-idx3-ubyte");
  const auto labels_path = locate(directory, prefix + "-labels-idx1-ubyte");
  GzFileInput images_file(images_path);
  const IdxSamples images = read_images(images_file, limit);
  GzFileInput labels_file(labels_path);
  const IdxSamples labels = read_labels(labels_file, limit);
  if (images.count != labels.count) {
    throw Error(fmt::format("Fashion-MNIST files disagree: {} holds {} images but {} holds {} labels",
                            images_path.string(), images.count, labels_path.string(), labels.count));
  }
  auto data = std::make_shared<Dataset>();
  data->inputs = images.values;
  data->targets = labels.values;
  data->name = "fashion_mnist/" + std::string(split == Split::Train ? "train" : "test");
  data->num_classes = kClasses;
  return data;
}

}  // namespace mcompress
