#pragma once
// Text for Hugging Face language models (`data: {dataset: text}`): UTF-8 text
// files or JSON Lines, tokenized with the model's tokenizer and cut into
// next-token windows (data.h), the end held out for the probes.
#include <cstdint>
#include <string>
#include <vector>

#include "mcompress/formats/tokenizer.h"
#include "mcompress/sdk/data.h"
#include "mcompress/sdk/export.h"

namespace mcompress {

struct TokenTextSpec {
  // Plain UTF-8 files (each one document) or JSON Lines (`.jsonl`: one
  // document per line, its text in `jsonl_field`).
  std::vector<std::string> paths;
  std::string jsonl_field = "text";
  int64_t context = 256;       // tokens per window
  int64_t eval_stride = 0;     // held-out windows start this many tokens apart; 0: context
  double test_fraction = 0.1;  // the end of the token stream held out
};

struct TokenText {
  DatasetPtr train;  // non-overlapping windows of the first (1 − test_fraction) of the tokens
  // Sliding windows of the rest: each window after the first scores only its
  // last eval_stride positions (the others have target -100), so every
  // held-out token is scored once, with up to context − 1 tokens before it.
  DatasetPtr test;
  int64_t tokens = 0;     // in the whole stream
  int64_t documents = 0;
};

// Documents are joined with the tokenizer's EOS token between them when it has
// one. Throws mcompress::Error naming the file (and line, for JSON Lines) for a
// missing file, invalid UTF-8, a JSON line without the text field, or too
// little text for one window in each split.
MCOMPRESS_SDK_API TokenText load_token_text(const TokenTextSpec& spec, const Tokenizer& tokenizer);

// The documents of `paths` as load_token_text reads them (a plain file is one
// document, a JSON Lines file one per line's `jsonl_field`); the same errors.
MCOMPRESS_SDK_API std::vector<std::string> read_text_documents(const std::vector<std::string>& paths,
                                                               const std::string& jsonl_field);

// Held-out sliding windows of `tokens` (1-D int64) as load_token_text cuts them.
MCOMPRESS_SDK_API Dataset sliding_windows(const torch::Tensor& tokens, int64_t context, int64_t stride,
                                          const std::string& name, int64_t vocabulary);

}  // namespace mcompress
