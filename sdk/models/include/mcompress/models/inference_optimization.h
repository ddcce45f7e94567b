#pragma once
// Turning a model into what runs fastest on a CPU while staying a plain
// TorchScript file that PyTorch loads anywhere: frozen (parameters become
// constants, so BatchNorm folds into the preceding convolution, dropout and
// training-only branches disappear) and, optionally, with 4-D activations
// and conv weights in channels-last layout, which oneDNN convolutions run
// without reordering every activation.
//
// With `onednn`, it goes as far as torch.jit.optimize_for_inference: oneDNN
// convolutions whose activations stay in oneDNN's blocked layout between
// layers, with conv+relu and conv+add fused. That pass keeps reordered weights
// as graph constants, which cannot be saved; here they are plain tensors that
// the module reorders once when it is loaded (so the file stays a plain
// TorchScript archive that PyTorch loads). ONNX export needs the default form.
#include <torch/script.h>

#include <string>

#include "mcompress/sdk/export.h"

namespace mcompress {

struct InferenceOptions {
  bool channels_last = true;  // 4-D inputs are converted at the start of forward
  // oneDNN layout and fusions (above); falls back to the form `channels_last`
  // says when the optimised graph holds an op that cannot be saved.
  bool onednn = false;
  // Without `onednn`: convolutions and the classifier do not go through
  // BLAS, whose threading would decide the speed. Every 2-D convolution with
  // a constant float weight calls oneDNN's directly (PyTorch would run small
  // ones at batch 1 as im2col + BLAS), and a classifier on pooled features
  // becomes a oneDNN 1x1 convolution whose weight is reordered once when the
  // file loads. Not for ONNX export.
  bool without_blas = false;
  // With `onednn`: also build the form that `channels_last` and
  // `without_blas` give, time both on this input (one batch of the model's
  // input; a few alternating rounds, at the threads in effect) and keep the
  // faster. oneDNN's layout wins where convolutions dominate; where
  // elementwise work between them does (EfficientNet's SiLU and
  // squeeze-excitation), entering and leaving it costs more than it saves.
  // Undefined: no timing, the oneDNN form.
  torch::Tensor timing_input;
};

// What the timing of `InferenceOptions::timing_input` found.
struct InferenceFormTiming {
  std::string chosen;  // "onednn" or "channels_last" (the other form); empty when nothing was timed
  double onednn_ms = 0, channels_last_ms = 0;  // median per call
};

// A frozen, optimised copy of `model` (in eval mode; `model` is unchanged).
// It computes the same outputs up to float rounding; it has no parameters
// (they are constants now), so it can no longer be trained. Throws
// mcompress::Error when the model cannot be frozen (e.g. it has no forward).
MCOMPRESS_SDK_API torch::jit::Module optimize_for_cpu_inference(const torch::jit::Module& model,
                                                                const InferenceOptions& options = {},
                                                                InferenceFormTiming* timing = nullptr);

}  // namespace mcompress
