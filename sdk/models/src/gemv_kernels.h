#pragma once
// Matrix-vector kernels for batch-1 decoding, where every weight is read once
// per token and speed is memory bandwidth: rows of float32, bfloat16 or
// float16 weights against a float32 vector, accumulated in float32. The
// instruction set (AVX-512, AVX2+FMA+F16C, or portable C++) is chosen once at
// run time from the CPU, so the library runs on any x86-64.
#include <cstdint>

namespace mcompress::kernels {

enum class WeightType { Float32, BFloat16, Float16 };

// y[r] = dot(weight row r, x) for r in [0, rows); weight is row-major
// [rows, cols] with rows `row_stride` elements apart. Rows are shared among
// LibTorch's intra-op threads when the matrix is large enough to pay for it.
void gemv(WeightType type, const void* weight, int64_t rows, int64_t cols, int64_t row_stride,
          const float* x, float* y);

// The float32 values of `count` elements of `type` at `source`.
void widen(WeightType type, const void* source, int64_t count, float* destination);

// Single-query attention over `length` cached positions of one head:
// out = softmax(scale * K q) V, K and V rows `row_stride` floats apart,
// `scores` scratch of `length` floats.
void attend(const float* q, const float* keys, const float* values, int64_t length, int64_t head_dim,
            int64_t row_stride, float scale, float* scores, float* out);

// attend() for `heads` query heads at q (head_dim apart), query head h reading
// the cache of key/value head h / group (kv_stride floats apart) and writing
// out + h * head_dim; heads are shared among the intra-op threads.
// `scores` holds heads * length floats.
void attend_heads(const float* q, const float* keys, const float* values, int64_t heads, int64_t group,
                  int64_t kv_stride, int64_t length, int64_t head_dim, float scale, float* scores, float* out);

// "avx512+bf16", "avx512", "avx2" or "portable": what gemv runs on this CPU.
const char* instruction_set();

}  // namespace mcompress::kernels
