// Recipe parsing, --set overrides and validation against a pass catalog.
#include "mcompress/framework/recipe/recipe.h"
#include "recipe/recipe_detail.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "test_support.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;

// Two passes shaped like the real ones: a pruner with defaults for every
// parameter and a distiller that needs a teacher, training data and a value.
class FakeCatalog : public PassCatalog {
 public:
  FakeCatalog() {
    PassInfo prune;
    prune.name = "magnitude_prune";
    prune.summary = "removes the channels with the smallest weights";
    prune.kind = PassKind::Prune;
    prune.params = {
        ParamSpec::Float("sparsity", 0.5, 0.0, 0.95, "fraction of channels to remove"),
        ParamSpec::Choice("scope", "global", {"global", "layer"}, "where to rank channels"),
        ParamSpec::Int("min_channels", 1, 1, std::nullopt, "channels every layer keeps"),
        ParamSpec::Bool("round_to_8", false, "keep channel counts multiples of 8"),
        ParamSpec::StringList("skip", {}, "layers left alone"),
    };
    PassInfo distill;
    distill.name = "kd_standard";
    distill.summary = "distills from a teacher with soft targets";
    distill.kind = PassKind::Distill;
    distill.needs.teacher = true;
    distill.needs.train_data = true;
    distill.params = {
        ParamSpec::Float("temperature", std::nullopt, 0.5, 20.0, "softmax temperature"),
        ParamSpec::Int("epochs", 2, 1, 100, "training epochs"),
        ParamSpec::String("loss", std::string("kl"), "loss name"),
    };
    PassInfo quantize;
    quantize.name = "mlx_quant";
    quantize.summary = "group-wise int4 weights";
    quantize.kind = PassKind::Quantize;
    quantize.needs.calibration_data = true;
    for (auto& info : {prune, distill, quantize}) passes_[info.name] = info;
  }
  const PassInfo* find(const std::string& name) const override {
    auto it = passes_.find(name);
    return it == passes_.end() ? nullptr : &it->second;
  }
  std::vector<std::string> names() const override {
    std::vector<std::string> names;
    for (const auto& [name, info] : passes_) names.push_back(name);
    return names;
  }

 private:
  std::map<std::string, PassInfo> passes_;
};

std::string all_formatted(const std::vector<Diagnostic>& diagnostics) {
  std::string text;
  for (const auto& d : diagnostics) text += format_diagnostic(d) + "\n";
  return text;
}

// Passes when some diagnostic sits at line:column and its message contains `text`.
::testing::AssertionResult HasError(const std::vector<Diagnostic>& diagnostics, int line,
                                    int column, const std::string& text) {
  for (const auto& d : diagnostics)
    if (d.pos.line == line && d.pos.column == column && d.message.find(text) != std::string::npos)
      return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "no error at " << line << ":" << column << " containing \"" << text << "\"; got:\n"
         << all_formatted(diagnostics);
}

class RecipeTest : public ::testing::Test {
 protected:
  fs::path write(const std::string& text, const std::string& name = "recipe.yaml") {
    fs::path path = dir_.path() / name;
    fs::create_directories(path.parent_path());
    testing::write_text(path, text);
    return path;
  }

  Recipe load(const std::string& text, const std::vector<std::string>& overrides = {}) {
    return load_recipe(write(text).string(), overrides, catalog_);
  }

  // The diagnostics of a recipe that must fail.
  std::vector<Diagnostic> errors(const std::string& text,
                                 const std::vector<std::string>& overrides = {}) {
    try {
      load(text, overrides);
    } catch (const RecipeError& e) {
      return e.diagnostics();
    }
    ADD_FAILURE() << "recipe was accepted:\n" << text;
    return {};
  }

  // A directory that looks like Debian's Fashion-MNIST install.
  fs::path fake_dataset() {
    fs::path data = dir_.path() / "fmnist";
    fs::create_directories(data);
    for (const char* file : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"})
      testing::write_text(data / file, "");
    return data;
  }

  testing::TempDir dir_{"recipe"};
  FakeCatalog catalog_;
};

// ---- Valid recipes --------------------------------------------------------------

TEST_F(RecipeTest, ValidRecipeResolvesDefaultsAndExactTypes) {
  Recipe recipe = load(R"(mcompress: 1
seed: 42
threads: 2
model:
  zoo: cnn
  options: {width: 32}
stages:
  - name: prune
    pass: magnitude_prune
    params: {sparsity: 0.3, min_channels: 4, skip: [fc1, fc2]}
)");
  EXPECT_EQ(recipe.version, 1);
  EXPECT_EQ(recipe.name, "recipe");  // the file stem
  EXPECT_EQ(recipe.seed, 42u);
  EXPECT_EQ(recipe.threads, 2);
  EXPECT_EQ(recipe.model.zoo, "cnn");
  EXPECT_EQ(recipe.model.options.at("width"), 32);
  EXPECT_EQ(recipe.model.input_shape, (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(recipe.model.num_classes, 10);
  EXPECT_FALSE(recipe.data.has_value());
  EXPECT_EQ(recipe.source_path, (dir_.path() / "recipe.yaml").lexically_normal().string());
  ASSERT_EQ(recipe.stages.size(), 1u);
  const StageSpec& stage = recipe.stages[0];
  EXPECT_EQ(stage.name, "prune");
  EXPECT_EQ(stage.pass, "magnitude_prune");
  const auto& values = stage.params.values();
  ASSERT_EQ(values.size(), 5u);  // every declared parameter, given or defaulted
  EXPECT_TRUE(std::holds_alternative<double>(values.at("sparsity")));
  EXPECT_DOUBLE_EQ(stage.params.get_float("sparsity"), 0.3);
  EXPECT_TRUE(std::holds_alternative<int64_t>(values.at("min_channels")));
  EXPECT_EQ(stage.params.get_int("min_channels"), 4);
  EXPECT_EQ(stage.params.get_string("scope"), "global");
  EXPECT_FALSE(stage.params.get_bool("round_to_8"));
  EXPECT_EQ(stage.params.get_strings("skip"), (std::vector<std::string>{"fc1", "fc2"}));
  EXPECT_FALSE(stage.teacher.has_value());
}

TEST_F(RecipeTest, IntegerLiteralForFloatBecomesDouble) {
  fake_dataset();
  Recipe recipe = load(R"(mcompress: 1
model: {zoo: mlp}
data: {path: fmnist}
teacher: original
stages:
  - pass: kd_standard
    params: {temperature: 3}
)");
  const auto& values = recipe.stages.at(0).params.values();
  ASSERT_TRUE(std::holds_alternative<double>(values.at("temperature")));
  EXPECT_DOUBLE_EQ(std::get<double>(values.at("temperature")), 3.0);
  EXPECT_EQ(std::get<int64_t>(values.at("epochs")), 2);
  EXPECT_EQ(std::get<std::string>(values.at("loss")), "kl");
  EXPECT_EQ(recipe.stages[0].teacher, std::optional<std::string>("original"));
  ASSERT_TRUE(recipe.data.has_value());
  EXPECT_EQ(recipe.data->path, (dir_.path() / "fmnist").string());
  EXPECT_EQ(recipe.data->calibration_size, 512);
}

TEST_F(RecipeTest, SectionDefaults) {
  Recipe recipe = load(R"(mcompress: 1
model: {zoo: cnn}
stages: [{pass: magnitude_prune}]
)");
  // Without data there is nothing to measure accuracy on.
  EXPECT_EQ(recipe.probes.enabled, (std::vector<std::string>{"latency", "params", "macs", "size"}));
  EXPECT_EQ(recipe.probes.latency_batch_sizes, (std::vector<int64_t>{1, 64}));
  EXPECT_EQ(recipe.probes.latency_runs, 30);
  EXPECT_FALSE(recipe.default_gate.max_accuracy_drop.has_value());
  EXPECT_EQ(recipe.default_gate.reference, "previous");
  EXPECT_EQ(recipe.default_gate.on_fail, OnGateFail::Rollback);
  EXPECT_EQ(recipe.seed, 0u);
  EXPECT_EQ(recipe.threads, 0);
  EXPECT_EQ(recipe.stages.at(0).params.get_float("sparsity"), 0.5);
}

TEST_F(RecipeTest, DataSectionEnablesAccuracyAndGates) {
  fake_dataset();
  Recipe recipe = load(R"(mcompress: 1
name: gated
model: {zoo: cnn}
data: {path: fmnist, train_limit: 1000}
probes: {enabled: [accuracy, params], eval_batch_size: 128}
gate: {max_accuracy_drop: 0.01, on_fail: stop}
stages:
  - {name: light, pass: magnitude_prune, params: {sparsity: 0.2}}
  - name: heavy
    pass: magnitude_prune
    gate: {max_accuracy_drop: 0.05, reference: light}
)");
  EXPECT_EQ(recipe.name, "gated");
  EXPECT_EQ(recipe.data->train_limit, 1000);
  EXPECT_EQ(recipe.probes.enabled, (std::vector<std::string>{"accuracy", "params"}));
  EXPECT_EQ(recipe.probes.eval_batch_size, 128);
  EXPECT_EQ(recipe.stages[0].gate.max_accuracy_drop, 0.01);
  EXPECT_EQ(recipe.stages[0].gate.on_fail, OnGateFail::Stop);
  // Stage gate fields override the default field by field.
  EXPECT_EQ(recipe.stages[1].gate.max_accuracy_drop, 0.05);
  EXPECT_EQ(recipe.stages[1].gate.reference, "light");
  EXPECT_EQ(recipe.stages[1].gate.on_fail, OnGateFail::Stop);
}

TEST_F(RecipeTest, StageNamesDefaultToPassWithSuffixForRepeats) {
  Recipe recipe = load(R"(mcompress: 1
model: {zoo: cnn}
stages:
  - pass: magnitude_prune
  - {name: custom, pass: magnitude_prune}
  - pass: magnitude_prune
  - pass: magnitude_prune
)");
  std::vector<std::string> names;
  for (const auto& stage : recipe.stages) names.push_back(stage.name);
  EXPECT_EQ(names, (std::vector<std::string>{"magnitude_prune", "custom", "magnitude_prune_2",
                                             "magnitude_prune_3"}));
}

TEST_F(RecipeTest, ModelPathIsResolvedAgainstTheRecipeDirectory) {
  write("not really torchscript", "configs/models/net.pt");
  fs::path recipe_path = write(R"(mcompress: 1
model: {path: models/net.pt, input_shape: [3, 32, 32], num_classes: 100}
stages: [{pass: magnitude_prune}]
)",
                               "configs/recipe.yaml");
  Recipe recipe = load_recipe(recipe_path.string(), {}, catalog_);
  EXPECT_EQ(recipe.model.path, (dir_.path() / "configs/models/net.pt").lexically_normal().string());
  EXPECT_TRUE(fs::path(recipe.model.path).is_absolute());
  EXPECT_TRUE(recipe.model.zoo.empty());
  EXPECT_EQ(recipe.model.input_shape, (std::vector<int64_t>{3, 32, 32}));
  EXPECT_EQ(recipe.model.num_classes, 100);
}

TEST_F(RecipeTest, TeacherFileAndEarlierStageResolve) {
  write("x", "teacher.pt");
  fake_dataset();
  Recipe recipe = load(R"(mcompress: 1
model: {zoo: cnn}
data: {path: fmnist}
stages:
  - {name: prune, pass: magnitude_prune}
  - {name: kd1, pass: kd_standard, teacher: teacher.pt, params: {temperature: 2}}
  - {name: kd2, pass: kd_standard, teacher: prune, params: {temperature: 2}}
)");
  EXPECT_EQ(recipe.stages[1].teacher, (dir_.path() / "teacher.pt").string());
  EXPECT_EQ(recipe.stages[2].teacher, std::optional<std::string>("prune"));
}

// ---- One error kind at a time, with its position ---------------------------------

TEST_F(RecipeTest, UnknownTopLevelKeySuggestsTheClosest) {
  auto e = errors(R"(mcompress: 1
model: {zoo: cnn}
sead: 3
stages: [{pass: magnitude_prune}]
)");
  ASSERT_EQ(e.size(), 1u) << all_formatted(e);
  EXPECT_TRUE(HasError(e, 3, 1, "unknown key `sead` in the recipe; did you mean `seed`?"));
  EXPECT_EQ(e[0].file, (dir_.path() / "recipe.yaml").string());
}

TEST_F(RecipeTest, UnknownSectionKeySuggestsTheClosest) {
  auto e = errors(R"(mcompress: 1
model:
  zoo: cnn
  num_clases: 10
probes: {latency_run: 3}
stages: [{pass: magnitude_prune}]
)");
  EXPECT_TRUE(
      HasError(e, 4, 3, "unknown key `num_clases` in `model`; did you mean `num_classes`?"));
  EXPECT_TRUE(HasError(e, 5, 10, "did you mean `latency_runs`?"));
}

TEST_F(RecipeTest, UnknownPassSuggestsAmongCatalogNames) {
  auto e = errors(R"(mcompress: 1
model: {zoo: cnn}
stages:
  - pass: magnitude_prun
)");
  ASSERT_EQ(e.size(), 1u) << all_formatted(e);
  EXPECT_TRUE(HasError(e, 4, 11, "unknown pass `magnitude_prun`; did you mean `magnitude_prune`?"));
  EXPECT_NE(e[0].message.find("`kd_standard`"), std::string::npos);  // lists what exists
}

TEST_F(RecipeTest, MisspelledParameterSuggestsAmongThePassParameters) {
  auto e = errors(R"(mcompress: 1
model: {zoo: cnn}
stages:
  - name: prune
    pass: magnitude_prune
    params:
      sparsty: 0.3
)");
  ASSERT_EQ(e.size(), 1u) << all_formatted(e);
  EXPECT_TRUE(HasError(e, 7, 7,
                       "unknown parameter `sparsty` in stage `prune` (pass "
                       "`magnitude_prune`); did you mean `sparsity`?"));
}

TEST_F(RecipeTest, ParameterNextToPassIsPointedUnderParams) {
  auto e = errors(R"(mcompress: 1
model: {zoo: cnn}
stages:
  - pass: magnitude_prune
    sparsity: 0.3
)");
  EXPECT_TRUE(
      HasError(e, 5, 5, "is a parameter of pass `magnitude_prune`: put it under `params:`"));
}

TEST_F(RecipeTest, WrongParameterTypes) {
  auto e = errors(R"(mcompress: 1
model: {zoo: cnn}
stages:
  - pass: magnitude_prune
    params:
      sparsity: high
      min_channels: 0.5
      round_to_8: yes
      scope: local
      skip: fc1
  - pass: magnitude_prune
    params: {sparsity: "0.5", skip: [[a]]}
)");
  EXPECT_TRUE(HasError(e, 6, 17,
                       "parameter `sparsity` of pass `magnitude_prune` must be a number "
                       "in [0, 0.95], got `high`"));
  EXPECT_TRUE(HasError(e, 7, 21, "must be an integer >= 1, got `0.5`"));
  EXPECT_TRUE(HasError(e, 8, 19, "must be `true` or `false`, got `yes`"));
  EXPECT_TRUE(HasError(e, 9, 14,
                       "must be one of `global`, `layer`, got `local`; did you mean "
                       "`global`?"));
  EXPECT_TRUE(HasError(e, 10, 13, "must be a list of strings such as `[a, b]`, got `fc1`"));
  EXPECT_TRUE(HasError(e, 12, 24, "got the string \"0.5\""));
  EXPECT_TRUE(HasError(e, 12, 38,
                       "must be a list of strings such as `[a, b]`, got an item that "
                       "is a list"));
  EXPECT_EQ(e.size(), 7u) << all_formatted(e);
}

TEST_F(RecipeTest, OutOfRangeSaysTheRange) {
  auto e = errors(R"(mcompress: 1
model: {zoo: cnn}
stages:
  - pass: magnitude_prune
    params: {sparsity: 0.99, min_channels: 0}
)");
  EXPECT_TRUE(HasError(e, 5, 24,
                       "parameter `sparsity` of pass `magnitude_prune` = 0.99 is out of "
                       "range: it must be in [0, 0.95]"));
  EXPECT_TRUE(HasError(e, 5, 44, "= 0 is out of range: it must be >= 1"));
  EXPECT_EQ(e.size(), 2u) << all_formatted(e);
}

TEST_F(RecipeTest, BoundsAreInclusive) {
  Recipe recipe = load(R"(mcompress: 1
model: {zoo: cnn}
stages: [{pass: magnitude_prune, params: {sparsity: 0.95, min_channels: 1}}]
)");
  EXPECT_DOUBLE_EQ(recipe.stages[0].params.get_float("sparsity"), 0.95);
}

TEST_F(RecipeTest, MissingRequiredParameter) {
  fake_dataset();
  auto e = errors(R"(mcompress: 1
model: {zoo: cnn}
data: {path: fmnist}
teacher: original
stages:
  - name: distill
    pass: kd_standard
)");
  ASSERT_EQ(e.size(), 1u) << all_formatted(e);
  EXPECT_TRUE(HasError(e, 7, 5,
                       "stage `distill`: pass `kd_standard` requires parameter "
                       "`temperature` (float in [0.5, 20]; softmax temperature); add "
                       "`temperature: <value>` under `params:`"));
}

TEST_F(RecipeTest, MissingTeacherSaysHowToAddOne) {
  fake_dataset();
  auto e = errors(R"(mcompress: 1
model: {zoo: cnn}
data: {path: fmnist}
stages:
  - pass: kd_standard
    params: {temperature: 4}
)");
  ASSERT_EQ(e.size(), 1u) << all_formatted(e);
  EXPECT_TRUE(HasError(e, 5, 5,
                       "stage `kd_standard`: pass `kd_standard` needs a teacher; add "
                       "`teacher: original`"));
}

TEST_F(RecipeTest, RecipeLevelTeacherIsInheritedByStagesThatNeedOne) {
  fake_dataset();
  Recipe recipe = load(R"(mcompress: 1
model: {zoo: cnn}
data: {path: fmnist}
teacher: original
stages:
  - pass: magnitude_prune
  - {pass: kd_standard, params: {temperature: 4}}
)");
  EXPECT_EQ(recipe.teacher, std::optional<std::string>("original"));
  EXPECT_FALSE(recipe.stages[0].teacher.has_value());  // the pruner does not use one
  EXPECT_EQ(recipe.stages[1].teacher, std::optional<std::string>("original"));
}

TEST_F(RecipeTest, MissingDataSectionForTrainingAndCalibration) {
  auto e = errors(R"(mcompress: 1
model: {zoo: cnn}
teacher: original
stages:
  - {pass: kd_standard, params: {temperature: 4}}
  - pass: mlx_quant
)");
  EXPECT_TRUE(HasError(e, 5, 6,
                       "pass `kd_standard` needs training data, but the recipe has no "
                       "`data:` section"));
  EXPECT_TRUE(HasError(e, 6, 5, "pass `mlx_quant` needs calibration data"));
  EXPECT_EQ(e.size(), 2u) << all_formatted(e);
}

TEST_F(RecipeTest, MissingFilesAreReportedWithTheResolvedPath) {
  auto e = errors(R"(mcompress: 1
model: {path: nets/missing.pt}
data:
  path: no-such-dir
stages:
  - {pass: kd_standard, teacher: teachers/t.pt, params: {temperature: 4}}
)");
  EXPECT_TRUE(HasError(e, 2, 15,
                       "model file `nets/missing.pt` not found (looked for " +
                           (dir_.path() / "nets/missing.pt").string()));
  EXPECT_TRUE(HasError(e, 4, 9, "apt-get install dataset-fashion-mnist"));
  EXPECT_TRUE(HasError(e, 4, 9, "missing train-images-idx3-ubyte.gz"));
  EXPECT_TRUE(HasError(e, 6, 34, "no file at " + (dir_.path() / "teachers/t.pt").string()));
  EXPECT_EQ(e.size(), 3u) << all_formatted(e);
}

TEST_F(RecipeTest, DuplicateStageNames) {
  auto e = errors(R"(mcompress: 1
model: {zoo: cnn}
stages:
  - name: prune
    pass: magnitude_prune
  - name: prune
    pass: magnitude_prune
)");
  ASSERT_EQ(e.size(), 1u) << all_formatted(e);
  EXPECT_TRUE(HasError(e, 6, 11, "duplicate stage name `prune` (first used at line 4)"));
}

TEST_F(RecipeTest, ReferencesMustNameEarlierStages) {
  fake_dataset();
  auto e = errors(R"(mcompress: 1
model: {zoo: cnn}
data: {path: fmnist}
stages:
  - name: first
    pass: kd_standard
    teacher: second
    params: {temperature: 4}
  - name: second
    pass: magnitude_prune
    gate: {reference: second}
  - name: third
    pass: magnitude_prune
    gate: {reference: secnd}
)");
  EXPECT_TRUE(HasError(e, 7, 14,
                       "the teacher of stage `first` is stage `second`, which does not "
                       "run before it"));
  EXPECT_TRUE(HasError(e, 11, 23,
                       "the gate of stage `second` compares against stage `second`, "
                       "which does not run before it"));
  EXPECT_TRUE(HasError(e, 14, 23,
                       "the gate reference of stage `third`, `secnd`, is not a stage; "
                       "did you mean `second`?"));
  EXPECT_EQ(e.size(), 3u) << all_formatted(e);
}

TEST_F(RecipeTest, RecipeLevelReferencesMustRunBeforeTheStagesInheritingThem) {
  fake_dataset();
  auto e = errors(R"(mcompress: 1
model: {zoo: cnn}
data: {path: fmnist}
teacher: late
gate: {reference: late}
stages:
  - {pass: kd_standard, params: {temperature: 4}}
  - {name: late, pass: magnitude_prune}
)");
  EXPECT_TRUE(HasError(e, 4, 10,
                       "the recipe-level teacher `late` is a stage that does not run "
                       "before `kd_standard`"));
  EXPECT_TRUE(HasError(e, 5, 19, "does not run before `kd_standard`, `late`"));
  EXPECT_EQ(e.size(), 2u) << all_formatted(e);
}

TEST_F(RecipeTest, ModelNeedsExactlyOneSource) {
  write("x", "net.pt");
  auto both = errors(R"(mcompress: 1
model: {zoo: cnn, path: net.pt}
stages: [{pass: magnitude_prune}]
)");
  EXPECT_TRUE(HasError(both, 2, 19, "needs exactly one of `zoo:` (a built-in model), `path:`"));
  auto neither = errors(R"(mcompress: 1
model:
  num_classes: 10
stages: [{pass: magnitude_prune}]
)");
  EXPECT_TRUE(HasError(neither, 2, 1, "needs exactly one of `zoo:`"));
}

TEST_F(RecipeTest, ZooModelAndOptionsAreChecked) {
  auto e = errors(R"(mcompress: 1
model:
  zoo: resnet
  options: {widht: 8, blocks: 0}
stages: [{pass: magnitude_prune}]
)");
  EXPECT_TRUE(HasError(e, 4, 13,
                       "unknown key `widht` in `model.options` (options of zoo model "
                       "`resnet`); did you mean `width`?"));
  EXPECT_TRUE(HasError(e, 4, 31, "`model.options.blocks` = 0 is out of range"));
  auto unknown = errors(R"(mcompress: 1
model: {zoo: cnnn}
stages: [{pass: magnitude_prune}]
)");
  EXPECT_TRUE(HasError(unknown, 2, 14, "unknown zoo model `cnnn`; did you mean `cnn`?"));
}

TEST_F(RecipeTest, ProbesAndGateAreChecked) {
  auto e = errors(R"(mcompress: 1
model: {zoo: cnn}
probes:
  enabled: [latncy, accuracy]
  latency_batch_sizes: [1, 0]
gate: {max_accuracy_drop: 2, on_fail: explode}
stages: [{pass: magnitude_prune}]
)");
  EXPECT_TRUE(HasError(e, 4, 13, "unknown probe `latncy`; did you mean `latency`?"));
  EXPECT_TRUE(HasError(e, 4, 21, "the `accuracy` probe needs evaluation data"));
  EXPECT_TRUE(HasError(e, 5, 28, "`probes.latency_batch_sizes[1]` = 0 is out of range"));
  EXPECT_TRUE(HasError(e, 6, 27,
                       "`gate.max_accuracy_drop` (a fraction: 0.01 = 1 accuracy point) "
                       "= 2 is out of range: it must be in [0, 1]"));
  EXPECT_TRUE(HasError(e, 6, 39, "must be one of `rollback`, `stop`, got `explode`"));
  EXPECT_EQ(e.size(), 5u) << all_formatted(e);
}

TEST_F(RecipeTest, AccuracyGateWithoutDataIsAnError) {
  auto e = errors(R"(mcompress: 1
model: {zoo: cnn}
gate: {max_accuracy_drop: 0.01}
stages: [{pass: magnitude_prune}]
)");
  ASSERT_EQ(e.size(), 1u) << all_formatted(e);
  EXPECT_TRUE(HasError(e, 3, 8, "`max_accuracy_drop` needs evaluation data"));
}

TEST_F(RecipeTest, WrongTopLevelTypes) {
  auto e = errors(R"(mcompress: 1
seed: -1
threads: two
model: {zoo: cnn, input_shape: 28}
stages: {pass: magnitude_prune}
)");
  EXPECT_TRUE(HasError(e, 2, 7, "`seed` = -1 is out of range: it must be >= 0"));
  EXPECT_TRUE(HasError(e, 3, 10, "`threads` (0 = all cores) must be an integer"));
  EXPECT_TRUE(HasError(e, 4, 32, "`model.input_shape` must be a non-empty list of integers"));
  EXPECT_TRUE(HasError(e, 5, 9, "`stages` must be a non-empty list"));
  EXPECT_EQ(e.size(), 4u) << all_formatted(e);
}

TEST_F(RecipeTest, DuplicateKeysAreReported) {
  auto e = errors(R"(mcompress: 1
model: {zoo: cnn}
seed: 1
seed: 2
stages: [{pass: magnitude_prune}]
)");
  ASSERT_EQ(e.size(), 1u) << all_formatted(e);
  EXPECT_TRUE(HasError(e, 4, 1, "`seed` appears twice in the recipe (first at line 3)"));
}

TEST_F(RecipeTest, MissingRequiredSections) {
  auto e = errors("mcompress: 1\nseed: 3\n");
  EXPECT_TRUE(HasError(e, 1, 1, "the recipe has no `model:` section"));
  EXPECT_TRUE(HasError(e, 1, 1, "the recipe has no `stages:`"));
  EXPECT_EQ(e.size(), 2u) << all_formatted(e);
}

// ---- Whole-file problems -------------------------------------------------------

TEST_F(RecipeTest, YamlSyntaxErrorIsOneDiagnosticWithPosition) {
  auto e = errors(R"(mcompress: 1
model: {zoo: cnn
stages: [{pass: magnitude_prune}]
)");
  ASSERT_EQ(e.size(), 1u) << all_formatted(e);
  // yaml-cpp notices the unclosed `{` where the next mapping value starts.
  EXPECT_TRUE(HasError(e, 3, 7, "YAML syntax error: end of map flow not found"));
  auto indent = errors("mcompress: 1\nmodel: cnn\n  zoo: cnn\n");
  ASSERT_EQ(indent.size(), 1u) << all_formatted(indent);
  EXPECT_TRUE(HasError(indent, 3, 6, "YAML syntax error: illegal map value"));
}

TEST_F(RecipeTest, MissingRecipeFile) {
  std::string path = (dir_.path() / "nope.yaml").string();
  try {
    load_recipe(path, {}, catalog_);
    FAIL() << "missing recipe accepted";
  } catch (const RecipeError& e) {
    ASSERT_EQ(e.diagnostics().size(), 1u);
    EXPECT_EQ(e.diagnostics()[0].file, path);
    EXPECT_EQ(e.diagnostics()[0].pos.line, 0);
    EXPECT_EQ(std::string(e.what()), path + ": error: recipe file not found; check the path");
  }
}

TEST_F(RecipeTest, EmptyRecipe) {
  auto e = errors("# nothing yet\n");
  ASSERT_EQ(e.size(), 1u) << all_formatted(e);
  EXPECT_NE(e[0].message.find("the recipe is empty"), std::string::npos);
}

TEST_F(RecipeTest, VersionMismatchIsTheOnlyErrorReported) {
  auto e = errors(R"(mcompress: 2
model: {zoo: cnn}
pipeline: [whatever]
)");
  ASSERT_EQ(e.size(), 1u) << all_formatted(e);
  EXPECT_TRUE(HasError(e, 1, 12,
                       "this recipe is format version 2, but this mcompress reads "
                       "recipe format version 1 only"));
}

TEST_F(RecipeTest, MissingVersion) {
  auto e = errors(R"(model: {zoo: cnn}
stages: [{pass: magnitude_prune}]
)");
  ASSERT_EQ(e.size(), 1u) << all_formatted(e);
  EXPECT_TRUE(HasError(e, 1, 1, "add `mcompress: 1` as its first line"));
}

TEST_F(RecipeTest, AllProblemsAreReportedTogetherInFileOrder) {
  try {
    load(R"(mcompress: 1
model: {zoo: cnn}
sead: 1
stages:
  - pass: magnitude_prune
    params: {sparsity: 2}
  - pass: kd_standerd
)");
    FAIL() << "accepted";
  } catch (const RecipeError& e) {
    const auto& d = e.diagnostics();
    ASSERT_EQ(d.size(), 3u) << e.what();
    EXPECT_EQ(d[0].pos.line, 3);
    EXPECT_EQ(d[1].pos.line, 6);
    EXPECT_EQ(d[2].pos.line, 7);
    EXPECT_NE(d[2].message.find("did you mean `kd_standard`?"), std::string::npos);
    // what() carries every formatted diagnostic, one per line.
    std::string what = e.what();
    EXPECT_EQ(std::count(what.begin(), what.end(), '\n'), 2);
    EXPECT_NE(what.find(":6:24: error: "), std::string::npos) << what;
  }
}

// ---- --set overrides ------------------------------------------------------------

const char* kTwoStages = R"(mcompress: 1
model: {zoo: cnn}
stages:
  - name: prune
    pass: magnitude_prune
    params: {sparsity: 0.5}
  - pass: magnitude_prune
)";

TEST_F(RecipeTest, OverrideByStageNameIndexAndDefaultName) {
  Recipe recipe =
      load(kTwoStages, {"stages.prune.params.sparsity=0.3", "stages.1.params.scope=layer",
                        "stages.magnitude_prune.params.min_channels=8", "seed=7",
                        "probes.latency_runs=3", "name=tuned"});
  EXPECT_DOUBLE_EQ(recipe.stages[0].params.get_float("sparsity"), 0.3);
  EXPECT_EQ(recipe.stages[1].params.get_string("scope"), "layer");
  EXPECT_EQ(recipe.stages[1].params.get_int("min_channels"), 8);
  EXPECT_EQ(recipe.seed, 7u);
  EXPECT_EQ(recipe.probes.latency_runs, 3);
  EXPECT_EQ(recipe.name, "tuned");
}

TEST_F(RecipeTest, OverrideValueIsYaml) {
  Recipe recipe = load(kTwoStages, {"stages.0.params={sparsity: 0.1, skip: [a, b]}",
                                    "model.input_shape=[1, 32, 32]"});
  EXPECT_DOUBLE_EQ(recipe.stages[0].params.get_float("sparsity"), 0.1);
  EXPECT_EQ(recipe.stages[0].params.get_strings("skip"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(recipe.model.input_shape, (std::vector<int64_t>{1, 32, 32}));
}

TEST_F(RecipeTest, MalformedOverridesAndUnknownStages) {
  auto e = errors(kTwoStages,
                  {"seed", "stages.pune.params.sparsity=0.3", "stages.5.name=x", "model..zoo=cnn",
                   "seed=[1, 2", "model.zoo.kind=big", "stages.99999999999999999999.name=x"});
  ASSERT_EQ(e.size(), 7u) << all_formatted(e);
  for (const auto& d : e) {
    EXPECT_EQ(d.file, "--set");
    EXPECT_EQ(d.pos.line, 0);
  }
  EXPECT_EQ(format_diagnostic(e[0]),
            "--set: error: in `--set seed`: malformed override; write "
            "KEY.PATH=VALUE, e.g. `stages.prune.params.sparsity=0.3` or "
            "`seed=7`");
  EXPECT_NE(e[1].message.find("in `--set stages.pune.params.sparsity=0.3`: `stages` has no stage "
                              "named `pune`; did you mean `prune`?"),
            std::string::npos);
  EXPECT_NE(e[2].message.find("index 5 is out of range: `stages` has 2 entries"),
            std::string::npos);
  EXPECT_NE(e[3].message.find("empty segment"), std::string::npos);
  EXPECT_NE(e[4].message.find("the value is not valid YAML"), std::string::npos);
  EXPECT_NE(e[5].message.find("`model.zoo` is a single value, not a section"), std::string::npos);
  EXPECT_NE(e[6].message.find("index 99999999999999999999 is out of range"), std::string::npos);
}

TEST_F(RecipeTest, InvalidOverriddenValuesPointAtTheOverride) {
  auto e = errors(kTwoStages, {"stages.prune.params.sparsity=0.99",
                               "stages.prune.params.sparsty=0.2", "seed=abc"});
  ASSERT_EQ(e.size(), 3u) << all_formatted(e);
  for (const auto& d : e) EXPECT_EQ(d.file, "--set") << format_diagnostic(d);
  std::string all = all_formatted(e);
  EXPECT_NE(all.find("in `--set stages.prune.params.sparsity=0.99`: parameter `sparsity` of pass "
                     "`magnitude_prune` = 0.99 is out of range"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("in `--set stages.prune.params.sparsty=0.2`: unknown parameter `sparsty`"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("in `--set seed=abc`: `seed` must be an integer"), std::string::npos) << all;
}

TEST_F(RecipeTest, OverrideCreatesMissingSections) {
  fake_dataset();
  Recipe recipe = load(
      kTwoStages, {"data.path=fmnist", "data.eval_limit=100", "stages.1.params.sparsity=0.25"});
  ASSERT_TRUE(recipe.data.has_value());
  EXPECT_EQ(recipe.data->eval_limit, 100);
  EXPECT_DOUBLE_EQ(recipe.stages[1].params.get_float("sparsity"), 0.25);
}

// ---- Presenting -----------------------------------------------------------------

TEST_F(RecipeTest, ToJsonHasEverySectionWithJsonTypes) {
  fake_dataset();
  Recipe recipe = load(R"(mcompress: 1
model: {zoo: cnn, options: {width: 8}}
data: {path: fmnist}
teacher: original
stages:
  - {name: prune, pass: magnitude_prune, params: {skip: [fc]}}
  - {name: kd, pass: kd_standard, params: {temperature: 3}}
)");
  nlohmann::json json = to_json(recipe);
  EXPECT_EQ(json["mcompress"], 1);
  EXPECT_EQ(json["model"]["zoo"], "cnn");
  EXPECT_TRUE(json["model"]["path"].is_null());
  EXPECT_EQ(json["model"]["options"]["width"], 8);
  EXPECT_EQ(json["data"]["calibration_size"], 512);
  EXPECT_EQ(json["probes"]["enabled"].size(), 5u);
  EXPECT_TRUE(json["gate"]["max_accuracy_drop"].is_null());
  EXPECT_EQ(json["gate"]["on_fail"], "rollback");
  const auto& prune = json["stages"][0];
  EXPECT_TRUE(prune["params"]["sparsity"].is_number_float());
  EXPECT_TRUE(prune["params"]["min_channels"].is_number_integer());
  EXPECT_TRUE(prune["params"]["round_to_8"].is_boolean());
  EXPECT_EQ(prune["params"]["scope"], "global");
  EXPECT_EQ(prune["params"]["skip"], nlohmann::json::array({"fc"}));
  EXPECT_TRUE(prune["teacher"].is_null());
  const auto& kd = json["stages"][1];
  EXPECT_TRUE(kd["params"]["temperature"].is_number_float());
  EXPECT_EQ(kd["teacher"], "original");
}

TEST_F(RecipeTest, DescribePlanListsEveryStageWithDefaultsMarked) {
  Recipe recipe = load(R"(mcompress: 1
model: {zoo: cnn}
stages:
  - {name: prune, pass: magnitude_prune, params: {sparsity: 0.3}}
)");
  std::string plan = describe_plan(recipe, catalog_);
  EXPECT_NE(plan.find("zoo `cnn`"), std::string::npos) << plan;
  EXPECT_NE(plan.find("stage 1/1 `prune`: pass magnitude_prune (prune)"), std::string::npos)
      << plan;
  // Declaration order, defaults marked.
  EXPECT_NE(plan.find("      sparsity     = 0.3\n"
                      "      scope        = global  (default)\n"
                      "      min_channels = 1  (default)\n"),
            std::string::npos)
      << plan;
  EXPECT_NE(plan.find("gate: no accuracy limit vs previous; on failure: rollback"),
            std::string::npos)
      << plan;
}

// ---- Helpers --------------------------------------------------------------------

TEST(ClosestMatch, FindsTyposButNotUnrelatedWords) {
  std::vector<std::string> names{"magnitude_prune", "gradient_prune", "kd_standard"};
  EXPECT_EQ(closest_match("magnitude_prun", names), std::optional<std::string>("magnitude_prune"));
  EXPECT_EQ(closest_match("gradeint_prune", names), std::optional<std::string>("gradient_prune"));
  EXPECT_EQ(closest_match("KD_Standard", names), std::optional<std::string>("kd_standard"));
  EXPECT_EQ(closest_match("quantize", names), std::nullopt);
  EXPECT_EQ(closest_match("x", {"seed"}), std::nullopt);
  EXPECT_EQ(closest_match("anything", {}), std::nullopt);
}

TEST(FormatDiagnostic, FileLineColumn) {
  EXPECT_EQ(format_diagnostic({"r.yaml", {3, 7}, "bad"}), "r.yaml:3:7: error: bad");
  EXPECT_EQ(format_diagnostic({"--set", {}, "bad"}), "--set: error: bad");
}

TEST(AssignStageNames, SkipsNamesAlreadyTaken) {
  auto names = recipe_detail::assign_stage_names({std::nullopt, std::string("p_2"), std::nullopt},
                                                 {"p", "p", "p"});
  EXPECT_EQ(names, (std::vector<std::string>{"p", "p_2", "p_3"}));
}

}  // namespace
}  // namespace mcompress
