#pragma once
// A recipe after parsing and validation: everything the runner needs, with
// every parameter resolved (recipe value, --set override or default) and
// checked against the declaring pass's schema. Torch-free.
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mcompress/sdk/pass_info.h"

namespace mcompress {

// The recipe format version this host reads (`mcompress: 1` in the file).
constexpr int kRecipeFormatVersion = 1;

// 1-based line/column in the recipe file; 0 when not from the file.
struct SourcePos {
  int line = 0;
  int column = 0;
};

// What the validator needs to know about passes (implemented by PluginHost).
class PassCatalog {
 public:
  virtual ~PassCatalog() = default;
  virtual const PassInfo* find(const std::string& name) const = 0;
  virtual std::vector<std::string> names() const = 0;
};

struct ModelSpec {
  std::string zoo;                      // built-in model name, or empty
  std::string path;                     // TorchScript file (absolute), or empty
  std::map<std::string, int64_t> options;  // zoo size options, e.g. width: 32
  std::vector<int64_t> input_shape{1, 28, 28};  // one sample, without batch
  int64_t num_classes = 10;
};

struct DataSpec {
  std::string dataset = "fashion_mnist";
  std::string path = "/usr/share/datasets/fashion-mnist";
  int64_t train_limit = 0;  // 0: all
  int64_t eval_limit = 0;   // 0: all
  int64_t calibration_size = 512;
  int64_t validation_size = 5000;  // taken from the end of the training split, never trained on
};

enum class OnGateFail { Rollback, Stop };

struct GateSpec {
  std::optional<double> max_accuracy_drop;  // in accuracy points as a fraction (0.01 = 1 pt)
  std::string reference = "previous";       // "baseline", "previous", or a stage name
  OnGateFail on_fail = OnGateFail::Rollback;
};

struct ProbeSpec {
  std::vector<std::string> enabled{"accuracy", "latency", "params", "macs", "size"};
  std::vector<int64_t> latency_batch_sizes{1, 64};
  int latency_warmup = 5;
  int latency_runs = 30;
  int64_t eval_batch_size = 256;
};

struct StageSpec {
  std::string name;  // unique; defaults to the pass name (with a suffix when repeated)
  std::string pass;
  Params params;                      // resolved
  GateSpec gate;                      // stage gate, or the recipe default
  std::optional<std::string> teacher; // "original", a stage name, or a file path
};

struct Recipe {
  int version = kRecipeFormatVersion;
  std::string name;
  std::string source_path;  // absolute path of the recipe file
  uint64_t seed = 0;
  int threads = 0;  // 0: the machine's cores
  ModelSpec model;
  std::optional<DataSpec> data;
  ProbeSpec probes;
  GateSpec default_gate;
  std::optional<std::string> teacher;
  std::vector<StageSpec> stages;
};

struct Diagnostic {
  std::string file;  // recipe path, or "--set" for an override
  SourcePos pos;
  std::string message;  // what is wrong and what to do
};
std::string format_diagnostic(const Diagnostic& d);  // "file:line:col: error: message"

// Thrown when a recipe has problems; carries all of them, in file order.
class RecipeError : public std::runtime_error {
 public:
  explicit RecipeError(std::vector<Diagnostic> diagnostics);
  const std::vector<Diagnostic>& diagnostics() const { return diagnostics_; }

 private:
  std::vector<Diagnostic> diagnostics_;
};

// Reads, applies `overrides` ("stages.prune.params.sparsity=0.3",
// "seed=7"; stages addressed by name or index), and validates a recipe.
// Reports every problem at once by throwing RecipeError.
Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides,
                   const PassCatalog& catalog);

// The resolved recipe as JSON (for run records and --dry-run --json).
nlohmann::json to_json(const Recipe& recipe);
// Human-readable resolved plan for --dry-run.
std::string describe_plan(const Recipe& recipe, const PassCatalog& catalog);

// Levenshtein-closest candidate within a small distance, for "did you mean".
std::optional<std::string> closest_match(const std::string& word,
                                         const std::vector<std::string>& candidates);

// ---- Shared by recipe.cpp (reading, --set overrides) and recipe_validate.cpp
// (checking). Not for other callers; declared here because the two files must
// agree on it and the project keeps one header per concept.
}  // namespace mcompress

namespace YAML {
class Node;
}

namespace mcompress::recipe_detail {

// Turns a problem at a node of the recipe tree into a Diagnostic that points
// where the user wrote it: a file position, or the --set override that put the
// node there (yaml-cpp marks override nodes as if they were line 1 of the file).
class NodeLocator {
 public:
  virtual ~NodeLocator() = default;
  virtual Diagnostic diagnose(const YAML::Node& node, const std::string& message) const = 0;
};

// Stage names in order: explicit names are kept; a missing one becomes the pass
// name, then pass_2, pass_3, ... skipping names already taken. The override
// code and the validator both need the same answer.
std::vector<std::string> assign_stage_names(
    const std::vector<std::optional<std::string>>& explicit_names,
    const std::vector<std::string>& pass_names);

// Checks a recipe tree (overrides already applied) against `catalog` and
// resolves it; every problem is appended to `problems`. `source_path` is the
// absolute recipe path; relative paths in the recipe are resolved against its
// directory.
Recipe check_recipe(const YAML::Node& root, const std::string& source_path,
                    const NodeLocator& locator, const PassCatalog& catalog,
                    std::vector<Diagnostic>& problems);

}  // namespace mcompress::recipe_detail
