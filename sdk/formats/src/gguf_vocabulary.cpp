#include "gguf_vocabulary.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <vector>

#include "mcompress/formats/tokenizer.h"
#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// llama.cpp's token types (enum llama_token_type, gguf-py's TokenType).
enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// The split regexes of the tokenizer.json files llama.cpp's converter knows,
// under the tokenizer.ggml.pre name that selects the same split in
// llama.cpp (src/llama-vocab.cpp).
const std::map<std::string, std::string>& known_split_regexes() {
  static const std::map<std::string, std::string> regexes = {
      {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
       "llama-bpe"},
      {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
       "qwen2"},
  };
  return regexes;
}

constexpr const char* kSupportedTokenizers =
    "byte-level BPE with Llama 3's, Qwen2's or GPT-2's pre-tokenizer, or SentencePiece-style BPE with byte "
    "fallback (Llama 2, Mistral)";

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("{}: cannot be read; check that it is a readable file", path.string()));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

json parse_file(const fs::path& path) {
  try {
    return json::parse(read_file(path));
  } catch (const json::exception& e) {
    throw Error(fmt::format("{}: not valid JSON ({})", path.string(), e.what()));
  }
}

// The pre-tokenizers of tokenizer.json in order (a Sequence unrolled).
std::vector<json> pre_tokenizer_steps(const json& tokenizer) {
  const json pre = tokenizer.value("pre_tokenizer", json());
  if (pre.is_null()) return {};
  if (pre.value("type", "") == "Sequence") return pre.value("pretokenizers", json::array()).get<std::vector<json>>();
  return {pre};
}

// tokenizer.ggml.pre for a byte-level BPE tokenizer.json, or an error saying why there is none.
std::string byte_level_pre_name(const json& tokenizer, const fs::path& file) {
  const std::vector<json> steps = pre_tokenizer_steps(tokenizer);
  auto is_byte_level = [](const json& step) { return step.value("type", "") == "ByteLevel"; };
  if (steps.size() == 1 && is_byte_level(steps[0]) && steps[0].value("use_regex", true) &&
      !steps[0].value("add_prefix_space", false))
    return "gpt-2";
  if (steps.size() == 2 && steps[0].value("type", "") == "Split" && is_byte_level(steps[1]) &&
      !steps[1].value("use_regex", true) && !steps[0].value("invert", false) &&
      steps[0].value("behavior", "") == "Isolated") {
    const json pattern = steps[0].value("pattern", json::object());
    if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
      const auto found = known_split_regexes().find(pattern["Regex"].get<std::string>());
      if (found != known_split_regexes().end()) return found->second;
    }
  }
  throw Error(fmt::format(
      "{}: the pre-tokenizer {} is not one llama.cpp runs under a name mcompress knows; GGUF export writes {}",
      file.string(), tokenizer.value("pre_tokenizer", json()).dump(), kSupportedTokenizers));
}

// Whether a SentencePiece-style tokenizer.json puts "▁" before the text
// (llama.cpp's tokenizer.ggml.add_space_prefix).
bool prepends_space(const json& tokenizer) {
  const json normalizer = tokenizer.value("normalizer", json());
  std::vector<json> normalizers;
  if (normalizer.is_object()) {
    if (normalizer.value("type", "") == "Sequence")
      normalizers = normalizer.value("normalizers", json::array()).get<std::vector<json>>();
    else
      normalizers = {normalizer};
  }
  for (const auto& step : normalizers) {
    if (step.value("type", "") == "Prepend" && step.value("prepend", "") == "\u2581") return true;
  }
  for (const auto& step : pre_tokenizer_steps(tokenizer)) {
    if (step.value("type", "") != "Metaspace") continue;
    const std::string scheme = step.value("prepend_scheme", step.value("add_prefix_space", true) ? "always" : "never");
    return scheme != "never";
  }
  return false;
}

// Added tokens the converter types as control though tokenizer.json does
// not mark them special (convert_hf_to_gguf's does_token_look_special);
// llama.cpp overrides such tokens to control when it loads them anyway.
bool looks_special(const std::string& token) {
  auto framed = [&token](const std::string& open, const std::string& close) {
    return token.size() >= open.size() + close.size() && token.compare(0, open.size(), open) == 0 &&
           token.compare(token.size() - close.size(), close.size(), close) == 0;
  };
  return token == "<pad>" || token == "<mask>" || token == "<2mass>" || token == "[@BOS@]" || framed("<|", "|>") ||
         framed("<\xEF\xBD\x9C", "\xEF\xBD\x9C>") || framed("<unused", ">");
}

bool is_byte_token(const std::string& token) {
  auto hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
  return token.size() == 6 && token.compare(0, 3, "<0x") == 0 && token[5] == '>' && hex(token[3]) && hex(token[4]);
}

// Merges as llama.cpp reads them: "left right" (a space inside a part, which
// the pair form of tokenizer.json allows, becomes U+0120 as the converter writes it).
std::vector<std::string> merge_strings(const json& merges, const fs::path& file) {
  std::vector<std::string> out;
  out.reserve(merges.size());
  auto escape_spaces = [](const std::string& part) {
    std::string escaped;
    for (char c : part) escaped += c == ' ' ? std::string("\xC4\xA0") : std::string(1, c);
    return escaped;
  };
  for (const auto& merge : merges) {
    if (merge.is_string()) {
      out.push_back(merge.get<std::string>());
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
      out.push_back(escape_spaces(merge[0].get<std::string>()) + " " + escape_spaces(merge[1].get<std::string>()));
    } else {
      throw Error(fmt::format("{}: merge {} is neither \"a b\" nor [\"a\", \"b\"]", file.string(), merge.dump()));
    }
  }
  return out;
}

std::optional<std::string> config_token(const json& config, const char* key) {
  const auto it = config.find(key);
  if (it == config.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->value("content", json()).is_string()) return (*it)["content"].get<std::string>();
  return std::nullopt;
}

GgufVocabulary add_vocabulary(GgufWriter& writer, const fs::path& directory, int64_t vocab_size) {
  const fs::path file = directory / "tokenizer.json";
  if (!fs::is_regular_file(file))
    throw Error(fmt::format(
        "{}: no tokenizer.json; a GGUF file carries the vocabulary llama.cpp tokenizes with: copy tokenizer.json "
        "and tokenizer_config.json of the model the checkpoint came from into {}",
        directory.string(), directory.string()));
  const json tokenizer = parse_file(file);
  // Loading it checks it as a whole and gives the ids and template encoding answers.
  const Tokenizer loaded = Tokenizer::from_directory(directory);
  const json model = tokenizer.value("model", json::object());
  if (model.value("type", "") != "BPE")
    throw Error(fmt::format("{}: the tokenizer model is '{}'; GGUF export writes {}", file.string(),
                            model.value("type", "(none)"), kSupportedTokenizers));
  const bool sentencepiece_style = model.value("byte_fallback", false);

  GgufVocabulary vocabulary;
  vocabulary.model = sentencepiece_style ? "llama" : "gpt2";
  if (!sentencepiece_style) vocabulary.pre = byte_level_pre_name(tokenizer, file);

  std::vector<std::string> tokens(static_cast<size_t>(vocab_size));
  std::vector<int32_t> types(static_cast<size_t>(vocab_size), kUnused);
  std::vector<bool> filled(static_cast<size_t>(vocab_size), false);
  auto place = [&](int64_t id, const std::string& text, int32_t type) {
    if (id < 0 || id >= vocab_size)
      throw Error(fmt::format("{}: token '{}' has id {}, but the model has {} embedding rows (config.json's "
                              "vocab_size); export the tokenizer the model was trained with",
                              file.string(), text, id, vocab_size));
    tokens[size_t(id)] = text;
    types[size_t(id)] = type;
    filled[size_t(id)] = true;
  };
  const json vocab = model.value("vocab", json::object());
  if (!vocab.is_object() || vocab.empty())
    throw Error(fmt::format("{}: the BPE model has no vocab object", file.string()));
  for (const auto& [text, id] : vocab.items()) {
    place(id.get<int64_t>(), text, sentencepiece_style && is_byte_token(text) ? kByte : kNormal);
  }
  for (const auto& added : tokenizer.value("added_tokens", json::array())) {
    const std::string content = added.at("content").get<std::string>();
    place(added.at("id").get<int64_t>(), content,
          added.value("special", false) || looks_special(content) ? kControl : kUserDefined);
  }
  std::optional<int64_t> unknown_id;
  if (model.value("unk_token", json()).is_string()) {
    unknown_id = loaded.token_id(model["unk_token"].get<std::string>());
    if (unknown_id && *unknown_id < vocab_size) types[size_t(*unknown_id)] = kUnknown;
  }
  // Ids the model reserves beyond the tokenizer, named as the converter names them.
  for (int64_t id = 0; id < vocab_size; ++id) {
    if (!filled[size_t(id)]) tokens[size_t(id)] = fmt::format("[PAD{}]", id);
  }

  writer.set("tokenizer.ggml.model", GgufValue::string(vocabulary.model));
  if (!vocabulary.pre.empty()) writer.set("tokenizer.ggml.pre", GgufValue::string(vocabulary.pre));
  writer.set("tokenizer.ggml.tokens", GgufValue::strings(tokens));
  if (sentencepiece_style) {
    // llama.cpp's SentencePiece tokenizer merges the adjacent pair whose
    // result scores highest; tokenizer.json ranks merges instead, so a
    // token scores minus the rank of the first merge that makes it. Tokens
    // no merge makes (characters, bytes, specials) score below every merge.
    const std::vector<std::string> merges = merge_strings(model.value("merges", json::array()), file);
    const float unmerged = -static_cast<float>(merges.size()) - 1.0f;
    std::vector<float> scores(static_cast<size_t>(vocab_size), unmerged);
    std::vector<bool> scored(static_cast<size_t>(vocab_size), false);
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      const size_t space = merges[rank].find(' ', 1);
      if (space == std::string::npos) continue;
      const std::string merged = merges[rank].substr(0, space) + merges[rank].substr(space + 1);
      const auto id = vocab.find(merged);
      if (id == vocab.end()) continue;
      const auto index = id->get<size_t>();
      if (!scored[index]) scores[index] = -static_cast<float>(rank), scored[index] = true;
    }
    writer.set("tokenizer.ggml.scores", GgufValue::float32s(scores));
  }
  writer.set("tokenizer.ggml.token_type", GgufValue::int32s(types));
  if (!sentencepiece_style)
    writer.set("tokenizer.ggml.merges", GgufValue::strings(merge_strings(model.value("merges", json::array()), file)));

  // Special ids: tokenizer_config.json's, else what the post-processor puts around a text.
  const std::vector<int64_t> plain = loaded.encode("a");
  const std::vector<int64_t> framed = loaded.encode("a", true);
  const bool leads = framed.size() > plain.size() && framed.front() != plain.front();
  const bool trails = framed.size() > plain.size() && framed.back() != plain.back();
  const std::optional<int64_t> bos = loaded.bos_id() ? loaded.bos_id() : leads ? std::optional(framed.front())
                                                                                : std::nullopt;
  const std::optional<int64_t> eos = loaded.eos_id() ? loaded.eos_id() : trails ? std::optional(framed.back())
                                                                                : std::nullopt;
  auto set_id = [&](const char* key, std::optional<int64_t> id) {
    if (id && *id >= 0 && *id < vocab_size) writer.set(key, GgufValue::uint32(static_cast<uint32_t>(*id)));
  };
  set_id("tokenizer.ggml.bos_token_id", bos);
  set_id("tokenizer.ggml.eos_token_id", eos);
  set_id("tokenizer.ggml.unknown_token_id", unknown_id);
  const fs::path config_file = directory / "tokenizer_config.json";
  if (fs::is_regular_file(config_file)) {
    if (auto pad = config_token(parse_file(config_file), "pad_token"))
      set_id("tokenizer.ggml.padding_token_id", loaded.token_id(*pad));
  }
  writer.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(leads && bos && framed.front() == *bos));
  writer.set("tokenizer.ggml.add_eos_token", GgufValue::boolean(trails && eos && framed.back() == *eos));
  if (sentencepiece_style)
    writer.set("tokenizer.ggml.add_space_prefix", GgufValue::boolean(prepends_space(tokenizer)));
  if (!loaded.chat_template().empty())
    writer.set("tokenizer.chat_template", GgufValue::string(loaded.chat_template()));
  return vocabulary;
}

}  // namespace

GgufVocabulary add_gguf_vocabulary(GgufWriter& writer, const fs::path& directory, int64_t vocab_size) {
  try {
    return add_vocabulary(writer, directory, vocab_size);
  } catch (const json::exception& e) {
    // A field of the wrong JSON type (an id that is not a number, ...).
    throw Error(fmt::format("{}: unexpected content ({}); re-export the tokenizer with the tokenizers library",
                            (directory / "tokenizer.json").string(), e.what()));
  }
}

}  // namespace mcompress
