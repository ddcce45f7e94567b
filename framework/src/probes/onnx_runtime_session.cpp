#include "probes/onnx_runtime_session.h"

#include <dlfcn.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>

#include <fmt/format.h>

#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

constexpr const char* kLibraryVariable = "MCOMPRESS_ONNXRUNTIME_LIBRARY";
constexpr const char* kSwitchVariable = "MCOMPRESS_ONNXRUNTIME";
#ifdef __APPLE__
constexpr const char* kDefaultLibrary = "libonnxruntime.1.dylib";
#else
constexpr const char* kDefaultLibrary = "libonnxruntime.so.1";
#endif

// The C API version requested: ONNX Runtime 1.13's (ORT_API_VERSION 13), the
// header the positions below were read from. Every function used here is
// older than that, and a newer library serves every older version (1.30
// serves 1 to 30), so any ONNX Runtime from 1.13 on loads.
constexpr uint32_t kApiVersion = 13;

// Positions in OrtApi, a struct of function pointers whose order never changes
// (new functions are only appended), per onnxruntime_c_api.h.
enum ApiIndex : size_t {
  kGetErrorMessage = 2,
  kCreateEnv = 3,
  kCreateSessionFromArray = 8,
  kRun = 9,
  kCreateSessionOptions = 10,
  kSetSessionGraphOptimizationLevel = 23,
  kSetIntraOpNumThreads = 24,
  kCreateTensorWithDataAsOrtValue = 49,
  kGetTensorMutableData = 51,
  kGetDimensionsCount = 61,
  kGetDimensions = 62,
  kGetTensorTypeAndShape = 65,
  kCreateCpuMemoryInfo = 69,
  kReleaseEnv = 92,
  kReleaseStatus = 93,
  kReleaseMemoryInfo = 94,
  kReleaseSession = 95,
  kReleaseValue = 96,
  kReleaseTensorTypeAndShapeInfo = 99,
  kReleaseSessionOptions = 100,
  kApiEntriesUsed = 101,  // entries 0..100 are read
};

// Constants of onnxruntime_c_api.h's enums, passed as int (their C type).
constexpr int kLoggingLevelError = 3;            // ORT_LOGGING_LEVEL_ERROR: its warnings would interleave with ours
constexpr int kGraphOptimizationAll = 99;        // ORT_ENABLE_ALL, what ONNX Runtime deployments use
constexpr int kDeviceAllocator = 0;              // OrtDeviceAllocator
constexpr int kMemTypeDefault = 0;               // OrtMemTypeDefault
constexpr int kTensorElementFloat = 1;           // ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT

// OrtApiBase: the library's entry point (OrtGetApiBase) returns one.
struct OrtApiBase {
  const void* (*GetApi)(uint32_t version);  // an OrtApi, or null when `version` is newer than the library
  const char* (*GetVersionString)();
};

// OrtApi read as what it is laid out as: function pointers, one per entry.
struct OrtApiTable {
  void* entries[kApiEntriesUsed];
};

// Function types, each as onnxruntime_c_api.h declares it (handles as void*,
// enums as int). A non-null OrtStatus* result is an error.
using Status = void*;
using GetErrorMessageFn = const char* (*)(const void* status);
using CreateEnvFn = Status (*)(int log_level, const char* log_id, void** env);
using CreateSessionFromArrayFn = Status (*)(const void* env, const void* model, size_t model_bytes, const void* options,
                                            void** session);
using RunFn = Status (*)(void* session, const void* run_options, const char* const* input_names,
                         const void* const* inputs, size_t input_count, const char* const* output_names,
                         size_t output_count, void** outputs);
using CreateSessionOptionsFn = Status (*)(void** options);
using SetGraphOptimizationLevelFn = Status (*)(void* options, int level);
using SetIntraOpNumThreadsFn = Status (*)(void* options, int threads);
using CreateTensorWithDataFn = Status (*)(const void* memory_info, void* data, size_t data_bytes, const int64_t* shape,
                                          size_t shape_length, int element_type, void** value);
using GetTensorMutableDataFn = Status (*)(void* value, void** data);
using GetDimensionsCountFn = Status (*)(const void* shape_info, size_t* count);
using GetDimensionsFn = Status (*)(const void* shape_info, int64_t* dimensions, size_t count);
using GetTensorTypeAndShapeFn = Status (*)(const void* value, void** shape_info);
using CreateCpuMemoryInfoFn = Status (*)(int allocator_type, int memory_type, void** memory_info);
using ReleaseFn = void (*)(void* object);

std::string library_variable_value() {
  const char* value = std::getenv(kLibraryVariable);
  return value ? std::string(value) : std::string();
}

}  // namespace

class OnnxRuntimeLibrary {
 public:
  OnnxRuntimeLibrary(void* handle, const OrtApiTable* api) : handle_(handle), api_(api) {}

  template <typename Function>
  Function function(ApiIndex index) const {
    return reinterpret_cast<Function>(api_->entries[index]);
  }

  void release(ApiIndex index, void* object) const {
    if (object) function<ReleaseFn>(index)(object);
  }

  // Throws mcompress::Error with ONNX Runtime's message when `status` is an error.
  void check(Status status, const std::string& what) const {
    if (!status) return;
    const std::string message = function<GetErrorMessageFn>(kGetErrorMessage)(status);
    release(kReleaseStatus, status);
    throw Error(fmt::format("ONNX Runtime could not {}: {}", what, message));
  }

  void* environment = nullptr;  // OrtEnv*, kept for the life of the process

 private:
  void* handle_;  // from dlopen; never closed
  const OrtApiTable* api_;
};

namespace {

OnnxRuntimeAvailability load_library(const std::string& path, bool named_by_user) {
  OnnxRuntimeAvailability result;
  result.library_path = path;
  // RTLD_LOCAL: its symbols (a protobuf of its own among them) stay out of
  // LibTorch's way.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* error = dlerror();
    result.why_not =
        named_by_user
            ? fmt::format("{} names {}, which does not load: {}", kLibraryVariable, path, error ? error : "")
            : fmt::format("{} is not on the library search path (set {} to its path)", path, kLibraryVariable);
    return result;
  }
  using GetApiBaseFn = const OrtApiBase* (*)();
  const auto get_api_base = reinterpret_cast<GetApiBaseFn>(dlsym(handle, "OrtGetApiBase"));
  const OrtApiBase* base = get_api_base ? get_api_base() : nullptr;
  if (!base) {
    dlclose(handle);
    result.why_not = fmt::format("{} is not ONNX Runtime (it has no OrtGetApiBase)", path);
    return result;
  }
  const std::string version = base->GetVersionString ? base->GetVersionString() : "unknown";
  const auto* api = static_cast<const OrtApiTable*>(base->GetApi(kApiVersion));
  if (!api) {
    dlclose(handle);
    result.why_not = fmt::format("ONNX Runtime {} ({}) is older than 1.13, the oldest whose C API mcompress uses",
                                 version, path);
    return result;
  }
  auto library = std::make_shared<OnnxRuntimeLibrary>(handle, api);
  try {
    library->check(library->function<CreateEnvFn>(kCreateEnv)(kLoggingLevelError, "mcompress", &library->environment),
                   "create its environment");
  } catch (const Error& error) {
    result.why_not = fmt::format("ONNX Runtime {} ({}): {}", version, path, error.what());
    return result;  // the library stays loaded: it may have started threads
  }
  result.library = std::move(library);
  result.version = version;
  return result;
}

}  // namespace

OnnxRuntimeAvailability load_onnx_runtime() {
  static std::mutex mutex;
  static std::map<std::string, OnnxRuntimeAvailability> loaded;  // by path
  const std::string named = library_variable_value();
  const std::string path = named.empty() ? kDefaultLibrary : named;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = loaded.find(path);
  if (found == loaded.end()) found = loaded.emplace(path, load_library(path, !named.empty())).first;
  return found->second;
}

bool onnx_runtime_disabled_by_environment() {
  const char* value = std::getenv(kSwitchVariable);
  if (!value) return false;
  const std::string setting = value;
  return setting == "0" || setting == "false" || setting == "off" || setting == "no";
}

std::string onnx_runtime_description() {
  if (onnx_runtime_disabled_by_environment())
    return fmt::format("not used: {}={} turns it off", kSwitchVariable, std::getenv(kSwitchVariable));
  const auto runtime = load_onnx_runtime();
  if (!runtime.library) return fmt::format("not present: {}", runtime.why_not);
  return fmt::format("{} ({}): the latency probe also times models in it (onnxruntime_latency_b<N>_*)",
                     runtime.version, runtime.library_path);
}

OnnxRuntimeSession::OnnxRuntimeSession(std::shared_ptr<const OnnxRuntimeLibrary> library,
                                       const std::string& model_bytes, std::string input_name,
                                       std::vector<std::string> output_names, int intra_op_threads)
    : library_(std::move(library)), input_name_(std::move(input_name)), output_names_(std::move(output_names)) {
  if (!library_) throw Error("ONNX Runtime is not present");
  if (output_names_.empty()) throw Error("an ONNX model for ONNX Runtime needs at least one output");
  for (const auto& name : output_names_) output_name_pointers_.push_back(name.c_str());
  const OnnxRuntimeLibrary& ort = *library_;
  try {
    ort.check(ort.function<CreateSessionOptionsFn>(kCreateSessionOptions)(&session_options_), "create session options");
    ort.check(ort.function<SetIntraOpNumThreadsFn>(kSetIntraOpNumThreads)(session_options_, intra_op_threads),
              fmt::format("use {} intra-op threads", intra_op_threads));
    ort.check(ort.function<SetGraphOptimizationLevelFn>(kSetSessionGraphOptimizationLevel)(session_options_,
                                                                                           kGraphOptimizationAll),
              "enable its graph optimisations");
    ort.check(ort.function<CreateSessionFromArrayFn>(kCreateSessionFromArray)(
                  ort.environment, model_bytes.data(), model_bytes.size(), session_options_, &session_),
              "load the model");
    ort.check(ort.function<CreateCpuMemoryInfoFn>(kCreateCpuMemoryInfo)(kDeviceAllocator, kMemTypeDefault,
                                                                        &cpu_memory_),
              "describe CPU memory");
  } catch (...) {
    ort.release(kReleaseMemoryInfo, cpu_memory_);
    ort.release(kReleaseSession, session_);
    ort.release(kReleaseSessionOptions, session_options_);
    throw;
  }
}

OnnxRuntimeSession::~OnnxRuntimeSession() {
  library_->release(kReleaseMemoryInfo, cpu_memory_);
  library_->release(kReleaseSession, session_);
  library_->release(kReleaseSessionOptions, session_options_);
}

torch::Tensor OnnxRuntimeSession::run(const torch::Tensor& input) const {
  if (!input.device().is_cpu()) throw Error("ONNX Runtime runs here on the CPU: move the input there first");
  const OnnxRuntimeLibrary& ort = *library_;
  const torch::Tensor values = input.to(torch::kFloat).contiguous();
  const std::vector<int64_t> shape = values.sizes().vec();
  void* input_value = nullptr;
  // ONNX Runtime reads the tensor's buffer in place; it never writes an input.
  ort.check(ort.function<CreateTensorWithDataFn>(kCreateTensorWithDataAsOrtValue)(
                cpu_memory_, values.data_ptr(), size_t(values.numel()) * sizeof(float), shape.data(), shape.size(),
                kTensorElementFloat, &input_value),
            "wrap the input");
  std::vector<void*> outputs(output_names_.size(), nullptr);
  const char* input_name = input_name_.c_str();
  const void* inputs[] = {input_value};
  const Status status = ort.function<RunFn>(kRun)(session_, nullptr, &input_name, inputs, 1,
                                                  output_name_pointers_.data(), outputs.size(), outputs.data());
  ort.release(kReleaseValue, input_value);
  for (size_t i = 1; i < outputs.size(); ++i) ort.release(kReleaseValue, outputs[i]);
  void* output = outputs[0];
  try {
    ort.check(status, "run the model");
    void* shape_info = nullptr;
    ort.check(ort.function<GetTensorTypeAndShapeFn>(kGetTensorTypeAndShape)(output, &shape_info),
              "read the output's shape");
    size_t rank = 0;
    std::vector<int64_t> output_shape;
    Status shape_status = ort.function<GetDimensionsCountFn>(kGetDimensionsCount)(shape_info, &rank);
    if (!shape_status) {
      output_shape.resize(rank);
      shape_status = ort.function<GetDimensionsFn>(kGetDimensions)(shape_info, output_shape.data(), rank);
    }
    ort.release(kReleaseTensorTypeAndShapeInfo, shape_info);
    ort.check(shape_status, "read the output's shape");
    void* data = nullptr;
    ort.check(ort.function<GetTensorMutableDataFn>(kGetTensorMutableData)(output, &data), "read the output");
    const auto release_value = ort.function<ReleaseFn>(kReleaseValue);
    return torch::from_blob(
        data, output_shape, [output, release_value](void*) { release_value(output); },
        torch::TensorOptions().dtype(torch::kFloat));
  } catch (...) {
    ort.release(kReleaseValue, output);
    throw;
  }
}

}  // namespace mcompress
