// Helpers for the tests that break things on purpose: the chaos test
// (tests/chaos/chaos_test.cc) and the database fault tests
// (tests/e2e/db_faults_test.cc).
//
//   PrivatePostgres  a PostgreSQL of the test's own (scripts/pg.sh under a
//                    private KAGZI_PG_DIR and port), which the test may stop,
//                    restart (pg_ctl -m fast|immediate) and start again; the
//                    shared kagzi_pg fixture server must never be restarted.
//   Sql / SqlSession SQL on any URL: one-shot, or a session that keeps a
//                    transaction (and its locks) open.
//   DaemonGroup      a kagzid in a process group of its own, so SIGKILL takes
//                    it and every worker process it forked at once, like a
//                    host that dies. Its log is appended across restarts.
//   Ledger analysis  the "chaos" fixture plugin's tagged side-effect ledger
//                    against the journal: which execution of each step was
//                    recorded, which ran again before the record
//                    (at-least-once) and which after it (a bug).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include "support/process.h"
#include "support/test_db.h"

#ifndef KAGZI_SOURCE_DIR
#error "KAGZI_SOURCE_DIR must name the repository (tests/chaos/CMakeLists.txt sets it)"
#endif

extern char** environ;

namespace kagzi::testing::chaos {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Wall-clock microseconds since the Unix epoch: the clock PostgreSQL's now()
// reads on this host, and the one the chaos plugin's tags carry.
inline std::int64_t WallMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? std::string(v) : fallback;
}

inline long EnvInt(const char* name, long fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  long out = std::strtol(v, &end, 10);
  if (end == v || *end != '\0') {
    ADD_FAILURE() << name << " must be an integer, got \"" << v << "\"";
    return fallback;
  }
  return out;
}

inline std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char ch : s) {
    if (ch == '\'') {
      out += "'\\''";
    } else {
      out += ch;
    }
  }
  return out + "'";
}

// ---------------------------------------------------------------------------
// SQL
// ---------------------------------------------------------------------------

struct SqlRows {
  bool ok = false;
  std::string error;
  std::vector<std::vector<std::optional<std::string>>> rows;

  std::string Value(std::size_t row = 0, std::size_t col = 0) const {
    if (row >= rows.size() || col >= rows[row].size() || !rows[row][col]) return "";
    return *rows[row][col];
  }
  std::int64_t Int(std::size_t row = 0, std::size_t col = 0) const {
    std::string v = Value(row, col);
    return v.empty() ? 0 : std::stoll(v);
  }
};

inline SqlRows ResultRows(PGconn* conn, PGresult* res) {
  SqlRows out;
  auto st = PQresultStatus(res);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    out.error = res ? PQresultErrorMessage(res) : PQerrorMessage(conn);
    if (out.error.empty()) out.error = PQerrorMessage(conn);
  } else {
    out.ok = true;
    for (int r = 0; r < PQntuples(res); ++r) {
      std::vector<std::optional<std::string>> row;
      for (int c = 0; c < PQnfields(res); ++c) {
        if (PQgetisnull(res, r, c)) {
          row.emplace_back(std::nullopt);
        } else {
          row.emplace_back(std::string(PQgetvalue(res, r, c), PQgetlength(res, r, c)));
        }
      }
      out.rows.push_back(std::move(row));
    }
  }
  PQclear(res);
  return out;
}

inline PGconn* ConnectQuietly(const std::string& url, const char* application_name) {
  const char* keys[] = {"connect_timeout", "application_name", "dbname", nullptr};
  const char* values[] = {"10", application_name, url.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keys, values, 1);
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  return conn;
}

// One statement (or several, without parameters) on a fresh connection.
inline SqlRows Sql(const std::string& url, const std::string& sql,
                   const std::vector<std::string>& params = {}) {
  PGconn* conn = ConnectQuietly(url, "kagzi-chaos-harness");
  SqlRows out;
  if (PQstatus(conn) != CONNECTION_OK) {
    out.error = PQerrorMessage(conn);
    PQfinish(conn);
    return out;
  }
  PGresult* res;
  if (params.empty()) {
    res = PQexec(conn, sql.c_str());
  } else {
    std::vector<const char*> values;
    for (const auto& p : params) values.push_back(p.c_str());
    res = PQexecParams(conn, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(),
                       nullptr, nullptr, 0);
  }
  out = ResultRows(conn, res);
  PQfinish(conn);
  return out;
}

// Sql that must succeed: a failure is a test failure.
inline SqlRows MustSql(const std::string& url, const std::string& sql,
                       const std::vector<std::string>& params = {}) {
  SqlRows r = Sql(url, sql, params);
  EXPECT_TRUE(r.ok) << "SQL failed: " << sql << ": " << r.error;
  return r;
}

// Sql retried for up to `timeout` while the server is restarting.
inline SqlRows SqlPatiently(const std::string& url, const std::string& sql,
                            const std::vector<std::string>& params = {},
                            milliseconds timeout = seconds(60)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    SqlRows r = Sql(url, sql, params);
    if (r.ok || std::chrono::steady_clock::now() > deadline) return r;
    std::this_thread::sleep_for(milliseconds(200));
  }
}

// A connection kept open: for transactions that hold locks across calls.
class SqlSession {
 public:
  explicit SqlSession(const std::string& url) : conn_(ConnectQuietly(url, "kagzi-test-session")) {}
  ~SqlSession() { PQfinish(conn_); }
  SqlSession(const SqlSession&) = delete;
  SqlSession& operator=(const SqlSession&) = delete;

  bool connected() const { return PQstatus(conn_) == CONNECTION_OK; }
  std::string connect_error() const { return PQerrorMessage(conn_); }
  SqlRows Exec(const std::string& sql, const std::vector<std::string>& params = {}) {
    std::vector<const char*> values;
    for (const auto& p : params) values.push_back(p.c_str());
    return ResultRows(conn_, PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()),
                                          nullptr, values.data(), nullptr, nullptr, 0));
  }
  // Sends a statement without waiting for its result (it may block on a
  // lock); Finish() collects it.
  bool Send(const std::string& sql, const std::vector<std::string>& params = {}) {
    std::vector<const char*> values;
    for (const auto& p : params) values.push_back(p.c_str());
    return PQsendQueryParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr,
                             values.data(), nullptr, nullptr, 0) == 1;
  }
  SqlRows Finish() {
    SqlRows last;
    last.ok = true;
    while (PGresult* res = PQgetResult(conn_)) {
      SqlRows r = ResultRows(conn_, res);
      if (!r.ok || !r.rows.empty()) last = std::move(r);
    }
    return last;
  }

 private:
  PGconn* conn_;
};

// ---------------------------------------------------------------------------
// A private PostgreSQL
// ---------------------------------------------------------------------------

class PrivatePostgres {
 public:
  // dir: absolute, short enough for a Unix socket path (pg.sh checks).
  PrivatePostgres(std::string dir, int port) : dir_(std::move(dir)), port_(port) {
    for (const auto& entry : std::filesystem::directory_iterator("/usr/lib/postgresql")) {
      auto candidate = entry.path() / "bin" / "pg_ctl";
      if (!std::filesystem::exists(candidate)) continue;
      int version = std::atoi(entry.path().filename().c_str());
      if (version > best_version_) {
        best_version_ = version;
        pg_ctl_ = candidate.string();
      }
    }
  }
  ~PrivatePostgres() {
    if (!started_) return;
    // Keep the cluster and its log for a post-mortem when the test failed.
    bool keep = ::testing::Test::HasFailure() || std::getenv("KAGZI_CHAOS_KEEP_PG") != nullptr;
    auto r = PgSh({"stop", keep ? "" : "--purge"});
    if (r.exit_code != 0) std::fprintf(stderr, "pg.sh stop failed: %s\n", r.err.c_str());
    if (keep) std::fprintf(stderr, "kept the private PostgreSQL at %s\n", dir_.c_str());
  }
  PrivatePostgres(const PrivatePostgres&) = delete;
  PrivatePostgres& operator=(const PrivatePostgres&) = delete;

  const std::string& dir() const { return dir_; }
  int port() const { return port_; }
  std::string log_path() const { return dir_ + "/log/postgresql.log"; }
  std::string socket_dir() const { return dir_ + "/socket"; }

  // The libpq URI of database `db`, with extra query parameters (already
  // percent-encoded, e.g. "options=-c%20statement_timeout%3D500").
  std::string Url(const std::string& db, const std::string& extra = "") const {
    std::string url =
        "postgresql://postgres@/" + db + "?host=" + socket_dir() + "&port=" + std::to_string(port_);
    if (!extra.empty()) url += "&" + extra;
    return url;
  }

  // Stops a server a previous test run left there and deletes its cluster.
  bool Purge() {
    auto r = PgSh({"stop", "--purge"});
    EXPECT_EQ(r.exit_code, 0) << "pg.sh stop --purge failed: " << r.err;
    purged_ = true;
    return r.exit_code == 0;
  }
  // scripts/pg.sh start; the first time, in a fresh cluster (Purge first).
  bool Start() {
    if (!purged_ && !Purge()) return false;
    started_ = true;
    auto r = PgSh({"start"});
    EXPECT_EQ(r.exit_code, 0) << "pg.sh start failed: " << r.err;
    return r.exit_code == 0;
  }
  // scripts/pg.sh stop: a fast shutdown.
  bool Stop() {
    auto r = PgSh({"stop"});
    EXPECT_EQ(r.exit_code, 0) << "pg.sh stop failed: " << r.err;
    return r.exit_code == 0;
  }
  // pg_ctl stop -m <mode> (fast, immediate).
  bool StopMode(const std::string& mode) {
    auto r = PgCtl({"-D", dir_ + "/data", "-m", mode, "-w", "-t", "120", "stop"});
    EXPECT_EQ(r.exit_code, 0) << "pg_ctl stop -m " << mode << " failed: " << r.out << r.err;
    return r.exit_code == 0;
  }
  // pg_ctl restart -m <mode>, the log going where pg.sh sends it.
  bool Restart(const std::string& mode) {
    auto r =
        PgCtl({"-D", dir_ + "/data", "-l", log_path(), "-m", mode, "-w", "-t", "120", "restart"});
    EXPECT_EQ(r.exit_code, 0) << "pg_ctl restart -m " << mode << " failed: " << r.out << r.err;
    return r.exit_code == 0;
  }
  bool CreateDatabase(const std::string& name) {
    auto r = SqlPatiently(Url("postgres"), "CREATE DATABASE " + name);
    EXPECT_TRUE(r.ok) << "CREATE DATABASE " << name << ": " << r.error;
    return r.ok;
  }

 private:
  CommandResult PgSh(std::vector<std::string> args) {
    std::vector<std::string> argv = {"/bin/bash", std::string(KAGZI_SOURCE_DIR) + "/scripts/pg.sh"};
    for (auto& a : args) {
      if (!a.empty()) argv.push_back(std::move(a));
    }
    return RunCommand(argv, {{"KAGZI_PG_DIR", dir_}, {"KAGZI_PG_PORT", std::to_string(port_)}},
                      seconds(300));
  }
  // pg_ctl as scripts/pg.sh runs it: as the postgres user when we are root,
  // from the instance directory (which that user can always enter).
  CommandResult PgCtl(const std::vector<std::string>& args) {
    std::string cmd = "cd " + ShellQuote(dir_) + " && exec ";
    if (geteuid() == 0) cmd += "runuser -u postgres -- ";
    cmd += ShellQuote(pg_ctl_);
    for (const auto& a : args) cmd += " " + ShellQuote(a);
    return RunCommand({"/bin/sh", "-c", cmd}, {}, seconds(300));
  }

  std::string dir_;
  int port_;
  std::string pg_ctl_ = "pg_ctl";
  int best_version_ = 0;
  bool purged_ = false;
  bool started_ = false;
};

// ---------------------------------------------------------------------------
// kagzid in its own process group
// ---------------------------------------------------------------------------

struct DaemonSettings {
  std::string lease_ttl = "2s";
  std::string heartbeat_interval = "500ms";
  std::string poll_interval = "300ms";
  std::string drain_timeout = "10s";
  int concurrency = 8;
};

class DaemonGroup {
 public:
  DaemonGroup(std::string url, std::string plugin_dir, std::string log_path,
              DaemonSettings settings, std::map<std::string, std::string> env = {})
      : url_(std::move(url)),
        plugin_dir_(std::move(plugin_dir)),
        log_path_(std::move(log_path)),
        settings_(std::move(settings)),
        env_(std::move(env)) {}
  ~DaemonGroup() {
    if (running()) KillGroup();
    // Sanitized builds: a report in the log (every incarnation's) is kept
    // for the test sanitizer.reports (tests/support/process.h).
    KeepSanitizerReport(ReadFile(log_path_), "kagzid");
  }
  DaemonGroup(const DaemonGroup&) = delete;
  DaemonGroup& operator=(const DaemonGroup&) = delete;

  bool Start() {
    std::vector<std::string> argv = {RequiredEnv("KAGZI_TEST_KAGZID"),
                                     "-c",
                                     "/dev/null",
                                     "--database-url",
                                     url_,
                                     "--plugin-dir",
                                     plugin_dir_,
                                     "--lease-ttl",
                                     settings_.lease_ttl,
                                     "--heartbeat-interval",
                                     settings_.heartbeat_interval,
                                     "--poll-interval",
                                     settings_.poll_interval,
                                     "--drain-timeout",
                                     settings_.drain_timeout,
                                     "--concurrency",
                                     std::to_string(settings_.concurrency),
                                     "--log-level",
                                     "debug"};
    for (auto& arg : ExecutorArgs()) argv.push_back(std::move(arg));
    log_offset_ = LogSize();
    started_us_ = WallMicros();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                     0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setpgroup(&attr, 0);  // a group of its own: pgid = pid
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string kv(*e);
      auto eq = kv.find('=');
      if (eq != std::string::npos && env_.contains(kv.substr(0, eq))) continue;
      env_strings.push_back(std::move(kv));
    }
    for (const auto& [k, v] : env_) env_strings.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, argv[0].c_str(), &actions, &attr, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    EXPECT_EQ(rc, 0) << "cannot spawn " << argv[0];
    pid_ = rc == 0 ? pid : -1;
    exit_.reset();
    ++incarnations_;
    return pid_ > 0;
  }

  // Every live (non-zombie) process of the group: kagzid and its workers.
  std::vector<pid_t> GroupPids() const {
    std::vector<pid_t> out;
    if (pid_ <= 0) return out;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
      const std::string name = entry.path().filename();
      if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
      std::ifstream in(entry.path() / "stat");
      std::string stat;
      std::getline(in, stat);
      // pid (comm) state ppid pgrp ...: comm may hold spaces; skip past ')'.
      auto close = stat.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream rest(stat.substr(close + 1));
      std::string state;
      long ppid = 0, pgrp = 0;
      rest >> state >> ppid >> pgrp;
      if (pgrp == pid_ && state != "Z" && state != "X") out.push_back(std::stoi(name));
    }
    return out;
  }

  // SIGKILL to the whole group at once; waits for kagzid itself.
  void KillGroup() {
    if (pid_ <= 0 || exit_) return;
    ::kill(-pid_, SIGKILL);
    Wait(seconds(30));
  }
  void Signal(int sig) {
    if (pid_ > 0 && !exit_) ::kill(pid_, sig);
  }
  std::optional<int> Wait(milliseconds timeout) {
    if (exit_) return exit_;
    if (pid_ <= 0) return std::nullopt;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      int status = 0;
      pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exit_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
        return exit_;
      }
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(milliseconds(5));
    }
  }
  bool running() { return pid_ > 0 && !Wait(milliseconds(0)).has_value(); }
  std::optional<int> exit_status() const { return exit_; }
  pid_t pid() const { return pid_; }
  int incarnations() const { return incarnations_; }
  std::int64_t started_us() const { return started_us_; }
  const std::string& log_path() const { return log_path_; }

  std::size_t LogSize() const {
    std::error_code ec;
    auto n = std::filesystem::file_size(log_path_, ec);
    return ec ? 0 : static_cast<std::size_t>(n);
  }
  // The log from byte `offset` on (default: this incarnation's start).
  std::string LogSince(std::optional<std::size_t> offset = std::nullopt) const {
    std::string all = ReadFile(log_path_);
    std::size_t from = std::min(offset.value_or(log_offset_), all.size());
    return all.substr(from);
  }
  bool WaitForLog(const std::string& text, milliseconds timeout,
                  std::optional<std::size_t> offset = std::nullopt) const {
    return Eventually([&] { return LogSince(offset).find(text) != std::string::npos; }, timeout);
  }

 private:
  std::string url_;
  std::string plugin_dir_;
  std::string log_path_;
  DaemonSettings settings_;
  std::map<std::string, std::string> env_;
  pid_t pid_ = -1;
  std::optional<int> exit_;
  std::size_t log_offset_ = 0;
  std::int64_t started_us_ = 0;
  int incarnations_ = 0;
};

// SIGKILLs every kagzid process whose command line mentions `marker` (a
// directory of the test's): daemons an earlier run of the test left behind
// when it was killed itself (they live in process groups of their own, so
// nothing else takes them down).
inline int KillStrayDaemons(const std::string& marker) {
  int killed = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::ifstream in(entry.path() / "cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string argv0 = cmdline.substr(0, cmdline.find('\0'));
    if (!argv0.ends_with("/kagzid") || cmdline.find(marker) == std::string::npos) continue;
    if (::kill(std::stoi(name), SIGKILL) == 0) ++killed;
  }
  return killed;
}

// The instance ids (kagzi_daemons) that processes of `pids` registered.
inline std::string PidArray(const std::vector<pid_t>& pids) {
  std::string out = "{";
  for (std::size_t i = 0; i < pids.size(); ++i) {
    if (i) out += ",";
    out += std::to_string(pids[i]);
  }
  return out + "}";
}

// ---------------------------------------------------------------------------
// The chaos workflow's input, ledger and journal
// ---------------------------------------------------------------------------

struct ChaosInput {
  std::string ledger;
  std::string marks;  // empty: the flaky step never fails
  int pre = 2;
  int post = 2;
  int step_ms = 0;
  std::string slow;
  int slow_ms = 0;
  int sleep_ms = 0;
  int retry_ms = 100;
  std::string event = "go";  // empty: no event wait

  std::string Json() const {
    std::string s = "{\"ledger\":\"" + ledger + "\"";
    if (!marks.empty()) s += ",\"marks\":\"" + marks + "\"";
    s += ",\"pre\":" + std::to_string(pre) + ",\"post\":" + std::to_string(post) +
         ",\"step_ms\":" + std::to_string(step_ms);
    if (!slow.empty()) s += ",\"slow\":\"" + slow + "\",\"slow_ms\":" + std::to_string(slow_ms);
    s += ",\"sleep_ms\":" + std::to_string(sleep_ms) + ",\"retry_ms\":" + std::to_string(retry_ms) +
         ",\"event\":\"" + event + "\"}";
    return s;
  }

  // The journal a finished run must have: (step id, kind) in seq order.
  std::vector<std::pair<std::string, std::string>> ExpectedJournal() const {
    std::vector<std::pair<std::string, std::string>> out;
    for (int k = 0; k < pre; ++k) out.emplace_back("s-" + std::to_string(k), "step");
    if (sleep_ms > 0) out.emplace_back("nap", "sleep");
    out.emplace_back("flaky", "step");
    if (!event.empty()) out.emplace_back("wait", "event");
    for (int k = 0; k < post; ++k) out.emplace_back("t-" + std::to_string(k), "step");
    return out;
  }
};

struct Execution {
  std::string tag;
  std::int64_t start_us = 0;
  std::size_t line = 0;  // position in the ledger: the order of the writes
};

// (run id, step id) -> its executions, in ledger order.
using Ledger = std::map<std::pair<std::string, std::string>, std::vector<Execution>>;

inline Ledger ReadLedger(const std::string& path) {
  Ledger out;
  std::ifstream in(path);
  std::string line;
  std::size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::istringstream fields(line);
    std::string run, step, tag;
    if (!(fields >> run >> step >> tag)) {
      ADD_FAILURE() << path << ":" << n << ": malformed ledger line \"" << line << "\"";
      continue;
    }
    Execution e{tag, std::atoll(tag.substr(0, tag.find(':')).c_str()), n};
    out[{run, step}].push_back(std::move(e));
  }
  return out;
}

struct JournalEntry {
  std::string step_id;
  int seq = 0;
  std::string kind;
  std::string status;
  int attempts = 0;
  std::string tag;  // output's "tag" (steps)
  std::int64_t finished_us = 0;
};

// run id -> its journal in seq order.
inline std::map<std::string, std::vector<JournalEntry>> ReadJournals(const std::string& url) {
  std::map<std::string, std::vector<JournalEntry>> out;
  SqlRows r = SqlPatiently(url,
                           "SELECT run_id::text, step_id, seq, kind, status, attempts, "
                           "output::jsonb->>'tag', kagzi_us(finished_at) FROM kagzi_steps "
                           "ORDER BY run_id, seq");
  EXPECT_TRUE(r.ok) << r.error;
  for (std::size_t i = 0; i < r.rows.size(); ++i) {
    JournalEntry e{r.Value(i, 1), static_cast<int>(r.Int(i, 2)), r.Value(i, 3),
                   r.Value(i, 4), static_cast<int>(r.Int(i, 5)), r.Value(i, 6),
                   r.Int(i, 7)};
    out[r.Value(i, 0)].push_back(std::move(e));
  }
  return out;
}

// What the ledger says about the recorded steps of the given runs.
struct LedgerVerdict {
  int recorded_steps = 0;  // journal entries of kind step, COMPLETED
  int executions = 0;      // ledger lines of those steps
  // The recorded execution is missing from the ledger (the journal holds a
  // result no execution produced): must be 0.
  int recorded_without_execution = 0;
  // Executions that started after their step had been recorded: a recorded
  // step executed again. Must be 0.
  int duplicated_recorded = 0;
  // Executions beyond the expected ones that started before the record: the
  // daemon died or lost its lease between the execution and its record
  // (at-least-once; legitimate).
  int reexecuted_unrecorded = 0;
  // Steps with more than one ledger line, whatever the reason (the flaky
  // step's designed first failure not counted).
  int steps_with_several_lines = 0;
  // Steps that ran and were never recorded although the run completed.
  int executed_but_missing_from_journal = 0;
  std::vector<std::string> problems;  // the first few, described

  void Problem(std::string what) {
    if (problems.size() < 20) problems.push_back(std::move(what));
  }
};

// `designed_failures(run id, step id)`: executions of that step expected to
// fail by design before the recorded one (1 for "flaky" when marks are used).
template <typename DesignedFailures>
LedgerVerdict AnalyzeLedger(const Ledger& ledger,
                            const std::map<std::string, std::vector<JournalEntry>>& journals,
                            const std::set<std::string>& runs, DesignedFailures designed_failures) {
  LedgerVerdict v;
  std::set<std::pair<std::string, std::string>> recorded_keys;
  for (const auto& run : runs) {
    auto j = journals.find(run);
    if (j == journals.end()) continue;
    for (const auto& entry : j->second) {
      if (entry.kind != "step" || entry.status != "COMPLETED") continue;
      ++v.recorded_steps;
      recorded_keys.insert({run, entry.step_id});
      auto it = ledger.find({run, entry.step_id});
      if (it == ledger.end()) {
        ++v.recorded_without_execution;
        v.Problem("run " + run + " step " + entry.step_id + ": recorded, never executed");
        continue;
      }
      const auto& execs = it->second;
      v.executions += static_cast<int>(execs.size());
      auto recorded = std::find_if(execs.begin(), execs.end(),
                                   [&](const Execution& e) { return e.tag == entry.tag; });
      if (recorded == execs.end()) {
        ++v.recorded_without_execution;
        v.Problem("run " + run + " step " + entry.step_id + ": recorded tag " + entry.tag +
                  " is not in the ledger");
        continue;
      }
      int before = 0;
      for (const auto& e : execs) {
        if (e.tag == entry.tag) continue;
        if (e.start_us > entry.finished_us) {
          ++v.duplicated_recorded;
          v.Problem("run " + run + " step " + entry.step_id + ": execution " + e.tag + " started " +
                    std::to_string(e.start_us - entry.finished_us) +
                    " us after the step was recorded (execution " + entry.tag + ")");
        } else {
          ++before;
        }
      }
      int designed = designed_failures(run, entry.step_id);
      v.reexecuted_unrecorded += std::max(0, before - designed);
      if (static_cast<int>(execs.size()) > 1 + designed) ++v.steps_with_several_lines;
    }
  }
  for (const auto& [key, execs] : ledger) {
    if (runs.contains(key.first) && !recorded_keys.contains(key)) {
      ++v.executed_but_missing_from_journal;
      v.Problem("run " + key.first + " step " + key.second + ": executed " +
                std::to_string(execs.size()) + " time(s), not recorded");
    }
  }
  return v;
}

// Checks one run's journal against the chaos input: every expected entry,
// final, in order, nothing else. Returns "" or what is wrong.
inline std::string JournalProblem(const std::vector<JournalEntry>& journal,
                                  const ChaosInput& input) {
  auto expected = input.ExpectedJournal();
  if (journal.size() != expected.size()) {
    std::string got;
    for (const auto& e : journal) got += e.step_id + "(" + e.status + ") ";
    return "journal has " + std::to_string(journal.size()) + " entries, expected " +
           std::to_string(expected.size()) + ": " + got;
  }
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto& e = journal[i];
    if (e.step_id != expected[i].first || e.kind != expected[i].second ||
        e.seq != static_cast<int>(i) || e.status != "COMPLETED") {
      return "entry " + std::to_string(i) + " is " + e.step_id + "/" + e.kind + "/" + e.status +
             " seq " + std::to_string(e.seq) + ", expected " + expected[i].first + "/" +
             expected[i].second + "/COMPLETED";
    }
  }
  return "";
}

// Runs not yet terminal, described (status, owner, attempts, journal size).
inline std::string DescribeOpenRuns(const std::string& url, int limit = 20) {
  SqlRows r =
      Sql(url,
          "SELECT r.id, r.status, coalesce(r.lease_owner::text, '-'), r.lease_epoch, "
          "r.attempts, coalesce(to_char(r.lease_expires_at, 'HH24:MI:SS.MS'), '-'), "
          "CASE WHEN isfinite(r.available_at) THEN to_char(r.available_at, "
          "'HH24:MI:SS.MS') ELSE 'infinity' END, "
          "(SELECT string_agg(s.step_id || ':' || s.status, ',' ORDER BY s.seq) "
          "FROM kagzi_steps s WHERE s.run_id = r.id), "
          "coalesce((SELECT d.pid::text FROM kagzi_daemons d WHERE d.id = r.lease_owner), "
          "'-') FROM kagzi_runs r "
          "WHERE r.status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED') ORDER BY r.id LIMIT " +
              std::to_string(limit));
  if (!r.ok) return "(cannot list open runs: " + r.error + ")";
  std::string out;
  for (std::size_t i = 0; i < r.rows.size(); ++i) {
    out += "  run " + r.Value(i, 0) + " " + r.Value(i, 1) + " owner " + r.Value(i, 2) + " (pid " +
           r.Value(i, 8) + ") epoch " + r.Value(i, 3) + " attempts " + r.Value(i, 4) +
           " lease until " + r.Value(i, 5) + " available " + r.Value(i, 6) + " journal [" +
           r.Value(i, 7) + "]\n";
  }
  return out;
}

}  // namespace kagzi::testing::chaos
