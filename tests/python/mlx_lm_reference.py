"""Independent check of an mlx-lm directory against the checkpoint it came from.

Used by tests/test_mlx_lm_checkpoint.cpp. Recomputes, from the source
checkpoint and the rules mlx-lm 0.32's converter follows (mlx_lm/utils.py
quantize_model, save_model, save_config; the models' sanitize), everything
the directory must hold (a source mlx-lm quantized already is dequantized
first), and compares it byte for byte: tensor names, dtypes,
shapes and bytes (the affine codes, scales and biases from the numpy MLX
reimplementation in mlx_affine_reference.py), shard files and their metadata,
the index, config.json and the copied tokenizer files. Shares no code with
the C++ side.

usage:
  mlx_lm_reference.py check SOURCE_DIR MLX_DIR BITS GROUP_SIZE [PATTERN=BITS,GROUP ...] [keep:PATTERN ...]
prints "OK" and exits 0, or prints every difference and exits 1.
"""
import fnmatch
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mlx_affine_reference as affine  # noqa: E402

_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "U32": np.uint32, "I64": np.int64}


def read_safetensors(path):
    """Returns (metadata, {name: (dtype, shape, raw bytes)})."""
    with open(path, "rb") as f:
        raw = f.read()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    body = raw[8 + length:]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        tensors[name] = (info["dtype"], list(info["shape"]), body[begin:end])
    return metadata, tensors


def read_weights(directory):
    index_path = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    weights = {}
    for name in files:
        weights.update(read_safetensors(os.path.join(directory, name))[1])
    return weights


def as_float32(dtype, shape, raw):
    array = np.frombuffer(raw, dtype=_DTYPES[dtype])
    if dtype == "BF16":
        array = affine.from_bfloat16_bits(array)
    return array.astype(np.float32).reshape(shape)


def stored(values, dtype):
    """float32 values -> (safetensors dtype, bytes) in `dtype`."""
    if dtype == "BF16":
        return "BF16", affine.to_bfloat16_bits(values).tobytes()
    if dtype == "F16":
        return "F16", np.asarray(values, dtype=np.float16).tobytes()
    return "F32", np.asarray(values, dtype=np.float32).tobytes()


def rounded(values, dtype):
    """What `values` become when stored in `dtype`, back as float32."""
    name, raw = stored(values, dtype)
    return as_float32(name, [len(raw) // np.dtype(_DTYPES[name]).itemsize], raw).reshape(np.shape(values))


def sanitized(config, weights):
    """mlx-lm's sanitize for the llama, qwen2, qwen3 and mixtral families."""
    weights = {k: v for k, v in weights.items() if "self_attn.rotary_emb.inv_freq" not in k}
    if config.get("tie_word_embeddings", False):
        weights.pop("lm_head.weight", None)
    experts = config.get("num_local_experts", 0)
    if config.get("model_type") == "mixtral" and "model.layers.0.block_sparse_moe.experts.0.w1.weight" in weights:
        for layer in range(config["num_hidden_layers"]):
            prefix = f"model.layers.{layer}.block_sparse_moe"
            for old, new in (("w1", "gate_proj"), ("w2", "down_proj"), ("w3", "up_proj")):
                parts = [weights.pop(f"{prefix}.experts.{e}.{old}.weight") for e in range(experts)]
                dtype = parts[0][0]
                values = np.stack([as_float32(*p) for p in parts])
                weights[f"{prefix}.switch_mlp.{new}.weight"] = (dtype, list(values.shape), stored(values, dtype)[1])
    return weights


def unpack_codes(words, columns, bits):
    """uint32 words [rows, columns*bits/32] -> codes [rows, columns]: one little-endian bit stream per row."""
    stream = np.unpackbits(words.astype("<u4").view(np.uint8), axis=-1, bitorder="little")
    fields = stream[:, : columns * bits].reshape(words.shape[0], columns, bits).astype(np.uint32)
    return (fields << np.arange(bits, dtype=np.uint32)).sum(axis=-1)


def dequantized(config, weights):
    """An mlx-lm source: quantized layers back to floating point (code * scale + bias, in float32,
    stored in the scales' dtype), and the config without its quantization."""
    quantization = config.pop("quantization")
    config.pop("quantization_config", None)
    for path in [name[: -len(".scales")] for name in weights if name.endswith(".scales")]:
        settings = quantization.get(path, quantization)
        bits, group_size = settings["bits"], settings["group_size"]
        s_dtype, s_shape, s_raw = weights.pop(path + ".scales")
        b_dtype, b_shape, b_raw = weights.pop(path + ".biases")
        _, w_shape, w_raw = weights[path + ".weight"]
        columns = s_shape[-1] * group_size
        words = np.frombuffer(w_raw, dtype="<u4").reshape(-1, w_shape[-1])
        codes = unpack_codes(words, columns, bits).astype(np.float32)
        scales = np.repeat(as_float32(s_dtype, s_shape, s_raw).reshape(-1, s_shape[-1]), group_size, axis=-1)
        biases = np.repeat(as_float32(b_dtype, b_shape, b_raw).reshape(-1, b_shape[-1]), group_size, axis=-1)
        values = (codes * scales + biases).astype(np.float32)
        shape = w_shape[:-1] + [columns]
        weights[path + ".weight"] = (s_dtype, shape, stored(values, s_dtype)[1])
    return config, weights


def expected_directory(config, weights, bits, group_size, layer_settings, keep):
    target = {"float16": "F16", "bfloat16": "BF16", "float32": "F32"}.get(config.get("torch_dtype"))
    tensors = {}
    quantization = {"group_size": group_size, "bits": bits, "mode": "affine"}
    parameters = 0
    for name, (dtype, shape, raw) in sanitized(config, weights).items():
        out_dtype = target if (target and dtype in ("F32", "F16", "BF16")) else dtype
        values = as_float32(dtype, shape, raw) if dtype in ("F32", "F16", "BF16") else None
        parameters += int(np.prod(shape))
        path = name.rsplit(".", 1)[0]
        layer_bits, layer_group = bits, group_size
        for pattern, (b, g) in layer_settings:
            if fnmatch.fnmatchcase(path, pattern):
                layer_bits, layer_group = b, g
        quantize = (name.endswith(".weight") and len(shape) >= 2 and shape[-1] % group_size == 0
                    and shape[-1] % layer_group == 0 and not any(fnmatch.fnmatchcase(path, p) for p in keep))
        if not quantize:
            if values is None:
                tensors[name] = (dtype, shape, raw)
            else:
                tensors[name] = (out_dtype, shape, stored(values, out_dtype)[1])
            continue
        values = rounded(values, out_dtype)  # cast first, as mlx-lm does
        packed, scales, biases = affine.quantize(values.reshape(-1, shape[-1]), layer_bits, layer_group)
        lead = shape[:-1]
        tensors[path + ".weight"] = ("U32", lead + [shape[-1] * layer_bits // 32], packed.tobytes())
        tensors[path + ".scales"] = (out_dtype, lead + [shape[-1] // layer_group], stored(scales, out_dtype)[1])
        tensors[path + ".biases"] = (out_dtype, lead + [shape[-1] // layer_group], stored(biases, out_dtype)[1])
        if (layer_bits, layer_group) != (bits, group_size):
            quantization[path] = {"group_size": layer_group, "bits": layer_bits}
    return tensors, quantization, parameters


def check(source, mlx_dir, bits, group_size, layer_settings, keep):
    problems = []
    with open(os.path.join(source, "config.json")) as f:
        config = json.load(f)
    weights = read_weights(source)
    if "quantization" in config:
        config, weights = dequantized(config, weights)
    expected, quantization, parameters = expected_directory(config, weights, bits, group_size,
                                                            layer_settings, keep)

    # Shards: names, metadata, and their tensors against the index.
    with open(os.path.join(mlx_dir, "model.safetensors.index.json")) as f:
        index_text = f.read()
    index = json.loads(index_text)
    shard_files = sorted(set(index["weight_map"].values()))
    if len(shard_files) == 1 and shard_files != ["model.safetensors"]:
        problems.append(f"one shard must be model.safetensors, not {shard_files}")
    if len(shard_files) > 1:
        names = [f"model-{i + 1:05d}-of-{len(shard_files):05d}.safetensors" for i in range(len(shard_files))]
        if shard_files != names:
            problems.append(f"shard names {shard_files}, expected {names}")
    actual = {}
    for shard in shard_files:
        metadata, tensors = read_safetensors(os.path.join(mlx_dir, shard))
        if metadata != {"format": "mlx"}:
            problems.append(f"{shard}: metadata {metadata}, expected {{'format': 'mlx'}}")
        for name in tensors:
            if index["weight_map"].get(name) != shard:
                problems.append(f"{name} is in {shard} but the index says {index['weight_map'].get(name)}")
        actual.update(tensors)
    if list(index["weight_map"]) != sorted(index["weight_map"]):
        problems.append("weight_map keys are not sorted")
    if not index_text.startswith('{\n    "metadata"'):
        problems.append("the index is not written with 4-space indent")

    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    if missing:
        problems.append(f"missing tensors: {missing}")
    if extra:
        problems.append(f"unexpected tensors: {extra}")
    for name in sorted(set(expected) & set(actual)):
        e, a = expected[name], actual[name]
        if e[0] != a[0] or e[1] != a[1]:
            problems.append(f"{name}: {a[0]} {a[1]}, expected {e[0]} {e[1]}")
        elif e[2] != a[2]:
            problems.append(f"{name}: bytes differ from MLX's quantization")
    total = sum(len(t[2]) for t in actual.values())
    if index["metadata"] != {"total_size": total, "total_parameters": parameters}:
        problems.append(f"index metadata {index['metadata']}, expected total_size {total}, "
                        f"total_parameters {parameters}")

    # config.json: the source's, sorted, minus _name_or_path, plus quantization.
    with open(os.path.join(mlx_dir, "config.json")) as f:
        written = json.load(f, object_pairs_hook=lambda pairs: pairs)
    keys = [k for k, _ in written]
    if keys != sorted(keys):
        problems.append(f"config.json keys are not sorted: {keys}")
    with open(os.path.join(mlx_dir, "config.json")) as f:
        written = json.load(f)
    want = {k: v for k, v in config.items() if k not in ("_name_or_path", "vision_config")}
    want["quantization"] = quantization
    want["quantization_config"] = quantization
    for key in sorted(set(want) | set(written)):
        if want.get(key) != written.get(key):
            problems.append(f"config.json {key}: {written.get(key)!r}, expected {want.get(key)!r}")

    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        src = os.path.join(source, name)
        if os.path.exists(src):
            dst = os.path.join(mlx_dir, name)
            if not os.path.exists(dst) or open(src, "rb").read() != open(dst, "rb").read():
                problems.append(f"{name} not copied unchanged")
    return problems


def main(argv):
    if len(argv) < 5 or argv[0] != "check":
        sys.exit(__doc__)
    layer_settings, keep = [], []
    for extra in argv[5:]:
        if extra.startswith("keep:"):
            keep.append(extra[5:])
        else:
            pattern, settings = extra.split("=")
            b, g = settings.split(",")
            layer_settings.append((pattern, (int(b), int(g))))
    problems = check(argv[1], argv[2], int(argv[3]), int(argv[4]), layer_settings, keep)
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main(sys.argv[1:])
