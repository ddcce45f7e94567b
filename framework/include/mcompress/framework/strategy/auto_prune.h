#pragma once
// The strategy selector for pruning: the built-in `auto_prune` pass ranks the
// loaded pruning criteria for *this* model with cheap probes (each prunes a
// copy at the target using a small calibration subset; the copies are scored
// on held-out data without fine-tuning and timed at batch 1), runs the best
// one fully, and records why it chose it and what every probe showed. Scores
// within each other's 95% interval tie, and the faster copy wins
// (strategy/criterion_choice.h).
#include <memory>

namespace mcompress {

class Pass;
class PluginHost;

// The pass keeps a reference to `plugins`, which must outlive it.
std::unique_ptr<Pass> make_auto_prune_pass(const PluginHost& plugins);

// Adds the host's own passes (auto_prune) to `plugins`.
void register_builtin_passes(PluginHost& plugins);

}  // namespace mcompress
