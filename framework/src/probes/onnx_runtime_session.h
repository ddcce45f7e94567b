#pragma once
// ONNX Runtime, where it is installed, for the latency probe: its C API is
// loaded at run time (dlopen), so mcompress builds and runs without it.
//
// Which library: the path in MCOMPRESS_ONNXRUNTIME_LIBRARY, else
// libonnxruntime.so.1 on the normal library search path. A library that is
// absent, does not load, or is older than ONNX Runtime 1.13 (the C API
// version requested) is "not present": nothing throws.
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

namespace mcompress {

// A loaded ONNX Runtime: its API table and one environment, both kept for the
// life of the process (the library is never unloaded: its thread pools and
// statics outlive any one session).
class OnnxRuntimeLibrary;

struct OnnxRuntimeAvailability {
  std::shared_ptr<const OnnxRuntimeLibrary> library;  // null when not present
  std::string version;       // GetVersionString(), e.g. "1.30.0", when present
  std::string library_path;  // what was loaded, or tried
  std::string why_not;       // when not present: why, in a sentence
};

// The library the environment names (above), loaded once per path; later
// calls return the same result. Never throws.
OnnxRuntimeAvailability load_onnx_runtime();

// Whether MCOMPRESS_ONNXRUNTIME is 0 (or false/off/no): the latency probe then
// leaves ONNX Runtime alone.
bool onnx_runtime_disabled_by_environment();

// For a record's device info: "1.30.0 (PATH): the latency probe times models in
// it too", or why it does not.
std::string onnx_runtime_description();

// One ONNX model in ONNX Runtime's CPU execution provider, with every graph
// optimisation on: a float32 input, float32 outputs (what mcompress's ONNX
// export writes).
class OnnxRuntimeSession {
 public:
  // `model_bytes`: a ModelProto (encode_onnx_model); `input_name` and
  // `output_names` name its graph's input and outputs. Throws mcompress::Error
  // with ONNX Runtime's message when the model does not load.
  OnnxRuntimeSession(std::shared_ptr<const OnnxRuntimeLibrary> library, const std::string& model_bytes,
                     std::string input_name, std::vector<std::string> output_names, int intra_op_threads);
  ~OnnxRuntimeSession();
  OnnxRuntimeSession(const OnnxRuntimeSession&) = delete;
  OnnxRuntimeSession& operator=(const OnnxRuntimeSession&) = delete;

  // The first output for `input` (float32 on the CPU, made contiguous when it
  // is not). The tensor holds ONNX Runtime's buffer and releases it when freed.
  // Throws mcompress::Error with ONNX Runtime's message when the run fails.
  torch::Tensor run(const torch::Tensor& input) const;

 private:
  std::shared_ptr<const OnnxRuntimeLibrary> library_;
  std::string input_name_;
  std::vector<std::string> output_names_;
  std::vector<const char*> output_name_pointers_;
  void* session_options_ = nullptr;  // OrtSessionOptions*
  void* session_ = nullptr;          // OrtSession*
  void* cpu_memory_ = nullptr;       // OrtMemoryInfo* describing the inputs' buffers
};

}  // namespace mcompress
