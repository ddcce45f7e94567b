#include "post_processor.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

class PassThrough : public PostProcessor {
 public:
  std::vector<int64_t> process(std::vector<int64_t> ids, bool) const override { return ids; }
  bool starts_with(int64_t) const override { return false; }
};

// The "single" template: special tokens around the text's ids ("$A").
class TemplateProcessing : public PostProcessor {
 public:
  struct Piece {
    bool is_text;
    std::vector<int64_t> special_ids;
  };
  explicit TemplateProcessing(std::vector<Piece> pieces) : pieces_(std::move(pieces)) {}

  std::vector<int64_t> process(std::vector<int64_t> ids, bool add_special_tokens) const override {
    if (!add_special_tokens) return ids;
    std::vector<int64_t> out;
    out.reserve(ids.size() + 4);
    for (const Piece& piece : pieces_) {
      if (piece.is_text) {
        out.insert(out.end(), ids.begin(), ids.end());
      } else {
        out.insert(out.end(), piece.special_ids.begin(), piece.special_ids.end());
      }
    }
    return out;
  }

  bool starts_with(int64_t id) const override {
    return !pieces_.empty() && !pieces_.front().is_text && !pieces_.front().special_ids.empty() &&
           pieces_.front().special_ids.front() == id;
  }

 private:
  std::vector<Piece> pieces_;
};

class PostProcessorSequence : public PostProcessor {
 public:
  explicit PostProcessorSequence(std::vector<std::unique_ptr<PostProcessor>> steps) : steps_(std::move(steps)) {}
  std::vector<int64_t> process(std::vector<int64_t> ids, bool add_special_tokens) const override {
    for (const auto& step : steps_) ids = step->process(std::move(ids), add_special_tokens);
    return ids;
  }
  bool starts_with(int64_t id) const override {
    for (const auto& step : steps_) {
      if (step->starts_with(id)) return true;
    }
    return false;
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> steps_;
};

std::unique_ptr<PostProcessor> make_template(const nlohmann::json& config, const TokenIdLookup& token_id,
                                             const std::string& source) {
  const nlohmann::json single = config.value("single", nlohmann::json::array());
  const nlohmann::json special_tokens = config.value("special_tokens", nlohmann::json::object());
  std::vector<TemplateProcessing::Piece> pieces;
  for (const auto& item : single) {
    if (item.contains("Sequence")) {
      pieces.push_back({true, {}});
      continue;
    }
    if (!item.contains("SpecialToken") || !item["SpecialToken"].value("id", nlohmann::json()).is_string())
      throw Error(fmt::format("{}: post_processor TemplateProcessing has a template item {} that is neither "
                              "{{\"Sequence\": ...}} nor {{\"SpecialToken\": {{\"id\": ...}}}}; fix the file",
                              source, item.dump()));
    std::string name = item["SpecialToken"]["id"].get<std::string>();
    TemplateProcessing::Piece piece{false, {}};
    if (special_tokens.contains(name) && special_tokens[name].contains("ids")) {
      piece.special_ids = special_tokens[name]["ids"].get<std::vector<int64_t>>();
    } else if (auto id = token_id(name)) {
      piece.special_ids = {*id};
    } else {
      throw Error(fmt::format("{}: post_processor TemplateProcessing adds \"{}\", which is neither in its "
                              "special_tokens nor in the vocabulary; fix the file",
                              source, name));
    }
    pieces.push_back(std::move(piece));
  }
  return std::make_unique<TemplateProcessing>(std::move(pieces));
}

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& config, const TokenIdLookup& token_id,
                                                   const std::string& source) {
  if (config.is_null()) return nullptr;
  std::string type = config.is_object() ? config.value("type", std::string()) : std::string();
  if (type == "ByteLevel") return std::make_unique<PassThrough>();
  if (type == "TemplateProcessing") return make_template(config, token_id, source);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PostProcessor>> steps;
    for (const auto& step : config.value("processors", nlohmann::json::array())) {
      if (auto processor = make_post_processor(step, token_id, source)) steps.push_back(std::move(processor));
    }
    return std::make_unique<PostProcessorSequence>(std::move(steps));
  }
  throw Error(fmt::format("{}: post_processor type \"{}\" is not supported (supported: TemplateProcessing, "
                          "ByteLevel, Sequence); use a tokenizer.json with one of these",
                          source, type));
}

}  // namespace mcompress
