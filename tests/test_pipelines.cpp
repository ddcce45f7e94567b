// Every example recipe in pipelines/ really runs (on a reduced budget set with
// --set), and its final model loads and runs in plain PyTorch in a fresh
// process, with no mcompress code.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace fs = std::filesystem;
using mcompress::testing::read_text;
using mcompress::testing::run_command;
using mcompress::testing::TempDir;

namespace {

// Smaller data and fewer epochs: the same stages, minutes less.
const std::map<std::string, std::string> kBudget = {
    {"fashion_mnist_compress.yaml",
     "--set data.train_limit=3000 --set data.eval_limit=500 --set data.validation_size=500 "
     "--set stages.train.params.epochs=1 --set probes.latency_runs=3 --set probes.latency_warmup=1"},
    // A sweep: two of its candidates (shard 2 of 10: 8-bit quantization of the
    // trained model and gradient pruning + fine-tuning), each on the reduced
    // base budget.
    {"compare_fashion_mnist.yaml",
     "--shard 2/10 --jobs 2 --set threads=1 --set data.train_limit=3000 --set data.eval_limit=500 "
     "--set data.validation_size=500 --set stages.train.params.epochs=1 --set probes.latency_runs=3 "
     "--set probes.latency_warmup=1"},
    {"fashion_mnist_prune.yaml",
     "--set data.train_limit=4000 --set data.eval_limit=1000 --set data.validation_size=500 "
     "--set stages.train.params.epochs=1 --set stages.recover.params.epochs=1 "
     "--set probes.latency_runs=3 --set probes.latency_warmup=1 "
     "--set stages.recover.gate.max_accuracy_drop=0.05"},
    {"fashion_mnist_prune_criteria.yaml",
     "--set threads=1 --set data.train_limit=4000 --set data.eval_limit=1000 "
     "--set data.validation_size=500 --set data.calibration_size=256 --set stages.train.params.epochs=1 "
     "--set stages.gradient.params.calibration_batches=4 "
     "--set stages.activation.params.calibration_batches=4 "
     "--set stages.activation_ft.gate.max_accuracy_drop=0.05 "
     "--set probes.latency_runs=3 --set probes.latency_warmup=1"},
    // threads=1: on a busy two-core machine a second intra-op thread waits
    // for a time slice at every parallel region.
    {"prune_then_distill.yaml",
     "--set threads=1 --set data.train_limit=6000 --set data.eval_limit=1000 "
     "--set data.validation_size=500 --set stages.train.params.epochs=1 "
     "--set stages.distill.params.epochs=3 --set probes.latency_runs=3 --set probes.latency_warmup=1"},
    // One epoch on a tenth of the data leaves the small models further below
    // the teacher than the full recipe allows, so the gates are wider here.
    {"distill_chain.yaml",
     "--set threads=1 --set data.train_limit=4500 --set data.eval_limit=1000 "
     "--set data.validation_size=500 --set stages.teacher.params.epochs=1 "
     "--set stages.intermediate.params.epochs=2 --set stages.student.params.epochs=2 "
     "--set stages.intermediate.gate.max_accuracy_drop=0.1 "
     "--set stages.student.gate.max_accuracy_drop=0.25 "
     "--set probes.latency_runs=3 --set probes.latency_warmup=1"},
    {"fashion_mnist_int8.yaml",
     "--set data.train_limit=3000 --set data.eval_limit=500 --set data.validation_size=500 "
     "--set data.calibration_size=128 --set stages.train.params.epochs=1 --set stages.distill.params.epochs=1 "
     "--set stages.quantize.params.calibration_batches=4 --set stages.quantize.gate.max_accuracy_drop=0.03 "
     "--set probes.latency_runs=3 --set probes.latency_warmup=1"},
    {"shakespeare_mlx_quant.yaml",
     "--set threads=1 --set data.train_limit=1500 --set data.eval_limit=100 "
     "--set data.validation_size=100 "
     "--set 'stages.train.params={epochs: 0, max_steps: 60, batch_size: 32, optimizer: adamw, lr: 0.003}' "
     "--set model.options.width=64 --set model.options.layers=2 "
     "--set stages.quantize.gate.max_accuracy_drop=0.05 "
     "--set probes.latency_runs=3 --set probes.latency_warmup=1 --set probes.sample_length=60"},
    {"llama_shakespeare.yaml",
     "--set model.options.width=48 --set model.options.heads=4 --set model.options.kv_heads=2 "
     "--set model.options.intermediate=96 --set model.options.layers=2 --set data.tokenizer_vocab=400 "
     "--set data.eval_limit=20 --set data.validation_size=20 "
     "--set 'stages.train.params={epochs: 0, max_steps: 80, batch_size: 16, optimizer: adamw, lr: 0.01}' "
     "--set probes.new_tokens=4 --set probes.sample_length=16"},
    {"shakespeare_reverse_kld.yaml",
     "--set threads=1 --set data.train_limit=1500 --set data.eval_limit=100 "
     "--set data.validation_size=100 "
     "--set 'stages.teacher.params={epochs: 0, max_steps: 60, batch_size: 32, optimizer: adamw, lr: 0.003}' "
     "--set stages.student.params.max_steps=16 --set stages.student.params.batch_size=16 "
     "--set stages.student.params.eval_every=0 --set stages.student.params.warmup_steps=0 "
     "--set probes.latency_runs=3 --set probes.latency_warmup=1 --set probes.sample_length=60"},
};

nlohmann::json stage(const nlohmann::json& report, const std::string& name) {
  for (const auto& s : report.at("stages")) {
    if (s.at("name") == name) return s;
  }
  return {};
}

TEST(Pipelines, EveryPipelineHasABudgetInThisTest) {
  for (const auto& entry : fs::directory_iterator(fs::path(MCOMPRESS_SOURCE_DIR) / "pipelines")) {
    if (entry.path().extension() == ".yaml") {
      EXPECT_TRUE(kBudget.count(entry.path().filename().string())) << entry.path();
    }
  }
}

TEST(Pipelines, FashionMnistPruneTrainsPrunesRecoversAndExportsAPlainTorchScriptModel) {
  TempDir tmp("pipeline-prune");
  const fs::path out = tmp.path() / "run";
  const auto result = run_command(std::string(MCOMPRESS_CLI) + " run " + MCOMPRESS_SOURCE_DIR +
                                  "/pipelines/fashion_mnist_prune.yaml --quiet --out " + out.string() + " " +
                                  kBudget.at("fashion_mnist_prune.yaml"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto report = nlohmann::json::parse(read_text(out / "report.json"));
  EXPECT_EQ(report.at("status"), "completed");

  const auto trained = stage(report, "train").at("metrics");
  const auto pruned = stage(report, "prune").at("metrics");
  EXPECT_GT(trained.at("accuracy").get<double>(), 0.70);
  // Half the channels removed: far fewer parameters and MACs, smaller file.
  EXPECT_LT(pruned.at("params").get<double>(), 0.6 * trained.at("params").get<double>());
  EXPECT_LT(pruned.at("macs").get<double>(), 0.6 * trained.at("macs").get<double>());
  EXPECT_LT(pruned.at("size_bytes").get<double>(), trained.at("size_bytes").get<double>());

  // The summary table is printed and saved as Markdown.
  EXPECT_NE(result.output.find("Latency b1 (ms)"), std::string::npos) << result.output;
  EXPECT_NE(read_text(out / "report.md").find("| prune | magnitude_prune |"), std::string::npos);

  // Plain PyTorch in a fresh process loads and runs the final (pruned) model.
  const auto python = run_command(std::string(MCOMPRESS_PYTHON) +
                                  " -c \"import torch; m = torch.jit.load('" + (out / "model.pt").string() +
                                  "'); m.eval(); y = m(torch.randn(3, 1, 28, 28)); "
                                  "print('shape', tuple(y.shape), sum(p.numel() for p in m.parameters()))\"");
  ASSERT_EQ(python.exit_code, 0) << python.output;
  EXPECT_NE(python.output.find("shape (3, 10)"), std::string::npos) << python.output;
  const auto final_params = std::stod(python.output.substr(python.output.rfind(' ') + 1));
  EXPECT_LT(final_params, 0.6 * trained.at("params").get<double>());
}

// Runs pipelines/<file> with its budget; the report, or null after a failure.
nlohmann::json run_pipeline(const TempDir& tmp, const std::string& file) {
  const fs::path out = tmp.path() / "run";
  const auto result = run_command(std::string(MCOMPRESS_CLI) + " run " + MCOMPRESS_SOURCE_DIR +
                                  "/pipelines/" + file + " --quiet --out " + out.string() + " " +
                                  kBudget.at(file));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  if (result.exit_code != 0) return nullptr;
  return nlohmann::json::parse(read_text(out / "report.json"));
}

TEST(Pipelines, PruneThenDistillRecoversWhatPruningLost) {
  TempDir tmp("pipeline-prune-distill");
  const auto report = run_pipeline(tmp, "prune_then_distill.yaml");
  ASSERT_FALSE(report.is_null());
  const auto trained = stage(report, "train").at("metrics");
  const auto pruned = stage(report, "prune").at("metrics");
  const auto distilled = stage(report, "distill");
  EXPECT_LT(pruned.at("params").get<double>(), 0.3 * trained.at("params").get<double>());
  EXPECT_LT(pruned.at("accuracy").get<double>(), trained.at("accuracy").get<double>() - 0.1);
  // Distillation trains the pruned network: same size, more accurate.
  EXPECT_EQ(distilled.at("metrics").at("params"), pruned.at("params"));
  EXPECT_GT(distilled.at("metrics").at("accuracy").get<double>(), pruned.at("accuracy").get<double>());
  EXPECT_EQ(distilled.at("status"), "accepted");
}

TEST(Pipelines, DistillChainPassesEachModelOnAsTheNextTeacher) {
  TempDir tmp("pipeline-chain");
  const auto report = run_pipeline(tmp, "distill_chain.yaml");
  ASSERT_FALSE(report.is_null());
  EXPECT_EQ(report.at("status"), "completed");
  const double teacher = stage(report, "teacher").at("metrics").at("params").get<double>();
  const double intermediate = stage(report, "intermediate").at("metrics").at("params").get<double>();
  const double student = stage(report, "student").at("metrics").at("params").get<double>();
  EXPECT_LT(intermediate, teacher / 4);
  EXPECT_LT(student, intermediate / 4);
  for (const char* name : {"intermediate", "student"}) {
    EXPECT_EQ(stage(report, name).at("status"), "accepted") << name;
    EXPECT_GT(stage(report, name).at("metrics").at("accuracy").get<double>(), 0.6) << name;
  }
}

TEST(Pipelines, ShakespeareReverseKldDistillsACharacterModel) {
  TempDir tmp("pipeline-shakespeare");
  const auto report = run_pipeline(tmp, "shakespeare_reverse_kld.yaml");
  ASSERT_FALSE(report.is_null());
  const auto teacher = stage(report, "teacher").at("metrics");
  const auto student = stage(report, "student").at("metrics");
  EXPECT_LT(student.at("params").get<double>(), 0.4 * teacher.at("params").get<double>());
  EXPECT_LT(teacher.at("bits_per_char").get<double>(), 5.0);  // log2(65) = 6.02 is guessing
  EXPECT_GT(student.at("perplexity").get<double>(), 1.0);
  // The summary table shows bits per character for language models.
  EXPECT_NE(read_text(tmp.path() / "run" / "report.md").find("Bits/char"), std::string::npos);
}

TEST(Pipelines, ShakespeareMlxQuantQuantizesTheTrainedModelAndExportsMlx) {
  TempDir tmp("pipeline-mlx-quant");
  const auto report = run_pipeline(tmp, "shakespeare_mlx_quant.yaml");
  ASSERT_FALSE(report.is_null());
  const auto trained = stage(report, "train").at("metrics");
  const auto quantized = stage(report, "quantize");
  EXPECT_EQ(quantized.at("status"), "accepted");
  // Same logical parameters, a smaller file, about the same bits per character.
  EXPECT_EQ(quantized.at("metrics").at("params"), trained.at("params"));
  EXPECT_LT(quantized.at("metrics").at("size_bytes").get<double>(),
            0.6 * trained.at("size_bytes").get<double>());
  EXPECT_LT(quantized.at("metrics").at("bits_per_char").get<double>(),
            trained.at("bits_per_char").get<double>() + 0.1);
  bool exported = false;
  for (const auto& entry : fs::directory_iterator(tmp.path() / "run" / "stages")) {
    exported = exported || fs::exists(entry.path() / "artifacts" / "mlx" / "model.safetensors");
  }
  EXPECT_TRUE(exported);
}

TEST(Pipelines, FashionMnistInt8EndsWithAnInt8ModelThatPlainPyTorchRuns) {
  TempDir tmp("pipeline-int8");
  const auto report = run_pipeline(tmp, "fashion_mnist_int8.yaml");
  ASSERT_FALSE(report.is_null());
  const auto trained = stage(report, "train").at("metrics");
  const auto quantized = stage(report, "quantize");
  EXPECT_EQ(quantized.at("status"), "accepted");
  EXPECT_LT(quantized.at("metrics").at("size_bytes").get<double>(),
            0.25 * trained.at("size_bytes").get<double>());
  const auto python = run_command(std::string(MCOMPRESS_PYTHON) + " -c \"import torch; m = torch.jit.load('" +
                                  (tmp.path() / "run" / "model.pt").string() +
                                  "'); y = m(torch.randn(3, 1, 28, 28)); print('shape', tuple(y.shape), "
                                  "'quantized' in m.code)\"");
  ASSERT_EQ(python.exit_code, 0) << python.output;
  EXPECT_NE(python.output.find("shape (3, 10) True"), std::string::npos) << python.output;
}

// The zoo's Llama trained with the tokenizer the run trains: the final model
// is a Hugging Face checkpoint that an independent PyTorch forward reads.
TEST(Pipelines, LlamaShakespeareTrainsACheckpointModelWithItsOwnTokenizer) {
  TempDir tmp("pipeline-llama");
  const auto report = run_pipeline(tmp, "llama_shakespeare.yaml");
  ASSERT_FALSE(report.is_null());
  const auto baseline = stage(report, "baseline").at("metrics");
  const auto trained = stage(report, "train").at("metrics");
  EXPECT_LT(trained.at("perplexity").get<double>(), 0.5 * baseline.at("perplexity").get<double>());
  EXPECT_GT(trained.at("decode_tokens_per_s").get<double>(), 0.0);
  const fs::path model = tmp.path() / "run" / "model";
  for (const char* file : {"config.json", "model.safetensors", "model.safetensors.index.json", "tokenizer.json"})
    EXPECT_TRUE(fs::is_regular_file(model / file)) << file;
  const auto python = run_command(std::string(MCOMPRESS_PYTHON) + " " + MCOMPRESS_SOURCE_DIR +
                                  "/tests/python/hf_reference.py logits '1,2,3,4,5' float32 " + model.string() +
                                  " " + (tmp.path() / "logits.safetensors").string());
  ASSERT_EQ(python.exit_code, 0) << python.output;
  EXPECT_TRUE(fs::is_regular_file(tmp.path() / "logits.safetensors"));
}

// Three criteria from the same trained model at the same sparsity: one
// table with each pruned and fine-tuned result.
TEST(Pipelines, FashionMnistPruneCriteriaComparesTheThreeCriteriaInOneTable) {
  TempDir tmp("pipeline-prune-criteria");
  const fs::path out = tmp.path() / "run";
  const auto result = run_command(std::string(MCOMPRESS_CLI) + " run " + MCOMPRESS_SOURCE_DIR +
                                  "/pipelines/fashion_mnist_prune_criteria.yaml --quiet --out " + out.string() +
                                  " " + kBudget.at("fashion_mnist_prune_criteria.yaml"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto report = nlohmann::json::parse(read_text(out / "report.json"));
  EXPECT_EQ(report.at("status"), "completed");
  const auto trained = stage(report, "train").at("metrics");
  EXPECT_GT(trained.at("accuracy").get<double>(), 0.70);
  for (const std::string criterion : {"magnitude", "gradient", "activation"}) {
    SCOPED_TRACE(criterion);
    const auto pruned = stage(report, criterion);
    const auto tuned = stage(report, criterion + "_ft");
    ASSERT_EQ(pruned.at("status"), "accepted") << pruned.dump(2);
    ASSERT_EQ(tuned.at("status"), "accepted") << tuned.dump(2);
    // Same sparsity, same shapes: every criterion removes the same parameters.
    EXPECT_LT(pruned.at("metrics").at("params").get<double>(), 0.6 * trained.at("params").get<double>());
    EXPECT_EQ(pruned.at("metrics").at("params"), stage(report, "magnitude").at("metrics").at("params"));
    EXPECT_GT(tuned.at("metrics").at("accuracy").get<double>(), 0.65);
  }
  const std::string table = read_text(out / "report.md");
  for (const char* row : {"| magnitude | magnitude_prune |", "| gradient | gradient_prune |",
                          "| activation | activation_prune |", "| gradient_ft | finetune |"}) {
    EXPECT_NE(table.find(row), std::string::npos) << row << "\n" << table;
  }
}

TEST(Pipelines, FashionMnistCompressIsTheRunnableBaseOfTheComparison) {
  TempDir tmp("pipeline-compress");
  const fs::path out = tmp.path() / "run";
  const auto result = run_command(std::string(MCOMPRESS_CLI) + " run " + MCOMPRESS_SOURCE_DIR +
                                  "/pipelines/fashion_mnist_compress.yaml --quiet --out " + out.string() + " " +
                                  kBudget.at("fashion_mnist_compress.yaml"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto report = nlohmann::json::parse(read_text(out / "report.json"));
  EXPECT_EQ(report.at("final_stage"), "recover");
  const auto recovered = report.at("stages").back().at("metrics");
  EXPECT_GT(recovered.at("accuracy").get<double>(), 0.6);
  EXPECT_GT(recovered.at("fidelity_top1_agreement").get<double>(), 0.0);
}

TEST(Pipelines, CompareFashionMnistRanksItsCandidates) {
  TempDir tmp("pipeline-compare");
  const fs::path out = tmp.path() / "sweep";
  const auto result = run_command(std::string(MCOMPRESS_CLI) + " compare " + MCOMPRESS_SOURCE_DIR +
                                  "/pipelines/compare_fashion_mnist.yaml --quiet --out " + out.string() + " " +
                                  kBudget.at("compare_fashion_mnist.yaml"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto comparison = nlohmann::json::parse(read_text(out / "comparison.json"));
  ASSERT_EQ(comparison.at("candidates").size(), 2u);
  std::set<std::string> names;
  for (const auto& c : comparison.at("candidates")) {
    EXPECT_EQ(c.at("status"), "completed") << c.dump();
    names.insert(c.at("name").get<std::string>());
  }
  EXPECT_EQ(names, (std::set<std::string>{"unpruned + mlx_quant 8-bit",
                                          "prune.pass=gradient_prune, prune.sparsity=0.5, recover.pass=finetune"}));
  EXPECT_FALSE(comparison.at("recommendation").get<std::string>().empty());
  EXPECT_TRUE(fs::exists(out / "comparison.html"));
}

TEST(Pipelines, DryRunPrintsTheResolvedPlanAndWritesNothing) {
  TempDir tmp("dry-run");
  const auto result = run_command(std::string(MCOMPRESS_CLI) + " run " + MCOMPRESS_SOURCE_DIR +
                                  "/pipelines/fashion_mnist_prune.yaml --dry-run --out " +
                                  (tmp.path() / "run").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("magnitude_prune"), std::string::npos);
  EXPECT_NE(result.output.find("sparsity"), std::string::npos);
  EXPECT_FALSE(fs::exists(tmp.path() / "run"));
}

}  // namespace
