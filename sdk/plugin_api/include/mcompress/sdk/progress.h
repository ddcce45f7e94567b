#pragma once
// Logging and progress reporting, implemented by the host. Passes report what
// they do; the host decides how (terminal line with rate and ETA, nothing in
// --quiet/--json mode).
#include <cstdint>
#include <string>

#include "mcompress/sdk/export.h"

namespace mcompress {

enum class LogLevel { Debug, Info, Warning };

class MCOMPRESS_SDK_API Logger {
 public:
  virtual ~Logger();
  virtual void log(LogLevel level, const std::string& message) = 0;
  void info(const std::string& message) { log(LogLevel::Info, message); }
  void warn(const std::string& message) { log(LogLevel::Warning, message); }
};

class MCOMPRESS_SDK_API Progress {
 public:
  virtual ~Progress();
  // Starts a task of `total` steps (0: unknown). Tasks do not nest.
  virtual void start(const std::string& label, int64_t total) = 0;
  // `done` steps finished so far; `status` is a short text such as "loss 0.41".
  virtual void update(int64_t done, const std::string& status) = 0;
  virtual void finish(const std::string& status) = 0;
};

// Discards everything; for tests and machine mode.
class MCOMPRESS_SDK_API NullLogger final : public Logger {
 public:
  void log(LogLevel, const std::string&) override {}
};
class MCOMPRESS_SDK_API NullProgress final : public Progress {
 public:
  void start(const std::string&, int64_t) override {}
  void update(int64_t, const std::string&) override {}
  void finish(const std::string&) override {}
};

}  // namespace mcompress
