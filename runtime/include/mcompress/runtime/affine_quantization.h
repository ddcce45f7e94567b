#pragma once
// Group-wise affine quantization in MLX's format ("affine" mode of
// mx.quantize), bit for bit. Torch-free, so it can be tested and reused on
// plain arrays.
//
// Each row of a weight matrix [rows, columns] is cut into groups of
// `group_size` consecutive weights. A group with minimum `lo` and maximum `hi`
// gets, computed in float:
//
//   n      = 2^bits - 1
//   scale  = max((hi - lo) / n, 1e-7), negated unless |lo| > |hi|
//   edge   = lo if |lo| > |hi| else hi     (the edge of larger magnitude)
//   q0     = rint(edge / scale)
//   if q0 != 0: scale = edge / q0, bias = edge   (the edge becomes exactly representable)
//   else:       bias = 0
//   code   = clip(rint((w - bias) / scale), 0, n)
//
// and dequantizes as w' = code * scale + bias. Scale and bias are stored in
// the weight's dtype; codes are computed with the float values before that
// rounding, as MLX does. (The simpler formula in MLX's docstring, scale =
// (hi - lo) / n and bias = lo, is not what its kernels compute.)
//
// Packing: the codes of a row form one little-endian bit stream (code i at
// bits [i*bits, (i+1)*bits)) stored in uint32 words, so a row of `columns`
// codes takes columns * bits / 32 words. For 2, 4 and 8 bits that is "least
// significant bits first within each uint32"; for 3, 5 and 6 bits it is the
// byte packing MLX uses (8 codes in 3 or 5 bytes, 4 six-bit codes in 3
// bytes), which is the same stream. A group always starts on a word
// boundary, because group_size * bits is a multiple of 32.
#include <cstdint>

#include "mcompress/runtime/export.h"

namespace mcompress::runtime {

// Bits MLX's affine mode accepts: 2, 3, 4, 5, 6 and 8.
MCOMPRESS_RUNTIME_API bool is_supported_bits(int bits);
// Group sizes MLX's affine mode accepts: 32, 64 and 128.
MCOMPRESS_RUNTIME_API bool is_supported_group_size(int group_size);
// Throws std::invalid_argument naming the bad value and the accepted ones.
MCOMPRESS_RUNTIME_API void check_affine_format(int bits, int group_size);

// uint32 words holding one packed row of `columns` codes.
inline int64_t packed_words(int64_t columns, int bits) { return columns * bits / 32; }

struct GroupParams {
  float scale = 0;
  float bias = 0;
};

// Scale and bias of one group (`group_size` finite weights), as above.
MCOMPRESS_RUNTIME_API GroupParams affine_group_params(const float* weights, int group_size,
                                                      int bits);

// Quantizes `rows` rows of `columns` finite weights (row-major, columns a
// multiple of group_size). Writes rows * packed_words(columns, bits) words to
// `packed` and rows * columns / group_size values to `scales` and `biases`
// (float, before rounding to the storage dtype). The caller owns all buffers.
MCOMPRESS_RUNTIME_API void affine_quantize_rows(const float* weights, int64_t rows,
                                                int64_t columns, int bits, int group_size,
                                                uint32_t* packed, float* scales, float* biases);

// Packs `count` codes (a multiple of 32, each < 2^bits) into count*bits/32 words.
MCOMPRESS_RUNTIME_API void pack_codes(const uint8_t* codes, int64_t count, int bits,
                                      uint32_t* words);
// Reads `count` codes (a multiple of 32) starting at code `first` (a multiple
// of 32) of a packed row.
MCOMPRESS_RUNTIME_API void unpack_codes(const uint32_t* row, int64_t first, int64_t count,
                                        int bits, uint8_t* codes);

}  // namespace mcompress::runtime
