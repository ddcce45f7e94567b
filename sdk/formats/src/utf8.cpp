#include "utf8.h"

#include <algorithm>

namespace mcompress::utf8 {
namespace {

constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";

// Length of the valid code point at `position`, or of the maximal invalid
// prefix (as a negative number) that a decoder replaces by one U+FFFD.
long valid_prefix(std::string_view bytes, size_t position) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(bytes[i]); };
  unsigned char lead = byte(position);
  if (lead < 0x80) return 1;
  size_t length = 0;
  unsigned char low = 0x80, high = 0xBF;  // bounds of the second byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;
    if (lead == 0xED) high = 0x9F;  // no surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;
    if (lead == 0xF4) high = 0x8F;
  } else {
    return -1;
  }
  for (size_t i = 1; i < length; ++i) {
    if (position + i >= bytes.size()) return -static_cast<long>(i);
    unsigned char next = byte(position + i);
    bool in_range = i == 1 ? (next >= low && next <= high) : (next >= 0x80 && next <= 0xBF);
    if (!in_range) return -static_cast<long>(i);
  }
  return static_cast<long>(length);
}

}  // namespace

std::vector<std::string> split_characters(std::string_view text) {
  std::vector<std::string> characters;
  characters.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    size_t length = std::min(sequence_length(static_cast<unsigned char>(text[i])), text.size() - i);
    characters.emplace_back(text.substr(i, length));
    i += length;
  }
  return characters;
}

void append_code_point(std::string& out, char32_t code_point) {
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    out += static_cast<char>(0xE0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code_point >> 18));
    out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
}

std::string repair(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    long length = valid_prefix(bytes, i);
    if (length > 0) {
      out.append(bytes.substr(i, static_cast<size_t>(length)));
      i += static_cast<size_t>(length);
    } else {
      out.append(kReplacementCharacter);
      i += static_cast<size_t>(-length);
    }
  }
  return out;
}

bool is_valid(std::string_view bytes) {
  for (size_t i = 0; i < bytes.size();) {
    long length = valid_prefix(bytes, i);
    if (length <= 0) return false;
    i += static_cast<size_t>(length);
  }
  return true;
}

}  // namespace mcompress::utf8
