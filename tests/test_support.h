#pragma once
// Helpers shared by the test executables.
#include <filesystem>
#include <functional>
#include <string>

namespace mcompress::testing {

// A fresh empty directory under the build tree, removed by the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& label);
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs a shell command line and captures its output.
CommandResult run_command(const std::string& command);

void write_text(const std::filesystem::path& path, const std::string& text);
std::string read_text(const std::filesystem::path& path);

// `path` in single quotes, for a shell command line.
std::string quoted(const std::filesystem::path& path);

bool contains(const std::string& text, const std::string& part);

// The message of the mcompress::Error that `action` throws; a test failure
// (and "") when it throws none.
std::string error_of(const std::function<void()>& action);

}  // namespace mcompress::testing
