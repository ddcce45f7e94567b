// Reading sweep files and turning explicit pipelines and grids into
// candidates, each a list of --set overrides of the base recipe.
#include "mcompress/framework/support/file_reading.h"
#include "mcompress/framework/sweep/sweep.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "recipe/yaml_tree_check.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kTopKeys{"mcompress_sweep", "name", "base", "set", "time_limit",
                                        "candidates", "grid", "objective"};
const std::vector<std::string> kCandidateKeys{"name", "set", "stages"};
const std::vector<std::string> kObjectiveKeys{"reference", "constraints", "minimize", "maximize",
                                              "score"};

// Metrics a candidate is ranked by (computed in comparison.cpp).
bool is_rankable_metric(const std::string& name) {
  static const std::regex pattern(
      "accuracy|accuracy_drop|params|macs|size_bytes|size_mb|latency_b[0-9]+_(median|p25|p75|p95)_ms|"
      // language models (the perplexity and generation probes)
      "perplexity|cross_entropy|bits_per_token|bits_per_char|next_token_accuracy|"
      "decode_tokens_per_s|prefill_tokens_per_s|time_to_first_token_ms");
  return std::regex_match(name, pattern);
}

const char* kMetricHelp =
    "accuracy, accuracy_drop, latency_b<N>_median_ms, latency_b<N>_p25_ms, latency_b<N>_p75_ms, "
    "latency_b<N>_p95_ms, size_mb, size_bytes, "
    "params, macs, or for language models perplexity, cross_entropy, bits_per_token, bits_per_char, "
    "next_token_accuracy, decode_tokens_per_s, prefill_tokens_per_s or time_to_first_token_ms";

// More candidates than anyone runs: a larger grid is a typo (or a bomb), and
// is refused before its combinations are built in memory.
constexpr size_t kMaxCandidates = 10000;
// Far more than any sweep file holds; more means an alias bomb or cycle.
constexpr size_t kMaxSweepNodes = 100000;

// A number from the file; NaN and infinities are refused like text.
std::optional<double> finite_number(const YAML::Node& node) {
  try {
    const double value = node.as<double>();
    if (std::isfinite(value)) return value;
  } catch (const YAML::Exception&) {
  }
  return std::nullopt;
}

class SweepReader {
 public:
  explicit SweepReader(std::string path) : path_(std::move(path)) {}

  Sweep read(const std::string& text);

 private:
  void problem(const YAML::Node& node, const std::string& message) {
    const auto mark = node.Mark();
    problems_.push_back({path_, mark.is_null() ? SourcePos{} : SourcePos{mark.line + 1, mark.column + 1},
                         message});
  }
  void check_keys(const YAML::Node& map, const std::vector<std::string>& known, const std::string& where);
  std::optional<std::string> scalar(const YAML::Node& node, const std::string& what);
  std::vector<std::string> overrides(const YAML::Node& node, const std::string& what);
  void read_candidates(const YAML::Node& node, Sweep& sweep);
  void read_grid(const YAML::Node& node, Sweep& sweep);
  void read_objective(const YAML::Node& node, Objective& objective);
  std::string metric(const YAML::Node& node, const std::string& what);

  std::string path_;
  std::vector<Diagnostic> problems_;
};

// "stages.prune.params.sparsity" -> "prune.sparsity": enough to tell grid
// candidates apart in tables.
std::string short_key(std::string key) {
  if (key.rfind("stages.", 0) == 0) key = key.substr(7);
  for (size_t p; (p = key.find(".params.")) != std::string::npos;) key.replace(p, 8, ".");
  return key;
}

std::string flow_yaml(const YAML::Node& node) {
  YAML::Emitter out;
  out.SetMapFormat(YAML::Flow);
  out.SetSeqFormat(YAML::Flow);
  out << node;
  return out.c_str();
}

void SweepReader::check_keys(const YAML::Node& map, const std::vector<std::string>& known,
                             const std::string& where) {
  for (auto it = map.begin(); it != map.end(); ++it) {
    const auto key = it->first.as<std::string>("");
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string hint;
    if (auto close = closest_match(key, known)) hint = fmt::format("; did you mean `{}`?", *close);
    problem(it->first, fmt::format("unknown key `{}` in {}{}", key, where, hint));
  }
}

std::optional<std::string> SweepReader::scalar(const YAML::Node& node, const std::string& what) {
  if (!node.IsScalar()) {
    problem(node, fmt::format("{} must be a single value", what));
    return std::nullopt;
  }
  return node.Scalar();
}

std::vector<std::string> SweepReader::overrides(const YAML::Node& node, const std::string& what) {
  std::vector<std::string> out;
  if (!node) return out;
  if (!node.IsSequence()) {
    problem(node, fmt::format("{} must be a list of `key.path=value` overrides", what));
    return out;
  }
  for (const auto& item : node) {
    auto text = scalar(item, "an override");
    if (!text) continue;
    if (text->find('=') == std::string::npos) {
      problem(item, fmt::format("override `{}` has no `=`; write `key.path=value`", *text));
      continue;
    }
    out.push_back(*text);
  }
  return out;
}

void SweepReader::read_candidates(const YAML::Node& node, Sweep& sweep) {
  if (!node.IsSequence()) return problem(node, "`candidates` must be a list of pipelines");
  std::set<std::string> names;
  for (const auto& item : node) {
    if (!item.IsMap()) {
      problem(item, "a candidate must be a map with `name` and `stages` and/or `set`");
      continue;
    }
    check_keys(item, kCandidateKeys, "a candidate");
    Candidate c;
    c.index = static_cast<int>(sweep.candidates.size());
    if (item["name"]) c.name = scalar(item["name"], "`name`").value_or("");
    if (c.name.empty()) {
      problem(item, "a candidate needs a `name`");
      continue;
    }
    if (!names.insert(c.name).second) problem(item["name"], fmt::format("candidate `{}` is defined twice", c.name));
    if (const auto stages = item["stages"]) {
      if (!stages.IsSequence()) problem(stages, "`stages` must be a list of stages, as in a recipe");
      c.overrides.push_back("stages=" + flow_yaml(stages));
    }
    for (auto& o : overrides(item["set"], "`set`")) c.overrides.push_back(o);
    if (c.overrides.empty()) problem(item, fmt::format("candidate `{}` changes nothing; give `stages` or `set`", c.name));
    sweep.candidates.push_back(std::move(c));
  }
}

// Every combination of the listed values, first key varying slowest.
void SweepReader::read_grid(const YAML::Node& node, Sweep& sweep) {
  if (!node.IsMap()) return problem(node, "`grid` must map `key.path` to a list of values");
  std::vector<std::pair<std::string, std::vector<std::string>>> axes;
  size_t combinations = 1;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const auto key = it->first.IsScalar() ? it->first.Scalar() : std::string();
    if (key.empty()) {
      problem(it->first, "a grid key must be a `key.path` of the recipe, e.g. `stages.prune.params.sparsity`");
      continue;
    }
    if (!it->second.IsSequence() || it->second.size() == 0) {
      problem(it->second, fmt::format("grid values of `{}` must be a non-empty list", key));
      continue;
    }
    std::vector<std::string> values;
    // A copy: `it->` hands out a temporary whose members die with the statement.
    const YAML::Node listed = it->second;
    for (const auto& v : listed) values.push_back(v.IsScalar() ? v.Scalar() : flow_yaml(v));
    combinations = combinations > kMaxCandidates ? combinations : combinations * values.size();
    axes.emplace_back(key, values);
  }
  if (axes.empty()) return;
  if (combinations + sweep.candidates.size() > kMaxCandidates) {
    return problem(node, fmt::format("the grid makes more than {} candidates ({} axes); split the sweep or "
                                     "list fewer values",
                                     kMaxCandidates, axes.size()));
  }
  std::vector<size_t> position(axes.size(), 0);
  while (true) {
    Candidate c;
    c.index = static_cast<int>(sweep.candidates.size());
    std::vector<std::string> parts;
    for (size_t a = 0; a < axes.size(); ++a) {
      const auto& [key, values] = axes[a];
      c.overrides.push_back(key + "=" + values[position[a]]);
      parts.push_back(short_key(key) + "=" + values[position[a]]);
    }
    c.name = fmt::format("{}", fmt::join(parts, ", "));
    sweep.candidates.push_back(std::move(c));
    size_t a = axes.size();
    while (a-- > 0) {
      if (++position[a] < axes[a].second.size()) break;
      position[a] = 0;
    }
    if (a == static_cast<size_t>(-1)) break;
  }
}

std::string SweepReader::metric(const YAML::Node& node, const std::string& what) {
  auto name = scalar(node, what).value_or("");
  if (!name.empty() && !is_rankable_metric(name)) {
    problem(node, fmt::format("unknown metric `{}` in {}; use {}", name, what, kMetricHelp));
  }
  return name;
}

void SweepReader::read_objective(const YAML::Node& node, Objective& objective) {
  if (!node.IsMap()) return problem(node, "`objective` must be a map");
  check_keys(node, kObjectiveKeys, "`objective`");
  if (node["reference"]) objective.reference = scalar(node["reference"], "`reference`").value_or("baseline");
  if (const auto constraints = node["constraints"]) {
    if (!constraints.IsMap()) problem(constraints, "`constraints` must map max_<metric> / min_<metric> to a number");
    for (auto it = constraints.begin(); constraints.IsMap() && it != constraints.end(); ++it) {
      const auto key = it->first.as<std::string>("");
      Bound bound;
      if (key.rfind("max_", 0) == 0 || key.rfind("min_", 0) == 0) {
        bound.is_max = key[1] == 'a';
        bound.metric = key.substr(4);
      }
      if (bound.metric.empty() || !is_rankable_metric(bound.metric)) {
        problem(it->first, fmt::format("constraint `{}` must be max_<metric> or min_<metric> with a metric "
                                       "among {}", key, kMetricHelp));
        continue;
      }
      if (auto limit = finite_number(it->second)) {
        bound.limit = *limit;
      } else {
        problem(it->second, fmt::format("constraint `{}` needs a finite number", key));
        continue;
      }
      objective.constraints.push_back(bound);
    }
  }
  const int choices = !!node["minimize"] + !!node["maximize"] + !!node["score"];
  if (choices > 1) problem(node, "give only one of `minimize`, `maximize` and `score`");
  if (node["minimize"]) {
    objective.primary = metric(node["minimize"], "`minimize`");
    objective.direction = Direction::Minimize;
  } else if (node["maximize"]) {
    objective.primary = metric(node["maximize"], "`maximize`");
    objective.direction = Direction::Maximize;
  } else if (const auto score = node["score"]) {
    if (!score.IsMap() || score.size() == 0) return problem(score, "`score` must map metrics to weights");
    objective.primary = "score";
    objective.direction = Direction::Maximize;
    for (auto it = score.begin(); it != score.end(); ++it) {
      const auto name = metric(it->first, "`score`");
      if (auto weight = finite_number(it->second)) {
        objective.score_weights[name] = *weight;
      } else {
        problem(it->second, fmt::format("the weight of `{}` must be a finite number", name));
      }
    }
  }
}

Sweep SweepReader::read(const std::string& text) {
  Sweep sweep;
  sweep.source_path = fs::absolute(path_).lexically_normal().string();
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw RecipeError({{path_, {e.mark.line + 1, e.mark.column + 1}, "YAML syntax error: " + e.msg}});
  }
  if (!root.IsMap()) throw RecipeError({{path_, {}, "a sweep file must be a YAML map"}});
  // Names and values end up in JSON and HTML; grids multiply what aliases expand.
  if (auto tree = yaml_tree_check::first_problem(root, kMaxSweepNodes)) {
    problem(tree->at, tree->message);
    throw RecipeError(problems_);
  }
  check_keys(root, kTopKeys, "the sweep");

  const auto version = root["mcompress_sweep"];
  if (!version) {
    problem(root, fmt::format("missing `mcompress_sweep: {}` (the sweep format version)", kSweepFormatVersion));
  } else if (version.as<std::string>("") != std::to_string(kSweepFormatVersion)) {
    problem(version, fmt::format("sweep format `{}` is not supported; this host reads format {}",
                                 version.as<std::string>(""), kSweepFormatVersion));
  }
  sweep.name = root["name"] ? scalar(root["name"], "`name`").value_or("") : fs::path(path_).stem().string();
  if (!root["base"]) {
    problem(root, "missing `base`: the recipe every candidate starts from");
  } else if (auto base = scalar(root["base"], "`base`")) {
    fs::path p = *base;
    if (p.is_relative()) p = fs::path(sweep.source_path).parent_path() / p;
    sweep.base_recipe = p.lexically_normal().string();
    std::error_code unreadable;  // a name too long to look up is "not found", not an exception
    if (!fs::exists(p, unreadable))
      problem(root["base"], fmt::format("base recipe {} not found", sweep.base_recipe));
  }
  sweep.overrides = overrides(root["set"], "`set`");
  if (root["time_limit"]) {
    if (auto limit = finite_number(root["time_limit"])) {
      sweep.time_limit_seconds = *limit;
      if (sweep.time_limit_seconds < 0) problem(root["time_limit"], "`time_limit` must be >= 0 seconds");
    } else {
      problem(root["time_limit"], "`time_limit` must be a finite number of seconds per candidate");
    }
  }
  if (root["candidates"]) read_candidates(root["candidates"], sweep);
  if (root["grid"]) read_grid(root["grid"], sweep);
  if (!root["candidates"] && !root["grid"]) problem(root, "a sweep needs `candidates` and/or `grid`");
  if (root["objective"]) read_objective(root["objective"], sweep.objective);
  if (!problems_.empty()) throw RecipeError(problems_);
  return sweep;
}

}  // namespace

std::string Candidate::directory() const {
  std::string slug;
  for (char ch : name) {
    const bool keep = std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.';
    if (keep) slug += ch;
    else if (!slug.empty() && slug.back() != '_') slug += '_';
    if (slug.size() >= 48) break;
  }
  while (!slug.empty() && slug.back() == '_') slug.pop_back();
  return fmt::format("{:03}_{}", index, slug);
}

Sweep load_sweep(const std::string& path) {
  const auto text = read_text_file_if_present(path);
  if (!text) throw RecipeError({{path, {}, "sweep file not found or not readable; check the path"}});
  return parse_sweep(*text, path);
}

Sweep parse_sweep(const std::string& text, const std::string& source_path) {
  return SweepReader(source_path).read(text);
}

void validate_candidates(const Sweep& sweep, const PassCatalog& catalog) {
  std::vector<Diagnostic> problems;
  for (const auto& c : sweep.candidates) {
    auto overrides = sweep.overrides;
    overrides.insert(overrides.end(), c.overrides.begin(), c.overrides.end());
    try {
      load_recipe(sweep.base_recipe, overrides, catalog);
    } catch (const RecipeError& e) {
      for (auto d : e.diagnostics()) {
        d.message = fmt::format("candidate `{}`: {}", c.name, d.message);
        problems.push_back(std::move(d));
      }
    }
  }
  if (!problems.empty()) throw RecipeError(problems);
}

std::vector<Candidate> shard_of(const std::vector<Candidate>& candidates, int index, int count) {
  std::vector<Candidate> out;
  for (const auto& c : candidates) {
    if (c.index % count == index) out.push_back(c);
  }
  return out;
}

}  // namespace mcompress
