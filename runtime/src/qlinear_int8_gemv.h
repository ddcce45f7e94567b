#pragma once
// One input row with int8 activations (quantized_linear_int8 in
// quantized_linear.h): private to the runtime. A decode step multiplies one
// vector by every weight once, so what bounds it is how fast the packed
// codes stream through the cores. Integer dot products take 32 codes per
// instruction straight from the packed bytes (no unpacking into a panel),
// against activations quantized to int8 once per call:
//
//   y = sum_g scale_g * d_g * idot(codes_g, q_g) + bias_g * sum(x_g)
//       + scale_g * o * (sum(x_g) - d_g * sum(q_g))
//
// with one activation scale d_g = max|x_g| / 127 per weight group, so each
// group's integer sum is scaled once. The codes are unsigned (0 .. 2^bits-1)
// and the activations signed, as vpdpbusd and vpmaddubsw want them. The last
// term centres the codes (o = 2^(bits-1)): it is zero for exact activations,
// and with rounded ones it leaves only (c - o) * scale, the weight's spread
// around its group's middle, to meet the rounding error, instead of the
// whole code (4 to 8 times smaller errors).
//
// The kernels read rows in chunks of 32 bytes (256-bit kernels) or 64 bytes
// (AVX-512). 4-bit rows: a chunk of B bytes holds 2B codes, code 2b in the
// low nibble of byte b and code 2b+1 in the high one, so the activations of
// a chunk are stored as its B even elements, then its B odd ones. 8-bit
// rows: one code per byte, activations in order.
#include <cstdint>

#include "qlinear_kernels.h"

namespace mcompress::runtime::kernels::int8_gemv {

// Whether kernels reading `chunk_bytes` at a time handle this format: 4 and
// 8 bits, groups of 32, 64 or 128, rows of whole chunks.
bool supports(int bits, int group_size, int64_t in_features, int chunk_bytes);

// The activations of one row, in the order above.
struct Activations {
  const int8_t* codes = nullptr;  // [in_features]
  const float* scales = nullptr;  // [groups]: d_g
  const float* sums = nullptr;    // [groups]: float sum of x_g
  const float* centring = nullptr;  // [groups]: o * (sum(x_g) - d_g * sum(q_g))
};

// Quantizes x [in_features] for kernels of `chunk_bytes` (baseline code,
// qlinear_int8_gemv.cpp).
void quantize_activations(const float* x, int64_t in_features, int bits, int group_size, int chunk_bytes,
                          int8_t* codes, float* scales, float* sums, float* centring);

// y[n] for n in [n_begin, n_end).
using Rows = void (*)(const PackedWeightView& w, const Activations& x, int64_t n_begin, int64_t n_end, float* y);
namespace avx2 {  // vpmaddubsw + vpmaddwd (8-bit codes as two nibbles, so no int16 sum saturates)
void rows(const PackedWeightView&, const Activations&, int64_t, int64_t, float*);
}
namespace avx_vnni {  // vpdpbusd, VEX-encoded 256-bit
void rows(const PackedWeightView&, const Activations&, int64_t, int64_t, float*);
}
namespace avx512_vnni {  // vpdpbusd on 512-bit vectors, 64-byte chunks
void rows(const PackedWeightView&, const Activations&, int64_t, int64_t, float*);
}

// y [out_features] = the weight times x [in_features], with `rows` (a
// kernel of `chunk_bytes`) for the products; output rows shared among the
// intra-op threads.
void linear(const PackedWeightView& w, const float* x, Rows rows, int chunk_bytes, float* y);

}  // namespace mcompress::runtime::kernels::int8_gemv
