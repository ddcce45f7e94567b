// Hand-written AVX2/FMA/F16C kernels for 2-, 4- and 8-bit codes, and the
// entry points for every width (3, 5 and 6 bits are in
// qlinear_avx2_odd_bits.cpp). This file is compiled with -mavx2 -mfma
// -mf16c; nothing here may run before kernel_choice.cpp has checked the
// CPU.
//
// Codes are read 8 bytes at a time: vpmovzxbd widens the 8 bytes to 8 int32
// lanes, and each bit field of a byte ("plane" r: bits [r*bits, (r+1)*bits))
// is one shift and one mask away, for all 8 lanes at once. Plane r of byte j
// is code j*P + r (P = 8/bits codes per byte), so the activations are
// permuted once per call to the same order (prepare_activations) instead of
// shuffling codes for every weight. That makes one code cost about one
// integer op, one int->float conversion and one FMA per 8 weights, and a
// batch-1 product is bounded by memory traffic rather than arithmetic.
// No standard-library templates here: an out-of-line copy compiled for
// AVX2 could be picked by the linker for baseline code too.
#include <immintrin.h>

#include "qlinear_avx2_fused.h"
#include "qlinear_kernels.h"

namespace mcompress::runtime::kernels::avx2 {
namespace {

// Plane P of a widened unit as floats (P is a template argument because
// the shift count must be an immediate).
template <int Bits, int P>
inline __m256 plane(__m256i unit) {
  if constexpr (Bits == 8) return _mm256_cvtepi32_ps(unit);
  const __m256i shifted = P == 0 ? unit : _mm256_srli_epi32(unit, P * Bits);
  // The top field needs no mask: the lane holds a zero-extended byte.
  if constexpr (P == 8 / Bits - 1) return _mm256_cvtepi32_ps(shifted);
  return _mm256_cvtepi32_ps(_mm256_and_si256(shifted, _mm256_set1_epi32((1 << Bits) - 1)));
}

// 2-, 4- and 8-bit codes never straddle a byte: a unit is 8 bytes, one per lane.
template <int Bits>
struct ByteUnits {
  static constexpr int kUnitBytes = 8;
  static constexpr int kCodesPerUnit = 8 * (8 / Bits);

  static __m256i load(const uint8_t* bytes, const uint8_t*) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes)));
  }

  // Even and odd planes go to two accumulators to shorten the FMA chains;
  // 8-bit units have one plane, so they alternate between units instead.
  static void accumulate(__m256i unit, const float* xu, int parity, __m256& even, __m256& odd) {
    if constexpr (Bits == 8) {
      if (parity) {
        odd = _mm256_fmadd_ps(plane<8, 0>(unit), _mm256_loadu_ps(xu), odd);
      } else {
        even = _mm256_fmadd_ps(plane<8, 0>(unit), _mm256_loadu_ps(xu), even);
      }
    } else if constexpr (Bits == 4) {
      even = _mm256_fmadd_ps(plane<4, 0>(unit), _mm256_loadu_ps(xu), even);
      odd = _mm256_fmadd_ps(plane<4, 1>(unit), _mm256_loadu_ps(xu + 8), odd);
    } else {
      even = _mm256_fmadd_ps(plane<2, 0>(unit), _mm256_loadu_ps(xu), even);
      odd = _mm256_fmadd_ps(plane<2, 1>(unit), _mm256_loadu_ps(xu + 8), odd);
      even = _mm256_fmadd_ps(plane<2, 2>(unit), _mm256_loadu_ps(xu + 16), even);
      odd = _mm256_fmadd_ps(plane<2, 3>(unit), _mm256_loadu_ps(xu + 24), odd);
    }
  }

  static void store_dequantized(__m256i unit, __m256 scale, __m256 bias, float* out) {
    _mm256_storeu_ps(out, _mm256_fmadd_ps(plane<Bits, 0>(unit), scale, bias));
    if constexpr (Bits <= 4) _mm256_storeu_ps(out + 8, _mm256_fmadd_ps(plane<Bits, 1>(unit), scale, bias));
    if constexpr (Bits == 2) {
      _mm256_storeu_ps(out + 16, _mm256_fmadd_ps(plane<2, 2>(unit), scale, bias));
      _mm256_storeu_ps(out + 24, _mm256_fmadd_ps(plane<2, 3>(unit), scale, bias));
    }
  }
};

}  // namespace

void prepare_activations(const float* x, int64_t rows, int64_t in_features, int bits,
                         int group_size, float* values, float* group_sums) {
  const int planes = planes_per_unit(bits);
  const int codes_per_unit = 8 * planes;
  const int64_t groups = in_features / group_size;
  for (int64_t m = 0; m < rows; ++m) {
    const float* xm = x + m * in_features;
    float* vm = values + m * in_features;
    for (int64_t unit = 0; unit < in_features; unit += codes_per_unit) {
      for (int p = 0; p < planes; ++p) {
        for (int j = 0; j < 8; ++j) vm[unit + 8 * p + j] = xm[unit + j * planes + p];
      }
    }
    for (int64_t g = 0; g < groups; ++g) {
      __m256 sum = _mm256_setzero_ps();
      for (int j = 0; j < group_size; j += 8) {
        sum = _mm256_add_ps(sum, _mm256_loadu_ps(xm + g * group_size + j));
      }
      group_sums[m * groups + g] = horizontal_sum(sum);
    }
  }
}

void linear_rows(const PackedWeightView& w, const PreparedActivations& x, int64_t n_begin,
                 int64_t n_end, float* y) {
  switch (w.bits) {
    case 2: return fused_linear_rows<ByteUnits<2>>(w, x, n_begin, n_end, y);
    case 4: return fused_linear_rows<ByteUnits<4>>(w, x, n_begin, n_end, y);
    case 8: return fused_linear_rows<ByteUnits<8>>(w, x, n_begin, n_end, y);
    default: return odd_bits::linear_rows(w, x, n_begin, n_end, y);
  }
}

void dequantize_rows(const PackedWeightView& w, int64_t n_begin, int64_t n_end, float* out) {
  switch (w.bits) {
    case 2: return dequantize_rows_in_prepared_order<ByteUnits<2>>(w, n_begin, n_end, out);
    case 4: return dequantize_rows_in_prepared_order<ByteUnits<4>>(w, n_begin, n_end, out);
    case 8: return dequantize_rows_in_prepared_order<ByteUnits<8>>(w, n_begin, n_end, out);
    default: return odd_bits::dequantize_rows(w, n_begin, n_end, out);
  }
}

void tile_times_activations(const float* tile, int64_t tile_rows, const float* x, int64_t rows,
                            int64_t in_features, float* partial, float* y, int64_t y_stride) {
  // The product is cut into chunks of kChunk inputs so that a chunk of the
  // tile and of every activation row stays in L1 while it is reused; each
  // step multiplies 4 tile rows with 2 activation rows (6 loads feed 8
  // FMAs, so FMA throughput, not loads, is the limit). Partial sums stay
  // vectors in `partial` until the end.
  constexpr int64_t kChunk = 256;
  const int64_t K = in_features;
  for (int64_t i = 0; i < tile_rows * rows * 8; ++i) partial[i] = 0;
  auto slot = [&](int64_t i, int64_t m) { return partial + (i * rows + m) * 8; };
  for (int64_t k0 = 0; k0 < K; k0 += kChunk) {
    const int64_t k1 = k0 + kChunk < K ? k0 + kChunk : K;
    int64_t i = 0;
    for (; i + 4 <= tile_rows; i += 4) {
      const float* t0 = tile + i * K;
      int64_t m = 0;
      for (; m + 2 <= rows; m += 2) {
        const float* x0 = x + m * K;
        const float* x1 = x0 + K;
        __m256 acc[8];
        for (int r = 0; r < 4; ++r) {
          acc[2 * r] = _mm256_loadu_ps(slot(i + r, m));
          acc[2 * r + 1] = _mm256_loadu_ps(slot(i + r, m + 1));
        }
        for (int64_t k = k0; k < k1; k += 8) {
          const __m256 a0 = _mm256_loadu_ps(x0 + k);
          const __m256 a1 = _mm256_loadu_ps(x1 + k);
          for (int r = 0; r < 4; ++r) {
            const __m256 t = _mm256_loadu_ps(t0 + r * K + k);
            acc[2 * r] = _mm256_fmadd_ps(t, a0, acc[2 * r]);
            acc[2 * r + 1] = _mm256_fmadd_ps(t, a1, acc[2 * r + 1]);
          }
        }
        for (int r = 0; r < 4; ++r) {
          _mm256_storeu_ps(slot(i + r, m), acc[2 * r]);
          _mm256_storeu_ps(slot(i + r, m + 1), acc[2 * r + 1]);
        }
      }
      for (; m < rows; ++m) {
        for (int r = 0; r < 4; ++r) {
          __m256 acc = _mm256_loadu_ps(slot(i + r, m));
          for (int64_t k = k0; k < k1; k += 8) {
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(t0 + r * K + k), _mm256_loadu_ps(x + m * K + k), acc);
          }
          _mm256_storeu_ps(slot(i + r, m), acc);
        }
      }
    }
    for (; i < tile_rows; ++i) {
      for (int64_t m = 0; m < rows; ++m) {
        __m256 acc = _mm256_loadu_ps(slot(i, m));
        for (int64_t k = k0; k < k1; k += 8) {
          acc = _mm256_fmadd_ps(_mm256_loadu_ps(tile + i * K + k), _mm256_loadu_ps(x + m * K + k), acc);
        }
        _mm256_storeu_ps(slot(i, m), acc);
      }
    }
  }
  for (int64_t i = 0; i < tile_rows; ++i) {
    for (int64_t m = 0; m < rows; ++m) y[m * y_stride + i] = horizontal_sum(_mm256_loadu_ps(slot(i, m)));
  }
}

}  // namespace mcompress::runtime::kernels::avx2
