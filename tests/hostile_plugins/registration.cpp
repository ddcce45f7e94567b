// Plugins whose registration must be refused, one per definition:
//   HOSTILE_REGISTER_THROWS  the register function throws an int
//   HOSTILE_TWIN_PASSES      two passes named hostile_twin
//   HOSTILE_TWIN_PROBES      two probes named hostile_twin_probe
#include <mcompress/sdk/plugin.h>

namespace {

class NamedPass final : public mcompress::Pass {
 public:
  explicit NamedPass(const char* name) {
    info_.name = name;
    info_.summary = "does nothing";
  }
  const mcompress::PassInfo& info() const override { return info_; }
  mcompress::PassResult run(mcompress::PassContext&) const override { return {"nothing", {}}; }

 private:
  mcompress::PassInfo info_;
};

class NamedProbe final : public mcompress::Probe {
 public:
  explicit NamedProbe(const char* name) : info_{name, "measures nothing"} {}
  const mcompress::ProbeInfo& info() const override { return info_; }
  std::map<std::string, double> measure(const mcompress::ProbeContext&) const override { return {}; }

 private:
  mcompress::ProbeInfo info_;
};

void register_passes(mcompress::PassRegistry& registry) {
#if defined(HOSTILE_REGISTER_THROWS)
  registry.add(std::make_unique<NamedPass>("registered_before_the_throw"));
  throw 42;
#elif defined(HOSTILE_TWIN_PASSES)
  registry.add(std::make_unique<NamedPass>("hostile_twin"));
  registry.add(std::make_unique<NamedPass>("hostile_twin"));
#elif defined(HOSTILE_TWIN_PROBES)
  registry.add_probe(std::make_unique<NamedProbe>("hostile_twin_probe"));
  registry.add_probe(std::make_unique<NamedProbe>("hostile_twin_probe"));
#endif
}

}  // namespace

#if defined(HOSTILE_REGISTER_THROWS)
MCOMPRESS_PLUGIN("register_throws", "1.0.0", register_passes)
#elif defined(HOSTILE_TWIN_PASSES)
MCOMPRESS_PLUGIN("twin_passes", "1.0.0", register_passes)
#else
MCOMPRESS_PLUGIN("twin_probes", "1.0.0", register_passes)
#endif
