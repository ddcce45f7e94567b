#pragma once
// SHA-256 (FIPS 180-4), so run records can name exactly which library bytes
// ran. Self-contained: the host has no crypto dependency to trust or update.
#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace mcompress {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  void update(std::string_view text) { update(text.data(), text.size()); }
  // The digest as 64 lowercase hex digits; the object must not be updated after.
  std::string hex_digest();

 private:
  void compress(const uint8_t* block);

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

std::string sha256_hex(std::string_view data);
// Hashes a file in chunks; throws mcompress::Error naming the file if it cannot be read.
std::string sha256_file_hex(const std::filesystem::path& path);

}  // namespace mcompress
