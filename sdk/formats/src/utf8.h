#pragma once
// UTF-8 helpers the tokenizer shares: walking code points and repairing
// invalid bytes the way decoders of the tokenizers library do.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace mcompress::utf8 {

// Length in bytes of the code point starting with `lead` (1 for a stray byte).
inline size_t sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

// The code points of valid UTF-8 `text`, each as its own string.
std::vector<std::string> split_characters(std::string_view text);

// Appends the UTF-8 encoding of `code_point`.
void append_code_point(std::string& out, char32_t code_point);

// `bytes` as UTF-8 with each maximal invalid subsequence replaced by U+FFFD
// (what Rust's from_utf8_lossy and the WHATWG TextDecoder both do).
std::string repair(std::string_view bytes);

bool is_valid(std::string_view bytes);

}  // namespace mcompress::utf8
