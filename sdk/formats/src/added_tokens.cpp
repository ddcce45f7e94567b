#include "added_tokens.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// Letters and digits, counting every non-ASCII byte as part of a word.
bool is_word_byte(char c) {
  auto byte = static_cast<unsigned char>(c);
  return byte >= 0x80 || std::isalnum(byte) || c == '_';
}

}  // namespace

AddedTokens::AddedTokens(const nlohmann::json& entries, const std::string& source) {
  if (entries.is_null()) return;
  if (!entries.is_array()) throw Error(fmt::format("{}: added_tokens must be a list; fix the file", source));
  for (size_t i = 0; i < entries.size(); ++i) {
    const nlohmann::json& entry = entries[i];
    if (!entry.is_object() || !entry.value("content", nlohmann::json()).is_string() ||
        !entry.value("id", nlohmann::json()).is_number_integer())
      throw Error(fmt::format("{}: added_tokens[{}] needs a string \"content\" and an integer \"id\"; fix the file",
                              source, i));
    AddedToken token;
    token.content = entry["content"].get<std::string>();
    token.id = entry["id"].get<int64_t>();
    auto flag = [&](const char* key) {
      auto it = entry.find(key);
      if (it == entry.end() || it->is_null()) return false;
      if (!it->is_boolean())
        throw Error(fmt::format("{}: added_tokens[{}].{} must be true or false; fix the file", source, i, key));
      return it->get<bool>();
    };
    token.special = flag("special");
    token.lstrip = flag("lstrip");
    token.rstrip = flag("rstrip");
    token.single_word = flag("single_word");
    if (token.content.empty()) continue;
    by_content_[token.content] = tokens_.size();
    by_id_[token.id] = tokens_.size();
    tokens_.push_back(std::move(token));
  }
  for (size_t i = 0; i < tokens_.size(); ++i)
    by_first_byte_[static_cast<unsigned char>(tokens_[i].content[0])].push_back(i);
  for (auto& candidates : by_first_byte_) {
    std::stable_sort(candidates.begin(), candidates.end(),
                     [&](size_t a, size_t b) { return tokens_[a].content.size() > tokens_[b].content.size(); });
  }
}

const AddedToken* AddedTokens::find(std::string_view content) const {
  auto it = by_content_.find(std::string(content));
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedTokens::find(int64_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

std::vector<TextSection> AddedTokens::split(std::string_view text) const {
  std::vector<TextSection> sections;
  if (tokens_.empty()) {
    if (!text.empty()) sections.push_back({text, nullptr});
    return sections;
  }
  size_t section_start = 0;
  size_t position = 0;
  while (position < text.size()) {
    const AddedToken* match = nullptr;
    for (size_t index : by_first_byte_[static_cast<unsigned char>(text[position])]) {
      const AddedToken& token = tokens_[index];
      if (text.compare(position, token.content.size(), token.content) != 0) continue;
      size_t end = position + token.content.size();
      if (token.single_word && ((position > 0 && is_word_byte(text[position - 1])) ||
                                (end < text.size() && is_word_byte(text[end]))))
        continue;
      match = &token;
      break;
    }
    if (!match) {
      ++position;
      continue;
    }
    size_t before_end = position;
    if (match->lstrip) {
      while (before_end > section_start && is_space(text[before_end - 1])) --before_end;
    }
    if (before_end > section_start) sections.push_back({text.substr(section_start, before_end - section_start), nullptr});
    sections.push_back({text.substr(position, match->content.size()), match});
    position += match->content.size();
    if (match->rstrip) {
      while (position < text.size() && is_space(text[position])) ++position;
    }
    section_start = position;
  }
  if (section_start < text.size()) sections.push_back({text.substr(section_start), nullptr});
  return sections;
}

}  // namespace mcompress
