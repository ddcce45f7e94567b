// Distillation measured side by side in one run, with the real plugins.
//
//   mcompress_distill_bench fmnist       Fashion-MNIST: a student with <= 1/8 of the
//                                        teacher's parameters trained from scratch,
//                                        with kd_standard and with kd_attribution
//   mcompress_distill_bench shakespeare  Tiny Shakespeare: a ~4x smaller char LM from
//                                        scratch, with forward-KL KD and with reverse_kld
//   mcompress_distill_bench throughput   samples/s of one KD training step in the SDK
//                                        trainer vs the same loop in Python (bench/kd_step.py)
//
// Every student of a table starts from the same weights and trains the same
// number of steps with the same seed and optimizer; only the loss differs.
// Options: --steps N (student steps), --teacher-steps N, --threads N,
// --fmnist DIR, --text FILE, --out DIR (models and a JSON of the results).
#include <ATen/Parallel.h>
#include <torch/script.h>

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mcompress/framework/sources/fashion_mnist.h"
#include "mcompress/framework/loader/plugin_host.h"
#include "mcompress/framework/sources/text_corpus.h"
#include "mcompress/framework/sources/zoo.h"
#include "mcompress/training/distillation.h"
#include "mcompress/sdk/error.h"
#include "mcompress/models/evaluate.h"
#include "mcompress/models/fidelity.h"
#include "mcompress/models/language_model.h"
#include "mcompress/models/model_stats.h"
#include "mcompress/models/module_copy.h"
#include "mcompress/sdk/pass.h"

namespace fs = std::filesystem;
using namespace mcompress;

namespace {

struct Options {
  std::string suite;
  int64_t steps = 0;          // 0: the suite's default
  int64_t teacher_steps = 0;  // 0: the suite's default
  int threads = 2;
  std::string fmnist = "/usr/share/datasets/fashion-mnist";
  std::string text = std::string(MCOMPRESS_SOURCE_DIR) + "/tests/data/tinyshakespeare.txt";
  fs::path out = "distill-bench-out";
};

class StderrLogger final : public Logger {
 public:
  void log(LogLevel level, const std::string& message) override {
    if (level != LogLevel::Debug) std::cerr << message << "\n";
  }
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Runs pass `name` of the loaded plugins on `model` (in place) with the
// pass's defaults overridden by `values`.
class PassRunner {
 public:
  explicit PassRunner(uint64_t seed) : seed_(seed) {
    host_.load_directories(PluginHost::search_path({}));
    for (const auto& refusal : host_.refusals()) std::cerr << "refused " << refusal.path << ": " << refusal.reason << "\n";
  }

  nlohmann::json run(const std::string& name, torch::jit::Module& model,
                     const std::optional<torch::jit::Module>& teacher, const DatasetPtr& train,
                     const DatasetPtr& validation, const std::map<std::string, ParamValue>& values) {
    const Pass* pass = host_.find_pass(name);
    if (!pass) throw Error(fmt::format("pass '{}' is not loaded; build the plugins first", name));
    Params params;
    for (const auto& spec : pass->info().params)
      if (spec.default_value) params.set(spec.name, *spec.default_value);
    for (const auto& [key, value] : values) params.set(key, value);
    PassContext ctx;
    ctx.model = model;
    ctx.original = model;
    ctx.teacher = teacher;
    ctx.example_input = train->inputs.slice(0, 0, 1);
    ctx.train = train;
    ctx.validation = validation;
    ctx.params = &params;
    ctx.seed = seed_;
    ctx.threads = at::get_num_threads();
    ctx.log = &log_;
    ctx.progress = &progress_;
    ctx.artifact_dir = fs::temp_directory_path();
    ctx.stage_name = name;
    torch::manual_seed(seed_);
    const auto result = pass->run(ctx);
    model = ctx.model;
    std::cerr << "  " << name << ": " << result.summary << "\n";
    return result.stats;
  }

 private:
  uint64_t seed_;
  PluginHost host_;
  StderrLogger log_;
  NullProgress progress_;
};

std::string human(double count) {
  if (count >= 1e6) return fmt::format("{:.2f}M", count / 1e6);
  if (count >= 1e3) return fmt::format("{:.1f}K", count / 1e3);
  return fmt::format("{:.0f}", count);
}

void print_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::string line = "|";
  std::string rule = "|";
  for (const auto& h : header) {
    line += " " + h + " |";
    rule += "---|";
  }
  std::cout << line << "\n" << rule << "\n";
  for (const auto& row : rows) {
    line = "|";
    for (const auto& cell : row) line += " " + cell + " |";
    std::cout << line << "\n";
  }
  std::cout << std::flush;
}

// ---- Fashion-MNIST ------------------------------------------------------------

nlohmann::json bench_fmnist(const Options& o, PassRunner& runner) {
  const int64_t teacher_epochs = o.teacher_steps > 0 ? 0 : 3;
  const int64_t steps = o.steps > 0 ? o.steps : 2000;
  auto full = load_fashion_mnist(o.fmnist, Split::Train);
  auto train = std::make_shared<Dataset>(full->slice(0, full->size() - 5000));
  auto validation = std::make_shared<Dataset>(full->slice(full->size() - 5000, 5000));
  auto test = load_fashion_mnist(o.fmnist, Split::Test);

  auto teacher = build_zoo_model("cnn", {{"width", 32}}, 10, 1);
  std::cerr << "teacher: cnn width 32\n";
  runner.run("finetune", teacher, std::nullopt, train, validation,
             {{"epochs", teacher_epochs}, {"max_steps", o.teacher_steps}, {"batch_size", int64_t(128)},
              {"optimizer", std::string("adam")}, {"lr", 0.002}});
  NullProgress quiet;
  const double teacher_accuracy = evaluate_accuracy(teacher, *test, 512, quiet);
  const double teacher_params = double(count_parameters(teacher));

  const auto student_init = build_zoo_model("cnn", {{"width", 8}}, 10, 2);
  const std::map<std::string, ParamValue> training{
      {"epochs", int64_t(0)},      {"max_steps", steps},     {"batch_size", int64_t(128)},
      {"optimizer", std::string("adam")}, {"lr", 0.005}, {"eval_every", int64_t(250)}};
  struct Method {
    std::string label, pass;
    std::map<std::string, ParamValue> params;
  };
  const std::vector<Method> methods{
      {"from scratch (cross-entropy)", "finetune", {}},
      {"kd_standard (T=4, alpha=0.9)", "kd_standard", {{"temperature", 4.0}, {"alpha", 0.9}}},
      {"kd_attribution (KD + attention maps + gradient x input, beta=5)", "kd_attribution",
       {{"temperature", 4.0}, {"alpha", 0.9}, {"beta", 5.0}}},
  };
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"teacher cnn w32", human(teacher_params), "1", "-", fmt::format("{:.2f}", teacher_accuracy * 100), "-"});
  nlohmann::json results = {{"teacher", {{"params", teacher_params}, {"accuracy", teacher_accuracy}}}};
  for (const auto& method : methods) {
    auto student = deep_copy(student_init);
    auto params = training;
    params.insert(method.params.begin(), method.params.end());
    std::cerr << "student (" << method.label << ")\n";
    const auto started = std::chrono::steady_clock::now();
    const auto stats = runner.run(method.pass, student,
                                  method.pass == "finetune" ? std::nullopt : std::optional(teacher),
                                  train, validation, params);
    const double seconds = seconds_since(started);
    const double accuracy = evaluate_accuracy(student, *test, 512, quiet);
    const double student_params = double(count_parameters(student));
    rows.push_back({"student cnn w8: " + method.label, human(student_params),
                    fmt::format("1/{:.1f}", teacher_params / student_params), std::to_string(steps),
                    fmt::format("{:.2f}", accuracy * 100), fmt::format("{:.0f}", seconds)});
    results[method.pass] = {{"accuracy", accuracy}, {"params", student_params}, {"seconds", seconds},
                            {"steps", steps}};
  }
  std::cout << fmt::format("\nFashion-MNIST test accuracy (10,000 images), {} threads, batch 128, "
                           "Adam lr 0.005, same initial student and seed\n\n",
                           at::get_num_threads());
  print_table({"model", "params", "of teacher", "steps", "accuracy %", "train s"}, rows);
  return results;
}

// ---- Tiny Shakespeare -----------------------------------------------------------

nlohmann::json bench_shakespeare(const Options& o, PassRunner& runner) {
  const int64_t teacher_steps = o.teacher_steps > 0 ? o.teacher_steps : 3000;
  const int64_t steps = o.steps > 0 ? o.steps : 2000;
  const int64_t context = 64;
  const auto corpus = load_text_corpus(o.text, context, 0.1);
  const int64_t held_out = 500;
  auto train = std::make_shared<Dataset>(corpus.train->slice(0, corpus.train->size() - held_out));
  auto validation = std::make_shared<Dataset>(corpus.train->slice(corpus.train->size() - held_out, held_out));
  const auto& test = *corpus.test;

  const std::map<std::string, int64_t> teacher_size{{"width", 128}, {"layers", 4}, {"heads", 4}, {"context", context}};
  const std::map<std::string, int64_t> student_size{{"width", 64}, {"layers", 4}, {"heads", 4}, {"context", context}};
  auto schedule = [](int64_t n, double lr) {
    return std::map<std::string, ParamValue>{
        {"epochs", int64_t(0)},   {"max_steps", n},      {"batch_size", int64_t(64)},
        {"optimizer", std::string("adamw")}, {"lr", lr}, {"warmup_steps", int64_t(100)},
        {"grad_clip", 1.0},       {"eval_every", int64_t(500)}};
  };
  auto teacher = build_zoo_model("char_lm", teacher_size, corpus.vocabulary.size(), 1);
  std::cerr << "teacher: char_lm width 128, 4 layers\n";
  runner.run("finetune", teacher, std::nullopt, train, validation, schedule(teacher_steps, 0.002));
  NullProgress quiet;
  const auto teacher_scores = evaluate_language_model(teacher, test, 256, quiet);
  const double teacher_params = double(count_parameters(teacher));

  const auto student_init = build_zoo_model("char_lm", student_size, corpus.vocabulary.size(), 2);
  struct Method {
    std::string label, pass;
    std::map<std::string, ParamValue> params;
  };
  const std::vector<Method> methods{
      {"from scratch (cross-entropy)", "finetune", {}},
      {"forward-KL KD (teacher-forced)", "reverse_kld", {{"divergence", std::string("forward_kl")}}},
      {"reverse_kld (reverse KL, 10% mixture-sampled)", "reverse_kld",
       {{"divergence", std::string("reverse_kl")}, {"on_policy", 0.1},
        {"sampler", std::string("mixture")}, {"mix_alpha", 0.2}}},
  };
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"teacher char_lm w128 x4 layers", human(teacher_params), std::to_string(teacher_steps),
                  fmt::format("{:.3f}", teacher_scores.bits_per_token),
                  fmt::format("{:.2f}", teacher_scores.perplexity), "-", "-"});
  nlohmann::json results = {{"teacher", {{"params", teacher_params}, {"bits_per_char", teacher_scores.bits_per_token}}}};
  for (const auto& method : methods) {
    auto student = deep_copy(student_init);
    auto params = schedule(steps, 0.003);
    for (const auto& [k, v] : method.params) params[k] = v;
    std::cerr << "student (" << method.label << ")\n";
    const auto started = std::chrono::steady_clock::now();
    runner.run(method.pass, student, method.pass == "finetune" ? std::nullopt : std::optional(teacher),
               train, validation, params);
    const double seconds = seconds_since(started);
    const auto scores = evaluate_language_model(student, test, 256, quiet);
    const double agreement = evaluate_fidelity(student, teacher, test, 256, quiet).top1_agreement;
    rows.push_back({"student char_lm w64 x4 layers: " + method.label, human(double(count_parameters(student))),
                    std::to_string(steps), fmt::format("{:.3f}", scores.bits_per_token),
                    fmt::format("{:.2f}", scores.perplexity), fmt::format("{:.1f}", agreement * 100),
                    fmt::format("{:.0f}", seconds)});
    results[method.label] = {{"bits_per_char", scores.bits_per_token}, {"agreement", agreement},
                             {"seconds", seconds}};
  }
  std::cout << fmt::format("\nTiny Shakespeare held-out text ({} characters), {} threads, batch "
                           "64 x {} characters, AdamW, same initial student and seed\n\n",
                           test.targets.numel(), at::get_num_threads(), context);
  print_table({"model", "params", "steps", "bits/char", "perplexity", "top-1 agreement with teacher %",
               "train s"},
              rows);
  return results;
}

// ---- Throughput: SDK trainer vs a Python loop -----------------------------------------

nlohmann::json bench_throughput(const Options& o) {
  const int64_t steps = o.steps > 0 ? o.steps : 200;
  const int64_t warmup = 10, batch = 128, samples = 8192;
  fs::create_directories(o.out);
  auto teacher = build_zoo_model("cnn", {{"width", 32}}, 10, 1);
  auto student = build_zoo_model("cnn", {{"width", 8}}, 10, 2);
  teacher.eval();
  teacher.save((o.out / "throughput_teacher.pt").string());
  student.save((o.out / "throughput_student.pt").string());

  auto generator = at::make_generator<at::CPUGeneratorImpl>(0);
  Dataset data;
  data.name = "random images";
  data.inputs = torch::randn({samples, 1, 28, 28}, generator);
  data.targets = torch::randint(0, 10, {samples}, generator, torch::kLong);
  data.num_classes = 10;
  TrainOptions options;
  options.epochs = 0;
  options.batch_size = batch;
  options.optimizer = "adam";
  options.learning_rate = 0.001;
  options.keep_best = false;
  const DistillationLoss loss = [](const Batch& b, const torch::Tensor& s, const torch::Tensor& t) {
    return hinton_kd_loss(s, t, b.targets, 4.0, 0.9);
  };
  NullProgress quiet;
  NullLogger log;
  // The first steps compile and specialise the TorchScript graphs; both sides skip them.
  options.max_steps = warmup;
  distill_model(student, teacher, data, nullptr, options, loss, quiet, log);
  options.max_steps = steps;
  const auto summary = distill_model(student, teacher, data, nullptr, options, loss, quiet, log);

  const std::string command = fmt::format(
      "{} {}/bench/kd_step.py --teacher {} --student {} --threads {} --steps {} --warmup {} "
      "--batch {} --samples {}",
      MCOMPRESS_PYTHON, MCOMPRESS_SOURCE_DIR, (o.out / "throughput_teacher.pt").string(),
      (o.out / "throughput_student.pt").string(), at::get_num_threads(), steps, warmup, batch, samples);
  std::string python_output;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char buffer[256];
    while (fgets(buffer, sizeof buffer, pipe)) python_output += buffer;
    pclose(pipe);
  }
  double python_rate = 0.0;
  const auto at = python_output.find("samples_per_second ");
  if (at != std::string::npos) python_rate = std::stod(python_output.substr(at + 19));
  std::cout << fmt::format("\nOne KD step (teacher cnn w32 frozen, student cnn w8, T=4, alpha=0.9, "
                           "Adam), batch {}, {} threads, {} timed steps after {} warm-up steps\n\n",
                           batch, at::get_num_threads(), steps, warmup);
  print_table({"loop", "samples/s"},
              {{"mcompress SDK trainer (C++, distill_model)", fmt::format("{:.0f}", summary.samples_per_second)},
               {"Python loop, python3-torch " + std::string(python_rate > 0 ? "" : "(failed: " + python_output + ")"),
                fmt::format("{:.0f}", python_rate)}});
  return {{"cpp_samples_per_second", summary.samples_per_second},
          {"python_samples_per_second", python_rate}};
}

Options parse(int argc, char** argv) {
  Options o;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) throw Error(fmt::format("{} needs a value", args[i]));
      return args[++i];
    };
    if (args[i] == "--steps") o.steps = std::stoll(value());
    else if (args[i] == "--teacher-steps") o.teacher_steps = std::stoll(value());
    else if (args[i] == "--threads") o.threads = std::stoi(value());
    else if (args[i] == "--fmnist") o.fmnist = value();
    else if (args[i] == "--text") o.text = value();
    else if (args[i] == "--out") o.out = value();
    else if (o.suite.empty() && args[i][0] != '-') o.suite = args[i];
    else throw Error(fmt::format("unknown argument '{}'", args[i]));
  }
  if (o.suite != "fmnist" && o.suite != "shakespeare" && o.suite != "throughput" && o.suite != "all")
    throw Error("usage: mcompress_distill_bench fmnist|shakespeare|throughput|all [--steps N] "
                "[--teacher-steps N] [--threads N] [--fmnist DIR] [--text FILE] [--out DIR]");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    at::set_num_threads(o.threads);
    PassRunner runner(/*seed=*/7);
    nlohmann::json results;
    if (o.suite == "fmnist" || o.suite == "all") results["fmnist"] = bench_fmnist(o, runner);
    if (o.suite == "shakespeare" || o.suite == "all") results["shakespeare"] = bench_shakespeare(o, runner);
    if (o.suite == "throughput" || o.suite == "all") results["throughput"] = bench_throughput(o);
    fs::create_directories(o.out);
    std::ofstream(o.out / ("distill_" + o.suite + ".json")) << results.dump(2) << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
