#pragma once
// The training loop every training pass shares (finetune, distillation):
// optimizer, learning-rate schedule, gradient clipping, progress, periodic
// evaluation and keeping the best weights. The loss is the pass's part.
#include <torch/script.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mcompress/sdk/data.h"
#include "mcompress/sdk/export.h"
#include "mcompress/sdk/params.h"
#include "mcompress/sdk/pass.h"
#include "mcompress/sdk/progress.h"

namespace mcompress {

struct TrainOptions {
  int64_t epochs = 1;     // 0 with max_steps > 0: as many epochs as max_steps needs
  int64_t max_steps = 0;  // > 0: stop after this many optimizer steps
  int64_t batch_size = 64;
  std::string optimizer = "sgd";  // sgd (with momentum) | adam | adamw
  double learning_rate = 0.01;
  double momentum = 0.9;
  double weight_decay = 0.0;
  std::string schedule = "cosine";  // constant | cosine
  int64_t warmup_steps = 0;         // linear warm-up before the schedule
  double grad_clip = 0.0;           // > 0: clip the global gradient L2 norm
  int64_t eval_every = 0;           // > 0: evaluate every N steps, else after each epoch
  bool keep_best = true;            // restore the weights with the best eval accuracy
                                    // (next-token accuracy for sequence models)
  uint64_t seed = 0;                // shuffling order
};

// The recipe parameters of TrainOptions, with defaults; passes that train
// append them to their own schema so every training pass reads the same way.
MCOMPRESS_SDK_API std::vector<ParamSpec> training_param_specs();
// Reads the parameters declared by training_param_specs().
MCOMPRESS_SDK_API TrainOptions training_options_from(const Params& params, uint64_t seed);

// Computes the loss of one batch given the model's output on batch.inputs.
using LossFunction = std::function<torch::Tensor(const Batch& batch, const torch::Tensor& output)>;

// Computes the loss of one batch by running the model itself, for losses that
// need more than its output (intermediate features, gradients with respect to
// the input, sequences the model generates). The model is in training mode.
using ModelLoss = std::function<torch::Tensor(torch::jit::Module& model, const Batch& batch)>;

struct TrainSummary {
  int64_t steps = 0;
  int64_t samples = 0;
  double seconds = 0.0;
  double samples_per_second = 0.0;
  double final_loss = 0.0;          // mean loss of the last epoch (or partial epoch)
  double best_eval_accuracy = -1.0; // -1 when there was no evaluation
  int64_t best_step = 0;
};

// The summary as a pass's PassResult::stats, with the same keys for every training pass.
MCOMPRESS_SDK_API nlohmann::json to_json(const TrainSummary& summary);

// What a training pass returns: `headline` for the terminal; as stats, the
// summary's (to_json) with the pass's own `extra` keys added.
MCOMPRESS_SDK_API PassResult training_result(const TrainSummary& summary, std::string headline,
                                             const nlohmann::json& extra = nlohmann::json::object());

// Trains `model` in place on `train`. `eval` (a validation set) may be null (no evaluation, no
// best-weights selection). Leaves the model in eval mode.
MCOMPRESS_SDK_API TrainSummary train_model(torch::jit::Module& model, const Dataset& train,
                                           const Dataset* eval, const TrainOptions& options,
                                           const LossFunction& loss, Progress& progress,
                                           Logger& log);

// The same loop with a loss that runs the model itself.
MCOMPRESS_SDK_API TrainSummary train_model(torch::jit::Module& model, const Dataset& train,
                                           const Dataset* eval, const TrainOptions& options,
                                           const ModelLoss& loss, Progress& progress,
                                           Logger& log);

// Mean cross-entropy of logits against class ids: output [N, classes] with
// targets [N], or a sequence model's output [N, T, classes] with targets [N, T].
MCOMPRESS_SDK_API torch::Tensor cross_entropy(const torch::Tensor& output,
                                              const torch::Tensor& targets);

// Cross-entropy against batch.targets: the plain supervised loss.
MCOMPRESS_SDK_API LossFunction cross_entropy_loss();

}  // namespace mcompress
