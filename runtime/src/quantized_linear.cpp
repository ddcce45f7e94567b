#include "mcompress/runtime/quantized_linear.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "kernel_choice.h"
#include "mcompress/runtime/affine_quantization.h"
#include "qlinear_int8_kernels.h"
#include "qlinear_kernels.h"

namespace mcompress::runtime {
namespace {

using kernels::PackedWeightView;
using kernels::PreparedActivations;
using kernels::ScaleType;

// Rows of the weight one BLAS block holds (1024 rows of a 4096-wide layer):
// BLAS needs large blocks to reach its speed, and 16 MiB still stays in a
// server's L3 between the dequantization and the multiplication.
constexpr int64_t kBlasBlockBytes = 16 << 20;
// The batch path dequantizes this many output rows at a time (in L1/L2) and
// reuses them for every input row.
constexpr int64_t kTileRows = 16;

std::string shape_of(const at::Tensor& t) {
  std::string text = "[";
  for (int64_t i = 0; i < t.dim(); ++i) text += (i ? ", " : "") + std::to_string(t.size(i));
  return text + "]";
}

void require(bool condition, const std::string& message) {
  if (!condition) throw std::invalid_argument("mcompress::quantized_linear: " + message);
}

ScaleType scale_type_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return ScaleType::Float32;
    case at::kHalf: return ScaleType::Float16;
    case at::kBFloat16: return ScaleType::BFloat16;
    default:
      throw std::invalid_argument("mcompress::quantized_linear: scales and biases must be float32, "
                                  "float16 or bfloat16, got " +
                                  std::string(c10::toString(t.scalar_type())));
  }
}

// Checks the packed weight and returns a view of it (the tensors must stay
// alive while the view is used).
PackedWeightView view_of(const at::Tensor& packed, const at::Tensor& scales,
                         const at::Tensor& biases, int64_t bits, int64_t group_size) {
  require(is_supported_bits(int(bits)) && is_supported_group_size(int(group_size)),
          "bits must be 2, 3, 4, 5, 6 or 8 and group_size 32, 64 or 128; got bits=" +
              std::to_string(bits) + ", group_size=" + std::to_string(group_size));
  require(packed.dim() == 2 && packed.scalar_type() == at::kInt,
          "packed must be a 2-D int32 tensor (MLX's uint32 words), got " + shape_of(packed) + " " +
              std::string(c10::toString(packed.scalar_type())));
  require(scales.dim() == 2 && scales.sizes() == biases.sizes(),
          "scales " + shape_of(scales) + " and biases " + shape_of(biases) +
              " must have the same 2-D shape [out_features, in_features / group_size]");
  require(scales.scalar_type() == biases.scalar_type(), "scales and biases must have one dtype");
  require(packed.device().is_cpu() && scales.device().is_cpu() && biases.device().is_cpu(),
          "only CPU tensors are supported");
  PackedWeightView view;
  view.out_features = packed.size(0);
  view.in_features = scales.size(1) * group_size;
  view.bits = int(bits);
  view.group_size = int(group_size);
  require(scales.size(0) == view.out_features,
          "scales have " + std::to_string(scales.size(0)) + " rows but packed has " +
              std::to_string(view.out_features));
  require(packed.size(1) == view.words_per_row(),
          "packed has " + std::to_string(packed.size(1)) + " words per row, but " +
              std::to_string(view.in_features) + " inputs at " + std::to_string(bits) +
              " bits need " + std::to_string(view.words_per_row()));
  view.scale_type = scale_type_of(scales);
  return view;
}

struct Prepared {
  std::vector<float> values, group_sums;
  PreparedActivations view;
};

Prepared prepare(const at::Tensor& x2, const PackedWeightView& w, bool avx2) {
  Prepared p;
  const int64_t rows = x2.size(0);
  p.values.resize(size_t(rows * w.in_features));
  p.group_sums.resize(size_t(rows * w.groups_per_row()));
  const float* x = x2.data_ptr<float>();
  if (avx2) {
    kernels::avx2::prepare_activations(x, rows, w.in_features, w.bits, w.group_size,
                                       p.values.data(), p.group_sums.data());
  } else {
    kernels::portable::prepare_activations(x, rows, w.in_features, w.bits, w.group_size,
                                           p.values.data(), p.group_sums.data());
  }
  p.view = {p.values.data(), p.group_sums.data(), rows};
  return p;
}

void dequantize_block(const PackedWeightView& w, bool avx2, int64_t n_begin, int64_t n_end,
                      float* out) {
  if (avx2) {
    kernels::avx2::dequantize_rows(w, n_begin, n_end, out);
  } else {
    kernels::portable::dequantize_rows(w, n_begin, n_end, out);
  }
}

// Large batches: dequantize blocks of rows (in the prepared order) and let
// BLAS multiply; the dequantization cost is shared by all input rows.
void linear_with_blas(const PackedWeightView& w, const Prepared& x, bool avx2, float* y) {
  const int64_t N = w.out_features, K = w.in_features, M = x.view.rows;
  const int64_t block = std::max<int64_t>(4, std::min<int64_t>(N, kBlasBlockBytes / (4 * K)));
  auto weights = at::empty({block, K}, at::kFloat);
  auto activations = at::from_blob(const_cast<float*>(x.view.values), {M, K}, at::kFloat);
  auto transposed = at::empty({N, M}, at::kFloat);
  for (int64_t n0 = 0; n0 < N; n0 += block) {
    const int64_t rows = std::min(block, N - n0);
    float* buffer = weights.data_ptr<float>();
    at::parallel_for(0, rows, 4, [&](int64_t begin, int64_t end) {
      dequantize_block(w, avx2, n0 + begin, n0 + end, buffer + begin * K);
    });
    auto out_rows = transposed.narrow(0, n0, rows);
    at::mm_out(out_rows, weights.narrow(0, 0, rows), activations.t());
  }
  at::from_blob(y, {M, N}, at::kFloat).copy_(transposed.t());
}

// Small batches on AVX2: dequantize kTileRows output rows into a per-thread
// tile and multiply it with every input row.
void linear_tiled_avx2(const PackedWeightView& w, const Prepared& x, float* y) {
  const int64_t N = w.out_features, K = w.in_features;
  at::parallel_for(0, (N + kTileRows - 1) / kTileRows, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> tile(size_t(kTileRows * K));
    std::vector<float> partial(size_t(kTileRows * x.view.rows * 8));
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n0 = t * kTileRows;
      const int64_t rows = std::min(kTileRows, N - n0);
      kernels::avx2::dequantize_rows(w, n0, n0 + rows, tile.data());
      kernels::avx2::tile_times_activations(tile.data(), rows, x.view.values, x.view.rows, K,
                                            partial.data(), y + n0, N);
    }
  });
}

}  // namespace

QuantizedWeight quantize_weight(const at::Tensor& weight, int bits, int group_size) {
  check_affine_format(bits, group_size);
  if (weight.dim() != 2) {
    throw std::invalid_argument("quantize_weight: the weight must be 2-D [out, in], got " +
                                shape_of(weight));
  }
  const auto dtype = weight.scalar_type();
  if (dtype != at::kFloat && dtype != at::kHalf && dtype != at::kBFloat16) {
    throw std::invalid_argument("quantize_weight: the weight must be float32, float16 or bfloat16, got " +
                                std::string(c10::toString(dtype)));
  }
  const int64_t rows = weight.size(0), columns = weight.size(1);
  if (columns % group_size != 0) {
    throw std::invalid_argument("quantize_weight: the input size " + std::to_string(columns) +
                                " is not a multiple of the group size " + std::to_string(group_size));
  }
  at::NoGradGuard no_grad;
  // float32 holds every float16/bfloat16 value exactly, and MLX computes in float.
  const at::Tensor w = weight.detach().to(at::kFloat).contiguous();
  if (!at::isfinite(w).all().item<bool>()) {
    throw std::invalid_argument("quantize_weight: the weight has NaN or infinite values");
  }
  QuantizedWeight q;
  q.bits = bits;
  q.group_size = group_size;
  q.packed = at::empty({rows, packed_words(columns, bits)}, at::kInt);
  auto scales = at::empty({rows, columns / group_size}, at::kFloat);
  auto biases = at::empty({rows, columns / group_size}, at::kFloat);
  const float* source = w.data_ptr<float>();
  auto* packed = reinterpret_cast<uint32_t*>(q.packed.data_ptr<int32_t>());
  float* s = scales.data_ptr<float>();
  float* b = biases.data_ptr<float>();
  const int64_t groups = columns / group_size;
  const int64_t words = packed_words(columns, bits);
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / columns), [&](int64_t begin, int64_t end) {
    affine_quantize_rows(source + begin * columns, end - begin, columns, bits, group_size,
                         packed + begin * words, s + begin * groups, b + begin * groups);
  });
  // Rounded to the weight's dtype as MLX stores them (round to nearest even).
  q.scales = scales.to(dtype);
  q.biases = biases.to(dtype);
  return q;
}

at::Tensor dequantize_weight(const at::Tensor& packed, const at::Tensor& scales,
                             const at::Tensor& biases, int64_t bits, int64_t group_size) {
  const auto p = packed.contiguous(), s = scales.contiguous(), b = biases.contiguous();
  PackedWeightView view = view_of(p, s, b, bits, group_size);
  view.packed = reinterpret_cast<const uint32_t*>(p.data_ptr<int32_t>());
  view.scales = s.data_ptr();
  view.biases = b.data_ptr();
  auto out = at::empty({view.out_features, view.in_features}, at::kFloat);
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, view.out_features, 16, [&](int64_t begin, int64_t end) {
    // Natural order: the portable kernel (the AVX2 one writes the permuted order).
    kernels::portable::dequantize_rows(view, begin, end, dst + begin * view.in_features);
  });
  return out;
}

namespace {

at::Tensor linear(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scales, const at::Tensor& biases,
                  const c10::optional<at::Tensor>& bias, int64_t bits, int64_t group_size, bool int8_activations) {
  const auto p = packed.contiguous(), s = scales.contiguous(), b = biases.contiguous();
  PackedWeightView w = view_of(p, s, b, bits, group_size);
  w.packed = reinterpret_cast<const uint32_t*>(p.data_ptr<int32_t>());
  w.scales = s.data_ptr();
  w.biases = b.data_ptr();
  require(x.dim() >= 1 && x.size(-1) == w.in_features,
          "the input " + shape_of(x) + " must end in the layer's " +
              std::to_string(w.in_features) + " input features");
  require(at::isFloatingType(x.scalar_type()) && x.device().is_cpu(),
          "the input must be a floating-point CPU tensor");
  if (bias && bias->defined()) {
    require(bias->dim() == 1 && bias->size(0) == w.out_features,
            "bias " + shape_of(*bias) + " must have " + std::to_string(w.out_features) + " entries");
  }
  at::NoGradGuard no_grad;
  const auto x2 = x.reshape({-1, w.in_features}).to(at::kFloat).contiguous();
  const int64_t M = x2.size(0), N = w.out_features;
  auto y = at::empty({M, N}, at::kFloat);
  if (M > 0) {
    detail::PathChoice path = detail::choose_path(w.bits, M);
    float* out = y.data_ptr<float>();
    const detail::GemvChoice gemv =
        int8_activations && M == 1 ? detail::choose_int8_gemv(w.bits, w.group_size, w.in_features) : detail::GemvChoice{};
    if (int8_activations && path.avx2 && path.path != detail::Path::Int8) path = detail::int8_path();
    if (gemv.rows) {
      kernels::int8_gemv::linear(w, x2.data_ptr<float>(), gemv.rows, gemv.chunk_bytes, out);
    } else if (path.path == detail::Path::Int8) {
      kernels::int8::linear(w, x2.data_ptr<float>(), M, path.multiply, out);
    } else {
      const Prepared prepared = prepare(x2, w, path.avx2);
      switch (path.path) {
        case detail::Path::DequantizedBlas: linear_with_blas(w, prepared, path.avx2, out); break;
        case detail::Path::Avx2Tiles: linear_tiled_avx2(w, prepared, out); break;
        default:
          at::parallel_for(0, N, 16, [&](int64_t begin, int64_t end) {
            if (path.avx2) {
              kernels::avx2::linear_rows(w, prepared.view, begin, end, out);
            } else {
              kernels::portable::linear_rows(w, prepared.view, begin, end, out);
            }
          });
          break;
      }
    }
    if (bias && bias->defined()) y.add_(bias->to(at::kFloat));
  }
  auto sizes = x.sizes().vec();
  sizes.back() = N;
  return y.view(sizes).to(x.scalar_type());
}

}  // namespace

at::Tensor quantized_linear(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scales,
                            const at::Tensor& biases, const c10::optional<at::Tensor>& bias, int64_t bits,
                            int64_t group_size) {
  return linear(x, packed, scales, biases, bias, bits, group_size, false);
}

at::Tensor quantized_linear_int8(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scales,
                                 const at::Tensor& biases, const c10::optional<at::Tensor>& bias, int64_t bits,
                                 int64_t group_size) {
  return linear(x, packed, scales, biases, bias, bits, group_size, true);
}

std::string active_int8_kernel(int bits, int group_size, int64_t in_features, int64_t rows) {
  if (rows == 1) {
    const detail::GemvChoice gemv = detail::choose_int8_gemv(bits, group_size, in_features);
    if (gemv.rows) return gemv.name;
  }
  const detail::PathChoice path = detail::choose_path(bits, rows);
  return path.avx2 ? detail::int8_path().name : path.name;
}

std::string runtime_library_path() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&runtime_library_path), &info) == 0 || !info.dli_fname) return "";
  return info.dli_fname;
}

}  // namespace mcompress::runtime
