#include "pre_tokenizer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "byte_level.h"
#include "mcompress/sdk/error.h"
#include "unicode_regex.h"

namespace mcompress {
namespace {

// How the tokenizers library's Split keeps what the pattern matched.
enum class DelimiterBehavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Cuts `text` at `matches`, handling the matched delimiters as `behavior` says.
void split_at(const std::string& text, const std::vector<std::pair<size_t, size_t>>& matches,
              DelimiterBehavior behavior, std::vector<std::string>& out) {
  size_t previous_end = 0;
  bool previous_was_delimiter = false;
  std::string pending;  // MergedWithNext: a delimiter waiting for what follows it
  auto emit = [&](std::string piece, bool is_delimiter) {
    switch (behavior) {
      case DelimiterBehavior::kIsolated:
        out.push_back(std::move(piece));
        break;
      case DelimiterBehavior::kRemoved:
        if (!is_delimiter) out.push_back(std::move(piece));
        break;
      case DelimiterBehavior::kMergedWithPrevious:
        if (is_delimiter && !out.empty() && !previous_was_delimiter) {
          out.back() += piece;
        } else {
          out.push_back(std::move(piece));
        }
        break;
      case DelimiterBehavior::kMergedWithNext:
        if (is_delimiter) {
          if (!pending.empty() || previous_was_delimiter) {
            out.push_back(std::move(pending));
            pending.clear();
          }
          pending = std::move(piece);
        } else {
          out.push_back(pending + piece);
          pending.clear();
        }
        break;
      case DelimiterBehavior::kContiguous:
        if (is_delimiter && previous_was_delimiter && !out.empty()) {
          out.back() += piece;
        } else {
          out.push_back(std::move(piece));
        }
        break;
    }
    previous_was_delimiter = is_delimiter;
  };
  for (auto [begin, end] : matches) {
    if (begin > previous_end) emit(text.substr(previous_end, begin - previous_end), false);
    emit(text.substr(begin, end - begin), true);
    previous_end = end;
  }
  if (previous_end < text.size()) emit(text.substr(previous_end), false);
  if (!pending.empty()) out.push_back(std::move(pending));
}

class RegexSplit : public PreTokenizer {
 public:
  RegexSplit(const std::string& pattern, DelimiterBehavior behavior, const std::string& source)
      : regex_(pattern, source), behavior_(behavior) {}

  std::vector<std::string> split(std::vector<std::string> pieces, bool) const override {
    std::vector<std::string> out;
    out.reserve(pieces.size() * 4);
    for (const std::string& piece : pieces) split_at(piece, regex_.find_all(piece), behavior_, out);
    return out;
  }

 private:
  UnicodeRegex regex_;
  DelimiterBehavior behavior_;
};

class StringSplit : public PreTokenizer {
 public:
  StringSplit(std::string delimiter, DelimiterBehavior behavior)
      : delimiter_(std::move(delimiter)), behavior_(behavior) {}

  std::vector<std::string> split(std::vector<std::string> pieces, bool) const override {
    std::vector<std::string> out;
    for (const std::string& piece : pieces) {
      std::vector<std::pair<size_t, size_t>> matches;
      for (size_t found = piece.find(delimiter_); !delimiter_.empty() && found != std::string::npos;
           found = piece.find(delimiter_, found + delimiter_.size()))
        matches.emplace_back(found, found + delimiter_.size());
      split_at(piece, matches, behavior_, out);
    }
    return out;
  }

 private:
  std::string delimiter_;
  DelimiterBehavior behavior_;
};

// Maps each piece's bytes to GPT-2's printable alphabet, after splitting it
// with GPT-2's regex when use_regex is set.
class ByteLevel : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex) : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_ = std::make_unique<UnicodeRegex>(byte_level::kGpt2Pattern, "GPT-2 pre-tokenizer");
  }

  std::vector<std::string> split(std::vector<std::string> pieces, bool) const override {
    std::vector<std::string> out;
    out.reserve(pieces.size());
    for (std::string& piece : pieces) {
      if (add_prefix_space_ && piece.rfind(' ', 0) != 0) piece.insert(0, " ");
      if (!regex_) {
        out.push_back(byte_level::encode(piece));
        continue;
      }
      for (auto [begin, end] : regex_->find_all(piece))
        out.push_back(byte_level::encode(std::string_view(piece).substr(begin, end - begin)));
    }
    return out;
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<UnicodeRegex> regex_;
};

// SentencePiece's convention: spaces become "▁", a "▁" goes in front, and
// words start at each "▁".
class Metaspace : public PreTokenizer {
 public:
  enum class Prepend { kAlways, kFirst, kNever };
  Metaspace(std::string replacement, Prepend prepend, bool split_words)
      : replacement_(std::move(replacement)), prepend_(prepend), split_words_(split_words) {}

  std::vector<std::string> split(std::vector<std::string> pieces, bool first_section) const override {
    std::vector<std::string> out;
    for (std::string& piece : pieces) {
      std::string replaced;
      for (char c : piece) {
        if (c == ' ') {
          replaced += replacement_;
        } else {
          replaced += c;
        }
      }
      bool prepend = prepend_ == Prepend::kAlways || (prepend_ == Prepend::kFirst && first_section);
      if (prepend && replaced.rfind(replacement_, 0) != 0) replaced.insert(0, replacement_);
      if (!split_words_) {
        out.push_back(std::move(replaced));
        continue;
      }
      std::vector<std::pair<size_t, size_t>> matches;
      for (size_t found = replaced.find(replacement_); found != std::string::npos;
           found = replaced.find(replacement_, found + replacement_.size()))
        matches.emplace_back(found, found + replacement_.size());
      split_at(replaced, matches, DelimiterBehavior::kMergedWithNext, out);
    }
    return out;
  }

 private:
  std::string replacement_;
  Prepend prepend_;
  bool split_words_;
};

class PreTokenizerSequence : public PreTokenizer {
 public:
  explicit PreTokenizerSequence(std::vector<std::unique_ptr<PreTokenizer>> steps) : steps_(std::move(steps)) {}
  std::vector<std::string> split(std::vector<std::string> pieces, bool first_section) const override {
    for (const auto& step : steps_) pieces = step->split(std::move(pieces), first_section);
    return pieces;
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

DelimiterBehavior delimiter_behavior(const nlohmann::json& config, const std::string& source) {
  std::string name = config.value("behavior", std::string("Isolated"));
  if (name == "Isolated") return DelimiterBehavior::kIsolated;
  if (name == "Removed") return DelimiterBehavior::kRemoved;
  if (name == "MergedWithPrevious") return DelimiterBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return DelimiterBehavior::kMergedWithNext;
  if (name == "Contiguous") return DelimiterBehavior::kContiguous;
  throw Error(fmt::format("{}: pre-tokenizer Split has an unknown behavior \"{}\" (known: Isolated, Removed, "
                          "MergedWithPrevious, MergedWithNext, Contiguous); fix the file",
                          source, name));
}

std::unique_ptr<PreTokenizer> make_split(const nlohmann::json& config, const std::string& source) {
  if (config.value("invert", false))
    throw Error(fmt::format("{}: pre-tokenizer Split with \"invert\": true is not supported; use a tokenizer.json "
                            "without it",
                            source));
  DelimiterBehavior behavior = delimiter_behavior(config, source);
  const nlohmann::json pattern = config.value("pattern", nlohmann::json::object());
  if (pattern.contains("Regex") && pattern["Regex"].is_string())
    return std::make_unique<RegexSplit>(pattern["Regex"].get<std::string>(), behavior, source);
  if (pattern.contains("String") && pattern["String"].is_string())
    return std::make_unique<StringSplit>(pattern["String"].get<std::string>(), behavior);
  throw Error(fmt::format("{}: pre-tokenizer Split needs a pattern {{\"Regex\": ...}} or {{\"String\": ...}}; fix "
                          "the file",
                          source));
}

std::unique_ptr<PreTokenizer> make_metaspace(const nlohmann::json& config, const std::string& source) {
  std::string replacement = config.value("replacement", std::string("\u2581"));
  // Older files say add_prefix_space instead of prepend_scheme.
  std::string scheme = config.value("prepend_scheme", config.value("add_prefix_space", true) ? "always" : "never");
  Metaspace::Prepend prepend;
  if (scheme == "always") {
    prepend = Metaspace::Prepend::kAlways;
  } else if (scheme == "first") {
    prepend = Metaspace::Prepend::kFirst;
  } else if (scheme == "never") {
    prepend = Metaspace::Prepend::kNever;
  } else {
    throw Error(fmt::format("{}: pre-tokenizer Metaspace has an unknown prepend_scheme \"{}\" (known: always, "
                            "first, never); fix the file",
                            source, scheme));
  }
  return std::make_unique<Metaspace>(replacement, prepend, config.value("split", true));
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& config, const std::string& source) {
  if (config.is_null()) return nullptr;
  std::string type = config.is_object() ? config.value("type", std::string()) : std::string();
  if (type == "Split") return make_split(config, source);
  if (type == "ByteLevel")
    return std::make_unique<ByteLevel>(config.value("add_prefix_space", false), config.value("use_regex", true));
  if (type == "Metaspace") return make_metaspace(config, source);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (const auto& step : config.value("pretokenizers", nlohmann::json::array())) {
      if (auto pre_tokenizer = make_pre_tokenizer(step, source)) steps.push_back(std::move(pre_tokenizer));
    }
    return std::make_unique<PreTokenizerSequence>(std::move(steps));
  }
  throw Error(fmt::format("{}: pre-tokenizer type \"{}\" is not supported (supported: Split, ByteLevel, Metaspace, "
                          "Sequence); use a tokenizer.json with one of these",
                          source, type));
}

std::unique_ptr<PreTokenizer> make_gpt2_pre_tokenizer() { return std::make_unique<ByteLevel>(false, true); }

}  // namespace mcompress
