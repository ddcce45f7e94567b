#pragma once
// The host's Logger and Progress: human-readable on stderr, silent in
// machine mode (--quiet / --json).
#include <chrono>
#include <cstdint>
#include <string>

#include "mcompress/sdk/progress.h"

namespace mcompress {

class TerminalLogger final : public Logger {
 public:
  explicit TerminalLogger(bool quiet) : quiet_(quiet) {}
  void log(LogLevel level, const std::string& message) override;

 private:
  bool quiet_;
};

// On a terminal: one self-overwriting line "label  done/total  rate/s  ETA  status",
// redrawn at most 10 times a second. Not a terminal (CI logs): a line at each
// quarter of the task. Quiet: nothing.
class TerminalProgress final : public Progress {
 public:
  explicit TerminalProgress(bool quiet);
  void start(const std::string& label, int64_t total) override;
  void update(int64_t done, const std::string& status) override;
  void finish(const std::string& status) override;

 private:
  std::string line(int64_t done, const std::string& status) const;
  bool quiet_;
  bool tty_;
  std::string label_;
  int64_t total_ = 0;
  int64_t last_quarter_ = 0;
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace mcompress
