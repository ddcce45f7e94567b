#pragma once
// An MLflow-compatible file store ("mlruns/" directory), written and read
// without MLflow, so that `mlflow ui --backend-store-uri mlruns` and other
// MLflow tooling can browse what mcompress ran. Torch-free.
//
// Layout (docs/tracking.md has every field):
//   <root>/.trash/                          deleted experiments (MLflow's; never written)
//   <root>/.mcompress.lock                  serializes experiment creation (flock)
//   <root>/<experiment_id>/meta.yaml        artifact_location, creation_time, experiment_id,
//                                           last_update_time, lifecycle_stage, name
//   <root>/<experiment_id>/<run_id>/meta.yaml   the run's info (status as MLflow's RunStatus)
//   <root>/<experiment_id>/<run_id>/params/<key>    the value, no trailing newline
//   <root>/<experiment_id>/<run_id>/metrics/<key>   lines "<timestamp_ms> <value> <step>"
//   <root>/<experiment_id>/<run_id>/tags/<key>      the value, no trailing newline
//   <root>/<experiment_id>/<run_id>/artifacts/...   copied files
//
// Consistency: a run directory is invisible (to this reader and to MLflow's,
// which skips run directories without meta.yaml) until its meta.yaml appears,
// and meta.yaml is written last, atomically, after everything else is synced.
// So a run is logged completely or not at all. Experiments are created under
// an exclusive lock on <root>/.mcompress.lock, and their ids are claimed by
// creating the directory (which fails if it exists), so concurrent processes
// logging to one store agree on one experiment per name.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mcompress {

// MLflow's RunStatus, stored as an integer in a run's meta.yaml.
enum class MlflowRunStatus : int { Running = 1, Scheduled = 2, Finished = 3, Failed = 4, Killed = 5 };
const char* to_string(MlflowRunStatus status);  // "FINISHED", ...

struct MetricPoint {
  int64_t timestamp_ms = 0;
  double value = 0.0;
  int64_t step = 0;
};

// A run as it is logged: mcompress logs a run once it has ended, in one go.
struct TrackedRun {
  std::string name;  // run_name in meta.yaml and the mlflow.runName tag
  MlflowRunStatus status = MlflowRunStatus::Finished;
  int64_t start_time_ms = 0;
  int64_t end_time_ms = 0;
  std::string user;  // user_id; empty: the current user (as MLflow finds it)
  std::map<std::string, std::string> params;
  std::map<std::string, std::vector<MetricPoint>> metrics;
  std::map<std::string, std::string> tags;
  // Files copied into artifacts/: destination (relative to artifacts/) -> source file.
  std::map<std::string, std::filesystem::path> artifacts;
};

struct ExperimentInfo {
  std::string id;
  std::string name;
  std::string artifact_location;
  std::string lifecycle_stage;  // "active" or "deleted"
  int64_t creation_time = 0;
  int64_t last_update_time = 0;
};

// A run read back from a store (written by mcompress or by MLflow).
struct StoredRun {
  std::string run_id;
  std::string experiment_id;
  std::string experiment_name;
  std::string run_name;
  std::string user_id;
  std::string lifecycle_stage;
  std::string artifact_uri;
  int status = 0;  // MlflowRunStatus value
  int64_t start_time = 0;
  std::optional<int64_t> end_time;
  std::map<std::string, std::string> params;
  std::map<std::string, std::vector<MetricPoint>> metrics;  // in file order
  std::map<std::string, std::string> tags;
  std::filesystem::path dir;

  // The value MLflow shows for a metric: the point with the largest
  // (step, timestamp, value). Empty when the run has no such metric.
  std::optional<double> latest(const std::string& key) const;
  std::string tag(const std::string& key) const;  // "" when absent
};

// Makes any string usable as an MLflow param/metric/tag key (and file name):
// characters outside letters, digits, `_ - . space` become `_`, and `..`
// becomes `_.` (MLflow refuses keys with path segments `..`).
std::string mlflow_key(const std::string& text);

// A metric value as MLflow's Python writer formats it (repr of a float:
// "0.5", "3.0", "1e-05", "nan", "inf").
std::string mlflow_number(double value);

// Milliseconds since the Unix epoch, now.
int64_t now_ms();

class TrackingStore {
 public:
  // Opens the store at `root` (an "mlruns" directory, or a file:// URI).
  // Nothing is created until something is written.
  explicit TrackingStore(std::filesystem::path root);
  const std::filesystem::path& root() const { return root_; }

  // --- writing ---------------------------------------------------------
  // The id of the active experiment named `name`, created (with the next
  // free numeric id) when there is none. Safe across threads and processes.
  // Throws mcompress::Error when the name belongs to a deleted experiment
  // (as MLflow does) or the store cannot be written.
  std::string ensure_experiment(const std::string& name);

  // Writes `run` as a new run of `experiment_id`; returns its run id (32
  // lowercase hex digits). The run becomes visible only when complete.
  std::string log_run(const std::string& experiment_id, const TrackedRun& run);

  // --- reading ---------------------------------------------------------
  // Active experiments, by id (numeric ids in numeric order).
  std::vector<ExperimentInfo> experiments() const;
  std::optional<ExperimentInfo> find_experiment(const std::string& name) const;
  // Active runs of the active experiments (all when `experiment_name` is
  // empty), newest first. Throws mcompress::Error for an unknown experiment.
  std::vector<StoredRun> runs(const std::string& experiment_name = "") const;
  // The run whose id is `id_or_prefix` or, failing that, the one run whose
  // id starts with it. Throws mcompress::Error when none or several match.
  StoredRun find_run(const std::string& id_or_prefix) const;

 private:
  void initialize_locked();  // root, .trash and experiment 0 "Default"
  std::string create_experiment_locked(const std::string& name);

  std::filesystem::path root_;
};

}  // namespace mcompress
