// mlx_quant benchmarks: prints tables, never passes or fails on time.
//
//   mcompress_quant_bench kernels   [--threads N] [--runs R] [--rows 1,16,64,256] [--bandwidth 0|1] [--wait S]
//       4096x4096 linear layer: float32 BLAS against the operator at 2-8
//       bits, min/median/max, and at batch 1 the share of the measured
//       memory bandwidth each kernel reaches (quant_kernel_bench.cpp).
//   mcompress_quant_bench speed     [--threads N]
//       quantization speed (weights/second) over a 100M-parameter model.
//   mcompress_quant_bench accuracy  [--threads N] [--cache DIR] [--cnn-epochs E] [--lm-steps S]
//       Fashion-MNIST CNN accuracy and char-LM bits per character at 8, 6,
//       4, 3 and 2 bits with groups of 32, 64 and 128. Trained models are
//       cached in DIR (default build/bench-cache) and reused.
//
// Timing is only meaningful on a quiet machine: each timed section waits (up
// to two minutes; kernels: --wait seconds) for the 1-minute load average to
// fall below 1.0 and prints the load it ran at.
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include <fmt/format.h>

#include "mcompress/framework/sources/fashion_mnist.h"
#include "mcompress/framework/sources/text_corpus.h"
#include "mcompress/framework/sources/zoo.h"
#include "mcompress/runtime/quantized_linear.h"
#include "mcompress/models/evaluate.h"
#include "mcompress/models/language_model.h"
#include "mcompress/quantization/quantized_model.h"
#include "mcompress/training/trainer.h"
#include "quant_kernel_bench.h"

namespace fs = std::filesystem;
namespace rt = mcompress::runtime;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string command;
  int threads = 0;
  int runs = 30;
  std::string cache = "build/bench-cache";
  int64_t cnn_epochs = 1;
  int64_t lm_steps = 800;
  std::vector<int64_t> rows{1, 16, 64, 256};
  bool bandwidth = true;
  bool runs_given = false;
  int wait_seconds = 120;
};

std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> values;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    values.push_back(std::stoll(text.substr(start, comma - start)));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return values;
}

Args parse(int argc, char** argv) {
  Args a;
  if (argc < 2) throw std::runtime_error("usage: mcompress_quant_bench kernels|speed|accuracy [options]");
  a.command = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    if (key == "--threads") a.threads = std::stoi(value);
    else if (key == "--runs") a.runs = std::stoi(value), a.runs_given = true;
    else if (key == "--rows") a.rows = parse_list(value);
    else if (key == "--bandwidth") a.bandwidth = value != "0";
    else if (key == "--wait") a.wait_seconds = std::stoi(value);
    else if (key == "--cache") a.cache = value;
    else if (key == "--cnn-epochs") a.cnn_epochs = std::stoll(value);
    else if (key == "--lm-steps") a.lm_steps = std::stoll(value);
    else throw std::runtime_error("unknown option " + key);
  }
  return a;
}

double load_average() {
  std::ifstream in("/proc/loadavg");
  double load = -1;
  in >> load;
  return load;
}

double wait_for_quiet_machine(int seconds = 120) {
  const auto start = Clock::now();
  double load = load_average();
  while (load >= 1.0 && Clock::now() - start < std::chrono::seconds(seconds)) {
    std::this_thread::sleep_for(std::chrono::seconds(5));
    load = load_average();
  }
  return load;
}

void kernels(const Args& args) {
  const double load = wait_for_quiet_machine(args.wait_seconds);
  fmt::print("(waited up to {} s for the 1-minute load average to fall below 1.0: {:.2f})\n", args.wait_seconds,
             load);
  KernelBenchOptions options;
  if (args.runs_given) options.runs = args.runs;
  options.rows = args.rows;
  options.bandwidth = args.bandwidth;
  run_kernel_benchmark(options);
}

void speed(const Args&) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(1);
  // 24 matrices of 4096x1024: 100.7M weights.
  std::vector<torch::Tensor> layers;
  for (int i = 0; i < 24; ++i) layers.push_back(torch::randn({4096, 1024}) * 0.02);
  const double total = 24.0 * 4096 * 1024;
  const double load = wait_for_quiet_machine();
  fmt::print("\nQuantizing {:.1f}M float32 weights, {} threads, load average {:.2f} at start\n\n", total / 1e6,
             at::get_num_threads(), load);
  fmt::print("| format | seconds | M weights/s |\n|---|---:|---:|\n");
  for (int bits : {4, 8, 3}) {
    const auto start = Clock::now();
    for (const auto& w : layers) rt::quantize_weight(w, bits, 64);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    fmt::print("| {}-bit g64 | {:.2f} | {:.0f} |\n", bits, seconds, total / seconds / 1e6);
  }
}

// --- accuracy -----------------------------------------------------------

torch::jit::Module trained_cnn(const Args& args, const mcompress::Dataset& train) {
  const fs::path file = fs::path(args.cache) / fmt::format("cnn_w64_e{}.pt", args.cnn_epochs);
  if (fs::exists(file)) return torch::jit::load(file.string());
  // Width 64: fc1 has 2 * 64 * 7 * 7 = 6272 inputs, a multiple of 128, so
  // every group size quantizes every linear layer.
  auto model = mcompress::build_zoo_model("cnn", {{"width", 64}}, 10, 42);
  mcompress::TrainOptions options;
  options.epochs = args.cnn_epochs;
  options.batch_size = 128;
  options.optimizer = "adam";
  options.learning_rate = 0.002;
  options.keep_best = false;
  mcompress::NullProgress progress;
  mcompress::NullLogger log;
  fmt::print(stderr, "training the CNN ({} epochs)...\n", args.cnn_epochs);
  mcompress::train_model(model, train, nullptr, options, mcompress::cross_entropy_loss(), progress, log);
  fs::create_directories(file.parent_path());
  model.save(file.string());
  return model;
}

torch::jit::Module trained_char_lm(const Args& args, const mcompress::Dataset& train) {
  const fs::path file = fs::path(args.cache) / fmt::format("char_lm_w128_l4_s{}.pt", args.lm_steps);
  if (fs::exists(file)) return torch::jit::load(file.string());
  auto model = mcompress::build_zoo_model("char_lm", {{"width", 128}, {"layers", 4}, {"heads", 4}, {"context", 64}},
                                          train.num_classes, 42);
  mcompress::TrainOptions options;
  options.epochs = 0;
  options.max_steps = args.lm_steps;
  options.batch_size = 64;
  options.optimizer = "adamw";
  options.learning_rate = 0.002;
  options.warmup_steps = 100;
  options.grad_clip = 1.0;
  options.keep_best = false;
  mcompress::NullProgress progress;
  mcompress::NullLogger log;
  fmt::print(stderr, "training the char-LM ({} steps)...\n", args.lm_steps);
  mcompress::train_model(model, train, nullptr, options, mcompress::cross_entropy_loss(), progress, log);
  fs::create_directories(file.parent_path());
  model.save(file.string());
  return model;
}

mcompress::QuantizedModel quantize_all(const torch::jit::Module& model, int bits, int group_size) {
  std::vector<mcompress::LayerQuantization> plan;
  for (const auto& layer : mcompress::find_linear_layers(model)) plan.push_back({layer.path, bits, group_size});
  mcompress::QuantizationOptions options;
  options.storage_dtype = torch::kHalf;
  return mcompress::quantize_linear_layers(model, plan, options);
}

void accuracy(const Args& args) {
  mcompress::NullProgress progress;
  const auto images = mcompress::load_fashion_mnist("/usr/share/datasets/fashion-mnist", mcompress::Split::Train);
  const auto test_images = mcompress::load_fashion_mnist("/usr/share/datasets/fashion-mnist", mcompress::Split::Test);
  const auto text = mcompress::load_text_corpus(std::string(MCOMPRESS_SOURCE_DIR) + "/tests/data/tinyshakespeare.txt",
                                                64, 0.1);
  const auto cnn = trained_cnn(args, *images);
  const auto lm = trained_char_lm(args, *text.train);
  const auto lm_test = text.test->slice(0, 500);

  const double cnn_fp32 = mcompress::evaluate_accuracy(cnn, *test_images, 256, progress);
  const double lm_fp32 = mcompress::evaluate_language_model(lm, lm_test, 64, progress).bits_per_token;
  fmt::print("\nFashion-MNIST zoo CNN (width 64, {} epoch(s); 10,000 test images) and char-LM (width 128,\n"
             "4 layers, {} steps; {} held-out characters of Tiny Shakespeare). All linear layers\n"
             "quantized with float16 scales and biases; convolutions and embeddings stay float32.\n\n",
             args.cnn_epochs, args.lm_steps, lm_test.size() * 64);
  fmt::print("| bits | group | CNN accuracy | change | char-LM bits/char | change | bits/weight |\n");
  fmt::print("|---:|---:|---:|---:|---:|---:|---:|\n");
  fmt::print("| 32 (float) | - | {:.2f}% | | {:.3f} | | 32 |\n", 100 * cnn_fp32, lm_fp32);
  for (int bits : {8, 6, 4, 3, 2}) {
    for (int group_size : {32, 64, 128}) {
      const auto qc = quantize_all(cnn, bits, group_size);
      const auto ql = quantize_all(lm, bits, group_size);
      for (const auto* q : {&qc, &ql}) {
        for (const auto& layer : q->layers) {
          if (!layer.quantized) fmt::print(stderr, "skipped {}: {}\n", layer.path, layer.reason);
        }
      }
      const double acc = mcompress::evaluate_accuracy(qc.model, *test_images, 256, progress);
      const double bpc = mcompress::evaluate_language_model(ql.model, lm_test, 64, progress).bits_per_token;
      fmt::print("| {} | {} | {:.2f}% | {:+.2f} | {:.3f} | {:+.3f} | {:.2f} |\n", bits, group_size, 100 * acc,
                 100 * (acc - cnn_fp32), bpc, bpc - lm_fp32, bits + 32.0 / group_size);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args args = parse(argc, argv);
    if (args.threads > 0) at::set_num_threads(args.threads);
    if (args.command == "kernels") {
      kernels(args);
    } else if (args.command == "speed") {
      speed(args);
    } else if (args.command == "accuracy") {
      accuracy(args);
    } else {
      throw std::runtime_error("unknown command " + args.command + " (kernels, speed or accuracy)");
    }
  } catch (const std::exception& e) {
    std::cerr << "mcompress_quant_bench: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
