// The catalogue of malformed inputs: each is fed to the real `mcompress`
// CLI, which must refuse it with exit code 2, name the offending input and
// say what is wrong, never die of a signal or hang, and leave no output.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <vector>

#include "test_support.h"

namespace fs = std::filesystem;
using mcompress::testing::read_text;
using mcompress::testing::run_command;
using mcompress::testing::TempDir;
using mcompress::testing::write_text;

namespace {

const fs::path kGoodPlugins = fs::path(MCOMPRESS_TEST_PLUGIN_DIR) / "good";
const fs::path kBadPlugins = fs::path(MCOMPRESS_TEST_PLUGIN_DIR) / "bad";

// A small recipe that would run; each case breaks one thing in it.
// Line numbers (1-based) are what the diagnostics name.
const std::string kRecipe = std::string(R"(mcompress: 1
name: bad_input
seed: 1
threads: 1
model:
  zoo: mlp
  options: {width: 8}
data:
  path: )") + MCOMPRESS_FASHION_MNIST_DIR + R"(
  train_limit: 200
  eval_limit: 100
  validation_size: 20
  calibration_size: 20
probes:
  enabled: [params]
stages:
  - name: train
    pass: finetune
    params: {epochs: 1, batch_size: 32, lr: 0.01}
)";

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  if (at == std::string::npos) throw std::logic_error("test recipe has no '" + from + "'");
  return text.replace(at, from.size(), to);
}

// A recipe that takes its model from `model.pt` next to it.
std::string recipe_with_model_file() {
  return replaced(kRecipe, "  zoo: mlp\n  options: {width: 8}\n", "  path: model.pt\n");
}

// A recipe whose Fashion-MNIST is the `idx` folder next to it.
std::string recipe_with_data_dir() {
  return replaced(kRecipe, std::string("path: ") + MCOMPRESS_FASHION_MNIST_DIR, "path: idx");
}

// The test's scratch folder and the command line pieces that point into it.
class Workspace {
 public:
  explicit Workspace(const fs::path& dir) : dir_(dir) {}
  const fs::path& dir() const { return dir_; }
  fs::path out() const { return dir_ / "out"; }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::string file(const std::string& name, const std::string& content) const {
    write_text(dir_ / name, content);
    return path(name);
  }
  // `mcompress run` of a recipe with this text.
  std::string run(const std::string& recipe_text, const std::string& extra = "") const {
    return "run " + file("recipe.yaml", recipe_text) + " --out " + out().string() + " --no-tracking " + extra;
  }
  std::string compare(const std::string& sweep_text, const std::string& extra = "") const {
    file("recipe.yaml", kRecipe);
    return "compare " + file("sweep.yaml", sweep_text) + " --out " + out().string() + " --no-tracking " + extra;
  }
  // A copy of a library in a fresh plugin folder, with the given modes.
  fs::path plugin_folder(const fs::path& library, fs::perms folder_mode, fs::perms file_mode) const {
    const fs::path folder = dir_ / "plugins";
    fs::create_directories(folder);
    fs::copy_file(library, folder / library.filename(), fs::copy_options::overwrite_existing);
    fs::permissions(folder / library.filename(), file_mode);
    fs::permissions(folder, folder_mode);
    return folder;
  }

 private:
  fs::path dir_;
};

constexpr auto kPrivateDir = fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                             fs::perms::others_read | fs::perms::others_exec;
constexpr auto kPrivateFile = kPrivateDir;

// A real TorchScript model: Linear(10, 10), which Fashion-MNIST's 28x28 images do not fit.
torch::jit::Module linear_ten() {
  torch::jit::Module model("LinearTen");
  model.register_parameter("weight", torch::randn({10, 10}), false);
  model.register_parameter("bias", torch::zeros({10}), false);
  model.define("def forward(self, x):\n    return torch.linear(x, self.weight, self.bias)\n");
  return model;
}

std::string saved_model_bytes() {
  TempDir scratch("saved-model");
  linear_ten().save((scratch.path() / "m.pt").string());
  return read_text(scratch.path() / "m.pt");
}

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 generator(seed);
  std::string bytes(n, '\0');
  for (auto& b : bytes) b = static_cast<char>(generator() & 0xff);
  return bytes;
}

// ---- IDX files -------------------------------------------------------------

std::string big_endian(uint32_t v) {
  return {char(v >> 24), char((v >> 16) & 0xff), char((v >> 8) & 0xff), char(v & 0xff)};
}

std::string idx_images(uint32_t count, uint32_t pixels_of = 0, uint32_t magic = 0x803, uint32_t rows = 28) {
  return big_endian(magic) + big_endian(count) + big_endian(rows) + big_endian(28) +
         std::string(size_t(pixels_of) * rows * 28, '\x40');
}

std::string idx_labels(uint32_t count, char label = 3) {
  return big_endian(0x801) + big_endian(count) + std::string(count, label);
}

// A Fashion-MNIST folder of 30 samples per split (plain IDX under the .gz
// names; zlib reads both), with the training images replaced by `train_images`
// and the training labels by `train_labels` when given.
void write_idx_dir(const Workspace& ws, const std::string& train_images, const std::string& train_labels = "") {
  fs::create_directories(ws.dir() / "idx");
  ws.file("idx/train-images-idx3-ubyte.gz", train_images.empty() ? idx_images(30, 30) : train_images);
  ws.file("idx/train-labels-idx1-ubyte.gz", train_labels.empty() ? idx_labels(30) : train_labels);
  ws.file("idx/t10k-images-idx3-ubyte.gz", idx_images(30, 30));
  ws.file("idx/t10k-labels-idx1-ubyte.gz", idx_labels(30));
}

// ---- The catalogue -----------------------------------------------------------

struct BadInput {
  std::string name;
  // Writes the case's files and returns the CLI arguments.
  std::function<std::string(const Workspace&)> arrange;
  // Each must appear in the output: the offending input, then what is wrong.
  std::vector<std::string> expected;
  std::string environment = "";
};

// gtest prints a failing case's parameter: its name says which one.
void PrintTo(const BadInput& input, std::ostream* out) { *out << input.name; }

std::string nested_brackets(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// Nine levels of nine aliases: 9^9 (387 million) nodes once expanded.
std::string alias_bomb() {
  std::string yaml = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n";
  for (int level = 1; level <= 8; ++level) {
    const std::string prev = "*a" + std::to_string(level - 1);
    yaml += "a" + std::to_string(level) + ": &a" + std::to_string(level) + " [";
    for (int i = 0; i < 9; ++i) yaml += prev + (i < 8 ? ", " : "");
    yaml += "]\n";
  }
  return yaml;
}

std::string flow_alias_bomb() {
  std::string yaml = "[&a0 [x, x, x, x, x, x, x, x, x]";
  for (int level = 1; level <= 8; ++level) {
    const std::string prev = "*a" + std::to_string(level - 1);
    yaml += ", &a" + std::to_string(level) + " [";
    for (int i = 0; i < 9; ++i) yaml += prev + (i < 8 ? ", " : "");
    yaml += "]";
  }
  return yaml + "]";
}

const std::string kSweepHead = "mcompress_sweep: 1\nname: bad_sweep\nbase: recipe.yaml\n";

std::vector<BadInput> catalogue() {
  std::vector<BadInput> cases;
  auto recipe_case = [&](std::string name, std::function<std::string()> text, std::vector<std::string> expected,
                         std::string extra = "") {
    cases.push_back({std::move(name), [text, extra](const Workspace& ws) { return ws.run(text(), extra); },
                     std::move(expected)});
  };

  // -- Broken YAML
  recipe_case("UnclosedBracket", [] { return replaced(kRecipe, "{width: 8}", "{width: 8"); },
              {"recipe.yaml:", "YAML syntax error"});
  recipe_case("BadIndentation", [] { return replaced(kRecipe, "  zoo: mlp\n", "  zoo: mlp\n bogus: 1\n"); },
              {"recipe.yaml:7:", "YAML syntax error"});
  recipe_case("TabIndentation", [] { return replaced(kRecipe, "  zoo: mlp", "\tzoo: mlp"); },
              {"recipe.yaml:6:", "YAML syntax error"});
  recipe_case("EmptyFile", [] { return std::string(); }, {"recipe.yaml", "mcompress: 1"});
  recipe_case("RandomBytes", [] { return random_bytes(512, 7); }, {"recipe.yaml"});
  recipe_case("NotAMapping", [] { return std::string("- just\n- a list\n"); }, {"recipe.yaml:1:", "mapping"});
  cases.push_back({"RecipeFileMissing", [](const Workspace& ws) {
                     return "run " + ws.path("no_such_recipe.yaml") + " --out " + ws.out().string();
                   },
                   {"no_such_recipe.yaml", "not found"}});
  cases.push_back({"RecipeIsADirectory", [](const Workspace& ws) {
                     return "run " + ws.dir().string() + " --out " + ws.out().string();
                   },
                   {"bad-input-RecipeIsADirectory", "is a directory"}});

  // -- Wrong types
  recipe_case("StringWhereNumberExpected", [] { return replaced(kRecipe, "seed: 1", "seed: one"); },
              {"recipe.yaml:3:", "seed"});
  recipe_case("ListWhereMapExpected", [] { return replaced(kRecipe, "  zoo: mlp\n  options: {width: 8}\n", "  [mlp, 8]\n"); },
              {"recipe.yaml:6:", "model"});
  recipe_case("MapWhereListExpected", [] { return replaced(kRecipe, "enabled: [params]", "enabled: {params: 1}"); },
              {"recipe.yaml:15:", "enabled"});
  recipe_case("StringWhereParamNumberExpected", [] { return replaced(kRecipe, "lr: 0.01", "lr: fast"); },
              {"recipe.yaml:19:", "lr"});

  // -- Alias bombs and deep nesting
  recipe_case("BillionLaughsInRecipe", [] { return alias_bomb() + kRecipe; }, {"recipe.yaml:1:", "too large", "aliases"});
  recipe_case("BillionLaughsAsStageParams",
              [] { return replaced(kRecipe, "{epochs: 1, batch_size: 32, lr: 0.01}", flow_alias_bomb()); },
              {"recipe.yaml:1:", "too large", "aliases"});
  recipe_case("TenThousandNestedBrackets", [] { return "name: " + nested_brackets(10000) + "\n"; },
              {"recipe.yaml:1:", "YAML syntax error"});
  recipe_case("TenThousandNestedBracketsAsParam",
              [] { return replaced(kRecipe, "lr: 0.01", "lr: " + nested_brackets(10000)); },
              {"recipe.yaml:19:", "YAML syntax error"});

  // -- Huge numbers, NaN and infinities
  recipe_case("HugeFloatLearningRate", [] { return replaced(kRecipe, "lr: 0.01", "lr: 1e400"); },
              {"recipe.yaml:19:", "lr"});
  recipe_case("HugeIntegerEpochs", [] { return replaced(kRecipe, "epochs: 1", "epochs: 99999999999999999999"); },
              {"recipe.yaml:19:", "epochs"});
  recipe_case("NanLearningRate", [] { return replaced(kRecipe, "lr: 0.01", "lr: .nan"); },
              {"recipe.yaml:19:", "lr"});
  recipe_case("InfiniteSparsity", [] {
                return replaced(kRecipe, "    pass: finetune\n    params: {epochs: 1, batch_size: 32, lr: 0.01}",
                                "    pass: magnitude_prune\n    params: {sparsity: .inf}");
              },
              {"recipe.yaml:19:", "sparsity"});
  recipe_case("HugeWidth", [] { return replaced(kRecipe, "width: 8", "width: 99999999999999999999"); },
              {"recipe.yaml:7:", "width"});

  // -- Negative and zero sizes
  recipe_case("ZeroBatchSize", [] { return replaced(kRecipe, "batch_size: 32", "batch_size: 0"); },
              {"recipe.yaml:19:", "batch_size"});
  recipe_case("NegativeEpochs", [] { return replaced(kRecipe, "epochs: 1", "epochs: -1"); },
              {"recipe.yaml:19:", "epochs"});
  recipe_case("ZeroWidth", [] { return replaced(kRecipe, "width: 8", "width: 0"); }, {"recipe.yaml:7:", "width"});
  recipe_case("NegativeTrainLimit", [] { return replaced(kRecipe, "train_limit: 200", "train_limit: -5"); },
              {"recipe.yaml:10:", "train_limit"});

  // -- Unknown keys
  recipe_case("UnknownTopLevelKey", [] { return replaced(kRecipe, "seed: 1", "seed: 1\nmodle: {}"); },
              {"recipe.yaml:4:", "modle"});
  recipe_case("UnknownPassParameter", [] { return replaced(kRecipe, "lr: 0.01", "lr: 0.01, lrr: 2"); },
              {"recipe.yaml:19:", "lrr"});
  recipe_case("UnknownPass", [] { return replaced(kRecipe, "pass: finetune", "pass: finetun"); },
              {"recipe.yaml:18:", "finetun"});

  // -- Missing files
  recipe_case("MissingModelFile", [] { return recipe_with_model_file(); }, {"recipe.yaml:6:", "model.pt", "not found"});
  recipe_case("MissingDataPath", [] { return replaced(kRecipe, std::string("path: ") + MCOMPRESS_FASHION_MNIST_DIR, "path: /no/such/data"); },
              {"recipe.yaml:9:", "/no/such/data"});

  // -- TorchScript files that are not usable models
  cases.push_back({"TruncatedTorchScript", [](const Workspace& ws) {
                     const std::string bytes = saved_model_bytes();
                     ws.file("model.pt", bytes.substr(0, bytes.size() / 2));
                     return ws.run(recipe_with_model_file());
                   },
                   {"model.pt", "TorchScript"}});
  cases.push_back({"RandomBytesAsTorchScript", [](const Workspace& ws) {
                     ws.file("model.pt", random_bytes(4096, 11));
                     return ws.run(recipe_with_model_file());
                   },
                   {"model.pt", "TorchScript"}});
  cases.push_back({"ZipWithBadEntryAsTorchScript", [](const Workspace& ws) {
                     // A zip that looks like a TorchScript archive, with garbage where the pickle goes.
                     const auto made = run_command(std::string(MCOMPRESS_PYTHON) + " -c \"import zipfile; z = zipfile.ZipFile('" +
                                                   ws.path("model.pt") + "', 'w'); z.writestr('archive/version', '3\\n'); "
                                                   "z.writestr('archive/data.pkl', b'\\x80\\x02garbage'); "
                                                   "z.writestr('archive/constants.pkl', b'\\x80\\x02]q\\x00.'); z.close()\"");
                     if (made.exit_code != 0) throw std::runtime_error("cannot make the zip: " + made.output);
                     return ws.run(recipe_with_model_file());
                   },
                   {"model.pt", "TorchScript"}});
  cases.push_back({"ModelInputShapeDoesNotMatchData", [](const Workspace& ws) {
                     linear_ten().save(ws.path("model.pt"));
                     return ws.run(recipe_with_model_file());
                   },
                   {"model.pt", "does not accept the data's inputs", "[1, 1, 28, 28]"}});
  cases.push_back({"ModelWithoutForward", [](const Workspace& ws) {
                     torch::jit::Module model("NoForward");
                     model.define("def other(self, x):\n    return x\n");
                     model.save(ws.path("model.pt"));
                     return ws.run(recipe_with_model_file());
                   },
                   {"model.pt", "forward"}});

  // -- IDX files with bad headers
  auto idx_case = [&](std::string name, std::string images, std::string labels, std::vector<std::string> expected) {
    cases.push_back({std::move(name), [images, labels](const Workspace& ws) {
                       write_idx_dir(ws, images, labels);
                       return ws.run(recipe_with_data_dir());
                     },
                     std::move(expected)});
  };
  idx_case("IdxWrongMagic", idx_images(30, 30, 0x00000804), "", {"train-images-idx3-ubyte.gz", "magic number"});
  idx_case("IdxTruncatedHeader", big_endian(0x803) + std::string(2, '\0'), "", {"train-images-idx3-ubyte.gz", "truncated"});
  idx_case("IdxCountLargerThanFile", idx_images(1000, 30), "", {"train-images-idx3-ubyte.gz", "truncated"});
  idx_case("IdxWrongDimensions", idx_images(30, 30, 0x803, 32), "", {"train-images-idx3-ubyte.gz", "row count"});
  idx_case("IdxAbsurdCount", idx_images(4000000000u, 1), "", {"train-images-idx3-ubyte.gz", "claims"});
  idx_case("IdxLabelCountDisagrees", "", idx_labels(20), {"train-labels-idx1-ubyte.gz", "disagree"});
  idx_case("IdxLabelOutOfRange", "", idx_labels(30, 42), {"train-labels-idx1-ubyte.gz", "label 42"});
  idx_case("IdxCorruptedGzip", std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 10) + random_bytes(256, 5), "",
           {"train-images-idx3-ubyte.gz"});

  // -- Plugins that are not usable
  auto plugin_case = [&](std::string name, std::function<std::string(const Workspace&)> plugin_arg,
                         std::vector<std::string> expected) {
    cases.push_back({std::move(name), [plugin_arg](const Workspace& ws) {
                       return ws.run(kRecipe, "--plugin-dir " + plugin_arg(ws));
                     },
                     std::move(expected)});
  };
  plugin_case("PluginWithoutEntrySymbol", [](const Workspace&) { return (kBadPlugins / "no_entry.so").string(); },
              {"no_entry.so", "not an mcompress plugin"});
  plugin_case("PluginWithWrongSdkMajor", [](const Workspace& ws) {
                return ws.plugin_folder(kBadPlugins / "wrong_major.so", kPrivateDir, kPrivateFile).string();
              },
              {"wrong_major.so", "SDK 99.0"});
  plugin_case("PluginWithOtherCxxAbi", [](const Workspace&) { return (kBadPlugins / "other_abi.so").string(); },
              {"other_abi.so", "cxx11abi=0"});
  plugin_case("TextFileNamedSo", [](const Workspace& ws) { return ws.file("notes.so", "just text\n"); },
              {"notes.so", "not a loadable shared library"});
  plugin_case("MissingPluginDir", [](const Workspace& ws) { return ws.path("no_plugins_here"); },
              {"no_plugins_here", "no such file or directory"});
  plugin_case("WorldWritablePluginDir", [](const Workspace& ws) {
                return ws.plugin_folder(kGoodPlugins / "test_passes.so", kPrivateDir | fs::perms::others_write,
                                        kPrivateFile)
                    .string();
              },
              {"plugins", "writable by every user", "chmod go-w"});
  plugin_case("GroupWritablePluginFile", [](const Workspace& ws) {
                return ws.plugin_folder(kGoodPlugins / "test_passes.so", kPrivateDir,
                                        kPrivateFile | fs::perms::group_write)
                    .string();
              },
              {"test_passes.so", "writable by its group", "chmod go-w"});
  // A recipe that needs a pass of a plugin refused on the search path (not
  // named on the command line) says which pass is missing and why.
  cases.push_back({"RecipeNeedsPassOfRefusedPlugin", [](const Workspace& ws) {
                     ws.plugin_folder(kGoodPlugins / "test_passes.so", kPrivateDir | fs::perms::others_write, kPrivateFile);
                     return ws.run(replaced(kRecipe, "pass: finetune\n    params: {epochs: 1, batch_size: 32, lr: 0.01}",
                                            "pass: test_damage"));
                   },
                   {"recipe.yaml:18:", "test_damage", "refused", "chmod go-w"},
                   "MCOMPRESS_PLUGIN_PATH=plugins"});

  // -- Sweeps
  auto sweep_case = [&](std::string name, std::string sweep, std::vector<std::string> expected, std::string extra = "") {
    cases.push_back({std::move(name), [sweep, extra](const Workspace& ws) { return ws.compare(sweep, extra); },
                     std::move(expected)});
  };
  sweep_case("SweepBaseMissing", "mcompress_sweep: 1\nname: s\nbase: no_such_base.yaml\ngrid: {seed: [1, 2]}\n",
             {"sweep.yaml:3:", "no_such_base.yaml", "not found"});
  sweep_case("SweepGridValuesNotAList", kSweepHead + "grid:\n  seed: 3\n", {"sweep.yaml:5:", "seed", "list"});
  sweep_case("SweepGridTooLarge", [] {
               std::string grid = kSweepHead + "grid:\n";
               for (int axis = 0; axis < 10; ++axis) {
                 grid += "  stages.train.params.k" + std::to_string(axis) + ": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n";
               }
               return grid;
             }(),
             {"sweep.yaml:5:", "more than 10000 candidates"});
  sweep_case("SweepGridUnknownKey", kSweepHead + "grid:\n  stages.train.params.lrr: [0.1, 0.2]\n",
             {"candidate", "lrr"});
  sweep_case("SweepGridBadValue", kSweepHead + "grid:\n  stages.train.params.lr: [0.1, -3]\n",
             {"candidate", "lr"});
  sweep_case("SweepBrokenYaml", kSweepHead + "grid: {seed: [1, 2}\n", {"sweep.yaml:4:", "YAML syntax error"});
  sweep_case("SweepNanConstraint",
             kSweepHead + "grid: {seed: [1, 2]}\nobjective:\n  constraints: {max_accuracy_drop: .nan}\n",
             {"sweep.yaml:6:", "max_accuracy_drop", "finite"});
  sweep_case("SweepInfiniteTimeLimit", kSweepHead + "time_limit: .inf\ngrid: {seed: [1, 2]}\n",
             {"sweep.yaml:4:", "time_limit", "finite"});
  sweep_case("SweepCandidateStagesAliasBomb",
             kSweepHead + "candidates:\n  - name: bomb\n    stages: " + flow_alias_bomb() + "\n",
             {"sweep.yaml:1:", "too large", "aliases"});
  sweep_case("SweepBadShard", kSweepHead + "grid: {seed: [1, 2]}\n", {"--shard", "5/2"}, "--shard 5/2");

  // -- --set overrides
  recipe_case("SetUnknownStage", [] { return kRecipe; }, {"--set stages.prune.params.lr=0.1", "no stage named"},
              "--set stages.prune.params.lr=0.1");
  recipe_case("SetMalformed", [] { return kRecipe; }, {"--set =3", "malformed"}, "--set =3");
  recipe_case("SetValueNotYaml", [] { return kRecipe; }, {"--set seed=[1", "not valid YAML"}, "--set 'seed=[1'");
  recipe_case("SetWrongType", [] { return kRecipe; }, {"--set seed=abc", "seed"}, "--set seed=abc");
  recipe_case("SetNegativeSize", [] { return kRecipe; }, {"--set data.train_limit=-5", "train_limit"},
              "--set data.train_limit=-5");
  recipe_case("SetIntoScalar", [] { return kRecipe; }, {"--set seed.x=1", "single value"}, "--set seed.x=1");
  recipe_case("SetAliasBomb", [] { return kRecipe; }, {"too large"},
              "--set 'stages.train.params=" + flow_alias_bomb() + "'");
  return cases;
}

// Bytes under `dir` that a refused run must not have left: any file at all.
std::vector<std::string> files_under(const fs::path& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_directory()) files.push_back(entry.path().string());
  }
  return files;
}

class BadInputs : public ::testing::TestWithParam<BadInput> {};

TEST_P(BadInputs, AreRefusedWithExitCode2NamingTheInputAndLeaveNoOutput) {
  const BadInput& input = GetParam();
  TempDir tmp("bad-input-" + input.name);
  const Workspace ws(tmp.path());
  const std::string args = input.arrange(ws);
  // From the scratch folder, so relative paths in the environment resolve there.
  const std::string command = "cd " + tmp.path().string() + " && " + input.environment +
                              " timeout -k 5 60 " + MCOMPRESS_CLI + " " + args;
  const auto result = run_command(command);
  ASSERT_NE(result.exit_code, 124) << "timed out: " << command << "\n" << result.output;
  ASSERT_LT(result.exit_code, 128) << "killed by a signal: " << command << "\n" << result.output;
  EXPECT_EQ(result.exit_code, 2) << command << "\n" << result.output;
  for (const auto& expected : input.expected) {
    EXPECT_NE(result.output.find(expected), std::string::npos)
        << "output does not mention '" << expected << "':\n" << result.output;
  }
  EXPECT_LT(result.output.size(), 20000u) << "a refusal should be short";
  EXPECT_EQ(files_under(ws.out()), std::vector<std::string>{}) << result.output;
}

INSTANTIATE_TEST_SUITE_P(Catalogue, BadInputs, ::testing::ValuesIn(catalogue()),
                         [](const ::testing::TestParamInfo<BadInput>& info) { return info.param.name; });

TEST(BadInputCatalogue, HasAtLeastFortyCases) { EXPECT_GE(catalogue().size(), 40u); }

}  // namespace
