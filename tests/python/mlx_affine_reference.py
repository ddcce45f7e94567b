"""Independent numpy reimplementation of MLX's affine group quantization.

Used by tests/test_affine_quantization.cpp: writes test weights and the
packed words, scales and biases MLX's CPU kernel (mlx/backend/cpu/quantized.cpp)
computes for them, as raw little-endian files plus a manifest, for the C++
implementation to match bit for bit. Written from the algorithm, vectorised
over whole matrices, sharing no code with the C++ side.

usage: mlx_affine_reference.py OUT_DIR
"""
import json
import os
import sys

import numpy as np

F32 = np.float32


def to_bfloat16_bits(values):
    """float32 -> bfloat16 bit patterns, rounding to nearest even."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounding = ((bits >> 16) & 1) + 0x7FFF
    return ((bits + rounding) >> 16).astype(np.uint16)


def from_bfloat16_bits(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def quantize(weights, bits, group_size):
    """weights: float32 [rows, cols]. Returns packed uint32, scales, biases (float32)."""
    rows, cols = weights.shape
    n_bins = F32((1 << bits) - 1)
    groups = weights.reshape(rows, cols // group_size, group_size)
    w_max = groups.max(axis=-1)
    w_min = groups.min(axis=-1)
    min_is_edge = np.abs(w_min) > np.abs(w_max)
    scale = np.maximum((w_max - w_min) / n_bins, F32(1e-7)).astype(F32)
    scale = np.where(min_is_edge, scale, -scale).astype(F32)
    edge = np.where(min_is_edge, w_min, w_max).astype(F32)
    q0 = np.rint(edge / scale).astype(F32)
    snapped = np.divide(edge, q0, out=np.zeros_like(edge), where=q0 != 0).astype(F32)
    scale = np.where(q0 != 0, snapped, scale).astype(F32)
    bias = np.where(q0 != 0, edge, F32(0)).astype(F32)
    with np.errstate(invalid="ignore"):
        codes = np.rint((groups - bias[..., None]) / scale[..., None]).astype(F32)
    codes = np.clip(codes, F32(0), n_bins).astype(np.uint64).reshape(rows, cols)

    # One little-endian bit stream per row: code i occupies bits [i*bits, (i+1)*bits).
    words = np.zeros((rows, cols * bits // 32 + 1), dtype=np.uint64)
    positions = np.arange(cols, dtype=np.uint64) * np.uint64(bits)
    word_index = (positions // np.uint64(32)).astype(np.int64)
    offset = positions % np.uint64(32)
    for r in range(rows):
        low = (codes[r] << offset) & np.uint64(0xFFFFFFFF)
        np.bitwise_or.at(words[r], word_index, low)
        spill = offset + np.uint64(bits) > np.uint64(32)
        high = codes[r][spill] >> (np.uint64(32) - offset[spill])
        np.bitwise_or.at(words[r], word_index[spill] + 1, high)
    packed = words[:, : cols * bits // 32].astype(np.uint32)
    return packed, scale.reshape(rows, -1), bias.reshape(rows, -1)


def special_rows(cols, group_size, rng):
    """Rows whose groups exercise the edge cases of the algorithm."""
    g = group_size
    groups = []
    groups.append(np.full(g, 0.37, F32))                       # constant, positive
    groups.append(np.full(g, -1.25, F32))                      # constant, negative
    groups.append(np.zeros(g, F32))                            # all +0
    mixed_zero = np.zeros(g, F32)
    mixed_zero[::2] = -0.0                                     # +0 and -0
    groups.append(mixed_zero)
    groups.append(-np.abs(rng.standard_normal(g)).astype(F32) - 0.5)  # all negative
    groups.append(np.abs(rng.standard_normal(g)).astype(F32) + 0.5)   # all positive
    with_zeros = rng.standard_normal(g).astype(F32)
    with_zeros[:4] = [0.0, -0.0, 0.0, -0.0]
    groups.append(with_zeros)                                  # contains +-0
    groups.append((rng.standard_normal(g) * 1e-9).astype(F32))  # range below eps * n_bins
    groups.append(np.linspace(-3, 1, g).astype(F32))           # min is the larger edge
    groups.append(np.linspace(-1, 3, g).astype(F32))           # max is the larger edge
    symmetric = np.linspace(-2, 2, g).astype(F32)
    groups.append(symmetric)                                   # |min| == |max|
    small_positive = rng.uniform(0.0, 1e-3, g).astype(F32)
    small_positive[0] = 5.0
    groups.append(small_positive)                              # one outlier
    flat = np.concatenate(groups)
    rows = len(flat) // cols + 1
    out = rng.standard_normal(rows * cols).astype(F32)
    out[: len(flat)] = flat
    return out.reshape(rows, cols)


def main():
    out_dir = sys.argv[1]
    rng = np.random.default_rng(1234)
    cases = []
    for bits in (2, 3, 4, 5, 6, 8):
        for group_size in (32, 64, 128):
            for dtype in ("float32", "float16", "bfloat16"):
                cols = group_size * 3
                random_rows = (rng.standard_normal((5, cols)) * rng.uniform(0.01, 3)).astype(F32)
                weights = np.concatenate([special_rows(cols, group_size, rng), random_rows])
                if dtype == "float16":
                    stored = weights.astype(np.float16)
                    weights = stored.astype(F32)
                elif dtype == "bfloat16":
                    stored = to_bfloat16_bits(weights)
                    weights = from_bfloat16_bits(stored)
                else:
                    stored = weights
                packed, scales, biases = quantize(weights, bits, group_size)
                if dtype == "float16":
                    scales, biases = scales.astype(np.float16), biases.astype(np.float16)
                elif dtype == "bfloat16":
                    scales, biases = to_bfloat16_bits(scales), to_bfloat16_bits(biases)
                name = f"b{bits}_g{group_size}_{dtype}"
                files = {}
                for part, array in (("weight", stored), ("packed", packed), ("scales", scales),
                                    ("biases", biases)):
                    files[part] = f"{name}.{part}"
                    np.ascontiguousarray(array).tofile(os.path.join(out_dir, files[part]))
                cases.append({"name": name, "bits": bits, "group_size": group_size, "dtype": dtype,
                              "rows": int(weights.shape[0]), "cols": int(cols), "files": files})
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(cases, f, indent=1)


if __name__ == "__main__":
    main()
