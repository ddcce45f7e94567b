#pragma once
// tokenizer.json's "normalizer": rewrites the text between added tokens
// before it is split (Unicode normalization forms, SentencePiece-style
// Prepend "▁" and Replace " " → "▁", sequences of these).
#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace mcompress {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string normalize(std::string text) const = 0;
};

// nullptr for a JSON null. Throws mcompress::Error naming `source` for a
// type it does not know.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& config, const std::string& source);

}  // namespace mcompress
