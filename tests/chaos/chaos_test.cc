// The chaos test: three kagzid processes on one private PostgreSQL run many
// runs of the "chaos" fixture workflow (steps, a durable sleep, a step that
// fails retryably on its first attempt, an event wait, more steps) while the
// harness SIGKILLs a random daemon every couple of seconds and starts it
// again, restarts PostgreSQL with `pg_ctl restart -m fast` and with
// `-m immediate`, and terminates the daemons' backends with
// pg_terminate_backend. Events come from `kagzictl signal` and from
// PgStore::SendEvent (both real client paths), some before the run waits.
//
// Then a calm phase (no more faults) in which every run must finish, and the
// verdict:
//   - every run COMPLETED, reached a terminal state exactly once (an audit
//     trigger counts the transitions), with its whole journal;
//   - the tagged ledger (tests/plugins/chaos) shows no recorded step that was
//     executed again: every execution other than the recorded one started
//     before the record (at-least-once, counted as "re-executed unrecorded");
//   - every daemon reconnected by itself after each PostgreSQL restart and
//     each backend termination (claims by that process after the fault, in
//     the database and in its log), none exited on its own, all drain on
//     SIGTERM;
//   - no run stalls: a monitor samples the RUNNING runs twice a second, and
//     a lease whose owner still heartbeats but whose run records nothing for
//     KAGZI_CHAOS_STALL_SECONDS (database outages excluded) is a stalled run
//     (held, renewed, not worked on; a later kill of its owner would hide
//     it, so the calm phase alone is not enough);
//   - every run a killed daemon held is claimed again (or was finished by
//     its last write, in flight at the kill), and the time from the kill to
//     the next claim (an audit trigger records every claim) is reported.
// The figures are printed as a table and written as JSON (KAGZI_CHAOS_REPORT,
// default <build>/chaos/chaos-report-<runs>.json).
//
// Parameters (environment; the defaults are the short version that ctest
// runs, scripts/chaos.sh sets the long one; docs/chaos.md):
//   KAGZI_CHAOS_RUNS (500), KAGZI_CHAOS_START_SECONDS (30: runs are started
//   evenly over this window, and the faults fall inside it),
//   KAGZI_CHAOS_DAEMONS (3), KAGZI_CHAOS_KILL_EVERY_MS (2000),
//   KAGZI_CHAOS_CONCURRENCY (8), KAGZI_CHAOS_STEP_MS (100),
//   KAGZI_CHAOS_SLEEP_MS (1000), KAGZI_CHAOS_CALM_SECONDS (180: how long the
//   calm phase may take), KAGZI_CHAOS_CTL_EVERY (10: every n-th start and
//   event goes through kagzictl), KAGZI_CHAOS_STALL_SECONDS (15: a lease
//   whose owner heartbeats but whose run makes no progress for this long is
//   a stalled run), KAGZI_CHAOS_SEED (random),
//   KAGZI_CHAOS_LEASE_TTL (2s), KAGZI_CHAOS_HEARTBEAT (500ms),
//   KAGZI_CHAOS_POLL (300ms), KAGZI_CHAOS_PG_PORT (55434),
//   KAGZI_CHAOS_REPORT (JSON path), KAGZI_CHAOS_KEEP_PG (keep the cluster).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <deque>
#include <mutex>
#include <numeric>

#include <fmt/format.h>

#include "chaos/chaos_support.h"
#include "e2e/e2e_support.h"
#include "kagzi/core/config.h"
#include "kagzi/core/store.h"

namespace kagzi::testing::chaos {
namespace {

using Clock = std::chrono::steady_clock;

struct Params {
  int runs = 500;
  int start_seconds = 30;
  int daemons = 3;
  int kill_every_ms = 2000;
  int concurrency = 8;
  int step_ms = 100;
  int sleep_ms = 1000;
  int calm_seconds = 180;
  int ctl_every = 10;
  int stall_seconds = 15;
  unsigned seed = 0;
  std::string lease_ttl = "2s";
  std::string heartbeat = "500ms";
  std::string poll = "300ms";
  int pg_port = 55434;
  std::string report;
};

Params LoadParams() {
  Params p;
  p.runs = static_cast<int>(EnvInt("KAGZI_CHAOS_RUNS", p.runs));
  p.start_seconds = static_cast<int>(EnvInt("KAGZI_CHAOS_START_SECONDS", p.start_seconds));
  p.daemons = static_cast<int>(EnvInt("KAGZI_CHAOS_DAEMONS", p.daemons));
  p.kill_every_ms = static_cast<int>(EnvInt("KAGZI_CHAOS_KILL_EVERY_MS", p.kill_every_ms));
  p.concurrency = static_cast<int>(EnvInt("KAGZI_CHAOS_CONCURRENCY", p.concurrency));
  p.step_ms = static_cast<int>(EnvInt("KAGZI_CHAOS_STEP_MS", p.step_ms));
  p.sleep_ms = static_cast<int>(EnvInt("KAGZI_CHAOS_SLEEP_MS", p.sleep_ms));
  p.calm_seconds = static_cast<int>(EnvInt("KAGZI_CHAOS_CALM_SECONDS", p.calm_seconds));
  p.ctl_every = std::max(1, static_cast<int>(EnvInt("KAGZI_CHAOS_CTL_EVERY", p.ctl_every)));
  p.stall_seconds = static_cast<int>(EnvInt("KAGZI_CHAOS_STALL_SECONDS", p.stall_seconds));
  p.seed = static_cast<unsigned>(EnvInt("KAGZI_CHAOS_SEED", std::random_device{}()));
  p.lease_ttl = EnvOr("KAGZI_CHAOS_LEASE_TTL", p.lease_ttl);
  p.heartbeat = EnvOr("KAGZI_CHAOS_HEARTBEAT", p.heartbeat);
  p.poll = EnvOr("KAGZI_CHAOS_POLL", p.poll);
  p.pg_port = static_cast<int>(EnvInt("KAGZI_CHAOS_PG_PORT", p.pg_port));
  p.report =
      EnvOr("KAGZI_CHAOS_REPORT", RequiredEnv("KAGZI_TEST_BINARY_DIR") + "/chaos/chaos-report-" +
                                      std::to_string(p.runs) + ".json");
  return p;
}

// Test-only instrumentation on the chaos database (not part of Kagzi's
// schema): every claim (a RUNNING row whose lease epoch changed) and every
// transition into a terminal state, with the time it happened.
constexpr const char* kAuditSql = R"sql(
CREATE TABLE chaos_claims (run_id uuid NOT NULL, epoch bigint NOT NULL, owner uuid,
                           at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE INDEX ON chaos_claims (run_id, epoch);
CREATE INDEX ON chaos_claims (owner, at);
CREATE TABLE chaos_terminal (run_id uuid NOT NULL, status text NOT NULL,
                             at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION chaos_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status = 'RUNNING' AND NEW.lease_epoch IS DISTINCT FROM OLD.lease_epoch THEN
    INSERT INTO chaos_claims (run_id, epoch, owner) VALUES (NEW.id, NEW.lease_epoch, NEW.lease_owner);
  END IF;
  IF NEW.status IN ('COMPLETED', 'FAILED', 'CANCELLED')
     AND OLD.status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED') THEN
    INSERT INTO chaos_terminal (run_id, status) VALUES (NEW.id, NEW.status);
  END IF;
  RETURN NULL;
END;
$$;
CREATE TRIGGER chaos_audit AFTER UPDATE OF status, lease_epoch ON kagzi_runs
  FOR EACH ROW EXECUTE FUNCTION chaos_audit();
)sql";

struct KillEvent {
  int slot = 0;
  std::int64_t at_us = 0;
  std::vector<std::pair<std::string, std::int64_t>> orphans;  // (run, epoch) it held
};

struct FaultEvent {
  std::string kind;  // restart-fast, restart-immediate, terminate-backends
  std::int64_t start_us = 0;
  std::int64_t end_us = 0;
  std::int64_t backends = 0;          // terminate: how many were terminated
  std::vector<double> reconnect_s;    // per daemon that lived through it
  std::vector<std::string> failures;  // daemons that did not reconnect
};

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto idx = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size()))) - 1;
  return v[std::min(idx, v.size() - 1)];
}

class ChaosTest : public ::testing::Test {
 protected:
  Params p_ = LoadParams();
};

TEST_F(ChaosTest, DaemonsSurviveKillsDatabaseRestartsAndTerminatedBackends) {
  const Params& p = p_;
  ASSERT_GE(p.runs, 10);
  ASSERT_GE(p.daemons, 1);
  ASSERT_GE(p.start_seconds, 10);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines reach a log file at once
  std::mt19937 rng(p.seed);
  std::printf("chaos: %d runs over %d s, %d daemons, a kill every ~%d ms, seed %u\n", p.runs,
              p.start_seconds, p.daemons, p.kill_every_ms, p.seed);

  // Everything in one directory under the build dir, kept for a post-mortem.
  const std::string work =
      RequiredEnv("KAGZI_TEST_BINARY_DIR") + "/chaos/run-" + std::to_string(p.runs);
  KillStrayDaemons(work + "/plugins");
  std::filesystem::remove_all(work);
  std::filesystem::create_directories(work + "/marks");
  ::chmod(work.c_str(), 0755);
  const std::string ledger = work + "/ledger.txt";
  const std::string plugin_dir = work + "/plugins";
  FillPluginDir(plugin_dir, {FixturePluginPath("chaos.so")});

  PrivatePostgres pg(RequiredEnv("KAGZI_TEST_BINARY_DIR") + "/chaos/pg", p.pg_port);
  ASSERT_TRUE(pg.Start());
  ASSERT_TRUE(pg.CreateDatabase("kagzi_chaos"));
  const std::string url = pg.Url("kagzi_chaos");
  {
    PgStore migrator(PgStoreOptions{url, "kagzi-chaos-harness", 1});
    auto m = migrator.Migrate();
    ASSERT_TRUE(m.ok()) << m.status().message();
  }
  ASSERT_TRUE(MustSql(url, kAuditSql).ok);

  DaemonSettings settings;
  settings.lease_ttl = p.lease_ttl;
  settings.heartbeat_interval = p.heartbeat;
  settings.poll_interval = p.poll;
  settings.concurrency = p.concurrency;
  std::vector<std::unique_ptr<DaemonGroup>> daemons;
  for (int i = 0; i < p.daemons; ++i) {
    daemons.push_back(std::make_unique<DaemonGroup>(
        url, plugin_dir, work + "/kagzid-" + std::to_string(i) + ".log", settings));
    ASSERT_TRUE(daemons.back()->Start());
  }
  for (auto& d : daemons) {
    ASSERT_TRUE(d->WaitForLog("ready: instance", seconds(60))) << d->LogSince();
  }

  ChaosInput input;
  input.ledger = ledger;
  input.marks = work + "/marks";
  input.step_ms = p.step_ms;
  input.sleep_ms = p.sleep_ms;
  const std::string input_json = input.Json();

  // --- the client side: starting runs and sending events ------------------
  std::mutex mu;
  std::vector<std::string> ids(static_cast<std::size_t>(p.runs));  // guarded by mu
  std::deque<std::string> early;                                   // guarded by mu
  std::atomic<int> started{0}, start_retries{0};
  std::atomic<int> sent_store{0}, sent_ctl{0}, sent_early{0}, send_failures{0};
  std::atomic<bool> stop_clients{false};
  const auto t0 = Clock::now();
  const milliseconds window(1000LL * p.start_seconds);

  std::thread starter([&] {
    PgStore store(PgStoreOptions{url, "kagzi-chaos-starter", 2});
    for (int i = 0; i < p.runs && !stop_clients; ++i) {
      std::this_thread::sleep_until(t0 + window * i / p.runs);
      const std::string key = "chaos-" + std::to_string(i);
      std::string id;
      while (id.empty() && !stop_clients) {
        if (i % p.ctl_every == 0) {
          auto r = Ctl(url, {"start", "chaos", "--input", input_json, "--id", key}, seconds(60));
          if (r.exit_code == 0) id = FirstLine(r.out);
        } else {
          auto r = store.StartRun(StartRequest{"chaos", input_json, key, 0, std::nullopt});
          if (r.ok()) id = r->run_id;
        }
        if (id.empty()) {
          ++start_retries;
          std::this_thread::sleep_for(milliseconds(200));
        }
      }
      std::lock_guard lock(mu);
      ids[static_cast<std::size_t>(i)] = id;
      if (i % 5 == 2) early.push_back(id);  // the event arrives before the wait
      ++started;
    }
  });

  std::thread signaller([&] {
    PgStore store(PgStoreOptions{url, "kagzi-chaos-signaller", 2});
    std::set<std::string> sent;
    int n = 0;
    while (!stop_clients) {
      std::vector<std::pair<std::string, bool>> todo;  // (run, early)
      {
        std::lock_guard lock(mu);
        while (!early.empty()) {
          todo.emplace_back(early.front(), true);
          early.pop_front();
        }
      }
      SqlRows waiting = Sql(url,
                            "SELECT run_id::text FROM kagzi_steps WHERE kind = 'event' AND "
                            "status = 'WAITING'");
      for (const auto& row : waiting.rows) todo.emplace_back(row[0].value_or(""), false);
      for (const auto& [run, is_early] : todo) {
        if (run.empty() || sent.contains(run)) continue;
        const std::string payload = "{\"run\":\"" + run + "\"}";
        bool ok = false;
        if (++n % p.ctl_every == 0) {
          auto r = Ctl(url, {"signal", run, "go", "--data", payload}, seconds(60));
          ok = r.exit_code == 0;
          if (ok) ++sent_ctl;
        } else {
          ok = store.SendEvent(run, "go", payload).ok();
          if (ok) ++sent_store;
        }
        if (ok) {
          sent.insert(run);
          if (is_early) ++sent_early;
        } else {
          ++send_failures;
          if (is_early) {
            std::lock_guard lock(mu);
            early.push_back(run);
          }
        }
      }
      std::this_thread::sleep_for(milliseconds(200));
    }
  });

  // A run held by a live owner that records nothing for stall_seconds is
  // stalled. Samples taken while the database is unreachable restart every
  // clock (an outage is not a stall).
  std::atomic<int> stalled{0};
  std::vector<std::string> stall_descriptions;  // guarded by mu
  std::thread monitor([&] {
    struct Seen {
      std::int64_t steps = 0;
      Clock::time_point since;
      bool reported = false;
    };
    std::map<std::pair<std::string, std::int64_t>, Seen> seen;
    auto ttl = ParseDuration(p.lease_ttl);
    const std::string ttl_ms = std::to_string(ttl.ok() ? ttl->count() : 2000);
    while (!stop_clients) {
      SqlRows r = Sql(url,
                      "SELECT r.id::text, r.lease_epoch, (SELECT count(*) FROM kagzi_steps s "
                      "WHERE s.run_id = r.id), coalesce(d.heartbeat_at > now() - "
                      "$1::bigint * interval '1 millisecond', false), coalesce(d.pid, 0) "
                      "FROM kagzi_runs r LEFT JOIN kagzi_daemons d ON d.id = r.lease_owner "
                      "WHERE r.status = 'RUNNING'",
                      {ttl_ms});
      const auto now = Clock::now();
      if (!r.ok) {
        for (auto& [key, s] : seen) s.since = now;
      } else {
        std::map<std::pair<std::string, std::int64_t>, Seen> next;
        for (std::size_t i = 0; i < r.rows.size(); ++i) {
          auto key = std::make_pair(r.Value(i, 0), r.Int(i, 1));
          Seen s{r.Int(i, 2), now, false};
          if (auto it = seen.find(key);
              it != seen.end() && it->second.steps == s.steps && r.Value(i, 3) == "t") {
            s = it->second;
          }
          if (!s.reported && now - s.since > seconds(p.stall_seconds)) {
            s.reported = true;
            ++stalled;
            std::lock_guard lock(mu);
            stall_descriptions.push_back(fmt::format(
                "run {} epoch {}: held by a live instance (pid {}) with no progress for {} s",
                key.first, key.second, r.Value(i, 4), p.stall_seconds));
          }
          next[key] = s;
        }
        seen = std::move(next);
      }
      std::this_thread::sleep_for(milliseconds(500));
    }
  });

  // --- the chaos controller (this thread) -----------------------------------
  std::vector<KillEvent> kills;
  std::vector<FaultEvent> faults;
  std::vector<std::string> unexpected_exits;
  const std::vector<std::pair<double, std::string>> schedule = {{0.25, "restart-fast"},
                                                                {0.40, "terminate-backends"},
                                                                {0.55, "restart-immediate"},
                                                                {0.70, "terminate-backends"}};
  std::uniform_int_distribution<int> pick_daemon(0, p.daemons - 1);
  std::uniform_int_distribution<int> jitter(p.kill_every_ms * 3 / 4, p.kill_every_ms * 5 / 4);
  auto next_kill = Clock::now() + milliseconds(jitter(rng));

  auto open_runs = [&]() -> std::int64_t {
    SqlRows r = Sql(url,
                    "SELECT count(*) FROM kagzi_runs WHERE status NOT IN "
                    "('COMPLETED', 'FAILED', 'CANCELLED')");
    return r.ok ? r.Int() : -1;
  };

  // Claims made after `after_us` by the processes of daemon `d`.
  auto claims_since = [&](DaemonGroup& d, std::int64_t after_us) -> std::int64_t {
    SqlRows r = Sql(url,
                    "SELECT count(*) FROM chaos_claims c JOIN kagzi_daemons k ON k.id = c.owner "
                    "WHERE k.pid = ANY($1::int[]) AND c.at > kagzi_ts($2::bigint)",
                    {PidArray(d.GroupPids()), std::to_string(after_us)});
    return r.ok ? r.Int() : 0;
  };

  auto do_fault = [&](const std::string& kind) {
    FaultEvent f;
    f.kind = kind;
    std::vector<std::size_t> offsets;
    std::vector<bool> lived_through;
    for (auto& d : daemons) {
      offsets.push_back(d->LogSize());
      lived_through.push_back(d->running());
    }
    f.start_us = WallMicros();
    if (kind == "restart-fast") {
      EXPECT_TRUE(pg.Restart("fast"));
    } else if (kind == "restart-immediate") {
      EXPECT_TRUE(pg.Restart("immediate"));
    } else {
      SqlRows r = SqlPatiently(url,
                               "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM "
                               "pg_stat_activity WHERE application_name LIKE 'kagzid%'");
      EXPECT_TRUE(r.ok) << r.error;
      f.backends = r.Int();
      EXPECT_GT(f.backends, 0) << "no kagzid backend to terminate";
    }
    f.end_us = WallMicros();
    std::printf(
        "chaos: %s took %.2f s%s\n", kind.c_str(), static_cast<double>(f.end_us - f.start_us) / 1e6,
        kind == "terminate-backends" ? fmt::format(" ({} backends)", f.backends).c_str() : "");
    // Every daemon that lived through it must claim again by itself: in
    // the database (a claim by its processes after the fault) and in its
    // log (a "claimed" line after the fault). Kills wait meanwhile.
    for (std::size_t i = 0; i < daemons.size(); ++i) {
      if (!lived_through[i]) continue;
      auto& d = *daemons[i];
      auto since = Clock::now();
      bool ok = Eventually(
          [&] {
            return claims_since(d, f.end_us) > 0 &&
                   d.LogSince(offsets[i]).find("claimed ") != std::string::npos;
          },
          seconds(120));
      double took = std::chrono::duration<double>(Clock::now() - since).count();
      f.reconnect_s.push_back(took);
      if (!ok || !d.running()) {
        f.failures.push_back(
            fmt::format("daemon {} (pid {}) did not resume claiming after {}", i, d.pid(), kind));
      }
    }
    faults.push_back(std::move(f));
  };

  auto do_kill = [&](int slot) {
    auto& d = *daemons[static_cast<std::size_t>(slot)];
    KillEvent k;
    k.slot = slot;
    std::vector<pid_t> pids = d.GroupPids();
    std::int64_t incarnation_us = d.started_us();
    k.at_us = WallMicros();
    d.KillGroup();
    EXPECT_EQ(d.exit_status(), -SIGKILL);
    // The runs it held: still RUNNING under one of its instances. Nobody
    // can claim them before their lease expires, so this read is exact.
    SqlRows r = SqlPatiently(url,
                             "SELECT r.id::text, r.lease_epoch FROM kagzi_runs r JOIN "
                             "kagzi_daemons k ON k.id = r.lease_owner WHERE r.status = "
                             "'RUNNING' AND k.pid = ANY($1::int[]) AND "
                             "k.started_at >= kagzi_ts($2::bigint)",
                             {PidArray(pids), std::to_string(incarnation_us - 1'000'000)});
    EXPECT_TRUE(r.ok) << r.error;
    for (std::size_t i = 0; i < r.rows.size(); ++i) k.orphans.emplace_back(r.Value(i), r.Int(i, 1));
    kills.push_back(std::move(k));
    EXPECT_TRUE(d.Start());
  };

  std::size_t next_fault = 0;
  auto last_progress = Clock::now();
  while (true) {
    auto now = Clock::now();
    for (std::size_t i = 0; i < daemons.size(); ++i) {
      if (!daemons[i]->running()) {
        unexpected_exits.push_back(fmt::format("daemon {} exited by itself with status {}", i,
                                               daemons[i]->exit_status().value_or(0)));
        EXPECT_TRUE(daemons[i]->Start());
      }
    }
    if (next_fault < schedule.size() && now >= t0 + std::chrono::duration_cast<Clock::duration>(
                                                        window * schedule[next_fault].first)) {
      do_fault(schedule[next_fault].second);
      ++next_fault;
      next_kill = Clock::now() + milliseconds(jitter(rng));
      continue;
    }
    if (now >= next_kill) {
      do_kill(pick_daemon(rng));
      next_kill = Clock::now() + milliseconds(jitter(rng));
    }
    if (started == p.runs && next_fault == schedule.size()) break;
    if (now - last_progress > seconds(10)) {
      last_progress = now;
      std::printf("chaos: %.0f s, %d started, %lld open, %zu kills\n",
                  std::chrono::duration<double>(now - t0).count(), started.load(),
                  static_cast<long long>(open_runs()), kills.size());
      std::fflush(stdout);
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  const auto chaos_end = Clock::now();

  // --- calm: no more faults; every run must finish -------------------------
  bool all_done = Eventually([&] { return open_runs() == 0; }, seconds(p.calm_seconds));
  const auto calm_end = Clock::now();
  std::string open_description = all_done ? "" : DescribeOpenRuns(url);
  stop_clients = true;
  starter.join();
  signaller.join();
  monitor.join();

  // Every daemon process still running, and each drains and exits cleanly.
  for (std::size_t i = 0; i < daemons.size(); ++i) {
    EXPECT_TRUE(daemons[i]->running()) << "daemon " << i << " is gone";
    daemons[i]->Signal(SIGTERM);
  }
  for (std::size_t i = 0; i < daemons.size(); ++i) {
    EXPECT_EQ(daemons[i]->Wait(seconds(60)), 0)
        << "daemon " << i << " did not stop cleanly on SIGTERM; log: " << daemons[i]->log_path();
  }

  // --- the verdict -----------------------------------------------------------
  std::set<std::string> run_ids;
  {
    std::lock_guard lock(mu);
    run_ids.insert(ids.begin(), ids.end());
  }
  run_ids.erase("");
  EXPECT_EQ(run_ids.size(), static_cast<std::size_t>(p.runs)) << "runs started or ids reused";

  SqlRows runs = MustSql(url,
                         "SELECT r.id::text, r.status, r.attempts, "
                         "r.output::jsonb->'payload'->>'run', "
                         "(SELECT count(*) FROM chaos_terminal t WHERE t.run_id = r.id), "
                         "(SELECT count(*) FROM kagzi_events e WHERE e.run_id = r.id AND "
                         "e.consumed_at IS NOT NULL), "
                         "(SELECT count(*) FROM kagzi_events e WHERE e.run_id = r.id) "
                         "FROM kagzi_runs r");
  auto journals = ReadJournals(url);
  Ledger ledger_lines = ReadLedger(ledger);

  int completed = 0, lost = 0, extra_events = 0, retried = 0;
  std::vector<double> claims_per_run;
  std::vector<std::string> run_problems;
  std::set<std::string> seen;
  for (std::size_t i = 0; i < runs.rows.size(); ++i) {
    const std::string id = runs.Value(i, 0);
    seen.insert(id);
    std::string problem;
    if (!run_ids.contains(id)) problem = "a run the harness did not start";
    if (runs.Value(i, 1) == "COMPLETED") ++completed;
    if (problem.empty() && runs.Value(i, 1) != "COMPLETED") problem = "status " + runs.Value(i, 1);
    if (problem.empty() && runs.Int(i, 4) != 1) {
      problem = fmt::format("{} terminal transitions", runs.Int(i, 4));
    }
    if (problem.empty()) problem = JournalProblem(journals[id], input);
    if (problem.empty() && runs.Value(i, 3) != id) {
      problem = "output carries the event payload of run \"" + runs.Value(i, 3) + "\"";
    }
    if (problem.empty() && runs.Int(i, 5) != 1) {
      problem = fmt::format("{} events consumed", runs.Int(i, 5));
    }
    extra_events += static_cast<int>(runs.Int(i, 6) - runs.Int(i, 5));
    claims_per_run.push_back(static_cast<double>(runs.Int(i, 2)));
    for (const auto& e : journals[id]) {
      if (e.step_id == "flaky" && e.attempts == 2) ++retried;
    }
    if (!problem.empty()) {
      ++lost;
      if (run_problems.size() < 20) run_problems.push_back("run " + id + ": " + problem);
    }
  }
  for (const auto& id : run_ids) {
    if (!seen.contains(id)) {
      ++lost;
      run_problems.push_back("run " + id + ": missing from kagzi_runs");
    }
  }

  // The ledger against the journals of the runs that finished (an open run
  // has executed steps it has not recorded yet: it is counted as lost).
  std::set<std::string> completed_ids;
  for (std::size_t i = 0; i < runs.rows.size(); ++i) {
    if (runs.Value(i, 1) == "COMPLETED") completed_ids.insert(runs.Value(i, 0));
  }
  LedgerVerdict verdict = AnalyzeLedger(
      ledger_lines, journals, completed_ids,
      [](const std::string&, const std::string& step) { return step == "flaky" ? 1 : 0; });

  // Kill to next claim, for every run a killed daemon held.
  SqlRows claim_rows = MustSql(url,
                               "SELECT run_id::text, epoch, kagzi_us(at) FROM chaos_claims "
                               "ORDER BY run_id, epoch");
  std::map<std::string, std::vector<std::pair<std::int64_t, std::int64_t>>> claims;
  for (std::size_t i = 0; i < claim_rows.rows.size(); ++i) {
    claims[claim_rows.Value(i, 0)].emplace_back(claim_rows.Int(i, 1), claim_rows.Int(i, 2));
  }
  // Waits that overlap a database fault are reported apart: the takeover
  // then also waits for the database.
  // A run whose last write (its completion) was still in flight when its
  // daemon died (executing in the backend, or committing: the read that
  // listed the orphans did not see it yet) needs no claim: counted apart.
  // Nobody else can finish a run without claiming it first.
  SqlRows terminal_rows =
      MustSql(url, "SELECT run_id::text, kagzi_us(min(at)) FROM chaos_terminal GROUP BY 1");
  std::map<std::string, std::int64_t> terminal_at;
  for (std::size_t i = 0; i < terminal_rows.rows.size(); ++i) {
    terminal_at[terminal_rows.Value(i, 0)] = terminal_rows.Int(i, 1);
  }
  std::vector<double> waits_ms, calm_waits_ms;
  int orphans = 0, orphans_never_reclaimed = 0, orphans_finished_by_last_write = 0;
  std::vector<std::string> orphan_problems;
  for (const auto& k : kills) {
    for (const auto& [run, epoch] : k.orphans) {
      ++orphans;
      const auto& c = claims[run];
      auto next = std::find_if(c.begin(), c.end(), [&](const auto& e) { return e.first > epoch; });
      if (next == c.end()) {
        if (terminal_at.contains(run)) {
          ++orphans_finished_by_last_write;
        } else {
          ++orphans_never_reclaimed;
          orphan_problems.push_back(fmt::format(
              "run {} (epoch {}) held by daemon {} killed at {} us", run, epoch, k.slot, k.at_us));
        }
        continue;
      }
      const double wait = static_cast<double>(next->second - k.at_us) / 1000.0;
      waits_ms.push_back(wait);
      bool overlaps = std::any_of(faults.begin(), faults.end(), [&](const FaultEvent& f) {
        return f.start_us < next->second && f.end_us > k.at_us;
      });
      if (!overlaps) calm_waits_ms.push_back(wait);
    }
  }
  double max_wait = waits_ms.empty() ? 0 : *std::max_element(waits_ms.begin(), waits_ms.end());
  double max_calm_wait =
      calm_waits_ms.empty() ? 0 : *std::max_element(calm_waits_ms.begin(), calm_waits_ms.end());
  double max_reconnect = 0;
  int fast = 0, immediate = 0, terminations = 0;
  std::int64_t backends = 0;
  std::vector<std::string> reconnect_failures;
  for (const auto& f : faults) {
    for (double s : f.reconnect_s) max_reconnect = std::max(max_reconnect, s);
    reconnect_failures.insert(reconnect_failures.end(), f.failures.begin(), f.failures.end());
    if (f.kind == "restart-fast") ++fast;
    if (f.kind == "restart-immediate") ++immediate;
    if (f.kind == "terminate-backends") {
      ++terminations;
      backends += f.backends;
    }
  }
  const double chaos_s = std::chrono::duration<double>(chaos_end - t0).count();
  const double total_s = std::chrono::duration<double>(calm_end - t0).count();
  const double mean_claims =
      claims_per_run.empty() ? 0
                             : std::accumulate(claims_per_run.begin(), claims_per_run.end(), 0.0) /
                                   static_cast<double>(claims_per_run.size());
  const double max_claims =
      claims_per_run.empty() ? 0 : *std::max_element(claims_per_run.begin(), claims_per_run.end());
  const int stuck = all_done ? 0 : static_cast<int>(open_runs());

  // --- the figures -----------------------------------------------------------
  std::vector<std::pair<std::string, std::string>> table = {
      {"runs", std::to_string(p.runs)},
      {"completed", std::to_string(completed)},
      {"lost runs (must be 0)", std::to_string(lost)},
      {"stuck runs at the deadline (must be 0)", std::to_string(stuck)},
      {"stalled runs during the chaos (must be 0)", std::to_string(stalled.load())},
      {"daemons", std::to_string(p.daemons)},
      {"SIGKILLs (daemon and its workers)", std::to_string(kills.size())},
      {"runs held by a killed daemon", std::to_string(orphans)},
      {"  finished by a write that landed after the kill",
       std::to_string(orphans_finished_by_last_write)},
      {"longest wait, kill to next claim", fmt::format("{:.0f} ms", max_wait)},
      {"  of those not overlapping a DB fault", fmt::format("{:.0f} ms", max_calm_wait)},
      {"median / p99 wait, kill to next claim",
       fmt::format("{:.0f} / {:.0f} ms", Percentile(waits_ms, 0.5), Percentile(waits_ms, 0.99))},
      {"PostgreSQL restarts (fast + immediate)", fmt::format("{} + {}", fast, immediate)},
      {"backend terminations (rounds / backends)", fmt::format("{} / {}", terminations, backends)},
      {"longest reconnect after a DB fault", fmt::format("{:.1f} s", max_reconnect)},
      {"recorded steps", std::to_string(verdict.recorded_steps)},
      {"step executions (ledger lines)", std::to_string(verdict.executions)},
      {"duplicated recorded steps (must be 0)", std::to_string(verdict.duplicated_recorded)},
      {"re-executed unrecorded steps", std::to_string(verdict.reexecuted_unrecorded)},
      {"runs whose retry was recorded (flaky attempts 2)", std::to_string(retried)},
      {"claims per run (mean / max)", fmt::format("{:.2f} / {:.0f}", mean_claims, max_claims)},
      {"events sent (store / kagzictl / before the wait)",
       fmt::format("{} / {} / {}", sent_store.load(), sent_ctl.load(), sent_early.load())},
      {"extra events (send retried after an unknown outcome)", std::to_string(extra_events)},
      {"client retries (start / send)",
       fmt::format("{} / {}", start_retries.load(), send_failures.load())},
      {"unexpected daemon exits (must be 0)", std::to_string(unexpected_exits.size())},
      {"chaos phase / total", fmt::format("{:.0f} s / {:.0f} s", chaos_s, total_s)},
  };
  std::printf("\n%-52s %s\n", "chaos figures", "");
  for (const auto& [k, v] : table) std::printf("  %-50s %s\n", k.c_str(), v.c_str());

  std::string json = fmt::format(
      "{{\n  \"runs\": {},\n  \"completed\": {},\n  \"lost\": {},\n  \"stuck\": {},\n"
      "  \"stalled\": {},\n"
      "  \"daemons\": {},\n  \"kills\": {},\n  \"runs_held_by_killed_daemons\": {},\n"
      "  \"orphans_never_reclaimed\": {},\n  \"orphans_finished_by_their_last_write\": {},\n"
      "  \"longest_wait_after_kill_ms\": {:.0f},\n"
      "  \"longest_wait_after_kill_without_db_fault_ms\": {:.0f},\n"
      "  \"median_wait_after_kill_ms\": {:.0f},\n"
      "  \"p99_wait_after_kill_ms\": {:.0f},\n"
      "  \"pg_restarts\": {{\"fast\": {}, \"immediate\": {}}},\n"
      "  \"backend_terminations\": {{\"rounds\": {}, \"backends\": {}}},\n"
      "  \"longest_reconnect_s\": {:.1f},\n  \"reconnect_failures\": {},\n"
      "  \"recorded_steps\": {},\n  \"step_executions\": {},\n"
      "  \"duplicated_recorded_steps\": {},\n  \"reexecuted_unrecorded_steps\": {},\n"
      "  \"recorded_without_execution\": {},\n  \"executed_but_not_recorded\": {},\n"
      "  \"retry_recorded_runs\": {},\n"
      "  \"claims_per_run\": {{\"mean\": {:.2f}, \"max\": {:.0f}}},\n"
      "  \"events\": {{\"store\": {}, \"kagzictl\": {}, \"before_wait\": {}, \"extra\": {}}},\n"
      "  \"client_retries\": {{\"start\": {}, \"send\": {}}},\n"
      "  \"unexpected_daemon_exits\": {},\n"
      "  \"chaos_seconds\": {:.1f},\n  \"total_seconds\": {:.1f},\n"
      "  \"params\": {{\"runs\": {}, \"start_seconds\": {}, \"kill_every_ms\": {}, "
      "\"concurrency\": {}, "
      "\"step_ms\": {}, \"sleep_ms\": {}, \"lease_ttl\": \"{}\", \"heartbeat\": \"{}\", "
      "\"poll\": \"{}\", \"seed\": {}}}\n}}\n",
      p.runs, completed, lost, stuck, stalled.load(), p.daemons, kills.size(), orphans,
      orphans_never_reclaimed, orphans_finished_by_last_write, max_wait, max_calm_wait,
      Percentile(waits_ms, 0.5), Percentile(waits_ms, 0.99), fast, immediate, terminations,
      backends, max_reconnect, reconnect_failures.size(), verdict.recorded_steps,
      verdict.executions, verdict.duplicated_recorded, verdict.reexecuted_unrecorded,
      verdict.recorded_without_execution, verdict.executed_but_missing_from_journal, retried,
      mean_claims, max_claims, sent_store.load(), sent_ctl.load(), sent_early.load(), extra_events,
      start_retries.load(), send_failures.load(), unexpected_exits.size(), chaos_s, total_s, p.runs,
      p.start_seconds, p.kill_every_ms, p.concurrency, p.step_ms, p.sleep_ms, p.lease_ttl,
      p.heartbeat, p.poll, p.seed);
  std::filesystem::create_directories(std::filesystem::path(p.report).parent_path());
  {
    std::ofstream out(p.report);
    out << json;
  }
  std::printf("\n%s\nchaos: figures written to %s; logs, ledger: %s\n", json.c_str(),
              p.report.c_str(), work.c_str());

  // --- assertions ------------------------------------------------------------
  EXPECT_TRUE(all_done) << stuck << " run(s) still open " << p.calm_seconds
                        << " s after the faults stopped:\n"
                        << open_description;
  EXPECT_EQ(lost, 0) << fmt::format("{}", fmt::join(run_problems, "\n"));
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(stalled.load(), 0) << fmt::format("{}", fmt::join(stall_descriptions, "\n"));
  }
  EXPECT_EQ(completed, p.runs);
  EXPECT_EQ(verdict.duplicated_recorded, 0) << fmt::format("{}", fmt::join(verdict.problems, "\n"));
  EXPECT_EQ(verdict.recorded_without_execution, 0)
      << fmt::format("{}", fmt::join(verdict.problems, "\n"));
  EXPECT_EQ(verdict.executed_but_missing_from_journal, 0)
      << fmt::format("{}", fmt::join(verdict.problems, "\n"));
  EXPECT_TRUE(unexpected_exits.empty()) << fmt::format("{}", fmt::join(unexpected_exits, "\n"));
  EXPECT_TRUE(reconnect_failures.empty()) << fmt::format("{}", fmt::join(reconnect_failures, "\n"));
  EXPECT_EQ(orphans_never_reclaimed, 0) << fmt::format("{}", fmt::join(orphan_problems, "\n"));
  EXPECT_EQ(fast, 1);
  EXPECT_EQ(immediate, 1);
  EXPECT_EQ(terminations, 2);
  // The chaos really happened: kills (the pace depends on the machine, as
  // faults and their reconnect checks pause them: a few at least), the
  // retry path, events through both paths and before the wait.
  EXPECT_GE(kills.size(), 3u);
  EXPECT_GT(retried, 0);
  EXPECT_GT(sent_ctl.load(), 0);
  EXPECT_GT(sent_early.load(), 0);
}

}  // namespace
}  // namespace kagzi::testing::chaos
