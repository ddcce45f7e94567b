#include "mcompress/framework/sources/token_text.h"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "mcompress/framework/support/file_reading.h"
#include "mcompress/sdk/error.h"
#include "utf8_text.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;

bool is_json_lines(const std::string& path) { return fs::path(path).extension() == ".jsonl"; }

// 1-based line of byte `offset` in `text`, for messages.
size_t line_of(const std::string& text, size_t offset) {
  return size_t(std::count(text.begin(), text.begin() + std::min(offset, text.size()), '\n')) + 1;
}

void check_utf8(const std::string& text, const std::string& path) {
  const size_t bad = utf8_text::first_invalid_byte(text);
  if (bad != std::string::npos)
    throw Error(fmt::format("{}:{}: the text is not valid UTF-8 (byte offset {}); convert the file "
                            "to UTF-8 (e.g. with iconv)",
                            path, line_of(text, bad), bad));
}

std::vector<std::string> documents_of(const std::string& path, const std::string& field) {
  if (!fs::is_regular_file(path))
    throw Error(fmt::format("text file {} not found; `data.path` names UTF-8 text or JSON Lines files", path));
  const std::string text = read_text_file(path);
  check_utf8(text, path);
  if (!is_json_lines(path)) return {text};
  std::vector<std::string> documents;
  std::istringstream lines(text);
  std::string line;
  for (size_t number = 1; std::getline(lines, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("{}:{}: not a JSON object ({}); JSON Lines hold one object per line", path,
                              number, e.what()));
    }
    const auto it = record.is_object() ? record.find(field) : record.end();
    if (it == record.end() || !it->is_string())
      throw Error(fmt::format("{}:{}: the line has no string field `{}`; set `data.field` to the field "
                              "holding the text",
                              path, number, field));
    documents.push_back(it->get<std::string>());
  }
  return documents;
}

Dataset training_windows(const torch::Tensor& tokens, int64_t context, const std::string& name,
                         int64_t vocabulary) {
  const int64_t count = (tokens.numel() - 1) / context;
  auto windows = tokens.slice(0, 0, count * context + 1);
  Dataset data;
  data.name = name;
  data.inputs = windows.slice(0, 0, count * context).reshape({count, context}).clone();
  data.targets = windows.slice(0, 1, count * context + 1).reshape({count, context}).clone();
  data.num_classes = vocabulary;
  return data;
}

}  // namespace

std::vector<std::string> read_text_documents(const std::vector<std::string>& paths, const std::string& jsonl_field) {
  std::vector<std::string> documents;
  for (const auto& path : paths)
    for (auto& document : documents_of(path, jsonl_field)) documents.push_back(std::move(document));
  return documents;
}

Dataset sliding_windows(const torch::Tensor& tokens, int64_t context, int64_t stride,
                        const std::string& name, int64_t vocabulary) {
  if (stride < 1 || stride > context)
    throw Error(fmt::format("the evaluation stride must be between 1 and the context ({}), got {}", context,
                            stride));
  const int64_t length = tokens.numel();
  if (length < 2) throw Error(fmt::format("'{}' has fewer than 2 tokens", name));
  // Window w covers [start, start + span) with start = w·stride; it scores the
  // positions an earlier window did not: all of the first window, then the
  // last `stride` (fewer in the final, shorter window).
  std::vector<torch::Tensor> inputs, targets;
  int64_t scored_until = 0;  // tokens[1 .. scored_until] have been predicted
  for (int64_t start = 0; scored_until < length - 1; start += stride) {
    const int64_t span = std::min(context, length - 1 - start);
    auto input = torch::zeros({context}, torch::kLong);
    auto target = torch::full({context}, int64_t{-100}, torch::kLong);
    input.slice(0, 0, span).copy_(tokens.slice(0, start, start + span));
    auto next = tokens.slice(0, start + 1, start + span + 1);
    const int64_t first_new = std::max<int64_t>(0, scored_until - start);
    target.slice(0, first_new, span).copy_(next.slice(0, first_new, span));
    scored_until = start + span;
    inputs.push_back(input);
    targets.push_back(target);
  }
  Dataset data;
  data.name = name;
  data.inputs = torch::stack(inputs);
  data.targets = torch::stack(targets);
  data.num_classes = vocabulary;
  return data;
}

TokenText load_token_text(const TokenTextSpec& spec, const Tokenizer& tokenizer) {
  if (spec.paths.empty()) throw Error("`data.path` names no text file");
  if (!(spec.test_fraction > 0 && spec.test_fraction < 1))
    throw Error(fmt::format("the test fraction must be in (0, 1), got {}", spec.test_fraction));
  std::vector<int64_t> stream;
  TokenText text;
  const auto eos = tokenizer.eos_id();
  for (const auto& document : read_text_documents(spec.paths, spec.jsonl_field)) {
    if (text.documents++ > 0 && eos) stream.push_back(*eos);
    const auto ids = tokenizer.encode(document);
    stream.insert(stream.end(), ids.begin(), ids.end());
  }
  text.tokens = int64_t(stream.size());
  const auto tokens = torch::from_blob(stream.data(), {text.tokens}, torch::kLong).clone();
  const auto split = int64_t(double(text.tokens) * (1.0 - spec.test_fraction));
  const std::string files = spec.paths.size() == 1 ? spec.paths[0] : fmt::format("{} files", spec.paths.size());
  if (split < spec.context + 1 || text.tokens - split < 2)
    throw Error(fmt::format("{} has {} tokens: too few for one training window of {} tokens and a held-out "
                            "part ({:.0f}%); use more text or a shorter `data.context`",
                            files, text.tokens, spec.context, 100 * spec.test_fraction));
  const std::string name = fs::path(spec.paths[0]).stem().string();
  const int64_t vocabulary = tokenizer.vocab_size();
  text.train = std::make_shared<Dataset>(
      training_windows(tokens.slice(0, 0, split), spec.context, name + " train", vocabulary));
  text.test = std::make_shared<Dataset>(sliding_windows(tokens.slice(0, split), spec.context,
                                                        spec.eval_stride > 0 ? spec.eval_stride : spec.context,
                                                        name + " test", vocabulary));
  return text;
}

}  // namespace mcompress
