#!/usr/bin/python3
"""Writes a Hugging Face Llama checkpoint with random weights (config.json +
model.safetensors + tokenizer.json) for the decode benchmarks: the
architecture is real, the weights and the vocabulary are not.

  make_random_checkpoint.py OUT_DIR --preset llama-1b|small --dtype float32|bfloat16

llama-1b is Llama-3.2-1B's config (tied embeddings, llama3 rope scaling);
small is a ~20M-parameter Llama of the same layout.
"""
import argparse
import json
import os
import struct

import torch

PRESETS = {
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True,
                     rope_theta=500000.0, max_position_embeddings=131072,
                     rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    "small": dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6,
                  num_key_value_heads=2, head_dim=64, vocab_size=32000, tie_word_embeddings=True,
                  rope_theta=10000.0, max_position_embeddings=2048),
}

SAFETENSORS_DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16"}


def tensor_shapes(c):
    """The HF names and shapes of a Llama of config c, in file order."""
    hidden, inter, hd = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    q_rows, kv_rows = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    shapes = [("model.embed_tokens.weight", (c["vocab_size"], hidden))]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes += [(p + "input_layernorm.weight", (hidden,)),
                   (p + "self_attn.q_proj.weight", (q_rows, hidden)),
                   (p + "self_attn.k_proj.weight", (kv_rows, hidden)),
                   (p + "self_attn.v_proj.weight", (kv_rows, hidden)),
                   (p + "self_attn.o_proj.weight", (hidden, q_rows)),
                   (p + "post_attention_layernorm.weight", (hidden,)),
                   (p + "mlp.gate_proj.weight", (inter, hidden)),
                   (p + "mlp.up_proj.weight", (inter, hidden)),
                   (p + "mlp.down_proj.weight", (hidden, inter))]
    shapes.append(("model.norm.weight", (hidden,)))
    if not c["tie_word_embeddings"]:
        shapes.append(("lm_head.weight", (c["vocab_size"], hidden)))
    return shapes


def random_tensor(shape, dtype, generator):
    if len(shape) == 1:  # norm weights near 1
        return (1.0 + 0.05 * torch.rand(shape, generator=generator)).to(dtype)
    bound = (3.0 / shape[1]) ** 0.5  # unit-variance outputs for unit-variance inputs
    return torch.empty(shape).uniform_(-bound, bound, generator=generator).to(dtype)


def write_safetensors(path, shapes, dtype, seed):
    """The safetensors layout by hand: 8-byte header length, JSON header, data."""
    element = torch.tensor([], dtype=dtype).element_size()
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in shapes:
        size = element
        for d in shape:
            size *= d
        header[name] = {"dtype": SAFETENSORS_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    generator = torch.Generator().manual_seed(seed)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for name, shape in shapes:
            tensor = random_tensor(shape, dtype, generator).contiguous()
            raw = tensor.view(torch.int16) if dtype == torch.bfloat16 else tensor
            f.write(raw.numpy().tobytes())
    return offset


def bytes_to_unicode():
    """GPT-2's byte-level alphabet: one printable character per byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def write_tokenizer(path, vocab_size):
    """A byte-level BPE tokenizer.json (GPT-2's pre-tokenizer) of exactly
    vocab_size tokens: the 256 bytes, then every pair of them, then byte
    triples, each with the merge that makes it, so tokenizers and llama.cpp
    load it like a real one (GGUF export embeds it)."""
    alphabet = bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(alphabet)}
    merges = []
    pairs = [(a, b) for a in alphabet for b in alphabet]
    triples = ((a + b, c) for a, b in pairs for c in alphabet)
    for left, right in pairs + list(next(triples) for _ in range(max(0, vocab_size - 256 - len(pairs)))):
        if len(vocab) == vocab_size:
            break
        vocab[left + right] = len(vocab)
        merges.append(f"{left} {right}")
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    with open(path, "w") as f:
        json.dump(tokenizer, f, ensure_ascii=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], required=True)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    config = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu", rms_norm_eps=1e-5,
                  attention_bias=False, bos_token_id=1, eos_token_id=2, torch_dtype=a.dtype, **PRESETS[a.preset])
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    dtype = torch.float32 if a.dtype == "float32" else torch.bfloat16
    size = write_safetensors(os.path.join(a.out, "model.safetensors"), tensor_shapes(config), dtype, a.seed)
    write_tokenizer(os.path.join(a.out, "tokenizer.json"), config["vocab_size"])
    print(f"{a.out}: {a.preset} {a.dtype}, {size / 1e6:.0f} MB of weights")


if __name__ == "__main__":
    main()
