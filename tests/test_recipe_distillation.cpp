// The recipe keys distillation adds: a stage's `student:`, `teacher:
// previous`, text datasets and the language-model probes, checked before
// anything runs.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "mcompress/framework/recipe/recipe.h"
#include "test_support.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;

class DistillCatalog : public PassCatalog {
 public:
  DistillCatalog() {
    PassInfo train;
    train.name = "finetune";
    train.kind = PassKind::Train;
    train.needs.train_data = true;
    PassInfo kd;
    kd.name = "kd_standard";
    kd.kind = PassKind::Distill;
    kd.needs.train_data = true;
    kd.needs.teacher = true;
    kd.params = {ParamSpec::Float("temperature", 4.0, 0.1, 100.0, "softmax temperature")};
    for (auto& info : {train, kd}) passes_[info.name] = info;
  }
  const PassInfo* find(const std::string& name) const override {
    auto it = passes_.find(name);
    return it == passes_.end() ? nullptr : &it->second;
  }
  std::vector<std::string> names() const override { return {"finetune", "kd_standard"}; }

 private:
  std::map<std::string, PassInfo> passes_;
};

const std::string kShakespeare = std::string(MCOMPRESS_SOURCE_DIR) + "/tests/data/tinyshakespeare.txt";

class RecipeDistillationTest : public ::testing::Test {
 protected:
  Recipe load(const std::string& text) {
    const fs::path path = dir_.path() / "recipe.yaml";
    testing::write_text(path, text);
    return load_recipe(path.string(), {}, catalog_);
  }

  // All diagnostics of a recipe that must fail, one per line.
  std::string errors(const std::string& text) {
    try {
      load(text);
    } catch (const RecipeError& e) {
      std::string all;
      for (const auto& d : e.diagnostics()) all += format_diagnostic(d) + "\n";
      return all;
    }
    ADD_FAILURE() << "recipe was accepted:\n" << text;
    return "";
  }

  static std::string image_recipe(const std::string& stages) {
    return std::string("mcompress: 1\nmodel: {zoo: cnn}\ndata: {path: ") + MCOMPRESS_FASHION_MNIST_DIR +
           "}\nstages:\n" + stages;
  }
  static std::string text_recipe(const std::string& model, const std::string& stages,
                                 const std::string& data_extra = "") {
    return "mcompress: 1\nmodel: " + model + "\ndata: {dataset: tiny_shakespeare, path: " + kShakespeare +
           data_extra + "}\nstages:\n" + stages;
  }

  testing::TempDir dir_{"recipe-distill"};
  DistillCatalog catalog_;
};

TEST_F(RecipeDistillationTest, StudentsAreZooModelsFilesOrEarlierStages) {
  testing::write_text(dir_.path() / "small.pt", "not read by the validator");
  const Recipe recipe = load(image_recipe(R"(  - {name: train, pass: finetune}
  - name: zoo_student
    pass: kd_standard
    teacher: train
    student: {zoo: mlp, options: {width: 8}}
  - {pass: kd_standard, teacher: previous, student: {path: small.pt}}
  - {pass: kd_standard, teacher: original, student: {stage: train}}
)"));
  ASSERT_EQ(recipe.stages.size(), 4u);
  EXPECT_FALSE(recipe.stages[0].student);
  const StudentSpec& zoo = *recipe.stages[1].student;
  EXPECT_EQ(zoo.zoo, "mlp");
  EXPECT_EQ(zoo.options.at("width"), 8);
  EXPECT_EQ(recipe.stages[2].student->path, (dir_.path() / "small.pt").lexically_normal().string());
  EXPECT_EQ(recipe.stages[2].teacher, "previous");
  EXPECT_EQ(recipe.stages[3].student->stage, "train");

  const auto json = to_json(recipe).at("stages");
  EXPECT_TRUE(json[0].at("student").is_null());
  EXPECT_EQ(json[1].at("student").at("zoo"), "mlp");
  EXPECT_EQ(json[1].at("student").at("options").at("width"), 8);
  EXPECT_TRUE(json[1].at("student").at("path").is_null());
  EXPECT_EQ(json[3].at("student").at("stage"), "train");
  const std::string plan = describe_plan(recipe, catalog_);
  EXPECT_NE(plan.find("student: zoo `mlp` (width=8) with fresh weights"), std::string::npos) << plan;
  EXPECT_NE(plan.find("student: the model of stage `train`"), std::string::npos) << plan;
}

TEST_F(RecipeDistillationTest, BadStudentsAreReportedWhereTheyAreWritten) {
  const std::string problems = errors(image_recipe(R"(  - {pass: kd_standard, teacher: original, student: {zoo: cnnn}}
  - {pass: kd_standard, teacher: original, student: {zoo: cnn, options: {depth: 3}}}
  - {pass: kd_standard, teacher: original, student: {path: missing.pt}}
  - {pass: kd_standard, teacher: original, student: {stage: later}}
  - {pass: kd_standard, teacher: original, student: {zoo: cnn, stage: later}}
  - {pass: kd_standard, teacher: original, student: {path: x.pt, options: {width: 2}}}
  - {name: later, pass: kd_standard, teacher: original, student: mlp}
)"));
  EXPECT_NE(problems.find("recipe.yaml:5:59: error: unknown zoo model `cnnn`; did you mean `cnn`?"),
            std::string::npos) << problems;
  EXPECT_NE(problems.find(":6:"), std::string::npos) << problems;
  EXPECT_NE(problems.find("unknown key `depth`"), std::string::npos) << problems;
  EXPECT_NE(problems.find("model file `missing.pt` not found"), std::string::npos) << problems;
  EXPECT_NE(problems.find("is stage `later`, which does not run before it"), std::string::npos) << problems;
  EXPECT_NE(problems.find("needs exactly one of `zoo`, `path`, `hf` and `stage`"), std::string::npos) << problems;
  EXPECT_NE(problems.find("`options` in the `student` of stage `kd_standard_6` only applies to `zoo`"),
            std::string::npos) << problems;
  EXPECT_NE(problems.find("the `student` of stage `later` must be a mapping"), std::string::npos) << problems;
}

TEST_F(RecipeDistillationTest, TextDataSelectsLanguageModelProbesAndChecksTheModel) {
  const Recipe recipe = load(text_recipe("{zoo: char_lm, options: {context: 128}}",
                                         "  - {pass: finetune}\n", ", context: 128, test_fraction: 0.2"));
  ASSERT_TRUE(recipe.data);
  EXPECT_TRUE(recipe.data->is_text());
  EXPECT_EQ(recipe.data->context, 128);
  EXPECT_DOUBLE_EQ(recipe.data->test_fraction, 0.2);
  EXPECT_EQ(recipe.probes.enabled, (std::vector<std::string>{"accuracy", "perplexity", "text_sample",
                                                             "latency", "params", "macs", "size"}));
  const auto json = to_json(recipe);
  EXPECT_EQ(json.at("data").at("context"), 128);
  EXPECT_EQ(json.at("probes").at("sample_length"), 200);

  const std::string problems =
      errors(text_recipe("{zoo: cnn}", "  - {pass: kd_standard, teacher: original, student: {zoo: char_lm}}\n",
                         ", context: 128"));
  EXPECT_NE(problems.find("zoo model `cnn` classifies images and cannot read text data"), std::string::npos)
      << problems;
  EXPECT_NE(problems.find("zoo model `char_lm` has context 64 but `data.context` is 128"), std::string::npos)
      << problems;
}

TEST_F(RecipeDistillationTest, TextKeysAndProbesNeedTextData) {
  const std::string problems = errors(std::string("mcompress: 1\nmodel: {zoo: char_lm}\ndata: {path: ") +
                                      MCOMPRESS_FASHION_MNIST_DIR +
                                      ", context: 32}\nprobes: {enabled: [perplexity]}\n"
                                      "stages: [{pass: finetune}]\n");
  EXPECT_NE(problems.find("`data.context` only applies to text datasets"), std::string::npos) << problems;
  EXPECT_NE(problems.find("the `perplexity` probe measures language models"), std::string::npos) << problems;
  EXPECT_NE(problems.find("zoo model `char_lm` is a language model and needs text data"), std::string::npos)
      << problems;

  const std::string missing = errors(
      "mcompress: 1\nmodel: {zoo: char_lm}\ndata: {dataset: tiny_shakespeare}\nstages: [{pass: finetune}]\n");
  EXPECT_NE(missing.find("`data.dataset: tiny_shakespeare` needs `path:`"), std::string::npos) << missing;
  const std::string absent = errors(
      "mcompress: 1\nmodel: {zoo: char_lm}\ndata: {dataset: tiny_shakespeare, path: nowhere.txt}\n"
      "stages: [{pass: finetune}]\n");
  EXPECT_NE(absent.find("text file `nowhere.txt` not found"), std::string::npos) << absent;
}

}  // namespace
}  // namespace mcompress
