#pragma once
// Reading a whole file, one way everywhere: a missing or unreadable file is
// an mcompress::Error naming the path and the reason, a damaged JSON file one
// naming the path and the parser's complaint. The *_if_present forms are for
// files that may legitimately be missing or half-written (a crashed run).
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "mcompress/sdk/export.h"

namespace mcompress {

MCOMPRESS_SDK_API std::string read_text_file(const std::filesystem::path& path);
MCOMPRESS_SDK_API nlohmann::json read_json_file(const std::filesystem::path& path);

// nullopt when the file is missing or cannot be read (or parsed).
MCOMPRESS_SDK_API std::optional<std::string> read_text_file_if_present(const std::filesystem::path& path);
MCOMPRESS_SDK_API std::optional<nlohmann::json> read_json_file_if_present(const std::filesystem::path& path);

}  // namespace mcompress
