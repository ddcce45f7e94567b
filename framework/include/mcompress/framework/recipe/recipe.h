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
  // Probes added by plugins, usable in `probes.enabled` next to the built-in ones.
  virtual std::vector<std::string> probe_names() const { return {}; }
};

struct ModelSpec {
  std::string zoo;                      // built-in model name, or empty
  std::string path;                     // TorchScript file (absolute), or empty
  std::string hf;                       // Hugging Face checkpoint directory (absolute), or empty
  // What checkpoint models (this one, and teachers and students read from
  // checkpoints) compute in: "float32", "bfloat16", "float16" or "checkpoint".
  std::string dtype = "float32";
  std::map<std::string, int64_t> options;  // zoo size options, e.g. width: 32
  std::vector<int64_t> input_shape{1, 28, 28};  // one sample, without batch
  int64_t num_classes = 10;
};

struct DataSpec {
  // "fashion_mnist", "tiny_shakespeare" (character-level text) or "text"
  // (UTF-8 text or JSON Lines tokenized by a Hugging Face tokenizer)
  std::string dataset = "fashion_mnist";
  std::string path = "/usr/share/datasets/fashion-mnist";  // a directory, or the text file
  std::vector<std::string> text_files;  // `text`: the files (absolute), path is the first
  std::string field = "text";           // `text`: the text field of JSON Lines records
  std::string tokenizer;                // `text`: tokenizer directory; empty: the model's checkpoint
  int64_t tokenizer_vocab = 0;          // `text`: > 0 trains a byte-level BPE of this size on the text
  int64_t eval_stride = 0;              // `text`: held-out sliding-window stride; 0: context
  int64_t train_limit = 0;  // 0: all (samples; windows of text)
  int64_t eval_limit = 0;   // 0: all
  int64_t calibration_size = 512;
  int64_t validation_size = 5000;  // taken from the end of the training split, never trained on
  int64_t context = 64;            // text: tokens per window
  double test_fraction = 0.1;      // text: the end of the file held out for the probes

  bool is_text() const { return dataset == "tiny_shakespeare" || dataset == "text"; }
  bool is_tokenized_text() const { return dataset == "text"; }
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
  int64_t sample_length = 200;  // tokens (characters for character models) text_sample generates
  int64_t prompt_length = 128;  // generation probe: prompt tokens of the prefill
  int64_t new_tokens = 32;      // generation probe: tokens decoded
  // Edge profile: the latency and memory probes again under a device's limits.
  struct Edge {
    int threads = 1;
    std::vector<int64_t> cpus;  // pin to these CPUs; empty: no pinning
    double memory_mb = 0.0;     // the device's memory for the model; 0: no limit
  };
  std::optional<Edge> edge;
};

// Limits of a stage that runs in a process of its own (`mcompress run
// --isolate`): over either, the stage's process is killed and the stage fails.
struct IsolationSpec {
  double time_limit_s = 21600;  // wall-clock seconds; 0: no limit
  double memory_limit_mb = 0;   // resident memory (MiB); 0: three quarters of the machine's memory
};

// Names `probes.enabled` accepts without any plugin.
const std::vector<std::string>& builtin_probe_names();
bool is_builtin_probe(const std::string& name);

// The model a stage starts from when it is not the current model: exactly
// one of zoo, path and stage is set.
struct StudentSpec {
  std::string zoo;                         // a built-in model with fresh weights, or empty
  std::map<std::string, int64_t> options;  // its size options
  std::string path;                        // a TorchScript file or checkpoint directory (absolute), or empty
  std::string stage;                       // "original" or an earlier stage's model, or empty
};

struct StageSpec {
  std::string name;  // unique; defaults to the pass name (with a suffix when repeated)
  std::string pass;
  Params params;                      // resolved
  GateSpec gate;                      // stage gate, or the recipe default
  // "original", "previous" (the model the stage starts from), a stage name,
  // or a file path
  std::optional<std::string> teacher;
  std::optional<StudentSpec> student;  // none: the stage works on the current model
  IsolationSpec isolation;             // the recipe's limits with the stage's own on top
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
  IsolationSpec isolation;  // default limits of every isolated stage
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
// The same for recipe text already in memory; `source_path` is where it
// claims to come from (diagnostics name it; relative paths in the recipe are
// resolved against its directory).
Recipe parse_recipe(const std::string& text, const std::string& source_path,
                    const std::vector<std::string>& overrides, const PassCatalog& catalog);

// The resolved recipe as JSON (for run records and --dry-run --json).
nlohmann::json to_json(const Recipe& recipe);
// Human-readable resolved plan for --dry-run.
std::string describe_plan(const Recipe& recipe, const PassCatalog& catalog);

// Levenshtein-closest candidate within a small distance, for "did you mean".
std::optional<std::string> closest_match(const std::string& word,
                                         const std::vector<std::string>& candidates);

}  // namespace mcompress
