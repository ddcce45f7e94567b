#pragma once
// How closely a compressed model follows a reference (the original or a
// teacher): what users check before trusting accuracy alone.
#include <torch/script.h>

#include <cstdint>

#include "mcompress/sdk/data.h"
#include "mcompress/sdk/export.h"
#include "mcompress/sdk/progress.h"

namespace mcompress {

struct Fidelity {
  double top1_agreement = 0.0;  // fraction of predictions equal to the reference's
  double mean_kl = 0.0;         // mean KL(p_reference || p_model) in nats per prediction
};

// Over `data` in eval mode without gradients. Outputs are logits whose last
// dimension is the class (or vocabulary); every other position counts as one
// prediction, so sequence models are compared per token.
MCOMPRESS_SDK_API Fidelity evaluate_fidelity(const torch::jit::Module& model,
                                             const torch::jit::Module& reference,
                                             const Dataset& data, int64_t batch_size,
                                             Progress& progress);

}  // namespace mcompress
