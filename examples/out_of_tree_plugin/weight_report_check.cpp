// The plugin's own check, written with mcompress::testing the way a third
// party tests a plugin: load the built library as the host would, run its
// pass on a zoo model, and look at what it wrote.
//   weight_report_check PLUGIN.so WORK_DIR      exit code 0 when all is well
#include <filesystem>
#include <fstream>
#include <iostream>

#include <mcompress/framework/sources/zoo.h>
#include <mcompress/framework/testing/plugin_loader.h>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: weight_report_check PLUGIN.so WORK_DIR\n";
    return 2;
  }
  const auto& plugin = mcompress::testing::load_plugin(argv[1]);
  const mcompress::Pass& pass = plugin.pass("weight_report");

  mcompress::Params params;
  params.set("include_buffers", false);
  mcompress::NullLogger log;
  mcompress::NullProgress progress;
  mcompress::PassContext ctx;
  ctx.model = mcompress::build_zoo_model("mlp", {{"width", 16}}, 10, 1);
  ctx.original = ctx.model;
  ctx.example_input = torch::zeros({1, 1, 28, 28});
  ctx.params = &params;
  ctx.log = &log;
  ctx.progress = &progress;
  ctx.artifact_dir = argv[2];
  std::filesystem::create_directories(ctx.artifact_dir);

  const mcompress::PassResult result = pass.run(ctx);
  const auto tensors = result.stats.at("tensors").get<size_t>();
  if (tensors != ctx.model.parameters().size()) {
    std::cerr << "expected one entry per parameter, got " << tensors << "\n";
    return 1;
  }
  if (!std::ifstream(ctx.artifact_dir / "weights.json")) {
    std::cerr << "no weights.json written\n";
    return 1;
  }
  std::cout << "weight_report: " << result.summary << "\n";
  return 0;
}
