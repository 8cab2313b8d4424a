// Leases on a real PostgreSQL: fencing refuses stale writes and writes
// nothing, expired leases are taken over, heartbeats renew, parking releases
// the lease until the wake time.
#include <set>

#include <gtest/gtest.h>

#include "store_fixture.h"

namespace kagzi::testing {
namespace {

using std::chrono::milliseconds;

class LeaseTest : public StoreTest {
 protected:
  // Everything a stale write could change, as one comparable text.
  std::string RunRow(const std::string& id) const {
    return db_->Query(
        "SELECT concat_ws('|', status, version, lease_owner, lease_expires_at, lease_epoch,"
        " attempts, output::text, error, available_at, finished_at, updated_at) "
        "FROM kagzi_runs WHERE id = '" +
        id + "'");
  }
  std::string StepRows(const std::string& id) const {
    return db_->Query(
        "SELECT coalesce(string_agg(concat_ws('|', step_id, seq, kind, status, output::text,"
        " error, wake_at), E'\\n' ORDER BY seq), '') FROM kagzi_steps WHERE run_id = '" +
        id + "'");
  }

  // Claims `id` as a fresh owner after making sure it is the only candidate.
  ClaimedRun ClaimOne(const std::string& owner, milliseconds ttl) {
    auto batch = Claim(owner, {{"wf", 1}}, 1, ttl);
    EXPECT_EQ(batch.runs.size(), 1u);
    if (batch.runs.empty()) return {};
    return batch.runs[0];
  }

  // Every fenced write with `stale` must be refused with kConflict and
  // leave the run and its journal exactly as they were.
  void ExpectAllWritesRefused(const Lease& stale) {
    const std::string run_before = RunRow(stale.run_id);
    const std::string steps_before = StepRows(stale.run_id);

    Status st = store_->RecordStep(stale, MakeStep("late-step", 7, "\"late\""));
    EXPECT_EQ(st.code(), StatusCode::kConflict) << st.message();
    st = store_->CompleteRun(stale, "\"stale output\"");
    EXPECT_EQ(st.code(), StatusCode::kConflict) << st.message();
    st = store_->FailRun(stale, "stale failure", std::nullopt);
    EXPECT_EQ(st.code(), StatusCode::kConflict) << st.message();
    StepRecord nap;
    nap.step_id = "late-nap";
    nap.seq = 8;
    nap.kind = StepKind::kSleep;
    auto parked = store_->ParkRun(stale, nap, std::chrono::seconds(60));
    EXPECT_FALSE(parked.ok());
    EXPECT_EQ(parked.status().code(), StatusCode::kConflict) << parked.status().message();
    auto parked_plain = store_->ParkRun(stale, std::nullopt, std::chrono::seconds(60));
    EXPECT_EQ(parked_plain.status().code(), StatusCode::kConflict);
    st = store_->ReleaseRun(stale);
    EXPECT_EQ(st.code(), StatusCode::kConflict) << st.message();

    EXPECT_EQ(RunRow(stale.run_id), run_before);
    EXPECT_EQ(StepRows(stale.run_id), steps_before);
  }
};

TEST_F(LeaseTest, StaleEpochAfterTakeoverWritesNothing) {
  std::string id = Start("wf");
  const std::string a = NewUuid();
  const std::string b = NewUuid();
  ClaimedRun first = ClaimOne(a, milliseconds(300));
  ASSERT_EQ(first.run.id, id);
  Lease stale = LeaseOf(first);
  ASSERT_TRUE(store_->RecordStep(stale, MakeStep("one", 0, "1")).ok());

  ASSERT_TRUE(first.run.lease_expires_at.has_value());
  WaitUntilDbTime(*first.run.lease_expires_at);
  ClaimedRun second = ClaimOne(b, std::chrono::seconds(30));
  ASSERT_EQ(second.run.id, id);
  EXPECT_EQ(second.run.lease_epoch, 2);
  EXPECT_EQ(second.run.lease_owner, b);
  ASSERT_EQ(second.journal.size(), 1u);

  ExpectAllWritesRefused(stale);
  // The same owner with the old epoch is refused as well (the epoch, not only
  // the owner, is checked).
  ExpectAllWritesRefused(Lease{id, b, 1});
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps WHERE run_id = '" + id + "'"), 1);

  // The new owner's writes go through.
  Lease current = LeaseOf(second);
  Status st = store_->RecordStep(current, MakeStep("two", 1, "2"));
  ASSERT_TRUE(st.ok()) << st.message();
  st = store_->CompleteRun(current, "{\"done\": true}");
  ASSERT_TRUE(st.ok()) << st.message();
  RunRecord run = Get(id);
  EXPECT_EQ(run.status, RunStatus::kCompleted);
  EXPECT_EQ(run.output, "{\"done\": true}");
  EXPECT_FALSE(run.lease_owner.has_value());
  EXPECT_TRUE(run.finished_at.has_value());
  // Terminal: nobody can claim or write any more, not even the last owner.
  EXPECT_TRUE(Claim(NewUuid(), {{"wf", 1}}, 10).runs.empty());
  ExpectAllWritesRefused(current);
  EXPECT_EQ(Get(id).status, RunStatus::kCompleted);
}

TEST_F(LeaseTest, StaleWriteRefusedWhenReleasedAndReclaimedBeforeExpiry) {
  std::string id = Start("wf");
  const std::string a = NewUuid();
  ClaimedRun first = ClaimOne(a, std::chrono::minutes(10));
  Lease old = LeaseOf(first);
  ASSERT_TRUE(store_->ReleaseRun(old).ok());
  // Released: PENDING, no owner, epoch bumped, claimable at once.
  RunRecord released = Get(id);
  EXPECT_EQ(released.status, RunStatus::kPending);
  EXPECT_FALSE(released.lease_owner.has_value());
  EXPECT_EQ(released.lease_epoch, 2);
  ExpectAllWritesRefused(old);

  // Re-claimed by another owner long before the first lease would expire.
  const std::string b = NewUuid();
  ClaimedRun second = ClaimOne(b, std::chrono::minutes(10));
  ASSERT_EQ(second.run.id, id);
  EXPECT_EQ(second.run.lease_epoch, 3);
  ExpectAllWritesRefused(old);
  ASSERT_TRUE(store_->RecordStep(LeaseOf(second), MakeStep("s", 0, "0")).ok());
  ASSERT_TRUE(store_->ReleaseRun(LeaseOf(second)).ok());

  // And by the first owner again: its old epoch stays refused.
  ClaimedRun third = ClaimOne(a, std::chrono::minutes(10));
  EXPECT_EQ(third.run.lease_epoch, 5);
  EXPECT_EQ(third.run.lease_owner, a);
  ExpectAllWritesRefused(old);
  ExpectAllWritesRefused(LeaseOf(second));
  Status st = store_->FailRun(LeaseOf(third), "gave up", std::nullopt);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(Get(id).status, RunStatus::kFailed);
  EXPECT_EQ(Get(id).error, "gave up");
}

TEST_F(LeaseTest, WritesForAnUnknownRunAreConflicts) {
  Lease nowhere{NewUuid(), NewUuid(), 1};
  EXPECT_EQ(store_->RecordStep(nowhere, MakeStep("x", 0, "1")).code(), StatusCode::kConflict);
  EXPECT_EQ(store_->CompleteRun(nowhere, "1").code(), StatusCode::kConflict);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps"), 0);
}

TEST_F(LeaseTest, LiveLeaseIsNotReclaimable) {
  std::string id = Start("wf");
  ClaimedRun first = ClaimOne(NewUuid(), std::chrono::minutes(5));
  ASSERT_EQ(first.run.id, id);
  EXPECT_TRUE(Claim(NewUuid(), {{"wf", 1}}, 10).runs.empty());
  EXPECT_EQ(Get(id).lease_epoch, 1);
}

TEST_F(LeaseTest, ExpiredLeaseIsTakenOver) {
  std::string id = Start("wf");
  const std::string a = NewUuid();
  const std::string b = NewUuid();
  ClaimedRun first = ClaimOne(a, milliseconds(300));
  ASSERT_EQ(first.run.id, id);
  ASSERT_TRUE(store_->RecordStep(LeaseOf(first), MakeStep("before-crash", 0, "\"x\"")).ok());

  // Before expiry another owner gets nothing (unless this machine stalled
  // past the expiry, which the database clock tells).
  auto early = Claim(b, {{"wf", 1}}, 10);
  auto after_early = store_->Now();
  ASSERT_TRUE(after_early.ok());
  if (*after_early < *first.run.lease_expires_at) {
    EXPECT_TRUE(early.runs.empty());
  }
  if (early.runs.empty()) {
    SleepFor(milliseconds(500));
    WaitUntilDbTime(*first.run.lease_expires_at);
    early = Claim(b, {{"wf", 1}}, 10);
  }
  ASSERT_EQ(early.runs.size(), 1u);
  const ClaimedRun& taken = early.runs[0];
  EXPECT_EQ(taken.run.id, id);
  EXPECT_EQ(taken.run.lease_owner, b);
  EXPECT_EQ(taken.run.lease_epoch, 2);
  EXPECT_EQ(taken.run.attempts, 2);
  EXPECT_EQ(taken.run.status, RunStatus::kRunning);
  EXPECT_EQ(taken.run.version, 1);
  EXPECT_EQ(taken.run.started_at, first.run.started_at);
  ASSERT_EQ(taken.journal.size(), 1u);
  EXPECT_EQ(taken.journal[0].step_id, "before-crash");
  EXPECT_GT(*taken.run.lease_expires_at, *first.run.lease_expires_at);
}

TEST_F(LeaseTest, HeartbeatRenewsExactlyTheOwnersRunningRuns) {
  for (int i = 0; i < 4; ++i) Start("wf");
  const std::string a = NewUuid();
  const std::string b = NewUuid();
  auto mine = Claim(a, {{"wf", 1}}, 3, std::chrono::seconds(10));
  ASSERT_EQ(mine.runs.size(), 3u);
  auto theirs = Claim(b, {{"wf", 1}}, 1, std::chrono::seconds(10));
  ASSERT_EQ(theirs.runs.size(), 1u);
  // One of a's runs is parked: it is no longer a's to renew.
  auto parked = store_->ParkRun(LeaseOf(mine.runs[2]), std::nullopt, std::chrono::minutes(1));
  ASSERT_TRUE(parked.ok()) << parked.status().message();

  const std::string theirs_before = db_->Query(
      "SELECT lease_expires_at FROM kagzi_runs WHERE id = '" + theirs.runs[0].run.id + "'");
  auto renewed = store_->Heartbeat(a, std::chrono::minutes(10));
  ASSERT_TRUE(renewed.ok()) << renewed.status().message();
  std::set<std::string> got(renewed->begin(), renewed->end());
  EXPECT_EQ(renewed->size(), 2u);
  EXPECT_EQ(got, (std::set<std::string>{mine.runs[0].run.id, mine.runs[1].run.id}));

  auto now = store_->Now();
  ASSERT_TRUE(now.ok());
  for (int i = 0; i < 2; ++i) {
    RunRecord r = Get(mine.runs[static_cast<std::size_t>(i)].run.id);
    ASSERT_TRUE(r.lease_expires_at.has_value());
    EXPECT_GT(*r.lease_expires_at, *mine.runs[0].run.lease_expires_at);
    EXPECT_GT(*r.lease_expires_at, *now + 9 * 60 * 1'000'000LL);
    EXPECT_EQ(r.lease_epoch, 1);  // a heartbeat is not a claim
  }
  EXPECT_EQ(db_->Query("SELECT lease_expires_at FROM kagzi_runs WHERE id = '" +
                       theirs.runs[0].run.id + "'"),
            theirs_before);
  EXPECT_EQ(Get(mine.runs[2].run.id).status, RunStatus::kSleeping);

  // An owner with nothing gets nothing.
  auto none = store_->Heartbeat(NewUuid(), std::chrono::seconds(10));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_F(LeaseTest, HeartbeatKeepsTheRunPastItsOriginalTtl) {
  std::string id = Start("wf");
  const std::string a = NewUuid();
  ClaimedRun first = ClaimOne(a, milliseconds(500));
  auto renewed = store_->Heartbeat(a, std::chrono::minutes(5));
  ASSERT_TRUE(renewed.ok()) << renewed.status().message();
  ASSERT_EQ(*renewed, std::vector<std::string>{id});

  WaitUntilDbTime(*first.run.lease_expires_at + 200'000);
  EXPECT_TRUE(Claim(NewUuid(), {{"wf", 1}}, 10).runs.empty());
  RunRecord r = Get(id);
  EXPECT_EQ(r.lease_owner, a);
  EXPECT_EQ(r.lease_epoch, 1);
  EXPECT_TRUE(store_->RecordStep(LeaseOf(first), MakeStep("still-mine", 0, "true")).ok());
}

TEST_F(LeaseTest, HeartbeatTouchesTheDaemonRow) {
  const std::string a = NewUuid();
  DaemonInfo info;
  info.id = a;
  info.hostname = "host";
  info.pid = 1;
  info.version = "test";
  info.concurrency = 1;
  info.lease_ttl = std::chrono::seconds(30);
  ASSERT_TRUE(store_->RegisterDaemon(info, {}).ok());
  db_->Query("UPDATE kagzi_daemons SET heartbeat_at = now() - interval '1 hour'");
  auto before = store_->ListDaemons();
  ASSERT_TRUE(before.ok());
  ASSERT_EQ(before->size(), 1u);
  EXPECT_FALSE((*before)[0].alive);
  ASSERT_TRUE(store_->Heartbeat(a, std::chrono::seconds(30)).ok());
  auto after = store_->ListDaemons();
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE((*after)[0].alive);
}

TEST_F(LeaseTest, ParkedRunSleepsWithoutALeaseUntilItsWakeTime) {
  std::string id = Start("wf");
  const std::string a = NewUuid();
  ClaimedRun first = ClaimOne(a, std::chrono::seconds(30));
  ASSERT_TRUE(store_->RecordStep(LeaseOf(first), MakeStep("create-user", 0, "{\"id\":7}")).ok());

  StepRecord nap;
  nap.step_id = "wait";
  nap.seq = 1;
  nap.kind = StepKind::kSleep;
  nap.started_at = first.run.started_at;
  auto before = store_->Now();
  ASSERT_TRUE(before.ok());
  auto wake = store_->ParkRun(LeaseOf(first), nap, milliseconds(300));
  ASSERT_TRUE(wake.ok()) << wake.status().message();
  auto after = store_->Now();
  ASSERT_TRUE(after.ok());
  // The wake time is the database's now() at the park plus the delay.
  EXPECT_GE(*wake, *before + 300'000);
  EXPECT_LE(*wake, *after + 300'000);

  RunRecord parked = Get(id);
  EXPECT_EQ(parked.status, RunStatus::kSleeping);
  EXPECT_FALSE(parked.lease_owner.has_value());
  EXPECT_FALSE(parked.lease_expires_at.has_value());
  EXPECT_EQ(parked.available_at, *wake);
  EXPECT_EQ(parked.lease_epoch, 1);
  // The parking lease is spent: no more writes with it.
  EXPECT_EQ(store_->RecordStep(LeaseOf(first), MakeStep("late", 2, "1")).code(),
            StatusCode::kConflict);

  auto next = store_->NextWakeTime({{"wf", 1}});
  ASSERT_TRUE(next.ok()) << next.status().message();
  EXPECT_EQ(*next, std::optional<Micros>(*wake));
  auto other = store_->NextWakeTime({{"other", 1}});
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(*other, std::nullopt);

  // Not claimable before the wake time.
  auto early = Claim(NewUuid(), {{"wf", 1}}, 10);
  auto after_early = store_->Now();
  ASSERT_TRUE(after_early.ok());
  if (*after_early < *wake) {
    EXPECT_TRUE(early.runs.empty());
  }

  ClaimedRun woken;
  if (early.runs.empty()) {
    WaitUntilDbTime(*wake);
    auto batch = Claim(NewUuid(), {{"wf", 1}}, 10);
    ASSERT_EQ(batch.runs.size(), 1u);
    woken = batch.runs[0];
  } else {
    woken = early.runs[0];
  }
  EXPECT_EQ(woken.run.id, id);
  EXPECT_EQ(woken.run.lease_epoch, 2);
  EXPECT_EQ(woken.run.attempts, 2);
  ASSERT_EQ(woken.journal.size(), 2u);
  EXPECT_EQ(woken.journal[0].step_id, "create-user");
  EXPECT_EQ(woken.journal[1].step_id, "wait");
  EXPECT_EQ(woken.journal[1].kind, StepKind::kSleep);
  EXPECT_EQ(woken.journal[1].status, StepStatus::kCompleted);
  EXPECT_EQ(woken.journal[1].seq, 1);
  EXPECT_EQ(woken.journal[1].wake_at, std::optional<Micros>(*wake));
  EXPECT_EQ(woken.journal[1].started_at, first.run.started_at);
}

TEST_F(LeaseTest, LongSleepIsNotClaimed) {
  std::string id = Start("wf");
  ClaimedRun first = ClaimOne(NewUuid(), std::chrono::seconds(30));
  StepRecord nap;
  nap.step_id = "long";
  nap.kind = StepKind::kSleep;
  auto wake = store_->ParkRun(LeaseOf(first), nap, std::chrono::hours(1));
  ASSERT_TRUE(wake.ok()) << wake.status().message();
  EXPECT_TRUE(Claim(NewUuid(), {{"wf", 1}}, 10).runs.empty());
  EXPECT_EQ(Get(id).status, RunStatus::kSleeping);
  // The earliest wake time is the pending run that is runnable now.
  std::string pending = Start("wf");
  auto next = store_->NextWakeTime({{"wf", 1}});
  ASSERT_TRUE(next.ok());
  ASSERT_TRUE(next->has_value());
  EXPECT_EQ(**next, Get(pending).available_at);
}

TEST_F(LeaseTest, NextWakeTimeIncludesLeaseExpiry) {
  std::string id = Start("wf");
  ClaimedRun first = ClaimOne(NewUuid(), std::chrono::seconds(40));
  auto next = store_->NextWakeTime({{"wf", 1}});
  ASSERT_TRUE(next.ok()) << next.status().message();
  EXPECT_EQ(*next, first.run.lease_expires_at);
  EXPECT_EQ(Get(id).status, RunStatus::kRunning);
}

// NextWakeTime reads, in its generic plan (the one the daemon runs), the
// first entry of each index in order (a wake time, a lease expiry) and
// stops: never every entry, nor the table, whether the plan is made on a
// young table or beside a backlog of parked runs. (Its plan is cached per
// connection, and a young table grows.)
TEST_F(LeaseTest, NextWakeTimeReadsTheFirstEntryOfEachIndex) {
  const auto check = [&](int most_buffers) {
    auto plan = store_->ExplainNextWake({{"wf", 1}});
    ASSERT_TRUE(plan.ok()) << plan.status().message();
    EXPECT_NE(plan->find("Index Scan using kagzi_runs_runnable"), std::string::npos) << *plan;
    EXPECT_NE(plan->find("Index Scan using kagzi_runs_lease_expiry"), std::string::npos) << *plan;
    EXPECT_EQ(plan->find("Aggregate"), std::string::npos) << *plan;
    EXPECT_EQ(plan->find("Sort"), std::string::npos) << *plan;
    EXPECT_EQ(plan->find("Seq Scan on kagzi_runs"), std::string::npos) << *plan;
    auto analyzed = store_->ExplainNextWake({{"wf", 1}}, /*analyze=*/true);
    ASSERT_TRUE(analyzed.ok()) << analyzed.status().message();
    const int buffers = TopBuffers(*analyzed);
    EXPECT_GT(buffers, 0) << *analyzed;
    EXPECT_LT(buffers, most_buffers) << *analyzed;
  };
  Start("wf");
  check(20);
  // 20,000 runs parked a year away fill about 60 leaf pages of the wake
  // time's index; the first entry is one descent.
  db_->Query(
      "INSERT INTO kagzi_runs (id, workflow, version, status, input, available_at)"
      " SELECT kagzi_new_run_id(), 'wf', 1, 'SLEEPING', 'null', now() + interval '1 year'"
      " FROM generate_series(1, 20000)");
  db_->Query("VACUUM (ANALYZE) kagzi_runs");
  check(20);
}

TEST_F(LeaseTest, ParkWithAJournaledStepIdChangesNothing) {
  std::string id = Start("wf");
  ClaimedRun first = ClaimOne(NewUuid(), std::chrono::seconds(30));
  Lease lease = LeaseOf(first);
  ASSERT_TRUE(store_->RecordStep(lease, MakeStep("wait", 0, "\"not a sleep\"")).ok());
  const std::string run_before = RunRow(id);
  const std::string steps_before = StepRows(id);

  StepRecord nap;
  nap.step_id = "wait";  // already in the journal
  nap.seq = 1;
  nap.kind = StepKind::kSleep;
  auto parked = store_->ParkRun(lease, nap, milliseconds(300));
  ASSERT_FALSE(parked.ok());
  // The lease is intact, so this is a journal conflict, not a lost lease.
  EXPECT_EQ(parked.status().code(), StatusCode::kInternal) << parked.status().message();
  EXPECT_EQ(RunRow(id), run_before);
  EXPECT_EQ(StepRows(id), steps_before);

  // A sleep reusing a recorded seq is refused the same way.
  nap.step_id = "wait-2";
  nap.seq = 0;
  parked = store_->ParkRun(lease, nap, milliseconds(300));
  ASSERT_FALSE(parked.ok());
  EXPECT_EQ(parked.status().code(), StatusCode::kInternal) << parked.status().message();
  EXPECT_EQ(RunRow(id), run_before);

  // The lease still works.
  EXPECT_TRUE(store_->RecordStep(lease, MakeStep("next", 1, "1")).ok());
  EXPECT_EQ(Get(id).status, RunStatus::kRunning);
}

TEST_F(LeaseTest, DuplicateStepUnderAValidLeaseIsAJournalConflict) {
  std::string id = Start("wf");
  ClaimedRun first = ClaimOne(NewUuid(), std::chrono::seconds(30));
  Lease lease = LeaseOf(first);
  ASSERT_TRUE(store_->RecordStep(lease, MakeStep("fetch", 0, "{\"v\":1}")).ok());

  Status st = store_->RecordStep(lease, MakeStep("fetch", 1, "{\"v\":2}"));
  EXPECT_EQ(st.code(), StatusCode::kInternal) << st.message();
  EXPECT_NE(st.message().find("fetch"), std::string::npos) << st.message();
  st = store_->RecordStep(lease, MakeStep("other", 0, "{\"v\":3}"));  // seq taken
  EXPECT_EQ(st.code(), StatusCode::kInternal) << st.message();

  auto steps = store_->GetSteps(id);
  ASSERT_TRUE(steps.ok());
  ASSERT_EQ(steps->size(), 1u);
  EXPECT_EQ((*steps)[0].output, "{\"v\":1}");
  EXPECT_EQ(Get(id).status, RunStatus::kRunning);
}

TEST_F(LeaseTest, InvalidJsonOutputIsRefusedByTheDatabase) {
  std::string id = Start("wf");
  ClaimedRun first = ClaimOne(NewUuid(), std::chrono::seconds(30));
  Status st = store_->RecordStep(LeaseOf(first), MakeStep("bad", 0, "{not json"));
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.message();
  st = store_->CompleteRun(LeaseOf(first), "[1,");
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.message();
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps"), 0);
  EXPECT_EQ(Get(id).status, RunStatus::kRunning);
}

}  // namespace
}  // namespace kagzi::testing
