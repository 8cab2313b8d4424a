// BenchServer (see bench_server.h): scripts/pg.sh for the private server,
// libpq for everything else.
#include "bench_server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <libpq-fe.h>

#include "kagzi/core/config.h"
#include "proc_stats.h"

namespace kagzi::bench {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr char kAppName[] = "kagzi-bench";

std::string LastLine(const std::string& text) {
  std::string trimmed = text;
  while (!trimmed.empty() && (trimmed.back() == '\n' || trimmed.back() == '\r')) trimmed.pop_back();
  const auto nl = trimmed.rfind('\n');
  return nl == std::string::npos ? trimmed : trimmed.substr(nl + 1);
}

// A conninfo value in single quotes, backslash-escaped (libpq's rules).
std::string QuoteConninfoValue(std::string_view value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

bool IsPlainIdentifier(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

const Statement kReadCounters = {
    "bench_read_counters",
    "SELECT d.xact_commit, d.xact_rollback, pg_current_wal_flush_lsn()::text, w.wal_sync"
    " FROM pg_stat_database d, pg_stat_wal w WHERE d.datname = $1"};
const Statement kSessions = {
    "bench_sessions",
    "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"};
const Statement kWalBytes = {"bench_wal_bytes",
                             "SELECT pg_wal_lsn_diff($2::pg_lsn, $1::pg_lsn)::bigint"};
// COMMIT records between two WAL positions: of transactions that wrote
// something else in the window (write commits), and of those that wrote
// nothing but the commit (a transaction that only sent NOTIFY: it has a
// transaction id, so its commit is logged, but nothing to flush).
const Statement kCommitRecords = {
    "bench_commit_records",
    "SELECT count(*) FILTER (WHERE wrote), count(*) FILTER (WHERE NOT wrote) FROM ("
    "  SELECT bool_or(resource_manager <> 'Transaction') AS wrote"
    "  FROM pg_get_wal_records_info($1::pg_lsn, $2::pg_lsn) WHERE xid <> '0'"
    "  GROUP BY xid"
    "  HAVING bool_or(resource_manager = 'Transaction' AND record_type = 'COMMIT')) c"};
// Keeps every WAL segment from the last checkpoint's redo point on, until
// dropped or until the control connection ends (temporary): checkpoints
// during a window recycle segments it has yet to read (pg_walinspect then
// fails with "requested WAL segment ... has already been removed"). A slot
// without a receiver holds back no vacuum.
const Statement kHoldWal = {"bench_hold_wal",
                            "SELECT pg_create_physical_replication_slot($1, true, true)"};
const Statement kReleaseWal = {"bench_release_wal", "SELECT pg_drop_replication_slot($1)"};
const Statement kClock = {"bench_clock",
                          "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint"};

std::int64_t RealtimeMicros() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

}  // namespace

Result<std::unique_ptr<BenchServer>> BenchServer::Open(const ServerOptions& options) {
  std::unique_ptr<BenchServer> server(new BenchServer(options));
  if (options.url) {
    server->base_url_ = *options.url;
  } else {
    KAGZI_RETURN_IF_ERROR(server->StartPrivate());
  }
  KAGZI_RETURN_IF_ERROR(server->Connect());
  KAGZI_RETURN_IF_ERROR(server->ReadSettings());
  KAGZI_RETURN_IF_ERROR(server->EnableWalInspect());
  if (server->is_private()) KAGZI_RETURN_IF_ERROR(server->DropLeftovers());
  KAGZI_RETURN_IF_ERROR(server->CalibrateConnectionCost());
  return server;
}

BenchServer::~BenchServer() {
  control_.reset();
  if (!started_private_) return;
  if (options_.keep_running) {
    fmt::print(stderr, "kagzi-bench: leaving the private PostgreSQL running (--keep-pg): {}\n",
               DisplayUrl());
    return;
  }
  auto stopped = RunForStdout(
      {options_.pg_script, "stop"},
      {"KAGZI_PG_DIR=" + options_.pg_dir, "KAGZI_PG_PORT=" + std::to_string(options_.pg_port)});
  if (!stopped.ok()) {
    fmt::print(stderr, "kagzi-bench: cannot stop the private PostgreSQL in {}: {}\n",
               options_.pg_dir, stopped.status().message());
  }
}

Status BenchServer::StartPrivate() {
  fmt::print(stderr, "kagzi-bench: starting a private PostgreSQL in {} (port {})\n",
             options_.pg_dir, options_.pg_port);
  auto out = RunForStdout(
      {options_.pg_script, "start"},
      {"KAGZI_PG_DIR=" + options_.pg_dir, "KAGZI_PG_PORT=" + std::to_string(options_.pg_port)});
  if (!out.ok()) {
    return out.status().WithContext(
        fmt::format("cannot start the private PostgreSQL in {}", options_.pg_dir));
  }
  started_private_ = true;
  base_url_ = LastLine(*out);
  if (base_url_.rfind("postgresql://", 0) != 0) {
    return Status::Internal("{} start printed no URL on its last line (got \"{}\")",
                            options_.pg_script, base_url_);
  }
  return Status::Ok();
}

Status BenchServer::Connect() {
  auto conn = PgConnection::Connect(base_url_, kAppName);
  if (!conn.ok()) return conn.status();
  control_ = std::move(*conn);
  // The postmaster is our backend's parent, when the server runs here.
  auto pid = control_->Exec("SELECT pg_backend_pid()");
  if (!pid.ok()) return pid.status().WithContext("reading the backend pid");
  const auto backend = static_cast<pid_t>(pid->GetInt(0, 0));
  if (ProcessName(backend) == "postgres") {
    auto parent = ParentOf(backend);
    if (parent && ProcessName(*parent) == "postgres") postmaster_pid_ = *parent;
  }
  return Status::Ok();
}

Status BenchServer::ReadSettings() {
  for (const char* name :
       {"server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_sync_method",
        "shared_buffers", "max_wal_size", "checkpoint_timeout", "max_connections"}) {
    auto r = control_->Exec(fmt::format("SHOW {}", name));
    if (!r.ok()) return r.status().WithContext(fmt::format("SHOW {}", name));
    settings_.emplace_back(name, r->GetString(0, 0));
  }
  for (const auto& [name, value] : settings_) {
    if ((name == "fsync" || name == "synchronous_commit") && value != "on") {
      fmt::print(stderr,
                 "kagzi-bench: WARNING: the server runs with {} = {}: commits are not durable, "
                 "and the figures are not comparable with a durable server\n",
                 name, value);
    }
  }
  return Status::Ok();
}

Status BenchServer::EnableWalInspect() {
  auto r = control_->Exec("CREATE EXTENSION IF NOT EXISTS pg_walinspect");
  if (!r.ok()) {
    walinspect_problem_ = "CREATE EXTENSION pg_walinspect failed: " + r.status().message();
  } else {
    // One write transaction between two readings must show as one COMMIT.
    auto from = control_->Exec("SELECT pg_current_wal_flush_lsn()::text");
    // (A temporary table's catalog rows are WAL-logged; its data would not be.)
    auto write = control_->Exec("CREATE TEMPORARY TABLE kagzi_bench_probe (x int)");
    auto to = control_->Exec("SELECT pg_current_wal_flush_lsn()::text");
    (void)control_->Exec("DROP TABLE IF EXISTS kagzi_bench_probe");
    if (!from.ok() || !write.ok() || !to.ok()) {
      walinspect_problem_ = "reading the WAL position failed";
    } else {
      walinspect_problem_.clear();
      auto commits = CommitRecords(from->GetString(0, 0), to->GetString(0, 0));
      if (!commits.ok()) {
        walinspect_problem_ = "pg_get_wal_stats failed: " + commits.status().message();
      } else if (!*commits || (*commits)->writes < 1) {
        walinspect_problem_ = "pg_get_wal_stats found no COMMIT record of a write transaction";
      }
    }
  }
  if (!walinspect_problem_.empty()) {
    fmt::print(stderr, "kagzi-bench: WAL COMMIT records will not be counted: {}\n",
               walinspect_problem_);
  }
  return Status::Ok();
}

Status BenchServer::DropLeftovers() {
  auto r = control_->Exec(
      "SELECT datname FROM pg_database WHERE datname LIKE 'kagzi\\_bench\\_%' ORDER BY 1");
  if (!r.ok()) return r.status().WithContext("listing databases left by an earlier kagzi-bench");
  for (int i = 0; i < r->rows(); ++i) {
    const std::string db = r->GetString(i, 0);
    fmt::print(stderr, "kagzi-bench: dropping database {}, left by an interrupted earlier run\n",
               db);
    KAGZI_RETURN_IF_ERROR(DropDatabase(db));
  }
  return Status::Ok();
}

Status BenchServer::CalibrateConnectionCost() {
  const std::string db = fmt::format("kagzi_bench_{}_calibration", getpid());
  KAGZI_RETURN_IF_ERROR(CreateDatabase(db));
  auto measure = [&]() -> Result<int> {
    KAGZI_RETURN_IF_ERROR(WaitForNoSessions(db, std::chrono::seconds(30)));
    auto before = ReadCounters(db);
    if (!before.ok()) return before.status();
    {
      auto conn = PgConnection::Connect(Conninfo(db), kAppName);
      if (!conn.ok()) return conn.status();
    }
    KAGZI_RETURN_IF_ERROR(WaitForNoSessions(db, std::chrono::seconds(30)));
    auto after = ReadCounters(db);
    if (!after.ok()) return after.status();
    return static_cast<int>(after->xact_commit + after->xact_rollback - before->xact_commit -
                            before->xact_rollback);
  };
  auto cost = measure();
  Status dropped = DropDatabase(db);
  if (!cost.ok()) return cost.status().WithContext("calibrating the cost of a connection");
  KAGZI_RETURN_IF_ERROR(dropped);
  transactions_per_connection_ = *cost;
  return Status::Ok();
}

std::string BenchServer::Conninfo(std::string_view db) const {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(base_url_.c_str(), &error);
  if (options == nullptr) {
    // Open() connected with this URL, so libpq parses it; keep a usable
    // fallback all the same.
    if (error != nullptr) PQfreemem(error);
    return fmt::format("dbname={}", QuoteConninfoValue(db));
  }
  std::string out;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr || std::string_view(o->keyword) == "dbname") continue;
    out += fmt::format("{}={} ", o->keyword, QuoteConninfoValue(o->val));
  }
  PQconninfoFree(options);
  return out + "dbname=" + QuoteConninfoValue(db);
}

std::string BenchServer::DisplayUrl() const { return RedactDatabaseUrl(base_url_); }

std::optional<std::string> BenchServer::log_path() const {
  if (!is_private()) return std::nullopt;
  return options_.pg_dir + "/log/postgresql.log";
}

Result<PgResult> BenchServer::Exec(std::string_view sql) { return control_->Exec(sql); }

Status BenchServer::CreateDatabase(std::string_view db) {
  if (!IsPlainIdentifier(db)) return Status::InvalidArgument("bad database name \"{}\"", db);
  auto r = control_->Exec(fmt::format("CREATE DATABASE {}", db));
  if (!r.ok()) return r.status().WithContext(fmt::format("creating database {}", db));
  return Status::Ok();
}

Status BenchServer::DropDatabase(std::string_view db) {
  if (!IsPlainIdentifier(db)) return Status::InvalidArgument("bad database name \"{}\"", db);
  auto r = control_->Exec(fmt::format("DROP DATABASE IF EXISTS {} WITH (FORCE)", db));
  if (!r.ok()) return r.status().WithContext(fmt::format("dropping database {}", db));
  return Status::Ok();
}

Status BenchServer::WaitForNoSessions(std::string_view db, milliseconds timeout) {
  const auto deadline = steady_clock::now() + timeout;
  std::set<pid_t> seen;
  while (true) {
    auto r = control_->ExecPrepared(kSessions, {db});
    if (!r.ok()) return r.status().WithContext(fmt::format("listing sessions of database {}", db));
    for (int i = 0; i < r->rows(); ++i) seen.insert(static_cast<pid_t>(r->GetInt(i, 0)));
    if (r->rows() == 0) break;
    if (steady_clock::now() > deadline) {
      return Status::Unavailable("{} session(s) still connected to database {} after {} ms",
                                 r->rows(), db, timeout.count());
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  // A backend leaves pg_stat_activity a moment before it publishes its
  // statistics and exits: on a local server, wait for the processes to go.
  if (postmaster_pid_) {
    for (pid_t pid : seen) {
      while (kill(pid, 0) == 0 && ParentOf(pid) == postmaster_pid_ &&
             steady_clock::now() < deadline) {
        std::this_thread::sleep_for(milliseconds(5));
      }
    }
  }
  std::this_thread::sleep_for(milliseconds(50));
  return Status::Ok();
}

void BenchServer::HoldWal() {
  if (!wal_slot_.empty() || !walinspect_problem_.empty()) return;
  // A name of its own each time: a slot whose drop failed lives on until
  // the connection ends.
  const std::string slot = fmt::format("kagzi_bench_{}_wal_{}", getpid(), ++wal_slots_made_);
  auto r = control_->ExecPrepared(kHoldWal, {slot});
  if (r.ok()) {
    wal_slot_ = slot;
    wal_hold_problem_.clear();
  } else {
    wal_hold_problem_ = r.status().message();
  }
}

void BenchServer::ReleaseWal() {
  if (wal_slot_.empty()) return;
  // On failure the slot goes with the control connection anyway.
  (void)control_->ExecPrepared(kReleaseWal, {wal_slot_});
  wal_slot_.clear();
}

Result<ServerCounters> BenchServer::ReadCounters(std::string_view db) {
  HoldWal();  // before the position is read, so that the slot holds it
  auto r = control_->ExecPrepared(kReadCounters, {db});
  if (!r.ok()) return r.status().WithContext(fmt::format("reading the counters of {}", db));
  if (r->rows() != 1) return Status::NotFound("no pg_stat_database row for database {}", db);
  ServerCounters c;
  c.xact_commit = r->GetInt(0, 0);
  c.xact_rollback = r->GetInt(0, 1);
  c.wal_flush_lsn = r->GetString(0, 2);
  c.wal_sync = r->GetInt(0, 3);
  if (postmaster_pid_) c.cpu_seconds = TreeCpuSeconds(*postmaster_pid_);
  c.taken_at = steady_clock::now();
  return c;
}

Result<std::optional<CommitCounts>> BenchServer::CommitRecords(const std::string& from,
                                                               const std::string& to) {
  if (!walinspect_problem_.empty()) return std::optional<CommitCounts>();
  if (from == to) return std::optional<CommitCounts>(CommitCounts{});
  auto r = control_->ExecPrepared(kCommitRecords, {from, to});
  if (!r.ok()) {
    return r.status().WithContext(
        fmt::format("counting WAL COMMIT records from {} to {}", from, to));
  }
  return std::optional<CommitCounts>(CommitCounts{r->GetInt(0, 0), r->GetInt(0, 1)});
}

Result<CounterDelta> BenchServer::Delta(const ServerCounters& before, const ServerCounters& after) {
  CounterDelta d;
  d.xact_commit = after.xact_commit - before.xact_commit;
  d.xact_rollback = after.xact_rollback - before.xact_rollback;
  d.wal_syncs = after.wal_sync - before.wal_sync;
  d.seconds = std::chrono::duration<double>(after.taken_at - before.taken_at).count();
  if (before.cpu_seconds && after.cpu_seconds)
    d.cpu_seconds = *after.cpu_seconds - *before.cpu_seconds;
  auto bytes = control_->ExecPrepared(kWalBytes, {before.wal_flush_lsn, after.wal_flush_lsn});
  if (!bytes.ok()) return bytes.status().WithContext("measuring the WAL written");
  d.wal_bytes = bytes->GetInt(0, 0);
  auto commits = CommitRecords(before.wal_flush_lsn, after.wal_flush_lsn);
  ReleaseWal();
  if (commits.ok()) {
    if (*commits) {
      d.commit_records = (*commits)->writes;
      d.empty_commit_records = (*commits)->empty;
    }
  } else {
    // The other figures still stand.
    d.commit_records_problem = commits.status().message();
    if (!wal_hold_problem_.empty()) {
      d.commit_records_problem += " (the WAL could not be held: " + wal_hold_problem_ + ")";
    }
  }
  return d;
}

Status BenchServer::Checkpoint() {
  auto r = control_->Exec("CHECKPOINT");
  if (!r.ok()) return r.status().WithContext("CHECKPOINT");
  return Status::Ok();
}

Result<ClockOffset> BenchServer::MeasureClockOffset() {
  std::optional<ClockOffset> best;
  for (int i = 0; i < 7; ++i) {
    const std::int64_t t1 = RealtimeMicros();
    auto r = control_->ExecPrepared(kClock, {});
    const std::int64_t t2 = RealtimeMicros();
    if (!r.ok()) return r.status().WithContext("reading the server clock");
    ClockOffset sample{r->GetInt(0, 0) - (t1 + t2) / 2, t2 - t1};
    if (!best || sample.rtt_us < best->rtt_us) best = sample;
  }
  return *best;
}

}  // namespace kagzi::bench
