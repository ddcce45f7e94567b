#include "run/run_inputs.h"

#include <ATen/Parallel.h>

#include <fmt/format.h>

#include <algorithm>
#include <thread>

#include "mcompress/framework/run/input_error.h"
#include "mcompress/framework/sources/fashion_mnist.h"
#include "mcompress/framework/sources/text_corpus.h"
#include "mcompress/framework/sources/zoo.h"
#include "mcompress/sdk/error.h"
#include "run/pass_execution.h"
#include "run/run_directory.h"

namespace mcompress {
namespace {

// Character windows of a text file; limits and sizes count windows.
RunData load_text_data(const DataSpec& spec, Logger& log) {
  RunData data;
  const TextCorpus corpus = load_text_corpus(spec.path, spec.context, spec.test_fraction);
  const Dataset train_split =
      spec.train_limit > 0 ? corpus.train->slice(0, spec.train_limit) : *corpus.train;
  const int64_t held_out = std::min<int64_t>(spec.validation_size, train_split.size() / 5);
  const int64_t train_size = train_split.size() - held_out;
  data.train = std::make_shared<Dataset>(train_split.slice(0, train_size));
  if (held_out > 0) data.validation = std::make_shared<Dataset>(train_split.slice(train_size, held_out));
  data.calibration = std::make_shared<Dataset>(train_split.slice(0, spec.calibration_size));
  data.eval = spec.eval_limit > 0 ? std::make_shared<Dataset>(corpus.test->slice(0, spec.eval_limit))
                                  : corpus.test;
  log.info(fmt::format("data: {} characters of vocabulary {}, windows of {}: {} train, {} "
                       "validation, {} calibration, {} eval",
                       spec.path, corpus.vocabulary.size(), spec.context, data.train->size(),
                       held_out, data.calibration->size(), data.eval->size()));
  return data;
}

RunData load_data(const std::optional<DataSpec>& spec, Logger& log) {
  RunData data;
  if (!spec) return data;
  if (spec->is_text()) return load_text_data(*spec, log);
  auto full_train = load_fashion_mnist(spec->path, Split::Train, spec->train_limit);
  const int64_t held_out = std::min<int64_t>(spec->validation_size, full_train->size() / 5);
  const int64_t train_size = full_train->size() - held_out;
  data.train = std::make_shared<Dataset>(full_train->slice(0, train_size));
  if (held_out > 0) data.validation = std::make_shared<Dataset>(full_train->slice(train_size, held_out));
  data.calibration = std::make_shared<Dataset>(full_train->slice(0, spec->calibration_size));
  data.eval = load_fashion_mnist(spec->path, Split::Test, spec->eval_limit);
  log.info(fmt::format("data: {} train, {} validation, {} calibration, {} eval samples",
                       data.train->size(), held_out, data.calibration->size(), data.eval->size()));
  return data;
}

std::string shape_text(const torch::Tensor& t) {
  return fmt::format("[{}]", fmt::join(t.sizes().vec(), ", "));
}

}  // namespace

RunData load_run_data(const Recipe& recipe, Logger& log) {
  try {
    return load_data(recipe.data, log);
  } catch (const c10::Error& e) {
    throw InputError(fmt::format("cannot load the data in {}: {}", recipe.data->path,
                                 e.what_without_backtrace()));
  } catch (const Error& e) {
    throw InputError(e.what());
  }
}

torch::Tensor example_input(const Recipe& recipe, const RunData& data) {
  if (data.eval && data.eval->size() > 0) return data.eval->inputs.slice(0, 0, 1).clone();
  std::vector<int64_t> shape{1};
  shape.insert(shape.end(), recipe.model.input_shape.begin(), recipe.model.input_shape.end());
  auto generator = at::make_generator<at::CPUGeneratorImpl>(recipe.seed);
  return torch::randn(shape, generator);
}

int64_t zoo_classes(const Recipe& recipe, const RunData& data) {
  if (data.train && data.train->is_token_sequence()) return data.train->num_classes;
  return recipe.model.num_classes;
}

torch::jit::Module load_initial_model(const Recipe& recipe, const RunData& data) {
  if (!recipe.model.zoo.empty()) {
    return build_zoo_model(recipe.model.zoo, recipe.model.options, zoo_classes(recipe, data),
                           recipe.seed);
  }
  return load_model(recipe.model.path, "model");
}

torch::jit::Module checked_initial_model(const Recipe& recipe, const RunData& data,
                                         const torch::Tensor& example) {
  const std::string source = recipe.model.zoo.empty() ? fmt::format("model file {}", recipe.model.path)
                                                      : fmt::format("zoo model `{}`", recipe.model.zoo);
  torch::jit::Module model;
  try {
    model = load_initial_model(recipe, data);
  } catch (const c10::Error& e) {
    throw InputError(fmt::format("cannot build {}: {}", source, e.what_without_backtrace()));
  } catch (const Error& e) {
    throw InputError(e.what());
  }
  model.eval();
  try {
    output_shape_of(model, example);
  } catch (const Error& e) {
    throw InputError(fmt::format("{} does not accept the data's inputs (a batch of shape {}): {}; "
                                 "check that the model was exported for this data (`model.input_shape`, "
                                 "`data`)",
                                 source, shape_text(example), e.what()));
  }
  return model;
}

void set_threads(int threads) {
  const int n = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  at::set_num_threads(std::max(1, n));
}

}  // namespace mcompress
