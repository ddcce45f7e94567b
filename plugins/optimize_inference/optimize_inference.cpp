// optimize_inference: the last stage of a pipeline whose model will be
// deployed on CPU - freezes the model, folds BatchNorm into the preceding
// convolutions and stores activations and weights channels-last
// (inference_optimization.h). The result is a plain TorchScript file; it can
// no longer be trained, so put this stage after every training stage.
#include <mcompress/models/inference_optimization.h>
#include <mcompress/sdk/plugin.h>

#include <memory>

namespace {

mcompress::PassInfo make_info() {
  mcompress::PassInfo info;
  info.name = "optimize_inference";
  info.summary = "CPU deployment: freeze, fold BatchNorm into convolutions, channels-last layout";
  info.kind = mcompress::PassKind::Other;
  info.params = {mcompress::ParamSpec::Bool(
      "channels_last", true, "store conv weights and 4-D activations channels-last (faster oneDNN convolutions)")};
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
    context.model = mcompress::optimize_for_cpu_inference(context.model, options);
    const int64_t left = count_ops(context.model, "aten::batch_norm");
    mcompress::PassResult result;
    result.stats = {{"channels_last", options.channels_last}, {"batch_norms_left", left}};
    result.summary = std::string("frozen for CPU inference") + (options.channels_last ? ", channels-last" : "") +
                     (left == 0 ? "; every BatchNorm folded" : "; " + std::to_string(left) + " BatchNorm ops left");
    return result;
  }
};

void register_passes(mcompress::PassRegistry& registry) {
  registry.add(std::make_unique<OptimizeInference>());
}

}  // namespace

MCOMPRESS_PLUGIN("optimize_inference", "1.0.0", register_passes)
