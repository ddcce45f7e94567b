#pragma once
// Hugging Face tokenizers from tokenizer.json (+ tokenizer_config.json):
// byte-level BPE (GPT-2, Llama 3, Qwen: a regex pre-tokenizer split, bytes
// mapped to printable characters) and SentencePiece-style BPE (Llama 2,
// Mistral: "▁" for spaces, byte fallback <0xNN>), with normalizers (NFC,
// prepend/replace), added and special tokens, and the post-processor's
// BOS/EOS. Encoding and decoding agree token for token with the tokenizers
// library (checked against transformers.js in tests/test_tokenizer.cpp).
// Added tokens are found in the raw text, including those marked
// "normalized" (the tokenizers library matches those after normalizing).
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mcompress/sdk/export.h"

namespace mcompress {

class MCOMPRESS_SDK_API Tokenizer {
 public:
  // Reads tokenizer.json and, when present, tokenizer_config.json of
  // `directory`. Throws mcompress::Error naming the file and what is wrong.
  static Tokenizer from_directory(const std::filesystem::path& directory);
  // From the files' texts; `source` names them in errors. `config_json` may be empty.
  static Tokenizer from_json(const std::string& tokenizer_json, const std::string& config_json,
                             const std::string& source);

  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  Tokenizer(const Tokenizer&);
  Tokenizer& operator=(const Tokenizer&);

  // add_special_tokens: what the post-processor adds (Llama's BOS), as
  // tokenizers' encode(text, add_special_tokens=True) does; a BOS also when
  // tokenizer_config.json says add_bos_token and the template lacks one.
  // Invalid UTF-8 in `text` is read as U+FFFD.
  std::vector<int64_t> encode(std::string_view text, bool add_special_tokens = false) const;
  // skip_special_tokens leaves out special added tokens and the config's
  // additional_special_tokens. When tokenizer_config.json sets
  // clean_up_tokenization_spaces (Llama 3 does), the spaces before
  // punctuation and contractions are dropped, as transformers does; absent,
  // it counts as false (transformers' default since 4.45).
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const;

  // The model's vocabulary plus added tokens; every id encode() returns is below it.
  int64_t vocab_size() const;
  std::optional<int64_t> token_id(std::string_view token) const;
  std::optional<int64_t> bos_id() const;  // from tokenizer_config.json's bos_token
  std::optional<int64_t> eos_id() const;  // from tokenizer_config.json's eos_token
  const std::string& chat_template() const;  // empty when the config has none

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  // `source` and `config_source` name the two texts in errors.
  static std::unique_ptr<Impl> load(const std::string& tokenizer_json, const std::string& source,
                                    const std::string& config_json, const std::string& config_source);
  std::unique_ptr<Impl> impl_;
};

// Trains a byte-level BPE tokenizer (GPT-2 style pre-tokenizer) on `text`
// with `vocab_size` entries (256 bytes + merges + special tokens `<|bos|>`,
// `<|eos|>`, last), deterministic, and returns {tokenizer.json, tokenizer_config.json}
// texts that Tokenizer and the tokenizers library read. Among pairs of equal
// count the one with the smaller token ids merges first. The vocabulary is
// smaller when the text runs out of pairs. encode(text, true) starts with
// <|bos|> (a TemplateProcessing post-processor, as Llama's); nothing is
// appended, so <|eos|> is the caller's to add between documents.
// Throws mcompress::Error when vocab_size < 258.
struct TrainedTokenizerFiles {
  std::string tokenizer_json;
  std::string tokenizer_config_json;
};
MCOMPRESS_SDK_API TrainedTokenizerFiles train_byte_level_bpe(std::string_view text, int64_t vocab_size);

}  // namespace mcompress
