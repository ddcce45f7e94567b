// mcompress: the command-line host. Each command lives in commands/<command>.cpp.
//   mcompress run RECIPE.yaml [--out DIR] [--set key=value ...] [--dry-run] [--quiet] [--json] [--isolate]
//   mcompress run --resume DIR
//   mcompress runs list | show RUN | diff RUN_A RUN_B
//   mcompress plugins | explain PASS | zoo | version | benchmark MODEL | quantize MODEL --bits B
//   mcompress compress MODEL.pt --target-ratio R --max-accuracy-loss L
#include <c10/util/Exception.h>

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include <iostream>

#include "cli_support.h"
#include "commands/commands.h"
#include "mcompress/framework/run/input_error.h"
#include "mcompress/sdk/error.h"

using namespace mcompress::cli;

namespace {

const char* kUsage = R"(usage: mcompress <command> [options]

commands:
  run RECIPE.yaml   validate and run a recipe   (mcompress run --help)
  run --resume DIR  continue an interrupted run from its last completed stage
  compare SWEEP.yaml  run, rank and report many candidate pipelines (mcompress compare --help)
  compress MODEL.pt  find the fastest model R times smaller losing at most L accuracy (--help)
  report DIR...     merge and rank the results of sweep directories (e.g. shards)
  runs list|show|diff  query the runs tracked in the MLflow store (mcompress runs --help)
  plugins           list loaded plugins, their passes, and refused libraries
  explain PASS      show a pass's summary, needs and parameters
  benchmark MODEL   measure a checkpoint directory or TorchScript file without a recipe
  export gguf DIR   write a checkpoint as one GGUF file for llama.cpp (f16, q8_0, q4_0)
  quantize MODEL    MLX-quantize a checkpoint (to mlx-lm's layout) or TorchScript file
  zoo               list the built-in models
  version           print versions (mcompress, SDK, LibTorch)

plugins are searched in the build/installed plugin folder, then
MCOMPRESS_PLUGIN_PATH (colon-separated), then each --plugin-dir.
runs are tracked in an MLflow file store: --mlruns DIR, else MCOMPRESS_MLRUNS,
else ./mlruns (--no-tracking: none).
)";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
    std::cout << kUsage;
    return args.empty() ? kExitBadInput : kExitOk;
  }
  const std::string command = args[0];
  args.erase(args.begin());
  try {
    if (command == "run") return command_run(args);
    if (command == "compare") return command_compare(args);
    if (command == "report") return command_report(args);
    if (command == "runs") return command_runs(args);
    if (command == "plugins") return command_plugins(args);
    if (command == "explain") return command_explain(args);
    if (command == "benchmark") return command_benchmark(args);
    if (command == "export") return command_export(args);
    if (command == "quantize") return command_quantize(args);
    if (command == "compress") return command_compress(args);
    if (command == "zoo") return command_zoo();
    if (command == "stage-exec") return command_stage_exec(args);
    if (command == "version" || command == "--version") return command_version();
    std::cerr << fmt::format("error: unknown command '{}'\n\n{}", command, kUsage);
    return kExitBadInput;
  } catch (const mcompress::InputError& e) {
    std::cerr << "error: " << e.what() << "\nnothing was run\n";
    return kExitBadInput;
  } catch (const po::error& e) {
    std::cerr << fmt::format("error: {}\n(see mcompress {} --help)\n", e.what(), command);
    return kExitBadInput;
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << "\n";
    return kExitFailed;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitFailed;
  } catch (...) {
    std::cerr << "error: " << mcompress::current_exception_message() << "\n";
    return kExitFailed;
  }
}
