#pragma once
// In-memory datasets and batching shared by passes, probes and the trainer.
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mcompress/sdk/export.h"

namespace mcompress {

// A labelled dataset held as two tensors: inputs [N, ...] (float) and targets
// [N] (int64 class ids); or, for language models, token windows: inputs
// [N, T] and targets [N, T] (int64 token ids, targets shifted by one
// position). Immutable once built; shared by shared_ptr.
struct MCOMPRESS_SDK_API Dataset {
  std::string name;
  torch::Tensor inputs;
  torch::Tensor targets;
  int64_t num_classes = 0;  // classes, or the vocabulary size of a token dataset
  // Token datasets of character-level text: alphabet[id] is the byte that token
  // id stands for (language_model.h). Empty for other datasets, including
  // text tokenized by a Hugging Face tokenizer.
  std::string alphabet;

  // Next-token windows: int64 inputs [N, T] and targets [N, T]. A target below
  // zero (-100, as PyTorch's cross_entropy ignores) is not scored: the
  // positions of a sliding-window evaluation that an earlier window scored.
  bool is_token_sequence() const {
    return inputs.defined() && targets.defined() && inputs.dim() == 2 && targets.dim() == 2 &&
           inputs.scalar_type() == torch::kLong;
  }

  int64_t size() const { return inputs.defined() ? inputs.size(0) : 0; }
  // Rows [start, start + count) clipped to the dataset; shares storage.
  Dataset slice(int64_t start, int64_t count) const;
};

using DatasetPtr = std::shared_ptr<const Dataset>;

struct Batch {
  torch::Tensor inputs;
  torch::Tensor targets;
};

// Yields batches in a seeded random (or sequential) order. The last, smaller
// batch is kept. The dataset must outlive the iterator.
class MCOMPRESS_SDK_API BatchIterator {
 public:
  BatchIterator(const Dataset& data, int64_t batch_size, bool shuffle, uint64_t seed);
  bool next(Batch& batch);
  int64_t batches_per_epoch() const;
  void reset(uint64_t seed);

 private:
  const Dataset& data_;
  int64_t batch_size_;
  bool shuffle_;
  torch::Tensor order_;
  int64_t position_ = 0;
};

}  // namespace mcompress
