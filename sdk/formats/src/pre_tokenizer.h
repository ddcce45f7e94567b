#pragma once
// tokenizer.json's "pre_tokenizer": splits normalized text into the words
// BPE merges within (a regex Split, GPT-2's ByteLevel, SentencePiece's
// Metaspace, sequences of these).
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace mcompress {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits each of `pieces` further (or rewrites it). `first_section` says
  // whether the pieces come from the text before any added token.
  virtual std::vector<std::string> split(std::vector<std::string> pieces, bool first_section) const = 0;
};

// nullptr for a JSON null. Throws mcompress::Error naming `source` for a
// type or option it does not support.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& config, const std::string& source);

// GPT-2's pre-tokenizer (ByteLevel with its regex, no prefix space): what
// the BPE trainer splits training text with.
std::unique_ptr<PreTokenizer> make_gpt2_pre_tokenizer();

}  // namespace mcompress
