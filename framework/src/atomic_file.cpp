#include "mcompress/framework/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

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
