// Passes and a probe that break the rules of the plugin boundary:
//   hostile_throw_int      throws 42
//   hostile_throw_foreign  throws another library's type (foreign_errors.cpp)
//   hostile_forward_throws returns a model whose forward throws
//   hostile_output_shape   returns a model with three outputs instead of the model's
//   hostile_new_head       the same, declared with PassOutputPolicy (an SDK 1.1 extension)
//   hostile_lender         zeroes the original and the teacher it was lent, in place
//   hostile_read_lent      records what the original and the teacher it was lent sum to
//   hostile_probe_throws   a probe that throws 42
#include <mcompress/sdk/pass_extensions.h>
#include <mcompress/sdk/plugin.h>

void throw_foreign_error();

namespace {

mcompress::PassInfo describe(const char* name, const char* summary, bool teacher = false) {
  mcompress::PassInfo info;
  info.name = name;
  info.summary = summary;
  info.needs.teacher = teacher;
  return info;
}

class HostilePass : public mcompress::Pass {
 public:
  explicit HostilePass(mcompress::PassInfo info) : info_(std::move(info)) {}
  const mcompress::PassInfo& info() const override { return info_; }

 private:
  mcompress::PassInfo info_;
};

class ThrowInt final : public HostilePass {
 public:
  ThrowInt() : HostilePass(describe("hostile_throw_int", "throws 42")) {}
  mcompress::PassResult run(mcompress::PassContext&) const override { throw 42; }
};

class ThrowForeign final : public HostilePass {
 public:
  ThrowForeign() : HostilePass(describe("hostile_throw_foreign", "throws another library's type")) {}
  mcompress::PassResult run(mcompress::PassContext&) const override {
    throw_foreign_error();
    return {};
  }
};

// A module of its own class whose forward is `body` (TorchScript).
torch::jit::Module scripted(const char* class_name, const std::string& body) {
  torch::jit::Module module(class_name);
  module.define("def forward(self, x):\n" + body + "\n");
  module.eval();
  return module;
}

class ForwardThrows final : public HostilePass {
 public:
  ForwardThrows() : HostilePass(describe("hostile_forward_throws", "returns a model that cannot run")) {}
  mcompress::PassResult run(mcompress::PassContext& ctx) const override {
    ctx.model = scripted("HostileBroken", "    return torch.zeros([3]).view([7])");
    return {"replaced the model", {}};
  }
};

torch::jit::Module three_outputs() {
  return scripted("HostileThreeOutputs", "    return torch.zeros([x.size(0), 3])");
}

class OutputShape final : public HostilePass {
 public:
  OutputShape() : HostilePass(describe("hostile_output_shape", "returns three outputs per sample")) {}
  mcompress::PassResult run(mcompress::PassContext& ctx) const override {
    ctx.model = three_outputs();
    return {"three outputs now", {}};
  }
};

class NewHead final : public HostilePass {
 public:
  NewHead() : HostilePass(describe("hostile_new_head", "returns three outputs per sample, on purpose")) {
    policy_.may_change_output_shape = true;
  }
  mcompress::PassResult run(mcompress::PassContext& ctx) const override {
    ctx.model = three_outputs();
    return {"three outputs now, as declared", {}};
  }
  const void* extension(const char* id) const override {
    return mcompress::is_extension(id, mcompress::kPassOutputPolicyId) ? &policy_ : nullptr;
  }

 private:
  mcompress::PassOutputPolicy policy_;
};

double parameter_sum(const torch::jit::Module& model) {
  double sum = 0;
  for (const auto& p : model.parameters()) sum += p.abs().sum().item<double>();
  return sum;
}

class Lender final : public HostilePass {
 public:
  Lender() : HostilePass(describe("hostile_lender", "zeroes the models it was lent", true)) {}
  mcompress::PassResult run(mcompress::PassContext& ctx) const override {
    const nlohmann::json before = {{"original_sum", parameter_sum(ctx.original)},
                                   {"teacher_sum", parameter_sum(*ctx.teacher)}};
    torch::NoGradGuard no_grad;
    for (auto p : ctx.original.parameters()) p.zero_();
    for (auto p : ctx.teacher->parameters()) p.zero_();
    return {"zeroed the original and the teacher", before};
  }
};

class ReadLent final : public HostilePass {
 public:
  ReadLent() : HostilePass(describe("hostile_read_lent", "sums the models it was lent", true)) {}
  mcompress::PassResult run(mcompress::PassContext& ctx) const override {
    return {"summed the original and the teacher",
            {{"original_sum", parameter_sum(ctx.original)}, {"teacher_sum", parameter_sum(*ctx.teacher)}}};
  }
};

class ProbeThrows final : public mcompress::Probe {
 public:
  const mcompress::ProbeInfo& info() const override { return info_; }
  std::map<std::string, double> measure(const mcompress::ProbeContext&) const override { throw 42; }

 private:
  mcompress::ProbeInfo info_{"hostile_probe_throws", "throws 42"};
};

void register_passes(mcompress::PassRegistry& registry) {
  registry.add(std::make_unique<ThrowInt>());
  registry.add(std::make_unique<ThrowForeign>());
  registry.add(std::make_unique<ForwardThrows>());
  registry.add(std::make_unique<OutputShape>());
  registry.add(std::make_unique<NewHead>());
  registry.add(std::make_unique<Lender>());
  registry.add(std::make_unique<ReadLent>());
  registry.add_probe(std::make_unique<ProbeThrows>());
}

}  // namespace

MCOMPRESS_PLUGIN("hostile_passes", "1.0.0", register_passes)
