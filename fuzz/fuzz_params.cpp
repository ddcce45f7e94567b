// libFuzzer target: typed pass parameters. The input declares a parameter
// schema (types, defaults, ranges, choices, required or not) and gives
// values as YAML under `params:` and as `--set` overrides; the validator must
// either reject them with a diagnostic or resolve every parameter to a value
// of its declared type, inside its range and choices.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "fuzz_catalog.h"
#include "mcompress/framework/recipe/recipe.h"
#include "mcompress/sdk/error.h"

namespace {

using mcompress::ParamSpec;
using mcompress::ParamType;
using mcompress::ParamValue;

const char* const kNames[] = {"sparsity", "epochs", "mode", "layers", "flag", "note"};

// Plugins declare their names, choices and defaults in plain words.
std::string word(FuzzedDataProvider& in) {
  std::string text = in.ConsumeRandomLengthString(12);
  for (char& c : text) c = "abcdefghijklmnopqrstuvwxyz0123456789_"[static_cast<unsigned char>(c) % 37];
  return text;
}

std::optional<double> maybe_bound(FuzzedDataProvider& in) {
  if (!in.ConsumeBool()) return std::nullopt;
  return in.ConsumeFloatingPoint<double>();
}

ParamSpec declare(FuzzedDataProvider& in, const std::string& name) {
  ParamSpec spec;
  spec.name = name;
  spec.type = static_cast<ParamType>(in.ConsumeIntegralInRange<int>(0, 5));
  spec.min = maybe_bound(in);
  spec.max = maybe_bound(in);
  if (spec.type == ParamType::Choice) {
    const int count = in.ConsumeIntegralInRange<int>(1, 4);
    for (int i = 0; i < count; ++i) spec.choices.push_back(word(in));
  }
  if (in.ConsumeBool()) {  // a default, as a plugin declares it
    switch (spec.type) {
      case ParamType::Bool: spec.default_value = in.ConsumeBool(); break;
      case ParamType::Int: spec.default_value = in.ConsumeIntegral<int64_t>(); break;
      case ParamType::Float: spec.default_value = in.ConsumeFloatingPoint<double>(); break;
      case ParamType::String: spec.default_value = word(in); break;
      case ParamType::Choice: spec.default_value = spec.choices.front(); break;
      case ParamType::StringList: spec.default_value = std::vector<std::string>{}; break;
    }
  }
  return spec;
}

bool in_range(double value, const ParamSpec& spec) {
  return (!spec.min || value >= *spec.min) && (!spec.max || value <= *spec.max);
}

// A value the validator accepted from the recipe must be what the spec allows.
void check_resolved(const ParamSpec& spec, const ParamValue& value) {
  const bool is_default = spec.default_value && mcompress::to_string(*spec.default_value) == mcompress::to_string(value);
  bool ok = true;
  switch (spec.type) {
    case ParamType::Bool: ok = std::holds_alternative<bool>(value); break;
    case ParamType::Int:
      ok = std::holds_alternative<int64_t>(value) &&
           (is_default || in_range(double(std::get<int64_t>(value)), spec));
      break;
    case ParamType::Float:
      // A plugin may declare a Float default as an integer; the pass still gets a double.
      ok = std::holds_alternative<double>(value) &&
           (is_default || (std::isfinite(std::get<double>(value)) && in_range(std::get<double>(value), spec)));
      break;
    case ParamType::String: ok = std::holds_alternative<std::string>(value); break;
    case ParamType::Choice:
      ok = std::holds_alternative<std::string>(value) &&
           std::find(spec.choices.begin(), spec.choices.end(), std::get<std::string>(value)) != spec.choices.end();
      break;
    case ParamType::StringList: ok = std::holds_alternative<std::vector<std::string>>(value); break;
  }
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  mcompress::fuzz::FuzzCatalog catalog;
  mcompress::PassInfo pass;
  pass.name = "fuzzed";
  pass.summary = "a pass with a fuzzed schema";
  const int declared = in.ConsumeIntegralInRange<int>(1, 4);
  for (int i = 0; i < declared; ++i) pass.params.push_back(declare(in, kNames[i]));
  catalog.add(pass);

  std::vector<std::string> overrides;
  const int override_count = in.ConsumeIntegralInRange<int>(0, 2);
  for (int i = 0; i < override_count; ++i) {
    const std::string name = kNames[in.ConsumeIntegralInRange<int>(0, 5)];
    overrides.push_back("stages.0.params." + name + "=" + in.ConsumeRandomLengthString(64));
  }
  const std::string params = in.ConsumeRemainingBytesAsString();
  const std::string recipe = "mcompress: 1\nmodel: {zoo: cnn}\nstages:\n  - pass: fuzzed\n    params: " + params + "\n";
  try {
    const auto resolved = mcompress::parse_recipe(recipe, "/nonexistent/mcompress-fuzz/params.yaml", overrides, catalog);
    const auto& values = resolved.stages.at(0).params.values();
    if (values.size() != pass.params.size()) __builtin_trap();  // every parameter gets a value
    for (const auto& spec : pass.params) check_resolved(spec, values.at(spec.name));
    (void)mcompress::to_json(resolved).dump();
  } catch (const mcompress::RecipeError& e) {
    if (e.diagnostics().empty()) __builtin_trap();
  } catch (const mcompress::Error&) {
  }
  return 0;
}
