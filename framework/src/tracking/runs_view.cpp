// Tables and JSON for `mcompress runs list | show | diff`.
#include "mcompress/framework/tracking/runs_view.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <set>
#include <sstream>

namespace mcompress {
namespace {

const char* status_name(int status) {
  if (status >= 1 && status <= 5) return to_string(static_cast<MlflowRunStatus>(status));
  return "UNKNOWN";
}

std::string local_time(int64_t ms) {
  if (ms <= 0) return "-";
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  localtime_r(&seconds, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &tm);
  return text;
}

std::string duration(const StoredRun& run) {
  if (!run.end_time || run.start_time <= 0) return "-";
  const double s = static_cast<double>(*run.end_time - run.start_time) / 1000.0;
  if (s < 120) return fmt::format("{:.1f}s", s);
  if (s < 7200) return fmt::format("{:.1f}min", s / 60);
  return fmt::format("{:.1f}h", s / 3600);
}

// Whole numbers (params, MACs, bytes) print whole; the rest with 6 digits.
std::string number(double v) {
  if (std::isfinite(v) && std::fabs(v) < 1e15 && v == std::floor(v)) return fmt::format("{:.0f}", v);
  return fmt::format("{:.6g}", v);
}

std::string optional_number(const std::optional<double>& v) { return v ? number(*v) : "-"; }

// Rows of cells printed in columns as wide as their widest cell.
std::string aligned(const std::vector<std::vector<std::string>>& rows, const std::string& indent = "") {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line = indent;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

// The final value of a metric: final.<key> when the run logged one, else its latest value.
std::optional<double> final_metric(const StoredRun& run, const std::string& key) {
  if (auto v = run.latest("final." + key)) return v;
  return run.latest(key);
}

std::string short_id(const std::string& id) { return id.substr(0, 12); }

bool is_final_key(const std::string& key) { return key.rfind("final.", 0) == 0; }

// The keys of final metrics of either run, without the "final." prefix;
// runs logged by other tools have none, so their latest values stand in.
std::vector<std::string> final_metric_keys(const StoredRun& a, const StoredRun& b) {
  std::set<std::string> keys;
  for (const auto* run : {&a, &b}) {
    bool has_final = false;
    for (const auto& [key, points] : run->metrics) {
      if (is_final_key(key)) {
        keys.insert(key.substr(6));
        has_final = true;
      }
    }
    if (!has_final) {
      for (const auto& [key, points] : run->metrics) keys.insert(key);
    }
  }
  return {keys.begin(), keys.end()};
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, separator);) parts.push_back(part);
  return parts;
}

nlohmann::json metrics_json(const StoredRun& run) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [key, points] : run.metrics) {
    nlohmann::json history = nlohmann::json::array();
    for (const auto& p : points) history.push_back({{"step", p.step}, {"value", p.value}, {"timestamp", p.timestamp_ms}});
    out[key] = {{"latest", run.latest(key) ? nlohmann::json(*run.latest(key)) : nlohmann::json()}, {"history", history}};
  }
  return out;
}

nlohmann::json summary_json(const StoredRun& run) {
  nlohmann::json final_metrics = nlohmann::json::object();
  for (const auto& [key, points] : run.metrics) {
    if (is_final_key(key)) final_metrics[key.substr(6)] = *run.latest(key);
  }
  return {{"run_id", run.run_id},
          {"experiment_id", run.experiment_id},
          {"experiment", run.experiment_name},
          {"name", run.run_name},
          {"status", status_name(run.status)},
          {"mcompress_status", run.tag("mcompress.status")},
          {"start_time", run.start_time},
          {"end_time", run.end_time ? nlohmann::json(*run.end_time) : nlohmann::json()},
          {"user", run.user_id},
          {"run_dir", run.tag("mcompress.run_dir")},
          {"artifact_uri", run.artifact_uri},
          {"final_metrics", final_metrics}};
}

}  // namespace

std::string runs_table(const std::vector<StoredRun>& runs) {
  if (runs.empty()) return "no runs\n";
  std::vector<std::vector<std::string>> rows{
      {"RUN", "EXPERIMENT", "NAME", "STATUS", "STARTED", "TIME", "ACCURACY", "LATENCY B1 (ms)", "SIZE (bytes)"}};
  for (const auto& run : runs) {
    std::string status = status_name(run.status);
    if (const auto mc = run.tag("mcompress.status"); !mc.empty() && mc != "completed") status += " (" + mc + ")";
    rows.push_back({short_id(run.run_id), run.experiment_name, run.run_name, status, local_time(run.start_time),
                    duration(run), optional_number(final_metric(run, "accuracy")),
                    optional_number(final_metric(run, "latency_b1_median_ms")),
                    optional_number(final_metric(run, "size_bytes"))});
  }
  return aligned(rows);
}

nlohmann::json runs_json(const std::vector<StoredRun>& runs) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& run : runs) out.push_back(summary_json(run));
  return out;
}

std::string run_details(const StoredRun& run) {
  std::string out = fmt::format("run {}\n", run.run_id);
  std::vector<std::vector<std::string>> info{
      {"experiment", fmt::format("{} (id {})", run.experiment_name, run.experiment_id)},
      {"name", run.run_name},
      {"status", std::string(status_name(run.status)) +
                     (run.tag("mcompress.status").empty() ? "" : " (mcompress: " + run.tag("mcompress.status") + ")")},
      {"started", local_time(run.start_time)},
      {"ended", run.end_time ? local_time(*run.end_time) : "-"},
      {"duration", duration(run)},
      {"user", run.user_id}};
  if (const auto message = run.tag("mcompress.message"); !message.empty()) info.push_back({"message", message});
  if (const auto dir = run.tag("mcompress.run_dir"); !dir.empty()) info.push_back({"run dir", dir});
  info.push_back({"artifacts", run.artifact_uri});
  out += aligned(info, "  ");

  out += "\nparams:\n";
  std::vector<std::vector<std::string>> params;
  for (const auto& [key, value] : run.params) params.push_back({key, value});
  out += params.empty() ? "  (none)\n" : aligned(params, "  ");

  // Metrics by step; steps are stages, named by the mcompress.stages tag.
  std::set<int64_t> steps;
  for (const auto& [key, points] : run.metrics) {
    if (is_final_key(key)) continue;
    for (const auto& p : points) steps.insert(p.step);
  }
  const auto stage_names = split(run.tag("mcompress.stages"), ',');
  out += "\nmetrics by step:\n";
  if (steps.empty()) {
    out += "  (none)\n";
  } else {
    std::vector<std::vector<std::string>> table{{"metric"}};
    for (int64_t step : steps) {
      const bool named = step >= 0 && static_cast<size_t>(step) < stage_names.size() && !stage_names[step].empty();
      table[0].push_back(named ? fmt::format("{}:{}", step, stage_names[step]) : fmt::format("step {}", step));
    }
    for (const auto& [key, points] : run.metrics) {
      if (is_final_key(key)) continue;
      std::vector<std::string> row{key};
      for (int64_t step : steps) {
        std::optional<double> value;
        for (const auto& p : points) {
          if (p.step == step) value = p.value;  // the last logged value of the step
        }
        row.push_back(optional_number(value));
      }
      table.push_back(std::move(row));
    }
    out += aligned(table, "  ");
  }
  std::vector<std::vector<std::string>> finals;
  for (const auto& [key, points] : run.metrics) {
    if (is_final_key(key)) finals.push_back({key, optional_number(run.latest(key))});
  }
  if (!finals.empty()) out += "\nfinal metrics:\n" + aligned(finals, "  ");

  out += "\ntags:\n";
  std::vector<std::vector<std::string>> tags;
  for (const auto& [key, value] : run.tags) {
    if (key == "mlflow.note.content") continue;  // the whole report.md; it is an artifact too
    tags.push_back({key, value});
  }
  out += tags.empty() ? "  (none)\n" : aligned(tags, "  ");
  return out;
}

nlohmann::json run_json(const StoredRun& run) {
  nlohmann::json out = summary_json(run);
  out["params"] = run.params;
  out["metrics"] = metrics_json(run);
  out["tags"] = run.tags;
  return out;
}

std::string runs_diff(const StoredRun& a, const StoredRun& b) {
  auto mark = [](bool differs) { return std::string(differs ? "*" : " "); };
  std::vector<std::vector<std::string>> rows{{" ", "", "A " + short_id(a.run_id), "B " + short_id(b.run_id), ""}};
  rows.push_back({mark(a.experiment_name != b.experiment_name), "experiment", a.experiment_name, b.experiment_name, ""});
  rows.push_back({mark(a.run_name != b.run_name), "name", a.run_name, b.run_name, ""});
  const std::string sa = status_name(a.status), sb = status_name(b.status);
  rows.push_back({mark(sa != sb), "status", sa, sb, ""});
  rows.push_back({" ", "params", "", "", ""});
  std::set<std::string> keys;
  for (const auto& [key, value] : a.params) keys.insert(key);
  for (const auto& [key, value] : b.params) keys.insert(key);
  int param_differences = 0;
  for (const auto& key : keys) {
    const auto ia = a.params.find(key), ib = b.params.find(key);
    const std::string va = ia == a.params.end() ? "-" : ia->second;
    const std::string vb = ib == b.params.end() ? "-" : ib->second;
    const bool differs = (ia == a.params.end()) != (ib == b.params.end()) || va != vb;
    param_differences += differs;
    rows.push_back({mark(differs), "  " + key, va, vb, ""});
  }
  rows.push_back({" ", "final metrics", "", "", "B - A"});
  int metric_differences = 0;
  for (const auto& key : final_metric_keys(a, b)) {
    const auto va = final_metric(a, key), vb = final_metric(b, key);
    const bool differs = va.has_value() != vb.has_value() || (va && vb && *va != *vb);
    metric_differences += differs;
    rows.push_back({mark(differs), "  " + key, optional_number(va), optional_number(vb),
                    va && vb && differs ? fmt::format("{:+.6g}", *vb - *va) : ""});
  }
  return aligned(rows) + fmt::format("\n{} param(s) and {} final metric(s) differ (marked *)\n", param_differences,
                                     metric_differences);
}

nlohmann::json runs_diff_json(const StoredRun& a, const StoredRun& b) {
  std::set<std::string> keys;
  for (const auto& [key, value] : a.params) keys.insert(key);
  for (const auto& [key, value] : b.params) keys.insert(key);
  nlohmann::json params = nlohmann::json::array();
  for (const auto& key : keys) {
    const auto ia = a.params.find(key), ib = b.params.find(key);
    const nlohmann::json va = ia == a.params.end() ? nlohmann::json() : nlohmann::json(ia->second);
    const nlohmann::json vb = ib == b.params.end() ? nlohmann::json() : nlohmann::json(ib->second);
    params.push_back({{"key", key}, {"a", va}, {"b", vb}, {"differs", va != vb}});
  }
  nlohmann::json metrics = nlohmann::json::array();
  for (const auto& key : final_metric_keys(a, b)) {
    const auto va = final_metric(a, key), vb = final_metric(b, key);
    nlohmann::json row = {{"key", key},
                          {"a", va ? nlohmann::json(*va) : nlohmann::json()},
                          {"b", vb ? nlohmann::json(*vb) : nlohmann::json()},
                          {"differs", va != vb}};
    if (va && vb) row["delta"] = *vb - *va;
    metrics.push_back(row);
  }
  return {{"a", summary_json(a)}, {"b", summary_json(b)}, {"params", params}, {"final_metrics", metrics}};
}

}  // namespace mcompress
