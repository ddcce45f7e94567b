// Fashion-MNIST loading from the real Debian package data, and the errors a
// user sees for a missing or damaged file.
#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "mcompress/framework/sources/fashion_mnist.h"
#include "mcompress/sdk/error.h"
#include "test_support.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;
const std::string kDataDir = MCOMPRESS_FASHION_MNIST_DIR;

// Both real splits, loaded once for the whole suite (decompressing takes ~1 s).
class RealFashionMnist : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    train_ = load_fashion_mnist(kDataDir, Split::Train);
    test_ = load_fashion_mnist(kDataDir, Split::Test);
  }
  static void TearDownTestSuite() {
    train_.reset();
    test_.reset();
  }
  static DatasetPtr train_, test_;
};
DatasetPtr RealFashionMnist::train_;
DatasetPtr RealFashionMnist::test_;

TEST_F(RealFashionMnist, HasTheOfficialSizesAndShapes) {
  EXPECT_EQ(train_->size(), 60000);
  EXPECT_EQ(test_->size(), 10000);
  EXPECT_EQ(train_->inputs.sizes(), (std::vector<int64_t>{60000, 1, 28, 28}));
  EXPECT_EQ(train_->inputs.scalar_type(), torch::kFloat);
  EXPECT_EQ(train_->targets.scalar_type(), torch::kLong);
  EXPECT_EQ(train_->num_classes, 10);
  EXPECT_EQ(test_->name, "fashion_mnist/test");
}

TEST_F(RealFashionMnist, LabelsAreBalancedClassesZeroToNine) {
  EXPECT_EQ(train_->targets.min().item<int64_t>(), 0);
  EXPECT_EQ(train_->targets.max().item<int64_t>(), 9);
  auto counts = torch::bincount(test_->targets);
  EXPECT_TRUE(torch::equal(counts, torch::full({10}, 1000, torch::kLong)));
}

TEST_F(RealFashionMnist, TrainingImagesAreNormalizedToZeroMeanUnitStd) {
  EXPECT_NEAR(train_->inputs.mean().item<double>(), 0.0, 0.01);
  EXPECT_NEAR(train_->inputs.std().item<double>(), 1.0, 0.01);
  // The test split uses the training statistics, so it is only roughly centred.
  EXPECT_NEAR(test_->inputs.mean().item<double>(), 0.0, 0.05);
}

TEST_F(RealFashionMnist, LimitKeepsTheFirstSamples) {
  auto first = load_fashion_mnist(kDataDir, Split::Train, 100);
  EXPECT_EQ(first->size(), 100);
  EXPECT_TRUE(torch::equal(first->inputs, train_->inputs.slice(0, 0, 100)));
  EXPECT_TRUE(torch::equal(first->targets, train_->targets.slice(0, 0, 100)));
  EXPECT_EQ(load_fashion_mnist(kDataDir, Split::Test, 1000000)->size(), 10000);
}

// --- damaged or missing files -------------------------------------------

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

void append_big_endian(std::string& bytes, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(char((value >> shift) & 0xff));
}

std::string idx_images(uint32_t magic, uint32_t declared, uint32_t present) {
  std::string bytes;
  for (uint32_t v : {magic, declared, 28u, 28u}) append_big_endian(bytes, v);
  bytes.append(size_t(present) * 28 * 28, char(128));
  return bytes;
}

std::string idx_labels(uint32_t declared, uint32_t present, char label = 3) {
  std::string bytes;
  for (uint32_t v : {0x801u, declared}) append_big_endian(bytes, v);
  bytes.append(present, label);
  return bytes;
}

void write_gz(const fs::path& path, const std::string& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr);
  ASSERT_EQ(gzwrite(file, bytes.data(), unsigned(bytes.size())), int(bytes.size()));
  gzclose(file);
}

// A test split directory holding the given images and labels files.
struct FakeSplit {
  testing::TempDir dir{"fashion"};
  FakeSplit(const std::string& images, const std::string& labels) {
    write_gz(dir.path() / "t10k-images-idx3-ubyte.gz", images);
    write_gz(dir.path() / "t10k-labels-idx1-ubyte.gz", labels);
  }
  std::string load_error() const {
    return error_of([&] { load_fashion_mnist(dir.path().string(), Split::Test); });
  }
};

TEST(FashionMnistErrors, MissingDirectoryNamesTheFileAndThePackage) {
  auto message = error_of([] { load_fashion_mnist("/nonexistent/fashion", Split::Train); });
  EXPECT_NE(message.find("/nonexistent/fashion/train-images-idx3-ubyte.gz"), std::string::npos)
      << message;
  EXPECT_NE(message.find("apt-get install dataset-fashion-mnist"), std::string::npos) << message;
  EXPECT_NE(message.find("data.path"), std::string::npos) << message;
}

TEST(FashionMnistErrors, WellFormedSmallFilesLoad) {
  FakeSplit split(idx_images(0x803, 5, 5), idx_labels(5, 5));
  auto data = load_fashion_mnist(split.dir.path().string(), Split::Test);
  EXPECT_EQ(data->size(), 5);
  EXPECT_NEAR(data->inputs[0][0][0][0].item<double>(), (128 / 255.0 - 0.2860) / 0.3530, 1e-5);
}

TEST(FashionMnistErrors, UncompressedFilesAreReadToo) {
  testing::TempDir dir("fashion-plain");
  testing::write_text(dir.path() / "t10k-images-idx3-ubyte", idx_images(0x803, 2, 2));
  testing::write_text(dir.path() / "t10k-labels-idx1-ubyte", idx_labels(2, 2));
  EXPECT_EQ(load_fashion_mnist(dir.path().string(), Split::Test)->size(), 2);
}

TEST(FashionMnistErrors, WrongMagicNumberIsNamed) {
  FakeSplit split(idx_images(0x801, 5, 5), idx_labels(5, 5));
  auto message = split.load_error();
  EXPECT_NE(message.find("t10k-images-idx3-ubyte.gz"), std::string::npos) << message;
  EXPECT_NE(message.find("magic number"), std::string::npos) << message;
}

TEST(FashionMnistErrors, TruncatedPixelDataIsNamed) {
  FakeSplit split(idx_images(0x803, 100, 10), idx_labels(100, 100));
  auto message = split.load_error();
  EXPECT_NE(message.find("t10k-images-idx3-ubyte.gz"), std::string::npos) << message;
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;
}

TEST(FashionMnistErrors, TruncatedGzipStreamIsReported) {
  FakeSplit split(idx_images(0x803, 5, 5), idx_labels(5, 5));
  // Cut a real compressed file mid-stream.
  const auto path = split.dir.path() / "t10k-images-idx3-ubyte.gz";
  const auto original = testing::read_text(fs::path(kDataDir) / "t10k-images-idx3-ubyte.gz");
  testing::write_text(path, original.substr(0, original.size() / 2));
  auto message = split.load_error();
  EXPECT_NE(message.find("t10k-images-idx3-ubyte.gz"), std::string::npos) << message;
  EXPECT_TRUE(message.find("truncated") != std::string::npos ||
              message.find("corrupted") != std::string::npos)
      << message;
}

TEST(FashionMnistErrors, MismatchedCountsAndBadLabelsAreNamed) {
  FakeSplit counts(idx_images(0x803, 5, 5), idx_labels(4, 4));
  EXPECT_NE(counts.load_error().find("disagree"), std::string::npos) << counts.load_error();
  FakeSplit labels(idx_images(0x803, 5, 5), idx_labels(5, 5, 12));
  auto message = labels.load_error();
  EXPECT_NE(message.find("t10k-labels-idx1-ubyte.gz"), std::string::npos) << message;
  EXPECT_NE(message.find("label 12"), std::string::npos) << message;
}

TEST(FashionMnistErrors, ImplausibleHeaderIsRefusedBeforeAllocating) {
  FakeSplit split(idx_images(0x803, 0xFFFFFFF0u, 1), idx_labels(5, 5));
  EXPECT_NE(split.load_error().find("header claims"), std::string::npos) << split.load_error();
}

}  // namespace
}  // namespace mcompress
