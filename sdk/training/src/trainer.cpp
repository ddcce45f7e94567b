#include "mcompress/training/trainer.h"

#include <torch/nn/functional/loss.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <cmath>
#include <memory>

#include "mcompress/sdk/error.h"
#include "mcompress/models/evaluate.h"

namespace mcompress {
namespace {

constexpr double kPi = 3.14159265358979323846;

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<torch::Tensor>& params,
                                                        const TrainOptions& o) {
  if (o.optimizer == "sgd") {
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(o.learning_rate).momentum(o.momentum).weight_decay(o.weight_decay));
  }
  if (o.optimizer == "adam") {
    return std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(o.learning_rate).weight_decay(o.weight_decay));
  }
  if (o.optimizer == "adamw") {
    return std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(o.learning_rate).weight_decay(o.weight_decay));
  }
  throw Error(fmt::format("unknown optimizer '{}' (use sgd, adam or adamw)", o.optimizer));
}

double learning_rate_at(const TrainOptions& o, int64_t step, int64_t total_steps) {
  if (step < o.warmup_steps) return o.learning_rate * (step + 1) / o.warmup_steps;
  if (o.schedule == "constant") return o.learning_rate;
  const int64_t span = std::max<int64_t>(1, total_steps - o.warmup_steps);
  const double progress = std::min(1.0, double(step - o.warmup_steps) / span);
  return 0.5 * o.learning_rate * (1.0 + std::cos(kPi * progress));
}

// Parameters and buffers by name, cloned: a snapshot of the best weights.
std::vector<std::pair<std::string, torch::Tensor>> snapshot(const torch::jit::Module& model) {
  std::vector<std::pair<std::string, torch::Tensor>> state;
  torch::NoGradGuard no_grad;
  for (const auto& p : model.named_parameters()) state.emplace_back(p.name, p.value.detach().clone());
  for (const auto& b : model.named_buffers()) state.emplace_back(b.name, b.value.detach().clone());
  return state;
}

void restore(torch::jit::Module& model, const std::vector<std::pair<std::string, torch::Tensor>>& state) {
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> current;
  for (const auto& p : model.named_parameters()) current[p.name] = p.value;
  for (const auto& b : model.named_buffers()) current[b.name] = b.value;
  for (const auto& [name, value] : state) current.at(name).copy_(value);
}

}  // namespace

std::vector<ParamSpec> training_param_specs() {
  return {
      ParamSpec::Int("epochs", 1, 0, 10000,
                     "passes over the training data (0: as many as max_steps needs)"),
      ParamSpec::Int("max_steps", 0, 0, std::nullopt, "stop after this many steps (0: no limit)"),
      ParamSpec::Int("batch_size", 64, 1, 65536, "samples per optimizer step"),
      ParamSpec::Choice("optimizer", "sgd", {"sgd", "adam", "adamw"}, "optimizer (sgd uses momentum)"),
      ParamSpec::Float("lr", 0.01, 0.0, 10.0, "peak learning rate"),
      ParamSpec::Float("momentum", 0.9, 0.0, 1.0, "SGD momentum"),
      ParamSpec::Float("weight_decay", 0.0, 0.0, 1.0, "L2 weight decay"),
      ParamSpec::Choice("schedule", "cosine", {"constant", "cosine"}, "learning-rate schedule after warm-up"),
      ParamSpec::Int("warmup_steps", 0, 0, std::nullopt, "linear learning-rate warm-up steps"),
      ParamSpec::Float("grad_clip", 0.0, 0.0, std::nullopt, "clip the gradient L2 norm (0: off)"),
      ParamSpec::Int("eval_every", 0, 0, std::nullopt, "evaluate every N steps (0: after each epoch)"),
      ParamSpec::Bool("keep_best", true, "keep the weights with the best held-out accuracy"),
  };
}

TrainOptions training_options_from(const Params& p, uint64_t seed) {
  TrainOptions o;
  o.epochs = p.get_int("epochs");
  o.max_steps = p.get_int("max_steps");
  o.batch_size = p.get_int("batch_size");
  o.optimizer = p.get_string("optimizer");
  o.learning_rate = p.get_float("lr");
  o.momentum = p.get_float("momentum");
  o.weight_decay = p.get_float("weight_decay");
  o.schedule = p.get_string("schedule");
  o.warmup_steps = p.get_int("warmup_steps");
  o.grad_clip = p.get_float("grad_clip");
  o.eval_every = p.get_int("eval_every");
  o.keep_best = p.get_bool("keep_best");
  o.seed = seed;
  return o;
}

nlohmann::json to_json(const TrainSummary& summary) {
  return {{"steps", summary.steps},
          {"samples", summary.samples},
          {"seconds", summary.seconds},
          {"samples_per_second", summary.samples_per_second},
          {"final_loss", summary.final_loss},
          {"best_eval_accuracy", summary.best_eval_accuracy},
          {"best_step", summary.best_step}};
}

PassResult training_result(const TrainSummary& summary, std::string headline, const nlohmann::json& extra) {
  PassResult result;
  result.summary = std::move(headline);
  result.stats = to_json(summary);
  for (const auto& [key, value] : extra.items()) result.stats[key] = value;
  return result;
}

torch::Tensor cross_entropy(const torch::Tensor& output, const torch::Tensor& targets) {
  if (output.dim() == 3 && targets.dim() == 2) {
    // One prediction per position: flatten positions into the batch.
    return torch::nn::functional::cross_entropy(output.reshape({-1, output.size(2)}),
                                                targets.reshape({-1}));
  }
  if (output.dim() != 2 || targets.dim() != 1 || output.size(0) != targets.size(0)) {
    throw Error(fmt::format("cross-entropy needs outputs [N, classes] with targets [N], or "
                            "[N, T, classes] with [N, T]; got outputs [{}] and targets [{}]",
                            fmt::join(output.sizes(), ", "), fmt::join(targets.sizes(), ", ")));
  }
  return torch::nn::functional::cross_entropy(output, targets);
}

LossFunction cross_entropy_loss() {
  return [](const Batch& batch, const torch::Tensor& output) {
    return cross_entropy(output, batch.targets);
  };
}

TrainSummary train_model(torch::jit::Module& model, const Dataset& train, const Dataset* eval,
                         const TrainOptions& o, const LossFunction& loss, Progress& progress,
                         Logger& log) {
  const ModelLoss run_and_score = [&loss](torch::jit::Module& m, const Batch& batch) {
    return loss(batch, m.forward({batch.inputs}).toTensor());
  };
  return train_model(model, train, eval, o, run_and_score, progress, log);
}

TrainSummary train_model(torch::jit::Module& model, const Dataset& train, const Dataset* eval,
                         const TrainOptions& o, const ModelLoss& loss, Progress& progress,
                         Logger& log) {
  std::vector<torch::Tensor> params;
  for (const auto& p : model.parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  if (params.empty()) throw Error("the model has no trainable parameters");
  auto optimizer = make_optimizer(params, o);

  BatchIterator batches(train, o.batch_size, /*shuffle=*/true, o.seed);
  // epochs 0 with a step budget trains by steps alone, cycling the data.
  const bool by_steps = o.epochs == 0 && o.max_steps > 0;
  int64_t total_steps = by_steps ? o.max_steps : o.epochs * batches.batches_per_epoch();
  if (o.max_steps > 0) total_steps = std::min(total_steps, o.max_steps);

  TrainSummary summary;
  std::vector<std::pair<std::string, torch::Tensor>> best;
  NullProgress quiet;
  auto evaluate = [&](int64_t step) {
    if (!eval) return;
    const double accuracy = evaluate_accuracy(model, *eval, 512, quiet);
    log.info(fmt::format("  step {}: eval accuracy {:.2f}%", step, accuracy * 100));
    if (accuracy > summary.best_eval_accuracy) {
      summary.best_eval_accuracy = accuracy;
      summary.best_step = step;
      if (o.keep_best) best = snapshot(model);
    }
  };

  const auto started = std::chrono::steady_clock::now();
  progress.start("train", total_steps);
  int64_t step = 0;
  double epoch_loss = 0.0;
  int64_t epoch_batches = 0;
  Batch batch;
  int64_t last_evaluated = -1;
  for (int64_t epoch = 0; (by_steps || epoch < o.epochs) && step < total_steps; ++epoch) {
    batches.reset(o.seed + static_cast<uint64_t>(epoch));
    model.train();
    epoch_loss = 0.0;
    epoch_batches = 0;
    while (step < total_steps && batches.next(batch)) {
      const double lr = learning_rate_at(o, step, total_steps);
      for (auto& group : optimizer->param_groups()) group.options().set_lr(lr);
      optimizer->zero_grad();
      auto value = loss(model, batch);
      value.backward();
      if (o.grad_clip > 0) torch::nn::utils::clip_grad_norm_(params, o.grad_clip);
      optimizer->step();
      const double loss_value = value.item<double>();
      if (!std::isfinite(loss_value)) {
        throw Error(fmt::format("training diverged at step {} (loss {}); lower the learning rate "
                                "or set grad_clip", step, loss_value));
      }
      epoch_loss += loss_value;
      ++epoch_batches;
      ++step;
      summary.samples += batch.inputs.size(0);
      progress.update(step, fmt::format("epoch {} loss {:.4f}", epoch + 1, epoch_loss / epoch_batches));
      if (o.eval_every > 0 && step % o.eval_every == 0) {
        evaluate(step);
        last_evaluated = step;
        model.train();
      }
    }
    if (o.eval_every == 0) {
      evaluate(step);
      last_evaluated = step;
    }
  }
  // Steps after the last periodic evaluation would otherwise be thrown away
  // by keep_best without ever being compared.
  if (step > 0 && last_evaluated != step) evaluate(step);
  summary.steps = step;
  summary.final_loss = epoch_batches ? epoch_loss / epoch_batches : 0.0;
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  summary.samples_per_second = summary.seconds > 0 ? summary.samples / summary.seconds : 0.0;
  progress.finish(fmt::format("loss {:.4f}, {:.0f} samples/s", summary.final_loss, summary.samples_per_second));
  if (!best.empty()) restore(model, best);
  model.eval();
  return summary;
}

}  // namespace mcompress
