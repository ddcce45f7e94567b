// Running sweep candidates as child processes and collecting their results.
#include "mcompress/framework/support/file_reading.h"
#include "mcompress/framework/sweep/compare.h"

#include <unistd.h>

#include <fmt/format.h>

#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "mcompress/framework/support/atomic_file.h"
#include "mcompress/framework/support/child_process.h"
#include "mcompress/framework/tracking/run_tracking.h"
#include "mcompress/sdk/error.h"

namespace mcompress {
namespace fs = std::filesystem;
namespace {

constexpr int kSweepDirFormat = 1;

nlohmann::json objective_json(const Objective& o) {
  nlohmann::json constraints = nlohmann::json::array();
  for (const auto& b : o.constraints) constraints.push_back({{"metric", b.metric}, {"is_max", b.is_max}, {"limit", b.limit}});
  return {{"reference", o.reference},
          {"primary", o.primary},
          {"minimize", o.direction == Direction::Minimize},
          {"score_weights", o.score_weights},
          {"constraints", constraints}};
}

Objective objective_from_json(const nlohmann::json& j) {
  Objective o;
  o.reference = j.at("reference");
  o.primary = j.at("primary");
  o.direction = j.at("minimize").get<bool>() ? Direction::Minimize : Direction::Maximize;
  o.score_weights = j.at("score_weights").get<std::map<std::string, double>>();
  for (const auto& b : j.at("constraints")) o.constraints.push_back({b.at("metric"), b.at("is_max"), b.at("limit")});
  return o;
}

nlohmann::json sweep_json(const Sweep& sweep) {
  nlohmann::json candidates = nlohmann::json::array();
  for (const auto& c : sweep.candidates) {
    candidates.push_back({{"index", c.index}, {"name", c.name}, {"overrides", c.overrides}});
  }
  return {{"format", kSweepDirFormat},    {"name", sweep.name},           {"source", sweep.source_path},
          {"base", sweep.base_recipe},    {"overrides", sweep.overrides}, {"candidates", candidates},
          {"objective", objective_json(sweep.objective)}};
}

// A rerun into the same directory continues the same sweep, or refuses.
void prepare_directory(const Sweep& sweep, const fs::path& out) {
  const auto file = out / "sweep.json";
  const auto current = sweep_json(sweep);
  if (fs::exists(file)) {
    auto previous = read_json_file(file);
    if (previous.at("candidates") != current.at("candidates") || previous.at("base") != current.at("base") ||
        previous.at("overrides") != current.at("overrides")) {
      throw Error(fmt::format("{} holds another sweep (its candidates or base differ); use another --out "
                              "directory to start this one",
                              out.string()));
    }
  }
  fs::create_directories(out / "candidates");
  write_file_atomically(file, current.dump(2) + "\n");
}

struct Running {
  Candidate candidate;
  ChildProcess process;
  std::chrono::steady_clock::time_point started;
};

std::vector<std::string> child_arguments(const Sweep& sweep, const Candidate& c, const fs::path& run_dir,
                                         const CompareOptions& options) {
  std::vector<std::string> args{options.executable, "run"};
  if (fs::exists(run_dir / "run.json")) {
    args.insert(args.end(), {"--resume", run_dir.string()});  // an interrupted candidate continues
  } else {
    args.insert(args.end(), {sweep.base_recipe, "--out", run_dir.string()});
    for (const auto& o : sweep.overrides) args.insert(args.end(), {"--set", o});
    for (const auto& o : c.overrides) args.insert(args.end(), {"--set", o});
  }
  args.push_back("--quiet");
  args.push_back("--no-tracking");  // the parent logs the candidate, crashed or not
  if (options.isolate) args.push_back("--isolate");
  for (const auto& d : options.plugin_dirs) args.insert(args.end(), {"--plugin-dir", d});
  return args;
}

CandidateResult finish(const Sweep& sweep, const Candidate& c, const fs::path& dir, const ChildExit& exit,
                       bool timed_out, double seconds) {
  CandidateResult result;
  const auto report_file = dir / "run" / "report.json";
  if (fs::exists(report_file)) {
    result = result_from_report(c, read_json_file(report_file), sweep.objective.reference);
  } else {
    result.index = c.index;
    result.name = c.name;
    result.overrides = c.overrides;
    result.status = "failed";
  }
  result.run_dir = (dir / "run").string();
  result.seconds = seconds;
  if (timed_out) {
    result.status = "timeout";
    result.error = fmt::format("stopped after the sweep's time limit of {} s", sweep.time_limit_seconds);
  } else if (exit.signaled()) {
    result.status = "crashed";
    result.error = fmt::format("the candidate's process {}; last output: {}", exit.describe(),
                               last_lines(dir / "output.log", 3));
  } else if (exit.exit_code() != 0 && result.error.empty()) {
    result.error = last_lines(dir / "output.log", 3);
  }
  return result;
}

// A finished candidate as a run of the sweep's experiment. Tracking trouble
// is reported, never fatal: the sweep directory holds every result.
void track_candidate(const Sweep& sweep, const Candidate& c, const CandidateResult& result, const fs::path& dir,
                     const CompareOptions& options, Logger& log) {
  if (options.tracking_root.empty()) return;
  RunLogRequest request;
  request.run_dir = dir / "run";
  request.experiment = sweep.name;
  request.run_name = c.name;
  request.end_time_ms = now_ms();
  request.start_time_ms = request.end_time_ms - static_cast<int64_t>(result.seconds * 1000);
  request.status = result.status;
  request.error = result.error;
  request.tags = {{"mcompress.sweep", sweep.name},
                  {"mcompress.candidate", c.name},
                  {"mcompress.candidate_index", std::to_string(c.index)},
                  {"mcompress.sweep_dir", fs::absolute(options.out_dir).lexically_normal().string()}};
  request.artifacts = {{"output.log", dir / "output.log"}};
  try {
    TrackingStore store(options.tracking_root);
    const auto logged = log_run_directory(store, request);
    log.info(fmt::format("  tracked {} as run {}", c.name, logged.run_id));
  } catch (const std::exception& e) {
    log.warn(fmt::format("candidate {} was not logged to the tracking store {}: {}", c.name,
                         options.tracking_root.string(), e.what()));
  }
}

std::vector<CandidateResult> results_in(const fs::path& dir) {
  std::vector<CandidateResult> results;
  const auto candidates = dir / "candidates";
  if (!fs::is_directory(candidates)) return results;
  for (const auto& entry : fs::directory_iterator(candidates)) {
    const auto file = entry.path() / "result.json";
    if (fs::exists(file)) results.push_back(candidate_result_from_json(read_json_file(file)));
  }
  return results;
}

}  // namespace

SweepOutcome run_sweep(const Sweep& sweep, const CompareOptions& options, Logger& log, Progress& progress) {
  if (options.jobs < 1) throw Error("--jobs must be at least 1");
  prepare_directory(sweep, options.out_dir);
  const auto mine = shard_of(sweep.candidates, options.shard_index, options.shard_count);
  std::vector<Candidate> pending;
  SweepOutcome outcome;
  for (const auto& c : mine) {
    if (fs::exists(options.out_dir / "candidates" / c.directory() / "result.json")) {
      ++outcome.skipped;
    } else {
      pending.push_back(c);
    }
  }
  log.info(fmt::format("sweep `{}`: {} candidates in this shard, {} already finished, {} to run with {} job(s)",
                       sweep.name, mine.size(), outcome.skipped, pending.size(), options.jobs));

  std::vector<Running> running;
  size_t next = 0;
  int done = 0;
  progress.start("candidates", static_cast<int64_t>(pending.size()));
  while (next < pending.size() || !running.empty()) {
    while (next < pending.size() && static_cast<int>(running.size()) < options.jobs) {
      const auto& c = pending[next++];
      const auto dir = options.out_dir / "candidates" / c.directory();
      fs::create_directories(dir);
      ChildSpec spec;
      spec.args = child_arguments(sweep, c, dir / "run", options);
      spec.stderr_file = dir / "output.log";
      running.push_back({c, ChildProcess::start(spec), std::chrono::steady_clock::now()});
      log.info(fmt::format("  started {} (pid {})", c.name, running.back().process.pid()));
    }
    // The first candidate that ended, or one over the time limit (killed).
    std::optional<ChildExit> exit;
    bool timed_out = false;
    auto ended = running.begin();
    for (; ended != running.end(); ++ended) {
      if ((exit = ended->process.poll())) break;
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - ended->started).count();
      if (sweep.time_limit_seconds > 0 && elapsed > sweep.time_limit_seconds) {
        exit = ended->process.kill_and_wait();
        timed_out = true;
        break;
      }
    }
    if (!exit) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    const Running r = *ended;
    running.erase(ended);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - r.started).count();
    const auto dir = options.out_dir / "candidates" / r.candidate.directory();
    const auto result = finish(sweep, r.candidate, dir, *exit, timed_out, seconds);
    auto result_json = to_json(result);
    // The sweep host's own memory as each candidate ends: flat over a long
    // sweep, or it leaks per candidate (bench/load_sweep checks this).
    result_json["host_rss_mb"] = resident_memory_mb(getpid());
    result_json["host_peak_rss_mb"] = peak_resident_memory_mb(getpid());
    write_file_atomically(dir / "result.json", result_json.dump(2) + "\n");
    track_candidate(sweep, r.candidate, result, dir, options, log);
    ++outcome.ran;
    progress.update(++done, fmt::format("{}: {}", r.candidate.name, result.status));
    log.info(fmt::format("  finished {}: {} in {:.1f} s{}", r.candidate.name, result.status, seconds,
                         result.error.empty() ? "" : " — " + result.error));
  }
  progress.finish(fmt::format("{} run, {} resumed from earlier", outcome.ran, outcome.skipped));

  auto results = results_in(options.out_dir);
  for (const auto& r : results) outcome.failed += r.status != "completed";
  outcome.comparison = rank_candidates(sweep.name, sweep.objective, std::move(results));
  write_comparison(options.out_dir.string(), outcome.comparison);
  return outcome;
}

Comparison merge_sweep_results(const std::vector<fs::path>& dirs) {
  if (dirs.empty()) throw Error("give at least one sweep directory");
  const auto first = read_json_file(dirs.front() / "sweep.json");
  std::map<int, CandidateResult> by_index;  // a candidate found in several shards counts once
  for (const auto& dir : dirs) {
    const auto sweep = read_json_file(dir / "sweep.json");
    if (sweep.at("candidates") != first.at("candidates")) {
      throw Error(fmt::format("{} belongs to another sweep than {}; merge only shards of one sweep",
                              dir.string(), dirs.front().string()));
    }
    for (auto& r : results_in(dir)) by_index[r.index] = std::move(r);
  }
  std::vector<CandidateResult> results;
  for (auto& [index, r] : by_index) results.push_back(std::move(r));
  return rank_candidates(first.at("name"), objective_from_json(first.at("objective")), std::move(results));
}

}  // namespace mcompress
