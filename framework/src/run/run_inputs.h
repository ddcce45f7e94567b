#pragma once
// What a run starts from: the data splits, one example input and the initial
// model. Read before the run directory exists, so input that cannot be used
// is an InputError (exit code 2) and nothing is written.
#include <torch/script.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>

#include "mcompress/formats/tokenizer.h"

#include "mcompress/framework/recipe/recipe.h"
#include "mcompress/sdk/data.h"
#include "mcompress/sdk/progress.h"

namespace mcompress {

struct RunData {
  DatasetPtr train, validation, calibration, eval;  // each null when the recipe has no data
  // `dataset: text`: the tokenizer, and where its files are (empty when this
  // run trained it: then its files are kept in trained_tokenizer).
  std::shared_ptr<const Tokenizer> tokenizer;
  std::filesystem::path tokenizer_dir;
  std::optional<TrainedTokenizerFiles> trained_tokenizer;
};

// Throws InputError when the data cannot be read.
RunData load_run_data(const Recipe& recipe, Logger& log);

// One sample of batch 1: the first held-out sample, else random input of the
// recipe's input shape (seeded).
torch::Tensor example_input(const Recipe& recipe, const RunData& data);

// The number of classes a zoo model gets: the recipe's, or the data's
// vocabulary for language models (which only the data knows).
int64_t zoo_classes(const Recipe& recipe, const RunData& data);

// The recipe's model, built or loaded as it is.
torch::jit::Module load_initial_model(const Recipe& recipe, const RunData& data);

// The same, in eval mode, after checking that it loads and accepts `example`;
// throws InputError naming the model and what is wrong.
torch::jit::Module checked_initial_model(const Recipe& recipe, const RunData& data,
                                         const torch::Tensor& example);

// The directory whose tokenizer and generation files saved checkpoint models
// carry: the model's checkpoint, else the data's tokenizer; a tokenizer this
// run trained is written to run_root/tokenizer first. Empty when none applies.
std::filesystem::path checkpoint_companions(const Recipe& recipe, const RunData& data,
                                            const std::filesystem::path& run_root);

// LibTorch's intra-op threads: `threads`, or all cores when 0.
void set_threads(int threads);

}  // namespace mcompress
