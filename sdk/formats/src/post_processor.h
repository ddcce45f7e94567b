#pragma once
// tokenizer.json's "post_processor": the special tokens encode() adds
// around a text when asked to (TemplateProcessing's BOS for Llama);
// ByteLevel's only work is on offsets, which this tokenizer does not keep.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace mcompress {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual std::vector<int64_t> process(std::vector<int64_t> ids, bool add_special_tokens) const = 0;
  // Whether the single-text template starts with `id` (when adding special tokens).
  virtual bool starts_with(int64_t id) const = 0;
};

using TokenIdLookup = std::function<std::optional<int64_t>(std::string_view)>;

// nullptr for a JSON null. Throws mcompress::Error naming `source` for an
// unsupported type or a template naming an unknown token.
std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& config, const TokenIdLookup& token_id,
                                                   const std::string& source);

}  // namespace mcompress
