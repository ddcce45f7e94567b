#pragma once
// tokenizer.json's "added_tokens" (special ones like <|endoftext|> and
// plain ones): found in the raw text before normalization and splitting,
// leftmost and longest first, as the tokenizers library does.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace mcompress {

struct AddedToken {
  std::string content;
  int64_t id = 0;
  bool special = false;
  bool lstrip = false;       // swallows whitespace on its left
  bool rstrip = false;       // swallows whitespace on its right
  bool single_word = false;  // only where no letter or digit touches it
};

// A stretch of text between added tokens, or one added token.
struct TextSection {
  std::string_view text;
  const AddedToken* token = nullptr;
};

class AddedTokens {
 public:
  AddedTokens() = default;
  // Throws mcompress::Error naming `source` for a malformed entry.
  AddedTokens(const nlohmann::json& entries, const std::string& source);

  std::vector<TextSection> split(std::string_view text) const;

  const AddedToken* find(std::string_view content) const;
  const AddedToken* find(int64_t id) const;
  const std::vector<AddedToken>& all() const { return tokens_; }

 private:
  std::vector<AddedToken> tokens_;
  std::unordered_map<std::string, size_t> by_content_;
  std::unordered_map<int64_t, size_t> by_id_;
  // Tokens by their first byte, longest first, for the scan.
  std::vector<std::vector<size_t>> by_first_byte_ = std::vector<std::vector<size_t>>(256);
};

}  // namespace mcompress
