// Ranking sweep candidates and presenting the comparison.
#include "mcompress/framework/sweep/comparison.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <regex>

#include "mcompress/framework/probes/latency_timing.h"
#include "mcompress/framework/support/atomic_file.h"
#include "mcompress/framework/support/ranking_with_ties.h"

namespace mcompress {
namespace {

std::optional<double> get(const CandidateResult& r, const std::string& key) {
  auto it = r.metrics.find(key);
  if (it == r.metrics.end() || !std::isfinite(it->second)) return std::nullopt;
  return it->second;
}

std::string number(double v) {
  if (std::fabs(v) >= 1e6) return fmt::format("{:.3g}", v);
  if (std::fabs(v - std::round(v)) < 1e-9) return fmt::format("{:.0f}", v);
  return fmt::format("{:.4g}", v);
}

std::string format_metric(const std::string& name, double v) {
  if (name == "accuracy") return fmt::format("{:.2f}%", v * 100);
  if (name == "accuracy_drop") return fmt::format("{:+.2f} pt", -v * 100);
  if (name.find("latency") == 0) return fmt::format("{:.3f} ms", v);
  if (name == "size_mb") return fmt::format("{:.3f} MB", v);
  return number(v);
}

// "latency_b1" for "latency_b1_median_ms": the prefix of its spread's keys.
std::optional<std::string> latency_prefix(const std::string& metric) {
  static const std::regex median("((?:edge_|gpu_)?latency_b[0-9]+)_median_ms");
  std::smatch match;
  if (!std::regex_match(metric, match, median)) return std::nullopt;
  return match[1].str();
}

// A metric with the interval it was measured within: a median latency's
// interquartile range when the run recorded one, else the value itself.
std::optional<Measurement> measured(const CandidateResult& r, const std::string& metric) {
  const auto value = get(r, metric);
  if (!value) return std::nullopt;
  if (const auto prefix = latency_prefix(metric)) {
    const auto p25 = get(r, *prefix + "_p25_ms"), p75 = get(r, *prefix + "_p75_ms");
    if (p25 && p75 && *p25 <= *value && *value <= *p75) return Measurement::within(*value, *p25, *p75);
  }
  return Measurement::exact(*value);
}

// The objective: the primary metric or the weighted score, whose interval
// is the weighted sum of its metrics' intervals.
std::optional<Measurement> objective_measurement(const Objective& o, const CandidateResult& r) {
  if (o.primary != "score") return measured(r, o.primary);
  Measurement score = Measurement::exact(0.0);
  for (const auto& [metric, weight] : o.score_weights) {
    const auto m = measured(r, metric);
    if (!m) return std::nullopt;
    score.value += weight * m->value;
    score.low += weight * (weight >= 0 ? m->low : m->high);
    score.high += weight * (weight >= 0 ? m->high : m->low);
  }
  return score;
}

// How a ranking criterion reads in a sentence.
std::string criterion_label(const std::string& metric) {
  static const std::regex latency("latency_b([0-9]+)_median_ms");
  std::smatch match;
  if (std::regex_match(metric, match, latency)) return fmt::format("batch-{} latency", match[1].str());
  if (metric == "size_bytes" || metric == "size_mb") return "size";
  if (metric == "score") return "weighted score";
  return metric;
}

// What feasible candidates are ranked by: the objective, then accuracy,
// batch-1 latency and size (those the objective is not).
struct RankingKey {
  std::string metric;
  RankingCriterion criterion;
};
std::vector<RankingKey> ranking_keys(const Objective& o) {
  std::vector<RankingKey> keys{{o.primary, {criterion_label(o.primary), o.direction == Direction::Minimize}}};
  for (const auto& [metric, lower_is_better] :
       std::vector<std::pair<std::string, bool>>{{"accuracy", false}, {"latency_b1_median_ms", true}, {"size_bytes", true}}) {
    if (metric != o.primary) keys.push_back({metric, {criterion_label(metric), lower_is_better}});
  }
  return keys;
}

// Ranks the feasible candidates (given in input order) with ties within the
// measured spread, and says where there were ties.
void rank_feasible(const Objective& o, std::vector<RankedCandidate>& feasible, std::vector<std::string>& ties) {
  const auto keys = ranking_keys(o);
  std::vector<RankingCriterion> criteria;
  for (const auto& key : keys) criteria.push_back(key.criterion);
  std::vector<MeasuredItem> items;
  std::vector<std::string> names;
  for (const auto& c : feasible) {
    MeasuredItem item{objective_measurement(o, c.result)};
    for (size_t k = 1; k < keys.size(); ++k) item.push_back(measured(c.result, keys[k].metric));
    items.push_back(std::move(item));
    names.push_back(c.result.name);
  }
  const TiedRanking ranking = rank_with_ties(items, criteria);
  std::vector<RankedCandidate> ordered;
  for (const auto& place : ranking.places) {
    RankedCandidate c = feasible[place.item];
    c.ranked_by = place.decided_by < criteria.size() ? criteria[place.decided_by].label
                                                     : criteria.front().label + " (every criterion ties)";
    for (size_t i : place.tied_with) c.tied_with.push_back(names[i]);
    ordered.push_back(std::move(c));
  }
  feasible = std::move(ordered);
  ties = tie_notes(ranking, names, criteria);
}

void check_constraints(const Objective& o, RankedCandidate& c) {
  for (const auto& bound : o.constraints) {
    auto v = get(c.result, bound.metric);
    if (!v) {
      c.violations.push_back(bound.metric + " not measured");
      c.shortfall += 1.0;
      continue;
    }
    const bool ok = bound.is_max ? *v <= bound.limit : *v >= bound.limit;
    if (ok) continue;
    c.violations.push_back(fmt::format("{} {} {} {}", bound.metric, format_metric(bound.metric, *v),
                                       bound.is_max ? ">" : "<", format_metric(bound.metric, bound.limit)));
    const double scale = std::max(std::fabs(bound.limit), 1e-9);
    c.shortfall += std::fabs(*v - bound.limit) / scale;
  }
}

// A candidate is on the front when no other completed candidate is at least as
// accurate and at least as cheap, and strictly better in one of the two.
void mark_front(std::vector<RankedCandidate>& all, const std::string& cost, bool RankedCandidate::*flag) {
  for (auto& a : all) {
    auto acc_a = get(a.result, "accuracy"), cost_a = get(a.result, cost);
    if (a.result.status != "completed" || !acc_a || !cost_a) continue;
    bool dominated = false;
    for (const auto& b : all) {
      auto acc_b = get(b.result, "accuracy"), cost_b = get(b.result, cost);
      if (&a == &b || b.result.status != "completed" || !acc_b || !cost_b) continue;
      if (*acc_b >= *acc_a && *cost_b <= *cost_a && (*acc_b > *acc_a || *cost_b < *cost_a)) {
        dominated = true;
        break;
      }
    }
    a.*flag = !dominated;
  }
}

// A metric for people; a median latency with its interquartile range.
std::string format_measured(const CandidateResult& r, const std::string& key) {
  const auto m = measured(r, key);
  if (!m) return "-";
  if (m->low == m->high || !latency_prefix(key)) return format_metric(key, m->value);
  return latency_with_spread(m->value, m->low, m->high) + " ms";
}

std::string summary_of(const RankedCandidate& c) {
  std::vector<std::string> parts;
  for (const char* key : {"accuracy", "latency_b1_median_ms", "size_mb"}) {
    if (get(c.result, key)) parts.push_back(fmt::format("{} {}", key, format_measured(c.result, key)));
  }
  return fmt::format("{}", fmt::join(parts, ", "));
}

std::string recommend(const Comparison& cmp) {
  if (cmp.ranked.empty()) return "No candidate has finished yet.";
  const auto& best = cmp.ranked.front();
  const std::string what = cmp.objective.primary == "score" ? "weighted score" : cmp.objective.primary;
  if (best.feasible) {
    std::string tie;
    if (!best.tied_with.empty()) {
      std::vector<std::string> others;
      for (const auto& name : best.tied_with) others.push_back("`" + name + "`");
      tie = fmt::format(" It ties with {} on {} (intervals overlap) and ranks first by {}.", fmt::join(others, ", "),
                        criterion_label(cmp.objective.primary), best.ranked_by);
    }
    return fmt::format("Best: `{}` ({} {}; {}){}.{}", best.result.name, what,
                       format_metric(cmp.objective.primary, best.objective), summary_of(best),
                       cmp.objective.constraints.empty() ? "" : ", meeting every constraint", tie);
  }
  if (best.result.status != "completed") return "No candidate completed.";
  return fmt::format("No candidate meets every constraint. Closest: `{}` ({}), which misses: {}.",
                     best.result.name, summary_of(best), fmt::join(best.violations, "; "));
}

struct Column {
  std::string header;
  std::function<std::string(const RankedCandidate&)> cell;
};

std::vector<Column> columns() {
  auto metric_cell = [](const char* key) {
    return [key](const RankedCandidate& c) {
      auto v = get(c.result, key);
      return v ? format_metric(key, *v) : std::string("-");
    };
  };
  return {
      {"Rank", [](const RankedCandidate& c) { return std::to_string(c.rank); }},
      {"Candidate", [](const RankedCandidate& c) { return c.result.name; }},
      {"Status", [](const RankedCandidate& c) { return c.result.status; }},
      {"Meets", [](const RankedCandidate& c) { return c.feasible ? std::string("yes") : std::string("no"); }},
      {"Accuracy", metric_cell("accuracy")},
      {"Δ acc", metric_cell("accuracy_drop")},
      {"Latency b1", [](const RankedCandidate& c) { return format_measured(c.result, "latency_b1_median_ms"); }},
      {"Size", metric_cell("size_mb")},
      {"Params", metric_cell("params")},
      {"MACs", metric_cell("macs")},
      {"Pareto", [](const RankedCandidate& c) {
         std::string s = c.pareto_latency ? "latency" : "";
         if (c.pareto_size) s += s.empty() ? "size" : "+size";
         return s.empty() ? std::string("-") : s;
       }},
  };
}

size_t display_width(const std::string& s) {
  return std::count_if(s.begin(), s.end(), [](char ch) { return (ch & 0xC0) != 0x80; });
}

std::string escape_html(const std::string& s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += ch;
    }
  }
  return out;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char ch : s) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return out + "\"";
}

// One scatter plot: x = cost metric, y = accuracy (%), front highlighted.
std::string scatter_svg(const Comparison& cmp, const std::string& cost, const std::string& x_label,
                        bool RankedCandidate::*front) {
  const double width = 560, height = 380, left = 64, right = 20, top = 20, bottom = 52;
  std::vector<const RankedCandidate*> points;
  for (const auto& c : cmp.ranked) {
    if (c.result.status == "completed" && get(c.result, "accuracy") && get(c.result, cost)) points.push_back(&c);
  }
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" data-metric=\"{}\" width=\"{}\" height=\"{}\" "
      "viewBox=\"0 0 {} {}\">\n",
      cost, width, height, width, height);
  if (points.empty()) return svg + "<text x=\"20\" y=\"40\">no completed candidates</text></svg>\n";
  double x0 = std::numeric_limits<double>::max(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto* p : points) {
    x0 = std::min(x0, *get(p->result, cost)), x1 = std::max(x1, *get(p->result, cost));
    y0 = std::min(y0, *get(p->result, "accuracy") * 100), y1 = std::max(y1, *get(p->result, "accuracy") * 100);
  }
  const double xpad = std::max((x1 - x0) * 0.08, std::fabs(x1) * 0.05 + 1e-9);
  const double ypad = std::max((y1 - y0) * 0.08, 0.5);
  x0 = std::max(0.0, x0 - xpad), x1 += xpad, y0 -= ypad, y1 = std::min(100.0, y1 + ypad);
  auto sx = [&](double v) { return left + (v - x0) / (x1 - x0) * (width - left - right); };
  auto sy = [&](double v) { return top + (y1 - v) / (y1 - y0) * (height - top - bottom); };
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888\"/>\n", left, top,
                     width - left - right, height - top - bottom);
  for (int i = 0; i <= 4; ++i) {
    const double xv = x0 + (x1 - x0) * i / 4, yv = y0 + (y1 - y0) * i / 4;
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>\n", sx(xv),
                       height - bottom + 16, number(xv));
    svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\" font-size=\"11\" text-anchor=\"end\">{:.1f}</text>\n", left - 6,
                       sy(yv) + 4, yv);
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text>\n",
                     (left + width - right) / 2, height - 12, escape_html(x_label));
  svg += fmt::format("<text x=\"14\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\" "
                     "transform=\"rotate(-90 14 {})\">accuracy (%)</text>\n",
                     (top + height - bottom) / 2, (top + height - bottom) / 2);
  std::vector<const RankedCandidate*> on_front;
  for (const auto* p : points) {
    if (p->*front) on_front.push_back(p);
  }
  std::sort(on_front.begin(), on_front.end(), [&](auto* a, auto* b) { return *get(a->result, cost) < *get(b->result, cost); });
  if (on_front.size() > 1) {
    svg += "<polyline class=\"front\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\" points=\"";
    for (const auto* p : on_front) {
      svg += fmt::format("{:.1f},{:.1f} ", sx(*get(p->result, cost)), sy(*get(p->result, "accuracy") * 100));
    }
    svg += "\"/>\n";
  }
  for (const auto* p : points) {
    const bool f = p->*front;
    svg += fmt::format(
        "<circle class=\"{}\" cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{}\" fill=\"{}\"><title>{}: {}</title></circle>\n",
        f ? "point pareto" : "point", sx(*get(p->result, cost)), sy(*get(p->result, "accuracy") * 100), f ? 6 : 4,
        f ? "#d62728" : "#1f77b4", escape_html(p->result.name), escape_html(summary_of(*p)));
  }
  return svg + "</svg>\n";
}

}  // namespace

nlohmann::json to_json(const CandidateResult& r) {
  return {{"index", r.index},   {"name", r.name},       {"overrides", r.overrides}, {"status", r.status},
          {"error", r.error},   {"run_dir", r.run_dir}, {"seconds", r.seconds},     {"metrics", r.metrics}};
}

CandidateResult candidate_result_from_json(const nlohmann::json& j) {
  CandidateResult r;
  r.index = j.at("index").get<int>();
  r.name = j.at("name").get<std::string>();
  r.overrides = j.value("overrides", std::vector<std::string>{});
  r.status = j.at("status").get<std::string>();
  r.error = j.value("error", "");
  r.run_dir = j.value("run_dir", "");
  r.seconds = j.value("seconds", 0.0);
  r.metrics = j.value("metrics", std::map<std::string, double>{});
  return r;
}

CandidateResult result_from_report(const Candidate& candidate, const nlohmann::json& report,
                                   const std::string& reference_stage) {
  CandidateResult r;
  r.index = candidate.index;
  r.name = candidate.name;
  r.overrides = candidate.overrides;
  r.status = report.value("status", "failed");
  r.error = report.value("message", "");
  const std::string final_stage = report.value("final_stage", "");
  std::map<std::string, double> final_metrics, reference_metrics;
  for (const auto& stage : report.at("stages")) {
    const auto name = stage.at("name").get<std::string>();
    const auto metrics = stage.value("metrics", std::map<std::string, double>{});
    if (name == final_stage) final_metrics = metrics;
    if (name == reference_stage) reference_metrics = metrics;
  }
  r.metrics = final_metrics;
  if (final_metrics.count("size_bytes")) r.metrics["size_mb"] = final_metrics["size_bytes"] / (1 << 20);
  if (final_metrics.count("accuracy") && reference_metrics.count("accuracy")) {
    r.metrics["accuracy_drop"] = reference_metrics["accuracy"] - final_metrics["accuracy"];
  }
  return r;
}

Comparison rank_candidates(const std::string& title, const Objective& objective,
                           std::vector<CandidateResult> results) {
  Comparison cmp{title, objective, {}, "", {}};
  std::vector<RankedCandidate> feasible, others;
  for (auto& r : results) {
    RankedCandidate c;
    c.result = std::move(r);
    check_constraints(objective, c);
    const auto value = objective_measurement(objective, c.result);
    if (!value) c.violations.push_back(objective.primary + " not measured");
    c.objective = value ? value->value : 0.0;
    c.feasible = c.result.status == "completed" && c.violations.empty();
    (c.feasible ? feasible : others).push_back(std::move(c));
  }
  rank_feasible(objective, feasible, cmp.ties);
  std::stable_sort(others.begin(), others.end(), [](const RankedCandidate& a, const RankedCandidate& b) {
    const bool done_a = a.result.status == "completed", done_b = b.result.status == "completed";
    if (done_a != done_b) return done_a;
    if (a.shortfall != b.shortfall) return a.shortfall < b.shortfall;
    return a.result.index < b.result.index;
  });
  cmp.ranked = std::move(feasible);
  for (auto& c : others) cmp.ranked.push_back(std::move(c));
  mark_front(cmp.ranked, "latency_b1_median_ms", &RankedCandidate::pareto_latency);
  mark_front(cmp.ranked, "size_bytes", &RankedCandidate::pareto_size);
  for (size_t i = 0; i < cmp.ranked.size(); ++i) cmp.ranked[i].rank = static_cast<int>(i + 1);
  cmp.recommendation = recommend(cmp);
  return cmp;
}

std::string comparison_table(const Comparison& cmp) {
  const auto cols = columns();
  std::vector<std::vector<std::string>> rows;
  for (const auto& c : cmp.ranked) {
    std::vector<std::string> row;
    for (const auto& col : cols) row.push_back(col.cell(c));
    rows.push_back(std::move(row));
  }
  std::vector<size_t> widths;
  for (size_t i = 0; i < cols.size(); ++i) {
    size_t w = display_width(cols[i].header);
    for (const auto& row : rows) w = std::max(w, display_width(row[i]));
    widths.push_back(w);
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t i = 0; i < cells.size(); ++i) out += cells[i] + std::string(widths[i] - display_width(cells[i]) + 2, ' ');
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::vector<std::string> headers;
  for (const auto& col : cols) headers.push_back(col.header);
  std::string out = line(headers);
  for (const auto& row : rows) out += line(row);
  out += "\n" + cmp.recommendation + "\n";
  for (const auto& tie : cmp.ties) out += tie + "\n";
  return out;
}

std::string comparison_markdown(const Comparison& cmp) {
  const auto cols = columns();
  std::string out = fmt::format("# {}\n\n{}\n\n|", cmp.title, cmp.recommendation);
  for (const auto& col : cols) out += " " + col.header + " |";
  out += "\n|";
  for (size_t i = 0; i < cols.size(); ++i) out += "---|";
  out += "\n";
  for (const auto& c : cmp.ranked) {
    out += "|";
    for (const auto& col : cols) out += " " + col.cell(c) + " |";
    out += "\n";
  }
  out += "\nLatency: median [interquartile range] of the timed runs. Candidates whose intervals overlap on the "
         "objective are ties, ranked by the next criterion (accuracy, batch-1 latency, size).\n";
  if (!cmp.ties.empty()) {
    out += "\n## Ties within the measured spread\n\n";
    for (const auto& tie : cmp.ties) out += "- " + tie + "\n";
  }
  bool header = false;
  for (const auto& c : cmp.ranked) {
    if (c.violations.empty() && c.result.error.empty()) continue;
    if (!header) out += "\n## Why candidates miss\n\n";
    header = true;
    out += fmt::format("- `{}` ({}): {}\n", c.result.name, c.result.status,
                       c.result.error.empty() ? fmt::format("{}", fmt::join(c.violations, "; ")) : c.result.error);
  }
  return out;
}

std::string comparison_csv(const Comparison& cmp) {
  std::vector<std::string> metric_names;
  for (const auto& c : cmp.ranked) {
    for (const auto& [k, v] : c.result.metrics) {
      if (std::find(metric_names.begin(), metric_names.end(), k) == metric_names.end()) metric_names.push_back(k);
    }
  }
  std::sort(metric_names.begin(), metric_names.end());
  std::string out = "rank,index,name,status,feasible,objective,pareto_latency,pareto_size";
  for (const auto& m : metric_names) out += "," + m;
  out += ",violations,error,ranked_by\n";
  for (const auto& c : cmp.ranked) {
    out += fmt::format("{},{},{},{},{},{},{},{}", c.rank, c.result.index, csv_field(c.result.name), c.result.status,
                       c.feasible, c.objective, c.pareto_latency, c.pareto_size);
    for (const auto& m : metric_names) {
      auto v = get(c.result, m);
      out += "," + (v ? fmt::format("{}", *v) : std::string());
    }
    out += "," + csv_field(fmt::format("{}", fmt::join(c.violations, "; "))) + "," + csv_field(c.result.error) + "," +
           csv_field(c.ranked_by) + "\n";
  }
  return out;
}

nlohmann::json comparison_json(const Comparison& cmp) {
  nlohmann::json ranked = nlohmann::json::array();
  for (const auto& c : cmp.ranked) {
    auto j = to_json(c.result);
    j["rank"] = c.rank;
    j["feasible"] = c.feasible;
    j["objective"] = c.objective;
    j["violations"] = c.violations;
    j["pareto_latency"] = c.pareto_latency;
    j["pareto_size"] = c.pareto_size;
    if (const auto m = objective_measurement(cmp.objective, c.result)) j["objective_interval"] = {m->low, m->high};
    if (!c.ranked_by.empty()) j["ranked_by"] = c.ranked_by;
    j["tied_with"] = c.tied_with;
    ranked.push_back(j);
  }
  nlohmann::json constraints = nlohmann::json::array();
  for (const auto& b : cmp.objective.constraints) {
    constraints.push_back({{"metric", b.metric}, {"bound", b.is_max ? "max" : "min"}, {"limit", b.limit}});
  }
  return {{"title", cmp.title},
          {"objective",
           {{"reference", cmp.objective.reference},
            {"primary", cmp.objective.primary},
            {"direction", cmp.objective.direction == Direction::Minimize ? "minimize" : "maximize"},
            {"score_weights", cmp.objective.score_weights},
            {"constraints", constraints}}},
          {"recommendation", cmp.recommendation},
          {"ties", cmp.ties},
          {"best", cmp.ranked.empty() || !cmp.ranked.front().feasible ? nlohmann::json() : nlohmann::json(cmp.ranked.front().result.name)},
          {"candidates", ranked}};
}

std::string comparison_html(const Comparison& cmp) {
  std::string html = fmt::format(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{0}</title>\n<style>"
      "body{{font-family:sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse;margin:16px 0}}"
      "td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:nth-child(2){{text-align:left}}"
      "tr.pareto{{background:#fff2f0}}.plots{{display:flex;flex-wrap:wrap;gap:24px}}"
      "</style></head><body>\n<h1>{0}</h1>\n<p id=\"recommendation\">{1}</p>\n",
      escape_html(cmp.title), escape_html(cmp.recommendation));
  if (!cmp.ties.empty()) {
    html += "<ul id=\"ties\">\n";
    for (const auto& tie : cmp.ties) html += "<li>" + escape_html(tie) + "</li>\n";
    html += "</ul>\n";
  }
  html += "<div class=\"plots\">\n<figure>" +
          scatter_svg(cmp, "latency_b1_median_ms", "latency, batch 1 (ms)", &RankedCandidate::pareto_latency) +
          "<figcaption>Accuracy vs latency; red: Pareto front</figcaption></figure>\n<figure>" +
          scatter_svg(cmp, "size_mb", "serialized size (MB)", &RankedCandidate::pareto_size) +
          "<figcaption>Accuracy vs size; red: Pareto front</figcaption></figure>\n</div>\n<table>\n<tr>";
  const auto cols = columns();
  for (const auto& col : cols) html += "<th>" + escape_html(col.header) + "</th>";
  html += "</tr>\n";
  for (const auto& c : cmp.ranked) {
    html += c.pareto_latency || c.pareto_size ? "<tr class=\"pareto\">" : "<tr>";
    for (const auto& col : cols) html += "<td>" + escape_html(col.cell(c)) + "</td>";
    html += "</tr>\n";
  }
  return html + "</table>\n</body></html>\n";
}

void write_comparison(const std::string& dir, const Comparison& cmp) {
  const std::filesystem::path d(dir);
  write_file_atomically(d / "comparison.md", comparison_markdown(cmp));
  write_file_atomically(d / "comparison.csv", comparison_csv(cmp));
  write_file_atomically(d / "comparison.json", comparison_json(cmp).dump(2) + "\n");
  write_file_atomically(d / "comparison.html", comparison_html(cmp));
}

}  // namespace mcompress
