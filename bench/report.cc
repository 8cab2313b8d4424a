// The table and the JSON document of kagzi-bench (see report.h).
#include "report.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>

#include <fmt/format.h>
#include <rapidjson/filewritestream.h>
#include <rapidjson/prettywriter.h>

namespace kagzi::bench {
namespace {

const char kDash[] = "-";

std::string Rate(std::optional<double> v) {
  if (!v) return kDash;
  return *v >= 100 ? fmt::format("{:.0f}", *v) : fmt::format("{:.1f}", *v);
}

std::string PerWorkflow(std::optional<double> v) {
  return v ? fmt::format("{:.2f}", *v) : std::string(kDash);
}

std::string Bytes(std::optional<double> v) {
  if (!v) return kDash;
  if (*v >= 10 * 1024) return fmt::format("{:.0f} KiB", *v / 1024);
  if (*v >= 1024) return fmt::format("{:.1f} KiB", *v / 1024);
  return fmt::format("{:.0f} B", *v);
}

std::string Millis(double ms) {
  if (ms < 10) return fmt::format("{:.2f}", ms);
  if (ms < 100) return fmt::format("{:.1f}", ms);
  return fmt::format("{:.0f}", ms);
}

std::string Cpu(std::optional<double> v) {
  if (!v) return kDash;
  return *v < 10 ? fmt::format("{:.2f}", *v) : fmt::format("{:.1f}", *v);
}

std::string Rss(const std::vector<std::int64_t>& kib) {
  if (kib.empty()) return kDash;
  const double max = static_cast<double>(*std::max_element(kib.begin(), kib.end())) / 1024;
  const double sum =
      static_cast<double>(std::accumulate(kib.begin(), kib.end(), std::int64_t{0})) / 1024;
  return fmt::format("{:.1f}/{:.1f}", max, sum);
}

std::string PercentileLine(const Percentiles& p) {
  return fmt::format("p50 {} ms, p95 {} ms, p99 {} ms, max {} ms ({} runs)", Millis(p.p50),
                     Millis(p.p95), Millis(p.p99), Millis(p.max), p.count);
}

// Right-aligned columns (the first left-aligned), two spaces apart.
std::string RenderTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()), 0);
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (i > 0) line += "  ";
      line += i == 0 ? fmt::format("{:<{}}", row[i], width[i])
                     : fmt::format("{:>{}}", row[i], width[i]);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

using JsonWriter = rapidjson::PrettyWriter<rapidjson::FileWriteStream>;

void Key(JsonWriter& w, const char* key) { w.Key(key); }
void Str(JsonWriter& w, const char* key, const std::string& v) {
  w.Key(key);
  w.String(v.c_str(), static_cast<rapidjson::SizeType>(v.size()));
}
void Num(JsonWriter& w, const char* key, double v) {
  w.Key(key);
  if (std::isfinite(v)) {
    w.Double(v);
  } else {
    w.Null();
  }
}
void Int(JsonWriter& w, const char* key, std::int64_t v) {
  w.Key(key);
  w.Int64(v);
}
void Bool(JsonWriter& w, const char* key, bool v) {
  w.Key(key);
  w.Bool(v);
}
void OptNum(JsonWriter& w, const char* key, std::optional<double> v) {
  if (v) {
    Num(w, key, *v);
  } else {
    w.Key(key);
    w.Null();
  }
}
void OptInt(JsonWriter& w, const char* key, std::optional<std::int64_t> v) {
  w.Key(key);
  if (v) {
    w.Int64(*v);
  } else {
    w.Null();
  }
}
void OptPercentiles(JsonWriter& w, const char* key, const std::optional<Percentiles>& p) {
  w.Key(key);
  if (!p) {
    w.Null();
    return;
  }
  w.StartObject();
  Int(w, "count", p->count);
  Num(w, "p50", p->p50);
  Num(w, "p95", p->p95);
  Num(w, "p99", p->p99);
  Num(w, "max", p->max);
  w.EndObject();
}
// `key`: null, or an object whose members `members(*v)` writes.
template <typename T, typename Members>
void OptObject(JsonWriter& w, const char* key, const std::optional<T>& v, Members members) {
  w.Key(key);
  if (!v) {
    w.Null();
    return;
  }
  w.StartObject();
  members(*v);
  w.EndObject();
}
void Strings(JsonWriter& w, const char* key, const std::vector<std::string>& items) {
  w.Key(key);
  w.StartArray();
  for (const auto& s : items) w.String(s.c_str(), static_cast<rapidjson::SizeType>(s.size()));
  w.EndArray();
}

void WriteWorkload(JsonWriter& w, const WorkloadResult& r) {
  w.StartObject();
  Str(w, "name", r.name);
  Int(w, "round", r.round);
  Str(w, "workflow", r.workflow);
  Str(w, "database", r.database);
  Int(w, "runs", r.runs);
  Int(w, "completed", r.completed);
  Int(w, "failed", r.failed);
  Bool(w, "timed_out", r.timed_out);
  Key(w, "error");
  if (r.error.empty()) {
    w.Null();
  } else {
    w.String(r.error.c_str());
  }
  Strings(w, "notes", r.notes);
  Num(w, "wall_seconds", r.wall_seconds);
  Num(w, "loadavg_before", r.loadavg.first);
  Num(w, "loadavg_after", r.loadavg.second);
  OptNum(w, "starts_per_second", r.starts_per_second);
  OptNum(w, "span_seconds", r.span_seconds);
  OptNum(w, "workflows_per_second", r.workflows_per_second);
  OptNum(w, "steps_per_second", r.steps_per_second);
  OptNum(w, "steps_per_workflow", r.steps_per_workflow);
  OptNum(w, "transactions_per_workflow", r.transactions_per_workflow);
  OptNum(w, "write_commits_per_workflow", r.write_commits_per_workflow);
  OptNum(w, "empty_commits_per_workflow", r.empty_commits_per_workflow);
  OptNum(w, "wal_bytes_per_workflow", r.wal_bytes_per_workflow);
  OptNum(w, "fsyncs_per_workflow", r.fsyncs_per_workflow);
  Key(w, "counters");
  w.StartObject();
  Int(w, "xact_commit", r.xact_commit);
  Int(w, "xact_rollback", r.xact_rollback);
  Int(w, "own_transactions_subtracted", r.own_transactions);
  OptInt(w, "wal_commit_records", r.commit_records);
  OptInt(w, "wal_empty_commit_records", r.empty_commit_records);
  Int(w, "wal_bytes", r.wal_bytes);
  Int(w, "wal_syncs", r.wal_syncs);
  w.EndObject();
  OptPercentiles(w, "latency_ms", r.latency_ms);
  OptPercentiles(w, "notified_latency_ms", r.notified_latency_ms);
  OptPercentiles(w, "wake_lateness_ms", r.wake_lateness_ms);
  OptPercentiles(w, "claim_began_ms", r.claim_began_ms);
  OptPercentiles(w, "first_step_began_ms", r.first_step_began_ms);
  OptPercentiles(w, "last_step_began_ms", r.last_step_began_ms);
  OptObject(w, "slowest_run", r.slowest_run, [&](const RunPhases& s) {
    Str(w, "id", s.id);
    Num(w, "latency_ms", s.latency_ms);
    OptNum(w, "claim_began_ms", s.claim_began_ms);
    OptNum(w, "first_step_began_ms", s.first_step_began_ms);
    OptNum(w, "last_step_began_ms", s.last_step_began_ms);
    Num(w, "notified_ms", s.notified_ms);
  });
  Key(w, "table_scans");
  w.StartArray();
  for (const auto& t : r.table_scans) {
    w.StartObject();
    Str(w, "table", t.table);
    Int(w, "seq_scans", t.seq_scans);
    Int(w, "seq_rows_read", t.seq_rows_read);
    Int(w, "index_scans", t.index_scans);
    w.EndObject();
  }
  w.EndArray();
  OptNum(w, "kagzid_cpu_seconds", r.kagzid_cpu_seconds);
  OptNum(w, "pg_cpu_seconds", r.pg_cpu_seconds);
  Key(w, "kagzid_peak_rss_kib");
  w.StartArray();
  for (auto kib : r.kagzid_peak_rss_kib) w.Int64(kib);
  w.EndArray();
  Key(w, "kagzid_pss_kib");
  if (r.kagzid_pss_kib) {
    w.Int64(*r.kagzid_pss_kib);
  } else {
    w.Null();
  }
  OptObject(w, "idle", r.idle, [&](const IdleFigures& i) {
    Num(w, "seconds", i.seconds);
    Num(w, "transactions_per_second", i.transactions_per_second);
    OptNum(w, "write_commits_per_second", i.write_commits_per_second);
    Num(w, "fsyncs_per_second", i.fsyncs_per_second);
    Num(w, "wal_bytes_per_second", i.wal_bytes_per_second);
    Num(w, "kagzid_cpu_fraction", i.kagzid_cpu_fraction);
    OptNum(w, "pg_cpu_fraction", i.pg_cpu_fraction);
  });
  OptObject(w, "ceiling", r.ceiling, [&](const CeilingFigures& c) {
    Int(w, "clients", c.clients);
    Int(w, "threads", c.threads);
    Num(w, "seconds", c.seconds);
    Int(w, "transactions", c.transactions);
    Num(w, "transactions_per_second", c.transactions_per_second);
    Num(w, "wal_bytes_per_transaction", c.wal_bytes_per_transaction);
    Num(w, "fsyncs_per_transaction", c.fsyncs_per_transaction);
  });
  OptNum(w, "steps_of_ceiling", r.steps_of_ceiling);
  OptNum(w, "of_bench3", r.of_bench3);
  OptObject(w, "backlog", r.backlog, [&](const BacklogFigures& b) {
    Int(w, "parked_runs", b.parked_runs);
    Num(w, "insert_seconds", b.insert_seconds);
    Str(w, "claim_plan_source", b.claim_plan_source);
    Int(w, "claim_plans", b.claim_plans);
    Int(w, "claim_plans_with_seq_scan", b.claim_plans_with_seq_scan);
    Key(w, "claim_uses_index");
    if (b.claim_uses_index) {
      w.Bool(*b.claim_uses_index);
    } else {
      w.Null();
    }
    Str(w, "claim_plan", b.claim_plan);
    Str(w, "claim_plan_problem", b.claim_plan_problem);
  });
  w.EndObject();
}

}  // namespace

std::optional<Percentiles> ComputePercentiles(std::vector<double> samples) {
  if (samples.empty()) return std::nullopt;
  std::sort(samples.begin(), samples.end());
  auto rank = [&](double p) {
    const auto n = samples.size();
    auto k = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(n)));
    return samples[std::min(n, std::max<std::size_t>(k, 1)) - 1];
  };
  return Percentiles{static_cast<int>(samples.size()), rank(50), rank(95), rank(99),
                     samples.back()};
}

namespace {

// The index of the result that `results[i]` relates to: the last one
// before it that `usable` accepts, or if there is none, the first one
// after it.
template <typename Usable>
std::optional<std::size_t> Nearest(const std::vector<WorkloadResult>& results, std::size_t i,
                                   Usable usable) {
  std::optional<std::size_t> found;
  for (std::size_t j = 0; j < results.size(); ++j) {
    if (j == i || !usable(results[j])) continue;
    if (j < i || !found) found = j;
    if (j > i) break;
  }
  return found;
}

// A figure the rounds' summary reports, as read from one result.
struct FigureSpec {
  const char* key;    // as in the JSON
  const char* label;  // as in the table
  std::optional<double> (*get)(const WorkloadResult&);
};

std::optional<double> Positive(std::optional<double> v) { return v && *v > 0 ? v : std::nullopt; }

std::optional<double> LatencyP(const std::optional<Percentiles>& p, double Percentiles::*pick) {
  if (!p) return std::nullopt;
  return (*p).*pick;
}

const FigureSpec kRoundFigures[] = {
    {"workflows_per_second", "wf/s",
     [](const WorkloadResult& r) { return r.workflows_per_second; }},
    // bench0 has no steps.
    {"steps_per_second", "steps/s",
     [](const WorkloadResult& r) { return Positive(r.steps_per_second); }},
    {"steps_of_ceiling", "steps/s over the ceiling",
     [](const WorkloadResult& r) { return r.steps_of_ceiling; }},
    {"of_bench3", "wf/s over bench3's", [](const WorkloadResult& r) { return r.of_bench3; }},
    {"ceiling.transactions_per_second", "transactions/s",
     [](const WorkloadResult& r) {
       return r.ceiling ? std::optional<double>(r.ceiling->transactions_per_second) : std::nullopt;
     }},
    {"write_commits_per_workflow", "commits/wf",
     [](const WorkloadResult& r) { return r.write_commits_per_workflow; }},
    {"latency_ms.p50", "p50 ms",
     [](const WorkloadResult& r) { return LatencyP(r.latency_ms, &Percentiles::p50); }},
    {"latency_ms.p99", "p99 ms",
     [](const WorkloadResult& r) { return LatencyP(r.latency_ms, &Percentiles::p99); }},
    {"wake_lateness_ms.p95", "wake lateness p95 ms",
     [](const WorkloadResult& r) { return LatencyP(r.wake_lateness_ms, &Percentiles::p95); }},
    {"wake_lateness_ms.max", "wake lateness max ms",
     [](const WorkloadResult& r) { return LatencyP(r.wake_lateness_ms, &Percentiles::max); }},
    {"idle.transactions_per_second", "idle transactions/s",
     [](const WorkloadResult& r) {
       return r.idle ? std::optional<double>(r.idle->transactions_per_second) : std::nullopt;
     }},
    {"kagzid_cpu_seconds", "kagzid CPU s",
     [](const WorkloadResult& r) { return r.kagzid_cpu_seconds; }},
    {"pg_cpu_seconds", "PG CPU s", [](const WorkloadResult& r) { return r.pg_cpu_seconds; }},
    {"kagzid_peak_rss_mib", "kagzid peak RSS MiB",
     [](const WorkloadResult& r) {
       if (r.kagzid_peak_rss_kib.empty()) return std::optional<double>();
       return std::optional<double>(
           static_cast<double>(
               *std::max_element(r.kagzid_peak_rss_kib.begin(), r.kagzid_peak_rss_kib.end())) /
           1024);
     }},
};

// The targets of the issue that asked for kagzi-bench (docs/benchmarks.md,
// "Rounds"), each a bound on one figure of one workload.
struct Target {
  const char* workload;
  const char* key;
  bool at_least;  // the figure must be >= bound (> for a strict one), else <= bound
  bool strict;
  double bound;
};
const Target kTargets[] = {
    {"bench3", "workflows_per_second", true, false, 3700},
    {"bench3", "steps_of_ceiling", true, true, 1},  // the stretch
    {"bench3", "write_commits_per_workflow", false, false, 1},
    {"bench3", "kagzid_peak_rss_mib", false, false, 30},
    {"idle-latency", "latency_ms.p50", false, false, 4},
    {"idle-latency", "latency_ms.p99", false, false, 10},
    {"sleep", "wake_lateness_ms.p95", false, false, 5},
    {"sleep", "wake_lateness_ms.max", false, false, 20},
    {"idle", "idle.transactions_per_second", false, false, 1},
    {"backlog", "of_bench3", true, false, 0.9},
};

const Target* FindTarget(const std::string& workload, const std::string& key) {
  for (const auto& t : kTargets) {
    if (workload == t.workload && key == t.key) return &t;
  }
  return nullptr;
}

bool Meets(const Target& t, double v) {
  if (t.at_least) return t.strict ? v > t.bound : v >= t.bound;
  return t.strict ? v < t.bound : v <= t.bound;
}

const FigureSpec* FindFigure(const std::string& key) {
  for (const auto& spec : kRoundFigures) {
    if (key == spec.key) return &spec;
  }
  return nullptr;
}

std::string Figure(double v) {
  if (v >= 100) return fmt::format("{:.0f}", v);
  if (v >= 10) return fmt::format("{:.1f}", v);
  return fmt::format("{:.2f}", v);
}

// "across 5 rounds:" (or, in one round that ran a workload more than
// once, "workloads run more than once:") and a table of the figures, one
// row each.
std::string FormatRounds(const RunInfo& info, const std::vector<RoundFigure>& figures) {
  if (figures.empty()) return {};
  std::vector<std::vector<std::string>> rows = {
      {"workload: figure", "results", "median", "lowest", "highest", "target", "met in"}};
  for (const auto& f : figures) {
    const FigureSpec* spec = FindFigure(f.figure);
    rows.push_back({fmt::format("{}: {}", f.workload, spec != nullptr ? spec->label : f.figure),
                    std::to_string(f.count), Figure(f.median), Figure(f.min), Figure(f.max),
                    f.target.empty() ? std::string(kDash) : f.target,
                    f.met ? fmt::format("{} of {}", *f.met, f.count) : std::string(kDash)});
  }
  return (info.rounds > 1 ? fmt::format("\nacross {} rounds:\n", info.rounds)
                          : std::string("\nworkloads run more than once:\n")) +
         RenderTable(rows);
}

}  // namespace

void RelateResults(std::vector<WorkloadResult>& results) {
  for (std::size_t i = 0; i < results.size(); ++i) {
    WorkloadResult& r = results[i];
    if (r.steps_per_second && *r.steps_per_second > 0) {
      if (auto c = Nearest(results, i, [](const WorkloadResult& o) {
            return o.ceiling && o.ceiling->transactions_per_second > 0;
          })) {
        r.steps_of_ceiling = *r.steps_per_second / results[*c].ceiling->transactions_per_second;
      }
    }
    if (r.name == "backlog" && r.workflows_per_second) {
      if (auto b = Nearest(results, i, [](const WorkloadResult& o) {
            return o.name == "bench3" && o.workflows_per_second && *o.workflows_per_second > 0;
          })) {
        r.of_bench3 = *r.workflows_per_second / *results[*b].workflows_per_second;
      }
    }
  }
}

std::vector<RoundFigure> SummarizeRounds(const std::vector<WorkloadResult>& results) {
  std::vector<std::string> names;
  for (const auto& r : results) {
    if (std::find(names.begin(), names.end(), r.name) == names.end()) names.push_back(r.name);
  }
  std::vector<RoundFigure> out;
  for (const auto& name : names) {
    const auto measured = std::count_if(results.begin(), results.end(),
                                        [&](const WorkloadResult& r) { return r.name == name; });
    if (measured < 2) continue;
    for (const auto& spec : kRoundFigures) {
      std::vector<double> values;
      for (const auto& r : results) {
        if (r.name != name) continue;
        if (auto v = spec.get(r); v && std::isfinite(*v)) values.push_back(*v);
      }
      if (values.empty()) continue;
      std::sort(values.begin(), values.end());
      RoundFigure f;
      f.workload = name;
      f.figure = spec.key;
      f.count = static_cast<int>(values.size());
      const std::size_t mid = values.size() / 2;
      f.median = values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
      f.min = values.front();
      f.max = values.back();
      if (const Target* t = FindTarget(name, spec.key)) {
        f.target = fmt::format(
            "{}{:g}", t->at_least ? (t->strict ? "> " : ">= ") : (t->strict ? "< " : "<= "),
            t->bound);
        f.met = static_cast<int>(
            std::count_if(values.begin(), values.end(), [&](double v) { return Meets(*t, v); }));
      }
      out.push_back(std::move(f));
    }
  }
  return out;
}

std::string FormatTable(const RunInfo& info, const std::vector<WorkloadResult>& results) {
  std::vector<std::vector<std::string>> rows = {
      {"workload", "runs", "done", "starts/s", "wf/s", "steps/s", "xact/wf", "commits/wf",
       "empty/wf", "WAL/wf", "fsync/wf", "p50 ms", "p95 ms", "p99 ms", "max ms", "kagzid CPU s",
       "PG CPU s", "RSS MiB max/sum", "PSS MiB"}};
  // With more than one round, each result is named by its round too.
  auto title = [&](const WorkloadResult& r) {
    return info.rounds > 1 ? fmt::format("{} #{}", r.name, r.round) : r.name;
  };
  for (const auto& r : results) {
    std::vector<std::string> row = {title(r), std::to_string(r.runs), std::to_string(r.completed)};
    row.push_back(Rate(r.starts_per_second));
    row.push_back(Rate(r.workflows_per_second));
    row.push_back(Rate(r.steps_per_second));
    row.push_back(PerWorkflow(r.transactions_per_workflow));
    row.push_back(PerWorkflow(r.write_commits_per_workflow));
    row.push_back(PerWorkflow(r.empty_commits_per_workflow));
    row.push_back(Bytes(r.wal_bytes_per_workflow));
    row.push_back(PerWorkflow(r.fsyncs_per_workflow));
    for (auto pick : {&Percentiles::p50, &Percentiles::p95, &Percentiles::p99, &Percentiles::max}) {
      row.push_back(r.latency_ms ? Millis((*r.latency_ms).*pick) : std::string(kDash));
    }
    row.push_back(Cpu(r.kagzid_cpu_seconds));
    row.push_back(Cpu(r.pg_cpu_seconds));
    row.push_back(Rss(r.kagzid_peak_rss_kib));
    row.push_back(r.kagzid_pss_kib
                      ? fmt::format("{:.1f}", static_cast<double>(*r.kagzid_pss_kib) / 1024)
                      : std::string(kDash));
    rows.push_back(std::move(row));
  }

  std::string out = fmt::format(
      "kagzi-bench: {} kagzid x{} (--concurrency {}{}), {} client threads; starts through {}\n"
      "PostgreSQL {} ({}server {}); fsync={}, synchronous_commit={}\n\n",
      info.kagzid, info.daemons, info.concurrency,
      info.kagzid_args.empty() ? std::string()
                               : " " + fmt::format("{}", fmt::join(info.kagzid_args, " ")),
      info.clients, info.start_path,
      [&] {
        for (const auto& [k, v] : info.server_settings) {
          if (k == "server_version") return v;
        }
        return std::string("?");
      }(),
      info.private_server ? "private " : "", info.server,
      [&] {
        for (const auto& [k, v] : info.server_settings) {
          if (k == "fsync") return v;
        }
        return std::string("?");
      }(),
      [&] {
        for (const auto& [k, v] : info.server_settings) {
          if (k == "synchronous_commit") return v;
        }
        return std::string("?");
      }());
  out += RenderTable(rows);
  out += "\n";
  for (const auto& r : results) {
    std::vector<std::string> lines;
    if (!r.error.empty()) lines.push_back("NOT MEASURED: " + r.error);
    if (r.timed_out) {
      lines.push_back(fmt::format("timed out: {} of {} runs completed", r.completed, r.runs));
    }
    if (r.failed > 0) lines.push_back(fmt::format("{} runs failed or were cancelled", r.failed));
    if (r.ceiling) {
      const CeilingFigures& c = *r.ceiling;
      lines.push_back(fmt::format(
          "{:.0f} single-row INSERT transactions/s: {} clients on {} threads for {:.1f} s, each "
          "transaction one prepared INSERT of a bench3 step's result; WAL {:.0f} bytes and {:.3f} "
          "fsyncs per transaction",
          c.transactions_per_second, c.clients, c.threads, c.seconds, c.wal_bytes_per_transaction,
          c.fsyncs_per_transaction));
    }
    if (r.steps_of_ceiling) {
      lines.push_back(fmt::format("steps/s: {:.0f}% of the ceiling measured in this run",
                                  100 * *r.steps_of_ceiling));
    }
    if (r.wake_lateness_ms) {
      lines.push_back("wake lateness: " + PercentileLine(*r.wake_lateness_ms));
    }
    if (!r.table_scans.empty()) {
      std::string line = "scans in the window:";
      for (const auto& t : r.table_scans) {
        line += fmt::format(" {} {} seq ({} rows read), {} index;", t.table, t.seq_scans,
                            t.seq_rows_read, t.index_scans);
      }
      line.pop_back();
      lines.push_back(line);
    }
    if (r.latency_ms && r.name == "idle-latency") {
      lines.push_back("start -> finished_at: " + PercentileLine(*r.latency_ms));
    }
    if (r.claim_began_ms && r.first_step_began_ms && r.last_step_began_ms && r.latency_ms) {
      lines.push_back(fmt::format(
          "where the time goes, p50 from the start call to the beginning of the transaction that "
          "claimed the run {} ms, recorded step 1 {} ms, recorded the last step {} ms, ended the "
          "run {} ms",
          Millis(r.claim_began_ms->p50), Millis(r.first_step_began_ms->p50),
          Millis(r.last_step_began_ms->p50), Millis(r.latency_ms->p50)));
    }
    if (r.slowest_run) {
      const RunPhases& s = *r.slowest_run;
      auto phase = [](const std::optional<double>& ms) {
        return ms ? Millis(*ms) + " ms" : std::string("?");
      };
      lines.push_back(fmt::format(
          "slowest run {}: claimed {}, step 1 {}, last step {}, ended {} ms, NOTIFY {} ms", s.id,
          phase(s.claim_began_ms), phase(s.first_step_began_ms), phase(s.last_step_began_ms),
          Millis(s.latency_ms), Millis(s.notified_ms)));
    }
    if (r.notified_latency_ms) {
      lines.push_back("start -> completion NOTIFY received: " +
                      PercentileLine(*r.notified_latency_ms));
    }
    if (r.idle) {
      const IdleFigures& i = *r.idle;
      lines.push_back(fmt::format(
          "over {:.1f} s idle: {:.2f} transactions/s in its database, {} write commits/s and "
          "{:.2f} fsyncs/s (cluster), {:.0f} WAL bytes/s, kagzid CPU {:.2f}%, PostgreSQL CPU {}",
          i.seconds, i.transactions_per_second,
          i.write_commits_per_second ? fmt::format("{:.2f}", *i.write_commits_per_second)
                                     : std::string("?"),
          i.fsyncs_per_second, i.wal_bytes_per_second, i.kagzid_cpu_fraction * 100,
          i.pg_cpu_fraction ? fmt::format("{:.2f}%", *i.pg_cpu_fraction * 100) : std::string("?")));
    }
    if (r.backlog) {
      const BacklogFigures& b = *r.backlog;
      std::string line = fmt::format("{} runs parked a year ahead (inserted in {:.1f} s)",
                                     b.parked_runs, b.insert_seconds);
      if (r.of_bench3) {
        line += fmt::format("; wf/s {:.0f}% of bench3 on an empty table", 100 * *r.of_bench3);
      }
      lines.push_back(line);
      if (b.claim_uses_index) {
        lines.push_back(fmt::format(
            "claim plan: {} ({} plan(s) of the claim statement, from {}, {} with a Seq Scan on "
            "kagzi_runs); the scans of the last that claimed runs, or of the last (whole plan in "
            "the JSON):",
            *b.claim_uses_index ? "index scans only" : "SEQ SCAN", b.claim_plans,
            b.claim_plan_source, b.claim_plans_with_seq_scan));
        std::string scans;
        std::size_t from = 0;
        while (from < b.claim_plan.size()) {
          std::size_t to = b.claim_plan.find('\n', from);
          if (to == std::string::npos) to = b.claim_plan.size();
          const std::string node = b.claim_plan.substr(from, to - from);
          if (node.find("Scan") != std::string::npos) {
            scans += (scans.empty() ? "" : "\n") + node.substr(node.find_first_not_of(" ->"));
          }
          from = to + 1;
        }
        lines.push_back(scans);
      } else {
        lines.push_back("claim plan not captured: " + b.claim_plan_problem);
      }
    }
    for (const auto& note : r.notes) lines.push_back(note);
    if (lines.empty()) continue;
    out += title(r) + ":\n";
    for (const auto& line : lines) {
      std::string indented = "  ";
      for (char c : line) {
        indented.push_back(c);
        if (c == '\n') indented += "  ";
      }
      out += indented + "\n";
    }
  }
  out += FormatRounds(info, SummarizeRounds(results));
  return out;
}

Status WriteJson(const std::string& path, const RunInfo& info,
                 const std::vector<WorkloadResult>& results) {
  std::FILE* file = std::fopen(path.c_str(), "w");
  if (file == nullptr) {
    return Status::Unavailable("cannot write the JSON report {}: {}", path, std::strerror(errno));
  }
  char buffer[65536];
  rapidjson::FileWriteStream stream(file, buffer, sizeof buffer);
  JsonWriter w(stream);
  w.StartObject();
  Str(w, "tool", "kagzi-bench");
  Str(w, "command_line", info.command_line);
  Str(w, "started_at", info.started_at);
  Num(w, "wall_seconds", info.wall_seconds);
  Str(w, "start_path", info.start_path);
  Key(w, "kagzid");
  w.StartObject();
  Str(w, "binary", info.kagzid);
  Str(w, "version", info.kagzid_version);
  Str(w, "plugin", info.plugin);
  Int(w, "concurrency", info.concurrency);
  Int(w, "daemons", info.daemons);
  Strings(w, "extra_args", info.kagzid_args);
  w.EndObject();
  Int(w, "clients", info.clients);
  Str(w, "bench_build_type", info.bench_build_type);
  Key(w, "server");
  w.StartObject();
  Str(w, "url", info.server);
  Bool(w, "private", info.private_server);
  for (const auto& [k, v] : info.server_settings) Str(w, k.c_str(), v);
  Str(w, "walinspect_problem", info.walinspect_problem);
  Int(w, "transactions_per_connection", info.transactions_per_connection);
  Int(w, "clock_offset_us", info.clock_offset_us);
  Int(w, "clock_rtt_us", info.clock_rtt_us);
  w.EndObject();
  Key(w, "machine");
  w.StartObject();
  Int(w, "cpus", info.cpus);
  Str(w, "cpu_model", info.cpu_model);
  w.EndObject();
  Int(w, "seed", info.seed);
  Bool(w, "quick", info.quick);
  Int(w, "rounds", info.rounds);
  Key(w, "workloads");
  w.StartArray();
  for (const auto& r : results) WriteWorkload(w, r);
  w.EndArray();
  Key(w, "across_rounds");
  w.StartArray();
  for (const auto& f : SummarizeRounds(results)) {
    w.StartObject();
    Str(w, "workload", f.workload);
    Str(w, "figure", f.figure);
    Int(w, "count", f.count);
    Num(w, "median", f.median);
    Num(w, "min", f.min);
    Num(w, "max", f.max);
    Str(w, "target", f.target);
    OptInt(w, "met", f.met);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  stream.Put('\n');
  stream.Flush();
  if (std::fclose(file) != 0) {
    return Status::Unavailable("cannot write the JSON report {}: {}", path, std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace kagzi::bench
