// Reading recipe files, applying --set overrides, and presenting a resolved
// recipe (JSON, plan text, diagnostics). The checks themselves live in
// recipe_validate.cpp.
#include "mcompress/framework/support/file_reading.h"
#include "mcompress/framework/recipe/recipe.h"
#include "recipe_detail.h"
#include "mcompress/framework/sources/zoo.h"
#include "sources/utf8_text.h"
#include "yaml_tree_check.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace mcompress {
namespace {

namespace fs = std::filesystem;
using recipe_detail::NodeLocator;

constexpr const char* kOverrideFile = "--set";
// Far more than any recipe holds; more means an alias bomb or cycle.
constexpr size_t kMaxRecipeNodes = 100000;

// ---- Where nodes came from ---------------------------------------------------

// Nodes put into the tree by --set carry marks relative to the override text,
// so they are remembered here and reported against the override instead.
class RecipeLocator : public NodeLocator {
 public:
  explicit RecipeLocator(std::string file) : file_(std::move(file)) {}

  void remember(const YAML::Node& node, const std::string& override_text) {
    from_overrides_.emplace_back(node, override_text);
    if (node.IsMap())
      for (auto it = node.begin(); it != node.end(); ++it) {
        remember(it->first, override_text);
        remember(it->second, override_text);
      }
    if (node.IsSequence())
      for (const auto& item : node) remember(item, override_text);
  }

  Diagnostic diagnose(const YAML::Node& node, const std::string& message) const override {
    for (const auto& [from_override, text] : from_overrides_)
      if (from_override.is(node))
        return {kOverrideFile, {}, fmt::format("in `--set {}`: {}", text, message)};
    YAML::Mark mark = node.Mark();
    if (mark.is_null()) return {file_, {}, message};
    return {file_, {mark.line + 1, mark.column + 1}, message};
  }

 private:
  std::string file_;
  std::vector<std::pair<YAML::Node, std::string>> from_overrides_;
};

// ---- Reading the file ----------------------------------------------------------

std::string absolute_path(const std::string& path) {
  return fs::absolute(fs::path(path)).lexically_normal().string();
}

std::string read_recipe_text(const std::string& path) {
  std::error_code unreadable;  // a name too long to look up is "not found", not an exception
  if (!fs::exists(path, unreadable)) throw RecipeError({{path, {}, "recipe file not found; check the path"}});
  if (recipe_detail::is_directory(path))
    throw RecipeError({{path, {}, "is a directory; give the recipe's .yaml file"}});
  auto text = read_text_file_if_present(path);
  if (!text) throw RecipeError({{path, {}, "recipe file cannot be read"}});
  return std::move(*text);
}

YAML::Node parse_yaml(const std::string& text, const std::string& path) {
  try {
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw RecipeError({{path,
                        {e.mark.line + 1, e.mark.column + 1},
                        fmt::format("YAML syntax error: {}; check indentation, colons and "
                                    "brackets around here",
                                    e.msg)}});
  }
}

// ---- --set overrides -------------------------------------------------------------

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, separator)) parts.push_back(part);
  if (!text.empty() && text.back() == separator) parts.emplace_back();
  return parts;
}

std::optional<size_t> parse_index(const std::string& s) {
  size_t index = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), index);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return index;
}

// The names the validator will give the stages, so `stages.NAME` also finds
// a stage whose name defaults to its pass.
std::vector<std::string> effective_stage_names(const YAML::Node& stages) {
  std::vector<std::optional<std::string>> explicit_names;
  std::vector<std::string> passes;
  for (const auto& stage : stages) {
    std::optional<std::string> name;
    std::string pass;
    if (stage.IsMap()) {
      if (auto n = stage["name"]; n && n.IsScalar()) name = n.Scalar();
      if (auto p = stage["pass"]; p && p.IsScalar()) pass = p.Scalar();
    }
    explicit_names.push_back(name);
    passes.push_back(pass);
  }
  return recipe_detail::assign_stage_names(explicit_names, passes);
}

// An override value is one setting, never a large document: aliases can make
// a few bytes of YAML stand for billions of nodes, which every later walk of
// the tree would visit.
constexpr size_t kMaxOverrideNodes = 10000;

// Counts nodes as they would be visited (aliases expanded), stopping at `budget`.
size_t count_nodes(const YAML::Node& node, size_t budget) {
  size_t count = 1;
  if (node.IsMap()) {
    for (auto it = node.begin(); it != node.end() && count <= budget; ++it) {
      count += count_nodes(it->first, budget - std::min(count, budget));
      count += count_nodes(it->second, budget - std::min(count, budget));
    }
  } else if (node.IsSequence()) {
    for (auto it = node.begin(); it != node.end() && count <= budget; ++it) {
      count += count_nodes(*it, budget - std::min(count, budget));
    }
  }
  return count;
}

class OverrideApplier {
 public:
  OverrideApplier(YAML::Node& root, RecipeLocator& locator, std::vector<Diagnostic>& problems)
      : root_(root), locator_(locator), problems_(problems) {}

  void apply(const std::string& text);

 private:
  void fail(const std::string& text, const std::string& message) {
    problems_.push_back({kOverrideFile, {}, fmt::format("in `--set {}`: {}", utf8_text::printable(text), message)});
  }
  std::optional<size_t> sequence_index(const YAML::Node& sequence, const std::string& segment,
                                       const std::string& where, const std::string& text);
  bool descend(YAML::Node& current, const std::string& segment, const std::string& where,
               const std::string& text);
  void assign(YAML::Node& current, const std::string& segment, const YAML::Node& value,
              const std::string& where, const std::string& text);

  YAML::Node& root_;
  RecipeLocator& locator_;
  std::vector<Diagnostic>& problems_;
};

void OverrideApplier::apply(const std::string& text) {
  const std::string usage =
      "write KEY.PATH=VALUE, e.g. `stages.prune.params.sparsity=0.3` or `seed=7`";
  if (utf8_text::first_invalid_byte(text) != std::string::npos)
    return fail(text, "the override is not valid UTF-8; give keys and values as UTF-8 text");
  size_t equals = text.find('=');
  if (equals == std::string::npos || equals == 0) return fail(text, "malformed override; " + usage);
  std::vector<std::string> path = split(text.substr(0, equals), '.');
  if (std::any_of(path.begin(), path.end(), [](const auto& s) { return s.empty(); }))
    return fail(text, "malformed key path (empty segment); " + usage);
  YAML::Node value;
  try {
    value = YAML::Load(text.substr(equals + 1));
  } catch (const YAML::ParserException& e) {
    return fail(text,
                fmt::format("the value is not valid YAML ({}); quote it if it is text", e.msg));
  }
  if (count_nodes(value, kMaxOverrideNodes) > kMaxOverrideNodes) {
    return fail(text, fmt::format("the value is too large (more than {} YAML nodes once its aliases are "
                                  "expanded); give a plain value",
                                  kMaxOverrideNodes));
  }
  if (auto problem = yaml_tree_check::first_problem(value, kMaxOverrideNodes)) return fail(text, problem->message);
  if (!root_.IsMap() && !root_.IsNull())
    return fail(text, "the recipe is not a mapping, so nothing in it can be set");
  YAML::Node current = root_;
  std::string where;
  for (size_t i = 0; i + 1 < path.size(); ++i) {
    if (!descend(current, path[i], where, text)) return;
    where += (where.empty() ? "" : ".") + path[i];
  }
  assign(current, path.back(), value, where, text);
}

// A list entry by 0-based index, or (for `stages`) by stage name.
std::optional<size_t> OverrideApplier::sequence_index(const YAML::Node& sequence,
                                                      const std::string& segment,
                                                      const std::string& where,
                                                      const std::string& text) {
  if (recipe_detail::all_digits(segment)) {
    auto index = parse_index(segment);
    if (index && *index < sequence.size()) return index;
    fail(text, fmt::format("index {} is out of range: `{}` has {} entries (0-based)", segment,
                           where, sequence.size()));
    return std::nullopt;
  }
  std::vector<std::string> names = effective_stage_names(sequence);
  auto it = std::find(names.begin(), names.end(), segment);
  if (it != names.end()) return static_cast<size_t>(it - names.begin());
  auto match = closest_match(segment, names);
  fail(text, fmt::format("`{}` has no stage named `{}`; {}stages: {} (or use a 0-based index)",
                         where, segment, match ? fmt::format("did you mean `{}`? ", *match) : "",
                         fmt::join(names, ", ")));
  return std::nullopt;
}

// Moves `current` one level down, creating missing sections, so that
// `data.path=...` works in a recipe without `data:`.
bool OverrideApplier::descend(YAML::Node& current, const std::string& segment,
                              const std::string& where, const std::string& text) {
  if (current.IsSequence()) {
    auto index = sequence_index(current, segment, where, text);
    if (!index) return false;
    YAML::Node child = current[*index];
    current.reset(child);  // reset, not '=': assigning would overwrite the node in the tree
    return true;
  }
  if (current.IsScalar()) {
    fail(text,
         fmt::format("`{}` is a single value, not a section; it has no `{}`", where, segment));
    return false;
  }
  YAML::Node child = current[segment];
  if (!child || child.IsNull()) {
    YAML::Node section(YAML::NodeType::Map);
    assign(current, segment, section, where, text);
    child.reset(current[segment]);
  }
  current.reset(child);
  return true;
}

void OverrideApplier::assign(YAML::Node& current, const std::string& segment,
                             const YAML::Node& value, const std::string& where,
                             const std::string& text) {
  if (current.IsSequence()) {
    if (auto index = sequence_index(current, segment, where, text)) {
      current[*index] = value;
      locator_.remember(value, text);
    }
    return;
  }
  if (current.IsScalar()) {
    fail(text,
         fmt::format("`{}` is a single value, not a section; it has no `{}`", where, segment));
    return;
  }
  current[segment] = value;
  // A key the override added has no position in the file either.
  for (auto it = current.begin(); it != current.end(); ++it)
    if (it->second.is(value)) locator_.remember(it->first, text);
  locator_.remember(value, text);
}

// ---- Presenting ------------------------------------------------------------------

nlohmann::json param_to_json(const ParamValue& value) {
  return std::visit([](const auto& v) { return nlohmann::json(v); }, value);
}

const char* on_fail_name(OnGateFail on_fail) {
  return on_fail == OnGateFail::Stop ? "stop" : "rollback";
}

nlohmann::json gate_to_json(const GateSpec& gate) {
  nlohmann::json json;
  json["max_accuracy_drop"] =
      gate.max_accuracy_drop ? nlohmann::json(*gate.max_accuracy_drop) : nlohmann::json();
  json["reference"] = gate.reference;
  json["on_fail"] = on_fail_name(gate.on_fail);
  return json;
}

nlohmann::json isolation_to_json(const IsolationSpec& isolation) {
  return {{"time_limit_s", isolation.time_limit_s}, {"memory_limit_mb", isolation.memory_limit_mb}};
}

nlohmann::json optional_to_json(const std::optional<std::string>& value) {
  return value ? nlohmann::json(*value) : nlohmann::json();
}

nlohmann::json student_to_json(const std::optional<StudentSpec>& student) {
  if (!student) return nullptr;
  auto or_null = [](const std::string& s) { return s.empty() ? nlohmann::json() : nlohmann::json(s); };
  return {{"zoo", or_null(student->zoo)},
          {"options", student->options},
          {"path", or_null(student->path)},
          {"stage", or_null(student->stage)}};
}

std::string student_text(const StudentSpec& student) {
  if (!student.path.empty()) return fmt::format("model {}", student.path);
  if (!student.stage.empty()) return fmt::format("the model of stage `{}`", student.stage);
  std::vector<std::string> options;
  for (const auto& [key, value] : student.options) options.push_back(fmt::format("{}={}", key, value));
  return fmt::format("zoo `{}`{} with fresh weights", student.zoo,
                     options.empty() ? "" : fmt::format(" ({})", fmt::join(options, ", ")));
}

std::string gate_text(const GateSpec& gate) {
  std::string limit = gate.max_accuracy_drop
                          ? fmt::format("max accuracy drop {} ({:.4g} pt)", *gate.max_accuracy_drop,
                                        *gate.max_accuracy_drop * 100)
                          : std::string("no accuracy limit");
  return fmt::format("{} vs {}; on failure: {}", limit, gate.reference, on_fail_name(gate.on_fail));
}

std::string limit_text(int64_t limit) { return limit > 0 ? std::to_string(limit) : "all"; }

std::string model_text(const ModelSpec& model) {
  if (!model.hf.empty())
    return fmt::format("Hugging Face checkpoint {}, computing in {}", model.hf, model.dtype);
  std::string source = model.zoo.empty() ? fmt::format("TorchScript file {}", model.path)
                                         : fmt::format("zoo `{}`", model.zoo);
  std::vector<std::string> options;
  for (const auto& [key, value] : model.options)
    options.push_back(fmt::format("{}={}", key, value));
  if (!options.empty()) source += fmt::format(" ({})", fmt::join(options, ", "));
  const auto zoo = zoo_models();
  const bool language_model = std::any_of(zoo.begin(), zoo.end(), [&](const ZooModelInfo& info) {
    return info.name == model.zoo && info.takes_tokens;
  });
  if (language_model)
    return fmt::format("{}, token ids in, next-token logits over the data's vocabulary out", source);
  return fmt::format("{}, input [{}], {} classes", source, fmt::join(model.input_shape, ", "),
                     model.num_classes);
}

// Declaration order when the pass is known (it is the order `mcompress explain`
// shows), otherwise alphabetical.
std::string params_text(const StageSpec& stage, const PassInfo* info) {
  const auto& values = stage.params.values();
  std::vector<std::pair<std::string, const ParamSpec*>> rows;
  if (info)
    for (const auto& spec : info->params)
      if (values.count(spec.name)) rows.emplace_back(spec.name, &spec);
  if (rows.size() != values.size()) {
    rows.clear();
    for (const auto& [name, value] : values) rows.emplace_back(name, nullptr);
  }
  size_t width = 0;
  for (const auto& row : rows) width = std::max(width, row.first.size());
  std::string text;
  for (const auto& [name, spec] : rows) {
    const ParamValue& value = values.at(name);
    bool is_default =
        spec && spec->default_value && to_string(*spec->default_value) == to_string(value);
    text += fmt::format("      {:<{}} = {}{}\n", name, width, to_string(value),
                        is_default ? "  (default)" : "");
  }
  return text.empty() ? "      (no parameters)\n" : text;
}

std::string stage_text(const StageSpec& stage, size_t index, size_t count,
                       const PassCatalog& catalog) {
  const PassInfo* info = catalog.find(stage.pass);
  std::string text =
      fmt::format("  stage {}/{} `{}`: pass {}", index + 1, count, stage.name, stage.pass);
  if (info) text += fmt::format(" ({}) - {}", to_string(info->kind), info->summary);
  text += "\n    params:\n" + params_text(stage, info);
  text += fmt::format("    gate: {}\n", gate_text(stage.gate));
  if (stage.teacher) text += fmt::format("    teacher: {}\n", *stage.teacher);
  if (stage.student) text += fmt::format("    student: {}\n", student_text(*stage.student));
  return text;
}

}  // namespace

// ---- Public API ----------------------------------------------------------------

std::string format_diagnostic(const Diagnostic& d) {
  if (d.pos.line <= 0) return fmt::format("{}: error: {}", d.file, d.message);
  return fmt::format("{}:{}:{}: error: {}", d.file, d.pos.line, d.pos.column, d.message);
}

static std::vector<Diagnostic> in_file_order(std::vector<Diagnostic> diagnostics) {
  // Overrides and whole-file problems (no position) come first, as they are
  // usually the cause of what follows.
  std::stable_sort(diagnostics.begin(), diagnostics.end(), [](const auto& a, const auto& b) {
    return std::pair(a.pos.line, a.pos.column) < std::pair(b.pos.line, b.pos.column);
  });
  return diagnostics;
}

static std::string join_formatted(const std::vector<Diagnostic>& diagnostics) {
  std::vector<std::string> lines;
  for (const auto& d : diagnostics) lines.push_back(format_diagnostic(d));
  return fmt::format("{}", fmt::join(lines, "\n"));
}

RecipeError::RecipeError(std::vector<Diagnostic> diagnostics)
    : std::runtime_error(join_formatted(in_file_order(diagnostics))),
      diagnostics_(in_file_order(std::move(diagnostics))) {}

Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides,
                   const PassCatalog& catalog) {
  const std::string source = absolute_path(path);
  return parse_recipe(read_recipe_text(source), source, overrides, catalog);
}

Recipe parse_recipe(const std::string& text, const std::string& source_path,
                    const std::vector<std::string>& overrides, const PassCatalog& catalog) {
  const std::string source = absolute_path(source_path);
  YAML::Node root = parse_yaml(text, source);
  RecipeLocator locator(source);
  if (auto problem = yaml_tree_check::first_problem(root, kMaxRecipeNodes))
    throw RecipeError({locator.diagnose(problem->at, problem->message)});
  std::vector<Diagnostic> problems;
  OverrideApplier applier(root, locator, problems);
  for (const auto& override_text : overrides) applier.apply(override_text);
  Recipe recipe = recipe_detail::check_recipe(root, source, locator, catalog, problems);
  if (!problems.empty()) throw RecipeError(std::move(problems));
  return recipe;
}

nlohmann::json to_json(const Recipe& recipe) {
  nlohmann::json json;
  json["mcompress"] = recipe.version;
  json["name"] = recipe.name;
  json["source_path"] = recipe.source_path;
  json["seed"] = recipe.seed;
  json["threads"] = recipe.threads;
  const ModelSpec& model = recipe.model;
  json["model"] = {{"zoo", model.zoo.empty() ? nlohmann::json() : nlohmann::json(model.zoo)},
                   {"path", model.path.empty() ? nlohmann::json() : nlohmann::json(model.path)},
                   {"hf", model.hf.empty() ? nlohmann::json() : nlohmann::json(model.hf)},
                   {"dtype", model.dtype},
                   {"options", model.options},
                   {"input_shape", model.input_shape},
                   {"num_classes", model.num_classes}};
  json["data"] = nullptr;
  if (const auto& data = recipe.data)
    json["data"] = {{"dataset", data->dataset},
                    {"path", data->path},
                    {"train_limit", data->train_limit},
                    {"eval_limit", data->eval_limit},
                    {"calibration_size", data->calibration_size},
                    {"validation_size", data->validation_size}};
  if (recipe.data && recipe.data->is_text()) {
    json["data"]["context"] = recipe.data->context;
    json["data"]["test_fraction"] = recipe.data->test_fraction;
  }
  if (recipe.data && recipe.data->is_tokenized_text()) {
    json["data"]["files"] = recipe.data->text_files;
    json["data"]["field"] = recipe.data->field;
    json["data"]["tokenizer"] = recipe.data->tokenizer;
    json["data"]["tokenizer_vocab"] = recipe.data->tokenizer_vocab;
    json["data"]["eval_stride"] = recipe.data->eval_stride;
  }
  json["teacher"] = optional_to_json(recipe.teacher);
  const ProbeSpec& probes = recipe.probes;
  json["probes"] = {{"enabled", probes.enabled},
                    {"latency_batch_sizes", probes.latency_batch_sizes},
                    {"latency_warmup", probes.latency_warmup},
                    {"latency_runs", probes.latency_runs},
                    {"eval_batch_size", probes.eval_batch_size},
                    {"sample_length", probes.sample_length},
                    {"prompt_length", probes.prompt_length},
                    {"new_tokens", probes.new_tokens}};
  json["probes"]["edge"] = nullptr;
  if (const auto& edge = probes.edge) {
    json["probes"]["edge"] = {{"threads", edge->threads}, {"cpus", edge->cpus}, {"memory_mb", edge->memory_mb}};
  }
  json["gate"] = gate_to_json(recipe.default_gate);
  json["isolation"] = isolation_to_json(recipe.isolation);
  json["stages"] = nlohmann::json::array();
  for (const auto& stage : recipe.stages) {
    nlohmann::json params = nlohmann::json::object();
    for (const auto& [name, value] : stage.params.values()) params[name] = param_to_json(value);
    json["stages"].push_back({{"name", stage.name},
                              {"pass", stage.pass},
                              {"params", params},
                              {"gate", gate_to_json(stage.gate)},
                              {"teacher", optional_to_json(stage.teacher)},
                              {"student", student_to_json(stage.student)},
                              {"isolation", isolation_to_json(stage.isolation)}});
  }
  return json;
}

std::string describe_plan(const Recipe& recipe, const PassCatalog& catalog) {
  std::string text =
      fmt::format("recipe `{}` ({}), format {}\n", recipe.name, recipe.source_path, recipe.version);
  text += fmt::format("  seed {}, threads {}\n", recipe.seed,
                      recipe.threads > 0 ? std::to_string(recipe.threads) : "all cores");
  text += fmt::format("  model: {}\n", model_text(recipe.model));
  if (const auto& data = recipe.data; data && data->is_tokenized_text())
    text += fmt::format(
        "  data: text from {}, tokenized by {}, windows of {} tokens (test: last {:.0f}% of the tokens, "
        "sliding windows {} apart; train: {}, eval: {}, calibration: {}, validation: {} windows)\n",
        fmt::join(data->text_files, ", "),
        data->tokenizer_vocab > 0 ? fmt::format("a byte-level BPE of {} tokens trained on the text",
                                                data->tokenizer_vocab)
        : data->tokenizer.empty() ? std::string("the model's tokenizer")
                                  : fmt::format("the tokenizer in {}", data->tokenizer),
        data->context, data->test_fraction * 100, data->eval_stride > 0 ? data->eval_stride : data->context,
        limit_text(data->train_limit), limit_text(data->eval_limit), data->calibration_size,
        data->validation_size);
  else if (const auto& data = recipe.data; data && data->is_text())
    text += fmt::format(
        "  data: {} from {}, character windows of {} (test: last {:.0f}% of the file; train: {}, "
        "eval: {}, calibration: {}, validation: {} windows)\n",
        data->dataset, data->path, data->context, data->test_fraction * 100,
        limit_text(data->train_limit), limit_text(data->eval_limit), data->calibration_size,
        data->validation_size);
  else if (data)
    text += fmt::format(
        "  data: {} from {} (train: {}, eval: {}, calibration: {}, validation: {} samples)\n",
        data->dataset, data->path, limit_text(data->train_limit), limit_text(data->eval_limit),
        data->calibration_size, data->validation_size);
  else
    text += "  data: none (no accuracy, no training or calibration)\n";
  const ProbeSpec& probes = recipe.probes;
  text += fmt::format(
      "  probes: {} (latency at batch sizes {}: {} warm-up + {} timed runs; "
      "eval batch {})\n",
      probes.enabled.empty() ? "none" : fmt::format("{}", fmt::join(probes.enabled, ", ")),
      fmt::join(probes.latency_batch_sizes, ", "), probes.latency_warmup, probes.latency_runs,
      probes.eval_batch_size);
  text += fmt::format("  default gate: {}\n", gate_text(recipe.default_gate));
  if (recipe.teacher) text += fmt::format("  default teacher: {}\n", *recipe.teacher);
  for (size_t i = 0; i < recipe.stages.size(); ++i)
    text += stage_text(recipe.stages[i], i, recipe.stages.size(), catalog);
  return text;
}

// Optimal-string-alignment distance: a swapped pair of letters ("sparisty")
// counts as one typo, as people make them.
static size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = std::tolower(a[i - 1]) == std::tolower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

std::optional<std::string> closest_match(const std::string& word,
                                         const std::vector<std::string>& candidates) {
  // Short words get less slack, or every two-letter typo would "match" anything.
  const size_t allowed = word.size() <= 3 ? 1 : word.size() <= 6 ? 2 : 3;
  std::optional<std::string> best;
  size_t best_distance = allowed + 1;
  for (const auto& candidate : candidates) {
    size_t distance = edit_distance(word, candidate);
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

}  // namespace mcompress
