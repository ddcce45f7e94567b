// optimize_inference: the last stage of a pipeline whose model will be
// deployed on CPU - freezes the model, folds BatchNorm into the preceding
// convolutions and runs them through oneDNN with fused activations and
// residual adds, as torch.jit.optimize_for_inference does, in a form that can
// be saved (or, with onednn off, stores activations and weights
// channels-last; inference_optimization.h). The result is a plain TorchScript file; it can
// no longer be trained, so put this stage after every training stage.
#include <mcompress/models/inference_optimization.h>
#include <mcompress/sdk/plugin.h>

#include <fmt/format.h>

#include <memory>
#include <string>

namespace {

mcompress::PassInfo make_info() {
  mcompress::PassInfo info;
  info.name = "optimize_inference";
  info.summary = "CPU deployment: freeze, fold BatchNorm into convolutions, channels-last layout";
  info.kind = mcompress::PassKind::Other;
  info.params = {
      mcompress::ParamSpec::Bool("onednn", true,
                                 "oneDNN convolutions in oneDNN's layout with fused relu/add, weights reordered"
                                 " when the model loads (as fast as torch.jit.optimize_for_inference; not for"
                                 " ONNX export)"),
      mcompress::ParamSpec::Bool("choose_by_timing", true,
                                 "with onednn: build the channels-last form too, time both at batch 1 on the"
                                 " example input and keep the faster (the stats give both times)"),
      mcompress::ParamSpec::Bool("channels_last", true,
                                 "without onednn (or where its graph cannot be saved): store conv weights and 4-D"
                                 " activations channels-last")};
  return info;
}

// Freezing inlines everything, so the frozen forward graph holds every op.
int64_t count_ops(const torch::jit::Module& model, const char* op) {
  int64_t count = 0;
  for (const auto* node : model.get_method("forward").graph()->nodes()) count += node->kind().toQualString() == std::string(op);
  return count;
}

class OptimizeInference final : public mcompress::Pass {
 public:
  const mcompress::PassInfo& info() const override {
    static const mcompress::PassInfo pass_info = make_info();
    return pass_info;
  }

  mcompress::PassResult run(mcompress::PassContext& context) const override {
    mcompress::InferenceOptions options;
    options.channels_last = context.params->get_bool("channels_last");
    options.onednn = context.params->get_bool("onednn");
    if (context.params->get_bool("choose_by_timing") && context.example_input.defined())
      options.timing_input = context.example_input;
    mcompress::InferenceFormTiming timing;
    context.model = mcompress::optimize_for_cpu_inference(context.model, options, &timing);
    const int64_t left = count_ops(context.model, "aten::batch_norm");
    // oneDNN's layout: its convolutions; the channels-last form has at most
    // the classifier as one, and calls oneDNN's convolution on plain tensors.
    const int64_t onednn_convolutions = count_ops(context.model, "prim::mkldnn_convolution");
    const int64_t direct_convolutions = count_ops(context.model, "aten::mkldnn_convolution");
    const bool onednn_form = timing.chosen.empty() ? onednn_convolutions > 0 : timing.chosen == "onednn";
    const bool channels_last = options.channels_last && !onednn_form;
    mcompress::PassResult result;
    result.stats = {{"channels_last", channels_last},
                    {"onednn_convolutions", onednn_convolutions},
                    {"batch_norms_left", left}};
    std::string form;
    if (onednn_form) {
      form = ", " + std::to_string(onednn_convolutions) + " oneDNN convolutions";
    } else {
      if (options.onednn && timing.chosen.empty()) form = " (oneDNN form not saveable)";
      if (channels_last) form += ", channels-last";
      if (direct_convolutions > 0) form += fmt::format(", {} convolutions calling oneDNN's", direct_convolutions);
    }
    if (!timing.chosen.empty()) {
      result.stats["form_chosen_by_timing"] = timing.chosen;
      result.stats["onednn_ms"] = timing.onednn_ms;
      result.stats["channels_last_ms"] = timing.channels_last_ms;
      form += fmt::format(" (faster at batch 1: oneDNN {:.3f} ms, channels-last {:.3f} ms)", timing.onednn_ms,
                          timing.channels_last_ms);
    }
    result.summary = "frozen for CPU inference" + form +
                     (left == 0 ? "; every BatchNorm folded" : "; " + std::to_string(left) + " BatchNorm ops left");
    return result;
  }
};

void register_passes(mcompress::PassRegistry& registry) {
  registry.add(std::make_unique<OptimizeInference>());
}

}  // namespace

MCOMPRESS_PLUGIN("optimize_inference", "1.0.0", register_passes)
