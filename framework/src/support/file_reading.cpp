#include "mcompress/framework/support/file_reading.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

#include "mcompress/sdk/error.h"

namespace mcompress {
namespace fs = std::filesystem;

namespace {

// The reason a file cannot be read, in words; empty when it can.
std::string unreadable_reason(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return "no such file";
  if (fs::is_directory(path, ec)) return "it is a directory";
  return std::strerror(errno ? errno : EIO);
}

}  // namespace

std::optional<std::string> read_text_file_if_present(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad() || (!in && !in.eof())) return std::nullopt;
  return text.str();
}

std::string read_text_file(const fs::path& path) {
  errno = 0;
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw Error(fmt::format("cannot read {}: it is a directory", path.string()));
  auto text = read_text_file_if_present(path);
  if (!text) throw Error(fmt::format("cannot read {}: {}", path.string(), unreadable_reason(path)));
  return std::move(*text);
}

nlohmann::json read_json_file(const fs::path& path) {
  const std::string text = read_text_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{} is not valid JSON ({})", path.string(), e.what()));
  }
}

std::optional<nlohmann::json> read_json_file_if_present(const fs::path& path) {
  auto text = read_text_file_if_present(path);
  if (!text) return std::nullopt;
  try {
    return nlohmann::json::parse(*text);
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

}  // namespace mcompress
