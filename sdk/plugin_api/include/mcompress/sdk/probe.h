#pragma once
// Probes measure a model; the host runs them on the baseline and after every
// stage. Plugins may add probes next to their passes (PassRegistry::add_probe);
// a recipe enables them by name in `probes.enabled`.
#include <torch/script.h>

#include <map>
#include <string>

#include "mcompress/sdk/data.h"
#include "mcompress/sdk/export.h"
#include "mcompress/sdk/progress.h"
#include "mcompress/sdk/version.h"

namespace mcompress {

// Layout frozen for SDK 1.x (version.h).
struct ProbeInfo {
  std::string name;     // unique among probes, e.g. "energy"
  std::string summary;  // one line for `mcompress plugins`
};
static_assert(sizeof(ProbeInfo) == 64, "ProbeInfo's layout is frozen for SDK 1.x");

// What a probe measures. Owned by the host; valid during Probe::measure only.
struct ProbeContext {
  const torch::jit::Module* model = nullptr;      // the model to measure; do not modify
  const torch::jit::Module* reference = nullptr;  // the original model (the baseline)
  const Dataset* eval = nullptr;                  // held-out data; may be null
  torch::Tensor example_input;                    // one sample, batch 1
  Progress* progress = nullptr;
  Logger* log = nullptr;
};

// Instances are owned by the host's registry for the life of the process.
class MCOMPRESS_SDK_API Probe {
 public:
  virtual ~Probe();
  virtual const ProbeInfo& info() const = 0;
  // Metric name -> value. Prefix names with the probe's name ("energy_joules")
  // so they cannot collide with other probes'. Throwing (anything) fails the
  // stage being measured: its record says which probe threw what, the run
  // keeps the previous model and ends with exit code 1.
  virtual std::map<std::string, double> measure(const ProbeContext& context) const = 0;
#if MCOMPRESS_SDK_TARGET_MINOR >= 1
  // SDK 1.1: the interface named `id` this probe implements, or nullptr (the
  // default); see Pass::extension.
  virtual const void* extension(const char* id) const;
#endif
};

}  // namespace mcompress
