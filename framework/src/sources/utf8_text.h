#pragma once
// Checking that recipe and sweep text is UTF-8 before it is used: YAML is
// Unicode, and every name and value read from it ends up in JSON records,
// which cannot hold invalid UTF-8 (nlohmann::json refuses to write it).
// Private to the framework.
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace mcompress::utf8_text {

// Offset of the first byte that does not start a valid UTF-8 sequence
// (overlong forms, surrogates and code points above U+10FFFF are invalid
// too), or npos when the whole text is valid.
inline size_t first_invalid_byte(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto byte = [&](size_t k) { return static_cast<uint8_t>(text[k]); };
    const uint8_t lead = byte(i);
    size_t length = 0;
    uint8_t low = 0x80, high = 0xBF;  // allowed range of the second byte
    if (lead < 0x80) {
      length = 1;
    } else if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) low = 0xA0;   // overlong
      if (lead == 0xED) high = 0x9F;  // surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) low = 0x90;   // overlong
      if (lead == 0xF4) high = 0x8F;  // above U+10FFFF
    } else {
      return i;
    }
    if (i + length > text.size()) return i;
    for (size_t k = 1; k < length; ++k) {
      const uint8_t b = byte(i + k);
      if (k == 1 ? (b < low || b > high) : (b < 0x80 || b > 0xBF)) return i;
    }
    i += length;
  }
  return std::string_view::npos;
}

// `text` as it can be quoted in a message: control bytes (NUL would end the
// message early) and bytes that are not UTF-8 are written as \xNN.
inline std::string printable(std::string_view text) {
  std::string out;
  while (!text.empty()) {
    const size_t bad = first_invalid_byte(text);
    const std::string_view valid = text.substr(0, bad);
    for (const char c : valid) {
      const auto byte = static_cast<uint8_t>(c);
      if (byte < 0x20 || byte == 0x7f) {
        char escaped[5];
        std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
        out += escaped;
      } else {
        out += c;
      }
    }
    if (bad == std::string_view::npos) break;
    char escaped[5];
    std::snprintf(escaped, sizeof escaped, "\\x%02x", static_cast<uint8_t>(text[bad]));
    out += escaped;
    text.remove_prefix(bad + 1);
  }
  return out;
}

}  // namespace mcompress::utf8_text
