#include "mcompress/framework/support/terminal.h"

#include <unistd.h>

#include <fmt/format.h>

#include <cstdio>

namespace mcompress {
namespace {

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(seconds + 0.5);
  return s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
                   : fmt::format("{}:{:02}", s / 60, s % 60);
}

}  // namespace

void TerminalLogger::log(LogLevel level, const std::string& message) {
  if (quiet_ && level != LogLevel::Warning) return;
  if (level == LogLevel::Debug) return;
  std::fprintf(stderr, "%s%s\n", level == LogLevel::Warning ? "warning: " : "", message.c_str());
}

TerminalProgress::TerminalProgress(bool quiet) : quiet_(quiet), tty_(isatty(STDERR_FILENO)) {}

void TerminalProgress::start(const std::string& label, int64_t total) {
  label_ = label;
  total_ = total;
  last_quarter_ = 0;
  started_ = last_draw_ = std::chrono::steady_clock::now();
}

std::string TerminalProgress::line(int64_t done, const std::string& status) const {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  const double rate = elapsed > 0 ? done / elapsed : 0.0;
  std::string text = total_ > 0 ? fmt::format("{}  {}/{}", label_, done, total_)
                                : fmt::format("{}  {}", label_, done);
  text += fmt::format("  {:.1f}/s  {}", rate, format_duration(elapsed));
  if (total_ > 0 && rate > 0 && done < total_) {
    text += fmt::format("  ETA {}", format_duration((total_ - done) / rate));
  }
  if (!status.empty()) text += "  " + status;
  return text;
}

void TerminalProgress::update(int64_t done, const std::string& status) {
  if (quiet_) return;
  const auto now = std::chrono::steady_clock::now();
  if (tty_) {
    if (now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    std::fprintf(stderr, "\r\033[K%s", line(done, status).c_str());
    std::fflush(stderr);
    return;
  }
  if (total_ <= 0) return;
  const int64_t quarter = done * 4 / total_;
  if (quarter > last_quarter_ && done < total_) {
    last_quarter_ = quarter;
    std::fprintf(stderr, "%s\n", line(done, status).c_str());
  }
}

void TerminalProgress::finish(const std::string& status) {
  if (quiet_) return;
  std::fprintf(stderr, "%s%s\n", tty_ ? "\r\033[K" : "", line(total_ > 0 ? total_ : 0, status).c_str());
}

}  // namespace mcompress
