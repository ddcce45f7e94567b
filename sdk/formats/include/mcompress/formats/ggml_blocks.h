#pragma once
// ggml's block formats, bit for bit as llama.cpp's reference quantizers
// (quantize_row_q8_0_ref, quantize_row_q4_0_ref in ggml/src/ggml-quants.c;
// layouts in ggml/src/ggml-common.h) write them. A block holds 32 values:
//
//   Q8_0 (34 bytes): fp16 d = amax / 127, then 32 int8 codes round(x / d)
//                    (rounded half away from zero); x ≈ d * code.
//   Q4_0 (18 bytes): fp16 d = max / -8, where max is the value of largest
//                    magnitude with its sign, then 16 bytes of 4-bit codes
//                    min(15, trunc(x / d + 8.5)): byte j holds value j in its
//                    low nibble and value j + 16 in its high nibble; x ≈ d * (code - 8).
//
// The codes divide by the float32 scale, not by its fp16 rounding, exactly
// as the reference does; an all-zero block has d = 0 and codes 0 (Q8_0) or 8 (Q4_0).
#include <cstdint>
#include <string>

#include "mcompress/sdk/export.h"

namespace mcompress {

// Appends the blocks of `count` values (a multiple of 32) to `out`.
// Throws mcompress::Error when `count` is not a multiple of 32.
MCOMPRESS_SDK_API void append_q8_0_blocks(const float* values, int64_t count, std::string& out);
MCOMPRESS_SDK_API void append_q4_0_blocks(const float* values, int64_t count, std::string& out);

// IEEE half precision, rounded to nearest even (ggml's GGML_FP32_TO_FP16).
MCOMPRESS_SDK_API uint16_t float_to_half_bits(float value);

}  // namespace mcompress
