// An example third-party pass: it leaves the model unchanged and writes the
// size and L2 norm of every parameter to artifacts/weights.json.
#include <fstream>

#include <mcompress/sdk/plugin.h>

namespace {

class WeightReport final : public mcompress::Pass {
 public:
  WeightReport() {
    info_.name = "weight_report";
    info_.summary = "writes every parameter's shape and L2 norm to artifacts/weights.json";
    info_.kind = mcompress::PassKind::Other;
    info_.params.push_back(mcompress::ParamSpec::Bool("include_buffers", false, "also list buffers"));
  }
  const mcompress::PassInfo& info() const override { return info_; }

  mcompress::PassResult run(mcompress::PassContext& ctx) const override {
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& p : ctx.model.named_parameters()) {
      layers.push_back({{"name", p.name}, {"shape", p.value.sizes().vec()},
                        {"l2", p.value.norm().item<double>()}});
    }
    if (ctx.params->get_bool("include_buffers")) {
      for (const auto& b : ctx.model.named_buffers()) {
        layers.push_back({{"name", b.name}, {"shape", b.value.sizes().vec()}});
      }
    }
    std::ofstream(ctx.artifact_dir / "weights.json") << layers.dump(2);
    return {"listed " + std::to_string(layers.size()) + " tensors", {{"tensors", layers.size()}}};
  }

 private:
  mcompress::PassInfo info_;
};

void register_passes(mcompress::PassRegistry& registry) {
  registry.add(std::make_unique<WeightReport>());
}

}  // namespace

MCOMPRESS_PLUGIN("weight_report", "0.1.0", register_passes)
