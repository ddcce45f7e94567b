#pragma once
// Exporting a Hugging Face checkpoint directory as one GGUF file that
// llama.cpp (and ollama, LM Studio, node-llama-cpp, ...) loads and runs, the
// way llama.cpp's convert_hf_to_gguf.py (+ llama-quantize for Q4_0) writes it.
//
// Families: model_type llama and mistral (GGUF architecture "llama": q/k
// rows permuted from the checkpoint's rotate-half RoPE layout to llama.cpp's
// interleaved pairs; llama3 rope scaling as the `rope_freqs.weight` factors),
// qwen2 (q/k/v biases) and qwen3 (q/k norms), which use llama.cpp's NEOX
// RoPE and keep their rows. Mixtral and anything else are refused.
//
// Tensor types by file type:
//   f16   every matrix F16
//   q8_0  every matrix Q8_0
//   q4_0  every matrix Q4_0, except output.weight (token_embd.weight when
//         embeddings are tied, as it is then also the output), which is
//         Q8_0: llama-quantize keeps the output at a higher precision (Q6_K,
//         a type mcompress does not write; Q8_0 is its fallback)
// In every file 1-D tensors (norms, biases, rope factors) are F32, as
// llama.cpp's kernels expect, and a matrix whose rows are not a multiple of
// 32 values is F16 (the converter's fallback).
//
// The tokenizer comes from the checkpoint's tokenizer.json (+ tokenizer_config.json):
//   byte-level BPE → tokenizer.ggml.model "gpt2", its pre-tokenizer named
//     from the split regex: Llama 3's → "llama-bpe", Qwen2's → "qwen2",
//     GPT-2's (ByteLevel with use_regex) → "gpt-2"; others are refused;
//   SentencePiece-style BPE with byte fallback (Llama 2, Mistral) → "llama",
//     with scores from the merge ranks and <0xNN> tokens typed as bytes.
// Token types: normal 1, unknown 2 (the model's unk_token), control 3
// (special added tokens, and added tokens that look special such as
// <|...|>, as the converter types them and llama.cpp would anyway),
// user-defined 4 (other added tokens), unused 5 (ids config.json's vocab_size
// reserves beyond the tokenizer's, named [PADn] as the converter names them),
// byte 6 (<0xNN> of SentencePiece-style vocabularies). BOS/EOS ids come from
// tokenizer_config.json (else the post-processor's template), and
// add_bos_token/add_eos_token say what the tokenizer's own encoding adds.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "mcompress/sdk/export.h"

namespace mcompress {

enum class GgufFileType { F16, Q8_0, Q4_0 };

// "f16", "q8_0", "q4_0" (case-insensitive); throws mcompress::Error naming them otherwise.
MCOMPRESS_SDK_API GgufFileType parse_gguf_file_type(const std::string& name);
MCOMPRESS_SDK_API const char* gguf_file_type_name(GgufFileType type);

struct GgufExportOptions {
  GgufFileType type = GgufFileType::F16;
  std::string name;  // general.name; empty: the checkpoint directory's name
};

struct GgufExportSummary {
  std::string architecture;     // "llama", "qwen2", "qwen3"
  std::string tokenizer_model;  // "gpt2" or "llama"
  std::string tokenizer_pre;    // "llama-bpe", "qwen2", "gpt-2"; empty for "llama"
  int64_t tensors = 0;
  int64_t metadata_entries = 0;
  int64_t bytes = 0;  // of the written file
  std::map<std::string, int64_t> tensors_by_type;  // "F32" → count, ...
};

// Reads the checkpoint in `checkpoint_dir` and writes `out_file` (through a
// temporary file beside it, renamed when complete: a failure never leaves a
// partial file and never replaces an existing one). Throws mcompress::Error
// naming the file or tensor and what to do: an unsupported model_type (the
// message lists the supported ones), no tokenizer.json, a tokenizer llama.cpp
// cannot run, a tensor missing or of the wrong shape, an unwritable output.
MCOMPRESS_SDK_API GgufExportSummary export_gguf(const std::filesystem::path& checkpoint_dir,
                                                const std::filesystem::path& out_file,
                                                const GgufExportOptions& options = {});

}  // namespace mcompress
