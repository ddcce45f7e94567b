#include "mcompress/framework/run/stage_isolation.h"

#include <unistd.h>

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "mcompress/framework/support/file_reading.h"
#include "mcompress/framework/support/child_process.h"
#include "mcompress/sdk/error.h"

namespace mcompress {
namespace fs = std::filesystem;
namespace {

// Often enough that a fast leak overshoots its limit by little.
constexpr auto kPollInterval = std::chrono::milliseconds(50);
constexpr size_t kOutputLinesInErrors = 3;

double machine_memory_mb() {
  std::ifstream meminfo("/proc/meminfo");
  for (std::string line; std::getline(meminfo, line);) {
    if (line.rfind("MemTotal:", 0) == 0) return std::strtod(line.c_str() + 9, nullptr) / 1024.0;  // kB
  }
  return 0.0;
}

// Copies what the child appends to its log to stderr, so an isolated stage
// shows its progress like one run in the host.
class OutputFollower {
 public:
  OutputFollower(const fs::path& file, bool enabled) : file_(file), enabled_(enabled) {}
  void copy_new_output() {
    if (!enabled_) return;
    std::ifstream in(file_, std::ios::binary);
    if (!in) return;
    in.seekg(offset_);
    std::string chunk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    offset_ += static_cast<std::streamoff>(chunk.size());
    if (!chunk.empty()) {
      std::fwrite(chunk.data(), 1, chunk.size(), stderr);
      std::fflush(stderr);
    }
  }

 private:
  fs::path file_;
  bool enabled_;
  std::streamoff offset_ = 0;
};

std::string with_output(const std::string& what, const fs::path& log) {
  const std::string lines = last_lines(log, kOutputLinesInErrors);
  return lines.empty() ? what : fmt::format("{}; last output: {}", what, lines);
}

}  // namespace

double effective_memory_limit_mb(const IsolationSpec& limits) {
  return limits.memory_limit_mb > 0 ? limits.memory_limit_mb : machine_memory_mb() * 0.75;
}

nlohmann::json run_stage_process(const StageExchange& exchange, const IsolationSpec& limits,
                                 const IsolationOptions& options) {
  ChildSpec spec;
  spec.args = {options.executable, "stage-exec", exchange.dir.string()};
  for (const auto& dir : options.plugin_dirs) spec.args.insert(spec.args.end(), {"--plugin-dir", dir});
  spec.stdout_file = exchange.log;
  spec.stderr_file = exchange.log;
  const double memory_limit_mb = effective_memory_limit_mb(limits);
  OutputFollower follower(exchange.log, options.show_output);
  {
    std::ofstream truncate(exchange.log);  // this attempt's output only
  }
  const auto started = std::chrono::steady_clock::now();
  ChildProcess child = ChildProcess::start(spec);
  std::optional<ChildExit> exit;
  std::string exceeded;
  while (!(exit = child.poll())) {
    follower.copy_new_output();
    const double resident_mb = child.resident_mb();
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (memory_limit_mb > 0 && resident_mb > memory_limit_mb) {
      exit = child.kill_and_wait();
      exceeded = fmt::format("exceeded memory limit {:g} MB (its resident memory reached {:.0f} MB)",
                             memory_limit_mb, resident_mb);
      break;
    }
    if (limits.time_limit_s > 0 && elapsed > limits.time_limit_s) {
      exit = child.kill_and_wait();
      exceeded = fmt::format("exceeded time limit {:g} s", limits.time_limit_s);
      break;
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  follower.copy_new_output();
  if (!exceeded.empty()) {
    throw Error(with_output(fmt::format("the stage's process {} and was killed", exceeded), exchange.log));
  }
  if (exit->signaled() || !fs::exists(exchange.result())) {
    throw Error(with_output(fmt::format("the stage's process {}", exit->describe()), exchange.log));
  }
  return read_json_file(exchange.result());
}

}  // namespace mcompress
