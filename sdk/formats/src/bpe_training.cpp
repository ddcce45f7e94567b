// Byte-level BPE training, as the tokenizers library's BpeTrainer with a
// ByteLevel pre-tokenizer: words from GPT-2's regex, counted once each;
// pair counts kept up to date incrementally as merges rewrite words.
#include <algorithm>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "byte_level.h"
#include "mcompress/formats/tokenizer.h"
#include "mcompress/sdk/error.h"
#include "pre_tokenizer.h"
#include "utf8.h"

namespace mcompress {
namespace {

constexpr const char* kBosToken = "<|bos|>";
constexpr const char* kEosToken = "<|eos|>";
constexpr int64_t kSpecialTokenCount = 2;

using Pair = std::pair<int32_t, int32_t>;

uint64_t pair_key(Pair pair) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(pair.first)) << 32) | static_cast<uint32_t>(pair.second);
}
Pair pair_of(uint64_t key) { return {static_cast<int32_t>(key >> 32), static_cast<int32_t>(key & 0xFFFFFFFFu)}; }

struct Word {
  std::vector<int32_t> symbols;
  int64_t count = 0;
};

// The most frequent pair first; among equals the smallest (left, right)
// ids, so that training is deterministic.
struct QueuedPair {
  int64_t count;
  uint64_t key;
  bool operator<(const QueuedPair& other) const {
    return count != other.count ? count < other.count : key > other.key;
  }
};

class Trainer {
 public:
  explicit Trainer(std::string_view text) {
    std::unordered_map<std::string, int64_t> counts;
    std::string valid = utf8::is_valid(text) ? std::string(text) : utf8::repair(text);
    for (std::string& piece : make_gpt2_pre_tokenizer()->split({std::move(valid)}, true)) ++counts[piece];
    // Sorted words make the ids of merges independent of hash order.
    std::vector<std::pair<std::string, int64_t>> sorted(counts.begin(), counts.end());
    std::sort(sorted.begin(), sorted.end());
    for (int byte = 0; byte < 256; ++byte) {
      const std::string& character = byte_level::character_for_byte(static_cast<unsigned char>(byte));
      token_ids_[character] = byte;
      tokens_.push_back(character);
    }
    for (const auto& [piece, count] : sorted) {
      Word word;
      word.count = count;
      for (const std::string& character : utf8::split_characters(piece)) word.symbols.push_back(token_ids_.at(character));
      words_.push_back(std::move(word));
    }
    for (size_t w = 0; w < words_.size(); ++w) {
      const Word& word = words_[w];
      for (size_t i = 0; i + 1 < word.symbols.size(); ++i) {
        uint64_t key = pair_key({word.symbols[i], word.symbols[i + 1]});
        pair_counts_[key] += word.count;
        words_with_pair_[key].insert(static_cast<int32_t>(w));
      }
    }
    for (const auto& [key, count] : pair_counts_) queue_.push({count, key});
  }

  // Merges until the vocabulary holds `size` tokens or no pair repeats.
  void train(int64_t size) {
    while (static_cast<int64_t>(tokens_.size()) < size && !queue_.empty()) {
      QueuedPair top = queue_.top();
      queue_.pop();
      auto current = pair_counts_.find(top.key);
      int64_t count = current == pair_counts_.end() ? 0 : current->second;
      if (count != top.count) {  // stale: requeue with its present count
        if (count > 0) queue_.push({count, top.key});
        continue;
      }
      if (count < 1) break;
      merge(pair_of(top.key));
    }
  }

  TrainedTokenizerFiles files() const {
    using ordered = nlohmann::ordered_json;
    auto bos_id = static_cast<int64_t>(tokens_.size());
    int64_t eos_id = bos_id + 1;
    ordered vocab = ordered::object();
    for (size_t id = 0; id < tokens_.size(); ++id) vocab[tokens_[id]] = id;
    vocab[kBosToken] = bos_id;
    vocab[kEosToken] = eos_id;
    ordered merges = ordered::array();
    for (const Pair& pair : merges_) merges.push_back({tokens_[pair.first], tokens_[pair.second]});

    auto added = [](const char* content, int64_t id) {
      return ordered{{"id", id},           {"content", content}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false},    {"normalized", false}, {"special", true}};
    };
    auto byte_level_options = [](const char* type) {
      return ordered{{"type", type}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
    };
    auto special = [](const char* name, int type_id) {
      return ordered{{"SpecialToken", {{"id", name}, {"type_id", type_id}}}};
    };
    auto sequence = [](const char* name, int type_id) {
      return ordered{{"Sequence", {{"id", name}, {"type_id", type_id}}}};
    };
    ordered tokenizer = {
        {"version", "1.0"},
        {"truncation", nullptr},
        {"padding", nullptr},
        {"added_tokens", {added(kBosToken, bos_id), added(kEosToken, eos_id)}},
        {"normalizer", nullptr},
        {"pre_tokenizer", byte_level_options("ByteLevel")},
        // encode(text, add_special_tokens=True) starts with <|bos|>, as Llama's
        // tokenizers do: what a language model trained on these ids expects.
        {"post_processor",
         {{"type", "TemplateProcessing"},
          {"single", {special(kBosToken, 0), sequence("A", 0)}},
          {"pair", {special(kBosToken, 0), sequence("A", 0), special(kBosToken, 1), sequence("B", 1)}},
          {"special_tokens", {{kBosToken, {{"id", kBosToken}, {"ids", {bos_id}}, {"tokens", {kBosToken}}}}}}}},
        {"decoder", byte_level_options("ByteLevel")},
        {"model",
         {{"type", "BPE"},
          {"dropout", nullptr},
          {"unk_token", nullptr},
          {"continuing_subword_prefix", nullptr},
          {"end_of_word_suffix", nullptr},
          {"fuse_unk", false},
          {"byte_fallback", false},
          {"ignore_merges", false},
          {"vocab", vocab},
          {"merges", merges}}}};
    auto decoder_entry = [](const char* content) {
      return ordered{{"content", content}, {"lstrip", false}, {"normalized", false}, {"rstrip", false},
                     {"single_word", false}, {"special", true}};
    };
    ordered config = {
        {"added_tokens_decoder",
         {{std::to_string(bos_id), decoder_entry(kBosToken)}, {std::to_string(eos_id), decoder_entry(kEosToken)}}},
        {"bos_token", kBosToken},
        {"eos_token", kEosToken},
        {"add_bos_token", true},
        {"add_eos_token", false},
        {"clean_up_tokenization_spaces", false},
        {"model_max_length", 1000000000},
        {"tokenizer_class", "PreTrainedTokenizerFast"}};
    return {tokenizer.dump(2, ' ', false, nlohmann::json::error_handler_t::strict) + "\n",
            config.dump(2, ' ', false, nlohmann::json::error_handler_t::strict) + "\n"};
  }

 private:
  void add_to_pair(Pair pair, int64_t delta, int32_t word_index, std::unordered_set<uint64_t>& changed) {
    uint64_t key = pair_key(pair);
    pair_counts_[key] += delta;
    if (delta > 0) words_with_pair_[key].insert(word_index);
    changed.insert(key);
  }

  void merge(Pair pair) {
    // Different pairs can spell the same token ("a"+"bc", "ab"+"c"): it keeps one id.
    std::string merged = tokens_[pair.first] + tokens_[pair.second];
    auto [existing, is_new] = token_ids_.emplace(merged, static_cast<int32_t>(tokens_.size()));
    int32_t merged_id = existing->second;
    if (is_new) tokens_.push_back(std::move(merged));
    merges_.push_back(pair);

    uint64_t key = pair_key(pair);
    std::vector<int32_t> affected(words_with_pair_[key].begin(), words_with_pair_[key].end());
    std::sort(affected.begin(), affected.end());
    words_with_pair_.erase(key);
    std::unordered_set<uint64_t> changed;
    for (int32_t word_index : affected) {
      Word& word = words_[word_index];
      std::vector<int32_t>& symbols = word.symbols;
      std::vector<int32_t> rewritten;
      rewritten.reserve(symbols.size());
      for (size_t i = 0; i < symbols.size();) {
        if (i + 1 < symbols.size() && symbols[i] == pair.first && symbols[i + 1] == pair.second) {
          rewritten.push_back(merged_id);
          i += 2;
        } else {
          rewritten.push_back(symbols[i]);
          ++i;
        }
      }
      if (rewritten.size() == symbols.size()) continue;
      // Remove the old word's pairs and add the new word's.
      for (size_t i = 0; i + 1 < symbols.size(); ++i)
        add_to_pair({symbols[i], symbols[i + 1]}, -word.count, word_index, changed);
      for (size_t i = 0; i + 1 < rewritten.size(); ++i)
        add_to_pair({rewritten[i], rewritten[i + 1]}, word.count, word_index, changed);
      symbols = std::move(rewritten);
    }
    pair_counts_.erase(key);
    for (uint64_t changed_key : changed) {
      auto it = pair_counts_.find(changed_key);
      if (it == pair_counts_.end()) continue;
      if (it->second <= 0) {
        pair_counts_.erase(it);
      } else {
        queue_.push({it->second, changed_key});
      }
    }
  }

  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int32_t> token_ids_;
  std::vector<Pair> merges_;
  std::vector<Word> words_;
  std::unordered_map<uint64_t, int64_t> pair_counts_;
  std::unordered_map<uint64_t, std::unordered_set<int32_t>> words_with_pair_;
  std::priority_queue<QueuedPair> queue_;
};

}  // namespace

TrainedTokenizerFiles train_byte_level_bpe(std::string_view text, int64_t vocab_size) {
  if (vocab_size < 256 + kSpecialTokenCount)
    throw Error(fmt::format("train_byte_level_bpe: vocab_size {} is below {} (256 bytes and the special tokens {} and "
                            "{}); ask for a larger vocabulary",
                            vocab_size, 256 + kSpecialTokenCount, kBosToken, kEosToken));
  Trainer trainer(text);
  trainer.train(vocab_size - kSpecialTokenCount);
  return trainer.files();
}

}  // namespace mcompress
