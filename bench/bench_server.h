// The PostgreSQL server kagzi-bench measures against.
//
// BenchServer starts a private PostgreSQL with scripts/pg.sh (PostgreSQL's
// durable defaults: fsync on, synchronous_commit on), or uses the one named
// by --url. It owns one control connection to the server's maintenance
// database, creates and drops the per-workload databases, and reads the
// server-side counters the figures are computed from:
//   - pg_stat_database: transactions committed and rolled back in one
//     database (read-only ones included);
//   - the WAL flush position, and the COMMIT records between two positions
//     (pg_walinspect): write transactions, cluster-wide;
//   - pg_stat_wal.wal_sync: WAL fsyncs, cluster-wide;
//   - the CPU time of the postmaster's process tree (/proc; local servers).
// The cluster-wide counters need the server otherwise idle while a workload
// runs. PostgreSQL publishes a backend's transaction counts when the backend
// goes idle for a while or exits, so exact readings are taken with no
// session connected to the database (WaitForNoSessions).
//
// Thread safety: none; one owner (the bench's main thread).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kagzi/core/pg.h"
#include "kagzi/core/status.h"

namespace kagzi::bench {

struct ServerOptions {
  // Use this server (a libpq URL or conninfo string; its database is the
  // maintenance database). Without it, a private server is started.
  std::optional<std::string> url;
  std::string pg_script;  // scripts/pg.sh
  std::string pg_dir;     // the private server's directory (KAGZI_PG_DIR)
  int pg_port = 55435;
  bool keep_running = false;  // leave the private server running at the end
};

// One reading of the server's counters (see the file comment).
struct ServerCounters {
  std::int64_t xact_commit = 0;  // of the database read
  std::int64_t xact_rollback = 0;
  std::string wal_flush_lsn;          // pg_lsn text
  std::int64_t wal_sync = 0;          // cluster-wide
  std::optional<double> cpu_seconds;  // the postmaster's tree; nullopt: not local
  std::chrono::steady_clock::time_point taken_at;
};

// COMMIT records in a stretch of WAL.
struct CommitCounts {
  std::int64_t writes = 0;  // of transactions that wrote something else too
  std::int64_t empty = 0;   // of transactions that wrote nothing else (NOTIFY only)
};

// What happened between two readings.
struct CounterDelta {
  std::int64_t xact_commit = 0;
  std::int64_t xact_rollback = 0;
  std::int64_t wal_bytes = 0;
  std::int64_t wal_syncs = 0;
  std::optional<std::int64_t> commit_records;  // write commits; nullopt: pg_walinspect unavailable
  std::optional<std::int64_t> empty_commit_records;  // commits of transactions that wrote nothing
  // Why commit_records could not be counted for this window (empty: it was,
  // or pg_walinspect is missing altogether): for one, the window's first
  // WAL segment recycled before it was read, when the WAL could not be held
  // (creating a replication slot takes the REPLICATION attribute).
  std::string commit_records_problem;
  std::optional<double> cpu_seconds;
  double seconds = 0;
};

// The local clock against the server's (clock_timestamp()): server time =
// local CLOCK_REALTIME + offset_us, to within rtt_us / 2.
struct ClockOffset {
  std::int64_t offset_us = 0;
  std::int64_t rtt_us = 0;
};

class BenchServer {
 public:
  // Starts the private server (or connects to options.url), checks the
  // settings, enables pg_walinspect when it can, drops databases an earlier
  // interrupted bench left on a private server, and calibrates what one
  // client connection costs in pg_stat_database transactions.
  static Result<std::unique_ptr<BenchServer>> Open(const ServerOptions& options);
  // Stops the private server unless keep_running.
  ~BenchServer();
  BenchServer(const BenchServer&) = delete;
  BenchServer& operator=(const BenchServer&) = delete;

  // A conninfo string for database `db` on this server: the URL's host,
  // port, user, password and other settings, with the database replaced.
  std::string Conninfo(std::string_view db) const;
  // `db` must be a plain lower-case identifier (the bench makes its names).
  Status CreateDatabase(std::string_view db);
  Status DropDatabase(std::string_view db);
  // Runs SQL on the control connection (the maintenance database).
  Result<PgResult> Exec(std::string_view sql);

  // Waits until no session is connected to `db` and the backends that were
  // have exited, so that their transaction counts are published.
  Status WaitForNoSessions(std::string_view db, std::chrono::milliseconds timeout);
  // Also holds the server's WAL from here on (a temporary physical
  // replication slot), so that the window's COMMIT records can still be
  // read when a checkpoint in the window would have recycled its first
  // segment; Delta lets it go.
  Result<ServerCounters> ReadCounters(std::string_view db);
  Result<CounterDelta> Delta(const ServerCounters& before, const ServerCounters& after);
  // CHECKPOINT, so that a workload does not pay for its predecessor's dirty
  // pages, and every workload starts with the same full-page-write state.
  Status Checkpoint();
  Result<ClockOffset> MeasureClockOffset();

  // pg_stat_database transactions that opening and closing one kagzi_core
  // connection adds (the session start, SET TIME ZONE): subtracted for the
  // bench's own connections.
  int transactions_per_connection() const { return transactions_per_connection_; }
  bool is_private() const { return !options_.url.has_value(); }
  // The private server's log file (auto_explain plans go there); nullopt
  // for a server given by URL.
  std::optional<std::string> log_path() const;
  // Why COMMIT records cannot be counted; empty when they can.
  const std::string& walinspect_problem() const { return walinspect_problem_; }
  // The replication slot holding the WAL now (ReadCounters); empty: none.
  const std::string& wal_slot() const { return wal_slot_; }
  // Settings that shape the figures: version, fsync, synchronous_commit, ...
  const std::vector<std::pair<std::string, std::string>>& settings() const { return settings_; }
  // The base URL with any password hidden, for reports.
  std::string DisplayUrl() const;

 private:
  explicit BenchServer(ServerOptions options) : options_(std::move(options)) {}
  Status StartPrivate();
  Status Connect();
  Status ReadSettings();
  Status EnableWalInspect();
  Status DropLeftovers();
  Status CalibrateConnectionCost();
  Result<std::optional<CommitCounts>> CommitRecords(const std::string& from, const std::string& to);
  void HoldWal();
  void ReleaseWal();

  ServerOptions options_;
  std::string base_url_;
  bool started_private_ = false;
  std::unique_ptr<PgConnection> control_;
  std::optional<pid_t> postmaster_pid_;
  std::string walinspect_problem_;
  std::string wal_slot_;          // the slot holding the WAL now; empty: none
  std::string wal_hold_problem_;  // why the last attempt to hold it failed
  int wal_slots_made_ = 0;
  std::vector<std::pair<std::string, std::string>> settings_;
  int transactions_per_connection_ = 0;
};

}  // namespace kagzi::bench
