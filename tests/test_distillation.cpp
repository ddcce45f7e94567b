// The SDK's distillation mechanisms: divergences, attribution maps (with
// double backward), layer taps, and the trainer with a frozen teacher or a
// step budget.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <cmath>

#include "mcompress/framework/sources/zoo.h"
#include "mcompress/training/attribution.h"
#include "mcompress/training/distillation.h"
#include "mcompress/sdk/error.h"
#include "mcompress/models/evaluate.h"
#include "mcompress/models/layer_taps.h"
#include "mcompress/training/trainer.h"

namespace mcompress {
namespace {

torch::Tensor logits(std::initializer_list<std::initializer_list<double>> rows) {
  std::vector<double> flat;
  int64_t n = 0, c = 0;
  for (const auto& row : rows) {
    c = int64_t(row.size());
    ++n;
    flat.insert(flat.end(), row.begin(), row.end());
  }
  return torch::tensor(flat, torch::kDouble).reshape({n, c});
}

// KL(p ‖ q) of one pair of logit rows, written out term by term.
double kl_by_hand(const std::vector<double>& zp, const std::vector<double>& zq, double t) {
  auto softmax = [t](const std::vector<double>& z) {
    std::vector<double> p;
    double sum = 0;
    for (double v : z) sum += std::exp(v / t);
    for (double v : z) p.push_back(std::exp(v / t) / sum);
    return p;
  };
  const auto p = softmax(zp), q = softmax(zq);
  double kl = 0;
  for (size_t i = 0; i < p.size(); ++i) kl += p[i] * std::log(p[i] / q[i]);
  return kl;
}

TEST(Divergences, KdKlIsTemperatureSquaredTimesTeacherToStudentKl) {
  const auto student = logits({{1.0, 2.0, 0.5}, {0.0, -1.0, 3.0}});
  const auto teacher = logits({{2.0, 0.0, 1.0}, {1.0, 1.0, 1.0}});
  const double t = 3.0;
  const double expected = t * t *
                          (kl_by_hand({2, 0, 1}, {1, 2, 0.5}, t) + kl_by_hand({1, 1, 1}, {0, -1, 3}, t)) / 2;
  EXPECT_NEAR(kd_kl_divergence(student, teacher, t).item<double>(), expected, 1e-12);
  EXPECT_NEAR(kd_kl_divergence(teacher, teacher, t).item<double>(), 0.0, 1e-12);
}

TEST(Divergences, KdGradientIsTemperatureTimesProbabilityGap) {
  // d/dz_s of T²·KL(p_t ‖ p_s) is T·(p_s − p_t) per sample (divided by N for the mean).
  const auto student = logits({{1.0, 2.0, 0.5}}).requires_grad_(true);
  const auto teacher = logits({{2.0, 0.0, 1.0}});
  const double t = 2.0;
  kd_kl_divergence(student, teacher, t).backward();
  const auto expected = t * (torch::softmax(student.detach() / t, 1) - torch::softmax(teacher / t, 1));
  EXPECT_TRUE(torch::allclose(student.grad(), expected, 1e-10, 1e-12));
}

TEST(Divergences, HintonLossBlendsDistillationAndCrossEntropy) {
  const auto student = logits({{1.0, 2.0, 0.5}, {0.0, -1.0, 3.0}});
  const auto teacher = logits({{2.0, 0.0, 1.0}, {1.0, 1.0, 1.0}});
  const auto targets = torch::tensor({0, 2}, torch::kLong);
  const double kd = kd_kl_divergence(student, teacher, 4.0).item<double>();
  const double ce = cross_entropy(student, targets).item<double>();
  EXPECT_NEAR(hinton_kd_loss(student, teacher, targets, 4.0, 1.0).item<double>(), kd, 1e-12);
  EXPECT_NEAR(hinton_kd_loss(student, teacher, targets, 4.0, 0.0).item<double>(), ce, 1e-12);
  EXPECT_NEAR(hinton_kd_loss(student, teacher, targets, 4.0, 0.3).item<double>(), 0.3 * kd + 0.7 * ce,
              1e-12);
}

TEST(Divergences, ForwardAndReverseKlSwapTheirArguments) {
  const auto student = logits({{3.0, 0.0}, {0.0, 0.5}});
  const auto teacher = logits({{0.0, 1.0}, {1.0, 0.0}});
  const double forward = (kl_by_hand({0, 1}, {3, 0}, 1) + kl_by_hand({1, 0}, {0, 0.5}, 1)) / 2;
  const double reverse = (kl_by_hand({3, 0}, {0, 1}, 1) + kl_by_hand({0, 0.5}, {1, 0}, 1)) / 2;
  EXPECT_NEAR(forward_kl(student, teacher).item<double>(), forward, 1e-12);
  EXPECT_NEAR(reverse_kl(student, teacher).item<double>(), reverse, 1e-12);
  EXPECT_GT(std::abs(forward - reverse), 1e-3);  // the two really differ
}

TEST(Divergences, SequenceLogitsAreAveragedOverEveryPosition) {
  torch::manual_seed(1);
  const auto student = torch::randn({2, 5, 7}, torch::kDouble);
  const auto teacher = torch::randn({2, 5, 7}, torch::kDouble);
  EXPECT_NEAR(reverse_kl(student, teacher).item<double>(),
              reverse_kl(student.reshape({10, 7}), teacher.reshape({10, 7})).item<double>(), 1e-12);
  const auto targets = torch::randint(0, 7, {2, 5}, torch::kLong);
  EXPECT_NEAR(cross_entropy(student, targets).item<double>(),
              cross_entropy(student.reshape({10, 7}), targets.reshape({10})).item<double>(), 1e-12);
}

TEST(Divergences, DifferentClassCountsAreAClearError) {
  try {
    forward_kl(torch::zeros({4, 10}), torch::zeros({4, 100}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("same classes as the teacher"), std::string::npos) << e.what();
  }
}

TEST(AttentionMaps, AreChannelMeanOfSquaresNormalisedPerSample) {
  torch::manual_seed(2);
  const auto features = torch::randn({3, 4, 5, 6}, torch::kDouble);
  const auto map = attention_map(features);
  ASSERT_EQ(map.sizes(), (std::vector<int64_t>{3, 30}));
  const auto raw = features.pow(2).mean(1).reshape({3, 30});
  EXPECT_TRUE(torch::allclose(map, raw / raw.norm(2, 1, true)));
  EXPECT_TRUE(torch::allclose(map.norm(2, 1), torch::ones({3}, torch::kDouble)));
  // Scale-free: a network with 10x larger activations has the same map.
  EXPECT_TRUE(torch::allclose(attention_map(features * 10), map));
  EXPECT_NEAR(map_distance(map, map).item<double>(), 0.0, 1e-15);
  EXPECT_THROW(attention_map(torch::randn({3, 4})), Error);
  EXPECT_THROW(map_distance(map, attention_map(torch::randn({3, 4, 2, 2}))), Error);
}

// logits = x_flat · Wᵀ: the gradient of logit c is row c of W.
TEST(InputAttribution, GradientTimesInputOfALinearModelIsWeightTimesInput) {
  torch::manual_seed(3);
  const auto weight = torch::randn({3, 8}, torch::kDouble);
  const auto inputs = torch::randn({4, 2, 2, 2}, torch::kDouble);
  const auto classes = torch::tensor({0, 2, 1, 2}, torch::kLong);
  const LogitsFunction linear = [&](const torch::Tensor& x) { return x.flatten(1).matmul(weight.t()); };
  const auto attribution = input_attribution(linear, inputs, classes, {});
  const auto expected = weight.index_select(0, classes).reshape({4, 2, 2, 2}) * inputs;
  EXPECT_TRUE(torch::allclose(attribution, expected));
  // Linear: integrated gradients equal gradient × input at every step count.
  const auto ig = input_attribution(linear, inputs, classes,
                                    {AttributionMethod::IntegratedGradients, 3, false});
  EXPECT_TRUE(torch::allclose(ig, expected));
}

TEST(InputAttribution, IntegratedGradientsAddUpToTheLogitChange) {
  auto model = build_zoo_model("mlp", {{"width", 8}}, 10, 5);
  model.eval();
  torch::manual_seed(4);
  const auto inputs = torch::randn({3, 1, 28, 28});
  const auto classes = torch::tensor({1, 4, 7}, torch::kLong);
  const LogitsFunction forward = [&](const torch::Tensor& x) { return forward_tensor(model, x); };
  const auto ig = input_attribution(forward, inputs, classes,
                                    {AttributionMethod::IntegratedGradients, 256, false});
  torch::NoGradGuard no_grad;
  const auto at_x = forward(inputs).gather(1, classes.unsqueeze(1)).squeeze(1);
  const auto at_zero = forward(torch::zeros_like(inputs)).gather(1, classes.unsqueeze(1)).squeeze(1);
  const auto total = ig.flatten(1).sum(1);
  for (int64_t i = 0; i < 3; ++i) {
    const double change = (at_x - at_zero)[i].item<double>();
    EXPECT_NEAR(total[i].item<double>(), change, 0.02 * std::abs(change) + 1e-3) << "sample " << i;
  }
  EXPECT_THROW(input_attribution(forward, torch::zeros({2, 3}, torch::kLong), classes, {}), Error);
}

// The point of kd_attribution: a loss on the student's attribution map
// trains its weights through a differentiated backward pass, and computing
// the teacher's map leaves the teacher's .grad untouched.
TEST(InputAttribution, MapLossesReachWeightsThroughDoubleBackward) {
  auto student = build_zoo_model("cnn", {{"width", 4}}, 10, 6);
  auto teacher = build_zoo_model("cnn", {{"width", 8}}, 10, 7);
  student.eval();
  teacher.eval();
  torch::manual_seed(8);
  const auto inputs = torch::randn({4, 1, 28, 28});
  const auto classes = torch::tensor({0, 1, 2, 3}, torch::kLong);
  const LogitsFunction teacher_fn = [&](const torch::Tensor& x) { return forward_tensor(teacher, x); };
  const LogitsFunction student_fn = [&](const torch::Tensor& x) { return forward_tensor(student, x); };
  const auto teacher_map = attribution_map(input_attribution(teacher_fn, inputs, classes, {}));
  for (const auto& p : teacher.parameters()) EXPECT_FALSE(p.grad().defined());
  EXPECT_FALSE(teacher_map.requires_grad());

  AttributionOptions differentiable;
  differentiable.create_graph = true;
  const auto student_map = attribution_map(input_attribution(student_fn, inputs, classes, differentiable));
  map_distance(student_map, teacher_map).backward();
  const auto conv1 = student.attr("conv1").toModule().attr("weight").toTensor();
  ASSERT_TRUE(conv1.grad().defined());
  EXPECT_GT(conv1.grad().abs().sum().item<double>(), 0.0);
}

TEST(LayerTaps, ReturnTheLayerOutputsOfTheSameForwardPass) {
  auto model = build_zoo_model("cnn", {{"width", 4}}, 10, 9);
  model.eval();
  std::vector<std::string> paths;
  for (const auto& layer : tappable_layers(model)) paths.push_back(layer.path + "/" + layer.op);
  EXPECT_EQ(paths, (std::vector<std::string>{"conv1/conv", "bn1/batch_norm", "conv2/conv",
                                             "bn2/batch_norm", "fc1/linear", "fc2/linear"}));

  const LayerTaps taps(model, {"conv1", "fc1"});
  torch::manual_seed(10);
  const auto inputs = torch::randn({2, 1, 28, 28});
  const auto result = taps.run(inputs);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(result.output, forward_tensor(model, inputs)));
  const auto conv1_weight = model.attr("conv1").toModule().attr("weight").toTensor();
  ASSERT_EQ(result.layers.size(), 2u);
  EXPECT_TRUE(torch::allclose(result.layers[0], torch::conv2d(inputs, conv1_weight, {}, 1, 1), 1e-5, 1e-6));
  EXPECT_EQ(result.layers[1].sizes(), (std::vector<int64_t>{2, 16}));
}

TEST(LayerTaps, UnknownLayersAreNamedWithTheOnesThatExist) {
  auto model = build_zoo_model("cnn", {{"width", 4}}, 10, 9);
  try {
    LayerTaps taps(model, {"conv1", "conv9"});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("no layer conv9"), std::string::npos) << message;
    EXPECT_NE(message.find("conv1, bn1, conv2"), std::string::npos) << message;
  }
}

Dataset random_images(int64_t n, uint64_t seed) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  Dataset data;
  data.name = "random";
  data.inputs = torch::randn({n, 1, 28, 28}, generator);
  data.targets = torch::randint(0, 10, {n}, generator, torch::kLong);
  data.num_classes = 10;
  return data;
}

TEST(Trainer, EpochsZeroTrainsForExactlyMaxStepsCyclingTheData) {
  auto model = build_zoo_model("mlp", {{"width", 4}}, 10, 11);
  const auto data = random_images(40, 12);  // 3 batches of 16 per epoch
  TrainOptions options;
  options.epochs = 0;
  options.max_steps = 7;
  options.batch_size = 16;
  NullProgress progress;
  NullLogger log;
  const auto summary = train_model(model, data, &data, options, cross_entropy_loss(), progress, log);
  EXPECT_EQ(summary.steps, 7);
  EXPECT_EQ(summary.samples, 16 + 16 + 8 + 16 + 16 + 8 + 16);
  // The last steps are evaluated too, not only epoch ends.
  EXPECT_GE(summary.best_eval_accuracy, 0.0);
}

TEST(Trainer, DistillationMovesTheStudentTowardsAFrozenTeacher) {
  auto teacher = build_zoo_model("cnn", {{"width", 8}}, 10, 13);
  auto student = build_zoo_model("mlp", {{"width", 8}}, 10, 14);
  const auto data = random_images(64, 15);
  // The teacher comes in training mode: distillation must still run it in
  // eval mode (its BN running statistics stay put) and hand it back as it was.
  teacher.train();
  std::vector<torch::Tensor> before;
  for (const auto& p : teacher.parameters()) before.push_back(p.detach().clone());
  for (const auto& b : teacher.buffers()) before.push_back(b.detach().clone());

  auto divergence = [&] {
    torch::NoGradGuard no_grad;
    return forward_kl(teacher_output(student, data.inputs), teacher_output(teacher, data.inputs))
        .item<double>();
  };
  const double initial = divergence();
  TrainOptions options;
  options.epochs = 15;
  options.batch_size = 16;
  options.optimizer = "adam";
  options.learning_rate = 0.003;
  options.keep_best = false;
  NullProgress progress;
  NullLogger log;
  const DistillationLoss loss = [](const Batch&, const torch::Tensor& s, const torch::Tensor& t) {
    EXPECT_FALSE(t.requires_grad());
    return kd_kl_divergence(s, t, 1.0);
  };
  distill_model(student, teacher, data, nullptr, options, loss, progress, log);
  EXPECT_LT(divergence(), 0.5 * initial);

  size_t i = 0;
  for (const auto& p : teacher.parameters()) {
    EXPECT_TRUE(torch::equal(p, before[i++]));
    EXPECT_FALSE(p.grad().defined());
  }
  for (const auto& b : teacher.buffers()) EXPECT_TRUE(torch::equal(b, before[i++]));
  EXPECT_TRUE(teacher.is_training());
}

}  // namespace
}  // namespace mcompress
