#pragma once
// Files appear complete or not at all: content goes to a temporary file in the
// same directory, is flushed to disk, then renamed over the target.
#include <filesystem>
#include <functional>
#include <string>

namespace mcompress {

void write_file_atomically(const std::filesystem::path& target, const std::string& content);

// For writers that need a path (e.g. torch::jit::Module::save): `write` is
// given a temporary path next to `target`, which is renamed over `target`
// once `write` returns. If `write` throws, the temporary file is removed.
void write_via_temp_path(const std::filesystem::path& target,
                         const std::function<void(const std::filesystem::path&)>& write);

// Removes the temporary files that writes interrupted by a crash left under
// `dir` (recursively). Only for a directory no other process is writing to.
void remove_interrupted_writes(const std::filesystem::path& dir);

}  // namespace mcompress
