// What every int8 product needs before it runs: the activations quantized
// per block of 32, and weight panels unpacked into bytes in the products' layout
// (qlinear_int8_kernels.h). AVX2; compiled with -mavx2 -mfma -mf16c and
// called only after the CPU check. Both are linear in their input, so they
// cost little next to the products they feed (each panel byte is used once
// per input row).
#include <immintrin.h>

#include <cstring>

#include "qlinear_avx2_support.h"
#include "qlinear_int8_kernels.h"

namespace mcompress::runtime::kernels::int8 {
namespace {

// 32 consecutive codes of a row, starting at a multiple of 32, as bytes in
// their natural order. `bytes` is the first packed byte of the 32 codes
// (they take 4 * Bits bytes); `end` is one past the weight's last byte.
template <int Bits>
inline __m256i unpack_32_codes(const uint8_t* bytes, const uint8_t* end) {
  if constexpr (Bits == 8) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bytes));
  } else if constexpr (Bits == 4) {
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes));
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m128i low = _mm_and_si128(packed, mask);
    const __m128i high = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
    // Code 2i is the low nibble of byte i, code 2i + 1 the high one.
    return _mm256_set_m128i(_mm_unpackhi_epi8(low, high), _mm_unpacklo_epi8(low, high));
  } else if constexpr (Bits == 2) {
    const __m128i packed = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes));
    const __m128i mask = _mm_set1_epi8(0x03);
    const __m128i p0 = _mm_and_si128(packed, mask);
    const __m128i p1 = _mm_and_si128(_mm_srli_epi16(packed, 2), mask);
    const __m128i p2 = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
    const __m128i p3 = _mm_and_si128(_mm_srli_epi16(packed, 6), mask);
    // Code 4i + j is field j of byte i.
    const __m128i p01 = _mm_unpacklo_epi8(p0, p1);
    const __m128i p23 = _mm_unpacklo_epi8(p2, p3);
    return _mm256_set_m128i(_mm_unpackhi_epi16(p01, p23), _mm_unpacklo_epi16(p01, p23));
  } else {
    // 3, 5, 6 bits: 16-bit lane i gets the two bytes holding code i
    // (vpshufb), which a multiply by 2^(16 - shift - Bits) moves to the
    // top of the lane and a shift by 16 - Bits brings down: a per-lane
    // variable shift, which AVX2 lacks for 16-bit lanes. 8 codes take Bits
    // bytes, so each 128-bit half starts on a byte.
    static_assert(Bits == 3 || Bits == 5 || Bits == 6, "unsupported width");
    constexpr int kReach = 3 * Bits + 16;  // the last 16-byte load ends here
    uint8_t padded[kReach];
    if (bytes + kReach > end) {  // the last codes of the weight: a zero-padded copy
      std::memset(padded, 0, sizeof padded);
      std::memcpy(padded, bytes, 4 * Bits);
      bytes = padded;
    }
    const __m256i control = _mm256_broadcastsi128_si256(_mm_setr_epi8(
        char(0 * Bits / 8), char(0 * Bits / 8 + 1), char(1 * Bits / 8), char(1 * Bits / 8 + 1),
        char(2 * Bits / 8), char(2 * Bits / 8 + 1), char(3 * Bits / 8), char(3 * Bits / 8 + 1),
        char(4 * Bits / 8), char(4 * Bits / 8 + 1), char(5 * Bits / 8), char(5 * Bits / 8 + 1),
        char(6 * Bits / 8), char(6 * Bits / 8 + 1), char(7 * Bits / 8), char(7 * Bits / 8 + 1)));
    const __m256i multipliers = _mm256_broadcastsi128_si256(_mm_setr_epi16(
        short(1 << (16 - (0 * Bits % 8) - Bits)), short(1 << (16 - (1 * Bits % 8) - Bits)),
        short(1 << (16 - (2 * Bits % 8) - Bits)), short(1 << (16 - (3 * Bits % 8) - Bits)),
        short(1 << (16 - (4 * Bits % 8) - Bits)), short(1 << (16 - (5 * Bits % 8) - Bits)),
        short(1 << (16 - (6 * Bits % 8) - Bits)), short(1 << (16 - (7 * Bits % 8) - Bits))));
    auto sixteen_codes = [&](const uint8_t* half) {
      const __m256i raw = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(half + Bits),
                                              reinterpret_cast<const __m128i*>(half));
      const __m256i windows = _mm256_shuffle_epi8(raw, control);
      return _mm256_srli_epi16(_mm256_mullo_epi16(windows, multipliers), 16 - Bits);
    };
    const __m256i first = sixteen_codes(bytes);             // codes 0..7 | 8..15
    const __m256i second = sixteen_codes(bytes + 2 * Bits);  // codes 16..23 | 24..31
    // packus interleaves the halves (0..7, 16..23 | 8..15, 24..31).
    return _mm256_permute4x64_epi64(_mm256_packus_epi16(first, second), 0xD8);
  }
}

// rows[i] (8 rows of 8 int32 lanes) becomes column i: lane r of the result
// is lane i of row r.
inline void transpose_8x8_lanes(__m256i rows[8]) {
  const __m256i t0 = _mm256_unpacklo_epi32(rows[0], rows[1]);
  const __m256i t1 = _mm256_unpackhi_epi32(rows[0], rows[1]);
  const __m256i t2 = _mm256_unpacklo_epi32(rows[2], rows[3]);
  const __m256i t3 = _mm256_unpackhi_epi32(rows[2], rows[3]);
  const __m256i t4 = _mm256_unpacklo_epi32(rows[4], rows[5]);
  const __m256i t5 = _mm256_unpackhi_epi32(rows[4], rows[5]);
  const __m256i t6 = _mm256_unpacklo_epi32(rows[6], rows[7]);
  const __m256i t7 = _mm256_unpackhi_epi32(rows[6], rows[7]);
  const __m256i u0 = _mm256_unpacklo_epi64(t0, t2);  // lanes 0 | 4 of rows 0..3
  const __m256i u1 = _mm256_unpackhi_epi64(t0, t2);  // lanes 1 | 5
  const __m256i u2 = _mm256_unpacklo_epi64(t1, t3);  // lanes 2 | 6
  const __m256i u3 = _mm256_unpackhi_epi64(t1, t3);  // lanes 3 | 7
  const __m256i u4 = _mm256_unpacklo_epi64(t4, t6);  // the same for rows 4..7
  const __m256i u5 = _mm256_unpackhi_epi64(t4, t6);
  const __m256i u6 = _mm256_unpacklo_epi64(t5, t7);
  const __m256i u7 = _mm256_unpackhi_epi64(t5, t7);
  rows[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
  rows[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
  rows[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
  rows[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
  rows[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
  rows[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
  rows[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
  rows[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

// Panel rows [first, first + 8) (`rows` of them real, the rest zero):
// codes centred and transposed into the panel, and each block's starting
// value -128 * sum(c - o). One half of a panel at a time keeps the 8 rows,
// the transpose and the sums in registers.
template <int Bits>
void pack_half_panel(const PackedWeightView& w, int64_t first, int rows, int half, int8_t* codes,
                     int32_t* start_values) {
  constexpr int kOffset = 1 << (Bits - 1);
  const int64_t K = w.in_features;
  const int64_t row_bytes = w.bytes_per_row();
  const uint8_t* first_row = reinterpret_cast<const uint8_t*>(w.packed) + first * row_bytes;
  const uint8_t* end = w.end();
  const __m256i offset = _mm256_set1_epi8(char(kOffset));
  const __m256i ones8 = _mm256_set1_epi8(1);
  const __m256i ones16 = _mm256_set1_epi16(1);
  for (int64_t k0 = 0; k0 < K; k0 += kBlock) {
    __m256i lanes[8];
    for (int r = 0; r < 8; ++r) {
      lanes[r] = r < rows ? unpack_32_codes<Bits>(first_row + r * row_bytes + k0 * Bits / 8, end)
                          : offset;  // centred to zero below
    }
    transpose_8x8_lanes(lanes);
    // Step k0 / 4 + i holds lane i of every row: rows 0..7, then 8..15.
    int8_t* step = codes + (k0 / 4) * kPanelRows * 4 + half * 32;
    // Sums of the (uncentred) codes per row, two int16 lanes per row (at
    // most 16 * 255).
    __m256i sums = _mm256_setzero_si256();
    for (int i = 0; i < 8; ++i) {
      sums = _mm256_add_epi16(sums, _mm256_maddubs_epi16(lanes[i], ones8));
      _mm256_store_si256(reinterpret_cast<__m256i*>(step + i * 64), _mm256_sub_epi8(lanes[i], offset));
    }
    // Lane r: -128 * the sum of row r's centred codes in the block.
    const __m256i code_sums = _mm256_madd_epi16(sums, ones16);
    const __m256i centred = _mm256_sub_epi32(code_sums, _mm256_set1_epi32(kOffset * kBlock));
    const __m256i start = _mm256_mullo_epi32(centred, _mm256_set1_epi32(-128));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(start_values + (k0 / kBlock) * kPanelRows + half * 8), start);
  }
}

template <int Bits>
void pack_codes(const PackedWeightView& w, int64_t n_begin, int rows, int8_t* codes,
                int32_t* start_values) {
  pack_half_panel<Bits>(w, n_begin, rows < 8 ? rows : 8, 0, codes, start_values);
  pack_half_panel<Bits>(w, n_begin + 8, rows > 8 ? rows - 8 : 0, 1, codes, start_values);
}

// 8 scales or biases of one row, groups [g, g + 8), as float.
inline __m256 load_8_scales(const void* values, ScaleType type, int64_t i) {
  switch (type) {
    case ScaleType::Float16:
      return _mm256_cvtph_ps(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(values) + i)));
    case ScaleType::BFloat16: {
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(values) + i));
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
    }
    case ScaleType::Float32: break;
  }
  return _mm256_loadu_ps(static_cast<const float*>(values) + i);
}

// Scales and biases + offset * scales of rows [n_begin, n_begin + rows) in
// the panel's [group][panel row] layout: 8 groups of 8 rows at a time,
// converted as rows (contiguous) and transposed; the groups past the last
// multiple of 8 one by one.
void pack_scales(const PackedWeightView& w, int64_t n_begin, int rows, float* scales, float* biases) {
  const int64_t groups = w.groups_per_row();
  const float offset = float(1 << (w.bits - 1));
  int64_t g = 0;
  for (; g + 8 <= groups; g += 8) {
    for (int half = 0; half < 2; ++half) {
      __m256i s[8], b[8];
      for (int r = 0; r < 8; ++r) {
        const int row = half * 8 + r;
        if (row < rows) {
          const int64_t index = (n_begin + row) * groups + g;
          const __m256 scale = load_8_scales(w.scales, w.scale_type, index);
          const __m256 bias =
              _mm256_fmadd_ps(_mm256_set1_ps(offset), scale, load_8_scales(w.biases, w.scale_type, index));
          s[r] = _mm256_castps_si256(scale);
          b[r] = _mm256_castps_si256(bias);
        } else {
          s[r] = b[r] = _mm256_setzero_si256();
        }
      }
      transpose_8x8_lanes(s);
      transpose_8x8_lanes(b);
      for (int i = 0; i < 8; ++i) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(scales + (g + i) * kPanelRows + half * 8), s[i]);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(biases + (g + i) * kPanelRows + half * 8), b[i]);
      }
    }
  }
  for (; g < groups; ++g) {
    for (int r = 0; r < kPanelRows; ++r) {
      float scale = 0, bias = 0;
      if (r < rows) {
        const int64_t index = (n_begin + r) * groups + g;
        scale = kernels::avx2::load_scale(w.scales, w.scale_type, index);
        bias = kernels::avx2::load_scale(w.biases, w.scale_type, index) + offset * scale;
      }
      scales[g * kPanelRows + r] = scale;
      biases[g * kPanelRows + r] = bias;
    }
  }
}

inline float horizontal_max(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

}  // namespace

size_t panel_bytes(int64_t in_features, int group_size) {
  const int64_t groups = in_features / group_size, blocks = in_features / kBlock;
  return size_t(in_features * kPanelRows + (blocks + 2 * groups) * kPanelRows * 4);
}

Panel pack_panel(const PackedWeightView& w, int64_t n_begin, int rows, void* buffer) {
  const int64_t groups = w.groups_per_row();
  auto* bytes = static_cast<uint8_t*>(buffer);
  auto* codes = reinterpret_cast<int8_t*>(bytes);
  auto* start_values = reinterpret_cast<int32_t*>(bytes + w.in_features * kPanelRows);
  auto* scales = reinterpret_cast<float*>(start_values + (w.in_features / kBlock) * kPanelRows);
  float* biases = scales + groups * kPanelRows;
  switch (w.bits) {
    case 2: pack_codes<2>(w, n_begin, rows, codes, start_values); break;
    case 3: pack_codes<3>(w, n_begin, rows, codes, start_values); break;
    case 4: pack_codes<4>(w, n_begin, rows, codes, start_values); break;
    case 5: pack_codes<5>(w, n_begin, rows, codes, start_values); break;
    case 6: pack_codes<6>(w, n_begin, rows, codes, start_values); break;
    default: pack_codes<8>(w, n_begin, rows, codes, start_values); break;
  }
  pack_scales(w, n_begin, rows, scales, biases);
  Panel panel;
  panel.codes = codes;
  panel.start_values = start_values;
  panel.scales = scales;
  panel.biases = biases;
  panel.bits = w.bits;
  return panel;
}

void quantize_activations(const float* x, int64_t rows, int64_t in_features, int group_size,
                          uint8_t* codes, float* scales, float* sums) {
  const int64_t groups = in_features / group_size, blocks = in_features / kBlock;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  // packs_epi32/packs_epi16 interleave 128-bit halves; this puts the 32
  // bytes back in order.
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const __m256i to_unsigned = _mm256_set1_epi8(char(0x80));
  for (int64_t m = 0; m < rows; ++m) {
    const float* xm = x + m * in_features;
    for (int64_t g = 0; g < groups; ++g) {
      __m256 sum = _mm256_setzero_ps();
      for (int j = 0; j < group_size; j += 8) sum = _mm256_add_ps(sum, _mm256_loadu_ps(xm + g * group_size + j));
      sums[m * groups + g] = kernels::avx2::horizontal_sum(sum);
    }
    for (int64_t b = 0; b < blocks; ++b) {
      const float* xb = xm + b * kBlock;
      __m256 v[4], largest = _mm256_setzero_ps();
      for (int j = 0; j < 4; ++j) {
        v[j] = _mm256_loadu_ps(xb + 8 * j);
        largest = _mm256_max_ps(largest, _mm256_andnot_ps(sign, v[j]));
      }
      const float amax = horizontal_max(largest);
      scales[m * blocks + b] = amax / 127.0f;
      const __m256 inverse = _mm256_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
      // Rounded to nearest (the default MXCSR mode), |q| <= 127.
      __m256i q[4];
      for (int j = 0; j < 4; ++j) q[j] = _mm256_cvtps_epi32(_mm256_mul_ps(v[j], inverse));
      const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + m * in_features + b * kBlock),
                          _mm256_xor_si256(_mm256_permutevar8x32_epi32(bytes, order), to_unsigned));
    }
  }
}

}  // namespace mcompress::runtime::kernels::int8
