// The workloads of kagzi-bench, each run on a fresh database of its own.
//
//   bench0        W runs of a workflow with no steps (default W = 10,000)
//   bench3        W runs of three sequential steps (default W = 10,000)
//   ceiling       no runs and no kagzid: single-row INSERT transactions from
//                 32 connections for 15 s (ceiling.h), what an engine that
//                 commits once per step cannot pass; the throughput
//                 workloads' steps/s are reported against it
//   sleep         W runs of step, durable 1 s sleep, step (default W = 500)
//   idle-latency  W sequential bench3 runs after 2 warm-ups, each after a
//                 random 1.5-2.5 s idle gap (default W = 20)
//   backlog       bench3 W = 10,000 with 1,000,000 runs parked a year ahead,
//                 plus the claim statement's plans (auto_explain)
//   idle          the daemon with nothing to do for 30 s (counted after 11 s
//                 of settling after its start)
//
// A workload: create the database; start and stop one kagzid on it (it
// migrates the schema and registers the workflows, so the measured window
// holds neither); CHECKPOINT; read the server's counters with no session
// connected; start the kagzid processes and wait for READY=1; start the
// runs from `clients` threads through PgStore::StartRun (kagzi_core, the
// client library kagzictl start uses), or with --start-mode batch through
// PgStore::StartRuns; poll the database until every run
// is finished or the timeout passes; stop kagzid (SIGTERM); read the
// counters again once every session is gone; compute the figures from the
// database (created_at, finished_at, the journal); drop the database.
// docs/benchmarks.md describes every figure.
//
// Thread safety: a WorkloadRunner is used by one thread; it starts and
// joins its own client threads.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "bench_server.h"
#include "report.h"

namespace kagzi::bench {

// How the client starts runs: PgStore::StartRun, one run per call and
// commit, or PgStore::StartRuns, a batch per call and commit.
enum class StartMode { kPerStart, kBatch };

struct BenchSettings {
  std::string kagzid;      // the binary
  std::string plugin_dir;  // a directory holding bench.so only
  std::string work_dir;    // kagzid logs and notify sockets
  int concurrency = 64;    // kagzid --concurrency
  int clients = 64;        // client threads, i.e. start calls outstanding at most
  int daemons = 1;         // kagzid processes (supervisors)
  StartMode start_mode = StartMode::kPerStart;  // throughput workloads only
  int batch_size = 100;                         // runs per StartRuns call
  std::vector<std::string> kagzid_args;
  std::chrono::seconds timeout{600};  // per workload, for the runs to finish
  std::int64_t backlog_rows = 1'000'000;
  std::chrono::seconds idle_duration{30};
  // ceiling: its connections, the threads driving them, and how long.
  int ceiling_clients = 32;
  int ceiling_threads = 2;
  std::chrono::milliseconds ceiling_duration{15'000};
  // idle-latency: the idle gap before each run, and the warm-up runs.
  std::chrono::milliseconds gap_min{1500};
  std::chrono::milliseconds gap_max{2500};
  int warmups = 2;
  // backlog: bench3 runs started with auto_explain on, for the claim plans.
  int plan_capture_runs = 200;
  unsigned seed = 1;
  ClockOffset clock;
};

// Workload names in the order --workload all runs them.
const std::vector<std::string>& WorkloadNames();
// The default W of a workload (quick: the --quick one).
int DefaultRuns(const std::string& workload, bool quick);

class WorkloadRunner {
 public:
  // `interrupted` (set by SIGINT/SIGTERM) ends a workload early; it is
  // still cleaned up.
  WorkloadRunner(BenchServer& server, BenchSettings settings, const std::atomic<bool>& interrupted);

  // Runs one workload with `runs` runs (ignored by idle). Never fails: what
  // went wrong is in the result's error.
  WorkloadResult Run(const std::string& workload, int runs);

 private:
  Status RunThroughput(const std::string& workflow, int runs, bool backlog, WorkloadResult* result);
  Status RunIdleLatency(int runs, WorkloadResult* result);
  Status RunIdle(WorkloadResult* result);
  Status RunCeiling(WorkloadResult* result);

  std::string NextDatabaseName(const std::string& workload);
  std::string LogPath(const std::string& db, const std::string& phase) const;

  BenchServer& server_;
  BenchSettings settings_;
  const std::atomic<bool>& interrupted_;
  int workloads_run_ = 0;
};

}  // namespace kagzi::bench
