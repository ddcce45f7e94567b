// Decode and prefill speed of KvDecoder on a Hugging Face checkpoint or an
// mlx-lm directory (its layers run quantized), against the machine's memory
// bandwidth: batch-1 decode reads every weight once per token, so weights'
// bytes / bandwidth bounds tokens/s. Prints a table and one "JSON: {...}"
// line (bench/llm_decode.sh compares it with PyTorch eager,
// bench/llm_decode_vs_llama_cpp.sh with llama.cpp).
//
//   mcompress_llm_decode_bench CHECKPOINT_DIR [--threads 2] [--prompt 64]
//       [--new 32] [--reps 5] [--dtype checkpoint]
#include <ATen/Parallel.h>
#include <sys/wait.h>
#include <torch/script.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <iostream>
#include <numeric>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "memory_bandwidth.h"
#include "openblas_threads.h"

#include "mcompress/formats/hf_model.h"
#include "mcompress/formats/mlx_lm_checkpoint.h"
#include "mcompress/models/causal_lm.h"
#include "mcompress/models/kv_decoding.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string checkpoint;
  int threads = 2;
  int64_t prompt = 64;
  int64_t new_tokens = 32;
  int reps = 5;
  std::string dtype = "checkpoint";
};

Options parse(int argc, char** argv) {
  Options o;
  if (argc < 2) throw std::runtime_error("usage: mcompress_llm_decode_bench CHECKPOINT_DIR [--threads N] [--prompt T]"
                                         " [--new T] [--reps R] [--dtype checkpoint|float32|bfloat16]");
  o.checkpoint = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    if (key == "--threads") o.threads = std::stoi(value);
    else if (key == "--prompt") o.prompt = std::stoll(value);
    else if (key == "--new") o.new_tokens = std::stoll(value);
    else if (key == "--reps") o.reps = std::stoi(value);
    else if (key == "--dtype") o.dtype = value;
    else throw std::runtime_error("unknown option " + key);
  }
  return o;
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

double status_mb(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1)) / 1024.0;
  return 0.0;
}

// ---- Memory bandwidth: the best rate at which `threads` threads read a buffer far larger than the caches ----

double measure_bandwidth(int threads) {
  const std::vector<float> buffer = memory_bandwidth::make_buffer(size_t{1} << 30);
  double best = 0.0;
  for (int rep = 0; rep < 7; ++rep) best = std::max(best, memory_bandwidth::read_gbps(buffer, threads) * 1e9);
  return best;
}

// In a child process, so the 1 GiB buffer never counts in this process's peak memory.
double bandwidth_in_child(int threads) {
  int pipe_ends[2];
  if (pipe(pipe_ends) != 0) throw std::runtime_error("pipe failed");
  const pid_t child = fork();
  if (child == 0) {
    const double rate = measure_bandwidth(threads);
    if (write(pipe_ends[1], &rate, sizeof rate) != sizeof rate) _exit(1);
    _exit(0);
  }
  close(pipe_ends[1]);
  double rate = 0.0;
  if (read(pipe_ends[0], &rate, sizeof rate) != sizeof rate) throw std::runtime_error("bandwidth child failed");
  close(pipe_ends[0]);
  waitpid(child, nullptr, 0);
  return rate;
}

struct Spread {
  double median = 0, min = 0, max = 0;
};
Spread spread(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return {values[values.size() / 2], values.front(), values.back()};
}

}  // namespace

int main(int argc, char** argv) try {
  const Options o = parse(argc, argv);
  const double bandwidth = bandwidth_in_child(o.threads);  // before LibTorch starts any thread
  at::set_num_threads(o.threads);
  const bool pinned_blas = run_openblas_on_the_calling_thread();

  // An mlx-lm directory (config.json has "quantization") decodes from its
  // quantized layers; a Hugging Face checkpoint through its TorchScript model.
  const Clock::time_point load_start = Clock::now();
  std::ifstream config_file(std::filesystem::path(o.checkpoint) / "config.json");
  const bool mlx = nlohmann::json::parse(config_file).contains("quantization");
  torch::jit::Module model;
  mcompress::MlxLmWeights mlx_weights;
  std::unique_ptr<mcompress::KvDecoder> decoder_holder;
  if (mlx) {
    mlx_weights = mcompress::read_mlx_lm_checkpoint(o.checkpoint);
    decoder_holder = std::make_unique<mcompress::KvDecoder>(mlx_weights.config, mlx_weights.floating, mlx_weights.quantized);
  } else {
    model = mcompress::load_hf_model(o.checkpoint, o.dtype);
    decoder_holder = std::make_unique<mcompress::KvDecoder>(model);
  }
  mcompress::KvDecoder& decoder = *decoder_holder;
  const double load_seconds = seconds_since(load_start);
  const double rss_after_load = status_mb("VmRSS");

  // Bytes one decode step reads: every weight, except that an untied
  // embedding contributes a single row.
  const mcompress::TransformerConfig& config = decoder.config();
  int64_t weight_bytes = 0, embedding_bytes = 0;
  std::string dtype_name;
  auto bytes = [](const torch::Tensor& t) { return t.numel() * int64_t(t.element_size()); };
  const auto floating = mlx ? mlx_weights.floating : mcompress::causal_lm_weights(model);
  for (const auto& [name, tensor] : floating) {
    weight_bytes += bytes(tensor);
    if (name == "model.embed_tokens.weight") {
      embedding_bytes = bytes(tensor);
      dtype_name = c10::toString(tensor.scalar_type());
    }
  }
  for (const auto& [path, q] : mlx_weights.quantized) {
    const int64_t layer_bytes = bytes(q.packed) + bytes(q.scales) + bytes(q.biases);
    weight_bytes += layer_bytes;
    if (path == "model.embed_tokens") embedding_bytes = layer_bytes;
  }
  if (mlx) {
    const auto& layer = mlx_weights.quantized.at("model.layers.0.mlp.down_proj");
    const auto embed = mlx_weights.quantized.find("model.embed_tokens");
    dtype_name = fmt::format("MLX {}-bit, group {}, {} scales{}", layer.bits, layer.group_size,
                             c10::toString(layer.scales.scalar_type()),
                             embed == mlx_weights.quantized.end() ? ", floating embeddings"
                             : embed->second.bits != layer.bits
                                 ? fmt::format(", {}-bit embeddings", embed->second.bits)
                                 : "");
  }
  const int64_t bytes_per_token = config.tie_word_embeddings ? weight_bytes : weight_bytes - embedding_bytes;
  const double bound = bandwidth / double(bytes_per_token);

  std::mt19937_64 random(42);
  std::vector<int64_t> prompt(size_t(o.prompt));
  for (auto& token : prompt) token = int64_t(random() % uint64_t(config.vocab_size));
  mcompress::GenerationOptions options;
  options.max_new_tokens = o.new_tokens;

  // The first run faults the mapped weights in; it is the "first token after load".
  mcompress::GenerationOptions warm = options;
  warm.max_new_tokens = 2;
  const Clock::time_point warm_start = Clock::now();
  mcompress::generate(decoder, prompt, warm);
  const double warm_seconds = seconds_since(warm_start);

  std::vector<double> prefill_rates, decode_rates;
  for (int rep = 0; rep < o.reps; ++rep) {
    const mcompress::GenerationResult result = mcompress::generate(decoder, prompt, options);
    prefill_rates.push_back(double(o.prompt) / result.prefill_seconds);
    decode_rates.push_back(double(result.tokens.size() - 1) / result.decode_seconds);
  }
  const Spread prefill = spread(prefill_rates), decode = spread(decode_rates);
  const double peak_rss = status_mb("VmHWM");

  std::cout << fmt::format(
      "mcompress KvDecoder: {} ({} layers, hidden {}, vocab {}, {}), {} threads, {}, prompt {}, {} new tokens, {} reps\n",
      o.checkpoint, config.num_hidden_layers, config.hidden_size, config.vocab_size, dtype_name, o.threads,
      pinned_blas ? "OpenBLAS on the calling thread" : "BLAS as configured", o.prompt, o.new_tokens, o.reps);
  std::cout << "| weights (MB) | bytes/token (MB) | bandwidth (GB/s) | bound (tok/s) | decode tok/s median [min, max] | "
               "% of bound | prefill tok/s median [min, max] | load (s) | first run (s) | RSS after load (MB) | peak RSS (MB) | peak RSS / weights |\n";
  std::cout << "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  std::cout << fmt::format("| {:.0f} | {:.0f} | {:.1f} | {:.2f} | {:.2f} [{:.2f}, {:.2f}] | {:.0f}% | {:.1f} [{:.1f}, {:.1f}] | "
                           "{:.2f} | {:.2f} | {:.0f} | {:.0f} | {:.2f} |\n",
                           weight_bytes / 1e6, bytes_per_token / 1e6, bandwidth / 1e9, bound, decode.median, decode.min,
                           decode.max, 100 * decode.median / bound, prefill.median, prefill.min, prefill.max,
                           load_seconds, warm_seconds, rss_after_load, peak_rss, peak_rss * 1024 * 1024 / weight_bytes);
  std::cout << fmt::format(
      "JSON: {{\"runner\": \"mcompress\", \"checkpoint\": \"{}\", \"dtype\": \"{}\", \"threads\": {}, \"prompt\": {}, "
      "\"new_tokens\": {}, \"weight_bytes\": {}, \"bytes_per_token\": {}, \"bandwidth_gbs\": {:.3f}, "
      "\"bound_tps\": {:.3f}, \"decode_tps\": [{}], \"prefill_tps\": [{}], \"load_s\": {:.3f}, "
      "\"first_run_s\": {:.3f}, \"rss_after_load_mb\": {:.1f}, \"peak_rss_mb\": {:.1f}}}\n",
      o.checkpoint, dtype_name, o.threads, o.prompt, o.new_tokens, weight_bytes, bytes_per_token, bandwidth / 1e9, bound,
      fmt::join(decode_rates, ", "), fmt::join(prefill_rates, ", "), load_seconds, warm_seconds, rss_after_load,
      peak_rss);
  return 0;
} catch (const std::exception& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
