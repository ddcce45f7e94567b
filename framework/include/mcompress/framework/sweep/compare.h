#pragma once
// `mcompress compare`: runs a sweep's candidates as child `mcompress run`
// processes (so a crashing or hanging plugin takes down only its candidate),
// up to `jobs` at a time, streams each result to disk as it finishes, and
// ranks what has finished.
//
// Sweep directory:
//   sweep.json                          the sweep as read (a rerun must match it)
//   candidates/NNN_<name>/run/          the candidate's run directory (resumable)
//   candidates/NNN_<name>/result.json   written when the candidate ends, whatever its status
//                                       (with the sweep host's resident memory then and its peak so
//                                       far: host_rss_mb, host_peak_rss_mb)
//   candidates/NNN_<name>/output.log    the child's stderr
//   comparison.{md,csv,json,html}       the ranking of every result found
#include <filesystem>
#include <string>
#include <vector>

#include "mcompress/framework/sweep/comparison.h"
#include "mcompress/framework/sweep/sweep.h"
#include "mcompress/sdk/progress.h"

namespace mcompress {

struct CompareOptions {
  std::filesystem::path out_dir;
  int jobs = 1;
  int shard_index = 0;  // this process runs shard_index of shard_count
  int shard_count = 1;
  std::vector<std::string> plugin_dirs;  // passed on to every candidate
  std::string executable;                // the mcompress binary to run candidates with
  bool isolate = true;                   // candidates run each stage in a child process (--isolate)
  // MLflow file store in which each candidate is logged (by this process,
  // when it ends) as a run of the experiment named after the sweep; empty:
  // no tracking. Candidates themselves never log (--no-tracking).
  std::filesystem::path tracking_root;
};

struct SweepOutcome {
  Comparison comparison;
  int ran = 0;      // candidates run by this invocation
  int skipped = 0;  // already finished earlier (resume)
  int failed = 0;   // of all results, those not completed
};

SweepOutcome run_sweep(const Sweep& sweep, const CompareOptions& options, Logger& log, Progress& progress);

// Every result.json under each sweep directory (shards of one sweep), ranked
// by the objective recorded in the first directory's sweep.json.
Comparison merge_sweep_results(const std::vector<std::filesystem::path>& dirs);

}  // namespace mcompress
