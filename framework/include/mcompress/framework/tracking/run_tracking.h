#pragma once
// What mcompress records in the tracking store (tracking.h) about one run:
// read from the run directory the runner wrote (run.json, report.json,
// stages/*/record.json), so that `mcompress run` and `mcompress compare`
// (which logs each candidate from the parent process when it ends, even when
// the candidate crashed) record the same things. Torch-free.
//
//   params   seed, threads, model, model.<option>, data.<field>, teacher,
//            <stage>.pass, <stage>.<param> (resolved values), <stage>.teacher
//   metrics  every probed metric of every stage that ran, step = stage index
//            (baseline 0), timestamp = when the stage's record was written;
//            pass_seconds and probe_seconds likewise; the final (last
//            accepted) stage's metrics again as final.<metric>
//   tags     mlflow.runName, mlflow.user, mlflow.source.name (the recipe),
//            mlflow.source.type, mlflow.note.content (report.md),
//            mcompress.recipe, mcompress.status, mcompress.message,
//            mcompress.run_dir, mcompress.version, mcompress.final_stage,
//            mcompress.overrides, mcompress.stage.<stage> (its status),
//            mcompress.stages (stage names by step, comma-separated),
//            mcompress.plugin.<plugin> (its version), and the caller's tags
//   artifacts report.md, report.json, recipe.yaml, run.json,
//            stages/<NN_stage>/record.json (no models: they stay in the run directory)
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "mcompress/framework/tracking/tracking.h"

namespace mcompress {

struct RunLogRequest {
  std::filesystem::path run_dir;
  std::string experiment;  // the experiment's name; empty: the recipe's name from run.json
  std::string run_name;    // empty: the run directory's name
  int64_t start_time_ms = 0;  // 0: when run.json was written
  int64_t end_time_ms = 0;    // 0: now
  // The run's mcompress status when the caller knows better than report.json
  // (compare: crashed | timeout); empty: report.json's, or "failed" without one.
  std::string status;
  std::string error;  // why, when report.json cannot say (a crash, a time limit, an exception)
  std::map<std::string, std::string> tags;  // added to (and overriding) the tags above
  std::map<std::string, std::filesystem::path> artifacts;  // more files: name in artifacts/ -> file
};

struct LoggedRun {
  std::string experiment_id;
  std::string run_id;
  std::filesystem::path dir;  // <store>/<experiment_id>/<run_id>
};

// The run as it will be logged (separate so tests can check the mapping).
TrackedRun tracked_run_from_directory(const RunLogRequest& request);

// Logs the run into its experiment (created on demand). Throws mcompress::Error.
LoggedRun log_run_directory(TrackingStore& store, const RunLogRequest& request);

// MLflow's RunStatus for an mcompress status: completed -> FINISHED,
// timeout -> KILLED, stopped | failed | crashed -> FAILED (no final model).
MlflowRunStatus mlflow_status(const std::string& mcompress_status);

// Where runs are logged: `option` (--mlruns) when given, else the
// MCOMPRESS_MLRUNS environment variable when set and not empty, else
// ./mlruns (where MLflow looks by default).
std::filesystem::path tracking_root(const std::string& option);

}  // namespace mcompress
