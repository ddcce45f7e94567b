#pragma once
// GPTQ for a model's linear layers: collecting each layer's input Hessian by
// running the model on calibration batches, and quantizing layer by layer.
//
// The inputs are recorded by the layers' own code: on a private copy of the
// model (new class types, tensors shared and never written), each planned
// layer's `torch.linear(x, self.weight, b)` is preceded by a call that adds
// x's rows to that layer's HessianAccumulator. So whatever the model's code
// does (layers inside branches, Mixtral experts that see only the tokens
// routed to them, a layer called twice), a layer's Hessian has exactly the
// rows it was fed. The caller's model is not changed.
#include <torch/script.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mcompress/quantization/gptq.h"
#include "mcompress/quantization/quantized_model.h"
#include "mcompress/sdk/export.h"

namespace mcompress {

class Progress;

// One pass over `batches` (model inputs: token ids [B, T] for language models,
// whatever forward takes for others) with the model as it is: the Hessian
// accumulator of each linear layer at `paths`. Runs in eval mode without
// gradients. Throws mcompress::Error for a path that is not a linear layer,
// no batches, or a batch the model fails on (naming it).
MCOMPRESS_SDK_API std::map<std::string, HessianAccumulator> collect_linear_input_hessians(
    const torch::jit::Module& model, const std::vector<std::string>& paths,
    const std::vector<torch::Tensor>& batches);

struct GptqCalibrationOptions {
  GptqOptions gptq;  // storage_dtype none: each layer's weight dtype
  // true: layers are quantized in rounds following the model's data flow
  // (q/k/v, then o_proj, then gate/up, then down, ...); each round's Hessians
  // are collected with every earlier round's layers already quantized, so a
  // layer learns to compensate for the errors its inputs carry. Costs one
  // pass over the batches per round. false: one pass with the floating
  // model for every layer (faster; the paper's sequential variant is better).
  bool sequential = true;
  Progress* progress = nullptr;  // one step per layer when set
};

struct GptqLayerResult {
  std::string path;
  // The layer's GPTQ weight, for QuantizationOptions::precomputed; none when
  // GPTQ did not run on it (`note` says why; quantize_linear_layers then
  // skips it with its reason, or rounds it to nearest).
  std::optional<runtime::QuantizedWeight> weight;
  std::string note;             // also says when the damping had to be raised
  bool skipped = false;         // unquantizable: quantize_linear_layers skips it with its reason
  int64_t calibration_rows = 0; // input rows its Hessian was accumulated from
  int round = 0;                // its round of the sequential order (0 when not sequential)
  GptqReport report;
  // Mean squared output error (output_mse) on the calibration inputs the
  // layer saw, for GPTQ and for round-to-nearest of the same weight.
  double output_mse = 0;
  double rtn_output_mse = 0;
};

struct GptqModelResult {
  std::vector<GptqLayerResult> layers;  // one per planned layer, in plan order
  int64_t calibration_passes = 0;       // passes over the batches (one per round)
};

// GPTQ weights for the planned layers of `model` (bits and group size from
// each plan entry), with Hessians from
// `batches`. Layers quantize_linear_layers would skip (unquantizable_layers)
// are left out; a layer no calibration row reached gets no weight and is
// rounded to nearest. The model is not changed. Throws mcompress::Error
// naming the layer when GPTQ fails on it, and like quantize_linear_layers for
// a bad plan.
MCOMPRESS_SDK_API GptqModelResult gptq_quantize_layers(const torch::jit::Module& model,
                                                       const std::vector<LayerQuantization>& plan,
                                                       const std::vector<torch::Tensor>& batches,
                                                       const GptqCalibrationOptions& options = {});

}  // namespace mcompress
