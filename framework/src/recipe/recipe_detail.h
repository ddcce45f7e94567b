#pragma once
// Shared by recipe.cpp (reading, --set overrides) and recipe_validate.cpp
// (checking); private to the framework.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "mcompress/framework/recipe/recipe.h"

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

// Whether `path` names a regular file / a directory. A name the system cannot
// look up (too long, a symlink loop, no permission) counts as absent rather
// than throwing: the checker reports it like any missing file.
bool is_regular_file(const std::filesystem::path& path);
bool is_directory(const std::filesystem::path& path);

// A non-empty string of ASCII digits only ("12"; not "" or "1a"): a list
// index in an override path, and a name a stage may not have.
bool all_digits(const std::string& s);

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
