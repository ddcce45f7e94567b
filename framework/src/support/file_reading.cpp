#include "mcompress/framework/support/file_reading.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>
#include <utility>

#include "mcompress/sdk/error.h"

namespace mcompress {
namespace fs = std::filesystem;

std::optional<std::string> read_text_file_if_present(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad() || (!in && !in.eof())) return std::nullopt;
  return text.str();
}

std::string read_text_file(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw Error(fmt::format("cannot read {}: it is a directory", path.string()));
  errno = 0;
  auto text = read_text_file_if_present(path);
  if (!text) {
    const int error = errno ? errno : EIO;  // before another call changes it
    const std::string reason = !fs::exists(path, ec) ? "no such file" : std::strerror(error);
    throw Error(fmt::format("cannot read {}: {}", path.string(), reason));
  }
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
