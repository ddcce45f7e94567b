#include "token_decoder.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "byte_level.h"
#include "mcompress/sdk/error.h"
#include "utf8.h"

namespace mcompress {
namespace {

std::string replace_all(const std::string& text, const std::string& pattern, const std::string& content) {
  if (pattern.empty()) return text;
  std::string out;
  size_t start = 0;
  for (size_t found; (found = text.find(pattern, start)) != std::string::npos; start = found + pattern.size()) {
    out.append(text, start, found - start);
    out += content;
  }
  out.append(text, start, std::string::npos);
  return out;
}

// Byte-level tokens become bytes again; runs of them between added tokens
// are read as UTF-8 (invalid bytes become U+FFFD), as transformers does.
class ByteLevelDecoder : public TokenDecoder {
 public:
  explicit ByteLevelDecoder(std::shared_ptr<const std::unordered_set<std::string>> added_tokens)
      : added_tokens_(std::move(added_tokens)) {}

  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::vector<std::string> texts;
    std::string bytes;
    auto flush = [&] {
      if (!bytes.empty()) texts.push_back(utf8::repair(bytes));
      bytes.clear();
    };
    for (const std::string& token : tokens) {
      if (added_tokens_ && added_tokens_->count(token)) {
        flush();
        texts.push_back(token);
        continue;
      }
      // A token outside the alphabet stands for its own bytes.
      std::optional<std::string> decoded = byte_level::decode(token);
      bytes += decoded ? *decoded : token;
    }
    flush();
    return texts;
  }

 private:
  std::shared_ptr<const std::unordered_set<std::string>> added_tokens_;
};

class ReplaceDecoder : public TokenDecoder {
 public:
  ReplaceDecoder(std::string pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (std::string& token : tokens) token = replace_all(token, pattern_, content_);
    return tokens;
  }

 private:
  std::string pattern_, content_;
};

// Runs of <0xNN> tokens become the bytes they name; a run that is not
// valid UTF-8 becomes one U+FFFD per byte, as the tokenizers library does.
class ByteFallbackDecoder : public TokenDecoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    size_t byte_count = 0;
    auto flush = [&] {
      if (byte_count == 0) return;
      if (utf8::is_valid(bytes)) {
        out.push_back(bytes);
      } else {
        std::string replacement;
        for (size_t i = 0; i < byte_count; ++i) replacement += "\xEF\xBF\xBD";
        out.push_back(replacement);
      }
      bytes.clear();
      byte_count = 0;
    };
    for (std::string& token : tokens) {
      if (auto byte = byte_token_value(token)) {
        bytes += static_cast<char>(*byte);
        ++byte_count;
      } else {
        flush();
        out.push_back(std::move(token));
      }
    }
    flush();
    return out;
  }

 private:
  static std::optional<int> byte_token_value(const std::string& token) {
    if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return std::nullopt;
    int value = 0;
    for (char c : token.substr(3, 2)) {
      value *= 16;
      if (c >= '0' && c <= '9') {
        value += c - '0';
      } else if (c >= 'A' && c <= 'F') {
        value += c - 'A' + 10;
      } else if (c >= 'a' && c <= 'f') {
        value += c - 'a' + 10;
      } else {
        return std::nullopt;
      }
    }
    return value;
  }
};

class FuseDecoder : public TokenDecoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::string joined;
    for (const std::string& token : tokens) joined += token;
    return {joined};
  }
};

// Removes up to `start` leading and `stop` trailing copies of one character.
class StripDecoder : public TokenDecoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop) : content_(std::move(content)), start_(start), stop_(stop) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (std::string& token : tokens) {
      if (content_.empty()) continue;
      size_t begin = 0;
      for (size_t i = 0; i < start_ && token.compare(begin, content_.size(), content_) == 0; ++i) begin += content_.size();
      size_t end = token.size();
      for (size_t i = 0; i < stop_ && end >= begin + content_.size() &&
                         token.compare(end - content_.size(), content_.size(), content_) == 0;
           ++i)
        end -= content_.size();
      token = token.substr(begin, end - begin);
    }
    return tokens;
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

class MetaspaceDecoder : public TokenDecoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first_space)
      : replacement_(std::move(replacement)), strip_first_space_(strip_first_space) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = replace_all(tokens[i], replacement_, " ");
      if (i == 0 && strip_first_space_ && !tokens[i].empty() && tokens[i][0] == ' ') tokens[i].erase(0, 1);
    }
    return tokens;
  }

 private:
  std::string replacement_;
  bool strip_first_space_;
};

class DecoderSequence : public TokenDecoder {
 public:
  explicit DecoderSequence(std::vector<std::unique_ptr<TokenDecoder>> steps) : steps_(std::move(steps)) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (const auto& step : steps_) tokens = step->decode_chain(std::move(tokens));
    return tokens;
  }

 private:
  std::vector<std::unique_ptr<TokenDecoder>> steps_;
};

}  // namespace

std::unique_ptr<TokenDecoder> make_token_decoder(const nlohmann::json& config,
                                                 std::shared_ptr<const std::unordered_set<std::string>> added_tokens,
                                                 const std::string& source) {
  if (config.is_null()) return nullptr;
  std::string type = config.is_object() ? config.value("type", std::string()) : std::string();
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>(std::move(added_tokens));
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Replace") {
    const nlohmann::json pattern = config.value("pattern", nlohmann::json::object());
    if (!pattern.contains("String") || !pattern["String"].is_string() || !config.value("content", nlohmann::json()).is_string())
      throw Error(fmt::format("{}: decoder Replace needs \"pattern\": {{\"String\": ...}} and a string \"content\" "
                              "(regex patterns are not supported); fix the file",
                              source));
    return std::make_unique<ReplaceDecoder>(pattern["String"].get<std::string>(), config["content"].get<std::string>());
  }
  if (type == "Strip") {
    return std::make_unique<StripDecoder>(config.value("content", std::string(" ")), config.value("start", size_t{0}),
                                          config.value("stop", size_t{0}));
  }
  if (type == "Metaspace") {
    std::string scheme = config.value("prepend_scheme", config.value("add_prefix_space", true) ? "always" : "never");
    return std::make_unique<MetaspaceDecoder>(config.value("replacement", std::string("\u2581")), scheme != "never");
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<TokenDecoder>> steps;
    for (const auto& step : config.value("decoders", nlohmann::json::array())) {
      if (auto decoder = make_token_decoder(step, added_tokens, source)) steps.push_back(std::move(decoder));
    }
    return std::make_unique<DecoderSequence>(std::move(steps));
  }
  throw Error(fmt::format("{}: decoder type \"{}\" is not supported (supported: ByteLevel, ByteFallback, Fuse, "
                          "Replace, Strip, Metaspace, Sequence); use a tokenizer.json with one of these",
                          source, type));
}

}  // namespace mcompress
