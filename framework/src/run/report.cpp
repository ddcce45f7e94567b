#include "mcompress/framework/run/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <thread>

#include "mcompress/framework/probes/latency_timing.h"

namespace mcompress {
namespace {

std::optional<double> metric(const StageOutcome& o, const std::string& key) {
  auto it = o.metrics.find(key);
  if (it == o.metrics.end()) return std::nullopt;
  return it->second;
}

std::string human_count(double v) {
  if (v >= 1e9) return fmt::format("{:.2f}G", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f}K", v / 1e3);
  return fmt::format("{:.0f}", v);
}

std::string human_bytes(double v) {
  if (v >= 1 << 20) return fmt::format("{:.2f} MB", v / (1 << 20));
  return fmt::format("{:.1f} KB", v / 1024);
}

// "value (ratio×)" against the baseline, for cost metrics where smaller is better.
std::string with_ratio(const std::optional<double>& v, const std::optional<double>& base,
                       std::string (*render)(double)) {
  if (!v) return "-";
  std::string text = render(*v);
  if (base && *base > 0 && std::fabs(*v - *base) > 1e-12) text += fmt::format(" ({:.2f}x)", *v / *base);
  return text;
}

std::string ms(double v) { return fmt::format("{:.3f}", v); }

// A median latency with its interquartile range when the record has one
// ("0.361 [0.352–0.370] (1.01x)"), so that a ratio can be told from noise.
std::string latency_cell(const StageOutcome& o, const StageOutcome& base, const std::string& median_key) {
  const auto median = metric(o, median_key);
  std::string text = with_ratio(median, metric(base, median_key), ms);
  const std::string prefix = median_key.substr(0, median_key.size() - std::string("_median_ms").size());
  const auto p25 = metric(o, prefix + "_p25_ms"), p75 = metric(o, prefix + "_p75_ms");
  if (!median || !p25 || !p75) return text;
  return latency_with_spread(*median, *p25, *p75) + text.substr(ms(*median).size());
}
std::string per_second(double v) { return fmt::format("{:.1f}", v); }

// The largest latency batch size present, e.g. "latency_b64_median_ms".
std::optional<std::string> large_batch_key(const StageOutcome& o) {
  std::optional<std::string> best;
  int best_batch = 1;
  for (const auto& [key, value] : o.metrics) {
    int batch = 0;
    if (std::sscanf(key.c_str(), "latency_b%d_median_ms", &batch) == 1 && batch > best_batch) {
      best_batch = batch;
      best = key;
    }
  }
  return best;
}

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

Table build_table(const std::vector<StageOutcome>& outcomes) {
  Table t;
  if (outcomes.empty()) return t;
  const StageOutcome& base = outcomes.front();
  const auto batch_key = large_batch_key(base);
  std::string batch_label = "Latency bN (ms)";
  if (batch_key) {
    int b = 0;
    std::sscanf(batch_key->c_str(), "latency_b%d", &b);
    batch_label = fmt::format("Latency b{} (ms)", b);
  }
  t.header = {"Stage", "Pass", "Status", "Accuracy", "Δ acc (pt)", "Latency b1 (ms)", batch_label,
              "Size", "Params", "MACs"};
  // Language models: bits per character says more than next-character accuracy.
  const bool text = metric(base, "bits_per_char").has_value();
  if (text) t.header.insert(t.header.begin() + 5, "Bits/char");
  // Tokenized text: perplexity, and the generation probe's decode speed.
  const bool tokens = !text && metric(base, "perplexity").has_value();
  const bool decode = metric(base, "decode_tokens_per_s").has_value();
  if (tokens) t.header.insert(t.header.begin() + 5, "Perplexity");
  if (decode) t.header.push_back("Decode (tok/s)");
  // Where the probe found ONNX Runtime and the stage exported to ONNX.
  const bool onnx_runtime = std::any_of(outcomes.begin(), outcomes.end(), [](const StageOutcome& o) {
    return metric(o, "onnxruntime_latency_b1_median_ms").has_value();
  });
  if (onnx_runtime) t.header.push_back("ONNX Runtime b1 (ms)");
  const auto base_acc = metric(base, "accuracy");
  for (const auto& o : outcomes) {
    const auto acc = metric(o, "accuracy");
    std::string delta = "-";
    if (acc && base_acc) delta = fmt::format("{:+.2f}", (*acc - *base_acc) * 100);
    std::string large = "-";
    if (batch_key) large = latency_cell(o, base, *batch_key);
    t.rows.push_back({
        o.name, o.pass.empty() ? "-" : o.pass, o.status,
        acc ? fmt::format("{:.2f}%", *acc * 100) : "-", delta,
        latency_cell(o, base, "latency_b1_median_ms"),
        large,
        with_ratio(metric(o, "size_bytes"), metric(base, "size_bytes"), human_bytes),
        with_ratio(metric(o, "params"), metric(base, "params"), human_count),
        with_ratio(metric(o, "macs"), metric(base, "macs"), human_count),
    });
    if (text) {
      const auto bits = metric(o, "bits_per_char");
      t.rows.back().insert(t.rows.back().begin() + 5, bits ? fmt::format("{:.3f}", *bits) : "-");
    }
    if (tokens) {
      const auto perplexity = metric(o, "perplexity");
      t.rows.back().insert(t.rows.back().begin() + 5, perplexity ? fmt::format("{:.2f}", *perplexity) : "-");
    }
    if (decode)
      t.rows.back().push_back(
          with_ratio(metric(o, "decode_tokens_per_s"), metric(base, "decode_tokens_per_s"), per_second));
    if (onnx_runtime) t.rows.back().push_back(latency_cell(o, base, "onnxruntime_latency_b1_median_ms"));
  }
  return t;
}

// Latency timed while other work kept every core busy is not comparable
// between stages; say which stages that was.
std::string busy_machine_note(const std::vector<StageOutcome>& outcomes) {
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::string> busy;
  for (const auto& o : outcomes) {
    const auto load = metric(o, "load_average_1m");
    if (load && *load > cores) busy.push_back(fmt::format("{} ({:.1f})", o.name, *load));
  }
  if (busy.empty()) return "";
  return fmt::format(
      "\nThe machine was busier than its {} cores while these stages were timed (1-minute load average): {}. "
      "Their latencies are not comparable with each other; time them on a quieter machine.\n",
      cores, fmt::join(busy, ", "));
}

// Display width of UTF-8 text (Δ is one column, two bytes).
size_t width_of(const std::string& s) {
  return std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; });
}

}  // namespace

nlohmann::json to_json(const StageOutcome& o) {
  nlohmann::json j = {{"index", o.index},       {"name", o.name},
                      {"pass", o.pass},         {"status", o.status},
                      {"metrics", o.metrics},   {"summary", o.summary},
                      {"pass_seconds", o.pass_seconds}, {"probe_seconds", o.probe_seconds}};
  if (!o.gate_note.empty()) j["gate_note"] = o.gate_note;
  if (!o.error.empty()) j["error"] = o.error;
  return j;
}

StageOutcome stage_outcome_from_json(const nlohmann::json& j) {
  StageOutcome o;
  o.index = j.at("index").get<int>();
  o.name = j.at("name").get<std::string>();
  o.pass = j.value("pass", "");
  o.status = j.at("status").get<std::string>();
  o.metrics = j.value("metrics", std::map<std::string, double>{});
  o.summary = j.value("summary", "");
  o.gate_note = j.value("gate_note", "");
  o.error = j.value("error", "");
  o.pass_seconds = j.value("pass_seconds", 0.0);
  o.probe_seconds = j.value("probe_seconds", 0.0);
  return o;
}

std::string summary_table(const std::vector<StageOutcome>& outcomes) {
  const Table t = build_table(outcomes);
  std::vector<size_t> widths(t.header.size());
  for (size_t c = 0; c < t.header.size(); ++c) {
    widths[c] = width_of(t.header[c]);
    for (const auto& row : t.rows) widths[c] = std::max(widths[c], width_of(row[c]));
  }
  auto render = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t c = 0; c < cells.size(); ++c) {
      line += cells[c] + std::string(widths[c] - width_of(cells[c]) + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    return line + "\n";
  };
  std::string out = render(t.header);
  size_t total = 0;
  for (size_t w : widths) total += w + 2;
  out += std::string(total - 2, '-') + "\n";
  for (const auto& row : t.rows) out += render(row);
  return out;
}

std::string summary_markdown(const std::string& title, const std::vector<StageOutcome>& outcomes) {
  const Table t = build_table(outcomes);
  std::string out = fmt::format("# {}\n\n", title);
  out += "| " + fmt::format("{}", fmt::join(t.header, " | ")) + " |\n";
  out += "|";
  for (size_t c = 0; c < t.header.size(); ++c) out += "---|";
  out += "\n";
  for (const auto& row : t.rows) out += "| " + fmt::format("{}", fmt::join(row, " | ")) + " |\n";
  out += "\nDeltas and ratios are relative to the baseline. Latency is the median over timed runs with "
         "their interquartile range in brackets, timed after warm-up runs until the timings settled; "
         "ratios whose ranges overlap the baseline's are within the noise of the measurement.\n";
  out += busy_machine_note(outcomes);
  bool notes = false;
  for (const auto& o : outcomes) {
    if (o.summary.empty() && o.gate_note.empty() && o.error.empty()) continue;
    if (!notes) out += "\n## Stages\n\n";
    notes = true;
    out += fmt::format("- **{}** ({}): {}", o.name, o.status, o.summary);
    if (!o.gate_note.empty()) out += fmt::format(" — gate: {}", o.gate_note);
    if (!o.error.empty()) out += fmt::format(" — error: {}", o.error);
    out += "\n";
  }
  return out;
}

}  // namespace mcompress
