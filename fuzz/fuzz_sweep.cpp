// libFuzzer target: sweep text -> parse (candidates, grids, objective), then
// name every candidate's directory and shard the sweep as `compare` does.
// RecipeError and mcompress::Error are the expected answers to bad input.
#include <cstddef>
#include <cstdint>
#include <string>

#include "mcompress/framework/sweep/sweep.h"
#include "mcompress/sdk/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto sweep = mcompress::parse_sweep(text, "/nonexistent/mcompress-fuzz/sweep.yaml");
    size_t sharded = 0;
    for (const auto& candidate : sweep.candidates) (void)candidate.directory();
    for (int shard = 0; shard < 3; ++shard) sharded += mcompress::shard_of(sweep.candidates, shard, 3).size();
    if (sharded != sweep.candidates.size()) __builtin_trap();  // shards must cover the sweep exactly
  } catch (const mcompress::RecipeError& e) {
    if (e.diagnostics().empty()) __builtin_trap();
  } catch (const mcompress::Error&) {
  }
  return 0;
}
