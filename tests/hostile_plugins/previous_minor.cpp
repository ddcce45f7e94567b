// A plugin built for SDK 1.0 (MCOMPRESS_SDK_TARGET_MINOR=0): its pass has no
// extension() in its vtable, so a host that asked it for one would call past
// the end of the vtable. It scales every parameter by `factor`, so a run shows
// it really ran.
#include <mcompress/sdk/plugin.h>

static_assert(MCOMPRESS_SDK_TARGET_MINOR == 0, "this plugin is built for SDK 1.0");

namespace {

class ScaleParameters final : public mcompress::Pass {
 public:
  ScaleParameters() {
    info_.name = "sdk10_scale";
    info_.summary = "multiplies every parameter by a factor (a plugin built for SDK 1.0)";
    info_.params.push_back(mcompress::ParamSpec::Float("factor", 1.0, 0.0, 10.0, "the factor"));
  }
  const mcompress::PassInfo& info() const override { return info_; }
  mcompress::PassResult run(mcompress::PassContext& ctx) const override {
    torch::NoGradGuard no_grad;
    const double factor = ctx.params->get_float("factor");
    for (auto p : ctx.model.parameters()) p.mul_(factor);
    return {"scaled every parameter", {{"factor", factor}}};
  }

 private:
  mcompress::PassInfo info_;
};

void register_passes(mcompress::PassRegistry& registry) {
  registry.add(std::make_unique<ScaleParameters>());
}

}  // namespace

MCOMPRESS_PLUGIN("previous_minor", "1.0.0", register_passes)
