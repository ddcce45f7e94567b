// Checking a recipe tree against the pass catalog and resolving it into a
// Recipe. Every check appends a Diagnostic and carries on, so the user sees all
// problems of a recipe in one go instead of fixing them one run at a time.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <functional>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "mcompress/framework/recipe/recipe.h"
#include "recipe_detail.h"
#include "mcompress/framework/sources/zoo.h"

namespace mcompress::recipe_detail {

bool is_regular_file(const std::filesystem::path& path) {
  std::error_code unreadable;
  return std::filesystem::is_regular_file(path, unreadable);
}

bool is_directory(const std::filesystem::path& path) {
  std::error_code unreadable;
  return std::filesystem::is_directory(path, unreadable);
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::vector<std::string> assign_stage_names(
    const std::vector<std::optional<std::string>>& explicit_names,
    const std::vector<std::string>& pass_names) {
  std::set<std::string> taken;
  for (const auto& name : explicit_names)
    if (name) taken.insert(*name);
  std::vector<std::string> names;
  for (size_t i = 0; i < explicit_names.size(); ++i) {
    if (explicit_names[i]) {
      names.push_back(*explicit_names[i]);
      continue;
    }
    std::string base = i < pass_names.size() && !pass_names[i].empty() ? pass_names[i] : "stage";
    std::string candidate = base;
    for (int n = 2; taken.count(candidate); ++n) candidate = fmt::format("{}_{}", base, n);
    taken.insert(candidate);
    names.push_back(candidate);
  }
  return names;
}

namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kTopKeys{"mcompress", "name",    "seed",   "threads", "model",
                                        "data",      "teacher", "probes", "gate",    "isolation",
                                        "stages"};
const std::vector<std::string> kModelKeys{"zoo", "options", "path", "hf", "dtype", "input_shape", "num_classes"};
const std::vector<std::string> kComputeDtypes{"float32", "bfloat16", "float16", "checkpoint"};
const std::vector<std::string> kDataKeys{"dataset",          "path",           "train_limit",
                                         "eval_limit",       "calibration_size", "validation_size",
                                         "context",          "test_fraction",  "field",
                                         "tokenizer",        "tokenizer_vocab", "eval_stride"};
// Keys that only mean something for text datasets, and for tokenized text.
const std::vector<std::string> kTextDataKeys{"context", "test_fraction"};
const std::vector<std::string> kTokenizedTextKeys{"field", "tokenizer", "tokenizer_vocab", "eval_stride"};
const std::vector<std::string> kProbeKeys{"enabled",         "latency_batch_sizes", "latency_warmup",
                                          "latency_runs",    "eval_batch_size",     "sample_length",
                                          "edge",            "prompt_length",       "new_tokens"};
const std::vector<std::string> kEdgeKeys{"threads", "cpus", "memory_mb"};
const std::vector<std::string> kGateKeys{"max_accuracy_drop", "reference", "on_fail"};
const std::vector<std::string> kStageKeys{"name", "pass", "params", "gate", "teacher", "student",
                                          "isolation"};
const std::vector<std::string> kIsolationKeys{"time_limit_s", "memory_limit_mb"};
const std::vector<std::string> kStudentKeys{"zoo", "options", "path", "hf", "stage"};
const std::vector<std::string> kProbeNames{"accuracy", "perplexity", "text_sample", "fidelity",
                                           "latency",  "memory",     "params",      "macs",
                                           "size",     "generation"};
// Probes that measure a language model on text data.
const std::vector<std::string> kTextProbeNames{"perplexity", "text_sample"};
const std::vector<std::string> kDatasets{"fashion_mnist", "tiny_shakespeare", "text"};
const std::vector<std::string> kFashionMnistFiles{
    "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz"};
// Words that teacher/gate references give a meaning of their own.
const std::vector<std::string> kReservedStageNames{"original", "baseline", "previous"};

// One `key: value` of a mapping, kept together so a problem with an empty
// value can point at its key (yaml-cpp marks an empty value at the next token).
struct Field {
  YAML::Node key;
  YAML::Node value;
  const YAML::Node& anchor() const { return value.IsNull() ? key : value; }
};
using Fields = std::map<std::string, Field>;

const Field* find(const Fields& fields, const std::string& key) {
  auto it = fields.find(key);
  return it == fields.end() ? nullptr : &it->second;
}

// Plain scalars are typed by their text; quoted or !!str-tagged ones are
// strings even when they look like numbers.
bool is_plain(const YAML::Node& node) { return node.IsScalar() && node.Tag() == "?"; }

std::string describe(const YAML::Node& node) {
  if (node.IsNull()) return "nothing";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  if (is_plain(node)) return fmt::format("`{}`", node.Scalar());
  return fmt::format("the string \"{}\"", node.Scalar());
}

std::optional<int64_t> parse_int(std::string text) {
  if (!text.empty() && text[0] == '+') text.erase(0, 1);
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

std::optional<double> parse_float(std::string text) {
  if (!text.empty() && text[0] == '+') text.erase(0, 1);
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() ||
      !std::isfinite(value))
    return std::nullopt;
  return value;
}

std::string range_text(std::optional<double> min, std::optional<double> max) {
  if (min && max) return fmt::format(" in [{}, {}]", *min, *max);
  if (min) return fmt::format(" >= {}", *min);
  if (max) return fmt::format(" <= {}", *max);
  return "";
}

// `probes.sizes` -> `probes.sizes[1]`
std::string element_label(const std::string& what, size_t index) {
  if (!what.empty() && what.back() == '`')
    return fmt::format("{}[{}]`", what.substr(0, what.size() - 1), index);
  return fmt::format("{}[{}]", what, index);
}

bool in_range(double value, std::optional<double> min, std::optional<double> max) {
  return (!min || value >= *min) && (!max || value <= *max);
}

std::string quoted_list(const std::vector<std::string>& words) {
  std::vector<std::string> quoted;
  for (const auto& w : words) quoted.push_back(fmt::format("`{}`", w));
  return quoted.empty() ? "(none)" : fmt::format("{}", fmt::join(quoted, ", "));
}

// "did you mean `x`? " as a prefix for the rest of a message, or "".
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates) {
  auto match = closest_match(word, candidates);
  return match ? fmt::format("did you mean `{}`? ", *match) : "";
}

// "; did you mean `x`?" to end a message, or "".
std::string suggestion_suffix(const std::string& word, const std::vector<std::string>& candidates) {
  auto match = closest_match(word, candidates);
  return match ? fmt::format("; did you mean `{}`?", *match) : "";
}

bool valid_stage_name_chars(const std::string& name) {
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

bool contains(const std::vector<std::string>& list, const std::string& word) {
  return std::find(list.begin(), list.end(), word) != list.end();
}

std::string gate_reference_help() {
  return "use `baseline`, `previous` or the name of an earlier stage";
}

template <typename T>
std::optional<ParamValue> to_optional_value(const std::optional<T>& value) {
  if (!value) return std::nullopt;
  return ParamValue(*value);
}

// A plugin may declare a Float default as an integer; the pass must still
// receive a double.
ParamValue normalized_default(const ParamSpec& spec) {
  const ParamValue& value = *spec.default_value;
  if (auto i = std::get_if<int64_t>(&value); i && spec.type == ParamType::Float)
    return static_cast<double>(*i);
  return value;
}

std::string param_summary(const ParamSpec& spec) {
  std::string text = to_string(spec.type);
  text += range_text(spec.min, spec.max);
  if (spec.type == ParamType::Choice) text += fmt::format(": one of {}", quoted_list(spec.choices));
  if (!spec.doc.empty()) text += "; " + spec.doc;
  return text;
}

// A gate while stages are resolved: where its reference was written matters
// for the "not an earlier stage" check.
struct GateDraft {
  GateSpec spec;
  std::optional<Field> reference;  // none: the built-in default "previous"
  bool own_reference = false;      // false: inherited from the recipe's default gate
};

// A stage between reading and the cross-stage checks.
struct StageDraft {
  YAML::Node node;
  Fields fields;
  const PassInfo* info = nullptr;
  GateDraft gate;
  std::optional<Field> teacher;
  std::optional<Field> student;
};

class Checker {
 public:
  Checker(const std::string& source_path, const NodeLocator& locator, const PassCatalog& catalog,
          std::vector<Diagnostic>& problems)
      : source_path_(source_path),
        recipe_dir_(fs::path(source_path).parent_path()),
        locator_(locator),
        catalog_(catalog),
        problems_(problems) {}

  Recipe run(const YAML::Node& root);

 private:
  void error(const YAML::Node& at, const std::string& message) {
    problems_.push_back(locator_.diagnose(at, message));
  }

  // Reading mappings and scalars.
  Fields read_fields(const YAML::Node& map, const std::vector<std::string>& known,
                     const std::string& section, const std::string& noun = "key",
                     const std::function<std::string(const std::string&)>& hint = nullptr);
  Fields read_section(const Fields& parent, const std::string& key,
                      const std::vector<std::string>& known, const std::string& section);
  std::optional<int64_t> read_int(const Field& f, const std::string& what,
                                  std::optional<double> min, std::optional<double> max);
  std::optional<double> read_float(const Field& f, const std::string& what,
                                   std::optional<double> min, std::optional<double> max);
  std::optional<bool> read_bool(const Field& f, const std::string& what);
  std::optional<std::string> read_string(const Field& f, const std::string& what);
  std::optional<std::string> read_choice(const Field& f, const std::string& what,
                                         const std::vector<std::string>& choices);
  std::optional<std::vector<std::string>> read_string_list(const Field& f, const std::string& what);
  std::optional<std::vector<int64_t>> read_int_list(const Field& f, const std::string& what,
                                                    int64_t min);
  std::optional<std::string> read_path(const Field& f, const std::string& what);
  template <typename T, typename Reader>
  void read_into(const Fields& fields, const std::string& key, T& out, Reader reader);

  // Sections.
  bool check_version(const YAML::Node& root);
  void read_header(const Fields& top, Recipe& recipe);
  void read_model(const Fields& top, const YAML::Node& root, ModelSpec& model);
  void read_zoo(const Field& zoo, const Field* options, ModelSpec& model);
  void read_model_path(const Field& path, ModelSpec& model);
  std::optional<std::string> read_checkpoint_dir(const Field& f, const std::string& what);
  void read_text_files(const Field& path, DataSpec& data);
  void check_model_fits_data(const YAML::Node& at, const std::string& zoo,
                             const std::map<std::string, int64_t>& options,
                             const std::string& whose, const Recipe& recipe);
  void read_data(const Fields& top, Recipe& recipe);
  void check_fashion_mnist_dir(const Field& at, const std::string& dir);
  void read_probes(const Fields& top, Recipe& recipe);
  GateDraft read_gate(const Field* field, const GateDraft& base, const std::string& section);
  IsolationSpec read_isolation(const Field* section, const IsolationSpec& base,
                               const std::string& path);

  // Stages and the references between them.
  void read_stages(const Fields& top, const YAML::Node& root, Recipe& recipe);
  StageDraft read_stage(const YAML::Node& node, size_t index);
  StageSpec resolve_stage(const StageDraft& draft, size_t index,
                          const std::vector<std::string>& names, const Recipe& recipe);
  std::vector<std::string> stage_names(const std::vector<StageDraft>& drafts);
  Params resolve_params(const StageDraft& draft, const std::string& stage);
  std::optional<ParamValue> read_param(const Field& f, const ParamSpec& spec,
                                       const std::string& what);
  std::optional<std::string> resolve_teacher(const Field& f, const std::string& whose, size_t user,
                                             const std::vector<std::string>& names);
  std::optional<StudentSpec> resolve_student(const Field& f, const std::string& whose, size_t user,
                                             const std::vector<std::string>& names,
                                             const Recipe& recipe);
  void check_gate_reference(const GateDraft& gate, const std::string& whose, size_t user,
                            const std::vector<std::string>& names);
  void check_needs(const StageDraft& draft, const StageSpec& stage);
  void check_inherited_references(const std::vector<StageDraft>& drafts,
                                  const std::vector<std::string>& names);
  void check_gate_measurable(const Field& drop);

  std::string source_path_;
  fs::path recipe_dir_;
  const NodeLocator& locator_;
  const PassCatalog& catalog_;
  std::vector<Diagnostic>& problems_;
  bool has_data_ = false;
  bool accuracy_measured_ = false;
  const GateDraft* default_gate_ = nullptr;
  const Field* recipe_teacher_ = nullptr;
};

// ---- Mappings and scalars ----------------------------------------------------

Fields Checker::read_fields(const YAML::Node& map, const std::vector<std::string>& known,
                            const std::string& section, const std::string& noun,
                            const std::function<std::string(const std::string&)>& hint) {
  Fields fields;
  if (map.IsNull()) return fields;  // `section:` with nothing under it: all defaults
  if (!map.IsMap()) {
    error(map, fmt::format("{} must be a mapping of `key: value` lines, got {}", section,
                           describe(map)));
    return fields;
  }
  for (auto it = map.begin(); it != map.end(); ++it) {
    // A copy: `it->` hands out a temporary whose members die with the statement.
    const YAML::Node key = it->first;
    if (!key.IsScalar()) {
      error(key, fmt::format("keys in {} must be plain names, got {}", section, describe(key)));
      continue;
    }
    const std::string name = key.Scalar();
    if (!contains(known, name)) {
      std::string extra = hint ? hint(name) : "";
      if (extra.empty())
        extra = fmt::format("{}known {}s: {}", did_you_mean(name, known), noun, quoted_list(known));
      error(key, fmt::format("unknown {} `{}` in {}; {}", noun, name, section, extra));
      continue;
    }
    if (auto* first = find(fields, name)) {
      error(key, fmt::format("`{}` appears twice in {} (first at line {}); keep one", name, section,
                             first->key.Mark().line + 1));
      continue;
    }
    fields.emplace(name, Field{key, it->second});
  }
  return fields;
}

Fields Checker::read_section(const Fields& parent, const std::string& key,
                             const std::vector<std::string>& known, const std::string& section) {
  const Field* f = find(parent, key);
  return f ? read_fields(f->value, known, section) : Fields{};
}

std::optional<int64_t> Checker::read_int(const Field& f, const std::string& what,
                                         std::optional<double> min, std::optional<double> max) {
  std::optional<int64_t> value = is_plain(f.value) ? parse_int(f.value.Scalar()) : std::nullopt;
  if (!value) {
    error(f.anchor(), fmt::format("{} must be an integer{}, got {}", what, range_text(min, max),
                                  describe(f.value)));
  } else if (!in_range(static_cast<double>(*value), min, max)) {
    error(f.anchor(),
          fmt::format("{} = {} is out of range: it must be{}", what, *value, range_text(min, max)));
    value.reset();
  }
  return value;
}

std::optional<double> Checker::read_float(const Field& f, const std::string& what,
                                          std::optional<double> min, std::optional<double> max) {
  std::optional<double> value = is_plain(f.value) ? parse_float(f.value.Scalar()) : std::nullopt;
  if (!value) {
    error(f.anchor(), fmt::format("{} must be a number{}, got {}", what, range_text(min, max),
                                  describe(f.value)));
  } else if (!in_range(*value, min, max)) {
    error(f.anchor(), fmt::format("{} = {} is out of range: it must be{}", what, f.value.Scalar(),
                                  range_text(min, max)));
    value.reset();
  }
  return value;
}

std::optional<bool> Checker::read_bool(const Field& f, const std::string& what) {
  if (is_plain(f.value) && f.value.Scalar() == "true") return true;
  if (is_plain(f.value) && f.value.Scalar() == "false") return false;
  error(f.anchor(), fmt::format("{} must be `true` or `false`, got {}", what, describe(f.value)));
  return std::nullopt;
}

std::optional<std::string> Checker::read_string(const Field& f, const std::string& what) {
  if (f.value.IsScalar()) return f.value.Scalar();
  error(f.anchor(),
        fmt::format("{} must be a single value (a string), got {}", what, describe(f.value)));
  return std::nullopt;
}

std::optional<std::string> Checker::read_choice(const Field& f, const std::string& what,
                                                const std::vector<std::string>& choices) {
  auto value = read_string(f, what);
  if (!value || contains(choices, *value)) return value;
  error(f.anchor(), fmt::format("{} must be one of {}, got `{}`{}", what, quoted_list(choices),
                                *value, suggestion_suffix(*value, choices)));
  return std::nullopt;
}

std::optional<std::vector<std::string>> Checker::read_string_list(const Field& f,
                                                                  const std::string& what) {
  if (!f.value.IsSequence()) {
    error(f.anchor(), fmt::format("{} must be a list of strings such as `[a, b]`, got {}", what,
                                  describe(f.value)));
    return std::nullopt;
  }
  for (const auto& item : f.value)
    if (!item.IsScalar()) {
      error(item, fmt::format("{} must be a list of strings such as `[a, b]`, got an item that "
                              "is {}",
                              what, describe(item)));
      return std::nullopt;
    }
  std::vector<std::string> values;
  for (const auto& item : f.value) values.push_back(item.Scalar());
  return values;
}

std::optional<std::vector<int64_t>> Checker::read_int_list(const Field& f, const std::string& what,
                                                           int64_t min) {
  if (!f.value.IsSequence() || f.value.size() == 0) {
    error(f.anchor(), fmt::format("{} must be a non-empty list of integers such as `[1, 64]`, "
                                  "got {}",
                                  what, describe(f.value)));
    return std::nullopt;
  }
  std::vector<int64_t> values;
  for (size_t i = 0; i < f.value.size(); ++i) {
    auto item = read_int(Field{f.key, f.value[i]}, element_label(what, i), static_cast<double>(min),
                         std::nullopt);
    if (!item) return std::nullopt;
    values.push_back(*item);
  }
  return values;
}

// Relative paths are relative to the recipe file, so a recipe and the files
// next to it can move together.
std::optional<std::string> Checker::read_path(const Field& f, const std::string& what) {
  auto text = read_string(f, what);
  if (!text) return std::nullopt;
  if (text->empty()) {
    error(f.anchor(), fmt::format("{} is empty; give a file path", what));
    return std::nullopt;
  }
  fs::path path(*text);
  if (path.is_relative()) path = recipe_dir_ / path;
  return path.lexically_normal().string();
}

template <typename T, typename Reader>
void Checker::read_into(const Fields& fields, const std::string& key, T& out, Reader reader) {
  if (const Field* f = find(fields, key))
    if (auto value = reader(*f)) out = static_cast<T>(*value);
}

// ---- Top-level sections ---------------------------------------------------------

bool Checker::check_version(const YAML::Node& root) {
  std::optional<Field> version_field;
  for (auto it = root.begin(); it != root.end() && !version_field; ++it)
    if (it->first.IsScalar() && it->first.Scalar() == "mcompress")
      version_field = Field{it->first, it->second};
  const Field* f = version_field ? &*version_field : nullptr;
  if (!f) {
    error(root, fmt::format("the recipe does not say its format version; add `mcompress: {}` "
                            "as its first line",
                            kRecipeFormatVersion));
    return true;  // probably a version-1 recipe that forgot the line: check the rest
  }
  auto version = is_plain(f->value) ? parse_int(f->value.Scalar()) : std::nullopt;
  if (!version) {
    error(f->anchor(), fmt::format("`mcompress` is the recipe format version and must be an "
                                   "integer; this host reads version {}, got {}",
                                   kRecipeFormatVersion, describe(f->value)));
    return true;
  }
  if (*version == kRecipeFormatVersion) return true;
  error(f->anchor(), fmt::format("this recipe is format version {}, but this mcompress reads "
                                 "recipe format version {} only; write `mcompress: {}` and the "
                                 "version-{} keys (see docs/recipes.md), or use an mcompress "
                                 "that reads version {}",
                                 *version, kRecipeFormatVersion, kRecipeFormatVersion,
                                 kRecipeFormatVersion, *version));
  return false;  // another format: checking its keys against ours would only add noise
}

void Checker::read_header(const Fields& top, Recipe& recipe) {
  recipe.name = fs::path(source_path_).stem().string();
  read_into(top, "name", recipe.name, [&](const Field& f) -> std::optional<std::string> {
    auto name = read_string(f, "`name`");
    if (name && (name->empty() || name->find('/') != std::string::npos)) {
      error(f.anchor(), "`name` must be a non-empty name without `/`; it names the run's outputs");
      return std::nullopt;
    }
    return name;
  });
  read_into(top, "seed", recipe.seed,
            [&](const Field& f) { return read_int(f, "`seed`", 0.0, std::nullopt); });
  read_into(top, "threads", recipe.threads,
            [&](const Field& f) { return read_int(f, "`threads` (0 = all cores)", 0.0, 4096.0); });
}

void Checker::read_model(const Fields& top, const YAML::Node& root, ModelSpec& model) {
  const Field* section = find(top, "model");
  if (!section) {
    error(root,
          "the recipe has no `model:` section; add one with `zoo: cnn` (a built-in model) "
          "or `path: model.pt` (a TorchScript file)");
    return;
  }
  Fields fields = read_fields(section->value, kModelKeys, "`model`");
  if (!section->value.IsMap()) return;
  const Field* zoo = find(fields, "zoo");
  const Field* path = find(fields, "path");
  const Field* hf = find(fields, "hf");
  const Field* options = find(fields, "options");
  if (int(zoo != nullptr) + int(path != nullptr) + int(hf != nullptr) != 1) {
    error((path ? path : hf ? hf : section)->key,
          "`model` needs exactly one of `zoo:` (a built-in model), `path:` (a TorchScript file) "
          "or `hf:` (a Hugging Face checkpoint directory)");
  }
  if (zoo) read_zoo(*zoo, options, model);
  if (path) read_model_path(*path, model);
  if (hf)
    if (auto dir = read_checkpoint_dir(*hf, "`model.hf`")) model.hf = *dir;
  read_into(fields, "dtype", model.dtype,
            [&](const Field& f) { return read_choice(f, "`model.dtype`", kComputeDtypes); });
  if (options && !zoo)
    error(options->key, "`model.options` only applies to `zoo` models; remove it");
  read_into(fields, "input_shape", model.input_shape,
            [&](const Field& f) { return read_int_list(f, "`model.input_shape`", 1); });
  read_into(fields, "num_classes", model.num_classes,
            [&](const Field& f) { return read_int(f, "`model.num_classes`", 1.0, std::nullopt); });
}

void Checker::read_zoo(const Field& zoo, const Field* options, ModelSpec& model) {
  auto name = read_string(zoo, "`model.zoo`");
  if (!name) return;
  std::vector<std::string> names;
  const ZooModelInfo* info = nullptr;
  static const std::vector<ZooModelInfo> models = zoo_models();
  for (const auto& m : models) {
    names.push_back(m.name);
    if (m.name == *name) info = &m;
  }
  if (!info) {
    error(zoo.anchor(), fmt::format("unknown zoo model `{}`; {}built-in models: {}", *name,
                                    did_you_mean(*name, names), quoted_list(names)));
    return;
  }
  model.zoo = *name;
  if (!options) return;
  std::string section = fmt::format("`model.options` (options of zoo model `{}`)", *name);
  Fields fields = read_fields(options->value, info->options, section);
  for (const auto& [key, f] : fields)
    if (auto v = read_int(f, fmt::format("`model.options.{}`", key), 1.0, std::nullopt))
      model.options[key] = *v;
}

void Checker::read_model_path(const Field& f, ModelSpec& model) {
  auto path = read_path(f, "`model.path`");
  if (!path) return;
  if (!recipe_detail::is_regular_file(*path)) {
    error(f.anchor(), fmt::format("model file `{}` not found (looked for {}); `model.path` is "
                                  "relative to the recipe's directory",
                                  f.value.Scalar(), *path));
    return;
  }
  model.path = *path;
}

// A Hugging Face checkpoint directory: it must exist and hold config.json;
// its weights and tokenizer are checked when the run reads them.
std::optional<std::string> Checker::read_checkpoint_dir(const Field& f, const std::string& what) {
  auto dir = read_path(f, what);
  if (!dir) return std::nullopt;
  if (!recipe_detail::is_directory(*dir)) {
    error(f.anchor(), fmt::format("checkpoint directory `{}` not found (looked for {}); {} is a "
                                  "Hugging Face checkpoint directory relative to the recipe's directory",
                                  f.value.Scalar(), *dir, what));
    return std::nullopt;
  }
  if (!recipe_detail::is_regular_file(fs::path(*dir) / "config.json")) {
    error(f.anchor(), fmt::format("{} has no config.json; {} must be a Hugging Face checkpoint "
                                  "directory (config.json, model.safetensors or shards, tokenizer.json)",
                                  *dir, what));
    return std::nullopt;
  }
  return dir;
}

// `data.path` of a `text` dataset: one file or a list of them.
void Checker::read_text_files(const Field& path, DataSpec& data) {
  std::vector<Field> files;
  if (path.value.IsSequence()) {
    for (size_t i = 0; i < path.value.size(); ++i) files.push_back(Field{path.key, path.value[i]});
    if (files.empty()) error(path.anchor(), "`data.path` is an empty list; name at least one text file");
  } else {
    files.push_back(path);
  }
  for (const Field& f : files) {
    auto file = read_path(f, "`data.path`");
    if (!file) continue;
    if (!recipe_detail::is_regular_file(*file))
      error(f.anchor(), fmt::format("text file `{}` not found (looked for {}); `data.path` is "
                                    "relative to the recipe's directory",
                                    f.value.Scalar(), *file));
    data.text_files.push_back(*file);
  }
  if (!data.text_files.empty()) data.path = data.text_files.front();
}

void Checker::read_data(const Fields& top, Recipe& recipe) {
  const Field* section = find(top, "data");
  if (!section) return;
  Fields fields = read_fields(section->value, kDataKeys, "`data`");
  DataSpec data;
  read_into(fields, "dataset", data.dataset,
            [&](const Field& f) { return read_choice(f, "`data.dataset`", kDatasets); });
  read_into(fields, "train_limit", data.train_limit, [&](const Field& f) {
    return read_int(f, "`data.train_limit` (0 = all)", 0.0, std::nullopt);
  });
  read_into(fields, "eval_limit", data.eval_limit, [&](const Field& f) {
    return read_int(f, "`data.eval_limit` (0 = all)", 0.0, std::nullopt);
  });
  read_into(fields, "calibration_size", data.calibration_size, [&](const Field& f) {
    return read_int(f, "`data.calibration_size`", 1.0, std::nullopt);
  });
  read_into(fields, "validation_size", data.validation_size, [&](const Field& f) {
    return read_int(f, "`data.validation_size` (0 = none)", 0.0, std::nullopt);
  });
  const Field* path = find(fields, "path");
  if (data.is_text()) {
    read_into(fields, "context", data.context, [&](const Field& f) {
      return read_int(f, "`data.context` (tokens per window)", 1.0, 4096.0);
    });
    read_into(fields, "test_fraction", data.test_fraction, [&](const Field& f) {
      auto fraction = read_float(f, "`data.test_fraction`", 0.0, 1.0);
      if (fraction && (*fraction <= 0.0 || *fraction >= 1.0)) {
        error(f.anchor(), "`data.test_fraction` must be strictly between 0 and 1: the end of "
                          "the file held out for the probes");
        return std::optional<double>();
      }
      return fraction;
    });
    if (data.is_tokenized_text()) {
      read_into(fields, "field", data.field,
                [&](const Field& f) { return read_string(f, "`data.field` (the JSON Lines text field)"); });
      if (const Field* f = find(fields, "tokenizer"))
        if (auto dir = read_path(*f, "`data.tokenizer`")) {
          data.tokenizer = *dir;
          if (!recipe_detail::is_regular_file(fs::path(*dir) / "tokenizer.json"))
            error(f->anchor(), fmt::format("`data.tokenizer`: no tokenizer.json in {}; name a directory "
                                           "holding a Hugging Face tokenizer.json",
                                           *dir));
        }
      read_into(fields, "tokenizer_vocab", data.tokenizer_vocab, [&](const Field& f) {
        return read_int(f, "`data.tokenizer_vocab` (a byte-level BPE trained on the text)", 260.0, 1e6);
      });
      read_into(fields, "eval_stride", data.eval_stride, [&](const Field& f) {
        return read_int(f, "`data.eval_stride` (0 = context)", 0.0, 1e6);
      });
      if (data.eval_stride > data.context)
        error(find(fields, "eval_stride")->anchor(),
              fmt::format("`data.eval_stride` ({}) must not exceed `data.context` ({})", data.eval_stride,
                          data.context));
      if (!data.tokenizer.empty() && data.tokenizer_vocab > 0)
        error(find(fields, "tokenizer_vocab")->key,
              "`data` has both `tokenizer` and `tokenizer_vocab`; keep one (a tokenizer to read, or "
              "one to train)");
      if (data.tokenizer.empty() && data.tokenizer_vocab == 0 && recipe.model.hf.empty())
        error(section->key, "`data.dataset: text` needs a tokenizer: the model's (`model: {hf: DIR}`), "
                            "`tokenizer: DIR` (a directory with tokenizer.json) or `tokenizer_vocab: "
                            "2048` to train a byte-level BPE on the text");
      if (path) read_text_files(*path, data);
    } else {
      for (const auto& key : kTokenizedTextKeys)
        if (const Field* f = find(fields, key))
          error(f->key, fmt::format("`data.{}` only applies to `dataset: text`; remove it", key));
    }
    if (!path) {
      error(section->key, fmt::format("`data.dataset: {}` needs `path:`, the plain-text file to "
                                      "read (the source tree has Tiny Shakespeare at "
                                      "tests/data/tinyshakespeare.txt)",
                                      data.dataset));
    } else if (data.is_tokenized_text()) {
      // read above
    } else if (auto file = read_path(*path, "`data.path`")) {
      data.path = *file;
      if (!recipe_detail::is_regular_file(data.path))
        error(path->anchor(), fmt::format("text file `{}` not found (looked for {}); `data.path` "
                                          "is relative to the recipe's directory",
                                          path->value.Scalar(), data.path));
    }
    recipe.data = data;
    return;
  }
  for (const auto& key : kTokenizedTextKeys)
    if (const Field* f = find(fields, key))
      error(f->key, fmt::format("`data.{}` only applies to `dataset: text`; remove it", key));
  for (const auto& key : kTextDataKeys)
    if (const Field* f = find(fields, key))
      error(f->key, fmt::format("`data.{}` only applies to text datasets (`dataset: "
                                "tiny_shakespeare`); remove it",
                                key));
  std::optional<std::string> directory = data.path;
  if (path) directory = read_path(*path, "`data.path`");
  if (directory) {  // an unreadable path was reported already; don't also blame the default
    data.path = *directory;
    check_fashion_mnist_dir(path ? *path : *section, data.path);
  }
  recipe.data = data;
}

void Checker::check_fashion_mnist_dir(const Field& at, const std::string& dir) {
  std::vector<std::string> missing;
  for (const auto& file : kFashionMnistFiles)
    if (!recipe_detail::is_regular_file(fs::path(dir) / file)) missing.push_back(file);
  if (missing.empty()) return;
  error(at.anchor(), fmt::format("Fashion-MNIST is not in {} (missing {}); install the Debian "
                                 "package with `apt-get install dataset-fashion-mnist`, or set "
                                 "`data.path` to a directory holding the gzipped IDX files",
                                 dir, fmt::join(missing, ", ")));
}

void Checker::read_probes(const Fields& top, Recipe& recipe) {
  Fields fields = read_section(top, "probes", kProbeKeys, "`probes`");
  ProbeSpec& probes = recipe.probes;
  // Without data there is nothing to measure accuracy on: the default set
  // quietly leaves it out, an explicit request for it is an error below.
  if (!recipe.data)
    probes.enabled.erase(std::remove(probes.enabled.begin(), probes.enabled.end(), "accuracy"),
                         probes.enabled.end());
  const bool text = recipe.data && recipe.data->is_text();
  if (text)
    probes.enabled.insert(probes.enabled.begin() + 1, kTextProbeNames.begin(),
                          kTextProbeNames.end());
  // Checkpoint language models are deployed to generate: measure it by default.
  if (recipe.data && recipe.data->is_tokenized_text()) probes.enabled.push_back("generation");
  auto known_probes = kProbeNames;
  for (const auto& name : catalog_.probe_names()) known_probes.push_back(name);
  if (const Field* f = find(fields, "enabled")) {
    if (auto names = read_string_list(*f, "`probes.enabled`")) {
      probes.enabled.clear();
      for (size_t i = 0; i < names->size(); ++i) {
        const std::string& probe = (*names)[i];
        if (!contains(known_probes, probe))
          error(f->value[i],
                fmt::format("unknown probe `{}`; {}probes: {}", probe,
                            did_you_mean(probe, known_probes), quoted_list(known_probes)));
        else if (probe == "accuracy" && !recipe.data)
          error(f->value[i],
                "the `accuracy` probe needs evaluation data; add a `data:` section "
                "(e.g. `data: {dataset: fashion_mnist}`) or remove `accuracy`");
        else if (contains(kTextProbeNames, probe) && !text)
          error(f->value[i],
                fmt::format("the `{}` probe measures language models and needs text data "
                            "(`data: {{dataset: tiny_shakespeare, path: FILE}}`); remove it",
                            probe));
        else if (!contains(probes.enabled, probe))
          probes.enabled.push_back(probe);
      }
    }
  }
  read_into(fields, "latency_batch_sizes", probes.latency_batch_sizes,
            [&](const Field& f) { return read_int_list(f, "`probes.latency_batch_sizes`", 1); });
  read_into(fields, "latency_warmup", probes.latency_warmup,
            [&](const Field& f) { return read_int(f, "`probes.latency_warmup`", 0.0, 1e6); });
  read_into(fields, "latency_runs", probes.latency_runs,
            [&](const Field& f) { return read_int(f, "`probes.latency_runs`", 1.0, 1e6); });
  read_into(fields, "eval_batch_size", probes.eval_batch_size, [&](const Field& f) {
    return read_int(f, "`probes.eval_batch_size`", 1.0, std::nullopt);
  });
  read_into(fields, "sample_length", probes.sample_length, [&](const Field& f) {
    return read_int(f, "`probes.sample_length` (tokens; characters for character models)", 1.0, 100000.0);
  });
  read_into(fields, "prompt_length", probes.prompt_length, [&](const Field& f) {
    return read_int(f, "`probes.prompt_length` (prefill tokens of the generation probe)", 1.0, 1e6);
  });
  read_into(fields, "new_tokens", probes.new_tokens, [&](const Field& f) {
    return read_int(f, "`probes.new_tokens` (tokens the generation probe decodes)", 1.0, 1e6);
  });
  if (const Field* f = find(fields, "edge")) {
    Fields edge_fields = read_fields(f->value, kEdgeKeys, "`probes.edge`");
    ProbeSpec::Edge edge;
    read_into(edge_fields, "threads", edge.threads, [&](const Field& e) {
      return read_int(e, "`probes.edge.threads`", 1.0, 1024.0);
    });
    read_into(edge_fields, "cpus", edge.cpus, [&](const Field& e) {
      return read_int_list(e, "`probes.edge.cpus` (CPU numbers to pin to)", 0);
    });
    read_into(edge_fields, "memory_mb", edge.memory_mb, [&](const Field& e) {
      return read_float(e, "`probes.edge.memory_mb`", 0.0, std::nullopt);
    });
    probes.edge = edge;
  }
}

GateDraft Checker::read_gate(const Field* section, const GateDraft& base, const std::string& path) {
  GateDraft gate = base;
  gate.own_reference = false;
  if (!section) return gate;
  Fields fields = read_fields(section->value, kGateKeys, fmt::format("`{}`", path));
  if (const Field* f = find(fields, "max_accuracy_drop")) {
    if (f->value.IsNull()) {
      gate.spec.max_accuracy_drop.reset();  // a stage may switch off the inherited limit
    } else if (auto drop = read_float(*f,
                                      fmt::format("`{}.max_accuracy_drop` (a fraction: "
                                                  "0.01 = 1 accuracy point)",
                                                  path),
                                      0.0, 1.0)) {
      gate.spec.max_accuracy_drop = *drop;
      check_gate_measurable(*f);
    }
  }
  if (const Field* f = find(fields, "reference")) {
    if (auto reference = read_string(*f, fmt::format("`{}.reference`", path))) {
      gate.spec.reference = *reference;
      gate.reference = *f;
      gate.own_reference = true;
    }
  }
  if (const Field* f = find(fields, "on_fail")) {
    if (auto on_fail = read_choice(*f, fmt::format("`{}.on_fail`", path), {"rollback", "stop"}))
      gate.spec.on_fail = *on_fail == "stop" ? OnGateFail::Stop : OnGateFail::Rollback;
  }
  return gate;
}

// Fields a stage sets override the recipe's limits; the others are inherited.
IsolationSpec Checker::read_isolation(const Field* section, const IsolationSpec& base,
                                      const std::string& path) {
  IsolationSpec isolation = base;
  if (!section) return isolation;
  Fields fields = read_fields(section->value, kIsolationKeys, fmt::format("`{}`", path));
  read_into(fields, "time_limit_s", isolation.time_limit_s, [&](const Field& f) {
    return read_float(f, fmt::format("`{}.time_limit_s` (seconds; 0 = no limit)", path), 0.0,
                      std::nullopt);
  });
  read_into(fields, "memory_limit_mb", isolation.memory_limit_mb, [&](const Field& f) {
    return read_float(f,
                      fmt::format("`{}.memory_limit_mb` (MiB; 0 = three quarters of the "
                                  "machine's memory)",
                                  path),
                      0.0, std::nullopt);
  });
  return isolation;
}

// An accuracy limit that cannot be measured would silently keep every stage.
void Checker::check_gate_measurable(const Field& drop) {
  if (accuracy_measured_) return;
  error(drop.key, has_data_ ? "`max_accuracy_drop` needs the `accuracy` probe; add it to "
                              "`probes.enabled` or remove the limit"
                            : "`max_accuracy_drop` needs evaluation data; add a `data:` section "
                              "(e.g. `data: {dataset: fashion_mnist}`) or remove the limit");
}

// ---- Stages ---------------------------------------------------------------------

StageDraft Checker::read_stage(const YAML::Node& node, size_t index) {
  StageDraft draft;
  draft.node = node;
  if (!node.IsMap()) {
    error(node, fmt::format("`stages[{}]` must be a mapping such as `{{pass: magnitude_prune}}`, "
                            "got {}",
                            index, describe(node)));
    return draft;
  }
  // Parameters written next to `pass:` instead of under `params:` are a common slip.
  const PassInfo* info = nullptr;
  if (auto pass = node["pass"]; pass && pass.IsScalar()) info = catalog_.find(pass.Scalar());
  auto hint = [&](const std::string& key) -> std::string {
    if (!info) return "";
    for (const auto& spec : info->params)
      if (spec.name == key)
        return fmt::format("`{}` is a parameter of pass `{}`: put it under `params:`", key,
                           info->name);
    return "";
  };
  draft.fields = read_fields(node, kStageKeys, fmt::format("`stages[{}]`", index), "key", hint);
  const Field* pass = find(draft.fields, "pass");
  if (!pass) {
    error(node, fmt::format("`stages[{}]` has no `pass:`; add one of {} (see `mcompress plugins`)",
                            index, quoted_list(catalog_.names())));
  } else if (auto name = read_string(*pass, "`pass`")) {
    draft.info = catalog_.find(*name);
    if (!draft.info)
      error(pass->anchor(), fmt::format("unknown pass `{}`; {}available passes: {} (run "
                                        "`mcompress plugins` to see what is loaded)",
                                        *name, did_you_mean(*name, catalog_.names()),
                                        quoted_list(catalog_.names())));
  }
  draft.gate =
      read_gate(find(draft.fields, "gate"), *default_gate_, fmt::format("stages[{}].gate", index));
  if (const Field* teacher = find(draft.fields, "teacher")) draft.teacher = *teacher;
  if (const Field* student = find(draft.fields, "student")) draft.student = *student;
  return draft;
}

std::vector<std::string> Checker::stage_names(const std::vector<StageDraft>& drafts) {
  std::vector<std::optional<std::string>> explicit_names;
  std::vector<std::string> passes;
  std::map<std::string, const Field*> first_use;
  for (const auto& draft : drafts) {
    std::optional<std::string> name;
    if (const Field* f = find(draft.fields, "name")) {
      name = read_string(*f, "stage `name`");
      if (name && (name->empty() || !valid_stage_name_chars(*name) || all_digits(*name) ||
                   contains(kReservedStageNames, *name))) {
        error(f->anchor(), fmt::format("stage name `{}` is not usable: use letters, digits, `_`, "
                                       "`-` and `.`, not only digits (those address stages by "
                                       "index) and not `original`, `baseline` or `previous`",
                                       *name));
      } else if (name && first_use.count(*name)) {
        error(f->anchor(), fmt::format("duplicate stage name `{}` (first used at line {}); give "
                                       "each stage a unique `name:`",
                                       *name, first_use[*name]->key.Mark().line + 1));
      } else if (name) {
        first_use[*name] = f;
      }
    }
    explicit_names.push_back(name);
    passes.push_back(draft.info ? draft.info->name : "");
  }
  return assign_stage_names(explicit_names, passes);
}

std::optional<ParamValue> Checker::read_param(const Field& f, const ParamSpec& spec,
                                              const std::string& what) {
  switch (spec.type) {
    case ParamType::Bool: return to_optional_value(read_bool(f, what));
    case ParamType::Int: return to_optional_value(read_int(f, what, spec.min, spec.max));
    case ParamType::Float: return to_optional_value(read_float(f, what, spec.min, spec.max));
    case ParamType::String: return to_optional_value(read_string(f, what));
    case ParamType::Choice: return to_optional_value(read_choice(f, what, spec.choices));
    case ParamType::StringList: return to_optional_value(read_string_list(f, what));
  }
  return std::nullopt;
}

Params Checker::resolve_params(const StageDraft& draft, const std::string& stage) {
  const PassInfo& info = *draft.info;
  std::vector<std::string> known;
  for (const auto& spec : info.params) known.push_back(spec.name);
  const Field* section = find(draft.fields, "params");
  Fields given;
  if (section && !section->value.IsNull() && !section->value.IsMap()) {
    error(section->value, fmt::format("`params` of stage `{}` (pass `{}`) must be a mapping of `name: value` "
                                      "lines, got {}",
                                      stage, info.name, describe(section->value)));
  } else if (section) {
    given = read_fields(section->value, known,
                        fmt::format("stage `{}` (pass `{}`)", stage, info.name), "parameter");
  }
  Params params;
  for (const auto& spec : info.params) {
    if (const Field* f = find(given, spec.name)) {
      std::string what = fmt::format("parameter `{}` of pass `{}`", spec.name, info.name);
      if (auto value = read_param(*f, spec, what)) params.set(spec.name, *value);
    } else if (spec.default_value) {
      params.set(spec.name, normalized_default(spec));
    } else {
      error(section ? section->key : find(draft.fields, "pass")->key,
            fmt::format("stage `{}`: pass `{}` requires parameter `{}` ({}); add `{}: <value>` "
                        "under `params:`",
                        stage, info.name, spec.name, param_summary(spec), spec.name));
    }
  }
  return params;
}

// `user` is the index of the stage that uses the teacher; the recipe-level
// teacher passes names.size(), and check_inherited_references() checks order.
std::optional<std::string> Checker::resolve_teacher(const Field& f, const std::string& whose,
                                                    size_t user,
                                                    const std::vector<std::string>& names) {
  if (f.value.IsMap()) {  // `teacher: {hf: DIR}`
    Fields fields = read_fields(f.value, {"hf"}, fmt::format("the `teacher` of {}", whose));
    const Field* hf = find(fields, "hf");
    if (!hf) {
      error(f.anchor(), fmt::format("the `teacher` of {} as a mapping needs `hf: DIR` (a Hugging Face "
                                    "checkpoint directory)",
                                    whose));
      return std::nullopt;
    }
    return read_checkpoint_dir(*hf, fmt::format("the `teacher` of {}", whose));
  }
  auto value = read_string(f, fmt::format("the `teacher` of {}", whose));
  if (!value || *value == "original" || *value == "previous") return value;
  auto stage = std::find(names.begin(), names.end(), *value);
  if (stage != names.end()) {
    if (static_cast<size_t>(stage - names.begin()) < user) return value;
    error(f.anchor(), fmt::format("the teacher of {} is stage `{}`, which does not run before "
                                  "it; a teacher must be `original`, an earlier stage or a "
                                  "TorchScript file",
                                  whose, *value));
    return std::nullopt;
  }
  fs::path path(*value);
  if (path.is_relative()) path = recipe_dir_ / path;
  path = path.lexically_normal();
  if (recipe_detail::is_regular_file(path) || recipe_detail::is_regular_file(path / "config.json")) return path.string();
  std::vector<std::string> earlier(names.begin(), names.begin() + std::min(user, names.size()));
  std::vector<std::string> candidates{"original"};
  candidates.insert(candidates.end(), earlier.begin(), earlier.end());
  error(f.anchor(),
        fmt::format("the teacher of {}, `{}`, is neither `original`, `previous`, {} nor an "
                    "existing TorchScript file (no file at {}); {}write `teacher: "
                    "original` to distill from the input model",
                    whose, *value,
                    earlier.empty() ? "an earlier stage"
                                    : fmt::format("an earlier stage ({})", quoted_list(earlier)),
                    path.string(), did_you_mean(*value, candidates)));
  return std::nullopt;
}

// `student: {zoo: NAME, options: {...}}`, `{path: FILE}` or `{stage: NAME}`.
std::optional<StudentSpec> Checker::resolve_student(const Field& f, const std::string& whose,
                                                    size_t user,
                                                    const std::vector<std::string>& names,
                                                    const Recipe& recipe) {
  const std::string section = fmt::format("the `student` of {}", whose);
  const std::string forms =
      "write `student: {zoo: cnn, options: {width: 8}}`, `student: {path: model.pt}`, "
      "`student: {hf: DIR}` or `student: {stage: NAME}`";
  if (!f.value.IsMap()) {
    error(f.anchor(), fmt::format("{} must be a mapping; {}", section, forms));
    return std::nullopt;
  }
  Fields fields = read_fields(f.value, kStudentKeys, section);
  const Field* zoo = find(fields, "zoo");
  const Field* path = find(fields, "path");
  const Field* stage = find(fields, "stage");
  const Field* hf = find(fields, "hf");
  const Field* options = find(fields, "options");
  const int given = int(zoo != nullptr) + int(path != nullptr) + int(stage != nullptr) + int(hf != nullptr);
  if (given != 1) {
    error(f.anchor(), fmt::format("{} needs exactly one of `zoo`, `path`, `hf` and `stage`; {}", section,
                                  forms));
    return std::nullopt;
  }
  if (hf) {
    auto dir = read_checkpoint_dir(*hf, fmt::format("`hf` in {}", section));
    if (!dir) return std::nullopt;
    StudentSpec student;
    student.path = *dir;
    return student;
  }
  if (options && !zoo) {
    error(options->key, fmt::format("`options` in {} only applies to `zoo` students; remove it",
                                    section));
    return std::nullopt;
  }
  StudentSpec student;
  if (zoo) {
    ModelSpec model;
    const size_t before = problems_.size();
    read_zoo(*zoo, options, model);
    if (problems_.size() != before || model.zoo.empty()) return std::nullopt;
    student.zoo = model.zoo;
    student.options = model.options;
    check_model_fits_data(zoo->anchor(), student.zoo, student.options, section, recipe);
    return student;
  }
  if (path) {
    auto file = read_path(*path, fmt::format("`path` in {}", section));
    if (!file) return std::nullopt;
    if (!recipe_detail::is_regular_file(*file)) {
      error(path->anchor(), fmt::format("{}: model file `{}` not found (looked for {}); paths are "
                                        "relative to the recipe's directory",
                                        section, path->value.Scalar(), *file));
      return std::nullopt;
    }
    student.path = *file;
    return student;
  }
  auto name = read_string(*stage, fmt::format("`stage` in {}", section));
  if (!name) return std::nullopt;
  if (*name == "original") {
    student.stage = *name;
    return student;
  }
  auto it = std::find(names.begin(), names.end(), *name);
  if (it != names.end() && static_cast<size_t>(it - names.begin()) < user) {
    student.stage = *name;
    return student;
  }
  std::vector<std::string> candidates{"original"};
  candidates.insert(candidates.end(), names.begin(), names.begin() + std::min(user, names.size()));
  error(stage->anchor(),
        fmt::format("{} is stage `{}`, which {}; a student stage must be `original` or a stage "
                    "that runs before (here: {}){}",
                    section, *name, it == names.end() ? "does not exist" : "does not run before it",
                    quoted_list(candidates), suggestion_suffix(*name, candidates)));
  return std::nullopt;
}

// A zoo model that reads images cannot train on text, and a language model's
// position table must cover the data's windows.
void Checker::check_model_fits_data(const YAML::Node& at, const std::string& zoo,
                                    const std::map<std::string, int64_t>& options,
                                    const std::string& whose, const Recipe& recipe) {
  const ZooModelInfo* info = nullptr;
  static const std::vector<ZooModelInfo> models = zoo_models();
  for (const auto& m : models)
    if (m.name == zoo) info = &m;
  if (!info) return;
  const bool text = recipe.data && recipe.data->is_text();
  if (info->takes_tokens && !text) {
    error(at, fmt::format("{}: zoo model `{}` is a language model and needs text data; add "
                          "`data: {{dataset: tiny_shakespeare, path: FILE}}`",
                          whose, zoo));
  } else if (!info->takes_tokens && text) {
    error(at, fmt::format("{}: zoo model `{}` classifies images and cannot read text data; use "
                          "`char_lm`",
                          whose, zoo));
  } else if (info->takes_tokens) {
    int64_t model_context = 0;
    try {
      model_context = resolved_zoo_options(zoo, options).at("context");
    } catch (const std::exception&) {
      return;  // bad options were reported where they were read
    }
    if (model_context < recipe.data->context)
      error(at, fmt::format("{}: zoo model `{}` has context {} but `data.context` is {}; set "
                            "`options: {{context: {}}}` or shorten the data's windows",
                            whose, zoo, model_context, recipe.data->context,
                            recipe.data->context));
  }
}

void Checker::check_gate_reference(const GateDraft& gate, const std::string& whose, size_t user,
                                   const std::vector<std::string>& names) {
  const std::string& reference = gate.spec.reference;
  if (!gate.reference || reference == "baseline" || reference == "previous") return;
  auto stage = std::find(names.begin(), names.end(), reference);
  if (stage == names.end()) {
    std::vector<std::string> candidates{"baseline", "previous"};
    candidates.insert(candidates.end(), names.begin(),
                      names.begin() + std::min(user, names.size()));
    error(gate.reference->anchor(),
          fmt::format("the gate reference of {}, `{}`, is not a stage{}; {}", whose, reference,
                      suggestion_suffix(reference, candidates), gate_reference_help()));
  } else if (static_cast<size_t>(stage - names.begin()) >= user) {
    error(gate.reference->anchor(),
          fmt::format("the gate of {} compares against stage `{}`, which does not run before "
                      "it; {}",
                      whose, reference, gate_reference_help()));
  }
}

void Checker::check_needs(const StageDraft& draft, const StageSpec& stage) {
  const PassNeeds& needs = draft.info->needs;
  const YAML::Node& at = find(draft.fields, "pass")->key;
  if (needs.teacher && !draft.teacher && !recipe_teacher_)
    error(at, fmt::format("stage `{}`: pass `{}` needs a teacher; add `teacher: original` to the "
                          "stage (or once at the top of the recipe for every stage), or name an "
                          "earlier stage or a TorchScript file",
                          stage.name, stage.pass));
  for (auto [needed, what] : {std::pair{needs.train_data, "training data"},
                              std::pair{needs.calibration_data, "calibration data"}}) {
    if (needed && !has_data_)
      error(at, fmt::format("stage `{}`: pass `{}` needs {}, but the recipe has no `data:` "
                            "section; add `data: {{dataset: fashion_mnist}}`",
                            stage.name, stage.pass, what));
  }
}

StageSpec Checker::resolve_stage(const StageDraft& draft, size_t index,
                                 const std::vector<std::string>& names, const Recipe& recipe) {
  StageSpec stage;
  stage.name = names[index];
  stage.gate = draft.gate.spec;
  stage.isolation = read_isolation(find(draft.fields, "isolation"), recipe.isolation,
                                   fmt::format("stages[{}].isolation", index));
  if (draft.info) {
    stage.pass = draft.info->name;
    stage.params = resolve_params(draft, stage.name);
  }
  std::string whose = fmt::format("stage `{}`", stage.name);
  if (draft.student) stage.student = resolve_student(*draft.student, whose, index, names, recipe);
  if (draft.teacher)
    stage.teacher = resolve_teacher(*draft.teacher, whose, index, names);
  else if (draft.info && draft.info->needs.teacher)
    stage.teacher = recipe.teacher;
  if (draft.gate.own_reference) check_gate_reference(draft.gate, whose, index, names);
  if (draft.info) check_needs(draft, stage);
  return stage;
}

// A recipe-level teacher or gate reference naming a stage must still run
// before every stage that inherits it; one message lists all such stages.
void Checker::check_inherited_references(const std::vector<StageDraft>& drafts,
                                         const std::vector<std::string>& names) {
  // A reference that names no stage was reported where it was read.
  auto runs_not_before = [&](const std::string& reference, size_t user) {
    size_t index =
        static_cast<size_t>(std::find(names.begin(), names.end(), reference) - names.begin());
    return index < names.size() && index >= user;
  };
  std::vector<std::string> bad_teacher_users, bad_gate_users;
  for (size_t i = 0; i < drafts.size(); ++i) {
    const StageDraft& draft = drafts[i];
    bool inherits_teacher = recipe_teacher_ && recipe_teacher_->value.IsScalar() &&
                            !draft.teacher && draft.info && draft.info->needs.teacher;
    if (inherits_teacher && runs_not_before(recipe_teacher_->value.Scalar(), i))
      bad_teacher_users.push_back(names[i]);
    bool inherits_gate = default_gate_->reference && !draft.gate.own_reference;
    if (inherits_gate && runs_not_before(draft.gate.spec.reference, i))
      bad_gate_users.push_back(names[i]);
  }
  if (!bad_teacher_users.empty())
    error(recipe_teacher_->anchor(),
          fmt::format("the recipe-level teacher `{}` is a stage that does not run before {} "
                      "(which inherit it); give those stages their own `teacher:`",
                      recipe_teacher_->value.Scalar(), quoted_list(bad_teacher_users)));
  if (!bad_gate_users.empty())
    error(default_gate_->reference->anchor(),
          fmt::format("the default gate compares against stage `{}`, which does not run before "
                      "{} (which inherit it); give those stages their own `gate.reference`",
                      default_gate_->spec.reference, quoted_list(bad_gate_users)));
}

void Checker::read_stages(const Fields& top, const YAML::Node& root, Recipe& recipe) {
  const Field* f = find(top, "stages");
  if (!f) {
    error(root,
          "the recipe has no `stages:`; add a list of stages such as "
          "`stages: [{pass: magnitude_prune}]`");
    return;
  }
  if (!f->value.IsSequence() || f->value.size() == 0) {
    error(f->anchor(), fmt::format("`stages` must be a non-empty list of stages such as "
                                   "`[{{pass: magnitude_prune}}]`, got {}",
                                   describe(f->value)));
    return;
  }
  std::vector<StageDraft> drafts;
  for (size_t i = 0; i < f->value.size(); ++i) drafts.push_back(read_stage(f->value[i], i));
  std::vector<std::string> names = stage_names(drafts);
  if (recipe_teacher_)
    recipe.teacher = resolve_teacher(*recipe_teacher_, "the recipe", names.size(), names);
  check_gate_reference(*default_gate_, "the recipe", names.size(), names);
  for (size_t i = 0; i < drafts.size(); ++i)
    recipe.stages.push_back(resolve_stage(drafts[i], i, names, recipe));
  check_inherited_references(drafts, names);
}

Recipe Checker::run(const YAML::Node& root) {
  Recipe recipe;
  recipe.source_path = source_path_;
  recipe.name = fs::path(source_path_).stem().string();
  if (!root.IsMap()) {
    error(root, root.IsNull() ? fmt::format("the recipe is empty; start it with `mcompress: {}`, "
                                            "a `model:` and `stages:` (see docs/recipes.md)",
                                            kRecipeFormatVersion)
                              : fmt::format("a recipe must be a mapping of `key: value` lines, "
                                            "got {}",
                                            describe(root)));
    return recipe;
  }
  // Another format version's keys would only produce noise, so check it first.
  if (!check_version(root)) return recipe;
  Fields top = read_fields(root, kTopKeys, "the recipe");
  read_header(top, recipe);
  read_model(top, root, recipe.model);
  read_data(top, recipe);
  has_data_ = recipe.data.has_value();
  if (!recipe.model.zoo.empty()) {
    const YAML::Node model_node = find(top, "model")->value;
    check_model_fits_data(model_node["zoo"], recipe.model.zoo, recipe.model.options, "`model`",
                          recipe);
  }
  read_probes(top, recipe);
  accuracy_measured_ = contains(recipe.probes.enabled, "accuracy");
  GateDraft default_gate = read_gate(find(top, "gate"), GateDraft{}, "gate");
  default_gate_ = &default_gate;
  recipe.default_gate = default_gate.spec;
  recipe.isolation = read_isolation(find(top, "isolation"), IsolationSpec{}, "isolation");
  recipe_teacher_ = find(top, "teacher");
  read_stages(top, root, recipe);
  default_gate_ = nullptr;
  return recipe;
}

}  // namespace

Recipe check_recipe(const YAML::Node& root, const std::string& source_path,
                    const NodeLocator& locator, const PassCatalog& catalog,
                    std::vector<Diagnostic>& problems) {
  return Checker(source_path, locator, catalog, problems).run(root);
}

}  // namespace mcompress::recipe_detail

namespace mcompress {

const std::vector<std::string>& builtin_probe_names() { return recipe_detail::kProbeNames; }

bool is_builtin_probe(const std::string& name) {
  const auto& names = builtin_probe_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace mcompress
