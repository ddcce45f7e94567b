#include "mcompress/formats/tokenizer.h"

#include <algorithm>

#include <fstream>
#include <sstream>
#include <unordered_set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "added_tokens.h"
#include "bpe_model.h"
#include "mcompress/sdk/error.h"
#include "normalizer.h"
#include "post_processor.h"
#include "pre_tokenizer.h"
#include "token_decoder.h"
#include "utf8.h"

namespace mcompress {
namespace {

nlohmann::json parse_json(const std::string& text, const std::string& source) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: not valid JSON ({}); re-download or re-export the file", source, e.what()));
  }
}

// tokenizer_config.json names tokens as a string or as {"content": ...}.
std::optional<std::string> config_token(const nlohmann::json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->value("content", nlohmann::json()).is_string()) return (*it)["content"].get<std::string>();
  return std::nullopt;
}

// transformers' clean_up_tokenization: drops the space tokenizers of
// English left before punctuation and contractions.
std::string clean_up_tokenization(std::string text) {
  static const std::pair<std::string, std::string> replacements[] = {
      {" .", "."},   {" ?", "?"},    {" !", "!"},    {" ,", ","},    {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [pattern, replacement] : replacements) {
    std::string out;
    size_t start = 0;
    for (size_t found; (found = text.find(pattern, start)) != std::string::npos; start = found + pattern.size()) {
      out.append(text, start, found - start);
      out += replacement;
    }
    out.append(text, start, std::string::npos);
    text = std::move(out);
  }
  return text;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("{}: cannot be read; check that it exists and is readable", path.string()));
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

}  // namespace

// Everything a loaded tokenizer needs. The parts are immutable after
// loading (the BPE cache locks itself), so copies of a Tokenizer share them.
struct Tokenizer::Impl {
  std::shared_ptr<const BpeModel> model;
  AddedTokens added_tokens;
  std::shared_ptr<const Normalizer> normalizer;
  std::shared_ptr<const PreTokenizer> pre_tokenizer;
  std::shared_ptr<const PostProcessor> post_processor;
  std::shared_ptr<const TokenDecoder> decoder;
  std::unordered_set<std::string> special_contents;  // skipped by decode(..., true)
  std::optional<int64_t> bos_id, eos_id;
  bool add_bos_token = false;
  bool clean_up_tokenization_spaces = false;
  std::string chat_template;
  int64_t vocab_size = 0;

  std::optional<int64_t> token_id(std::string_view token) const {
    if (const AddedToken* added = added_tokens.find(token)) return added->id;
    return model->token_id(token);
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::Tokenizer(const Tokenizer& other) : impl_(std::make_unique<Impl>(*other.impl_)) {}
Tokenizer& Tokenizer::operator=(const Tokenizer& other) {
  if (this != &other) impl_ = std::make_unique<Impl>(*other.impl_);
  return *this;
}

Tokenizer Tokenizer::from_directory(const std::filesystem::path& directory) {
  std::filesystem::path tokenizer_path = directory / "tokenizer.json";
  std::filesystem::path config_path = directory / "tokenizer_config.json";
  if (!std::filesystem::exists(tokenizer_path))
    throw Error(fmt::format("{}: not found; a Hugging Face tokenizer directory needs tokenizer.json (save the "
                            "tokenizer with a fast tokenizer, or copy it from the model's repository)",
                            tokenizer_path.string()));
  std::string config_text = std::filesystem::exists(config_path) ? read_file(config_path) : std::string();
  return Tokenizer(load(read_file(tokenizer_path), tokenizer_path.string(), config_text, config_path.string()));
}

Tokenizer Tokenizer::from_json(const std::string& tokenizer_json, const std::string& config_json,
                               const std::string& source) {
  return Tokenizer(load(tokenizer_json, source, config_json, fmt::format("{} (tokenizer_config.json)", source)));
}

std::unique_ptr<Tokenizer::Impl> Tokenizer::load(const std::string& tokenizer_json, const std::string& source,
                                                 const std::string& config_json, const std::string& config_source)
// The sections are read field by field; a field of another JSON type than the
// one expected is the file's fault, said with the file's name.
try {
  nlohmann::json root = parse_json(tokenizer_json, source);
  if (!root.is_object()) throw Error(fmt::format("{}: must hold a JSON object; fix the file", source));
  auto model = root.find("model");
  if (model == root.end() || !model->is_object())
    throw Error(fmt::format("{}: has no \"model\" object; it is not a Hugging Face tokenizer.json (save the tokenizer "
                            "with a fast tokenizer to get one)",
                            source));
  std::string model_type = model->value("type", std::string("BPE"));
  if (model_type != "BPE")
    throw Error(fmt::format("{}: model type \"{}\" is not supported (only BPE: GPT-2, Llama, Mistral, Qwen style); "
                            "use a BPE tokenizer",
                            source, model_type));

  auto impl = std::make_unique<Impl>();
  impl->model = std::make_unique<BpeModel>(*model, source);
  impl->added_tokens = AddedTokens(root.value("added_tokens", nlohmann::json::array()), source);
  auto added_contents = std::make_shared<std::unordered_set<std::string>>();
  int64_t added_outside_vocab = 0;
  int64_t id_limit = impl->model->id_limit();
  for (const AddedToken& token : impl->added_tokens.all()) {
    added_contents->insert(token.content);
    if (token.special) impl->special_contents.insert(token.content);
    if (!impl->model->token(token.id)) ++added_outside_vocab;
    id_limit = std::max<int64_t>(id_limit, token.id + 1);
  }
  // Every id lies below it, also when a file's ids leave gaps.
  impl->vocab_size = std::max(impl->model->size() + added_outside_vocab, id_limit);
  auto section = [&](const char* key) { return root.contains(key) ? root[key] : nlohmann::json(); };
  impl->normalizer = make_normalizer(section("normalizer"), source);
  impl->pre_tokenizer = make_pre_tokenizer(section("pre_tokenizer"), source);
  const Impl& lookup = *impl;
  impl->post_processor = make_post_processor(
      section("post_processor"), [&](std::string_view token) { return lookup.token_id(token); }, source);
  impl->decoder = make_token_decoder(section("decoder"), added_contents, source);

  if (!config_json.empty()) {
    nlohmann::json config = parse_json(config_json, config_source);
    if (!config.is_object()) throw Error(fmt::format("{}: must hold a JSON object; fix the file", config_source));
    auto named_id = [&](const char* key) -> std::optional<int64_t> {
      std::optional<std::string> token = config_token(config, key);
      if (!token) return std::nullopt;
      std::optional<int64_t> id = impl->token_id(*token);
      if (!id)
        throw Error(fmt::format("{}: {} \"{}\" is not a token of tokenizer.json; fix the config", config_source, key,
                                *token));
      return id;
    };
    impl->bos_id = named_id("bos_token");
    impl->eos_id = named_id("eos_token");
    impl->add_bos_token = config.value("add_bos_token", nlohmann::json()).is_boolean() && config["add_bos_token"].get<bool>();
    // transformers' default since 4.45; older checkpoints say true explicitly.
    auto clean_up = config.find("clean_up_tokenization_spaces");
    impl->clean_up_tokenization_spaces = clean_up != config.end() && clean_up->is_boolean() && clean_up->get<bool>();
    auto chat_template = config.find("chat_template");
    if (chat_template != config.end() && chat_template->is_string()) impl->chat_template = chat_template->get<std::string>();
    for (const auto& extra : config.value("additional_special_tokens", nlohmann::json::array())) {
      if (extra.is_string()) impl->special_contents.insert(extra.get<std::string>());
      if (extra.is_object() && extra.value("content", nlohmann::json()).is_string())
        impl->special_contents.insert(extra["content"].get<std::string>());
    }
  }
  return impl;
} catch (const nlohmann::json::exception& e) {
  throw Error(fmt::format("{}: a field holds the wrong kind of JSON value ({}); fix the file", source, e.what()));
}

std::vector<int64_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::string repaired;
  if (!utf8::is_valid(text)) {
    repaired = utf8::repair(text);
    text = repaired;
  }
  std::vector<int64_t> ids;
  ids.reserve(text.size() / 3 + 4);
  bool first_section = true;
  for (const TextSection& section : impl_->added_tokens.split(text)) {
    if (section.token) {
      ids.push_back(section.token->id);
      first_section = false;
      continue;
    }
    std::string normalized(section.text);
    if (impl_->normalizer) normalized = impl_->normalizer->normalize(std::move(normalized));
    if (normalized.empty()) continue;
    std::vector<std::string> pieces{std::move(normalized)};
    if (impl_->pre_tokenizer) pieces = impl_->pre_tokenizer->split(std::move(pieces), first_section);
    for (const std::string& piece : pieces) {
      if (!piece.empty()) impl_->model->encode_word(piece, ids);
    }
    first_section = false;
  }
  if (!add_special_tokens) return ids;
  if (impl_->post_processor) ids = impl_->post_processor->process(std::move(ids), true);
  // tokenizer_config.json's add_bos_token asks for a BOS the post-processor
  // may not add itself (transformers rebuilds the template from it).
  bool template_adds_bos = impl_->post_processor && impl_->bos_id && impl_->post_processor->starts_with(*impl_->bos_id);
  if (impl_->add_bos_token && impl_->bos_id && !template_adds_bos) ids.insert(ids.begin(), *impl_->bos_id);
  return ids;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int64_t id : ids) {
    const std::string* token = nullptr;
    if (const AddedToken* added = impl_->added_tokens.find(id)) {
      token = &added->content;
    } else {
      token = impl_->model->token(id);
    }
    if (!token) continue;  // ids outside the vocabulary decode to nothing
    if (skip_special_tokens && impl_->special_contents.count(*token)) continue;
    tokens.push_back(*token);
  }
  std::string text;
  if (impl_->decoder) {
    for (const std::string& piece : impl_->decoder->decode_chain(std::move(tokens))) text += piece;
  } else {
    // Without a decoder the tokenizers library joins tokens with spaces.
    for (size_t i = 0; i < tokens.size(); ++i) text += (i ? " " : "") + tokens[i];
  }
  if (impl_->clean_up_tokenization_spaces) text = clean_up_tokenization(std::move(text));
  return text;
}

int64_t Tokenizer::vocab_size() const { return impl_->vocab_size; }
std::optional<int64_t> Tokenizer::token_id(std::string_view token) const { return impl_->token_id(token); }
std::optional<int64_t> Tokenizer::bos_id() const { return impl_->bos_id; }
std::optional<int64_t> Tokenizer::eos_id() const { return impl_->eos_id; }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }

}  // namespace mcompress
