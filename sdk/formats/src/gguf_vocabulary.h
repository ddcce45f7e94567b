#pragma once
// The tokenizer.ggml.* metadata of a GGUF file, from a checkpoint's
// tokenizer.json and tokenizer_config.json (gguf.h says what is written).
#include <cstdint>
#include <filesystem>
#include <string>

#include "mcompress/formats/gguf_file.h"

namespace mcompress {

struct GgufVocabulary {
  std::string model;  // tokenizer.ggml.model: "gpt2" or "llama"
  std::string pre;    // tokenizer.ggml.pre; empty for "llama"
};

// Sets the tokenizer keys of `writer` for a model with `vocab_size`
// embedding rows. Throws mcompress::Error naming the file when there is no
// tokenizer.json, when it holds more tokens than the model has rows, or when
// llama.cpp has no tokenizer that runs it (the message says which kinds it has).
GgufVocabulary add_gguf_vocabulary(GgufWriter& writer, const std::filesystem::path& directory, int64_t vocab_size);

}  // namespace mcompress
