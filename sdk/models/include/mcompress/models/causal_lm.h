#pragma once
// A Hugging Face decoder-only transformer as a TorchScript module, so every
// pass, probe, gate, isolation and sweep treats it as a model like any other.
//
// The module hierarchy mirrors the checkpoint: its parameter
// "model.layers.3.self_attn.q_proj.weight" is the checkpoint tensor of that
// name (Mixtral: "model.layers.3.block_sparse_moe.experts.5.w1.weight"), and
// "lm_head.weight" is absent when embeddings are tied. Shapes are read from
// the weights at run time (heads = q_proj rows / head_dim, ...), so a pass that
// removes heads, neurons or layers' rows only has to replace tensors.
//
//   forward(input_ids: int64 [N, T]) -> logits [N, T, vocab] (float32)
//
// The module also carries the config.json text it came from (attribute
// "hf_config"), which later stages and the checkpoint writer read.
#include <torch/script.h>

#include <map>
#include <string>

#include "mcompress/models/transformer_config.h"
#include "mcompress/sdk/export.h"

namespace mcompress {

// Builds the module from `weights` (HF names; any floating dtype) holding them
// in `compute_dtype` (kFloat, kBFloat16 or kHalf; tensors already of that
// dtype are used as they are, not copied; LibTorch 1.13 has no float16
// matmul on the CPU, so kHalf is for accelerators). `config_json` is the
// config.json text kept on the module. The module also holds the RoPE
// inverse frequencies (float32, llama3 scaling applied) as the buffer
// "model.rotary_emb.inv_freq"; it is not a parameter. Throws mcompress::Error
// naming the first tensor that is missing, unexpected, or of the wrong shape
// for `config`.
MCOMPRESS_SDK_API torch::jit::Module build_causal_lm(const TransformerConfig& config,
                                                     const std::string& config_json,
                                                     const std::map<std::string, torch::Tensor>& weights,
                                                     c10::ScalarType compute_dtype);

// Whether `model` was built by build_causal_lm (has the "hf_config" attribute).
MCOMPRESS_SDK_API bool is_causal_lm(const torch::jit::Module& model);

// The config of `model` as its tensors are now: config.json's fields with the
// shape fields (hidden, intermediate, heads, KV heads, layers, vocabulary,
// experts) recomputed from the parameters. Throws mcompress::Error when
// `model` is not a causal LM.
MCOMPRESS_SDK_API TransformerConfig causal_lm_config(const torch::jit::Module& model);
// The config.json text `model` came from (unchanged).
MCOMPRESS_SDK_API std::string causal_lm_config_json(const torch::jit::Module& model);

// Every parameter of `model` under its HF name, in module order.
MCOMPRESS_SDK_API std::map<std::string, torch::Tensor> causal_lm_weights(const torch::jit::Module& model);

}  // namespace mcompress
