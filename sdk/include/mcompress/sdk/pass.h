#pragma once
// The C++ side of the plugin interface, used after the host has checked the
// plugin's mcompress_plugin_info (plugin_abi.h).
#include <torch/script.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "mcompress/sdk/data.h"
#include "mcompress/sdk/export.h"
#include "mcompress/sdk/pass_info.h"
#include "mcompress/sdk/probe.h"
#include "mcompress/sdk/progress.h"

namespace mcompress {

// Everything a pass runs on. Owned by the host; valid only during Pass::run.
struct PassContext {
  // The model to compress: a private deep copy made by the host for this
  // stage. The pass modifies it in place or assigns another module to it; the
  // host takes whatever `model` holds when run returns.
  torch::jit::Module model;
  // The model before the first stage, and the teacher if the pass needs one.
  // Shared with the host: read them, never modify them.
  torch::jit::Module original;
  std::optional<torch::jit::Module> teacher;
  // Example input of batch 1 (shape and dtype of one sample).
  torch::Tensor example_input;

  DatasetPtr train;        // null unless the recipe provides training data
  DatasetPtr validation;   // held out from training data: model selection during training
  DatasetPtr calibration;  // a small subset of train for statistics; null if absent
  DatasetPtr eval;         // test data used by the probes; passes must not train or select on it

  const Params* params = nullptr;  // resolved, validated against PassInfo::params
  uint64_t seed = 0;               // derive all randomness from it
  int threads = 1;                 // intra-op threads the host has set

  Logger* log = nullptr;            // never null during run
  Progress* progress = nullptr;     // never null during run
  std::filesystem::path artifact_dir;  // exists; files written here are kept with the stage
  std::string stage_name;
};

// What a pass did, in a structured form kept in the stage record.
struct PassResult {
  std::string summary;    // one line for the terminal
  nlohmann::json stats = nlohmann::json::object();  // anything else (per-layer tables, counts)
};

// A compression pass. Instances are created by the plugin at registration and
// owned by the host's registry for the life of the process; run may be called
// many times (one per stage), so keep no per-run state in members.
class MCOMPRESS_SDK_API Pass {
 public:
  virtual ~Pass();
  virtual const PassInfo& info() const = 0;
  // Throws on failure (mcompress::Error preferred); the host reports it with
  // plugin, pass and stage names and keeps the previous model.
  virtual PassResult run(PassContext& context) const = 0;
};

// Passed to a plugin's register function; implemented by the host.
class MCOMPRESS_SDK_API PassRegistry {
 public:
  virtual ~PassRegistry();
  // Takes ownership. A name already registered is an error reported by the host.
  virtual void add(std::unique_ptr<Pass> pass) = 0;
  // Takes ownership of a probe; same naming rule as passes.
  virtual void add_probe(std::unique_ptr<Probe> probe) = 0;
};

}  // namespace mcompress
