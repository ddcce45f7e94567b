#pragma once
// tokenizer.json's "decoder": turns tokens back into text (GPT-2's byte
// alphabet, SentencePiece's "▁" and <0xNN> byte tokens, Metaspace).
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace mcompress {

class TokenDecoder {
 public:
  virtual ~TokenDecoder() = default;
  // Each step maps the list of token strings to a new list; the text is
  // their concatenation after the last step.
  virtual std::vector<std::string> decode_chain(std::vector<std::string> tokens) const = 0;
};

// nullptr for a JSON null. `added_tokens` holds the added tokens' contents,
// which the byte-level decoder passes through unmapped. Throws
// mcompress::Error naming `source` for an unsupported type.
std::unique_ptr<TokenDecoder> make_token_decoder(const nlohmann::json& config,
                                                 std::shared_ptr<const std::unordered_set<std::string>> added_tokens,
                                                 const std::string& source);

}  // namespace mcompress
