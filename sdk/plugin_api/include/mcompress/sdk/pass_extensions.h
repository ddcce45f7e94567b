#pragma once
// Extensions: capabilities a pass declares beyond the SDK 1.0 interface,
// returned by Pass::extension(id) (version.h says why they are not virtual
// functions). Each is a plain struct owned by the pass that starts with its
// own size, so the host reads a field only when the plugin's struct has it;
// ids end in the struct's revision.
//
//   class HeadSwapPass : public mcompress::Pass {
//     const void* extension(const char* id) const override {
//       return mcompress::is_extension(id, mcompress::kPassOutputPolicyId) ? &policy_ : nullptr;
//     }
//     mcompress::PassOutputPolicy policy_ = [] {
//       mcompress::PassOutputPolicy p;
//       p.may_change_output_shape = true;
//       return p;
//     }();
//   };
#include <cstdint>
#include <cstring>

namespace mcompress {

inline bool is_extension(const char* id, const char* wanted) {
  return id && std::strcmp(id, wanted) == 0;
}

// SDK 1.1. What the host may expect of the model a pass returns. Without it
// the host requires the returned model to run on the example input and give
// an output of the shape the previous model gave.
inline constexpr const char* kPassOutputPolicyId = "mcompress.pass.output_policy.1";
struct PassOutputPolicy {
  uint32_t struct_size = sizeof(PassOutputPolicy);
  // The pass changes the output's shape on purpose (a new classifier head,
  // another vocabulary): the host checks only that the result runs.
  bool may_change_output_shape = false;
};

}  // namespace mcompress
