#pragma once
// GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for
// Generative Pre-trained Transformers", 2022) producing MLX's affine format,
// for every width MLX has (2, 3, 4, 5, 6 and 8 bits).
//
// Round-to-nearest quantizes each weight on its own. GPTQ quantizes the
// columns of a weight [out, in] one after another and moves each column's
// rounding error onto the columns not yet quantized, weighted by the inverse
// Hessian of the layer's inputs, so that the layer's outputs on calibration
// inputs X change as little as possible (it minimises ‖X Wᵀ − X Ŵᵀ‖ column
// by column). The result is an ordinary runtime::QuantizedWeight: it loads,
// runs (quantized_linear) and exports to MLX exactly like round-to-nearest
// output, since only the chosen codes, scales and biases differ.
//
// The MLX twist: each group's scale and bias are MLX's own formula
// (affine_group_params in mcompress/runtime/affine_quantization.h), computed
// from the group's weights as GPTQ has updated them when it reaches the
// group's first column, and rounded to the storage dtype before any code of
// the group is chosen, so the stored values dequantize to exactly what GPTQ
// assumed. No activation reordering ("act-order"): MLX's groups are runs of
// consecutive columns with one scale each, which a permutation would break.
#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <optional>

#include "mcompress/runtime/quantized_linear.h"
#include "mcompress/sdk/export.h"

namespace mcompress {

// H = (2/N) Σ x xᵀ over the N input rows (x ∈ R^in) a linear layer was fed:
// the Hessian of its squared output error. Each add()'s xᵀx is computed in
// float32 by BLAS and summed into a float64 total, so millions of rows
// accumulate without float32 rounding drift.
class MCOMPRESS_SDK_API HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t in_features);

  // inputs [..., in_features], any floating dtype; every leading index is a row.
  // Throws mcompress::Error when the last dimension is not in_features.
  void add(const at::Tensor& inputs);

  int64_t in_features() const;
  int64_t rows() const;
  // float64 [in, in]; all zeros while no row has been added.
  at::Tensor hessian() const;

  // The running sums add() updates in place: float64 Σ x xᵀ [in, in] and the
  // int64 row count [1]. Model calibration hands them to the model's code,
  // which adds to them with add_to.
  const at::Tensor& sum() const { return sum_; }
  const at::Tensor& row_count() const { return rows_; }
  static void add_to(const at::Tensor& sum, const at::Tensor& row_count, const at::Tensor& inputs);

 private:
  at::Tensor sum_;
  at::Tensor rows_;
};

struct GptqOptions {
  // Added to H's diagonal, as a fraction of its mean diagonal, before it is
  // inverted (the paper's 1%). When the damped H is still not positive
  // definite, GPTQ retries with ten times more, up to four times, and says
  // so in GptqReport.
  double damp = 0.01;
  // Columns whose error is propagated with a rank-1 update per column before
  // one matrix product moves the block's errors onto the later columns (the
  // paper's lazy batch updates). Rounded up to a multiple of the group size,
  // so a group never straddles two blocks.
  int64_t block_size = 128;
  // Dtype of the stored scales and biases (float32, float16 or bfloat16);
  // none: the weight's dtype, as MLX stores them.
  std::optional<c10::ScalarType> storage_dtype;
};

struct GptqReport {
  double damp = 0;          // fraction of the mean diagonal that was finally added
  int damping_retries = 0;  // times the Cholesky factorization failed and damping grew tenfold
  int64_t dead_columns = 0; // inputs that were always zero: their weights were zeroed
};

// Quantizes `weight` [out, in] (float32, float16 or bfloat16, finite) with
// GPTQ given the Hessian [in, in] of its inputs (HessianAccumulator). Steps:
// columns whose Hessian diagonal is 0 (inputs that were always 0) get 1 on
// the diagonal and their weights zeroed; H is damped; U = the upper Cholesky
// factor of H⁻¹ (computed in float64); then, block by block, each column is
// quantized with its group's MLX scale/bias, its error divided by U's
// diagonal is subtracted from the rest of the block (row of U), and after the
// block, from all later columns with one matrix product. The weight updates
// run in float32, like the paper's. Throws mcompress::Error for mismatched
// shapes, a non-finite weight or Hessian, an all-zero Hessian, an
// unsupported bits/group size, an input size that is not a multiple of the
// group size, or an H that stays indefinite after the damping retries.
MCOMPRESS_SDK_API runtime::QuantizedWeight gptq_quantize_weight(const at::Tensor& weight,
                                                                const at::Tensor& hessian, int bits,
                                                                int group_size,
                                                                const GptqOptions& options = {},
                                                                GptqReport* report = nullptr);

// The mean squared output error (1 / (N·out)) Σ ‖(W − Ŵ) x‖² over the N
// inputs whose Hessian (2/N) Σ x xᵀ is `hessian`, i.e. tr(Δ H Δᵀ) / (2·out)
// with Δ = W − Ŵ: how far the layer's outputs move on those inputs.
MCOMPRESS_SDK_API double output_mse(const at::Tensor& weight, const at::Tensor& approximation,
                                    const at::Tensor& hessian);

}  // namespace mcompress
