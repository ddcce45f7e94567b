#!/usr/bin/python3
"""Plain PyTorch eager decoding of a Hugging Face Llama checkpoint with a KV
cache, the baseline for mcompress_llm_decode_bench: the same checkpoint, the
same prompt length and token counts, the same threads. The checkpoint is read
by the small safetensors reader below (memory-mapped, no copy); the forward is
the usual eager loop (HF's LlamaForCausalLM computation, the cache grown by
torch.cat). Prints one "JSON: {...}" line.

  llm_decode.py CHECKPOINT_DIR [--threads 2] [--prompt 64] [--new 32] [--reps 5]
"""
import argparse
import ctypes
import json
import math
import mmap
import os
import resource
import statistics
import struct
import time

import torch
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def read_safetensors(path):
    """name -> tensor viewing the mapped file (private mapping: pages load on first touch)."""
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    (header_size,) = struct.unpack("<Q", mapped[:8])
    header = json.loads(mapped[8:8 + header_size])
    base = 8 + header_size
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = DTYPES[info["dtype"]]
        count = (end - begin) // torch.tensor([], dtype=dtype).element_size()
        flat = torch.frombuffer(mapped, dtype=dtype, count=count, offset=base + begin) if count else torch.empty(0, dtype=dtype)
        tensors[name] = flat.view(info["shape"])
    return tensors


def read_checkpoint(directory):
    tensors = {}
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            for shard in sorted(set(json.load(f)["weight_map"].values())):
                tensors.update(read_safetensors(os.path.join(directory, shard)))
    else:
        tensors.update(read_safetensors(os.path.join(directory, "model.safetensors")))
    with open(os.path.join(directory, "config.json")) as f:
        return json.load(f), tensors


def inverse_frequencies(c, head_dim):
    inv_freq = 1.0 / (c.get("rope_theta", 10000.0) ** (torch.arange(0, head_dim, 2).float() / head_dim))
    s = c.get("rope_scaling")
    if not s or s.get("rope_type", s.get("type")) != "llama3":
        return inv_freq
    old = s["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / s["low_freq_factor"], old / s["high_freq_factor"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / s["factor"], inv_freq)
    smooth = (old / wavelen - s["low_freq_factor"]) / (s["high_freq_factor"] - s["low_freq_factor"])
    smoothed = (1 - smooth) * scaled / s["factor"] + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


class EagerLlama:
    def __init__(self, config, w):
        self.c, self.w = config, w
        self.hd = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
        self.layers = sum(1 for n in w if n.endswith(".input_layernorm.weight"))
        self.inv_freq = inverse_frequencies(config, self.hd)
        self.head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        self.eps = config.get("rms_norm_eps", 1e-6)

    def rms_norm(self, x, weight):
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * x32.to(x.dtype)

    @staticmethod
    def rotate_half(x):
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    def forward(self, ids, cache):
        """Logits of the last position; `cache` (a list of (k, v) per layer) grows by ids' length."""
        w, n, t = self.w, ids.shape[0], ids.shape[1]
        past = cache[0][0].shape[2] if cache else 0
        x = F.embedding(ids, w["model.embed_tokens.weight"])
        angles = torch.arange(past, past + t).float()[:, None] * self.inv_freq[None, :]
        emb = torch.cat((angles, angles), dim=-1)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        mask = None
        if t > 1:
            mask = torch.full((t, past + t), float("-inf")).triu(past + 1).to(x.dtype)
        new_cache = []
        for i in range(self.layers):
            p = f"model.layers.{i}."
            h = self.rms_norm(x, w[p + "input_layernorm.weight"])
            q = F.linear(h, w[p + "self_attn.q_proj.weight"], w.get(p + "self_attn.q_proj.bias"))
            k = F.linear(h, w[p + "self_attn.k_proj.weight"], w.get(p + "self_attn.k_proj.bias"))
            v = F.linear(h, w[p + "self_attn.v_proj.weight"], w.get(p + "self_attn.v_proj.bias"))
            q = q.view(n, t, -1, self.hd).transpose(1, 2)
            k = k.view(n, t, -1, self.hd).transpose(1, 2)
            v = v.view(n, t, -1, self.hd).transpose(1, 2)
            q = q * cos + self.rotate_half(q) * sin
            k = k * cos + self.rotate_half(k) * sin
            if cache:
                k = torch.cat((cache[i][0], k), dim=2)
                v = torch.cat((cache[i][1], v), dim=2)
            new_cache.append((k, v))
            groups = q.shape[1] // k.shape[1]
            keys = k.repeat_interleave(groups, dim=1)
            values = v.repeat_interleave(groups, dim=1)
            scores = torch.matmul(q, keys.transpose(2, 3)) / math.sqrt(self.hd)
            if mask is not None:
                scores = scores + mask
            probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
            attended = torch.matmul(probs, values).transpose(1, 2).reshape(n, t, -1)
            x = x + F.linear(attended, w[p + "self_attn.o_proj.weight"])
            h = self.rms_norm(x, w[p + "post_attention_layernorm.weight"])
            mlp = F.silu(F.linear(h, w[p + "mlp.gate_proj.weight"])) * F.linear(h, w[p + "mlp.up_proj.weight"])
            x = x + F.linear(mlp, w[p + "mlp.down_proj.weight"])
        cache[:] = new_cache
        last = self.rms_norm(x[:, -1], w["model.norm.weight"])
        return F.linear(last, self.head).float()

    def generate(self, prompt, new_tokens):
        """Greedy; returns (prefill seconds, decode seconds) as mcompress's generate() times them."""
        cache = []
        start = time.perf_counter()
        token = self.forward(prompt, cache).argmax(-1, keepdim=True)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(new_tokens - 1):
            token = self.forward(token, cache).argmax(-1, keepdim=True)
        return prefill, time.perf_counter() - start


def run_openblas_on_the_calling_thread():
    """Debian's OpenBLAS keeps worker threads spinning next to PyTorch's; True when pinned."""
    try:
        ctypes.CDLL(None).openblas_set_num_threads(1)
        return True
    except AttributeError:
        for name in ("libblas.so.3", "libopenblas.so.0"):
            try:
                ctypes.CDLL(name).openblas_set_num_threads(1)
                return True
            except (OSError, AttributeError):
                pass
    return False


def status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--pin-blas", action="store_true", help="run OpenBLAS on the calling thread")
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    pinned = run_openblas_on_the_calling_thread() if a.pin_blas else False
    torch.set_grad_enabled(False)

    start = time.perf_counter()
    config, weights = read_checkpoint(a.checkpoint)
    model = EagerLlama(config, weights)
    load = time.perf_counter() - start
    rss_after_load = status_mb("VmRSS")
    weight_bytes = sum(t.numel() * t.element_size() for t in weights.values())

    generator = torch.Generator().manual_seed(42)
    prompt = torch.randint(config["vocab_size"], (1, a.prompt), generator=generator)
    start = time.perf_counter()
    model.generate(prompt, 2)
    first_run = time.perf_counter() - start
    prefill_rates, decode_rates = [], []
    for _ in range(a.reps):
        prefill, decode = model.generate(prompt, a.new)
        prefill_rates.append(a.prompt / prefill)
        decode_rates.append((a.new - 1) / decode)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    dtype = str(weights["model.embed_tokens.weight"].dtype).replace("torch.", "")
    print(f"PyTorch {torch.__version__} eager{' (OpenBLAS pinned)' if pinned else ''}: {a.checkpoint} ({dtype}), {a.threads} threads, decode tok/s median "
          f"{statistics.median(decode_rates):.2f} [{min(decode_rates):.2f}, {max(decode_rates):.2f}], prefill tok/s "
          f"median {statistics.median(prefill_rates):.1f}, load {load:.2f} s, peak RSS {peak:.0f} MB")
    print("JSON: " + json.dumps({
        "runner": "pytorch-eager" + ("-pinned-blas" if pinned else ""), "torch": torch.__version__, "checkpoint": a.checkpoint, "dtype": dtype,
        "threads": a.threads, "prompt": a.prompt, "new_tokens": a.new, "weight_bytes": weight_bytes,
        "decode_tps": decode_rates, "prefill_tps": prefill_rates, "load_s": load, "first_run_s": first_run,
        "rss_after_load_mb": rss_after_load, "peak_rss_mb": peak}))


if __name__ == "__main__":
    main()
