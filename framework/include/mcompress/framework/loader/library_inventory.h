#pragma once
// The mcompress code a process runs, by absolute path and SHA-256, so a run
// record says exactly which bytes produced it (plugins are listed by PluginHost).
#include <string>
#include <vector>

namespace mcompress {

struct LibraryFile {
  std::string role;    // "executable", "runtime" (an mcompress library) or "plugin"
  std::string path;    // absolute
  std::string sha256;  // lowercase hex; empty if the file could not be read
};

// The running executable and every mcompress shared library mapped into the
// process (libmcompress_sdk, libmcompress_runtime, ...). Hashed once per process.
const std::vector<LibraryFile>& mcompress_core_libraries();

}  // namespace mcompress
