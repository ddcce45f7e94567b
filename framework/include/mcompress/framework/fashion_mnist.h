#pragma once
// Fashion-MNIST from the gzipped IDX files of Debian's dataset-fashion-mnist
// package (/usr/share/datasets/fashion-mnist by default).
#include <cstdint>
#include <string>

#include "mcompress/sdk/data.h"

namespace mcompress {

enum class Split { Train, Test };

// Images become float [N,1,28,28] normalized with the training set's mean/std;
// labels int64 [N]. `limit` > 0 keeps the first `limit` samples. A missing or
// malformed file throws mcompress::Error naming the file and the package.
DatasetPtr load_fashion_mnist(const std::string& directory, Split split, int64_t limit = 0);

}  // namespace mcompress
