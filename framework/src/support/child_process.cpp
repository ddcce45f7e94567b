#include "mcompress/framework/support/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "mcompress/sdk/error.h"

extern char** environ;

namespace mcompress {
namespace fs = std::filesystem;
namespace {

// Between fork and exec only async-signal-safe calls are allowed (the parent
// has threads), so everything is prepared before fork and errors travel back
// as an errno through a close-on-exec pipe.
[[noreturn]] void exec_child(const ChildSpec& spec, char* const* argv, pid_t parent, int error_pipe) {
  auto fail = [&](int stage) {
    const int codes[2] = {stage, errno};
    (void)!::write(error_pipe, codes, sizeof codes);
    ::_exit(127);
  };
  if (spec.dies_with_parent) {
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(0);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
  }
  const char* outputs[2] = {spec.stdout_file.empty() ? "/dev/null" : spec.stdout_file.c_str(),
                            spec.stderr_file.empty() ? "/dev/null" : spec.stderr_file.c_str()};
  for (int i = 0; i < 2; ++i) {
    const int fd = ::open(outputs[i], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) fail(1);
    if (::dup2(fd, i == 0 ? STDOUT_FILENO : STDERR_FILENO) < 0) fail(1);
    ::close(fd);
  }
  const int null_in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_in >= 0) ::dup2(null_in, STDIN_FILENO);
  ::execve(argv[0], argv, environ);
  fail(2);
  ::_exit(127);
}

}  // namespace

bool ChildExit::signaled() const { return WIFSIGNALED(status); }
int ChildExit::signal() const { return WTERMSIG(status); }
int ChildExit::exit_code() const { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

std::string ChildExit::describe() const {
  if (signaled()) return fmt::format("died of signal {} ({})", signal(), strsignal(signal()));
  return fmt::format("exited with code {}", exit_code());
}

ChildProcess ChildProcess::start(const ChildSpec& spec) {
  if (spec.args.empty()) throw Error("no command to start");
  std::vector<char*> argv;
  for (const auto& a : spec.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int error_pipe[2];
  if (::pipe2(error_pipe, O_CLOEXEC) != 0) {
    throw Error(fmt::format("cannot start {}: {}", spec.args[0], std::strerror(errno)));
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int error = errno;
    ::close(error_pipe[0]);
    ::close(error_pipe[1]);
    throw Error(fmt::format("cannot start {}: {}", spec.args[0], std::strerror(error)));
  }
  if (pid == 0) {
    ::close(error_pipe[0]);
    exec_child(spec, argv.data(), parent, error_pipe[1]);
  }
  ::close(error_pipe[1]);
  int codes[2] = {0, 0};
  ssize_t n;
  do {
    n = ::read(error_pipe[0], codes, sizeof codes);
  } while (n < 0 && errno == EINTR);
  ::close(error_pipe[0]);
  if (n == static_cast<ssize_t>(sizeof codes)) {
    int ignored;
    ::waitpid(pid, &ignored, 0);
    const char* what[] = {"cannot arrange for it to end with its parent", "cannot open its output files",
                          "cannot execute it"};
    throw Error(fmt::format("cannot start {}: {}: {}", spec.args[0], what[codes[0]], std::strerror(codes[1])));
  }
  return ChildProcess(pid);
}

std::optional<ChildExit> ChildProcess::poll() {
  ChildExit exit;
  pid_t r;
  do {
    r = ::waitpid(pid_, &exit.status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return std::nullopt;
  if (r < 0) throw Error(fmt::format("waiting for process {} failed: {}", pid_, std::strerror(errno)));
  return exit;
}

ChildExit ChildProcess::wait() {
  ChildExit exit;
  pid_t r;
  do {
    r = ::waitpid(pid_, &exit.status, 0);
  } while (r < 0 && errno == EINTR);
  if (r < 0) throw Error(fmt::format("waiting for process {} failed: {}", pid_, std::strerror(errno)));
  return exit;
}

ChildExit ChildProcess::kill_and_wait() {
  ::kill(pid_, SIGKILL);
  return wait();
}

double ChildProcess::resident_mb() const { return resident_memory_mb(pid_); }

namespace {

// A "Name:   1234 kB" line of /proc/PID/status, in MiB.
double status_field_mb(pid_t pid, const std::string& field) {
  std::ifstream status(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(status, line);) {
    if (line.rfind(field + ":", 0) == 0) return std::strtod(line.c_str() + field.size() + 1, nullptr) / 1024.0;
  }
  return 0.0;
}

}  // namespace

double resident_memory_mb(pid_t pid) { return status_field_mb(pid, "VmRSS"); }
double peak_resident_memory_mb(pid_t pid) { return status_field_mb(pid, "VmHWM"); }

std::string last_lines(const fs::path& file, size_t max_lines) {
  std::ifstream in(file);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  if (lines.size() > max_lines) lines.erase(lines.begin(), lines.end() - static_cast<std::ptrdiff_t>(max_lines));
  return fmt::format("{}", fmt::join(lines, " | "));
}

std::string this_executable() {
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw Error("cannot find the mcompress executable (/proc/self/exe)");
  return exe.string();
}

}  // namespace mcompress
