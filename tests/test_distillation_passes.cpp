// The distillation passes through the CLI with the real plugins: students
// from the zoo, a file or an earlier stage, the teacher left untouched, and
// what each pass records.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace fs = std::filesystem;
using mcompress::testing::read_text;
using mcompress::testing::run_command;
using mcompress::testing::TempDir;
using mcompress::testing::write_text;

namespace {

struct Run {
  mcompress::testing::CommandResult result;
  fs::path dir;
  nlohmann::json report;
};

Run run_recipe(const TempDir& tmp, const std::string& recipe) {
  write_text(tmp.path() / "recipe.yaml", recipe);
  Run run;
  run.dir = tmp.path() / "run";
  run.result = run_command(std::string(MCOMPRESS_CLI) + " run " + (tmp.path() / "recipe.yaml").string() +
                           " --quiet --out " + run.dir.string());
  if (fs::exists(run.dir / "report.json")) run.report = nlohmann::json::parse(read_text(run.dir / "report.json"));
  return run;
}

nlohmann::json record(const Run& run, const std::string& stage) {
  for (const auto& entry : fs::directory_iterator(run.dir / "stages")) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 3 && name.substr(3) == stage)
      return nlohmann::json::parse(read_text(entry.path() / "record.json"));
  }
  return {};
}

double metric(const Run& run, const std::string& stage, const std::string& key) {
  for (const auto& s : run.report.at("stages"))
    if (s.at("name") == stage) return s.at("metrics").at(key).get<double>();
  ADD_FAILURE() << "no stage " << stage;
  return 0.0;
}

std::string image_recipe(const std::string& stages) {
  return std::string(R"(mcompress: 1
seed: 5
threads: 1
model: {zoo: mlp, options: {width: 32}}
data:
  path: )") + MCOMPRESS_FASHION_MNIST_DIR + R"(
  train_limit: 3000
  eval_limit: 500
  validation_size: 500
probes: {enabled: [accuracy, params]}
stages:
  - name: train
    pass: finetune
    params: {epochs: 1, batch_size: 64, optimizer: adam, lr: 0.002}
)" + stages;
}

TEST(KdStandard, TrainsAZooStudentFromTheTeacherAndKeepsTheTeacher) {
  TempDir tmp("kd-standard");
  const auto run = run_recipe(tmp, image_recipe(R"(  - name: distill
    pass: kd_standard
    teacher: train
    student: {zoo: mlp, options: {width: 4}}
    params: {epochs: 2, batch_size: 64, optimizer: adam, lr: 0.005, temperature: 4, alpha: 0.9}
  - name: self
    pass: kd_standard
    teacher: previous
    student: {stage: train}
    params: {max_steps: 5, epochs: 0}
)"));
  ASSERT_EQ(run.result.exit_code, 0) << run.result.output;
  const auto distill = record(run, "distill");
  EXPECT_EQ(distill.at("student").at("zoo"), "mlp");
  const double student_params = distill.at("stats").at("student_params").get<double>();
  const double teacher_params = distill.at("stats").at("teacher_params").get<double>();
  EXPECT_EQ(student_params, metric(run, "distill", "params"));
  EXPECT_EQ(teacher_params, metric(run, "train", "params"));
  EXPECT_LT(student_params, teacher_params / 8);
  // A student with 1/8 of the parameters learns the task from the teacher.
  EXPECT_GT(metric(run, "distill", "accuracy"), 0.6);
  // `student: {stage: train}` starts from the teacher's weights again, and
  // `teacher: previous` is the distilled small model.
  EXPECT_EQ(metric(run, "self", "params"), teacher_params);
  EXPECT_EQ(record(run, "self").at("stats").at("steps"), 5);
}

TEST(KdAttribution, MatchesConvLayersByNameAndTrainsThroughAttributionMaps) {
  TempDir tmp("kd-attribution");
  auto recipe = image_recipe(R"(  - name: distill
    pass: kd_attribution
    teacher: train
    student: {zoo: cnn, options: {width: 2}}
    params: {max_steps: 12, epochs: 0, batch_size: 32, optimizer: adam, lr: 0.003, beta: 5}
  - name: integrated
    pass: kd_attribution
    teacher: train
    student: {zoo: cnn, options: {width: 2}}
    params: {max_steps: 2, epochs: 0, batch_size: 16, attribution: integrated_gradients, ig_steps: 2, attention: false}
)");
  recipe.replace(recipe.find("{zoo: mlp, options: {width: 32}}"), 32, "{zoo: cnn, options: {width: 4}}");
  const auto run = run_recipe(tmp, recipe);
  ASSERT_EQ(run.result.exit_code, 0) << run.result.output;
  const auto stats = record(run, "distill").at("stats");
  EXPECT_EQ(stats.at("student_layers"), nlohmann::json({"conv1", "conv2"}));
  EXPECT_EQ(stats.at("steps"), 12);
  EXPECT_GT(stats.at("mean_attention_distance").get<double>(), 0.0);
  EXPECT_GT(stats.at("mean_attribution_distance").get<double>(), 0.0);
  const auto integrated = record(run, "integrated").at("stats");
  EXPECT_EQ(integrated.at("student_layers"), nlohmann::json::array());
  EXPECT_GT(integrated.at("mean_attribution_distance").get<double>(), 0.0);
}

TEST(KdAttribution, UnknownLayerPairsFailTheStageNamingTheLayers) {
  TempDir tmp("kd-attribution-pairs");
  auto recipe = image_recipe(R"(  - name: distill
    pass: kd_attribution
    teacher: train
    params: {max_steps: 1, epochs: 0, layer_pairs: ["conv1:conv7"]}
)");
  recipe.replace(recipe.find("{zoo: mlp, options: {width: 32}}"), 32, "{zoo: cnn, options: {width: 4}}");
  recipe.replace(recipe.find("epochs: 1,"), 10, "max_steps: 2, epochs: 0,");
  const auto run = run_recipe(tmp, recipe);
  EXPECT_EQ(run.result.exit_code, 1) << run.result.output;
  EXPECT_NE(run.result.output.find("no layer conv7"), std::string::npos) << run.result.output;
  EXPECT_NE(run.result.output.find("conv1, bn1, conv2"), std::string::npos) << run.result.output;
}

TEST(ReverseKld, DistillsALanguageModelOnTextAndOnSampledSequences) {
  TempDir tmp("reverse-kld");
  const auto run = run_recipe(tmp, std::string(R"(mcompress: 1
seed: 3
threads: 1
model: {zoo: char_lm, options: {width: 32, layers: 1, heads: 2, context: 32}}
data:
  dataset: tiny_shakespeare
  path: )") + MCOMPRESS_SOURCE_DIR + R"(/tests/data/tinyshakespeare.txt
  context: 32
  train_limit: 1200
  eval_limit: 100
  validation_size: 100
probes: {enabled: [accuracy, perplexity, text_sample, params], sample_length: 40}
stages:
  - name: teacher
    pass: finetune
    params: {max_steps: 40, epochs: 0, batch_size: 32, optimizer: adam, lr: 0.003}
  - name: student
    pass: reverse_kld
    teacher: teacher
    student: {zoo: char_lm, options: {width: 16, layers: 1, heads: 2, context: 32}}
    params: {max_steps: 8, epochs: 0, batch_size: 16, optimizer: adam, lr: 0.003, on_policy: 0.5, prompt_length: 8}
)");
  ASSERT_EQ(run.result.exit_code, 0) << run.result.output;
  const auto student = record(run, "student");
  EXPECT_EQ(student.at("stats").at("divergence"), "reverse_kl");
  EXPECT_GT(student.at("stats").at("sampled_steps").get<int>(), 0);
  EXPECT_LT(student.at("stats").at("sampled_steps").get<int>(), 8);
  EXPECT_LT(metric(run, "student", "params"), metric(run, "teacher", "params") / 2);
  // Training moved the teacher well below uniform guessing (log2 65 = 6.02 bits).
  EXPECT_LT(metric(run, "teacher", "bits_per_char"), 5.0);
  EXPECT_NEAR(metric(run, "teacher", "perplexity"),
              std::exp2(metric(run, "teacher", "bits_per_char")), 1e-6 * metric(run, "teacher", "perplexity"));
  EXPECT_EQ(student.at("text_sample").at("continuation").get<std::string>().size(), 40u);
  EXPECT_EQ(record(run, "baseline").at("text_sample").at("prompt").get<std::string>().size(), 32u);
}

TEST(ReverseKld, RefusesImageData) {
  TempDir tmp("reverse-kld-images");
  const auto run = run_recipe(tmp, image_recipe(R"(  - {pass: reverse_kld, teacher: train, params: {max_steps: 1, epochs: 0}}
)"));
  EXPECT_EQ(run.result.exit_code, 1) << run.result.output;
  EXPECT_NE(run.result.output.find("reverse_kld distills language models"), std::string::npos)
      << run.result.output;
}

}  // namespace
