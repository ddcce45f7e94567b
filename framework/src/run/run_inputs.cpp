#include "run/run_inputs.h"

#include <ATen/Parallel.h>

#include <fmt/format.h>

#include <algorithm>
#include <thread>

#include "mcompress/framework/run/input_error.h"
#include "mcompress/framework/sources/fashion_mnist.h"
#include "mcompress/framework/sources/text_corpus.h"
#include "mcompress/framework/sources/token_text.h"
#include "mcompress/framework/support/atomic_file.h"
#include "mcompress/models/causal_lm.h"
#include "mcompress/framework/sources/zoo.h"
#include "mcompress/sdk/error.h"
#include "run/pass_execution.h"
#include "run/run_directory.h"

namespace mcompress {
namespace fs = std::filesystem;
namespace {

// How every dataset's training split is cut: the last validation_size samples
// (at most a fifth) held out for model selection, the first calibration_size
// calibrate. Returns how many were held out.
int64_t split_training(const Dataset& train_split, const DataSpec& spec, RunData& data) {
  const int64_t held_out = std::min<int64_t>(spec.validation_size, train_split.size() / 5);
  const int64_t train_size = train_split.size() - held_out;
  data.train = std::make_shared<Dataset>(train_split.slice(0, train_size));
  if (held_out > 0) data.validation = std::make_shared<Dataset>(train_split.slice(train_size, held_out));
  data.calibration = std::make_shared<Dataset>(train_split.slice(0, spec.calibration_size));
  return held_out;
}

// The first eval_limit windows of a held-out split (all when 0).
DatasetPtr limited(const DatasetPtr& test, int64_t eval_limit) {
  return eval_limit > 0 ? std::make_shared<Dataset>(test->slice(0, eval_limit)) : test;
}

// Character windows of a text file; limits and sizes count windows.
RunData load_text_data(const DataSpec& spec, Logger& log) {
  RunData data;
  const TextCorpus corpus = load_text_corpus(spec.path, spec.context, spec.test_fraction);
  const Dataset train_split =
      spec.train_limit > 0 ? corpus.train->slice(0, spec.train_limit) : *corpus.train;
  const int64_t held_out = split_training(train_split, spec, data);
  data.eval = limited(corpus.test, spec.eval_limit);
  log.info(fmt::format("data: {} characters of vocabulary {}, windows of {}: {} train, {} "
                       "validation, {} calibration, {} eval",
                       spec.path, corpus.vocabulary.size(), spec.context, data.train->size(),
                       held_out, data.calibration->size(), data.eval->size()));
  return data;
}

// The documents' text up to (1 − test_fraction) of its bytes, cut at a
// character boundary: a tokenizer trained for the run never sees the
// held-out text.
std::string tokenizer_training_text(const DataSpec& spec) {
  std::string text;
  for (const auto& document : read_text_documents(spec.text_files, spec.field)) text += document + "\n";
  size_t cut = size_t(double(text.size()) * (1.0 - spec.test_fraction));
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // inside a UTF-8 sequence
  return text.substr(0, cut);
}

RunData load_tokenized_text(const DataSpec& spec, const ModelSpec& model, Logger& log) {
  RunData data;
  if (spec.tokenizer_vocab > 0) {
    log.info(fmt::format("data: training a byte-level BPE tokenizer of {} tokens", spec.tokenizer_vocab));
    data.trained_tokenizer = train_byte_level_bpe(tokenizer_training_text(spec), spec.tokenizer_vocab);
    data.tokenizer = std::make_shared<Tokenizer>(Tokenizer::from_json(
        data.trained_tokenizer->tokenizer_json, data.trained_tokenizer->tokenizer_config_json,
        "the trained tokenizer"));
  } else {
    data.tokenizer_dir = spec.tokenizer.empty() ? model.hf : spec.tokenizer;
    data.tokenizer = std::make_shared<Tokenizer>(Tokenizer::from_directory(data.tokenizer_dir));
  }
  TokenTextSpec text_spec;
  text_spec.paths = spec.text_files;
  text_spec.jsonl_field = spec.field;
  text_spec.context = spec.context;
  text_spec.eval_stride = spec.eval_stride;
  text_spec.test_fraction = spec.test_fraction;
  const TokenText text = load_token_text(text_spec, *data.tokenizer);
  const Dataset train_split = spec.train_limit > 0 ? text.train->slice(0, spec.train_limit) : *text.train;
  const int64_t held_out = split_training(train_split, spec, data);
  data.eval = limited(text.test, spec.eval_limit);
  log.info(fmt::format("data: {} documents, {} tokens (vocabulary {}), windows of {}: {} train, {} "
                       "validation, {} calibration, {} eval",
                       text.documents, text.tokens, data.tokenizer->vocab_size(), spec.context,
                       data.train->size(), held_out, data.calibration->size(), data.eval->size()));
  return data;
}

RunData load_data(const std::optional<DataSpec>& spec, const ModelSpec& model, Logger& log) {
  RunData data;
  if (!spec) return data;
  if (spec->is_tokenized_text()) return load_tokenized_text(*spec, model, log);
  if (spec->is_text()) return load_text_data(*spec, log);
  const int64_t held_out =
      split_training(*load_fashion_mnist(spec->path, Split::Train, spec->train_limit), *spec, data);
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
    return load_data(recipe.data, recipe.model, log);
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
  if (!recipe.model.hf.empty()) return load_model(recipe.model.hf, "model", recipe.model.dtype);
  return load_model(recipe.model.path, "model");
}

torch::jit::Module checked_initial_model(const Recipe& recipe, const RunData& data,
                                         const torch::Tensor& example) {
  const std::string source = !recipe.model.hf.empty()   ? fmt::format("checkpoint {}", recipe.model.hf)
                             : recipe.model.zoo.empty() ? fmt::format("model file {}", recipe.model.path)
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
  if (data.tokenizer && is_causal_lm(model)) {
    const int64_t model_vocabulary = causal_lm_config(model).vocab_size;
    if (data.tokenizer->vocab_size() > model_vocabulary)
      throw InputError(fmt::format("{} has a vocabulary of {} tokens but its tokenizer has {}; the "
                                   "tokenizer does not belong to this model",
                                   source, model_vocabulary, data.tokenizer->vocab_size()));
  }
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

fs::path checkpoint_companions(const Recipe& recipe, const RunData& data, const fs::path& run_root) {
  if (data.trained_tokenizer) {
    const fs::path dir = run_root / "tokenizer";
    fs::create_directories(dir);
    write_file_atomically(dir / "tokenizer.json", data.trained_tokenizer->tokenizer_json);
    write_file_atomically(dir / "tokenizer_config.json", data.trained_tokenizer->tokenizer_config_json);
    return dir;
  }
  if (!recipe.model.hf.empty()) return recipe.model.hf;
  return data.tokenizer_dir;
}

void set_threads(int threads) {
  const int n = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  at::set_num_threads(std::max(1, n));
}

}  // namespace mcompress
