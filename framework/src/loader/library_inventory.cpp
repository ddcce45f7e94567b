#include "mcompress/framework/loader/library_inventory.h"

#include <link.h>

#include <filesystem>
#include <set>

#include "mcompress/framework/support/sha256.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;

std::string absolute_path(const std::string& path) {
  std::error_code ec;
  const auto canonical = fs::canonical(path, ec);
  return ec ? fs::absolute(path).lexically_normal().string() : canonical.string();
}

std::string hash_or_empty(const std::string& path) {
  try {
    return sha256_file_hex(path);
  } catch (const std::exception&) {
    return {};  // a library deleted after it was mapped still ran; say so by the empty hash
  }
}

int collect_mcompress_library(dl_phdr_info* info, size_t, void* out) {
  if (!info->dlpi_name || !*info->dlpi_name) return 0;  // the executable itself
  const fs::path path = info->dlpi_name;
  if (path.filename().string().rfind("libmcompress", 0) == 0) {
    static_cast<std::set<std::string>*>(out)->insert(absolute_path(path.string()));
  }
  return 0;
}

}  // namespace

const std::vector<LibraryFile>& mcompress_core_libraries() {
  static const std::vector<LibraryFile> libraries = [] {
    std::vector<LibraryFile> found;
    std::error_code ec;
    const auto executable = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) found.push_back({"executable", executable.string(), hash_or_empty(executable.string())});
    std::set<std::string> paths;
    dl_iterate_phdr(collect_mcompress_library, &paths);
    for (const auto& path : paths) found.push_back({"runtime", path, hash_or_empty(path)});
    return found;
  }();
  return libraries;
}

}  // namespace mcompress
