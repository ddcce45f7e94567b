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
#include "mcompress/sdk/version.h"

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

// What a pass did, in a structured form kept in the stage record. Layout
// frozen for SDK 1.x (version.h): a plugin fills it and the host reads it.
struct PassResult {
  std::string summary;    // one line for the terminal
  nlohmann::json stats = nlohmann::json::object();  // anything else (per-layer tables, counts)
};
static_assert(sizeof(PassResult) == 48, "PassResult's layout is frozen for SDK 1.x");

// A compression pass. Instances are created by the plugin at registration and
// owned by the host's registry for the life of the process; run may be called
// many times (one per stage), so keep no per-run state in members.
class MCOMPRESS_SDK_API Pass {
 public:
  virtual ~Pass();
  virtual const PassInfo& info() const = 0;
  // Throws on failure (mcompress::Error preferred; anything thrown is caught);
  // the host reports it with plugin, pass and stage names and keeps the
  // previous model. So does a returned model that does not run on the example
  // input or whose output shape changed (unless PassOutputPolicy allows it).
  virtual PassResult run(PassContext& context) const = 0;
#if MCOMPRESS_SDK_TARGET_MINOR >= 1
  // SDK 1.1: the interface named `id` this pass implements (an extension
  // struct of pass_extensions.h, owned by the pass), or nullptr (the default).
  // Capabilities added after SDK 1.1 arrive this way, never as new virtual
  // functions; the host asks only passes of plugins built for SDK >= 1.1.
  virtual const void* extension(const char* id) const;
#endif
};

// Passed to a plugin's register function; implemented by the host.
class MCOMPRESS_SDK_API PassRegistry {
 public:
  virtual ~PassRegistry();
  // Takes ownership. A name already registered, by this plugin or another, is
  // an error reported by the host, which then refuses the plugin.
  virtual void add(std::unique_ptr<Pass> pass) = 0;
  // Takes ownership of a probe; same naming rule as passes.
  virtual void add_probe(std::unique_ptr<Probe> probe) = 0;
#if MCOMPRESS_SDK_TARGET_MINOR >= 1
  // SDK 1.1: registration failed (MCOMPRESS_PLUGIN calls this with the message
  // of whatever the register function threw); the host refuses the plugin.
  virtual void fail(const std::string& message) = 0;
#endif
};

}  // namespace mcompress
