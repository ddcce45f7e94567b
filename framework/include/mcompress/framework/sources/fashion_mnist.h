#pragma once
// Fashion-MNIST from the gzipped IDX files of Debian's dataset-fashion-mnist
// package (/usr/share/datasets/fashion-mnist by default).
#include <cstdint>
#include <string>
#include <string_view>

#include "mcompress/sdk/data.h"

namespace mcompress {

enum class Split { Train, Test };

// Images become float [N,1,28,28] normalized with the training set's mean/std;
// labels int64 [N]. `limit` > 0 keeps the first `limit` samples. A missing or
// malformed file throws mcompress::Error naming the file and the package.
MCOMPRESS_SDK_API DatasetPtr load_fashion_mnist(const std::string& directory, Split split, int64_t limit = 0);

// The IDX readers behind load_fashion_mnist, on the bytes of one file already
// in memory (gzipped or plain, as on disk); `name` is what errors call the
// file. `values` is what the Dataset gets (normalized float [N,1,28,28]
// images; int64 [N] labels in 0-9), `count` the sample count the header
// declares. Malformed bytes throw mcompress::Error; memory grows only with
// data actually present, whatever the header claims.
struct IdxSamples {
  torch::Tensor values;
  uint32_t count = 0;
};
MCOMPRESS_SDK_API IdxSamples read_fashion_mnist_images(std::string_view bytes, const std::string& name, int64_t limit = 0);
MCOMPRESS_SDK_API IdxSamples read_fashion_mnist_labels(std::string_view bytes, const std::string& name, int64_t limit = 0);

}  // namespace mcompress
