#pragma once
// Whether a file or directory that supplies code (a plugin) can be changed by
// someone other than the user running mcompress or root. Anyone who can
// write a plugin, or the directory it is loaded from, can run code as you.
#include <filesystem>
#include <string>

namespace mcompress {

// Empty when only the current user or root can change `path`; otherwise what
// is wrong (group/world-writable, foreign owner) and how to fix it.
std::string writable_by_others_problem(const std::filesystem::path& path);

}  // namespace mcompress
