// End to end: real kagzid processes, real kagzictl, real PostgreSQL. Crash,
// restart, takeover, drain and load, with a side-effect ledger proving that
// no recorded step ever runs twice.
#include <signal.h>

#include <atomic>
#include <set>
#include <thread>

#include "e2e/e2e_support.h"

namespace kagzi::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class DaemonE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = TestDatabase::Create();
    ASSERT_NE(db_, nullptr);
    store_ = std::make_unique<PgStore>(PgStoreOptions{db_->url(), "e2e-test", 2});
    ASSERT_TRUE(store_->Migrate().ok());
    plugin_dir_ = dir_.path() + "/plugins";
  }

  std::string Log(const std::string& name) const { return dir_.path() + "/" + name + ".log"; }

  RunRecord Run(const std::string& id) {
    auto r = store_->GetRun(id);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? *r : RunRecord{};
  }

  bool WaitForStatus(const std::string& id, RunStatus status, milliseconds timeout) {
    return Eventually([&] { return Run(id).status == status; }, timeout);
  }

  std::vector<StepRecord> Steps(const std::string& id) {
    auto s = store_->GetSteps(id);
    EXPECT_TRUE(s.ok());
    return s.ok() ? *s : std::vector<StepRecord>{};
  }

  std::string StartRun(const std::string& workflow, const std::string& input) {
    auto r = Ctl(db_->url(), {"start", workflow, "--input", input});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return FirstLine(r.out);
  }

  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<PgStore> store_;
  TempDir dir_;
  std::string plugin_dir_;
};

TEST_F(DaemonE2E, HelloCompletesThroughKagzictl) {
  FillPluginDir(plugin_dir_, {PluginPath("hello.so"), PluginPath("welcome_email.so")});
  auto d = StartReadyDaemon(db_->url(), plugin_dir_, Log("kagzid"));
  auto r = Ctl(db_->url(), {"start", "hello", "--input", R"({"name":"world"})", "--wait",
                            "--wait-timeout", "30"});
  ASSERT_EQ(r.exit_code, 0) << r.err << d->Log();
  EXPECT_NE(r.out.find("Hello, world!"), std::string::npos) << r.out;
  std::string id = FirstLine(r.out);
  RunRecord run = Run(id);
  EXPECT_EQ(run.status, RunStatus::kCompleted);
  EXPECT_EQ(run.version, 1);
  EXPECT_EQ(run.attempts, 1);
  EXPECT_FALSE(run.lease_owner.has_value());
  auto steps = Steps(id);
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].step_id, "greet");
  d->Signal(SIGTERM);
  EXPECT_EQ(d->Wait(seconds(30)), 0);
}

TEST_F(DaemonE2E, WelcomeEmailSleepSurvivesDaemonRestart) {
  FillPluginDir(plugin_dir_, {PluginPath("welcome_email.so")});
  auto a = StartReadyDaemon(db_->url(), plugin_dir_, Log("a"));
  std::string id =
      StartRun("welcome_email", R"({"email":"ada@example.com","name":"Ada","sleep_ms":3000})");
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kSleeping, seconds(30))) << a->Log();
  // The daemon goes away during the sleep; a new process finishes the run.
  a->Signal(SIGTERM);
  ASSERT_EQ(a->Wait(seconds(30)), 0);
  auto b = StartReadyDaemon(db_->url(), plugin_dir_, Log("b"));
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(60))) << b->Log();
  auto steps = Steps(id);
  ASSERT_EQ(steps.size(), 4u);
  EXPECT_EQ(steps[0].step_id, "create-user");
  EXPECT_EQ(steps[1].kind, StepKind::kSleep);
  ASSERT_TRUE(steps[1].wake_at.has_value());
  EXPECT_EQ(steps[2].step_id, "send-email");
  EXPECT_EQ(steps[3].step_id, "mark-onboarded");
  // The steps after the sleep ran after the wake time, never before.
  EXPECT_GE(steps[2].finished_at, *steps[1].wake_at);
  for (const auto& s : steps) EXPECT_EQ(s.attempts, 1) << s.step_id;
  RunRecord run = Run(id);
  EXPECT_EQ(run.attempts, 2);  // claimed once before and once after the sleep
  // create-user ran in daemon a only; b replayed it from the journal.
  EXPECT_NE(a->Log().find("create-user"), std::string::npos);
  b->Signal(SIGTERM);
  EXPECT_EQ(b->Wait(seconds(30)), 0);
}

TEST_F(DaemonE2E, KillNineMidRunAnotherDaemonFinishesWithoutRerunningRecordedSteps) {
  FillPluginDir(plugin_dir_, {FixturePluginPath("ledger.so")});
  DaemonOptions opts;
  opts.lease_ttl = "2s";
  opts.heartbeat_interval = "500ms";
  opts.poll_interval = "200ms";
  auto a = StartReadyDaemon(db_->url(), plugin_dir_, Log("a"), opts);
  std::string ledger = dir_.path() + "/ledger.txt";
  std::string id = StartRun("ledger", LedgerInput(ledger, 8, 300));
  ASSERT_TRUE(Eventually([&] { return Steps(id).size() >= 3; }, seconds(30))) << a->Log();
  a->Signal(SIGKILL);
  ASSERT_EQ(a->Wait(seconds(10)), -SIGKILL);
  std::set<std::string> recorded_before_kill;
  for (const auto& s : Steps(id)) recorded_before_kill.insert(s.step_id);
  EXPECT_EQ(Run(id).status, RunStatus::kRunning);  // still leased by the dead daemon

  auto killed_at = std::chrono::steady_clock::now();
  auto b = StartReadyDaemon(db_->url(), plugin_dir_, Log("b"), opts);
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(60))) << b->Log();
  auto took =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - killed_at);
  RunRecord run = Run(id);
  EXPECT_EQ(run.attempts, 2);
  EXPECT_EQ(run.lease_epoch, 2);
  auto steps = Steps(id);
  ASSERT_EQ(steps.size(), 8u);
  auto ledger_counts = LedgerCounts(ledger);
  for (int k = 0; k < 8; ++k) {
    std::string step = "step-" + std::to_string(k);
    int n = ledger_counts[id + " " + step];
    if (recorded_before_kill.contains(step)) {
      EXPECT_EQ(n, 1) << step << " was recorded before the kill and must not run again";
    } else {
      // At-least-once: the step in progress at the kill may have run twice.
      EXPECT_GE(n, 1) << step;
      EXPECT_LE(n, 2) << step;
    }
  }
  // Takeover waited for the 2 s lease to expire, not much more (generous
  // bound: 8 steps of 300 ms also had to run).
  EXPECT_LT(took, seconds(30));
  b->Signal(SIGTERM);
  EXPECT_EQ(b->Wait(seconds(30)), 0);
}

TEST_F(DaemonE2E, FiveHundredConcurrentRunsOverTwoDaemonsCompleteExactlyOnce) {
  FillPluginDir(plugin_dir_, {FixturePluginPath("ledger.so")});
  DaemonOptions opts;
  opts.poll_interval = "500ms";
  auto a = StartReadyDaemon(db_->url(), plugin_dir_, Log("a"), opts);
  auto b = StartReadyDaemon(db_->url(), plugin_dir_, Log("b"), opts);
  std::string ledger = dir_.path() + "/ledger.txt";
  constexpr int kRuns = 500;
  std::vector<std::string> ids(kRuns);
  std::atomic<int> next{0}, failures{0};
  std::vector<std::thread> starters;
  for (int t = 0; t < 4; ++t) {
    starters.emplace_back([&] {
      for (int i = next++; i < kRuns; i = next++) {
        auto r = Ctl(db_->url(), {"start", "ledger", "--input", LedgerInput(ledger, 2, 0)});
        if (r.exit_code != 0) ++failures;
        ids[i] = FirstLine(r.out);
      }
    });
  }
  for (auto& t : starters) t.join();
  ASSERT_EQ(failures, 0);
  ASSERT_TRUE(Eventually(
      [&] {
        return db_->Query("SELECT count(*) FROM kagzi_runs WHERE status = 'COMPLETED'") ==
               std::to_string(kRuns);
      },
      seconds(240)))
      << db_->Query(
             "SELECT string_agg(status || ':' || n, ',') FROM (SELECT status, count(*) n "
             "FROM kagzi_runs GROUP BY status) x");
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_runs WHERE attempts <> 1"), "0");
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_steps"), std::to_string(2 * kRuns));
  auto counts = LedgerCounts(ledger);
  EXPECT_EQ(counts.size(), static_cast<std::size_t>(2 * kRuns));
  std::set<std::string> unique_ids(ids.begin(), ids.end());
  EXPECT_EQ(unique_ids.size(), static_cast<std::size_t>(kRuns));
  for (const auto& id : ids) {
    EXPECT_EQ(counts[id + " step-0"], 1) << id;
    EXPECT_EQ(counts[id + " step-1"], 1) << id;
  }
  // Both daemons did work.
  auto completed_in = [](const std::string& log) {
    std::size_t n = 0;
    for (auto pos = log.find(": completed"); pos != std::string::npos;
         pos = log.find(": completed", pos + 1)) {
      ++n;
    }
    return n;
  };
  std::size_t in_a = completed_in(a->Log()), in_b = completed_in(b->Log());
  EXPECT_EQ(in_a + in_b, static_cast<std::size_t>(kRuns));
  EXPECT_GT(in_a, 0u);
  EXPECT_GT(in_b, 0u);
  a->Signal(SIGTERM);
  b->Signal(SIGTERM);
  EXPECT_EQ(a->Wait(seconds(30)), 0);
  EXPECT_EQ(b->Wait(seconds(30)), 0);
}

// With a backlog a daemon stops listening for wake-ups (it claims again as
// slots free up anyway). Once the backlog is gone it listens again: a run
// started afterwards is taken at once, not at the next poll.
TEST_F(DaemonE2E, AfterABacklogDrainsANewRunIsHeardWithoutWaitingForThePoll) {
  FillPluginDir(plugin_dir_, {FixturePluginPath("ledger.so")});
  DaemonOptions opts;
  opts.poll_interval = "60s";  // polling cannot help: only NOTIFY can
  opts.lease_ttl = "120s";     // nor the timer for the next lease expiry
  opts.heartbeat_interval = "10s";
  opts.concurrency = 2;
  auto d = StartReadyDaemon(db_->url(), plugin_dir_, Log("kagzid"), opts);
  std::string ledger = dir_.path() + "/ledger.txt";
  std::vector<std::string> ids;
  for (int i = 0; i < 12; ++i) ids.push_back(StartRun("ledger", LedgerInput(ledger, 2, 50)));
  for (const auto& id : ids) {
    ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(50))) << d->Log();
  }
  std::this_thread::sleep_for(milliseconds(200));  // the daemon settles down to wait
  const std::string late = StartRun("ledger", LedgerInput(ledger, 2, 0));
  EXPECT_TRUE(WaitForStatus(late, RunStatus::kCompleted, seconds(30))) << d->Log();
  d->Signal(SIGTERM);
  EXPECT_EQ(d->Wait(seconds(30)), 0);
}

// A run announced while every slot is busy is taken when a slot frees,
// not at the next poll. Here the first claim comes back short (one run,
// two slots); the second fills the last slot; the third run is announced
// while no slot is free.
TEST_F(DaemonE2E, ARunAnnouncedWhileEverySlotIsBusyIsTakenWhenASlotFrees) {
  FillPluginDir(plugin_dir_, {FixturePluginPath("ledger.so")});
  DaemonOptions opts;
  opts.poll_interval = "60s";  // polling cannot help
  opts.lease_ttl = "120s";     // nor the timer for the next lease expiry
  opts.heartbeat_interval = "10s";
  opts.concurrency = 2;
  auto d = StartReadyDaemon(db_->url(), plugin_dir_, Log("kagzid"), opts);
  std::string ledger = dir_.path() + "/ledger.txt";
  const std::string first = StartRun("ledger", LedgerInput(ledger, 2, 400));
  ASSERT_TRUE(Eventually([&] { return !Steps(first).empty(); }, seconds(30))) << d->Log();
  const std::string second = StartRun("ledger", LedgerInput(ledger, 2, 400));
  ASSERT_TRUE(Eventually([&] { return !Steps(second).empty(); }, seconds(30))) << d->Log();
  const std::string third = StartRun("ledger", LedgerInput(ledger, 1, 0));
  for (const auto& id : {first, second, third}) {
    EXPECT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(30))) << d->Log();
  }
  d->Signal(SIGTERM);
  EXPECT_EQ(d->Wait(seconds(30)), 0);
}

TEST_F(DaemonE2E, SigtermDrainsAndHandsRunsOverWithoutWaitingForLeaseExpiry) {
  FillPluginDir(plugin_dir_, {FixturePluginPath("ledger.so")});
  DaemonOptions opts;
  opts.lease_ttl = "120s";  // a handover by expiry would take two minutes
  opts.heartbeat_interval = "10s";
  opts.poll_interval = "60s";  // and polling cannot help: only NOTIFY can
  auto a = StartReadyDaemon(db_->url(), plugin_dir_, Log("a"), opts);
  std::string ledger = dir_.path() + "/ledger.txt";
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(StartRun("ledger", LedgerInput(ledger, 12, 250)));
  for (const auto& id : ids) {
    ASSERT_TRUE(Eventually([&] { return !Steps(id).empty(); }, seconds(30))) << a->Log();
  }
  auto b = StartReadyDaemon(db_->url(), plugin_dir_, Log("b"), opts);
  auto stop_at = std::chrono::steady_clock::now();
  a->Signal(SIGTERM);
  ASSERT_EQ(a->Wait(seconds(30)), 0) << a->Log();
  EXPECT_NE(a->Log().find("released for another daemon"), std::string::npos) << a->Log();
  for (const auto& id : ids) {
    ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(60))) << b->Log();
  }
  auto took = std::chrono::steady_clock::now() - stop_at;
  EXPECT_LT(took, seconds(60)) << "the handover must not wait for the 120 s lease";
  auto counts = LedgerCounts(ledger);
  for (const auto& id : ids) {
    for (int k = 0; k < 12; ++k) {
      // A drained run stops at a step boundary: nothing runs twice.
      EXPECT_EQ(counts[id + " step-" + std::to_string(k)], 1) << id << " step-" << k;
    }
    EXPECT_EQ(Run(id).attempts, 2) << id;
  }
  b->Signal(SIGTERM);
  EXPECT_EQ(b->Wait(seconds(30)), 0);
}

TEST_F(DaemonE2E, RunsStayPinnedToTheirVersionAndNewRunsTakeTheHighest) {
  FillPluginDir(plugin_dir_, {FixturePluginPath("ledger.so")});
  auto a = StartReadyDaemon(db_->url(), plugin_dir_, Log("a"));
  std::string ledger = dir_.path() + "/ledger.txt";
  std::string old_run = StartRun("ledger", LedgerInput(ledger, 2, 0, 2000, 0));
  ASSERT_TRUE(WaitForStatus(old_run, RunStatus::kSleeping, seconds(30))) << a->Log();
  EXPECT_EQ(Run(old_run).version, 1);
  a->Signal(SIGTERM);
  ASSERT_EQ(a->Wait(seconds(30)), 0);

  // Version 2 arrives as a new file next to version 1.
  FillPluginDir(plugin_dir_, {FixturePluginPath("ledger_v2.so")});
  auto b = StartReadyDaemon(db_->url(), plugin_dir_, Log("b"));
  std::string new_run = StartRun("ledger", LedgerInput(ledger, 2, 0));
  ASSERT_TRUE(WaitForStatus(new_run, RunStatus::kCompleted, seconds(30))) << b->Log();
  ASSERT_TRUE(WaitForStatus(old_run, RunStatus::kCompleted, seconds(30))) << b->Log();
  EXPECT_EQ(Run(new_run).version, 2);
  EXPECT_EQ(Run(old_run).version, 1);
  EXPECT_NE(Run(new_run).output.value_or("").find("\"version\":2"), std::string::npos);
  EXPECT_NE(Run(old_run).output.value_or("").find("\"steps\":2"), std::string::npos);
  b->Signal(SIGTERM);
  EXPECT_EQ(b->Wait(seconds(30)), 0);
}

TEST_F(DaemonE2E, DaemonWaitsForAnUnreachableDatabaseAndStopsOnSigterm) {
  FillPluginDir(plugin_dir_, {PluginPath("hello.so")});
  std::string bad_url =
      "postgresql://kagzi:hunter2@/kagzi?host=" + dir_.path() + "/no-such-socket&port=1";
  auto d = StartDaemon(bad_url, plugin_dir_, Log("d"));
  ASSERT_TRUE(d->WaitForLog("waiting for the database (database_url)", seconds(30))) << d->Log();
  EXPECT_TRUE(d->running());
  EXPECT_EQ(d->Log().find("hunter2"), std::string::npos) << "password leaked into the log";
  d->Signal(SIGTERM);
  EXPECT_EQ(d->Wait(seconds(30)), 0) << d->Log();
}

TEST_F(DaemonE2E, BadConfigIsRefusedWithTheKeyNamed) {
  auto r =
      RunCommand({RequiredEnv("KAGZI_TEST_KAGZID"), "-c", "/dev/null", "--concurrency", "zero"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("concurrency"), std::string::npos) << r.err;
  std::string cfg = dir_.path() + "/bad.toml";
  {
    std::FILE* f = std::fopen(cfg.c_str(), "w");
    std::fputs("lease_ttl = \"30s\"\nheartbeat_intervall = \"1s\"\n", f);
    std::fclose(f);
  }
  r = RunCommand({RequiredEnv("KAGZI_TEST_KAGZID"), "-c", cfg, "--check-config"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("heartbeat_intervall"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(cfg + ":2"), std::string::npos) << r.err;
  r = RunCommand({RequiredEnv("KAGZI_TEST_KAGZID"), "--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find(KAGZI_VERSION), std::string::npos);
}

}  // namespace
}  // namespace kagzi::testing
