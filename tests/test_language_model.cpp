// Character-level language modelling: vocabulary, next-token windows, the
// zoo's char_lm, scoring, sampling, the text corpus loader and the
// language-model probes.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <cmath>

#include "mcompress/framework/probes/probes.h"
#include "mcompress/framework/sources/text_corpus.h"
#include "mcompress/framework/sources/zoo.h"
#include "mcompress/sdk/error.h"
#include "mcompress/models/evaluate.h"
#include "mcompress/models/language_model.h"
#include "mcompress/training/trainer.h"
#include "test_support.h"

namespace mcompress {
namespace {

const std::string kShakespeare = std::string(MCOMPRESS_SOURCE_DIR) + "/tests/data/tinyshakespeare.txt";

TEST(CharVocabulary, IsTheSortedDistinctBytesAndRoundTrips) {
  const auto vocabulary = CharVocabulary::of_text("hello, world");
  EXPECT_EQ(vocabulary.symbols, " ,dehlorw");
  const auto ids = vocabulary.encode("lower");
  EXPECT_EQ(ids.dtype(), torch::kLong);
  EXPECT_EQ(ids[0].item<int64_t>(), 5);  // 'l'
  EXPECT_EQ(vocabulary.decode(ids), "lower");
  try {
    vocabulary.encode("hex!");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'x' at offset 2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(vocabulary.decode(torch::tensor({42}, torch::kLong)), Error);
}

TEST(NextTokenWindows, TargetsAreTheInputsShiftedByOne) {
  const auto vocabulary = CharVocabulary::of_text("abcdefghij");
  const auto tokens = vocabulary.encode("abcdefghij");
  const auto data = next_token_windows(tokens, 4, 3, "letters", vocabulary);
  // Windows start at 0 and 3; one at 6 would need tokens up to index 10 for its last target.
  ASSERT_EQ(data.size(), 2);
  EXPECT_EQ(vocabulary.decode(data.inputs[0]), "abcd");
  EXPECT_EQ(vocabulary.decode(data.targets[0]), "bcde");
  EXPECT_EQ(vocabulary.decode(data.inputs[1]), "defg");
  EXPECT_EQ(vocabulary.decode(data.targets[1]), "efgh");
  EXPECT_EQ(data.num_classes, 10);
  EXPECT_TRUE(data.is_token_sequence());
  EXPECT_EQ(data.slice(1, 1).alphabet, vocabulary.symbols);
  EXPECT_THROW(next_token_windows(tokens, 10, 1, "short", vocabulary), Error);
}

TEST(CharLm, IsCausalAndAcceptsAnyLengthUpToItsContext) {
  auto model = build_zoo_model("char_lm", {{"width", 32}, {"layers", 2}, {"heads", 4}, {"context", 16}},
                               30, 1);
  model.eval();
  torch::manual_seed(2);
  const auto tokens = torch::randint(0, 30, {3, 16}, torch::kLong);
  torch::NoGradGuard no_grad;
  const auto full = forward_tensor(model, tokens);
  ASSERT_EQ(full.sizes(), (std::vector<int64_t>{3, 16, 30}));
  // Position t sees tokens 0..t only: changing the last token changes nothing before it.
  auto changed = tokens.clone();
  changed.select(1, 15).copy_(tokens.select(1, 15).add(1).remainder(30));
  const auto other = forward_tensor(model, changed);
  EXPECT_TRUE(torch::allclose(other.slice(1, 0, 15), full.slice(1, 0, 15), 1e-5, 1e-6));
  EXPECT_FALSE(torch::allclose(other.select(1, 15), full.select(1, 15)));
  EXPECT_TRUE(torch::allclose(forward_tensor(model, tokens.slice(1, 0, 5)), full.slice(1, 0, 5), 1e-5, 1e-6));
  EXPECT_ANY_THROW(forward_tensor(model, torch::zeros({1, 17}, torch::kLong)));
  EXPECT_THROW(build_zoo_model("char_lm", {{"width", 30}, {"heads", 4}}, 30, 1), Error);
}

TEST(CharLm, SavesAndLoadsAsPlainTorchScript) {
  auto model = build_zoo_model("char_lm", {{"width", 16}, {"layers", 1}, {"heads", 2}, {"context", 8}}, 12, 3);
  model.eval();
  std::stringstream archive;
  model.save(archive);
  auto loaded = torch::jit::load(archive);
  const auto tokens = torch::randint(0, 12, {2, 8}, torch::kLong);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(forward_tensor(loaded, tokens), forward_tensor(model, tokens)));
}

Dataset small_corpus(int64_t context) {
  const std::string text = "to be or not to be, that is the question. whether tis nobler in the mind";
  const auto vocabulary = CharVocabulary::of_text(text);
  return next_token_windows(vocabulary.encode(text), context, context, "hamlet", vocabulary);
}

TEST(LanguageModelScores, AreCrossEntropyInNatsBitsAndPerplexity) {
  const auto data = small_corpus(8);
  auto model = build_zoo_model("char_lm", {{"width", 16}, {"layers", 1}, {"heads", 2}, {"context", 8}},
                               data.num_classes, 4);
  NullProgress progress;
  const auto scores = evaluate_language_model(model, data, 3, progress);
  torch::NoGradGuard no_grad;
  const auto logits = forward_tensor(model, data.inputs);
  const double nats = cross_entropy(logits, data.targets).item<double>();
  EXPECT_NEAR(scores.cross_entropy, nats, 1e-5);
  EXPECT_NEAR(scores.bits_per_token, nats / std::log(2.0), 1e-5);
  EXPECT_NEAR(scores.perplexity, std::exp(nats), 1e-3);
  EXPECT_EQ(scores.tokens, data.targets.numel());
  const double accuracy = logits.argmax(-1).eq(data.targets).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(scores.accuracy, accuracy, 1e-12);
  // The accuracy probe and the trainer's selection read sequence models the same way.
  EXPECT_NEAR(evaluate_accuracy(model, data, 2, progress), accuracy, 1e-12);
}

TEST(Sampling, ExtendsThePromptReproduciblyFromTheGenerator) {
  auto model = build_zoo_model("char_lm", {{"width", 16}, {"layers", 1}, {"heads", 2}, {"context", 8}}, 12, 5);
  auto teacher = build_zoo_model("char_lm", {{"width", 16}, {"layers", 1}, {"heads", 2}, {"context", 8}}, 12, 6);
  const auto prompt = torch::randint(0, 12, {4, 3}, torch::kLong);
  SamplingOptions options;
  options.new_tokens = 10;  // beyond the context: the model sees the latest 8 tokens
  options.max_context = 8;
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(7);
  auto g2 = at::make_generator<at::CPUGeneratorImpl>(7);
  const auto a = sample_tokens(model, prompt, options, g1);
  const auto b = sample_tokens(model, prompt, options, g2);
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{4, 13}));
  EXPECT_TRUE(torch::equal(a.slice(1, 0, 3), prompt));
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_TRUE(a.ge(0).all().item<bool>() && a.lt(12).all().item<bool>());
  // Teacher-mixed sampling draws from another distribution.
  options.teacher = &teacher;
  options.teacher_weight = 1.0;
  auto g3 = at::make_generator<at::CPUGeneratorImpl>(7);
  EXPECT_FALSE(torch::equal(sample_tokens(model, prompt, options, g3), a));
}

TEST(TextCorpus, CutsTinyShakespeareIntoTrainAndHeldOutWindows) {
  const auto corpus = load_text_corpus(kShakespeare, 64, 0.1);
  EXPECT_EQ(corpus.vocabulary.size(), 65);
  EXPECT_EQ(corpus.train->num_classes, 65);
  // 1,115,394 characters: 90% for training in windows of 64 with one extra target.
  EXPECT_EQ(corpus.train->size(), (1003854 - 65) / 64 + 1);
  EXPECT_EQ(corpus.test->size(), (111540 - 65) / 64 + 1);
  EXPECT_EQ(corpus.vocabulary.decode(corpus.train->inputs[0]).substr(0, 14), "First Citizen:");
  EXPECT_THROW(load_text_corpus("/nonexistent/shakespeare.txt", 64, 0.1), Error);
}

TEST(LanguageModelProbes, MeasureBitsPerCharacterAndWriteASample) {
  const auto data = small_corpus(8);
  auto model = build_zoo_model("char_lm", {{"width", 16}, {"layers", 1}, {"heads", 2}, {"context", 8}},
                               data.num_classes, 8);
  ProbeSpec spec;
  spec.enabled = {"accuracy", "perplexity", "params", "macs"};
  NullProgress progress;
  const auto metrics = run_probes(model, &data, data.inputs.slice(0, 0, 1), spec, progress);
  const auto scores = evaluate_language_model(model, data, 256, progress);
  EXPECT_NEAR(metrics.at("bits_per_char"), scores.bits_per_token, 1e-9);
  EXPECT_NEAR(metrics.at("perplexity"), scores.perplexity, 1e-9);
  EXPECT_NEAR(metrics.at("cross_entropy"), scores.cross_entropy, 1e-9);
  EXPECT_NEAR(metrics.at("accuracy"), scores.accuracy, 1e-12);
  // Every linear weight is used once per position of the 8-token example.
  EXPECT_GT(metrics.at("macs"), metrics.at("params"));

  const auto sample = text_sample(model, data, 20, 3);
  EXPECT_EQ(sample.prompt, "to be or");
  EXPECT_EQ(sample.continuation.size(), 20u);
  EXPECT_EQ(text_sample(model, data, 20, 3).continuation, sample.continuation);
  for (char c : sample.continuation) EXPECT_NE(data.alphabet.find(c), std::string::npos);
}

}  // namespace
}  // namespace mcompress
