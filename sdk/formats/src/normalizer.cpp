#include "normalizer.h"

#include <algorithm>

#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "mcompress/sdk/error.h"
#include "unicode_regex.h"

namespace mcompress {
namespace {

class UnicodeForm : public Normalizer {
 public:
  UnicodeForm(const UNormalizer2* form, std::string name) : form_(form), name_(std::move(name)) {}

  std::string normalize(std::string text) const override {
    bool ascii = std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
    if (ascii) return text;  // ASCII is already in every normal form
    UErrorCode status = U_ZERO_ERROR;
    std::u16string wide(text.size(), u'\0');
    int32_t wide_length = 0;
    u_strFromUTF8(wide.data(), static_cast<int32_t>(wide.size()), &wide_length, text.data(),
                  static_cast<int32_t>(text.size()), &status);
    wide.resize(static_cast<size_t>(wide_length));
    if (U_SUCCESS(status) && unorm2_isNormalized(form_, wide.data(), wide_length, &status)) return text;
    // Decomposition grows text by at most a factor of a few; ICU reports the need.
    std::u16string normalized(static_cast<size_t>(wide_length) * 3 + 16, u'\0');
    status = U_ZERO_ERROR;
    int32_t normalized_length = unorm2_normalize(form_, wide.data(), wide_length, normalized.data(),
                                                 static_cast<int32_t>(normalized.size()), &status);
    if (status == U_BUFFER_OVERFLOW_ERROR) {
      normalized.resize(static_cast<size_t>(normalized_length));
      status = U_ZERO_ERROR;
      normalized_length = unorm2_normalize(form_, wide.data(), wide_length, normalized.data(),
                                           static_cast<int32_t>(normalized.size()), &status);
    }
    if (U_FAILURE(status)) throw Error(fmt::format("tokenizer: {} normalization failed ({})", name_, u_errorName(status)));
    std::string out(static_cast<size_t>(normalized_length) * 3, '\0');
    int32_t out_length = 0;
    u_strToUTF8(out.data(), static_cast<int32_t>(out.size()), &out_length, normalized.data(), normalized_length,
                &status);
    if (U_FAILURE(status)) throw Error(fmt::format("tokenizer: {} normalization failed ({})", name_, u_errorName(status)));
    out.resize(static_cast<size_t>(out_length));
    return out;
  }

 private:
  const UNormalizer2* form_;
  std::string name_;
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string normalize(std::string text) const override {
    return text.empty() ? text : prefix_ + text;  // as the tokenizers library: empty stays empty
  }

 private:
  std::string prefix_;
};

class ReplaceString : public Normalizer {
 public:
  ReplaceString(std::string pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::string normalize(std::string text) const override {
    if (pattern_.empty()) return text;
    std::string out;
    out.reserve(text.size());
    size_t start = 0;
    for (size_t found; (found = text.find(pattern_, start)) != std::string::npos; start = found + pattern_.size()) {
      out.append(text, start, found - start);
      out += content_;
    }
    out.append(text, start, std::string::npos);
    return out;
  }

 private:
  std::string pattern_, content_;
};

class ReplaceRegex : public Normalizer {
 public:
  ReplaceRegex(const std::string& pattern, std::string content, const std::string& source)
      : regex_(pattern, source), content_(std::move(content)) {}
  std::string normalize(std::string text) const override {
    std::string out;
    size_t start = 0;
    for (auto [begin, end] : regex_.find_all(text)) {
      out.append(text, start, begin - start);
      out += content_;
      start = end;
    }
    out.append(text, start, std::string::npos);
    return out;
  }

 private:
  UnicodeRegex regex_;
  std::string content_;
};

class NormalizerSequence : public Normalizer {
 public:
  explicit NormalizerSequence(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  std::string normalize(std::string text) const override {
    for (const auto& step : steps_) text = step->normalize(std::move(text));
    return text;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

const UNormalizer2* unicode_form(const std::string& name) {
  UErrorCode status = U_ZERO_ERROR;
  const UNormalizer2* form = nullptr;
  if (name == "NFC") form = unorm2_getNFCInstance(&status);
  if (name == "NFD") form = unorm2_getNFDInstance(&status);
  if (name == "NFKC") form = unorm2_getNFKCInstance(&status);
  if (name == "NFKD") form = unorm2_getNFKDInstance(&status);
  if (U_FAILURE(status)) throw Error(fmt::format("tokenizer: ICU has no {} data ({})", name, u_errorName(status)));
  return form;
}

std::string required_string(const nlohmann::json& config, const char* key, const std::string& source) {
  if (!config.contains(key) || !config[key].is_string())
    throw Error(fmt::format("{}: normalizer {} needs a string \"{}\"; fix the file", source,
                            config.value("type", std::string("?")), key));
  return config[key].get<std::string>();
}

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& config, const std::string& source) {
  if (config.is_null()) return nullptr;
  std::string type = config.is_object() ? config.value("type", std::string()) : std::string();
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD")
    return std::make_unique<UnicodeForm>(unicode_form(type), type);
  if (type == "Prepend") return std::make_unique<Prepend>(required_string(config, "prepend", source));
  if (type == "Replace") {
    std::string content = required_string(config, "content", source);
    const nlohmann::json& pattern = config.value("pattern", nlohmann::json::object());
    if (pattern.contains("String") && pattern["String"].is_string())
      return std::make_unique<ReplaceString>(pattern["String"].get<std::string>(), content);
    if (pattern.contains("Regex") && pattern["Regex"].is_string())
      return std::make_unique<ReplaceRegex>(pattern["Regex"].get<std::string>(), content, source);
    throw Error(fmt::format("{}: normalizer Replace needs a pattern {{\"String\": ...}} or {{\"Regex\": ...}}", source));
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (const auto& step : config.value("normalizers", nlohmann::json::array())) {
      if (auto normalizer = make_normalizer(step, source)) steps.push_back(std::move(normalizer));
    }
    return std::make_unique<NormalizerSequence>(std::move(steps));
  }
  throw Error(fmt::format("{}: normalizer type \"{}\" is not supported (supported: NFC, NFD, NFKC, NFKD, "
                          "Prepend, Replace, Sequence); use a tokenizer.json with one of these",
                          source, type));
}

}  // namespace mcompress
