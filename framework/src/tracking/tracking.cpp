// The MLflow file store: experiments and runs written the way MLflow's own
// FileStore writes them (mlflow/store/tracking/file_store.py), and read back.
#include "mcompress/framework/support/file_reading.h"
#include "mcompress/framework/tracking/tracking.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <unistd.h>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <tuple>
#include <utility>

#include "mcompress/framework/support/atomic_file.h"
#include "mcompress/sdk/error.h"

namespace mcompress {
namespace fs = std::filesystem;
namespace {

constexpr const char* kMeta = "meta.yaml";
constexpr const char* kTrash = ".trash";
constexpr const char* kLockFile = ".mcompress.lock";
constexpr const char* kDefaultExperimentId = "0";
constexpr const char* kDefaultExperimentName = "Default";
constexpr int kSourceTypeLocal = 4;  // MLflow's SourceType.LOCAL

// ---- YAML as PyYAML's safe_dump(default_flow_style=False, allow_unicode=True,
// sort_keys=True) writes it, so MLflow reads exactly the types it wrote: a
// string that would read back as a number, bool or null is quoted.

bool resolves_to_non_string(const std::string& s) {
  // PyYAML's implicit resolvers (YAML 1.1): bool, float, int, merge, null, timestamp, value.
  static const std::regex implicit(
      "yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF"
      "|[-+]?[0-9][0-9_]*\\.[0-9_]*(?:[eE][-+][0-9]+)?|\\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
      "|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\\.[0-9_]*|[-+]?\\.(?:inf|Inf|INF)|\\.(?:nan|NaN|NAN)"
      "|[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+"
      "|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+"
      "|<<|~|null|Null|NULL|="
      "|[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"
      "|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \\t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9]"
      "(?:\\.[0-9]*)?(?:[ \\t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?");
  return std::regex_match(s, implicit);
}

// Whether PyYAML would write `s` as a plain scalar in block context.
bool plain_allowed(const std::string& s) {
  if (s.empty() || s.front() == ' ' || s.back() == ' ') return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool next_is_space = i + 1 == s.size() || s[i + 1] == ' ';
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;  // line breaks, controls
    if (i == 0) {
      if (std::strchr("#,[]{}&*!|>'\"%@`", c)) return false;
      if ((c == '-' || c == '?' || c == ':') && next_is_space) return false;
    } else {
      if (c == ':' && next_is_space) return false;
      if (c == '#' && s[i - 1] == ' ') return false;
    }
  }
  return !resolves_to_non_string(s);
}

std::string yaml_string(const std::string& s) {
  if (plain_allowed(s)) return s;
  const bool special = std::any_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
  if (!special) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
    return out + "'";
  }
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          out += fmt::format("\\x{:02X}", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// A meta.yaml body: keys sorted, values already rendered as YAML.
std::string yaml_document(const std::map<std::string, std::string>& rendered) {
  std::string out;
  for (const auto& [key, value] : rendered) out += key + ": " + value + "\n";
  return out;
}

// ---- paths and URIs

// pathlib.Path(path).as_uri(), as MLflow's path_to_local_file_uri does.
std::string file_uri(const fs::path& absolute) {
  std::string out = "file://";
  for (unsigned char c : absolute.generic_string()) {
    if (std::isalnum(c) || std::strchr("/-._~", c)) {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

// "file:///abs/path" (MLflow's tracking URI form) or a plain path.
fs::path path_from_uri(const std::string& text) {
  if (text.rfind("file:", 0) != 0) return text;
  std::string rest = text.substr(5);
  if (rest.rfind("//", 0) == 0) rest = rest.substr(rest.find('/', 2) == std::string::npos ? rest.size() : rest.find('/', 2));
  std::string path;
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] == '%' && i + 2 < rest.size() && std::isxdigit(static_cast<unsigned char>(rest[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(rest[i + 2]))) {
      path += static_cast<char>(std::stoi(rest.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      path += rest[i];
    }
  }
  return path;
}

// MLflow's _validate_experiment_id / _validate_run_id: what may name a
// directory that MLflow treats as an experiment or a run.
bool valid_id(const std::string& name, size_t max_length) {
  if (name.empty() || name.size() > max_length || !std::isalnum(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

bool is_number(const std::string& s) {
  return !s.empty() && s.size() < 19 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// getpass.getuser(), which MLflow uses for user_id.
std::string current_user() {
  for (const char* var : {"LOGNAME", "USER", "LNAME", "USERNAME"}) {
    if (const char* value = std::getenv(var); value && *value) return value;
  }
  if (const passwd* pw = getpwuid(getuid())) return pw->pw_name;
  return "unknown";
}

std::string random_run_id() {
  std::random_device device;
  std::string id;
  for (int i = 0; i < 4; ++i) id += fmt::format("{:08x}", static_cast<uint32_t>(device()));
  return id;
}

// Flushes a file's (or directory's) contents to disk.
void sync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// A plain write, flushed: the run's files need no temporary names because
// the run is invisible until its meta.yaml exists (see log_run), but they
// must be on disk before that.
void write_plain(const fs::path& path, const std::string& content) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(fmt::format("cannot create {}: {}", path.string(), std::strerror(errno)));
  size_t written = 0;
  while (written < content.size()) {
    const ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      throw Error(fmt::format("cannot write {}: {}", path.string(), std::strerror(err)));
    }
    written += static_cast<size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
}

// Holds an exclusive lock on <root>/.mcompress.lock for its lifetime, so
// that looking an experiment up by name and creating it is one step for
// every process using the store. The kernel drops the lock if we die.
class StoreLock {
 public:
  explicit StoreLock(const fs::path& root) {
    std::error_code ec;
    fs::create_directories(root, ec);
    if (ec) {
      throw Error(fmt::format("cannot create the tracking store {}: {}; choose another location with --mlruns "
                              "or MCOMPRESS_MLRUNS, or skip tracking with --no-tracking",
                              root.string(), ec.message()));
    }
    const fs::path file = root / kLockFile;
    fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error(fmt::format("cannot open {}: {}", file.string(), std::strerror(errno)));
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) {
        const int err = errno;
        ::close(fd_);
        throw Error(fmt::format("cannot lock {}: {}", file.string(), std::strerror(err)));
      }
    }
  }
  ~StoreLock() {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }
  StoreLock(const StoreLock&) = delete;
  StoreLock& operator=(const StoreLock&) = delete;

 private:
  int fd_ = -1;
};

// ---- reading

std::optional<YAML::Node> read_meta(const fs::path& dir) {
  const fs::path file = dir / kMeta;
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return std::nullopt;
  try {
    YAML::Node node = YAML::LoadFile(file.string());
    if (!node.IsMap()) return std::nullopt;
    return node;
  } catch (const YAML::Exception&) {
    return std::nullopt;  // being replaced, or damaged: MLflow skips such entries too
  }
}

std::string text_of(const YAML::Node& meta, const char* key) {
  const YAML::Node value = meta[key];
  if (!value || value.IsNull() || !value.IsScalar()) return "";
  return value.as<std::string>();
}

int64_t integer_of(const YAML::Node& meta, const char* key) {
  const YAML::Node value = meta[key];
  if (!value || value.IsNull() || !value.IsScalar()) return 0;
  try {
    return value.as<int64_t>();
  } catch (const YAML::Exception&) {
    return 0;
  }
}

std::optional<ExperimentInfo> read_experiment(const fs::path& dir) {
  const auto meta = read_meta(dir);
  if (!meta) return std::nullopt;
  ExperimentInfo info;
  info.id = text_of(*meta, "experiment_id");
  info.name = text_of(*meta, "name");
  info.artifact_location = text_of(*meta, "artifact_location");
  info.lifecycle_stage = text_of(*meta, "lifecycle_stage");
  if (info.lifecycle_stage.empty()) info.lifecycle_stage = "active";
  info.creation_time = integer_of(*meta, "creation_time");
  info.last_update_time = integer_of(*meta, "last_update_time");
  if (info.id != dir.filename().string()) return std::nullopt;  // MLflow ignores a mismatch too
  return info;
}

// Files under `dir` (recursively: MLflow keys may contain '/'), keyed by
// their path relative to `dir`. Dot-files are temporary files, never keys.
std::map<std::string, fs::path> key_files(const fs::path& dir) {
  std::map<std::string, fs::path> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    if (it->path().filename().string().rfind('.', 0) == 0) continue;
    out[fs::relative(it->path(), dir).generic_string()] = it->path();
  }
  return out;
}

std::vector<MetricPoint> parse_metric_file(const fs::path& file) {
  std::vector<MetricPoint> points;
  std::istringstream lines(read_text_file(file));
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::string ts, value, step;
    if (!(fields >> ts >> value)) continue;
    fields >> step;
    MetricPoint p;
    try {
      p.timestamp_ms = std::stoll(ts);
      p.value = std::strtod(value.c_str(), nullptr);
      p.step = step.empty() ? 0 : std::stoll(step);
    } catch (const std::exception&) {
      throw Error(fmt::format("{} has a malformed line '{}' (expected \"timestamp value step\")", file.string(),
                              line));
    }
    points.push_back(p);
  }
  return points;
}

std::optional<StoredRun> read_run(const fs::path& dir, const ExperimentInfo& experiment) {
  const auto meta = read_meta(dir);
  if (!meta) return std::nullopt;  // not (yet) a complete run
  StoredRun run;
  run.run_id = text_of(*meta, "run_id");
  if (run.run_id.empty()) run.run_id = text_of(*meta, "run_uuid");
  run.experiment_id = text_of(*meta, "experiment_id");
  if (run.run_id != dir.filename().string() || run.experiment_id != experiment.id) return std::nullopt;
  run.experiment_name = experiment.name;
  run.run_name = text_of(*meta, "run_name");
  run.user_id = text_of(*meta, "user_id");
  run.lifecycle_stage = text_of(*meta, "lifecycle_stage");
  if (run.lifecycle_stage.empty()) run.lifecycle_stage = "active";
  run.artifact_uri = text_of(*meta, "artifact_uri");
  run.status = static_cast<int>(integer_of(*meta, "status"));
  if (run.status == 0) run.status = static_cast<int>(MlflowRunStatus::Running);
  run.start_time = integer_of(*meta, "start_time");
  if (const YAML::Node end = (*meta)["end_time"]; end && !end.IsNull()) run.end_time = integer_of(*meta, "end_time");
  run.dir = dir;
  for (const auto& [key, file] : key_files(dir / "params")) run.params[key] = read_text_file(file);
  for (const auto& [key, file] : key_files(dir / "tags")) run.tags[key] = read_text_file(file);
  for (const auto& [key, file] : key_files(dir / "metrics")) run.metrics[key] = parse_metric_file(file);
  if (run.run_name.empty()) run.run_name = run.tag("mlflow.runName");
  return run;
}

// Directories under an experiment that are not runs (MLflow's RESERVED_EXPERIMENT_FOLDERS).
bool reserved_experiment_folder(const std::string& name) {
  return name == "tags" || name == "datasets" || name == "traces";
}

}  // namespace

const char* to_string(MlflowRunStatus status) {
  switch (status) {
    case MlflowRunStatus::Running: return "RUNNING";
    case MlflowRunStatus::Scheduled: return "SCHEDULED";
    case MlflowRunStatus::Finished: return "FINISHED";
    case MlflowRunStatus::Failed: return "FAILED";
    case MlflowRunStatus::Killed: return "KILLED";
  }
  return "UNKNOWN";
}

std::string mlflow_key(const std::string& text) {
  std::string out;
  for (char c : text) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' || c == ' ';
    out += ok ? c : '_';
  }
  for (size_t pos = out.find(".."); pos != std::string::npos; pos = out.find("..", pos)) out[pos] = '_';
  if (out.empty()) out = "_";
  return out;
}

std::string mlflow_number(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  // fmt's shortest round-trip form switches to exponents where Python's repr does.
  std::string text = fmt::format("{}", value);
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::optional<double> StoredRun::latest(const std::string& key) const {
  const auto it = metrics.find(key);
  if (it == metrics.end() || it->second.empty()) return std::nullopt;
  const auto best = std::max_element(it->second.begin(), it->second.end(), [](const MetricPoint& a, const MetricPoint& b) {
    return std::tie(a.step, a.timestamp_ms, a.value) < std::tie(b.step, b.timestamp_ms, b.value);
  });
  return best->value;
}

std::string StoredRun::tag(const std::string& key) const {
  const auto it = tags.find(key);
  return it == tags.end() ? std::string() : it->second;
}

TrackingStore::TrackingStore(fs::path root) : root_(fs::absolute(path_from_uri(root.string())).lexically_normal()) {
  if (!root_.has_filename()) root_ = root_.parent_path();  // no trailing separator
}

void TrackingStore::initialize_locked() {
  std::error_code ec;
  fs::create_directories(root_ / kTrash, ec);
  if (ec) throw Error(fmt::format("cannot create {}: {}", (root_ / kTrash).string(), ec.message()));
  // MLflow creates experiment 0 with a new store; a run logged without an
  // experiment goes there, so MLflow tools expect it.
  if (!fs::exists(root_ / kDefaultExperimentId) && !fs::exists(root_ / kTrash / kDefaultExperimentId)) {
    fs::create_directory(root_ / kDefaultExperimentId);
    const int64_t now = now_ms();
    write_file_atomically(root_ / kDefaultExperimentId / kMeta,
                          yaml_document({{"artifact_location", yaml_string(file_uri(root_ / kDefaultExperimentId))},
                                         {"creation_time", std::to_string(now)},
                                         {"experiment_id", yaml_string(kDefaultExperimentId)},
                                         {"last_update_time", std::to_string(now)},
                                         {"lifecycle_stage", "active"},
                                         {"name", yaml_string(kDefaultExperimentName)}}));
  }
}

std::string TrackingStore::create_experiment_locked(const std::string& name) {
  // The smallest free id, claimed by creating its directory: an id another
  // writer (MLflow itself does not take our lock) got first makes
  // create_directory report that it existed, and we move on.
  for (int64_t id = 1;; ++id) {
    const std::string text = std::to_string(id);
    if (fs::exists(root_ / kTrash / text)) continue;  // MLflow could restore it
    std::error_code ec;
    if (!fs::create_directory(root_ / text, ec)) {
      if (ec) throw Error(fmt::format("cannot create {}: {}", (root_ / text).string(), ec.message()));
      // An empty directory is what a creator killed before writing meta.yaml
      // leaves (creators hold the lock, so none is at work now): reuse it
      // rather than leave an experiment MLflow reports as malformed.
      if (!fs::is_empty(root_ / text, ec) || ec) continue;
    }
    const int64_t now = now_ms();
    write_file_atomically(root_ / text / kMeta,
                          yaml_document({{"artifact_location", yaml_string(file_uri(root_ / text))},
                                         {"creation_time", std::to_string(now)},
                                         {"experiment_id", yaml_string(text)},
                                         {"last_update_time", std::to_string(now)},
                                         {"lifecycle_stage", "active"},
                                         {"name", yaml_string(name)}}));
    return text;
  }
}

std::string TrackingStore::ensure_experiment(const std::string& name) {
  if (name.empty()) throw Error("an experiment needs a name");
  StoreLock lock(root_);
  initialize_locked();
  if (auto existing = find_experiment(name)) return existing->id;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_ / kTrash, ec)) {
    const auto deleted = read_experiment(entry.path());
    if (deleted && deleted->name == name) {
      throw Error(fmt::format("experiment '{}' was deleted (it is in {}); restore it (`mlflow experiments restore "
                              "--experiment-id {}`) or remove that folder, then run again",
                              name, entry.path().string(), deleted->id));
    }
  }
  return create_experiment_locked(name);
}

std::string TrackingStore::log_run(const std::string& experiment_id, const TrackedRun& run) {
  const fs::path experiment_dir = root_ / experiment_id;
  const auto experiment = read_experiment(experiment_dir);
  if (!experiment || experiment->lifecycle_stage != "active") {
    throw Error(fmt::format("{} holds no active experiment {}", root_.string(), experiment_id));
  }
  std::string run_id;
  fs::path dir;
  for (int attempt = 0;; ++attempt) {
    run_id = random_run_id();
    dir = experiment_dir / run_id;
    std::error_code ec;
    if (fs::create_directory(dir, ec)) break;
    if (ec || attempt > 8) throw Error(fmt::format("cannot create the run directory {}: {}", dir.string(), ec.message()));
  }
  const std::string user = run.user.empty() ? current_user() : run.user;
  try {
    for (const char* sub : {"metrics", "params", "artifacts", "tags"}) fs::create_directories(dir / sub);
    for (const auto& [key, value] : run.params) write_plain(dir / "params" / mlflow_key(key), value);
    for (const auto& [key, points] : run.metrics) {
      std::string lines;
      for (const auto& p : points) lines += fmt::format("{} {} {}\n", p.timestamp_ms, mlflow_number(p.value), p.step);
      write_plain(dir / "metrics" / mlflow_key(key), lines);
    }
    std::map<std::string, std::string> tags = run.tags;
    tags.emplace("mlflow.runName", run.name);
    tags.emplace("mlflow.user", user);
    for (const auto& [key, value] : tags) write_plain(dir / "tags" / mlflow_key(key), value);
    for (const auto& [relative, source] : run.artifacts) {
      const fs::path target = (dir / "artifacts" / relative).lexically_normal();
      if (fs::path(relative).is_absolute() || relative.find("..") != std::string::npos) {
        throw Error(fmt::format("artifact path '{}' must be relative and stay inside artifacts/", relative));
      }
      fs::create_directories(target.parent_path());
      fs::copy_file(source, target, fs::copy_options::overwrite_existing);
      sync_path(target);
      sync_path(target.parent_path());
    }
    for (const char* sub : {"metrics", "params", "artifacts", "tags"}) sync_path(dir / sub);
    // Last: from here on the run exists for every reader.
    write_file_atomically(
        dir / kMeta,
        yaml_document({{"artifact_uri", yaml_string(file_uri(dir / "artifacts"))},
                       {"end_time", run.end_time_ms > 0 ? std::to_string(run.end_time_ms) : "null"},
                       {"entry_point_name", "''"},
                       {"experiment_id", yaml_string(experiment_id)},
                       {"lifecycle_stage", "active"},
                       {"run_id", yaml_string(run_id)},
                       {"run_name", yaml_string(run.name)},
                       {"run_uuid", yaml_string(run_id)},
                       {"source_name", "''"},
                       {"source_type", std::to_string(kSourceTypeLocal)},
                       {"source_version", "''"},
                       {"start_time", std::to_string(run.start_time_ms)},
                       {"status", std::to_string(static_cast<int>(run.status))},
                       {"tags", "[]"},
                       {"user_id", yaml_string(user)}}));
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(dir, ignored);  // an incomplete run leaves nothing behind
    throw;
  }
  return run_id;
}

std::vector<ExperimentInfo> TrackingStore::experiments() const {
  std::vector<ExperimentInfo> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !valid_id(name, 64) || name == "models") continue;
    auto info = read_experiment(entry.path());
    if (info && info->lifecycle_stage == "active") out.push_back(std::move(*info));
  }
  std::sort(out.begin(), out.end(), [](const ExperimentInfo& a, const ExperimentInfo& b) {
    const bool an = is_number(a.id), bn = is_number(b.id);
    if (an && bn) return std::stoll(a.id) < std::stoll(b.id);
    if (an != bn) return an;
    return a.id < b.id;
  });
  return out;
}

std::optional<ExperimentInfo> TrackingStore::find_experiment(const std::string& name) const {
  for (auto& e : experiments()) {
    if (e.name == name) return e;
  }
  return std::nullopt;
}

std::vector<StoredRun> TrackingStore::runs(const std::string& experiment_name) const {
  if (!fs::is_directory(root_)) {
    throw Error(fmt::format("no tracking store at {} (nothing has been logged there); give the store with --mlruns "
                            "DIR or MCOMPRESS_MLRUNS",
                            root_.string()));
  }
  std::vector<ExperimentInfo> selected;
  for (auto& e : experiments()) {
    if (experiment_name.empty() || e.name == experiment_name) selected.push_back(std::move(e));
  }
  if (!experiment_name.empty() && selected.empty()) {
    std::vector<std::string> names;
    for (const auto& e : experiments()) names.push_back(e.name);
    throw Error(fmt::format("no experiment named '{}' in {}; experiments: {}", experiment_name, root_.string(),
                            names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "))));
  }
  std::vector<StoredRun> out;
  for (const auto& experiment : selected) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(root_ / experiment.id, ec)) {
      const std::string name = entry.path().filename().string();
      if (!entry.is_directory() || reserved_experiment_folder(name) || !valid_id(name, 256)) continue;
      auto run = read_run(entry.path(), experiment);
      if (run && run->lifecycle_stage == "active") out.push_back(std::move(*run));
    }
  }
  std::sort(out.begin(), out.end(), [](const StoredRun& a, const StoredRun& b) {
    return std::tie(b.start_time, b.run_id) < std::tie(a.start_time, a.run_id);
  });
  return out;
}

StoredRun TrackingStore::find_run(const std::string& id_or_prefix) const {
  if (id_or_prefix.empty()) throw Error("give a run id (or the start of one); `mcompress runs list` shows them");
  std::vector<StoredRun> matches;
  for (auto& run : runs()) {
    if (run.run_id == id_or_prefix) return run;
    if (run.run_id.rfind(id_or_prefix, 0) == 0) matches.push_back(std::move(run));
  }
  if (matches.empty()) {
    throw Error(fmt::format("no run with an id starting with '{}' in {}; `mcompress runs list` shows the runs",
                            id_or_prefix, root_.string()));
  }
  if (matches.size() > 1) {
    std::vector<std::string> ids;
    for (const auto& m : matches) ids.push_back(m.run_id);
    throw Error(fmt::format("'{}' is the start of {} run ids ({}); give more of the id", id_or_prefix,
                            matches.size(), fmt::join(ids, ", ")));
  }
  return matches.front();
}

}  // namespace mcompress
