#pragma once
// Child processes of the host: `mcompress compare` runs each candidate in
// one, `mcompress run --isolate` each stage. A child that crashes, leaks or
// hangs takes down only itself; the parent learns how it ended and what it
// last printed.
#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace mcompress {

struct ChildSpec {
  std::vector<std::string> args;         // args[0] is the executable's path
  std::filesystem::path stdout_file;     // appended to; empty: /dev/null
  std::filesystem::path stderr_file;     // appended to; empty: /dev/null
  // The child is killed (SIGKILL) when the parent dies, so a killed host never
  // leaves a child writing into a directory that a rerun is using.
  bool dies_with_parent = true;
};

// How a child ended, from waitpid's status.
struct ChildExit {
  int status = 0;
  bool signaled() const;
  int signal() const;     // when signaled()
  int exit_code() const;  // when !signaled()
  // "exited with code 3", "died of signal 11 (Segmentation fault)"
  std::string describe() const;
};

class ChildProcess {
 public:
  // Starts the child; throws mcompress::Error when it cannot be started.
  static ChildProcess start(const ChildSpec& spec);

  pid_t pid() const { return pid_; }
  // The exit status if the child has ended (it is then reaped), else nothing.
  std::optional<ChildExit> poll();
  ChildExit wait();
  // SIGKILL and reap.
  ChildExit kill_and_wait();
  // The child's resident memory in MiB (VmRSS), 0 when it cannot be read.
  double resident_mb() const;

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = 0;
};

// The resident memory (VmRSS) of process `pid` in MiB, and its peak so far
// (VmHWM); 0 when unreadable.
double resident_memory_mb(pid_t pid);
double peak_resident_memory_mb(pid_t pid);

// The last `max_lines` non-empty lines of a text file, joined with " | ".
std::string last_lines(const std::filesystem::path& file, size_t max_lines);

// The absolute path of the running executable (/proc/self/exe).
std::string this_executable();

}  // namespace mcompress
