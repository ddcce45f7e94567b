#pragma once
// tokenizer.json's "model" of type BPE: a vocabulary and ranked merges that
// turn one pre-tokenized word into token ids, with SentencePiece's byte
// fallback (<0xNN>) and the unknown token for characters outside the
// vocabulary. Results are cached per word.
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace mcompress {

class BpeModel {
 public:
  // Throws mcompress::Error naming `source` for anything malformed.
  BpeModel(const nlohmann::json& config, const std::string& source);

  // Appends the ids of `word` (one pre-token) to `ids`. Thread-safe.
  void encode_word(const std::string& word, std::vector<int64_t>& ids) const;

  std::optional<int64_t> token_id(std::string_view token) const;
  const std::string* token(int64_t id) const;  // nullptr for an id outside the vocabulary
  int64_t size() const { return static_cast<int64_t>(vocab_.size()); }
  // One more than the largest id (ids may leave gaps).
  int64_t id_limit() const { return static_cast<int64_t>(tokens_by_id_.size()); }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  std::vector<int32_t> merge_word(const std::string& word) const;
  std::vector<int32_t> initial_symbols(const std::string& word) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> tokens_by_id_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::vector<int32_t> byte_token_ids_;  // <0xNN> ids (-1 where absent), with byte fallback

  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace mcompress
