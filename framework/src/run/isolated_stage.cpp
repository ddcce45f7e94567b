#include "run/isolated_stage.h"

#include <unistd.h>

#include <fmt/format.h>

#include "mcompress/framework/run/stage_isolation.h"
#include "mcompress/framework/support/atomic_file.h"
#include "mcompress/framework/support/file_reading.h"
#include "mcompress/sdk/error.h"
#include "run/run_directory.h"

namespace mcompress {
namespace fs = std::filesystem;

PassExecution execute_pass_isolated(const Recipe& recipe, const RunOptions& options, size_t index,
                                    const StageSpec& stage, PassContext& ctx, const fs::path& stage_dir,
                                    const fs::path& original_model) {
  const StageExchange exchange(stage_dir);
  fs::remove_all(exchange.dir);  // what an interrupted earlier attempt left
  fs::create_directories(exchange.dir);
  struct RemoveWhenDone {
    fs::path dir;
    ~RemoveWhenDone() {
      std::error_code ignored;
      fs::remove_all(dir, ignored);
    }
  } remove_when_done{exchange.dir};
  save_model(ctx.model, exchange.input_model());
  if (ctx.teacher) save_model(*ctx.teacher, exchange.teacher_model());
  const nlohmann::json request = {{"host_pid", static_cast<int64_t>(getpid())},
                                  {"recipe_path", recipe.source_path},
                                  {"overrides", options.overrides},
                                  {"recipe", to_json(recipe)},
                                  {"stage", index},
                                  {"seed", ctx.seed},
                                  {"stage_dir", fs::absolute(stage_dir).string()},
                                  {"original_model", fs::absolute(original_model).string()},
                                  {"teacher", ctx.teacher.has_value()}};
  write_file_atomically(exchange.request(), request.dump(2) + "\n");
  PassExecution execution;
  try {
    const nlohmann::json result = run_stage_process(exchange, stage.isolation, *options.isolation);
    if (result.contains("error")) {
      execution.error = result.at("error").get<std::string>();
      return execution;
    }
    ctx.model = load_model(exchange.output_model().string(), "the stage process's model");
    ctx.model.eval();
    execution.result = {result.value("summary", ""), result.value("stats", nlohmann::json::object())};
  } catch (...) {
    execution.error = current_exception_message();
  }
  return execution;
}

void run_isolated_stage(const fs::path& exchange_dir, const PluginHost& plugins, Logger& log,
                        Progress& progress) {
  const nlohmann::json request = read_json_file(exchange_dir / "request.json");
  const StageExchange exchange(request.at("stage_dir").get<std::string>());
  const Recipe recipe = load_recipe(request.at("recipe_path").get<std::string>(),
                                    request.at("overrides").get<std::vector<std::string>>(), plugins);
  if (to_json(recipe) != request.at("recipe")) {
    throw Error(fmt::format("the recipe {} changed while the run was going on; restore it",
                            recipe.source_path));
  }
  const size_t index = request.at("stage").get<size_t>();
  const StageSpec& stage = recipe.stages.at(index - 1);
  const Pass* pass = plugins.find_pass(stage.pass);
  if (!pass) throw Error(fmt::format("pass '{}' is not loaded", stage.pass));
  set_threads(recipe.threads);
  const RunData data = load_run_data(recipe, log);
  PassContext ctx = pass_context(data, example_input(recipe, data), stage, request.at("seed").get<uint64_t>(),
                                 request.at("stage_dir").get<std::string>(), log, progress);
  ctx.model = load_model(exchange.input_model().string(), "the stage's input model");
  ctx.original = load_model(request.at("original_model").get<std::string>(), "the original model");
  ctx.original.eval();
  if (request.at("teacher").get<bool>()) {
    ctx.teacher = load_model(exchange.teacher_model().string(), "the stage's teacher");
    ctx.teacher->eval();
  }
  PassExecution execution = execute_pass(*pass, ctx);
  nlohmann::json result;
  if (!execution.error) {
    try {
      save_model(ctx.model, exchange.output_model());
      result = {{"summary", execution.result.summary}, {"stats", execution.result.stats}};
    } catch (...) {
      execution.error = "its model cannot be saved: " + current_exception_message();
    }
  }
  if (execution.error) result = {{"error", *execution.error}};
  write_file_atomically(exchange.result(), result.dump(2) + "\n");
}

}  // namespace mcompress
