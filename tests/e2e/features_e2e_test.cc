// End to end, ABI 1.1 workflow features: retries with backoff, run
// deadlines, cancellation, events, child workflows, parallel steps,
// deterministic helpers, and 1.0 plugins on a 1.1 host. Real kagzid and
// kagzictl processes, real PostgreSQL; the "features" fixture plugin writes
// a side-effect ledger so the tests count executions.
#include <signal.h>

#include <set>

#include <rapidjson/document.h>

#include "e2e/e2e_support.h"

namespace kagzi::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class FeaturesE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = TestDatabase::Create();
    ASSERT_NE(db_, nullptr);
    store_ = std::make_unique<PgStore>(PgStoreOptions{db_->url(), "features-test", 2});
    ASSERT_TRUE(store_->Migrate().ok());
    plugin_dir_ = dir_.path() + "/plugins";
    ledger_ = dir_.path() + "/ledger.txt";
    FillPluginDir(plugin_dir_, {FixturePluginPath("features.so"), FixturePluginPath("abi10.so")});
  }

  std::unique_ptr<Process> Daemon(const std::string& name, DaemonOptions o = {}) {
    return StartReadyDaemon(db_->url(), plugin_dir_, dir_.path() + "/" + name + ".log", o);
  }

  RunRecord Run(const std::string& id) {
    auto r = store_->GetRun(id);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? *r : RunRecord{};
  }
  std::vector<StepRecord> Steps(const std::string& id) {
    auto s = store_->GetSteps(id);
    EXPECT_TRUE(s.ok());
    return s.ok() ? *s : std::vector<StepRecord>{};
  }
  std::optional<StepRecord> StepNamed(const std::string& run, const std::string& step) {
    for (auto& s : Steps(run)) {
      if (s.step_id == step) return s;
    }
    return std::nullopt;
  }
  bool WaitForStatus(const std::string& id, RunStatus status, milliseconds timeout) {
    return Eventually([&] { return Run(id).status == status; }, timeout);
  }
  std::string Start(const std::string& workflow, const std::string& input,
                    std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"start", workflow, "--input", input};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = Ctl(db_->url(), args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return FirstLine(r.out);
  }
  // Lines of the ledger for run `id` whose step part starts with `step`.
  int Executions(const std::string& id, const std::string& step) {
    int n = 0;
    std::string text = ReadFile(ledger_);
    std::size_t pos = 0;
    std::string prefix = id + " " + step;
    while ((pos = text.find(prefix, pos)) != std::string::npos) {
      char next = pos + prefix.size() < text.size() ? text[pos + prefix.size()] : '\n';
      if (next == ' ' || next == '\n') ++n;
      pos += prefix.size();
    }
    return n;
  }
  rapidjson::Document Output(const std::string& id) {
    rapidjson::Document d;
    d.Parse(Run(id).output.value_or("null").c_str());
    return d;
  }
  std::string In(const std::string& extra_fields) {
    return "{\"ledger\":\"" + ledger_ + "\"" + (extra_fields.empty() ? "" : ",") + extra_fields +
           "}";
  }

  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<PgStore> store_;
  TempDir dir_;
  std::string plugin_dir_;
  std::string ledger_;
};

// --- 1. retries -------------------------------------------------------------

TEST_F(FeaturesE2E, RetryableStepIsRetriedWithBackoffWhileTheRunIsParked) {
  auto d = Daemon("d");
  std::string id = Start("retry_step", In(R"("fail_times":2,"max_attempts":4,"initial_ms":300)"));
  // Between attempts the run is parked (no executor held) with the failed
  // attempt and its error recorded.
  ASSERT_TRUE(Eventually(
      [&] {
        auto s = StepNamed(id, "flaky");
        return s && s->status == StepStatus::kRetrying && Run(id).status == RunStatus::kSleeping;
      },
      seconds(30)))
      << d->Log();
  auto pending = StepNamed(id, "flaky");
  ASSERT_TRUE(pending->error.has_value());
  ASSERT_TRUE(pending->wake_at.has_value());
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(60))) << d->Log();
  EXPECT_TRUE(Output(id)["ok"].GetBool());
  auto flaky = StepNamed(id, "flaky");
  ASSERT_TRUE(flaky);
  EXPECT_EQ(flaky->status, StepStatus::kCompleted);
  EXPECT_EQ(flaky->attempts, 3);
  EXPECT_EQ(Executions(id, "flaky"), 3);
  EXPECT_GE(Run(id).attempts, 3) << "each retry is a new claim of a parked run";
  d->Signal(SIGTERM);
  EXPECT_EQ(d->Wait(seconds(30)), 0);
}

TEST_F(FeaturesE2E, ExhaustedRetriesReachTheWorkflowWhichCompensates) {
  auto d = Daemon("d");
  std::string id = Start("retry_step", In(R"("fail_times":100,"max_attempts":3,"initial_ms":100)"));
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(60))) << d->Log();
  auto out = Output(id);
  ASSERT_TRUE(out.IsObject()) << Run(id).output.value_or("");
  EXPECT_TRUE(out["compensated"].GetBool());
  EXPECT_STREQ(out["step"].GetString(), "flaky");
  EXPECT_NE(std::string(out["error"].GetString()).find("gave up after 3 attempts"),
            std::string::npos)
      << out["error"].GetString();
  EXPECT_EQ(Executions(id, "flaky"), 3);
  EXPECT_EQ(Executions(id, "compensate"), 1);
  auto flaky = StepNamed(id, "flaky");
  EXPECT_EQ(flaky->status, StepStatus::kFailed);
  EXPECT_EQ(flaky->error_kind, ErrorKind::kRetryable);
  EXPECT_EQ(flaky->attempts, 3);
}

TEST_F(FeaturesE2E, PermanentErrorIsNotRetried) {
  auto d = Daemon("d");
  std::string id = Start(
      "retry_step", In(R"("fail_times":1,"max_attempts":5,"initial_ms":100,"permanent":true)"));
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(30))) << d->Log();
  EXPECT_TRUE(Output(id)["compensated"].GetBool());
  EXPECT_EQ(Executions(id, "flaky"), 1);
  EXPECT_EQ(StepNamed(id, "flaky")->error_kind, ErrorKind::kPermanent);
}

// --- 2. deadlines -----------------------------------------------------------

TEST_F(FeaturesE2E, RunDeadlineFromKagzictlIsEnforcedWhileRunning) {
  auto d = Daemon("d");
  // 20 steps of 300 ms cannot finish within 1 s.
  std::string id = Start("cancellable", In(R"("steps":20,"step_ms":300)"), {"--timeout", "1"});
  ASSERT_TRUE(Run(id).deadline_at.has_value());
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kFailed, seconds(30))) << d->Log();
  EXPECT_NE(Run(id).error.value_or("").find("deadline exceeded"), std::string::npos);
  // No step result was recorded after the deadline.
  RunRecord run = Run(id);
  for (const auto& s : Steps(id)) {
    if (s.status == StepStatus::kCompleted) {
      EXPECT_LE(s.finished_at, *run.deadline_at) << s.step_id;
    }
  }
}

TEST_F(FeaturesE2E, RunDeadlineIsEnforcedWhileTheRunIsParked) {
  auto d = Daemon("d");
  // Waits for an event that never comes, with no wait timeout: only the
  // run's deadline ends it.
  std::string id = Start("wait_event", In(R"("name":"never")"), {"--timeout", "2"});
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kFailed, seconds(30))) << d->Log();
  EXPECT_NE(Run(id).error.value_or("").find("deadline exceeded"), std::string::npos);
}

TEST_F(FeaturesE2E, WorkflowDefaultTimeoutApplies) {
  auto d = Daemon("d");
  std::string id = Start("slow_timeout", In(""));
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kFailed, seconds(30))) << d->Log();
  RunRecord run = Run(id);
  ASSERT_TRUE(run.deadline_at.has_value());
  EXPECT_EQ(*run.deadline_at, run.created_at + 1500 * 1000);
  EXPECT_NE(run.error.value_or("").find("deadline exceeded"), std::string::npos);
}

// --- 3. cancellation ----------------------------------------------------------

TEST_F(FeaturesE2E, CancelRunningRunStopsAtTheNextStepAndRunsCleanup) {
  auto d = Daemon("d");
  std::string id = Start("cancellable", In(R"("steps":50,"step_ms":200)"));
  ASSERT_TRUE(Eventually([&] { return Steps(id).size() >= 2; }, seconds(30))) << d->Log();
  auto r = Ctl(db_->url(), {"cancel", id, "--reason", "user asked"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kCancelled, seconds(30))) << d->Log();
  EXPECT_EQ(Run(id).error.value_or(""), "user asked");
  EXPECT_EQ(Executions(id, "cleanup"), 1);
  EXPECT_LT(Steps(id).size(), 50u);
  // The call that received the cancellation is journaled as such.
  int cancelled = 0;
  for (const auto& s : Steps(id)) cancelled += s.error_kind == ErrorKind::kCancelled;
  EXPECT_EQ(cancelled, 1);
}

TEST_F(FeaturesE2E, CancelPendingRunIsImmediate) {
  // No daemon: the run is PENDING.
  auto r = Ctl(db_->url(), {"start", "cancellable", "--allow-unknown", "--input", In("")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string id = FirstLine(r.out);
  r = Ctl(db_->url(), {"cancel", id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Run(id).status, RunStatus::kCancelled);
  r = Ctl(db_->url(), {"cancel", id});
  EXPECT_EQ(r.exit_code, 2) << "a terminal run cannot be cancelled again";
}

TEST_F(FeaturesE2E, CancellingAParentCancelsItsChildren) {
  auto d = Daemon("d");
  std::string id =
      Start("parent", In(R"("child":"child_ok","child_input":{"n":1,"sleep_ms":60000})"));
  std::string child;
  ASSERT_TRUE(Eventually(
      [&] {
        auto s = StepNamed(id, "kid");
        if (s && s->child_run_id) child = *s->child_run_id;
        return !child.empty() && Run(child).status == RunStatus::kSleeping &&
               Run(id).status == RunStatus::kSleeping;
      },
      seconds(30)))
      << d->Log();
  auto r = Ctl(db_->url(), {"cancel", id, "--reason", "order withdrawn"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Run(id).status, RunStatus::kCancelled);
  EXPECT_EQ(Run(child).status, RunStatus::kCancelled);
}

// --- 4. events ----------------------------------------------------------------

TEST_F(FeaturesE2E, SignalWakesAWaitingRunAtOnceViaNotify) {
  DaemonOptions o;
  o.poll_interval = "120s";  // a wake-up by polling would take two minutes
  auto d = Daemon("d", o);
  std::string id = Start("wait_event", In(R"("name":"go")"));
  ASSERT_TRUE(Eventually(
      [&] {
        auto s = StepNamed(id, "wait");
        return s && s->status == StepStatus::kWaiting && Run(id).status == RunStatus::kSleeping;
      },
      seconds(30)))
      << d->Log();
  auto r = Ctl(db_->url(), {"signal", id, "go", "--data", R"({"x":1})"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(60))) << d->Log();
  auto out = Output(id);
  EXPECT_EQ(out["payload"]["x"].GetInt(), 1);
  EXPECT_FALSE(out["timed_out"].GetBool());
  EXPECT_EQ(Executions(id, "before"), 1);
  EXPECT_EQ(Executions(id, "after"), 1);
}

TEST_F(FeaturesE2E, EventSentBeforeTheWaitIsKeptAndEachIsConsumedOnce) {
  // Registered by an earlier daemon, so kagzictl knows the workflow.
  {
    auto d = Daemon("register");
    d->Signal(SIGTERM);
    ASSERT_EQ(d->Wait(seconds(30)), 0);
  }
  std::string id = Start("wait_event", In(R"("name":"go")"));
  ASSERT_EQ(Ctl(db_->url(), {"signal", id, "go", "--data", R"("first")"}).exit_code, 0);
  ASSERT_EQ(Ctl(db_->url(), {"signal", id, "go", "--data", R"("second")"}).exit_code, 0);
  auto d = Daemon("d");
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(30))) << d->Log();
  EXPECT_STREQ(Output(id)["payload"].GetString(), "first");
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_events WHERE consumed_at IS NOT NULL"), "1");
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_events WHERE consumed_at IS NULL"), "1");
}

TEST_F(FeaturesE2E, EventWaitTimesOut) {
  auto d = Daemon("d");
  std::string id = Start("wait_event", In(R"("name":"go","timeout_ms":500)"));
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(30))) << d->Log();
  auto out = Output(id);
  EXPECT_TRUE(out["timed_out"].GetBool());
  EXPECT_TRUE(out["payload"].IsNull());
  EXPECT_EQ(StepNamed(id, "wait")->error_kind, ErrorKind::kTimeout);
}

// --- 5. child workflows -----------------------------------------------------

TEST_F(FeaturesE2E, ChildWorkflowResultReachesTheParentAndSurvivesADaemonCrash) {
  DaemonOptions o;
  o.lease_ttl = "2s";
  o.heartbeat_interval = "500ms";
  o.poll_interval = "300ms";
  auto a = Daemon("a", o);
  std::string id =
      Start("parent", In(R"("child":"child_ok","child_input":{"n":21,"sleep_ms":1500})"));
  std::string child;
  ASSERT_TRUE(Eventually(
      [&] {
        auto s = StepNamed(id, "kid");
        if (s && s->child_run_id) child = *s->child_run_id;
        return !child.empty();
      },
      seconds(30)))
      << a->Log();
  a->Signal(SIGKILL);
  ASSERT_EQ(a->Wait(seconds(10)), -SIGKILL);
  auto b = Daemon("b", o);
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(60))) << b->Log();
  EXPECT_EQ(Output(id)["child"]["doubled"].GetInt(), 42);
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_runs WHERE parent_run_id = '" + id + "'"), "1")
      << "replay must not start a second child";
  EXPECT_EQ(Run(child).parent_run_id.value_or(""), id);
  EXPECT_EQ(Executions(id, "before"), 1);
  // kagzictl show links parent and child.
  auto r = Ctl(db_->url(), {"show", id, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(child), std::string::npos);
  r = Ctl(db_->url(), {"show", child, "--json"});
  EXPECT_NE(r.out.find(id), std::string::npos);
}

TEST_F(FeaturesE2E, ChildFailureReachesTheParentAsAnError) {
  auto d = Daemon("d");
  std::string id = Start("parent", In(R"("child":"child_fail","child_input":{})"));
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(30))) << d->Log();
  auto out = Output(id);
  ASSERT_TRUE(out.HasMember("child_error")) << Run(id).output.value_or("");
  EXPECT_NE(std::string(out["child_error"].GetString()).find("child says no"), std::string::npos);
}

// --- 6. parallel steps --------------------------------------------------------

TEST_F(FeaturesE2E, ParallelStepsRunAtTheSameTimeEachMemoized) {
  auto d = Daemon("d");
  std::string id = Start("fanout", In(R"("n":6,"step_ms":400)"));
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(30))) << d->Log();
  auto out = Output(id);
  ASSERT_TRUE(out["squares"].IsArray());
  ASSERT_EQ(out["squares"].Size(), 6u);
  for (rapidjson::SizeType i = 0; i < 6; ++i) EXPECT_EQ(out["squares"][i].GetInt(), int(i * i));
  // Concurrency shown by the journal: some two steps' intervals overlap.
  auto steps = Steps(id);
  bool overlap = false;
  for (const auto& x : steps) {
    for (const auto& y : steps) {
      if (&x != &y && x.started_at && y.started_at && *x.started_at < y.finished_at &&
          *y.started_at < x.finished_at) {
        overlap = true;
      }
    }
  }
  EXPECT_TRUE(overlap) << "parallel steps did not overlap in time";
  for (int i = 0; i < 6; ++i) EXPECT_EQ(Executions(id, "sq-" + std::to_string(i)), 1);
}

TEST_F(FeaturesE2E, ParallelGroupAfterACrashRunsOnlyItsUnfinishedMembers) {
  DaemonOptions o;
  o.lease_ttl = "2s";
  o.heartbeat_interval = "500ms";
  o.poll_interval = "300ms";
  auto a = Daemon("a", o);
  // 8 members of 700 ms, at most 2 at once: the group takes ~2.8 s, so the
  // kill lands while some members are recorded and others are not.
  std::string id = Start("fanout", In(R"("n":8,"step_ms":700,"max_concurrency":2)"));
  ASSERT_TRUE(Eventually([&] { return Steps(id).size() >= 2; }, seconds(30))) << a->Log();
  a->Signal(SIGKILL);
  ASSERT_EQ(a->Wait(seconds(10)), -SIGKILL);
  std::set<std::string> recorded_before_kill;
  for (const auto& s : Steps(id)) recorded_before_kill.insert(s.step_id);
  ASSERT_LT(recorded_before_kill.size(), 8u) << "the kill came too late to prove anything";
  auto b = Daemon("b", o);
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(60))) << b->Log();
  ASSERT_EQ(Output(id)["squares"].Size(), 8u);
  for (int i = 0; i < 8; ++i) {
    std::string step = "sq-" + std::to_string(i);
    if (recorded_before_kill.contains(step)) {
      EXPECT_EQ(Executions(id, step), 1) << step << " was recorded and must not run again";
    } else {
      EXPECT_GE(Executions(id, step), 1) << step;
      EXPECT_LE(Executions(id, step), 2) << step;
    }
  }
}

TEST_F(FeaturesE2E, ParallelGroupReportsAFailedMemberAndKeepsTheOthers) {
  auto d = Daemon("d");
  std::string id = Start("fanout", In(R"("n":4,"step_ms":50,"fail_index":2)"));
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(30))) << d->Log();
  auto out = Output(id);
  ASSERT_TRUE(out.HasMember("error")) << Run(id).output.value_or("");
  int completed = 0;
  for (const auto& s : Steps(id)) completed += s.status == StepStatus::kCompleted;
  EXPECT_EQ(completed, 3);
}

// --- 7. deterministic helpers -------------------------------------------------

TEST_F(FeaturesE2E, HelperValuesAreJournaledAndReplayedUnchanged) {
  auto d = Daemon("d");
  // The sleep makes the run replay (on a new claim) after the values were
  // taken: the replay must see the recorded values, not new ones.
  std::string id = Start("helpers", In(R"("sleep_ms":300)"));
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(30))) << d->Log();
  EXPECT_GE(Run(id).attempts, 2) << "the run was not replayed";
  auto out = Output(id);
  EXPECT_TRUE(out["same"].GetBool()) << Run(id).output.value_or("");
  auto t0 = StepNamed(id, "t0");
  auto r = StepNamed(id, "r");
  ASSERT_TRUE(t0 && r);
  EXPECT_EQ(t0->kind, StepKind::kHelper);
  EXPECT_EQ(std::to_string(out["t0"].GetInt64()), t0->output.value_or(""));
  EXPECT_EQ(std::string(out["r"].GetString()), r->output.value_or(""));
  EXPECT_EQ(Executions(id, "s"), 1);
}

// --- 8. versions ----------------------------------------------------------------

TEST_F(FeaturesE2E, StatusSaysWhenNoLiveDaemonHasTheRunsVersion) {
  std::string v1_dir = dir_.path() + "/v1", v2_dir = dir_.path() + "/v2";
  FillPluginDir(v1_dir, {FixturePluginPath("ledger.so")});
  FillPluginDir(v2_dir, {FixturePluginPath("ledger_v2.so")});
  auto a = StartReadyDaemon(db_->url(), v1_dir, dir_.path() + "/a.log");
  std::string id = Start("ledger", LedgerInput(ledger_, 2, 0, 60000, 0));
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kSleeping, seconds(30))) << a->Log();
  a->Signal(SIGTERM);
  ASSERT_EQ(a->Wait(seconds(30)), 0);
  auto b = StartReadyDaemon(db_->url(), v2_dir, dir_.path() + "/b.log");
  auto r = Ctl(db_->url(), {"status", id});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("no live kagzid has workflow \"ledger\" version 1 loaded"),
            std::string::npos)
      << r.out;
  r = Ctl(db_->url(), {"workflows", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  rapidjson::Document wf;
  wf.Parse(r.out.c_str());
  ASSERT_TRUE(wf.IsObject()) << r.out;
  bool saw_v1_open = false;
  for (const auto& w : wf["workflows"].GetArray()) {
    if (std::string(w["workflow"].GetString()) == "ledger" && w["version"].IsInt() &&
        w["version"].GetInt() == 1) {
      saw_v1_open = w["open_runs"].GetInt() == 1;
    }
  }
  EXPECT_TRUE(saw_v1_open) << r.out;
}

// --- 9. operator commands -------------------------------------------------------

TEST_F(FeaturesE2E, RetryResumesAFailedRunFromItsFailedStep) {
  auto d = Daemon("d");
  // The first execution of "flaky" fails permanently and fails the run; the
  // second (after kagzictl retry) succeeds.
  std::string id = Start(
      "retry_step",
      In(R"("fail_times":1,"max_attempts":1,"initial_ms":100,"permanent":true,"fail_run":true)"));
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kFailed, seconds(30))) << d->Log();
  auto r = Ctl(db_->url(), {"retry", id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(30))) << d->Log();
  EXPECT_TRUE(Output(id)["ok"].GetBool());
  EXPECT_EQ(Executions(id, "flaky"), 2);
  r = Ctl(db_->url(), {"retry", id});
  EXPECT_EQ(r.exit_code, 2) << "only a failed run can be retried";
}

// A retry runs again only the call that failed the run: a failure the
// workflow caught and went past stays recorded, so the replay takes the
// same path. Here "flaky" fails, the workflow compensates, then "finish"
// fails the run; after the retry only "finish" runs again.
TEST_F(FeaturesE2E, RetryKeepsAFailureTheWorkflowHandled) {
  auto d = Daemon("d");
  std::string id = Start("retry_step", In(R"("fail_times":1,"max_attempts":1,"permanent":true,)"
                                          R"("fail_later":true)"));
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kFailed, seconds(30))) << d->Log();
  EXPECT_EQ(Run(id).error.value_or(""), "step 'finish' failed: finish failed once");
  auto r = Ctl(db_->url(), {"retry", id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(30))) << d->Log();
  EXPECT_TRUE(Output(id)["compensated"].GetBool());
  EXPECT_EQ(Executions(id, "flaky"), 1);
  EXPECT_EQ(Executions(id, "compensate"), 1);
  EXPECT_EQ(Executions(id, "finish"), 2);
}

// A parallel group is one call: a retry runs its failed members again
// (here the first of three), not the ones it recorded.
TEST_F(FeaturesE2E, RetryRunsAgainTheFailedMembersOfAParallelGroup) {
  auto d = Daemon("d");
  std::string id = Start(
      "fanout", In(R"("n":3,"fail_index":0,"fail_once":true,"fail_run":true,"max_concurrency":1)"));
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kFailed, seconds(30))) << d->Log();
  auto r = Ctl(db_->url(), {"retry", id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(30))) << d->Log();
  EXPECT_EQ(Executions(id, "sq-0"), 2);
  EXPECT_EQ(Executions(id, "sq-1"), 1);
  EXPECT_EQ(Executions(id, "sq-2"), 1);
  const rapidjson::Document output = Output(id);
  ASSERT_TRUE(output.IsObject() && output.HasMember("squares"));
  const auto& squares = output["squares"];
  ASSERT_TRUE(squares.IsArray());
  ASSERT_EQ(squares.Size(), 3u);
  EXPECT_EQ(squares[2].GetInt(), 4);
}

// --- compatibility: a plugin built for ABI 1.0 ------------------------------

TEST_F(FeaturesE2E, PluginBuiltForAbi10LoadsAndRunsUnchanged) {
  auto d = Daemon("d");
  EXPECT_NE(d->Log().find("loaded workflow \"abi10_b\" version 1"), std::string::npos) << d->Log();
  auto r = Ctl(db_->url(), {"start", "abi10_a", "--input", "{}", "--wait", "--wait-timeout", "30"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(R"({"wf":"a"})"), std::string::npos) << r.out;
  r = Ctl(db_->url(), {"start", "abi10_b", "--input", "{}", "--wait", "--wait-timeout", "30"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(R"({"wf":"b"})"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace kagzi::testing
