#include "mcompress/framework/support/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

std::filesystem::path temp_path_for(const std::filesystem::path& target) {
  return target.parent_path() / fmt::format(".{}.tmp-{}", target.filename().string(), getpid());
}

void sync_file(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

void write_via_temp_path(const std::filesystem::path& target,
                         const std::function<void(const std::filesystem::path&)>& write) {
  const auto temp = temp_path_for(target);
  try {
    write(temp);
    sync_file(temp);
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(temp, ignored);
    throw;
  }
  std::error_code ec;
  std::filesystem::rename(temp, target, ec);
  if (ec) {
    std::filesystem::remove(temp, ec);
    throw Error(fmt::format("cannot write {}: {}", target.string(), ec.message()));
  }
  // Make the rename itself durable.
  sync_file(target.parent_path().empty() ? "." : target.parent_path());
}

void remove_interrupted_writes(const std::filesystem::path& dir) {
  std::error_code ec;
  std::vector<std::filesystem::path> stale;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const auto mark = name.rfind(".tmp-");
    const bool temporary = name.size() > 1 && name[0] == '.' && mark != std::string::npos && mark > 0 &&
                           mark + 5 < name.size() &&
                           name.find_first_not_of("0123456789", mark + 5) == std::string::npos;
    if (temporary && it->is_regular_file(ec)) stale.push_back(it->path());
  }
  for (const auto& path : stale) std::filesystem::remove(path, ec);
}

void write_file_atomically(const std::filesystem::path& target, const std::string& content) {
  write_via_temp_path(target, [&](const std::filesystem::path& temp) {
    FILE* f = std::fopen(temp.c_str(), "wb");
    if (!f) throw Error(fmt::format("cannot create {}: {}", temp.string(), std::strerror(errno)));
    const bool ok = std::fwrite(content.data(), 1, content.size(), f) == content.size();
    if (std::fclose(f) != 0 || !ok) {
      throw Error(fmt::format("cannot write {}: {}", temp.string(), std::strerror(errno)));
    }
  });
}

}  // namespace mcompress
