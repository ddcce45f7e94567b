#include "byte_level.h"

#include <array>
#include <unordered_map>

#include "utf8.h"

namespace mcompress::byte_level {
namespace {

struct Alphabet {
  std::array<std::string, 256> character_of_byte;
  std::unordered_map<char32_t, unsigned char> byte_of_code_point;

  Alphabet() {
    // Printable Latin-1 bytes stand for themselves; the others take code
    // points from 256 upwards, in byte order (GPT-2's bytes_to_unicode).
    char32_t next_extra = 256;
    for (int byte = 0; byte < 256; ++byte) {
      bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
      char32_t code_point = printable ? static_cast<char32_t>(byte) : next_extra++;
      utf8::append_code_point(character_of_byte[byte], code_point);
      byte_of_code_point[code_point] = static_cast<unsigned char>(byte);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet instance;
  return instance;
}

}  // namespace

const std::string& character_for_byte(unsigned char byte) { return alphabet().character_of_byte[byte]; }

std::string encode(std::string_view bytes) {
  const Alphabet& table = alphabet();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char byte : bytes) out += table.character_of_byte[static_cast<unsigned char>(byte)];
  return out;
}

std::optional<std::string> decode(std::string_view text) {
  const Alphabet& table = alphabet();
  std::string bytes;
  bytes.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    auto lead = static_cast<unsigned char>(text[i]);
    size_t length = utf8::sequence_length(lead);
    if (i + length > text.size()) return std::nullopt;
    // Every character of the alphabet is below U+0180: at most two bytes.
    char32_t code_point;
    if (length == 1) {
      code_point = lead;
    } else if (length == 2) {
      code_point = ((lead & 0x1F) << 6) | (static_cast<unsigned char>(text[i + 1]) & 0x3F);
    } else {
      return std::nullopt;
    }
    auto it = table.byte_of_code_point.find(code_point);
    if (it == table.byte_of_code_point.end()) return std::nullopt;
    bytes += static_cast<char>(it->second);
    i += length;
  }
  return bytes;
}

}  // namespace mcompress::byte_level
