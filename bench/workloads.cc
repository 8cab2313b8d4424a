// The workloads (see workloads.h and docs/benchmarks.md).
#include "workloads.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>

#include "ceiling.h"
#include "kagzi/core/store.h"
#include "kagzid_process.h"

namespace kagzi::bench {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

constexpr char kClientApp[] = "kagzi-bench-client";
constexpr char kMonitorApp[] = "kagzi-bench-monitor";
constexpr milliseconds kReadyTimeout{60'000};
// kagzid's drain_timeout (30 s by default) plus the supervisor's own margin.
constexpr milliseconds kStopTimeout{60'000};
constexpr milliseconds kPollInterval{250};
constexpr milliseconds kSessionTimeout{30'000};
constexpr milliseconds kIdleSettle{11'000};
// The workflow of the parked runs of the backlog: a sleeping run is a
// bench_sleep run, and being another workflow than bench3 keeps them out
// of the figures.
constexpr char kParkedWorkflow[] = "bench_sleep";

// The bench's own statements on a workload's database.
const Statement kCountFinished = {
    "bench_count_finished",
    // Through kagzi_runs_status_created, so that a backlog of parked runs
    // costs the poll nothing.
    "SELECT count(*) FILTER (WHERE status = 'COMPLETED'), count(*) FILTER (WHERE status <> "
    "'COMPLETED') FROM kagzi_runs WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND "
    "workflow = $1"};
const Statement kClientConnections = {
    "bench_client_connections",
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
    "application_name = $1"};
const Statement kInsertParked = {
    "bench_insert_parked",
    // Parked as a claimed-then-slept run is: SLEEPING, pinned to version 1,
    // claimed once, no lease, due a year from now.
    "INSERT INTO kagzi_runs (id, workflow, version, status, input, available_at, attempts,"
    " lease_epoch, started_at) SELECT kagzi_new_run_id(), $1, 1, 'SLEEPING', '{\"i\":-1}',"
    " now() + interval '365 days', 1, 1, now() FROM generate_series(1, $2::bigint)"};
const Statement kReadRuns = {
    "bench_read_runs",
    "SELECT id::text, status, kagzi_us(created_at), kagzi_us(finished_at) FROM kagzi_runs "
    "WHERE workflow = $1"};
const Statement kReadPhases = {
    "bench_read_phases",
    // When the transactions that claimed each run and recorded its first
    // and last steps began (their now(), as started_at and finished_at are
    // set).
    "SELECT r.id::text, kagzi_us(r.started_at), kagzi_us(min(s.finished_at)),"
    " kagzi_us(max(s.finished_at)) FROM kagzi_runs r JOIN kagzi_steps s ON s.run_id = r.id"
    " WHERE r.workflow = $1 AND r.status = 'COMPLETED' AND s.kind = 'step' GROUP BY r.id"};
const Statement kCountSteps = {
    "bench_count_steps",
    "SELECT count(*) FROM kagzi_steps s JOIN kagzi_runs r ON r.id = s.run_id WHERE r.workflow = "
    "$1 AND r.status = 'COMPLETED' AND s.kind = 'step' AND s.status = 'COMPLETED'"};
const Statement kSleepLateness = {
    "bench_sleep_lateness",
    // When the step after the sleep started, against when the sleep was due
    // (both on the database clock), in ms.
    "SELECT extract(epoch FROM b.started_at - a.wake_at) * 1000 FROM kagzi_steps a JOIN "
    "kagzi_steps b ON b.run_id = a.run_id AND b.seq = a.seq + 1 JOIN kagzi_runs r ON r.id = "
    "a.run_id WHERE r.workflow = $1 AND a.kind = 'sleep' AND r.status = 'COMPLETED' AND "
    "a.wake_at IS NOT NULL AND b.started_at IS NOT NULL"};
const Statement kTableScans = {
    "bench_table_scans",
    "SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0) FROM pg_stat_user_tables "
    "WHERE relname IN ('kagzi_runs', 'kagzi_steps') ORDER BY relname"};
const Statement kFailedRun = {
    "bench_failed_run",
    "SELECT status || ': ' || coalesce(error, '') FROM kagzi_runs WHERE workflow = $1 AND "
    "status IN ('FAILED', 'CANCELLED') LIMIT 1"};

std::int64_t RealtimeMicros() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

double LoadAverage() {
  std::ifstream in("/proc/loadavg");
  double one = 0;
  in >> one;
  return one;
}

double SecondsSince(steady_clock::time_point t) {
  return std::chrono::duration<double>(steady_clock::now() - t).count();
}

// Sleeps, waking early when interrupted; false if interrupted.
bool InterruptibleSleep(milliseconds d, const std::atomic<bool>& interrupted) {
  const auto until = steady_clock::now() + d;
  while (steady_clock::now() < until) {
    if (interrupted.load()) return false;
    std::this_thread::sleep_for(
        std::min<steady_clock::duration>(milliseconds(50), until - steady_clock::now()));
  }
  return !interrupted.load();
}

// The kagzid processes of one phase of a workload, all on one database.
class DaemonSet {
 public:
  DaemonSet(const BenchSettings& settings, std::string conninfo, std::string log_prefix)
      : settings_(settings), conninfo_(std::move(conninfo)), log_prefix_(std::move(log_prefix)) {}

  Status Start(int count, const std::atomic<bool>& interrupted) {
    for (int i = 0; i < count; ++i) {
      KagzidOptions o;
      o.binary = settings_.kagzid;
      o.conninfo = conninfo_;
      o.plugin_dir = settings_.plugin_dir;
      o.concurrency = settings_.concurrency;
      o.extra_args = settings_.kagzid_args;
      o.log_path = fmt::format("{}-{}.log", log_prefix_, i + 1);
      o.notify_socket_path = fmt::format("{}/notify-{}.sock", settings_.work_dir, i + 1);
      processes_.push_back(std::make_unique<KagzidProcess>(std::move(o)));
      KAGZI_RETURN_IF_ERROR(processes_.back()->Start());
    }
    for (auto& p : processes_) KAGZI_RETURN_IF_ERROR(p->WaitReady(kReadyTimeout, interrupted));
    return Status::Ok();
  }

  Status CheckAlive() {
    for (auto& p : processes_) KAGZI_RETURN_IF_ERROR(p->CheckAlive());
    return Status::Ok();
  }

  std::optional<double> CpuSecondsSoFar() const {
    double sum = 0;
    for (const auto& p : processes_) {
      auto cpu = p->CpuSecondsSoFar();
      if (!cpu) return std::nullopt;
      sum += *cpu;
    }
    return sum;
  }

  std::optional<std::int64_t> PssKiB() const {
    std::int64_t sum = 0;
    for (const auto& p : processes_) {
      auto kib = p->PssKiB();
      if (!kib) return std::nullopt;
      sum += *kib;
    }
    return sum;
  }

  std::vector<std::int64_t> PeakRssKiB() const {
    std::vector<std::int64_t> all;
    for (const auto& p : processes_) {
      auto peaks = p->PeakRssKiB();
      all.insert(all.end(), peaks.begin(), peaks.end());
    }
    return all;
  }

  // Stops every process, even when one fails. Returns the CPU seconds of
  // all (their whole lives).
  Result<double> Stop() {
    double cpu = 0;
    Status first;
    for (auto& p : processes_) {
      auto usage = p->Stop(kStopTimeout);
      if (!usage.ok()) {
        if (first.ok()) first = usage.status();
        continue;
      }
      cpu += usage->cpu_seconds;
      if (usage->exit_code != 0 && first.ok()) {
        first = Status::Unavailable("kagzid (pid {}) exited with status {} after SIGTERM; see {}",
                                    p->pid(), usage->exit_code, p->log_path());
      }
    }
    processes_.clear();
    if (!first.ok()) return first;
    return cpu;
  }

 private:
  const BenchSettings& settings_;
  std::string conninfo_;
  std::string log_prefix_;
  std::vector<std::unique_ptr<KagzidProcess>> processes_;
};

// A connection to the workload's database that counts its own transactions
// (each statement is one, and so is the preparing of each statement;
// opening the connection costs BenchServer::transactions_per_connection()),
// so that they can be taken out of the daemon's figures.
class CountedConnection {
 public:
  static Result<std::unique_ptr<CountedConnection>> Open(const std::string& conninfo,
                                                         std::string_view app) {
    auto conn = PgConnection::Connect(conninfo, app);
    if (!conn.ok()) return conn.status();
    std::unique_ptr<CountedConnection> counted(new CountedConnection(std::move(*conn)));
    // The table scans reported are the daemon's: the bench's polls must
    // not add sequential ones. Once autovacuum has analyzed a table of
    // finished runs, PostgreSQL counts them by reading the whole table
    // (bench3: three scans of 10,000 rows in one window).
    auto set = counted->conn_->Exec("SET enable_seqscan = off");
    if (!set.ok()) return set.status().WithContext("SET enable_seqscan = off");
    ++counted->transactions_;
    return counted;
  }
  Result<PgResult> ExecPrepared(const Statement& stmt, std::initializer_list<PgParam> params) {
    if (prepared_.insert(stmt.name).second) ++transactions_;
    ++transactions_;
    return conn_->ExecPrepared(stmt, params);
  }
  int transactions() const { return transactions_; }

 private:
  explicit CountedConnection(std::unique_ptr<PgConnection> conn) : conn_(std::move(conn)) {}
  std::unique_ptr<PgConnection> conn_;
  std::set<std::string> prepared_;
  int transactions_ = 0;
};

struct StartedRun {
  std::string id;
  std::int64_t start_us = 0;  // local CLOCK_REALTIME just before the start call
};

// Starts `count` runs from `clients` threads in the background, each
// calling PgStore::StartRun in turn, or (StartMode::kBatch) PgStore::StartRuns
// with `batch_size` runs at a time.
class RunStarter {
 public:
  RunStarter(const std::string& conninfo, std::string workflow, int count, int clients,
             StartMode mode, int batch_size)
      : store_(PgStoreOptions{conninfo, kClientApp, clients}),
        workflow_(std::move(workflow)),
        runs_(static_cast<std::size_t>(count)),
        clients_(clients),
        mode_(mode),
        batch_size_(static_cast<std::size_t>(std::max(1, batch_size))) {
    threads_.reserve(static_cast<std::size_t>(clients));
    started_at_ = steady_clock::now();
    for (int t = 0; t < clients; ++t) threads_.emplace_back([this] { Work(); });
  }
  ~RunStarter() { Join(); }

  void Join() {
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  bool done() const { return finished_threads_.load() == clients_; }
  void Cancel() { cancelled_.store(true); }
  // After Join(): the runs started (a failed start leaves an empty id).
  const std::vector<StartedRun>& runs() const { return runs_; }
  int started() const { return started_.load(); }
  // After Join(): from the first start call to the return of the last.
  double seconds() const { return seconds_; }
  Status status() {
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
  }

 private:
  StartRequest Request(std::size_t i) const {
    StartRequest request;
    request.workflow = workflow_;
    request.input = fmt::format(R"({{"i":{}}})", i);
    return request;
  }

  void Fail(const Status& status, std::size_t i) {
    std::lock_guard<std::mutex> lock(mu_);
    if (error_.ok()) error_ = status.WithContext(fmt::format("starting run {}", i));
    cancelled_.store(true);
  }

  void Work() {
    const std::size_t step = mode_ == StartMode::kBatch ? batch_size_ : 1;
    while (!cancelled_.load()) {
      const std::size_t first = next_.fetch_add(step);
      if (first >= runs_.size()) break;
      const std::size_t end = std::min(runs_.size(), first + step);
      if (mode_ == StartMode::kPerStart) {
        const std::int64_t t0 = RealtimeMicros();
        auto r = store_.StartRun(Request(first));
        if (!r.ok()) {
          Fail(r.status(), first);
          break;
        }
        runs_[first] = StartedRun{std::move(r->run_id), t0};
        started_.fetch_add(1);
        continue;
      }
      std::vector<StartRequest> requests;
      for (std::size_t i = first; i < end; ++i) requests.push_back(Request(i));
      const std::int64_t t0 = RealtimeMicros();
      auto r = store_.StartRuns(requests);
      if (!r.ok()) {
        Fail(r.status(), first);
        break;
      }
      for (std::size_t i = first; i < end; ++i) {
        auto& one = (*r)[i - first];
        if (!one.ok()) {
          Fail(one.status(), i);
          continue;
        }
        runs_[i] = StartedRun{std::move(one->run_id), t0};
        started_.fetch_add(1);
      }
    }
    if (finished_threads_.fetch_add(1) + 1 == clients_) seconds_ = SecondsSince(started_at_);
  }

  PgStore store_;
  std::string workflow_;
  std::vector<StartedRun> runs_;
  const int clients_;
  const StartMode mode_;
  const std::size_t batch_size_;
  std::vector<std::thread> threads_;
  std::atomic<std::size_t> next_{0};
  std::atomic<int> started_{0};
  std::atomic<int> finished_threads_{0};
  std::atomic<bool> cancelled_{false};
  steady_clock::time_point started_at_;
  double seconds_ = 0;
  std::mutex mu_;
  Status error_;
};

struct FinishCounts {
  int completed = 0;
  int failed = 0;  // FAILED or CANCELLED
};

// Opens a measured window on `db`: a checkpoint (every workload starts
// from the same full-page-write state), no session left on the database,
// the counters read, then the daemons started. Returns the counters from
// before the daemons.
Result<ServerCounters> OpenWindow(BenchServer& server, const BenchSettings& settings,
                                  const std::atomic<bool>& interrupted, const std::string& db,
                                  DaemonSet& daemons, WorkloadResult* result) {
  if (Status s = server.Checkpoint(); !s.ok()) result->notes.push_back(s.message());
  KAGZI_RETURN_IF_ERROR(server.WaitForNoSessions(db, kSessionTimeout));
  auto before = server.ReadCounters(db);
  if (!before.ok()) return before.status();
  if (Status s = daemons.Start(settings.daemons, interrupted); !s.ok()) {
    (void)daemons.Stop();
    return s;
  }
  return before;
}

Result<FinishCounts> CountFinished(CountedConnection& conn, const std::string& workflow) {
  auto r = conn.ExecPrepared(kCountFinished, {workflow});
  if (!r.ok()) return r.status().WithContext("counting finished runs");
  return FinishCounts{static_cast<int>(r->GetInt(0, 0)), static_cast<int>(r->GetInt(0, 1))};
}

// Client connections kagzi-bench holds to the database (they are not the
// daemon's).
Result<int> ClientConnections(CountedConnection& conn) {
  auto r = conn.ExecPrepared(kClientConnections, {kClientApp});
  if (!r.ok()) return r.status().WithContext("counting the client connections");
  return static_cast<int>(r->GetInt(0, 0));
}

// Fills the per-workflow figures from the counter delta.
void ApplyDelta(const CounterDelta& d, std::int64_t own, int runs, WorkloadResult* result) {
  result->xact_commit = d.xact_commit;
  result->xact_rollback = d.xact_rollback;
  result->own_transactions = own;
  result->commit_records = d.commit_records;
  result->empty_commit_records = d.empty_commit_records;
  result->wal_bytes = d.wal_bytes;
  result->wal_syncs = d.wal_syncs;
  result->pg_cpu_seconds = d.cpu_seconds;
  if (!d.commit_records_problem.empty()) {
    result->notes.push_back("write commits not counted: " + d.commit_records_problem);
  }
  if (runs <= 0) return;
  const double n = runs;
  result->transactions_per_workflow =
      static_cast<double>(d.xact_commit + d.xact_rollback - own) / n;
  if (d.commit_records)
    result->write_commits_per_workflow = static_cast<double>(*d.commit_records) / n;
  if (d.empty_commit_records)
    result->empty_commits_per_workflow = static_cast<double>(*d.empty_commit_records) / n;
  result->wal_bytes_per_workflow = static_cast<double>(d.wal_bytes) / n;
  result->fsyncs_per_workflow = static_cast<double>(d.wal_syncs) / n;
}

// Plans of the claim statement: how many, how many scan kagzi_runs whole
// or through an index, and the last.
struct ClaimPlans {
  int count = 0;
  int with_seq_scan = 0;
  int with_index = 0;
  std::string last;
  bool last_claimed = false;
};

// Adds one plan, given as its nodes (one per line, the top node first).
void AddClaimPlan(const std::vector<std::string>& nodes, ClaimPlans* plans) {
  if (nodes.empty()) return;
  std::string plan;
  bool seq = false, index = false;
  for (const std::string& node : nodes) {
    if (node.find("Seq Scan on kagzi_runs") != std::string::npos) seq = true;
    if (node.find("Index") != std::string::npos && node.find("kagzi_runs") != std::string::npos) {
      index = true;
    }
    plan += node + "\n";
  }
  ++plans->count;
  if (seq) ++plans->with_seq_scan;
  if (index) ++plans->with_index;
  while (!plan.empty() && plan.back() == '\n') plan.pop_back();
  // Keep the last plan that claimed something (its top node returned
  // rows), else the last one: most claims of an idle daemon find nothing.
  const bool claimed = nodes[0].find("actual rows=0 ") == std::string::npos;
  if (claimed || !plans->last_claimed) {
    plans->last = plan;
    plans->last_claimed = claimed;
  }
}

// The auto_explain entries of a PostgreSQL log (text format, one entry per
// line that does not start with a tab) whose statement is the claim.
ClaimPlans ParseClaimPlans(const std::string& log) {
  ClaimPlans plans;
  std::istringstream in(log);
  std::string line;
  std::vector<std::string> entry;
  auto finish = [&] {
    // An entry of auto_explain: "... LOG:  duration: 0.123 ms  plan:", then
    // "\tQuery Text: <sql>", then the plan, one node per tab-indented line.
    if (entry.size() < 3 || entry[0].find("plan:") == std::string::npos) return;
    const std::string& text = entry[1];
    if (text.find("Query Text:") == std::string::npos ||
        text.find("SKIP LOCKED") == std::string::npos ||
        text.find("UPDATE kagzi_runs") == std::string::npos) {
      return;
    }
    std::vector<std::string> nodes;
    for (std::size_t i = 2; i < entry.size(); ++i) nodes.push_back(entry[i].substr(1));
    AddClaimPlan(nodes, &plans);
  };
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] == '\t') {
      if (!entry.empty()) entry.push_back(line);
      continue;
    }
    finish();
    entry.clear();
    entry.push_back(line);
  }
  finish();
  return plans;
}

// Fills in the claim-plan figures from `plans`, taken from `source`; no
// plan is a problem (`missing` says what was looked for), not a verdict.
void SetClaimPlans(const ClaimPlans& plans, const std::string& source, const std::string& missing,
                   BacklogFigures* figures) {
  figures->claim_plan_source = source;
  figures->claim_plans = plans.count;
  figures->claim_plans_with_seq_scan = plans.with_seq_scan;
  figures->claim_plan = plans.last;
  if (plans.count == 0) {
    figures->claim_plan_problem = missing;
  } else {
    figures->claim_uses_index = plans.with_seq_scan == 0 && plans.with_index == plans.count;
  }
}

// A server given by URL: its log is not ours to read, so the claim's plan
// is not taken from auto_explain but asked for, after the window, on the
// same table (the parked runs are still there): EXPLAIN (ANALYZE) EXECUTE
// of the claim's generic plan, made as the daemon makes it
// (PgStore::ExplainClaim; the claim runs and is rolled back).
void ExplainClaimAfterWindow(const std::string& conninfo, const std::string& workflow,
                             BacklogFigures* figures) {
  figures->claim_plan_source = "EXPLAIN ANALYZE EXECUTE after the window";
  PgStore store(PgStoreOptions{conninfo, kMonitorApp, 1});
  ClaimRequest request;
  request.owner = "00000000-0000-0000-0000-000000000000";  // nothing is claimed for it
  request.loaded = {{workflow, 1}};                        // bench.so's workflows are all version 1
  request.limit = 8;
  auto plan = store.ExplainClaim(request, /*analyze=*/true);
  if (!plan.ok()) {
    figures->claim_plan_problem = "EXPLAIN of the claim: " + plan.status().message();
    return;
  }
  std::vector<std::string> nodes;
  std::istringstream lines(*plan);
  for (std::string line; std::getline(lines, line);) nodes.push_back(line);
  ClaimPlans plans;
  AddClaimPlan(nodes, &plans);
  SetClaimPlans(plans, figures->claim_plan_source, "EXPLAIN of the claim printed no plan", figures);
}

// pg_stat_user_tables of the two tables the daemon works on.
Result<std::vector<TableScans>> ReadTableScans(PgConnection& conn) {
  auto r = conn.ExecPrepared(kTableScans, {});
  if (!r.ok()) return r.status().WithContext("reading pg_stat_user_tables");
  std::vector<TableScans> scans;
  scans.reserve(static_cast<std::size_t>(r->rows()));
  for (int i = 0; i < r->rows(); ++i) {
    scans.push_back(
        TableScans{r->GetString(i, 0), r->GetInt(i, 1), r->GetInt(i, 2), r->GetInt(i, 3)});
  }
  return scans;
}

// The runs of `workflow` as the database has them.
struct RunRow {
  std::string status;
  std::int64_t created_us = 0;
  std::optional<std::int64_t> finished_us;
};

Result<std::unordered_map<std::string, RunRow>> ReadRuns(PgConnection& conn,
                                                         const std::string& workflow) {
  auto r = conn.ExecPrepared(kReadRuns, {workflow});
  if (!r.ok()) return r.status().WithContext("reading the runs");
  std::unordered_map<std::string, RunRow> runs;
  runs.reserve(static_cast<std::size_t>(r->rows()));
  for (int i = 0; i < r->rows(); ++i) {
    runs[r->GetString(i, 0)] = RunRow{r->GetString(i, 1), r->GetInt(i, 2), r->GetOptionalInt(i, 3)};
  }
  return runs;
}

}  // namespace

const std::vector<std::string>& WorkloadNames() {
  static const std::vector<std::string> kNames = {"bench0",       "ceiling", "bench3", "sleep",
                                                  "idle-latency", "backlog", "idle"};
  return kNames;
}

int DefaultRuns(const std::string& workload, bool quick) {
  if (workload == "sleep") return quick ? 50 : 500;
  if (workload == "idle-latency") return quick ? 5 : 20;
  if (workload == "idle" || workload == "ceiling") return 0;
  return quick ? 200 : 10'000;  // bench0, bench3, backlog
}

WorkloadRunner::WorkloadRunner(BenchServer& server, BenchSettings settings,
                               const std::atomic<bool>& interrupted)
    : server_(server), settings_(std::move(settings)), interrupted_(interrupted) {}

std::string WorkloadRunner::NextDatabaseName(const std::string& workload) {
  std::string suffix = workload;
  std::replace(suffix.begin(), suffix.end(), '-', '_');
  return fmt::format("kagzi_bench_{}_{}_{}", getpid(), ++workloads_run_, suffix);
}

std::string WorkloadRunner::LogPath(const std::string& db, const std::string& phase) const {
  return fmt::format("{}/{}-{}", settings_.work_dir, db, phase);
}

WorkloadResult WorkloadRunner::Run(const std::string& workload, int runs) {
  WorkloadResult result;
  result.name = workload;
  result.loadavg.first = LoadAverage();
  const auto started = steady_clock::now();
  fmt::print(stderr, "kagzi-bench: {}: starting\n", workload);
  Status status;
  if (workload == "bench0") {
    status = RunThroughput("bench0", runs, false, &result);
  } else if (workload == "bench3") {
    status = RunThroughput("bench3", runs, false, &result);
  } else if (workload == "sleep") {
    status = RunThroughput("bench_sleep", runs, false, &result);
  } else if (workload == "backlog") {
    status = RunThroughput("bench3", runs, true, &result);
  } else if (workload == "idle-latency") {
    status = RunIdleLatency(runs, &result);
  } else if (workload == "idle") {
    status = RunIdle(&result);
  } else if (workload == "ceiling") {
    status = RunCeiling(&result);
  } else {
    status = Status::InvalidArgument("unknown workload \"{}\"", workload);
  }
  if (!status.ok()) result.error = status.message();
  if (!result.database.empty()) {
    if (Status dropped = server_.DropDatabase(result.database); !dropped.ok()) {
      result.notes.push_back(dropped.message());
    }
  }
  result.wall_seconds = SecondsSince(started);
  result.loadavg.second = LoadAverage();
  fmt::print(stderr, "kagzi-bench: {}: {} in {:.1f} s\n", workload,
             result.error.empty() ? "done" : "FAILED: " + result.error, result.wall_seconds);
  return result;
}

// Creates the database, lets one kagzid migrate it and register the
// workflows, and returns its conninfo.
static Result<std::string> PrepareDatabase(BenchServer& server, const BenchSettings& settings,
                                           const std::string& db, const std::string& log_prefix,
                                           const std::atomic<bool>& interrupted) {
  KAGZI_RETURN_IF_ERROR(server.CreateDatabase(db));
  std::string conninfo = server.Conninfo(db);
  DaemonSet migrate(settings, conninfo, log_prefix);
  Status started = migrate.Start(1, interrupted);
  auto stopped = migrate.Stop();
  if (!started.ok()) return started.WithContext("migrating the database with kagzid");
  if (!stopped.ok()) return stopped.status().WithContext("migrating the database with kagzid");
  return conninfo;
}

Status WorkloadRunner::RunThroughput(const std::string& workflow, int runs, bool backlog,
                                     WorkloadResult* result) {
  result->workflow = workflow;
  result->database = NextDatabaseName(result->name);
  const std::string& db = result->database;
  auto prepared = PrepareDatabase(server_, settings_, db, LogPath(db, "migrate"), interrupted_);
  if (!prepared.ok()) return prepared.status();
  const std::string conninfo = *prepared;

  if (backlog) {
    BacklogFigures figures;
    figures.parked_runs = settings_.backlog_rows;
    fmt::print(stderr, "kagzi-bench: backlog: inserting {} parked runs\n", settings_.backlog_rows);
    auto conn = PgConnection::Connect(conninfo, kMonitorApp);
    if (!conn.ok()) return conn.status();
    const auto t = steady_clock::now();
    auto inserted = (*conn)->ExecPrepared(kInsertParked, {kParkedWorkflow, settings_.backlog_rows});
    if (!inserted.ok()) return inserted.status().WithContext("inserting the parked runs");
    // What autovacuum would have done by the time a real table held them.
    auto analyzed = (*conn)->Exec("VACUUM (ANALYZE) kagzi_runs");
    if (!analyzed.ok()) return analyzed.status().WithContext("VACUUM ANALYZE kagzi_runs");
    figures.insert_seconds = SecondsSince(t);
    result->backlog = figures;
  }

  // Table scans so far (the migration, the backlog's insert), read before
  // the window opens.
  std::vector<TableScans> scans_before;
  {
    auto conn = PgConnection::Connect(conninfo, kMonitorApp);
    if (!conn.ok()) return conn.status();
    auto scans = ReadTableScans(**conn);
    if (!scans.ok()) return scans.status();
    scans_before = *scans;
  }
  DaemonSet daemons(settings_, conninfo, LogPath(db, "kagzid"));
  auto before = OpenWindow(server_, settings_, interrupted_, db, daemons, result);
  if (!before.ok()) return before.status();
  auto monitor = CountedConnection::Open(conninfo, kMonitorApp);
  if (!monitor.ok()) {
    (void)daemons.Stop();
    return monitor.status();
  }
  fmt::print(stderr, "kagzi-bench: {}: starting {} {} runs from {} client threads\n", result->name,
             runs, workflow, settings_.clients);
  auto starter = std::make_unique<RunStarter>(conninfo, workflow, runs, settings_.clients,
                                              settings_.start_mode, settings_.batch_size);

  // Poll until every started run is finished.
  Status failure;
  const auto deadline = steady_clock::now() + settings_.timeout;
  FinishCounts counts;
  auto last_report = steady_clock::now();
  while (true) {
    if (interrupted_.load()) {
      failure = Status::Unavailable("interrupted");
      break;
    }
    if (Status s = daemons.CheckAlive(); !s.ok()) {
      failure = s;
      break;
    }
    const bool all_started = starter->done();
    if (all_started && !starter->status().ok()) {
      failure = starter->status();
      break;
    }
    auto c = CountFinished(**monitor, workflow);
    if (!c.ok()) {
      failure = c.status();
      break;
    }
    counts = *c;
    if (all_started && counts.completed + counts.failed >= starter->started()) break;
    if (steady_clock::now() > deadline) {
      result->timed_out = true;
      break;
    }
    if (steady_clock::now() - last_report > seconds(10)) {
      last_report = steady_clock::now();
      fmt::print(stderr, "kagzi-bench: {}: {} of {} runs finished\n", result->name,
                 counts.completed + counts.failed, runs);
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  starter->Cancel();
  starter->Join();
  result->runs = starter->started();
  result->completed = counts.completed;
  result->failed = counts.failed;
  if (starter->seconds() > 0) result->starts_per_second = starter->started() / starter->seconds();
  const std::vector<StartedRun> started = starter->runs();

  // The window ends: memory peaks while the daemons still run, then stop.
  result->kagzid_peak_rss_kib = daemons.PeakRssKiB();
  result->kagzid_pss_kib = daemons.PssKiB();
  auto cpu = daemons.Stop();
  if (cpu.ok()) {
    result->kagzid_cpu_seconds = *cpu;
  } else if (failure.ok()) {
    failure = cpu.status();
  }
  auto clients = ClientConnections(**monitor);
  starter.reset();
  const int own_queries = (*monitor)->transactions();
  monitor->reset();
  if (!clients.ok()) return clients.status();
  KAGZI_RETURN_IF_ERROR(server_.WaitForNoSessions(db, kSessionTimeout));
  auto after = server_.ReadCounters(db);
  if (!after.ok()) return after.status();
  auto delta = server_.Delta(*before, *after);
  if (!delta.ok()) return delta.status();
  // The bench's own transactions: the monitor's queries and connection, and
  // each client connection's start and its preparing of the start's three
  // statements (the notification mode, the insert, the notification; one
  // transaction each).
  constexpr std::int64_t kStartStatements = 3;
  const std::int64_t own = own_queries + server_.transactions_per_connection() +
                           static_cast<std::int64_t>(*clients) *
                               (server_.transactions_per_connection() + kStartStatements);
  ApplyDelta(*delta, own, result->runs, result);
  if (!failure.ok()) return failure;

  // Figures from the database.
  auto conn = PgConnection::Connect(conninfo, kMonitorApp);
  if (!conn.ok()) return conn.status();
  // Published when the daemon's backends exited: exact for the window, but
  // for the bench's own few (its polls use an index).
  auto scans_after = ReadTableScans(**conn);
  if (!scans_after.ok()) return scans_after.status();
  for (TableScans t : *scans_after) {
    for (const auto& b : scans_before) {
      if (b.table != t.table) continue;
      t.seq_scans -= b.seq_scans;
      t.seq_rows_read -= b.seq_rows_read;
      t.index_scans -= b.index_scans;
    }
    result->table_scans.push_back(t);
  }
  auto rows = ReadRuns(**conn, workflow);
  if (!rows.ok()) return rows.status();
  std::optional<std::int64_t> first_created, last_finished;
  std::vector<double> latency;
  for (const auto& s : started) {
    if (s.id.empty()) continue;
    auto it = rows->find(s.id);
    if (it == rows->end()) continue;
    const RunRow& row = it->second;
    first_created = std::min(first_created.value_or(row.created_us), row.created_us);
    if (row.status != "COMPLETED" || !row.finished_us) continue;
    last_finished = std::max(last_finished.value_or(*row.finished_us), *row.finished_us);
    latency.push_back(
        static_cast<double>(*row.finished_us - (s.start_us + settings_.clock.offset_us)) / 1000.0);
  }
  result->latency_ms = ComputePercentiles(latency);
  if (first_created && last_finished && *last_finished > *first_created) {
    const double span = static_cast<double>(*last_finished - *first_created) / 1e6;
    result->span_seconds = span;
    result->workflows_per_second = result->completed / span;
    auto steps = (*conn)->ExecPrepared(kCountSteps, {workflow});
    if (!steps.ok()) return steps.status().WithContext("counting the steps");
    const auto n = static_cast<double>(steps->GetInt(0, 0));
    result->steps_per_second = n / span;
    if (result->completed > 0) result->steps_per_workflow = n / result->completed;
  }
  if (workflow == "bench_sleep") {
    auto late = (*conn)->ExecPrepared(kSleepLateness, {workflow});
    if (!late.ok()) return late.status().WithContext("reading the sleep lateness");
    std::vector<double> lateness;
    lateness.reserve(static_cast<std::size_t>(late->rows()));
    for (int i = 0; i < late->rows(); ++i) lateness.push_back(std::stod(late->GetString(i, 0)));
    result->wake_lateness_ms = ComputePercentiles(lateness);
  }
  if (result->failed > 0) {
    auto why = (*conn)->ExecPrepared(kFailedRun, {workflow});
    if (why.ok() && why->rows() > 0) {
      result->notes.push_back("a failed run: " + why->GetString(0, 0));
    }
  }
  conn->reset();

  if (backlog) {
    // The daemon's own claim statement, as auto_explain logs it with its
    // real parameters, on the table that still holds the parked runs.
    BacklogFigures& figures = *result->backlog;
    auto log = server_.log_path();
    if (!log) {
      ExplainClaimAfterWindow(conninfo, workflow, &figures);
      return Status::Ok();
    }
    for (const char* setting :
         {"session_preload_libraries = 'auto_explain'", "auto_explain.log_min_duration = 0",
          "auto_explain.log_analyze = on", "auto_explain.log_timing = off",
          "auto_explain.log_buffers = on"}) {
      auto r = server_.Exec(fmt::format("ALTER DATABASE {} SET {}", db, setting));
      if (!r.ok()) {
        figures.claim_plan_problem =
            "ALTER DATABASE ... SET " + std::string(setting) + ": " + r.status().message();
        return Status::Ok();
      }
    }
    std::error_code ec;
    const auto offset = std::filesystem::file_size(*log, ec);
    if (ec) {
      figures.claim_plan_problem = fmt::format("cannot read {}: {}", *log, ec.message());
      return Status::Ok();
    }
    fmt::print(stderr,
               "kagzi-bench: backlog: {} more runs with auto_explain on, for the claim plan\n",
               settings_.plan_capture_runs);
    DaemonSet explained(settings_, conninfo, LogPath(db, "explain"));
    Status s = explained.Start(1, interrupted_);
    if (s.ok()) {
      RunStarter more(conninfo, workflow, settings_.plan_capture_runs,
                      std::min(settings_.clients, settings_.plan_capture_runs),
                      StartMode::kPerStart, 1);
      more.Join();
      s = more.status();
      auto watch = CountedConnection::Open(conninfo, kMonitorApp);
      const auto until = steady_clock::now() + seconds(120);
      while (s.ok() && watch.ok() && steady_clock::now() < until && !interrupted_.load()) {
        auto c = CountFinished(**watch, workflow);
        if (!c.ok() || c->completed + c->failed >= result->runs + more.started()) break;
        std::this_thread::sleep_for(kPollInterval);
      }
    }
    (void)explained.Stop();
    (void)server_.Exec(fmt::format("ALTER DATABASE {} RESET ALL", db));
    if (!s.ok()) {
      figures.claim_plan_problem = s.message();
      return Status::Ok();
    }
    std::ifstream in(*log);
    in.seekg(static_cast<std::streamoff>(offset));
    std::stringstream text;
    text << in.rdbuf();
    SetClaimPlans(
        ParseClaimPlans(text.str()), "auto_explain",
        fmt::format(R"(no plan of a statement with "UPDATE kagzi_runs" and "SKIP LOCKED" in {})",
                    *log),
        &figures);
  }
  return Status::Ok();
}

Status WorkloadRunner::RunIdleLatency(int runs, WorkloadResult* result) {
  result->workflow = "bench3";
  result->database = NextDatabaseName(result->name);
  const std::string& db = result->database;
  auto prepared = PrepareDatabase(server_, settings_, db, LogPath(db, "migrate"), interrupted_);
  if (!prepared.ok()) return prepared.status();
  const std::string conninfo = *prepared;
  DaemonSet daemons(settings_, conninfo, LogPath(db, "kagzid"));
  auto before = OpenWindow(server_, settings_, interrupted_, db, daemons, result);
  if (!before.ok()) return before.status();
  struct Sample {
    std::string id;
    std::int64_t start_us = 0;
    std::int64_t notified_us = 0;
    bool warmup = false;
  };
  std::vector<Sample> samples;
  Status failure = [&]() -> Status {
    // LISTEN first, so that no completion can be missed.
    auto listener = PgConnection::Connect(conninfo, kMonitorApp);
    if (!listener.ok()) return listener.status();
    KAGZI_RETURN_IF_ERROR((*listener)->Listen("kagzi_run_finished"));
    PgStore store(PgStoreOptions{conninfo, kClientApp, 1});
    std::mt19937 random(settings_.seed);
    std::uniform_int_distribution<std::int64_t> gap(settings_.gap_min.count(),
                                                    settings_.gap_max.count());
    for (int k = 0; k < settings_.warmups + runs; ++k) {
      if (!InterruptibleSleep(milliseconds(gap(random)), interrupted_)) {
        return Status::Unavailable("interrupted");
      }
      KAGZI_RETURN_IF_ERROR(daemons.CheckAlive());
      KAGZI_RETURN_IF_ERROR((*listener)->ConsumeInput());
      (void)(*listener)->TakeNotifications();
      Sample sample;
      sample.warmup = k < settings_.warmups;
      StartRequest request;
      request.workflow = "bench3";
      request.input = fmt::format(R"({{"i":{}}})", k);
      sample.start_us = RealtimeMicros();
      auto started = store.StartRun(request);
      if (!started.ok()) return started.status().WithContext("starting an idle-latency run");
      sample.id = started->run_id;
      const auto until = steady_clock::now() + seconds(30);
      while (sample.notified_us == 0) {
        if (steady_clock::now() > until) {
          return Status::Unavailable("run {} was not finished 30 s after its start", sample.id);
        }
        auto got = (*listener)->WaitForNotifications(milliseconds(100));
        if (!got.ok()) return got.status().WithContext("waiting for kagzi_run_finished");
        for (const auto& n : *got) {
          if (n.payload == sample.id) sample.notified_us = RealtimeMicros();
        }
      }
      samples.push_back(std::move(sample));
    }
    return Status::Ok();
  }();
  result->runs = runs;
  result->kagzid_peak_rss_kib = daemons.PeakRssKiB();
  result->kagzid_pss_kib = daemons.PssKiB();
  auto cpu = daemons.Stop();
  if (cpu.ok()) {
    result->kagzid_cpu_seconds = *cpu;
  } else if (failure.ok()) {
    failure = cpu.status();
  }
  KAGZI_RETURN_IF_ERROR(server_.WaitForNoSessions(db, kSessionTimeout));
  auto after = server_.ReadCounters(db);
  if (!after.ok()) return after.status();
  auto delta = server_.Delta(*before, *after);
  if (!delta.ok()) return delta.status();
  // Per workflow figures would mostly measure the idle gaps here: only the
  // raw counters are kept (own: the listener and the client connection).
  ApplyDelta(*delta, 2 * server_.transactions_per_connection() + 2, 0, result);
  if (!failure.ok()) return failure;

  auto conn = PgConnection::Connect(conninfo, kMonitorApp);
  if (!conn.ok()) return conn.status();
  auto rows = ReadRuns(**conn, "bench3");
  if (!rows.ok()) return rows.status();
  auto phases = (*conn)->ExecPrepared(kReadPhases, {std::string("bench3")});
  if (!phases.ok()) {
    return phases.status().WithContext("reading when the runs' steps were recorded");
  }
  std::unordered_map<std::string, int> phase_row;
  for (int i = 0; i < phases->rows(); ++i) phase_row[phases->GetString(i, 0)] = i;
  std::vector<double> latency, notified, claim, first, last;
  for (const auto& s : samples) {
    if (s.warmup) continue;
    auto it = rows->find(s.id);
    if (it == rows->end() || it->second.status != "COMPLETED" || !it->second.finished_us) {
      ++result->failed;
      continue;
    }
    ++result->completed;
    // From the start call, on the database clock (ms).
    const std::int64_t from = s.start_us + settings_.clock.offset_us;
    auto since_start = [&](std::int64_t db_us) {
      return static_cast<double>(db_us - from) / 1000.0;
    };
    RunPhases run;
    run.id = s.id;
    run.latency_ms = since_start(*it->second.finished_us);
    run.notified_ms = static_cast<double>(s.notified_us - s.start_us) / 1000.0;
    latency.push_back(run.latency_ms);
    notified.push_back(run.notified_ms);
    auto p = phase_row.find(s.id);
    if (p != phase_row.end() && !phases->IsNull(p->second, 1)) {
      run.claim_began_ms = since_start(phases->GetInt(p->second, 1));
      run.first_step_began_ms = since_start(phases->GetInt(p->second, 2));
      run.last_step_began_ms = since_start(phases->GetInt(p->second, 3));
      claim.push_back(*run.claim_began_ms);
      first.push_back(*run.first_step_began_ms);
      last.push_back(*run.last_step_began_ms);
    }
    if (!result->slowest_run || run.latency_ms > result->slowest_run->latency_ms) {
      result->slowest_run = std::move(run);
    }
  }
  result->latency_ms = ComputePercentiles(latency);
  result->notified_latency_ms = ComputePercentiles(notified);
  result->claim_began_ms = ComputePercentiles(claim);
  result->first_step_began_ms = ComputePercentiles(first);
  result->last_step_began_ms = ComputePercentiles(last);
  return Status::Ok();
}

Status WorkloadRunner::RunIdle(WorkloadResult* result) {
  result->workflow = "-";
  result->database = NextDatabaseName(result->name);
  const std::string& db = result->database;
  auto prepared = PrepareDatabase(server_, settings_, db, LogPath(db, "migrate"), interrupted_);
  if (!prepared.ok()) return prepared.status();
  const std::string conninfo = *prepared;
  if (Status s = server_.Checkpoint(); !s.ok()) result->notes.push_back(s.message());

  DaemonSet daemons(settings_, conninfo, LogPath(db, "kagzid"));
  Status failure = daemons.Start(settings_.daemons, interrupted_);
  // A backend publishes its counts at once when its previous publication is
  // over a second old, else within 10 s (PostgreSQL 15): after the burst of
  // the daemon's start, wait that long, so that the window holds only idle
  // work and every idle transaction is counted when it ends.
  fmt::print(stderr, "kagzi-bench: idle: kagzid settles for {} s, then idles for {} s\n",
             kIdleSettle.count() / 1000, settings_.idle_duration.count());
  if (failure.ok() && !InterruptibleSleep(kIdleSettle, interrupted_)) {
    failure = Status::Unavailable("interrupted");
  }
  Result<ServerCounters> before = Status::Internal("not read");
  std::optional<double> cpu_before;
  if (failure.ok()) {
    before = server_.ReadCounters(db);
    cpu_before = daemons.CpuSecondsSoFar();
    if (!before.ok()) failure = before.status();
  }
  if (failure.ok() &&
      !InterruptibleSleep(std::chrono::duration_cast<milliseconds>(settings_.idle_duration),
                          interrupted_)) {
    failure = Status::Unavailable("interrupted");
  }
  if (failure.ok()) failure = daemons.CheckAlive();
  Result<ServerCounters> after = Status::Internal("not read");
  std::optional<double> cpu_after;
  if (failure.ok()) {
    after = server_.ReadCounters(db);
    cpu_after = daemons.CpuSecondsSoFar();
    if (!after.ok()) failure = after.status();
  }
  result->kagzid_peak_rss_kib = daemons.PeakRssKiB();
  result->kagzid_pss_kib = daemons.PssKiB();
  auto stopped = daemons.Stop();
  KAGZI_RETURN_IF_ERROR(failure);
  if (!stopped.ok()) return stopped.status();
  auto delta = server_.Delta(*before, *after);
  if (!delta.ok()) return delta.status();
  ApplyDelta(*delta, 0, 0, result);

  IdleFigures f;
  f.seconds = delta->seconds;
  f.transactions_per_second =
      static_cast<double>(delta->xact_commit + delta->xact_rollback) / f.seconds;
  if (delta->commit_records) {
    f.write_commits_per_second = static_cast<double>(*delta->commit_records) / f.seconds;
  }
  f.fsyncs_per_second = static_cast<double>(delta->wal_syncs) / f.seconds;
  f.wal_bytes_per_second = static_cast<double>(delta->wal_bytes) / f.seconds;
  if (cpu_before && cpu_after) {
    f.kagzid_cpu_fraction = (*cpu_after - *cpu_before) / f.seconds;
    result->kagzid_cpu_seconds = *cpu_after - *cpu_before;
  }
  if (delta->cpu_seconds) f.pg_cpu_fraction = *delta->cpu_seconds / f.seconds;
  result->idle = f;
  return Status::Ok();
}

Status WorkloadRunner::RunCeiling(WorkloadResult* result) {
  result->workflow = "-";
  result->database = NextDatabaseName(result->name);
  const std::string& db = result->database;
  KAGZI_RETURN_IF_ERROR(server_.CreateDatabase(db));
  CeilingOptions options;
  options.conninfo = server_.Conninfo(db);
  options.clients = settings_.ceiling_clients;
  options.threads = settings_.ceiling_threads;
  options.duration = settings_.ceiling_duration;
  {
    auto conn = PgConnection::Connect(options.conninfo, kMonitorApp);
    if (!conn.ok()) return conn.status();
    auto made = (*conn)->Exec(kCeilingTable);
    if (!made.ok()) return made.status().WithContext("creating the ceiling's table");
  }
  // The window holds the clients' connections and their INSERTs, as the
  // other workloads' hold their daemons' and clients'.
  if (Status s = server_.Checkpoint(); !s.ok()) result->notes.push_back(s.message());
  KAGZI_RETURN_IF_ERROR(server_.WaitForNoSessions(db, kSessionTimeout));
  auto before = server_.ReadCounters(db);
  if (!before.ok()) return before.status();
  fmt::print(stderr, "kagzi-bench: ceiling: {} clients insert for {:.1f} s\n", options.clients,
             std::chrono::duration<double>(options.duration).count());
  auto count = MeasureCeiling(options, interrupted_);
  KAGZI_RETURN_IF_ERROR(server_.WaitForNoSessions(db, kSessionTimeout));
  auto after = server_.ReadCounters(db);
  if (!after.ok()) return after.status();
  auto delta = server_.Delta(*before, *after);
  if (!delta.ok()) return delta.status();
  ApplyDelta(*delta, 0, 0, result);  // raw counters and CPU; nothing per workflow
  if (!count.ok()) return count.status();
  if (count->transactions <= 0 || count->seconds <= 0) {
    return Status::Internal("the ceiling's clients committed no INSERT in {:.1f} s",
                            count->seconds);
  }
  CeilingFigures figures;
  figures.clients = options.clients;
  figures.threads = std::min(options.threads, options.clients);
  figures.seconds = count->seconds;
  figures.transactions = count->transactions;
  figures.transactions_per_second = static_cast<double>(count->transactions) / count->seconds;
  const auto n = static_cast<double>(count->transactions);
  figures.wal_bytes_per_transaction = static_cast<double>(delta->wal_bytes) / n;
  figures.fsyncs_per_transaction = static_cast<double>(delta->wal_syncs) / n;
  result->ceiling = figures;
  return Status::Ok();
}

}  // namespace kagzi::bench
