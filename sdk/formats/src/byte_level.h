#pragma once
// GPT-2's byte-level alphabet: every byte is shown as a printable character
// (space becomes "Ġ", newline "Ċ"), so that a BPE vocabulary of strings
// covers arbitrary bytes.
#include <optional>
#include <string>
#include <string_view>

namespace mcompress::byte_level {

// The character (as UTF-8) that stands for `byte`.
const std::string& character_for_byte(unsigned char byte);

// Each byte of `bytes` replaced by its character.
std::string encode(std::string_view bytes);

// The bytes `text` stands for, or nullopt if a character of it is outside
// the alphabet.
std::optional<std::string> decode(std::string_view text);

// The GPT-2 pre-tokenizer regex (ByteLevel with use_regex).
inline constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

}  // namespace mcompress::byte_level
