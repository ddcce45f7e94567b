// Structured-pruning benchmark on real torchvision architectures: how long
// analysis + pruning takes, how many MACs are removed, and how much faster
// the pruned model runs on this CPU, both as saved (plain TorchScript) and
// after optimize_for_cpu_inference (frozen, BatchNorm folded, channels-last).
//
//   build/bin/mcompress_prune_bench [--models resnet50,mobilenet_v2] [--sparsity 0.5]
//       [--threads 2,1] [--batches 1,16] [--resolution 224] [--round-to 1] [--repeats 5] [--prune-only] [--ignore-load]
//       [--save-dir DIR]   (also writes DIR/<model>-pruned.pt, -pruned-optimized.pt (as the
//                           optimize_inference pass saves it), -pruned-int8.pt (int8_quant's
//                           static int8 model of the pruned one), -pruned-channels-last.pt,
//                           -optimized.pt and -stats.json: MACs and parameters before and after)
//
// Prints one Markdown table; with several models, each is measured in a
// fresh process of its own. Timings are only meaningful on an idle machine,
// so it refuses to time when the 1-minute load average is 1.0 or more.
#include <ATen/Parallel.h>
#include <torch/script.h>


#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "openblas_threads.h"

#include <mcompress/pruning/channel_count_rewrite.h>
#include <mcompress/pruning/channel_pruning.h>
#include <mcompress/pruning/dependency_graph.h>
#include <mcompress/models/evaluate.h>
#include <mcompress/models/inference_optimization.h>
#include <mcompress/models/model_stats.h>
#include <mcompress/models/module_copy.h>
#include <mcompress/quantization/static_int8.h>

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::vector<std::string> models{"resnet50", "mobilenet_v2", "densenet121", "vgg16_bn"};
  double sparsity = 0.5;
  std::vector<int> threads{2, 1};
  std::vector<int64_t> batches{1, 16};
  int64_t resolution = 224;
  int64_t round_to = 1;
  bool ignore_load = false;
  bool prune_only = false;  // skip the latency measurements
  int repeats = 5;          // warm analyse+prune runs; the median is reported
  fs::path model_dir = fs::path(MCOMPRESS_BENCH_MODEL_DIR);
  fs::path save_dir;  // empty: the pruned models are not written
  bool rows_only = false;  // set for the per-model child processes
};

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, ',');) parts.push_back(part);
  return parts;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--models") o.models = split(value());
    else if (arg == "--sparsity") o.sparsity = std::stod(value());
    else if (arg == "--threads") { o.threads.clear(); for (auto& t : split(value())) o.threads.push_back(std::stoi(t)); }
    else if (arg == "--batches") { o.batches.clear(); for (auto& b : split(value())) o.batches.push_back(std::stoll(b)); }
    else if (arg == "--resolution") o.resolution = std::stoll(value());
    else if (arg == "--round-to") o.round_to = std::stoll(value());
    else if (arg == "--model-dir") o.model_dir = value();
    else if (arg == "--save-dir") o.save_dir = value();
    else if (arg == "--ignore-load") o.ignore_load = true;
    else if (arg == "--prune-only") o.prune_only = true;
    else if (arg == "--rows-only") o.rows_only = true;
    else if (arg == "--repeats") o.repeats = std::max(1, std::stoi(value()));
    else throw std::runtime_error("unknown argument " + arg + " (see the comment at the top of bench/prune_bench.cpp)");
  }
  return o;
}

double load_average() {
  std::ifstream in("/proc/loadavg");
  double load = 0;
  in >> load;
  return load;
}

fs::path scripted(const Options& o, const std::string& name) {
  const fs::path file = o.model_dir / ("torchvision-" + name + ".pt");
  if (fs::exists(file)) return file;
  fs::create_directories(o.model_dir);
  const std::string command = fmt::format(
      "/usr/bin/python3 -c \"import torch, torchvision; torch.manual_seed(0); "
      "torch.jit.script(getattr(torchvision.models, '{}')().eval()).save(r'{}')\"",
      name, file.string());
  if (std::system(command.c_str()) != 0) throw std::runtime_error("cannot script " + name);
  return file;
}

// Median seconds of one forward pass of each model in steady state, as when
// it serves requests back to back. The two are timed in alternating blocks so
// drift (frequency, the thread pool settling after a thread-count change)
// hits both alike: 10 warm-up runs each, then blocks of consecutive runs,
// as many as fit in about 100 ms (at least 1, at most 50), until at least 5
// and up to 400 runs of each were timed, about 3 s in all. When a block has
// several runs, its first is not timed: the other model has just run, with
// its own weights in the caches and its own buffer sizes in the allocator,
// which a model serving requests does not suffer.
std::pair<double, double> latencies(const torch::jit::Module& a, const torch::jit::Module& b, const torch::Tensor& input) {
  torch::NoGradGuard no_grad;
  auto time_one = [&](const torch::jit::Module& model) {
    const auto t = Clock::now();
    mcompress::forward_tensor(model, input);
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  double last_a = 0, last_b = 0;  // the first runs are slower: the executor profiles and optimises
  for (int i = 0; i < 10; ++i) {
    last_a = time_one(a);
    last_b = time_one(b);
  }
  const int block = std::clamp(static_cast<int>(0.100 / std::max(last_a, last_b)), 1, 50);
  auto run_block = [&](const torch::jit::Module& model, std::vector<double>& times) {
    if (block > 1) time_one(model);
    for (int i = 0; i < block; ++i) times.push_back(time_one(model));
  };
  std::vector<double> times_a, times_b;
  const auto start = Clock::now();
  while (times_a.size() < 5 ||
         (times_a.size() < 400 && std::chrono::duration<double>(Clock::now() - start).count() < 3.0)) {
    run_block(a, times_a);
    run_block(b, times_b);
  }
  auto median = [](std::vector<double>& v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  return {median(times_a), median(times_b)};
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

std::string shell_quoted(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// Measures each model in a process of its own, so that one model's runs
// (its heap, the thread pool's last setting) do not shape the next one's
// figures and every "cold" time is really the first in its process.
void measure_each_model_in_its_own_process(const Options& o, int argc, char** argv) {
  for (const auto& name : o.models) {
    std::string command = shell_quoted(argv[0]);
    for (int i = 1; i < argc; ++i) {
      if (std::string(argv[i]) == "--models") { ++i; continue; }
      command += " " + shell_quoted(argv[i]);
    }
    command += " --models " + shell_quoted(name) + " --rows-only --ignore-load";
    FILE* child = popen(command.c_str(), "r");
    if (!child) throw std::runtime_error("cannot start " + command);
    char line[4096];
    while (std::fgets(line, sizeof line, child)) std::cout << line << std::flush;
    if (pclose(child) != 0) throw std::runtime_error("measuring " + name + " failed");
  }
}

}  // namespace

int main(int argc, char** argv) try {
  const Options o = parse(argc, argv);
  const double load = load_average();
  if (load >= 1.0 && !o.ignore_load) {
    std::cerr << fmt::format("the machine is busy (1-minute load average {:.2f}); timings would measure the"
                             " other work. Rerun when it is idle, or pass --ignore-load.\n", load);
    return 3;
  }
  const bool single_threaded_blas = run_openblas_on_the_calling_thread();
  if (!o.rows_only) {
    std::cout << fmt::format("Structured pruning, {:.0f}% of the channels of every prunable group (uniform, group L2"
                           " magnitude, round_to {}), input {}x{}, {}, load average {:.2f} at start\n\n",
                           o.sparsity * 100, o.round_to, o.resolution, o.resolution,
                           single_threaded_blas ? "OpenBLAS on the calling thread" : "BLAS threads as configured",
                           load);
    std::cout << "| model | analyse+prune (s), cold / warm | MACs before -> after | MAC ratio | threads | batch | plain: original -> pruned (ms) | plain speedup | % of MAC ratio | optimized: original -> pruned (ms) | optimized speedup | % of MAC ratio |\n";
    std::cout << "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  }
  if (o.models.size() > 1) {
    measure_each_model_in_its_own_process(o, argc, argv);
    std::cout << fmt::format("\nload average at the end: {:.2f}\n", load_average());
    return 0;
  }
  for (const auto& name : o.models) {
    at::set_num_threads(o.threads.front());
    const torch::jit::Module original = torch::jit::load(scripted(o, name).string());
    const torch::Tensor example = torch::randn({1, 3, o.resolution, o.resolution});
    // What a pruning tool does for the user: understand the model, then
    // shrink it. Timed first in the process (cold: one-time library set-up
    // included), then on fresh copies (warm: the median of --repeats runs).
    mcompress::PruneOptions options;
    options.sparsity = o.sparsity;
    options.round_to = o.round_to;
    auto analyse_and_prune = [&](torch::jit::Module& pruned) {
      const torch::jit::Module copy = mcompress::deep_copy(original);
      const auto started = Clock::now();
      pruned = mcompress::with_channel_counts_following_weights(copy);
      const double rewrite_seconds = seconds_since(started);
      const auto graph = mcompress::analyze_dependencies(pruned, example);
      const double analysis_seconds = seconds_since(started) - rewrite_seconds;
      mcompress::prune_groups(pruned, graph, options, [&](const mcompress::ChannelGroup& group) {
        return mcompress::group_l2_importance(pruned, group);
      });
      const double total = seconds_since(started);
      std::cerr << fmt::format("{}: code rewrite {:.3f} s, analysis {:.3f} s, scoring and slicing {:.3f} s\n", name,
                               rewrite_seconds, analysis_seconds, total - rewrite_seconds - analysis_seconds);
      return total;
    };
    torch::jit::Module pruned;
    const double cold_seconds = analyse_and_prune(pruned);
    std::vector<double> warm_runs;
    for (int i = 0; i < o.repeats; ++i) warm_runs.push_back(analyse_and_prune(pruned));
    std::sort(warm_runs.begin(), warm_runs.end());
    const double warm_seconds = warm_runs[warm_runs.size() / 2];
    const std::string prune_time = fmt::format("{:.2f} / {:.2f}", cold_seconds, warm_seconds);
    const double macs_before = static_cast<double>(mcompress::count_macs(original, example));
    const double macs_after = static_cast<double>(mcompress::count_macs(pruned, example));
    const double mac_ratio = macs_before / macs_after;
    if (o.prune_only) {
      std::cout << fmt::format("| {} | {} | {:.2f}G -> {:.2f}G | {:.2f}x | | | | | | | | |\n", name,
                               prune_time, macs_before / 1e9, macs_after / 1e9, mac_ratio);
      if (o.save_dir.empty()) continue;
    }
    const auto original_optimized = mcompress::optimize_for_cpu_inference(original);
    const auto pruned_optimized = mcompress::optimize_for_cpu_inference(pruned);
    mcompress::InferenceOptions deploy;  // what the optimize_inference pass saves by default
    deploy.onednn = true;
    deploy.timing_input = example;
    if (!o.save_dir.empty()) {
      fs::create_directories(o.save_dir);
      pruned.save((o.save_dir / (name + "-pruned.pt")).string());
      pruned_optimized.save((o.save_dir / (name + "-pruned-channels-last.pt")).string());
      mcompress::InferenceFormTiming timing;
      mcompress::optimize_for_cpu_inference(pruned, deploy, &timing)
          .save((o.save_dir / (name + "-pruned-optimized.pt")).string());
      std::cerr << fmt::format("{}: optimize_inference kept the {} form (batch 1, {} threads: oneDNN {:.2f} ms, "
                               "channels-last {:.2f} ms)\n",
                               name, timing.chosen, at::get_num_threads(), timing.onednn_ms, timing.channels_last_ms);
      original_optimized.save((o.save_dir / (name + "-optimized.pt")).string());
      // The pruned model as int8_quant writes it, calibrated on random images
      // (the weights are random too; this file is for timing).
      std::vector<torch::Tensor> calibration;
      for (int i = 0; i < 4; ++i) calibration.push_back(torch::randn_like(example));
      mcompress::quantize_static_int8(pruned, calibration).model.save(
          (o.save_dir / (name + "-pruned-int8.pt")).string());
      // What bench/deploy_compare.py reports beside its timings.
      std::ofstream(o.save_dir / (name + "-stats.json"))
          << fmt::format("{{\"macs_before\": {:.0f}, \"macs_after\": {:.0f}, \"params_before\": {},"
                         " \"params_after\": {}}}\n",
                         macs_before, macs_after, mcompress::count_parameters(original),
                         mcompress::count_parameters(pruned));
    }
    if (o.prune_only) continue;
    for (int threads : o.threads) {
      at::set_num_threads(threads);
      for (int64_t batch : o.batches) {
        const torch::Tensor input = torch::randn({batch, 3, o.resolution, o.resolution});
        mcompress::EvalModeGuard eval_original(original);
        mcompress::EvalModeGuard eval_pruned(pruned);
        const auto [plain_before, plain_after] = latencies(original, pruned, input);
        const auto [opt_before, opt_after] = latencies(original_optimized, pruned_optimized, input);
        const double plain_speedup = plain_before / plain_after, opt_speedup = opt_before / opt_after;
        std::cout << fmt::format(
            "| {} | {} | {:.2f}G -> {:.2f}G | {:.2f}x | {} | {} | {:.1f} -> {:.1f} | {:.2f}x | {:.0f}% | {:.1f} -> {:.1f} | {:.2f}x | {:.0f}% |\n",
            name, prune_time, macs_before / 1e9, macs_after / 1e9, mac_ratio, threads, batch, plain_before * 1e3,
            plain_after * 1e3, plain_speedup, 100 * plain_speedup / mac_ratio, opt_before * 1e3, opt_after * 1e3,
            opt_speedup, 100 * opt_speedup / mac_ratio);
        std::cout.flush();
      }
    }
  }
  if (!o.rows_only) std::cout << fmt::format("\nload average at the end: {:.2f}\n", load_average());
  return 0;
} catch (const std::exception& error) {
  std::cerr << "mcompress_prune_bench: " << error.what() << "\n";
  return 1;
}
