#include "mcompress/framework/loader/file_trust.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

namespace mcompress {

std::string writable_by_others_problem(const std::filesystem::path& path) {
  struct stat info {};
  // stat, not lstat: what matters is the file the loader would map.
  if (::stat(path.c_str(), &info) != 0) {
    return fmt::format("cannot check the permissions of {}: {}", path.string(), std::strerror(errno));
  }
  const uid_t me = ::geteuid();
  if (info.st_uid != me && info.st_uid != 0) {
    return fmt::format("{} is owned by user id {}, not by you (user id {}) or root, so its owner "
                       "can change the code mcompress runs; take ownership (chown {} {}) or move "
                       "the plugin to a directory you own",
                       path.string(), info.st_uid, me, me, path.string());
  }
  const mode_t others_write = info.st_mode & (S_IWGRP | S_IWOTH);
  if (others_write) {
    const char* who = (info.st_mode & S_IWOTH) ? "every user" : "its group";
    return fmt::format("{} is writable by {} (mode {:04o}), so others can change the code mcompress "
                       "runs; fix it with `chmod go-w {}`",
                       path.string(), who, info.st_mode & 07777, path.string());
  }
  return {};
}

}  // namespace mcompress
