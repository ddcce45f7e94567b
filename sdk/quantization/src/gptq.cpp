#include "mcompress/quantization/gptq.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "mcompress/runtime/affine_quantization.h"
#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

// Damping tries: the requested fraction, then 10x, 100x, 1000x and 10000x it.
constexpr int kMaxDampingRetries = 4;

std::string shape_of(const at::Tensor& t) { return fmt::format("[{}]", fmt::join(t.sizes(), ", ")); }

bool is_storage_dtype(c10::ScalarType dtype) {
  return dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16;
}

// `value` as it reads back once stored in `dtype` (round to nearest even,
// like Tensor::to).
float stored(float value, c10::ScalarType dtype) {
  switch (dtype) {
    case at::kHalf: return float(c10::Half(value));
    case at::kBFloat16: return float(c10::BFloat16(value));
    default: return value;
  }
}

struct InverseFactor {
  at::Tensor upper;  // float64 upper Cholesky factor of (H + damping)⁻¹
  double damp = 0;
  int retries = 0;
};

InverseFactor inverse_hessian_factor(const at::Tensor& hessian, double damp) {
  const double mean_diagonal = hessian.diagonal().mean().item<double>();
  for (int attempt = 0; attempt <= kMaxDampingRetries; ++attempt) {
    const double fraction = damp * std::pow(10.0, attempt);
    at::Tensor damped = hessian.clone();
    damped.diagonal().add_(fraction * mean_diagonal);
    auto [lower, info] = at::linalg_cholesky_ex(damped);
    if (info.item<int64_t>() != 0) continue;
    auto [upper, inverse_info] = at::linalg_cholesky_ex(at::cholesky_inverse(lower), /*upper=*/true);
    if (inverse_info.item<int64_t>() != 0 || !at::isfinite(upper).all().item<bool>()) continue;
    return {upper, fraction, attempt};
  }
  throw Error(fmt::format(
      "GPTQ: the Hessian is not positive definite even with {} of its mean diagonal ({}) added; the "
      "calibration inputs are degenerate (too few rows, or values so large they overflow): give more "
      "or other calibration data, or quantize this layer by rounding to nearest",
      damp * std::pow(10.0, kMaxDampingRetries), mean_diagonal));
}

void check_inputs(const at::Tensor& weight, const at::Tensor& hessian, int bits, int group_size,
                  const GptqOptions& options) {
  try {
    runtime::check_affine_format(bits, group_size);
  } catch (const std::invalid_argument& e) {
    throw Error(fmt::format("GPTQ: {}", e.what()));
  }
  if (!weight.defined() || weight.dim() != 2 || !is_storage_dtype(weight.scalar_type())) {
    throw Error(fmt::format("GPTQ: the weight must be a 2-D [out, in] float32, float16 or bfloat16 tensor, got {}",
                            weight.defined() ? shape_of(weight) + " " + c10::toString(weight.scalar_type())
                                             : "an undefined tensor"));
  }
  const int64_t columns = weight.size(1);
  if (!hessian.defined() || hessian.dim() != 2 || hessian.size(0) != columns || hessian.size(1) != columns) {
    throw Error(fmt::format("GPTQ: the Hessian must be [in, in] = [{0}, {0}] for the weight {1}, got {2}: "
                            "accumulate it from this layer's inputs (HessianAccumulator)",
                            columns, shape_of(weight), hessian.defined() ? shape_of(hessian) : "none"));
  }
  if (!hessian.is_floating_point()) {
    throw Error(fmt::format("GPTQ: the Hessian must be a floating-point tensor, got {}",
                            c10::toString(hessian.scalar_type())));
  }
  if (columns % group_size != 0) {
    throw Error(fmt::format("GPTQ: the input size {} is not a multiple of the group size {}; use a group "
                            "size that divides it, or leave the layer in floating point (MLX skips it too)",
                            columns, group_size));
  }
  if (!(options.damp > 0) || !std::isfinite(options.damp)) {
    throw Error(fmt::format("GPTQ: damp must be a positive fraction of the Hessian's mean diagonal "
                            "(0.01 is usual), got {}", options.damp));
  }
  if (options.block_size < 1) {
    throw Error(fmt::format("GPTQ: the block size must be at least 1, got {}", options.block_size));
  }
  if (options.storage_dtype && !is_storage_dtype(*options.storage_dtype)) {
    throw Error(fmt::format("GPTQ: scales and biases are stored as float32, float16 or bfloat16, not {}",
                            c10::toString(*options.storage_dtype)));
  }
}

}  // namespace

HessianAccumulator::HessianAccumulator(int64_t in_features)
    : sum_(at::zeros({in_features, in_features}, at::kDouble)), rows_(at::zeros({1}, at::kLong)) {}

void HessianAccumulator::add(const at::Tensor& inputs) { add_to(sum_, rows_, inputs); }

void HessianAccumulator::add_to(const at::Tensor& sum, const at::Tensor& row_count, const at::Tensor& inputs) {
  const int64_t n = sum.size(0);
  if (inputs.dim() < 1 || inputs.size(-1) != n) {
    throw Error(fmt::format("GPTQ: layer inputs {} must end in the layer's {} input features",
                            shape_of(inputs), n));
  }
  at::NoGradGuard no_grad;
  const at::Tensor rows = inputs.detach().reshape({-1, n}).to(at::kFloat);
  if (rows.size(0) == 0) return;
  at::Tensor mutable_sum = sum, mutable_count = row_count;
  mutable_sum.add_(at::mm(rows.t(), rows));
  mutable_count.add_(rows.size(0));
}

int64_t HessianAccumulator::in_features() const { return sum_.size(0); }

int64_t HessianAccumulator::rows() const { return rows_.item<int64_t>(); }

at::Tensor HessianAccumulator::hessian() const {
  const int64_t n = rows();
  return n == 0 ? at::zeros_like(sum_) : sum_ * (2.0 / double(n));
}

runtime::QuantizedWeight gptq_quantize_weight(const at::Tensor& weight, const at::Tensor& hessian, int bits,
                                              int group_size, const GptqOptions& options, GptqReport* report) {
  check_inputs(weight, hessian, bits, group_size, options);
  at::NoGradGuard no_grad;
  const c10::ScalarType storage = options.storage_dtype.value_or(weight.scalar_type());
  const int64_t rows = weight.size(0), columns = weight.size(1), groups = columns / group_size;

  // Working copies: float32 holds every float16/bfloat16 weight exactly.
  at::Tensor w = weight.detach().to(at::kFloat).contiguous().clone();
  at::Tensor h = hessian.detach().to(at::kDouble).contiguous().clone();
  if (!at::isfinite(w).all().item<bool>()) {
    throw Error("GPTQ: the weight has NaN or infinite values; nothing can be quantized from them");
  }
  if (!at::isfinite(h).all().item<bool>()) {
    throw Error("GPTQ: the Hessian has NaN or infinite values: the calibration inputs overflowed (run "
                "calibration in float32) or were not finite");
  }

  // An input that was always 0 says nothing about its weights: they get a
  // neutral Hessian entry and are zeroed, as they never affect the output.
  const at::Tensor dead = h.diagonal() == 0;
  const int64_t dead_columns = dead.sum().item<int64_t>();
  if (dead_columns == columns) {
    throw Error("GPTQ: the Hessian is zero: no calibration input reached this layer (or every input was 0); "
                "give calibration data that runs through it, or round it to nearest");
  }
  h.diagonal().masked_fill_(dead, 1.0);
  w.index_fill_(1, dead.nonzero().view(-1), 0.0f);

  const InverseFactor factor = inverse_hessian_factor(h, options.damp);
  const at::Tensor u = factor.upper.to(at::kFloat).contiguous();
  const int64_t block = (std::max<int64_t>(options.block_size, 1) + group_size - 1) / group_size * group_size;

  std::vector<uint8_t> codes(size_t(rows * columns));
  at::Tensor scales = at::empty({rows, groups}, at::kFloat);
  at::Tensor biases = at::empty({rows, groups}, at::kFloat);
  float* w_data = w.data_ptr<float>();
  const float* u_data = u.data_ptr<float>();
  float* scale_data = scales.data_ptr<float>();
  float* bias_data = biases.data_ptr<float>();
  const float n_bins = float((1 << bits) - 1);
  std::atomic<int64_t> unstorable_group{-1};

  for (int64_t first = 0; first < columns; first += block) {
    const int64_t count = std::min(block, columns - first);
    at::Tensor block_errors = at::empty({rows, count}, at::kFloat);
    float* error_data = block_errors.data_ptr<float>();
    // Rows are independent given U: each runs the column loop on its own.
    at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        float* row = w_data + r * columns + first;
        float* row_errors = error_data + r * count;
        float scale = 1, bias = 0;
        for (int64_t i = 0; i < count; ++i) {
          const int64_t column = first + i;
          if (column % group_size == 0) {
            // The group's weights as the errors of every earlier column have left them.
            const runtime::GroupParams p = runtime::affine_group_params(row + i, group_size, bits);
            scale = stored(p.scale, storage);
            bias = stored(p.bias, storage);
            const int64_t g = r * groups + column / group_size;
            scale_data[g] = scale;
            bias_data[g] = bias;
            if (!std::isfinite(scale) || scale == 0 || !std::isfinite(bias)) {
              unstorable_group = g;
              scale = 1;
              bias = 0;
            }
          }
          const float value = row[i];
          const float code = std::min(std::max(std::rint((value - bias) / scale), 0.0f), n_bins);
          codes[size_t(r * columns + column)] = uint8_t(code);
          const float* u_row = u_data + column * columns + first;
          const float error = (value - (code * scale + bias)) / u_row[i];
          row_errors[i] = error;
          for (int64_t k = i + 1; k < count; ++k) row[k] -= error * u_row[k];
        }
      }
    });
    const int64_t rest = columns - first - count;
    if (rest > 0) {
      at::Tensor later = w.narrow(1, first + count, rest);
      later.addmm_(block_errors, u.narrow(0, first, count).narrow(1, first + count, rest), 1.0, -1.0);
    }
  }
  if (const int64_t g = unstorable_group.load(); g >= 0) {
    throw Error(fmt::format("GPTQ: the scale/bias of row {} group {} is 0 or not finite once stored as {} "
                            "(scale {}, bias {}): the weights are out of {}'s range; store scales in "
                            "float32 or bfloat16",
                            g / groups, g % groups, c10::toString(storage), scale_data[g], bias_data[g],
                            c10::toString(storage)));
  }

  runtime::QuantizedWeight q;
  q.bits = bits;
  q.group_size = group_size;
  q.packed = at::empty({rows, runtime::packed_words(columns, bits)}, at::kInt);
  auto* packed = reinterpret_cast<uint32_t*>(q.packed.data_ptr<int32_t>());
  const int64_t words = runtime::packed_words(columns, bits);
  for (int64_t r = 0; r < rows; ++r) {
    runtime::pack_codes(codes.data() + r * columns, columns, bits, packed + r * words);
  }
  // Exact: every value already is one the storage dtype holds.
  q.scales = scales.to(storage);
  q.biases = biases.to(storage);
  if (report) *report = {factor.damp, factor.retries, dead_columns};
  return q;
}

double output_mse(const at::Tensor& weight, const at::Tensor& approximation, const at::Tensor& hessian) {
  at::NoGradGuard no_grad;
  const at::Tensor delta = approximation.detach().to(at::kDouble) - weight.detach().to(at::kDouble);
  return (delta.mm(hessian.detach().to(at::kDouble)) * delta).sum().item<double>() / (2.0 * double(weight.size(0)));
}

}  // namespace mcompress
