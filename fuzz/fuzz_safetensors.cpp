// libFuzzer target: the safetensors reader on arbitrary bytes, and the writer
// on whatever the reader accepts: writing what was read and reading it back
// must give the same tensors (names, dtypes, shapes, bytes) and metadata.
// mcompress::Error is the expected answer to bad input.
#include <ATen/Parallel.h>
#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string_view>

#include "mcompress/sdk/error.h"
#include "mcompress/formats/safetensors.h"

namespace {

bool same_bytes(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const size_t bytes = size_t(a.numel()) * a.element_size();
  return bytes == 0 || std::memcmp(a.data_ptr(), b.data_ptr(), bytes) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  at::set_num_threads(1);  // one core per fuzzer; no thread pool to start
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mcompress::SafetensorsContents contents;
  try {
    contents = mcompress::parse_safetensors(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const mcompress::Error&) {
    return 0;
  }
  std::ostringstream written;
  const int64_t bytes = mcompress::write_safetensors(written, contents.entries, contents.metadata);
  if (bytes != int64_t(written.str().size())) __builtin_trap();
  const auto again = mcompress::parse_safetensors(written.str());  // must not throw
  if (again.metadata != contents.metadata || again.entries.size() != contents.entries.size()) __builtin_trap();
  for (size_t i = 0; i < again.entries.size(); ++i) {
    const auto& a = contents.entries[i];
    const auto& b = again.entries[i];
    if (a.name != b.name || a.dtype != b.dtype || !same_bytes(a.tensor, b.tensor)) __builtin_trap();
  }
  return 0;
}
