// What kagzi-bench measured, and how it is shown: a table on stdout (one
// row per workload, then a line of details for the workloads that have
// their own figures) and a JSON document. docs/benchmarks.md explains every
// figure. An absent figure (std::nullopt) was not measured for that
// workload, or could not be (the notes say why); the table shows "-" and
// the JSON null. Plain values; no thread-safety concerns.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kagzi/core/status.h"

namespace kagzi::bench {

// Nearest-rank percentiles of a sample, in milliseconds.
struct Percentiles {
  int count = 0;
  double p50 = 0;
  double p95 = 0;
  double p99 = 0;
  double max = 0;
};
std::optional<Percentiles> ComputePercentiles(std::vector<double> samples_ms);

// Scans of one table in the window (pg_stat_user_tables).
struct TableScans {
  std::string table;
  std::int64_t seq_scans = 0;
  std::int64_t seq_rows_read = 0;
  std::int64_t index_scans = 0;
};

struct IdleFigures {
  double seconds = 0;                  // idle time measured (difference of two lifetimes)
  double transactions_per_second = 0;  // commits + rollbacks, the daemon's database
  std::optional<double> write_commits_per_second;  // WAL COMMIT records, cluster-wide
  double fsyncs_per_second = 0;                    // cluster-wide
  double wal_bytes_per_second = 0;                 // cluster-wide
  double kagzid_cpu_fraction = 0;                  // CPU seconds per second
  std::optional<double> pg_cpu_fraction;
};

struct BacklogFigures {
  std::int64_t parked_runs = 0;
  double insert_seconds = 0;
  // The plans of the daemon's claim statement: logged by auto_explain (a
  // private server), or one EXPLAIN after the window (a server given by
  // URL, whose log the bench cannot read); claim_plan_source says which.
  std::string claim_plan_source;
  int claim_plans = 0;
  int claim_plans_with_seq_scan = 0;
  std::optional<bool> claim_uses_index;  // nullopt: no plan captured
  std::string claim_plan;                // the last one logged
  std::string claim_plan_problem;        // why none was captured
};

// One run of idle-latency, in ms from its start call: its end and, when
// known, the beginnings of the transactions that claimed it and recorded
// its first and last steps (the database's clock, as latency_ms), and the
// arrival of its completion NOTIFY (kagzi-bench's clock).
struct RunPhases {
  std::string id;
  double latency_ms = 0;
  std::optional<double> claim_began_ms;
  std::optional<double> first_step_began_ms;
  std::optional<double> last_step_began_ms;
  double notified_ms = 0;
};

// The ceiling workload (ceiling.h): single-row INSERT transactions.
struct CeilingFigures {
  int clients = 0;
  int threads = 0;
  double seconds = 0;
  std::int64_t transactions = 0;
  double transactions_per_second = 0;
  double wal_bytes_per_transaction = 0;
  double fsyncs_per_transaction = 0;
};

struct WorkloadResult {
  std::string name;      // bench0, ceiling, bench3, sleep, idle-latency, backlog, idle
  int round = 1;         // which pass over the workloads (--rounds), from 1
  std::string workflow;  // the plugin workflow it runs
  std::string database;
  int runs = 0;  // runs started inside the measured window
  int completed = 0;
  int failed = 0;  // FAILED or CANCELLED
  bool timed_out = false;
  std::string error;  // why the workload could not be measured (empty: it was)
  std::vector<std::string> notes;
  double wall_seconds = 0;                  // the whole workload, setup included
  std::pair<double, double> loadavg{0, 0};  // 1-minute load average before, after

  // Throughput (bench0, bench3, sleep, backlog).
  std::optional<double> starts_per_second;  // client side: first start call to last return
  std::optional<double> span_seconds;       // first created_at to last finished_at (database)
  std::optional<double> workflows_per_second;
  std::optional<double> steps_per_second;
  std::optional<double> steps_per_workflow;

  // Per workflow started in the window.
  std::optional<double> transactions_per_workflow;  // xact_commit + xact_rollback
  // WAL COMMIT records of transactions that wrote data, and of those that
  // wrote nothing else (the notifications sent after a commit).
  std::optional<double> write_commits_per_workflow;
  std::optional<double> empty_commits_per_workflow;
  std::optional<double> wal_bytes_per_workflow;
  std::optional<double> fsyncs_per_workflow;
  // The raw deltas the per-workflow figures come from.
  std::int64_t xact_commit = 0;
  std::int64_t xact_rollback = 0;
  std::int64_t own_transactions = 0;  // the bench's own, subtracted
  std::optional<std::int64_t> commit_records;
  std::optional<std::int64_t> empty_commit_records;
  std::int64_t wal_bytes = 0;
  std::int64_t wal_syncs = 0;

  std::optional<Percentiles> latency_ms;           // start call -> finished_at
  std::optional<Percentiles> notified_latency_ms;  // start call -> NOTIFY received (idle-latency)
  std::optional<Percentiles> wake_lateness_ms;     // sleep
  // idle-latency: from the start call to the beginning (the database's
  // now()) of the transaction that claimed the run, of the one that
  // recorded its first step, and of the one that recorded its last step.
  // With latency_ms (the end's transaction) they show where the time goes.
  std::optional<Percentiles> claim_began_ms;
  std::optional<Percentiles> first_step_began_ms;
  std::optional<Percentiles> last_step_began_ms;
  // idle-latency: the slowest measured run (by latency_ms), with its own
  // phases, so that an outlier in the percentiles shows where it waited.
  std::optional<RunPhases> slowest_run;

  std::vector<TableScans> table_scans;  // kagzi_runs, kagzi_steps

  std::optional<double> kagzid_cpu_seconds;
  std::optional<double> pg_cpu_seconds;
  std::vector<std::int64_t> kagzid_peak_rss_kib;  // per process: supervisors and workers
  // PSS of all kagzid processes summed, at the end of the workload (shared
  // pages counted once; RSS sums count a library's pages in every process).
  std::optional<std::int64_t> kagzid_pss_kib;

  std::optional<IdleFigures> idle;
  std::optional<CeilingFigures> ceiling;
  // steps_per_second over the transactions per second of the ceiling
  // measured in the same kagzi-bench run, if there was one
  // (RelateResults).
  std::optional<double> steps_of_ceiling;
  std::optional<BacklogFigures> backlog;
  // backlog: workflows_per_second over that of the bench3 measured in the
  // same kagzi-bench run (RelateResults), the empty table's rate.
  std::optional<double> of_bench3;
};

// Everything about the run that is not a workload's figure.
struct RunInfo {
  std::string command_line;
  std::string started_at;  // RFC 3339, UTC
  double wall_seconds = 0;
  std::string start_path;  // how runs were started
  std::string kagzid;
  std::string kagzid_version;
  std::string plugin;
  std::string bench_build_type;
  int concurrency = 0;
  int clients = 0;
  int daemons = 0;
  std::vector<std::string> kagzid_args;
  std::string server;  // URL, password hidden
  bool private_server = false;
  std::vector<std::pair<std::string, std::string>> server_settings;
  std::string walinspect_problem;
  int transactions_per_connection = 0;
  std::int64_t clock_offset_us = 0;
  std::int64_t clock_rtt_us = 0;
  int cpus = 0;
  std::string cpu_model;
  unsigned seed = 0;
  bool quick = false;
  int rounds = 1;  // passes over the workloads (--rounds)
};

// Sets steps_of_ceiling on every result with steps per second, against
// the last ceiling measured before it in `results` (or, if none was, the
// first measured after it), and of_bench3 on every backlog, against the
// bench3 found the same way.
void RelateResults(std::vector<WorkloadResult>& results);

// One figure of one workload across the rounds of a kagzi-bench run: its
// median, lowest and highest value over the results that measured it. For
// a figure the issue that asked for kagzi-bench set a target on
// (docs/benchmarks.md, "Rounds"; e.g. bench3's steps_of_ceiling above 1,
// idle-latency's p50 at most 4 ms), `target` says it ("> 1", "<= 4") and
// `met` counts the results that reach it.
struct RoundFigure {
  std::string workload;
  std::string figure;  // the JSON key of the figure, as in each workload
  int count = 0;
  double median = 0;
  double min = 0;
  double max = 0;
  std::string target;  // empty: none
  std::optional<int> met;
};
// The figures of every workload that was measured more than once, in the
// order the workloads first appear; empty if none was.
std::vector<RoundFigure> SummarizeRounds(const std::vector<WorkloadResult>& results);

// The table and the details, as printed on stdout.
std::string FormatTable(const RunInfo& info, const std::vector<WorkloadResult>& results);
Status WriteJson(const std::string& path, const RunInfo& info,
                 const std::vector<WorkloadResult>& results);

}  // namespace kagzi::bench
