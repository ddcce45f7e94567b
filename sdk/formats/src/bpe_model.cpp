#include "bpe_model.h"

#include <queue>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "mcompress/sdk/error.h"
#include "utf8.h"

namespace mcompress {
namespace {

// Words longer than this rarely repeat; a bounded cache keeps memory flat.
constexpr size_t kMaxCachedWordBytes = 256;
constexpr size_t kMaxCachedWords = 200'000;

std::pair<std::string, std::string> merge_pair(const nlohmann::json& merge, size_t index, const std::string& source) {
  // Older files write "left right"; tokenizers >= 0.20 writes ["left", "right"],
  // which allows spaces inside tokens.
  if (merge.is_string()) {
    const std::string& text = merge.get_ref<const std::string&>();
    size_t space = text.find(' ');
    if (space != std::string::npos && text.find(' ', space + 1) == std::string::npos)
      return {text.substr(0, space), text.substr(space + 1)};
  } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
    return {merge[0].get<std::string>(), merge[1].get<std::string>()};
  }
  throw Error(fmt::format("{}: model.merges[{}] is {}, not \"left right\" or [\"left\", \"right\"]; fix the file",
                          source, index, merge.dump()));
}

}  // namespace

BpeModel::BpeModel(const nlohmann::json& config, const std::string& source) {
  const auto& vocab = config.find("vocab");
  if (vocab == config.end() || !vocab->is_object())
    throw Error(fmt::format("{}: model.vocab must be an object of token → id; fix the file", source));
  for (const auto& [token, id] : vocab->items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
      throw Error(fmt::format("{}: model.vocab[\"{}\"] must be a non-negative integer id; fix the file", source, token));
    auto value = static_cast<int32_t>(id.get<int64_t>());
    vocab_[token] = value;
    if (tokens_by_id_.size() <= static_cast<size_t>(value)) tokens_by_id_.resize(static_cast<size_t>(value) + 1);
    tokens_by_id_[static_cast<size_t>(value)] = token;
  }

  const auto& merges = config.find("merges");
  if (merges != config.end() && !merges->is_null()) {
    if (!merges->is_array()) throw Error(fmt::format("{}: model.merges must be a list; fix the file", source));
    merges_.reserve(merges->size());
    for (size_t rank = 0; rank < merges->size(); ++rank) {
      // Named, not a structured binding: lambdas cannot capture those in C++17.
      const auto pair = merge_pair((*merges)[rank], rank, source);
      const std::string& left = pair.first;
      const std::string& right = pair.second;
      auto missing = [&](const std::string& token) {
        return Error(fmt::format("{}: model.merges[{}] (\"{} {}\") names \"{}\", which is not in model.vocab; the "
                                 "file is inconsistent, re-export the tokenizer",
                                 source, rank, left, right, token));
      };
      auto left_id = vocab_.find(left), right_id = vocab_.find(right), merged_id = vocab_.find(left + right);
      if (left_id == vocab_.end()) throw missing(left);
      if (right_id == vocab_.end()) throw missing(right);
      if (merged_id == vocab_.end()) throw missing(left + right);
      // A repeated merge keeps its first (highest) rank.
      merges_.emplace(pair_key(left_id->second, right_id->second),
                      Merge{static_cast<int32_t>(rank), merged_id->second});
    }
  }

  const nlohmann::json& unk = config.contains("unk_token") ? config["unk_token"] : nlohmann::json();
  if (unk.is_string()) {
    auto it = vocab_.find(unk.get<std::string>());
    if (it == vocab_.end())
      throw Error(fmt::format("{}: model.unk_token \"{}\" is not in model.vocab; fix the file", source,
                              unk.get<std::string>()));
    unk_id_ = it->second;
  }
  auto flag = [&](const char* key) {
    auto it = config.find(key);
    return it != config.end() && it->is_boolean() && it->get<bool>();
  };
  fuse_unk_ = flag("fuse_unk");
  byte_fallback_ = flag("byte_fallback");
  ignore_merges_ = flag("ignore_merges");
  for (const char* affix : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = config.find(affix);
    if (it != config.end() && it->is_string() && !it->get<std::string>().empty())
      throw Error(fmt::format("{}: model.{} is not supported (byte-level and SentencePiece BPE leave it empty); use "
                              "a tokenizer.json without it",
                              source, affix));
  }
  if (byte_fallback_) {
    byte_token_ids_.assign(256, -1);
    for (int byte = 0; byte < 256; ++byte) {
      auto it = vocab_.find(fmt::format("<0x{:02X}>", byte));
      if (it != vocab_.end()) byte_token_ids_[byte] = it->second;
    }
  }
}

std::optional<int64_t> BpeModel::token_id(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::token(int64_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= tokens_by_id_.size()) return nullptr;
  auto it = vocab_.find(tokens_by_id_[static_cast<size_t>(id)]);
  return it != vocab_.end() && it->second == id ? &tokens_by_id_[static_cast<size_t>(id)] : nullptr;
}

std::vector<int32_t> BpeModel::initial_symbols(const std::string& word) const {
  std::vector<int32_t> symbols;
  symbols.reserve(word.size());
  bool previous_unknown = false;
  for (const std::string& character : utf8::split_characters(word)) {
    auto it = vocab_.find(character);
    if (it != vocab_.end()) {
      symbols.push_back(it->second);
      previous_unknown = false;
      continue;
    }
    if (byte_fallback_) {
      bool all_bytes_known = true;
      for (char byte : character) all_bytes_known &= byte_token_ids_[static_cast<unsigned char>(byte)] >= 0;
      if (all_bytes_known) {
        for (char byte : character) symbols.push_back(byte_token_ids_[static_cast<unsigned char>(byte)]);
        previous_unknown = false;
        continue;
      }
    }
    // Without an unknown token the character is dropped, as the tokenizers library does.
    if (unk_id_ && !(fuse_unk_ && previous_unknown)) symbols.push_back(*unk_id_);
    previous_unknown = true;
  }
  return symbols;
}

std::vector<int32_t> BpeModel::merge_word(const std::string& word) const {
  if (ignore_merges_) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) return {it->second};
  }
  std::vector<int32_t> ids = initial_symbols(word);
  if (ids.size() < 2) return ids;

  // Symbols form a linked list; the queue offers the lowest-ranked merge,
  // leftmost first. Entries that went stale are skipped when popped.
  struct Symbol {
    int32_t id;
    int32_t previous;
    int32_t next;
    bool alive;
  };
  struct Candidate {
    int32_t rank;
    int32_t position;
    int32_t merged_id;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : position > other.position;
    }
  };
  std::vector<Symbol> symbols(ids.size());
  for (size_t i = 0; i < ids.size(); ++i)
    symbols[i] = {ids[i], static_cast<int32_t>(i) - 1, i + 1 < ids.size() ? static_cast<int32_t>(i + 1) : -1, true};
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto offer = [&](int32_t position) {
    if (position < 0 || symbols[position].next < 0) return;
    auto it = merges_.find(pair_key(symbols[position].id, symbols[symbols[position].next].id));
    if (it != merges_.end()) queue.push({it->second.rank, position, it->second.merged_id});
  };
  for (size_t i = 0; i + 1 < ids.size(); ++i) offer(static_cast<int32_t>(i));

  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.position];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    auto it = merges_.find(pair_key(left.id, right.id));
    // A candidate whose pair changed since it was queued is stale.
    if (it == merges_.end() || it->second.merged_id != top.merged_id || it->second.rank != top.rank) continue;
    left.id = top.merged_id;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].previous = top.position;
    offer(left.previous);
    offer(top.position);
  }
  std::vector<int32_t> merged;
  for (const Symbol& symbol : symbols) {
    if (symbol.alive) merged.push_back(symbol.id);
  }
  return merged;
}

void BpeModel::encode_word(const std::string& word, std::vector<int64_t>& ids) const {
  bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> merged = merge_word(word);
  ids.insert(ids.end(), merged.begin(), merged.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kMaxCachedWords) cache_.clear();
    cache_.emplace(word, std::move(merged));
  }
}

}  // namespace mcompress
