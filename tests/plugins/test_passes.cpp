// Passes for runner tests: they do something observable and simple.
//   test_damage  zeroes every parameter (accuracy falls to chance): gate tests
//   test_explode throws: failure reporting
//   test_crash   kills the process when MCOMPRESS_TEST_CRASH=1: resume tests
//   test_needs_teacher  records the teacher's output sum: teacher plumbing
//   test_probe   a probe added by a plugin
// Misbehaving plugins for --isolate (each misbehaves only when its pass runs):
//   test_segfault raises SIGSEGV, test_abort calls std::abort,
//   test_leak allocates memory without bound, test_hang sleeps forever
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "mcompress/sdk/error.h"
#include "mcompress/sdk/plugin.h"

namespace {

class SimplePass : public mcompress::Pass {
 public:
  explicit SimplePass(mcompress::PassInfo info) : info_(std::move(info)) {}
  const mcompress::PassInfo& info() const override { return info_; }

 private:
  mcompress::PassInfo info_;
};

mcompress::PassInfo describe(const char* name, const char* summary) {
  mcompress::PassInfo info;
  info.name = name;
  info.summary = summary;
  info.kind = mcompress::PassKind::Other;
  return info;
}

class DamagePass final : public SimplePass {
 public:
  DamagePass() : SimplePass(describe("test_damage", "zeroes all parameters")) {}
  mcompress::PassResult run(mcompress::PassContext& ctx) const override {
    torch::NoGradGuard no_grad;
    for (auto p : ctx.model.parameters()) p.zero_();
    return {"zeroed all parameters", {}};
  }
};

class ExplodePass final : public SimplePass {
 public:
  ExplodePass() : SimplePass(describe("test_explode", "always throws")) {}
  mcompress::PassResult run(mcompress::PassContext&) const override {
    throw mcompress::Error("the test pass exploded on purpose");
  }
};

class CrashPass final : public SimplePass {
 public:
  CrashPass() : SimplePass(describe("test_crash", "kills the process if MCOMPRESS_TEST_CRASH=1")) {}
  mcompress::PassResult run(mcompress::PassContext&) const override {
    const char* crash = std::getenv("MCOMPRESS_TEST_CRASH");
    if (crash && std::string(crash) == "1") kill(getpid(), SIGKILL);
    return {"did not crash", {}};
  }
};

class SegfaultPass final : public SimplePass {
 public:
  SegfaultPass() : SimplePass(describe("test_segfault", "raises SIGSEGV")) {}
  mcompress::PassResult run(mcompress::PassContext&) const override {
    std::raise(SIGSEGV);
    return {"survived SIGSEGV", {}};
  }
};

class AbortPass final : public SimplePass {
 public:
  AbortPass() : SimplePass(describe("test_abort", "calls std::abort")) {}
  mcompress::PassResult run(mcompress::PassContext&) const override {
    std::abort();
  }
};

class LeakPass final : public SimplePass {
 public:
  LeakPass() : SimplePass(describe("test_leak", "allocates memory without bound")) {}
  mcompress::PassResult run(mcompress::PassContext& ctx) const override {
    ctx.log->info("leaking 64 MB blocks");
    std::vector<char*> blocks;
    constexpr size_t kBlock = 64u << 20;
    for (;;) {
      char* block = static_cast<char*>(std::malloc(kBlock));
      if (!block) throw mcompress::Error("out of memory");
      std::memset(block, 1, kBlock);  // resident, not just reserved
      blocks.push_back(block);
      // Paced, so a limit is noticed before the machine runs short.
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
};

class HangPass final : public SimplePass {
 public:
  HangPass() : SimplePass(describe("test_hang", "sleeps forever")) {}
  mcompress::PassResult run(mcompress::PassContext& ctx) const override {
    ctx.log->info("sleeping forever");
    for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
  }
};

class TeacherPass final : public SimplePass {
 public:
  TeacherPass() : SimplePass([] {
    auto info = describe("test_needs_teacher", "reads the teacher's output");
    info.needs.teacher = true;
    info.params.push_back(mcompress::ParamSpec::Float("weight", 1.0, 0.0, 2.0, "unused"));
    return info;
  }()) {}
  mcompress::PassResult run(mcompress::PassContext& ctx) const override {
    if (!ctx.teacher) throw mcompress::Error("no teacher given");
    torch::NoGradGuard no_grad;
    auto out = ctx.teacher->forward({ctx.example_input}).toTensor();
    return {"teacher ran", {{"teacher_output_sum", out.sum().item<double>()}}};
  }
};

// A probe from a plugin: counts the model's parameter tensors.
class TensorCountProbe final : public mcompress::Probe {
 public:
  const mcompress::ProbeInfo& info() const override { return info_; }
  std::map<std::string, double> measure(const mcompress::ProbeContext& ctx) const override {
    double tensors = 0;
    for (const auto& p : ctx.model->parameters()) tensors += p.defined();
    return {{"test_probe_tensors", tensors}};
  }

 private:
  mcompress::ProbeInfo info_{"test_probe", "counts parameter tensors"};
};

void register_passes(mcompress::PassRegistry& registry) {
  registry.add_probe(std::make_unique<TensorCountProbe>());
  registry.add(std::make_unique<DamagePass>());
  registry.add(std::make_unique<ExplodePass>());
  registry.add(std::make_unique<CrashPass>());
  registry.add(std::make_unique<TeacherPass>());
  registry.add(std::make_unique<SegfaultPass>());
  registry.add(std::make_unique<AbortPass>());
  registry.add(std::make_unique<LeakPass>());
  registry.add(std::make_unique<HangPass>());
}

}  // namespace

MCOMPRESS_PLUGIN("test_passes", "1.0.0", register_passes)
