#include "mcompress/framework/fashion_mnist.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <memory>

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

// A gzip (or plain: zlib reads both) file opened for reading; errors name it.
class GzFile {
 public:
  explicit GzFile(std::filesystem::path path) : path_(std::move(path)) {
    file_ = gzopen(path_.c_str(), "rb");
    if (!file_) throw Error(fmt::format("cannot open Fashion-MNIST file {}", path_.string()));
  }
  ~GzFile() { gzclose(file_); }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;

  // Reads exactly `size` bytes; `what` says what they are in the error.
  void read(void* out, size_t size, const std::string& what) {
    auto* bytes = static_cast<unsigned char*>(out);
    size_t total = 0;
    while (total < size) {
      const unsigned chunk = static_cast<unsigned>(std::min<size_t>(size - total, 1u << 30));
      const int n = gzread(file_, bytes + total, chunk);
      if (n < 0) {
        int code = 0;
        throw Error(fmt::format("Fashion-MNIST file {} is corrupted ({}) while reading {}",
                                path_.string(), gzerror(file_, &code), what));
      }
      if (n == 0) {
        throw Error(fmt::format(
            "Fashion-MNIST file {} is truncated: {} needs {} bytes but only {} are there",
            path_.string(), what, size, total));
      }
      total += static_cast<size_t>(n);
    }
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
                              path_.string(), what, value, value, expected, expected));
    }
  }

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  gzFile file_ = nullptr;
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

// Far above Fashion-MNIST's 60000: a larger count means a corrupted header,
// and is refused before allocating memory for it.
constexpr uint32_t kMaxSamples = 1000000;

// The header's sample count; the first `wanted` (0: all) samples are read.
int64_t samples_to_read(const GzFile& file, uint32_t count, int64_t wanted) {
  if (count > kMaxSamples) {
    throw Error(fmt::format("Fashion-MNIST file {} is corrupted: its header claims {} samples",
                            file.path().string(), count));
  }
  return wanted > 0 ? std::min<int64_t>(count, wanted) : int64_t(count);
}

torch::Tensor read_images(const std::filesystem::path& path, int64_t wanted, uint32_t& count) {
  GzFile file(path);
  file.expect(file.read_big_endian("the magic number"), kImagesMagic, "the magic number");
  count = file.read_big_endian("the image count");
  file.expect(file.read_big_endian("the row count"), kSide, "the row count");
  file.expect(file.read_big_endian("the column count"), kSide, "the column count");
  const int64_t n = samples_to_read(file, count, wanted);
  auto pixels = torch::empty({n, 1, kSide, kSide}, torch::kUInt8);
  file.read(pixels.data_ptr(), size_t(pixels.numel()), fmt::format("the pixels of {} images", n));
  return pixels.to(torch::kFloat).div_(255.0).sub_(kPixelMean).div_(kPixelStd);
}

torch::Tensor read_labels(const std::filesystem::path& path, int64_t wanted, uint32_t& count) {
  GzFile file(path);
  file.expect(file.read_big_endian("the magic number"), kLabelsMagic, "the magic number");
  count = file.read_big_endian("the label count");
  const int64_t n = samples_to_read(file, count, wanted);
  auto labels = torch::empty({n}, torch::kUInt8);
  file.read(labels.data_ptr(), size_t(n), fmt::format("{} labels", n));
  if (n > 0 && labels.max().item<int64_t>() >= kClasses) {
    throw Error(fmt::format("Fashion-MNIST file {} is corrupted: it has label {}, but classes are 0-9",
                            path.string(), labels.max().item<int64_t>()));
  }
  return labels.to(torch::kLong);
}

}  // namespace

DatasetPtr load_fashion_mnist(const std::string& directory, Split split, int64_t limit) {
  const std::string prefix = split == Split::Train ? "train" : "t10k";
  const auto images_path = locate(directory, prefix + "-images-idx3-ubyte");
  const auto labels_path = locate(directory, prefix + "-labels-idx1-ubyte");
  uint32_t image_count = 0;
  uint32_t label_count = 0;
  auto data = std::make_shared<Dataset>();
  data->inputs = read_images(images_path, limit, image_count);
  data->targets = read_labels(labels_path, limit, label_count);
  if (image_count != label_count) {
    throw Error(fmt::format("Fashion-MNIST files disagree: {} holds {} images but {} holds {} labels",
                            images_path.string(), image_count, labels_path.string(), label_count));
  }
  data->name = "fashion_mnist/" + std::string(split == Split::Train ? "train" : "test");
  data->num_classes = kClasses;
  return data;
}

}  // namespace mcompress
