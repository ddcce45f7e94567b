#include "mcompress/sdk/data.h"

#include <algorithm>

#include "mcompress/sdk/error.h"

namespace mcompress {

Dataset Dataset::slice(int64_t start, int64_t count) const {
  const int64_t begin = std::clamp<int64_t>(start, 0, size());
  const int64_t end = std::clamp<int64_t>(start + count, begin, size());
  Dataset out{name, inputs.slice(0, begin, end), targets.slice(0, begin, end), num_classes,
              alphabet};
  return out;
}

BatchIterator::BatchIterator(const Dataset& data, int64_t batch_size, bool shuffle, uint64_t seed)
    : data_(data), batch_size_(batch_size), shuffle_(shuffle) {
  if (batch_size <= 0) throw Error("batch size must be positive");
  if (data.size() == 0) throw Error("dataset '" + data.name + "' is empty");
  reset(seed);
}

void BatchIterator::reset(uint64_t seed) {
  position_ = 0;
  if (shuffle_) {
    auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
    order_ = torch::randperm(data_.size(), generator, torch::kLong);
  } else {
    order_ = torch::Tensor();
  }
}

int64_t BatchIterator::batches_per_epoch() const {
  return (data_.size() + batch_size_ - 1) / batch_size_;
}

bool BatchIterator::next(Batch& batch) {
  const int64_t n = data_.size();
  if (position_ >= n) return false;
  const int64_t end = std::min(n, position_ + batch_size_);
  if (order_.defined()) {
    auto idx = order_.slice(0, position_, end);
    batch.inputs = data_.inputs.index_select(0, idx);
    batch.targets = data_.targets.index_select(0, idx);
  } else {
    batch.inputs = data_.inputs.slice(0, position_, end);
    batch.targets = data_.targets.slice(0, position_, end);
  }
  position_ = end;
  return true;
}

}  // namespace mcompress
