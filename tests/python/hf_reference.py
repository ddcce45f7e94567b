"""Independent reference for Hugging Face decoder-only transformers.

Used by tests/test_causal_lm.cpp. Written from the published architectures
(Llama 1/2/3.x with Meta's llama3 RoPE scaling, Mistral, Qwen2/2.5, Qwen3,
Mixtral) in plain PyTorch, sharing no code with the C++ side; safetensors are
read and written by hand (8-byte little-endian header length, JSON header,
raw bytes).

usage:
  hf_reference.py make OUT_DIR
      small seeded random checkpoints, one directory per case
  hf_reference.py logits IDS DTYPE CHECKPOINT_DIR OUT_FILE [CHECKPOINT_DIR OUT_FILE ...]
      IDS: token rows "1,2,3;4,5,6"; DTYPE: float32, or checkpoint (compute in
      the stored dtype). Writes float32 logits [N, T, vocab] as a
      safetensors file with one tensor "logits".
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

# ---------------------------------------------------------------- safetensors

_NUMPY_OF = {"F32": np.float32, "F16": np.float16, "BF16": np.int16, "I64": np.int64}
_NAME_OF = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def write_safetensors(path, tensors):
    """tensors: list of (name, tensor) written in that order."""
    header = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name, tensor in tensors:
        tensor = tensor.detach().contiguous()
        if tensor.dtype == torch.bfloat16:
            data = tensor.view(torch.int16).numpy().tobytes()
        else:
            data = tensor.numpy().tobytes()
        header[name] = {"dtype": _NAME_OF[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)
    return offset


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    body = raw[8 + length:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        array = np.frombuffer(body[begin:end], dtype=_NUMPY_OF[info["dtype"]]).copy()
        tensor = torch.from_numpy(array)
        if info["dtype"] == "BF16":
            tensor = tensor.view(torch.bfloat16)
        tensors[name] = tensor.reshape(info["shape"])
    return tensors


def read_checkpoint(directory):
    with open(os.path.join(directory, "config.json")) as f:
        config = json.load(f)
    index = os.path.join(directory, "model.safetensors.index.json")
    weights = {}
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        for shard in sorted(set(weight_map.values())):
            weights.update(read_safetensors(os.path.join(directory, shard)))
        assert set(weights) == set(weight_map), "index and shards disagree"
    else:
        weights = read_safetensors(os.path.join(directory, "model.safetensors"))
    return config, weights

# ---------------------------------------------------------------- the forward


def rms_norm(x, weight, eps):
    # Normalised in float32, cast back, then scaled (LlamaRMSNorm).
    x32 = x.to(torch.float32)
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


def inverse_frequencies(config, head_dim):
    theta = config.get("rope_theta", 10000.0)
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    scaling = config.get("rope_scaling")
    if scaling is None or (scaling.get("rope_type") or scaling.get("type")) == "default":
        return inv
    assert (scaling.get("rope_type") or scaling.get("type")) == "llama3"
    # Meta's apply_scaling (Llama 3.1), element by element.
    factor = scaling["factor"]
    low = scaling["low_freq_factor"]
    high = scaling["high_freq_factor"]
    old_context = scaling["original_max_position_embeddings"]
    low_freq_wavelen = old_context / low
    high_freq_wavelen = old_context / high
    scaled = []
    for freq in inv.tolist():
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            scaled.append(freq)
        elif wavelen > low_freq_wavelen:
            scaled.append(freq / factor)
        else:
            smooth = (old_context / wavelen - low) / (high - low)
            scaled.append((1 - smooth) * freq / factor + smooth * freq)
    return torch.tensor(scaled, dtype=torch.float32)


def rotate(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def linear(x, weights, name):
    bias = weights.get(name + ".bias")
    y = x @ weights[name + ".weight"].t()
    return y if bias is None else y + bias


def swiglu(x, gate, up, down):
    return (torch.nn.functional.silu(x @ gate.t()) * (x @ up.t())) @ down.t()


def attention(x, w, prefix, config, head_dim, cos, sin):
    n, t, _ = x.shape
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    q = linear(x, w, prefix + "q_proj").reshape(n, t, heads, head_dim)
    k = linear(x, w, prefix + "k_proj").reshape(n, t, kv_heads, head_dim)
    v = linear(x, w, prefix + "v_proj").reshape(n, t, kv_heads, head_dim)
    if config["model_type"] == "qwen3":
        eps = config.get("rms_norm_eps", 1e-6)
        q = rms_norm(q, w[prefix + "q_norm.weight"], eps)
        k = rms_norm(k, w[prefix + "k_norm.weight"], eps)
    q = rotate(q, cos[:, None, :], sin[:, None, :])
    k = rotate(k, cos[:, None, :], sin[:, None, :])
    group = heads // kv_heads
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    outputs = []
    for h in range(heads):
        kh = k[:, :, h // group]  # query head h reads KV head h // group
        vh = v[:, :, h // group]
        scores = torch.einsum("nqd,nkd->nqk", q[:, :, h], kh) * head_dim ** -0.5
        scores = scores.masked_fill(~causal, float("-inf"))
        probs = torch.softmax(scores.float(), dim=-1).to(x.dtype)
        outputs.append(torch.einsum("nqk,nkd->nqd", probs, vh))
    out = torch.cat(outputs, dim=-1)
    return out @ w[prefix + "o_proj.weight"].t()


def mixture_of_experts(x, w, prefix, config):
    # Per token: softmax over all experts, keep the top k, renormalise.
    experts = config["num_local_experts"]
    top_k = config["num_experts_per_tok"]
    flat = x.reshape(-1, x.shape[-1])
    out = torch.zeros_like(flat)
    router = flat @ w[prefix + "gate.weight"].t()
    for token in range(flat.shape[0]):
        probs = torch.softmax(router[token].float(), dim=-1)
        chosen = sorted(range(experts), key=lambda e: -probs[e].item())[:top_k]
        total = sum(probs[e].item() for e in chosen)
        for e in chosen:
            expert = f"{prefix}experts.{e}."
            y = swiglu(flat[token:token + 1], w[expert + "w1.weight"], w[expert + "w3.weight"],
                       w[expert + "w2.weight"])
            out[token] += (y[0] * (probs[e].item() / total)).to(x.dtype)
    return out.reshape(x.shape)


def forward(config, weights, ids, dtype):
    w = {name: tensor.to(dtype) for name, tensor in weights.items()}
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    eps = config.get("rms_norm_eps", 1e-6)
    t = ids.shape[1]
    angles = torch.arange(t, dtype=torch.float32)[:, None] * inverse_frequencies(config, head_dim)[None, :]
    angles = torch.cat((angles, angles), dim=-1)
    cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)

    h = w["model.embed_tokens.weight"][ids]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = h + attention(rms_norm(h, w[p + "input_layernorm.weight"], eps), w, p + "self_attn.", config,
                          head_dim, cos, sin)
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        if config["model_type"] == "mixtral":
            h = h + mixture_of_experts(x, w, p + "block_sparse_moe.", config)
        else:
            h = h + swiglu(x, w[p + "mlp.gate_proj.weight"], w[p + "mlp.up_proj.weight"],
                           w[p + "mlp.down_proj.weight"])
    h = rms_norm(h, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if config.get("tie_word_embeddings", False) else w["lm_head.weight"]
    return (h @ head.t()).float()

# ---------------------------------------------------------------- checkpoints

BASE = {"vocab_size": 97, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
        "num_attention_heads": 4, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": 256, "bos_token_id": 1, "eos_token_id": 2}

CASES = {
    "llama3": dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=64,
                   num_key_value_heads=4, tie_word_embeddings=False, attention_bias=False,
                   rope_theta=500000.0, eos_token_id=[2, 3],
                   rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
    "llama_tied_bf16": dict(model_type="llama", architectures=["LlamaForCausalLM"], tie_word_embeddings=True,
                            torch_dtype="bfloat16", rope_scaling=None),
    "mistral": dict(model_type="mistral", architectures=["MistralForCausalLM"], num_key_value_heads=2,
                    sliding_window=4096, head_dim=None),
    "qwen2": dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], num_key_value_heads=2,
                  tie_word_embeddings=True, rope_theta=1000000.0, rms_norm_eps=1e-6,
                  use_sliding_window=False, sliding_window=32768, max_window_layers=21),
    "qwen3": dict(model_type="qwen3", architectures=["Qwen3ForCausalLM"], num_key_value_heads=2, head_dim=16,
                  tie_word_embeddings=False, attention_bias=False, rope_theta=1000000.0,
                  layer_types=["full_attention", "full_attention"]),
    "mixtral": dict(model_type="mixtral", architectures=["MixtralForCausalLM"], num_key_value_heads=2,
                    intermediate_size=40, num_local_experts=4, num_experts_per_tok=2, rope_theta=1000000.0),
}
SHARDED = "mistral"


def random_weights(config, generator):
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    inner = config["intermediate_size"]

    def matrix(rows, cols):
        return torch.randn(rows, cols, generator=generator) / math.sqrt(cols)

    def norm(size):
        return 1.0 + 0.2 * torch.randn(size, generator=generator)

    def bias(size):
        return 0.2 * torch.randn(size, generator=generator)

    tensors = [("model.embed_tokens.weight", torch.randn(config["vocab_size"], hidden, generator=generator))]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        tensors.append((p + "input_layernorm.weight", norm(hidden)))
        for name, rows in (("q_proj", heads * head_dim), ("k_proj", kv_heads * head_dim),
                           ("v_proj", kv_heads * head_dim)):
            tensors.append((p + f"self_attn.{name}.weight", matrix(rows, hidden)))
            if config["model_type"] == "qwen2":
                tensors.append((p + f"self_attn.{name}.bias", bias(rows)))
        tensors.append((p + "self_attn.o_proj.weight", matrix(hidden, heads * head_dim)))
        if config["model_type"] == "qwen3":
            tensors.append((p + "self_attn.q_norm.weight", norm(head_dim)))
            tensors.append((p + "self_attn.k_norm.weight", norm(head_dim)))
        tensors.append((p + "post_attention_layernorm.weight", norm(hidden)))
        if config["model_type"] == "mixtral":
            tensors.append((p + "block_sparse_moe.gate.weight", matrix(config["num_local_experts"], hidden)))
            for e in range(config["num_local_experts"]):
                q = f"{p}block_sparse_moe.experts.{e}."
                tensors += [(q + "w1.weight", matrix(inner, hidden)), (q + "w2.weight", matrix(hidden, inner)),
                            (q + "w3.weight", matrix(inner, hidden))]
        else:
            tensors += [(p + "mlp.gate_proj.weight", matrix(inner, hidden)),
                        (p + "mlp.up_proj.weight", matrix(inner, hidden)),
                        (p + "mlp.down_proj.weight", matrix(hidden, inner))]
    tensors.append(("model.norm.weight", norm(hidden)))
    if not config.get("tie_word_embeddings", False):
        tensors.append(("lm_head.weight", matrix(config["vocab_size"], hidden)))
    return tensors


def write_checkpoint(directory, config, tensors, shards):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    # Companion files a written checkpoint must carry over unchanged.
    with open(os.path.join(directory, "tokenizer.json"), "w") as f:
        json.dump({"version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []}}, f)
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"model_max_length": 256, "eos_token": "</s>"}, f)
    with open(os.path.join(directory, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2}, f)
    if shards == 1:
        write_safetensors(os.path.join(directory, "model.safetensors"), tensors)
        return
    per_shard = math.ceil(len(tensors) / shards)
    weight_map = {}
    total = 0
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = tensors[s * per_shard:(s + 1) * per_shard]
        total += write_safetensors(os.path.join(directory, name), part)
        weight_map.update({tensor_name: name for tensor_name, _ in part})
    with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def make(out_dir):
    for seed, (case, overrides) in enumerate(sorted(CASES.items())):
        config = dict(BASE)
        config.update(overrides)
        config = {key: value for key, value in config.items() if value is not None or key == "rope_scaling"}
        generator = torch.Generator().manual_seed(1000 + seed)
        tensors = random_weights(config, generator)
        if config.get("torch_dtype") == "bfloat16":
            tensors = [(name, tensor.to(torch.bfloat16)) for name, tensor in tensors]
        else:
            config["torch_dtype"] = "float32"
        write_checkpoint(os.path.join(out_dir, case), config, tensors, 3 if case == SHARDED else 1)


def logits(ids_text, dtype_name, pairs):
    ids = torch.tensor([[int(token) for token in row.split(",")] for row in ids_text.split(";")])
    for directory, out_file in zip(pairs[0::2], pairs[1::2]):
        config, weights = read_checkpoint(directory)
        dtype = torch.float32
        if dtype_name == "checkpoint":
            dtype = weights["model.embed_tokens.weight"].dtype
        with torch.no_grad():
            result = forward(config, weights, ids, dtype)
        write_safetensors(out_file, [("logits", result)])


def main(argv):
    if len(argv) == 2 and argv[0] == "make":
        make(argv[1])
    elif len(argv) >= 5 and argv[0] == "logits" and len(argv) % 2 == 1:
        logits(argv[1], argv[2], argv[3:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
