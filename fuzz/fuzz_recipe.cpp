// libFuzzer target: recipe text -> parse, apply --set overrides, validate,
// then present the resolved recipe (JSON record, dry-run plan) as a run would.
// Lines starting with `#set ` (YAML comments, so the recipe still parses) are
// also applied as `--set` overrides. RecipeError and mcompress::Error are the
// expected answers to bad input; anything else escaping is a finding.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz_catalog.h"
#include "mcompress/framework/recipe/recipe.h"
#include "mcompress/sdk/error.h"

namespace {

std::vector<std::string> override_lines(const std::string& text) {
  std::vector<std::string> overrides;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("#set ", 0) == 0) overrides.push_back(line.substr(5));
  return overrides;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const mcompress::fuzz::FuzzCatalog catalog;
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto recipe =
        mcompress::parse_recipe(text, "/nonexistent/mcompress-fuzz/recipe.yaml", override_lines(text), catalog);
    // What every run writes into its records and prints for --dry-run.
    (void)mcompress::to_json(recipe).dump();
    (void)mcompress::describe_plan(recipe, catalog);
  } catch (const mcompress::RecipeError& e) {
    if (e.diagnostics().empty()) __builtin_trap();  // an error must say what is wrong
  } catch (const mcompress::Error&) {
  }
  return 0;
}
