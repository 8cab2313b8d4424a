// Group commit: Store::ApplyWrites on PostgreSQL (one pipelined
// transaction for many runs' fenced writes, each answered as its own call
// would be) and the daemon's GroupCommitter on top of it.
#include "group_commit.h"

#include <atomic>
#include <future>
#include <optional>
#include <sstream>
#include <thread>

#include "kagzi/core/pg.h"
#include "kagzi/core/wakeup.h"
#include "store_fixture.h"
#include "support/process.h"

namespace kagzi::testing {
namespace {

class GroupCommitTest : public StoreTest {
 protected:
  // Starts and claims n runs of "wf".
  std::vector<ClaimedRun> StartAndClaim(int n) {
    for (int i = 0; i < n; ++i) Start("wf", "{\"i\":" + std::to_string(i) + "}");
    ClaimBatch batch = Claim(NewUuid(), {{"wf", 1}}, n);
    EXPECT_EQ(batch.runs.size(), static_cast<std::size_t>(n));
    return std::move(batch.runs);
  }

  // Inserts 64 RUNNING runs leased by each of `daemons` daemons.
  void HoldRuns(int daemons) {
    db_->Query(
        "INSERT INTO kagzi_runs (id, workflow, input, status, lease_owner, lease_epoch,"
        " lease_expires_at) SELECT kagzi_new_run_id(), 'wf', 'null', 'RUNNING',"
        " ('00000000-0000-0000-0000-00000000000' || (i % " +
        std::to_string(daemons) +
        "))::uuid, 1, now() + interval '1 hour' FROM generate_series(1, " +
        std::to_string(64 * daemons) + ") i");
  }

  // Holds `run_id`'s row in a transaction of its own, so that a write for
  // the run waits, until the connection commits or closes. nullptr (and a
  // test failure) if it cannot.
  std::unique_ptr<PgConnection> HoldRow(const std::string& run_id) const {
    auto holder = PgConnection::Connect(db_->url(), "kagzi-test-holder");
    if (!holder.ok()) {
      ADD_FAILURE() << holder.status().message();
      return nullptr;
    }
    std::unique_ptr<PgConnection> conn = std::move(holder).value();
    if (!conn->Exec("BEGIN").ok() ||
        !conn->Exec("SELECT id FROM kagzi_runs WHERE id = '" + run_id + "' FOR UPDATE").ok()) {
      ADD_FAILURE() << "could not lock the row of run " << run_id;
      return nullptr;
    }
    return conn;
  }

  // Writes `step` (a step record whose row HoldRow holds) through
  // `committer` on a thread of its own, and returns once it waits for the
  // row: a commit in flight, held.
  std::thread WriteHeldStep(daemon::GroupCommitter& committer, FencedWrite& step) const {
    std::thread writer([&committer, &step] { committer.Write(step); });
    EXPECT_TRUE(db_->WaitForLockWait("WITH lease AS"))
        << "the write never waited for its run's row";
    return writer;
  }

  static FencedWrite StepWrite(const ClaimedRun& run, const std::string& id, int seq,
                               bool new_entry = false) {
    FencedWrite w;
    w.kind = FencedWrite::Kind::kRecordStep;
    w.lease = LeaseOf(run);
    w.step = MakeStep(id, seq, "{\"run\":\"" + run.run.id + "\"}");
    w.new_entry = new_entry;
    return w;
  }

  static FencedWrite EndWrite(const ClaimedRun& run, FencedWrite::Kind kind, std::string value) {
    FencedWrite w;
    w.kind = kind;
    w.lease = LeaseOf(run);
    w.value = std::move(value);
    return w;
  }

  // A park of `run`, with a sleep's journal entry `nap_id` at seq 0 unless
  // it is empty.
  static FencedWrite ParkWrite(const ClaimedRun& run, ParkOptions how,
                               const std::string& nap_id = "") {
    FencedWrite w;
    w.kind = FencedWrite::Kind::kPark;
    w.lease = LeaseOf(run);
    w.park = how;
    if (!nap_id.empty()) {
      w.step.step_id = nap_id;
      w.step.seq = 0;
      w.step.kind = StepKind::kSleep;
      w.park_step = true;
    }
    return w;
  }

  // How many of these runs' rows the transaction that wrote the journal's
  // entries wrote too (there must be one such transaction).
  int RunsWrittenWithTheJournal(const std::vector<std::string>& run_ids) const {
    std::string ids;
    for (const std::string& id : run_ids) ids += (ids.empty() ? "'" : ", '") + id + "'";
    EXPECT_EQ(WritingTransactions("kagzi_steps", "true"), 1);
    return Count("SELECT count(*) FROM kagzi_runs r WHERE r.id IN (" + ids +
                 ") AND r.xmin::text = (SELECT min(xmin::text) FROM kagzi_steps)");
  }

  // How many transactions wrote the rows `where` selects (their xmin).
  int WritingTransactions(const std::string& table, const std::string& where) const {
    return Count("SELECT count(DISTINCT xmin::text) FROM " + table + " WHERE " + where);
  }
};

TEST_F(GroupCommitTest, AGroupIsOneTransactionAndEachWriteGetsItsOwnAnswer) {
  auto runs = StartAndClaim(6);
  FencedWrite a = StepWrite(runs[0], "a", 0);
  FencedWrite b = StepWrite(runs[1], "b", 0);
  FencedWrite done = EndWrite(runs[2], FencedWrite::Kind::kCompleteRun, "{\"ok\":true}");
  FencedWrite failed = EndWrite(runs[3], FencedWrite::Kind::kFailRun, "it broke");
  FencedWrite stale = StepWrite(runs[4], "late", 0);
  stale.lease.epoch += 7;  // a lease this run no longer has
  FencedWrite stale_end = EndWrite(runs[5], FencedWrite::Kind::kCompleteRun, "1");
  stale_end.lease.owner = NewUuid();  // another daemon's lease
  store_->ApplyWrites({&a, &stale_end, &b, &done, &failed, &stale});

  EXPECT_TRUE(a.result.ok()) << a.result.message();
  EXPECT_TRUE(b.result.ok()) << b.result.message();
  EXPECT_TRUE(done.result.ok()) << done.result.message();
  EXPECT_TRUE(failed.result.ok()) << failed.result.message();
  EXPECT_EQ(stale.result.code(), StatusCode::kConflict) << stale.result.message();
  EXPECT_NE(stale.result.message().find(runs[4].run.id), std::string::npos);
  EXPECT_EQ(stale_end.result.code(), StatusCode::kConflict) << stale_end.result.message();
  EXPECT_NE(stale_end.result.message().find(runs[5].run.id), std::string::npos);
  EXPECT_EQ(Get(runs[5].run.id).status, RunStatus::kRunning);
  EXPECT_FALSE(Get(runs[5].run.id).output.has_value());

  EXPECT_EQ(Get(runs[2].run.id).status, RunStatus::kCompleted);
  EXPECT_EQ(Get(runs[2].run.id).output, "{\"ok\":true}");
  EXPECT_EQ(Get(runs[3].run.id).status, RunStatus::kFailed);
  EXPECT_EQ(Get(runs[3].run.id).error, "it broke");
  EXPECT_EQ(Get(runs[4].run.id).status, RunStatus::kRunning);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps"), 2);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps WHERE step_id = 'late'"), 0);
  // Both journal entries and both run rows were written by one transaction.
  EXPECT_EQ(RunsWrittenWithTheJournal({runs[2].run.id, runs[3].run.id}), 2);
}

// A run leased anew by a claim that commits while a group waits for the
// run's row lock: the group sees the row as that claim left it (new owner
// or new epoch), so its step and its end for the run are lost leases and
// write nothing, and the other writes of the group go in.
TEST_F(GroupCommitTest, ARunReclaimedWhileTheGroupWaitsForItsLockIsALostLease) {
  auto runs = StartAndClaim(3);
  auto locker = PgConnection::Connect(db_->url(), "kagzi-test-locker");
  ASSERT_TRUE(locker.ok()) << locker.status().message();
  // Run 0 taken by another daemon; run 1 by this same daemon again (its
  // lease expired and it claimed the run anew): only the epoch tells.
  const std::string other = NewUuid();
  const std::vector<std::string> owners = {other, runs[1].run.lease_owner.value_or("")};
  ASSERT_TRUE((*locker)->Exec("BEGIN").ok());
  for (int i : {0, 1}) {
    ASSERT_TRUE((*locker)
                    ->Exec("UPDATE kagzi_runs SET lease_owner = '" + owners[i] +
                           "', lease_epoch = lease_epoch + 1 WHERE id = '" + runs[i].run.id + "'")
                    .ok());
  }
  FencedWrite step = StepWrite(runs[0], "a", 0);
  FencedWrite end = EndWrite(runs[1], FencedWrite::Kind::kCompleteRun, "1");
  FencedWrite mine = StepWrite(runs[2], "b", 0);
  std::thread group([&] { store_->ApplyWrites({&step, &end, &mine}); });
  EXPECT_TRUE(Eventually(
      [&] {
        return Count(
                   "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                   " AND wait_event_type = 'Lock'") == 1;
      },
      std::chrono::seconds(10)))
      << "the group does not wait for the run's row lock";
  ASSERT_TRUE((*locker)->Exec("COMMIT").ok());
  group.join();

  EXPECT_EQ(step.result.code(), StatusCode::kConflict) << step.result.message();
  EXPECT_EQ(end.result.code(), StatusCode::kConflict) << end.result.message();
  EXPECT_TRUE(mine.result.ok()) << mine.result.message();
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps WHERE step_id = 'a'"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps WHERE step_id = 'b'"), 1);
  for (int i : {0, 1}) {
    RunRecord r = Get(runs[i].run.id);
    EXPECT_EQ(r.status, RunStatus::kRunning) << i;
    EXPECT_EQ(r.lease_owner.value_or(""), owners[i]) << i;
    EXPECT_EQ(r.lease_epoch, runs[i].run.lease_epoch + 1) << i;
    EXPECT_FALSE(r.output.has_value()) << i;
  }
}

// Parks go with the group (one transaction with its steps and ends), and
// each gets what its own ParkRun would have returned.
TEST_F(GroupCommitTest, ParksCommitWithTheGroupAndEachGetsItsAnswer) {
  auto runs = StartAndClaim(5);
  const Micros before = *store_->Now();
  ParkOptions an_hour;
  an_hour.delay = std::chrono::hours(1);
  ParkOptions until_woken;
  until_woken.expected_wake_seq = runs[1].run.wake_seq;
  FencedWrite nap = ParkWrite(runs[0], an_hour, "nap");
  FencedWrite wait = ParkWrite(runs[1], until_woken);
  FencedWrite step = StepWrite(runs[2], "s", 0);
  FencedWrite done = EndWrite(runs[3], FencedWrite::Kind::kCompleteRun, "1");
  FencedWrite stale = ParkWrite(runs[4], an_hour, "late-nap");
  stale.lease.epoch += 7;  // a lease this run no longer has
  store_->ApplyWrites({&stale, &done, &wait, &nap, &step});

  ASSERT_TRUE(nap.result.ok()) << nap.result.message();
  ASSERT_TRUE(nap.parked_until.has_value());
  EXPECT_GE(*nap.parked_until, before + 3'600'000'000LL);
  EXPECT_LT(*nap.parked_until, before + 3'660'000'000LL);
  EXPECT_EQ(*nap.parked_until, Get(runs[0].run.id).available_at);
  EXPECT_TRUE(wait.result.ok()) << wait.result.message();
  EXPECT_FALSE(wait.parked_until.has_value());
  EXPECT_TRUE(step.result.ok()) << step.result.message();
  EXPECT_TRUE(done.result.ok()) << done.result.message();
  EXPECT_EQ(stale.result.code(), StatusCode::kConflict) << stale.result.message();
  EXPECT_NE(stale.result.message().find(runs[4].run.id), std::string::npos);

  for (int i : {0, 1}) {
    RunRecord parked = Get(runs[i].run.id);
    EXPECT_EQ(parked.status, RunStatus::kSleeping);
    EXPECT_FALSE(parked.lease_owner.has_value());
  }
  EXPECT_EQ(Get(runs[4].run.id).status, RunStatus::kRunning);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps WHERE step_id = 'nap' AND kind = 'sleep'"), 1);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps WHERE step_id = 'late-nap'"), 0);
  // One transaction wrote both parks, the end, and both journal entries.
  EXPECT_EQ(RunsWrittenWithTheJournal({runs[0].run.id, runs[1].run.id, runs[3].run.id}), 3);
}

// A park whose journal entry conflicts fails the group's transaction; the
// group is then written write by write, so only that park is refused (as
// ParkRun refuses it: the lease intact, nothing changed).
TEST_F(GroupCommitTest, AParkConflictingWithTheJournalFailsAloneInAGroup) {
  auto runs = StartAndClaim(2);
  ASSERT_TRUE(store_->RecordStep(LeaseOf(runs[0]), MakeStep("nap", 0, "\"a step\"")).ok());
  ParkOptions a_minute;
  a_minute.delay = std::chrono::minutes(1);
  FencedWrite clash = ParkWrite(runs[0], a_minute, "nap");
  FencedWrite step = StepWrite(runs[1], "s", 0);
  store_->ApplyWrites({&clash, &step});

  EXPECT_EQ(clash.result.code(), StatusCode::kInternal) << clash.result.message();
  EXPECT_NE(clash.result.message().find("nap"), std::string::npos) << clash.result.message();
  EXPECT_EQ(Get(runs[0].run.id).status, RunStatus::kRunning);
  EXPECT_TRUE(step.result.ok()) << step.result.message();
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps WHERE step_id = 's'"), 1);
}

// A park that wakes at once (what it waits for happened since its claim)
// is announced by the status trigger. Beside a run's end, whose group
// silences that trigger for the statements after the parks, too.
TEST_F(GroupCommitTest, AParkThatWakesAtOnceIsAnnouncedBesideAnEnd) {
  auto runs = StartAndClaim(2);
  auto conn = PgConnection::Connect(db_->url(), "kagzi-test-listener");
  ASSERT_TRUE(conn.ok()) << conn.status().message();
  std::unique_ptr<PgConnection> listener = std::move(conn).value();
  ASSERT_TRUE(listener->Listen("kagzi_wakeup").ok());
  ParkOptions until_woken;
  until_woken.expected_wake_seq = runs[0].run.wake_seq - 1;  // woken since
  FencedWrite wait = ParkWrite(runs[0], until_woken);
  FencedWrite done = EndWrite(runs[1], FencedWrite::Kind::kCompleteRun, "1");
  store_->ApplyWrites({&wait, &done});
  ASSERT_TRUE(wait.result.ok()) << wait.result.message();
  ASSERT_TRUE(done.result.ok()) << done.result.message();

  const std::string expected = WakeupPayload("wf", {runs[0].run.id});
  bool heard = false;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!heard && std::chrono::steady_clock::now() < give_up) {
    auto got = listener->WaitForNotifications(std::chrono::milliseconds(100));
    ASSERT_TRUE(got.ok()) << got.status().message();
    for (const auto& n : *got) heard = heard || n.payload == expected;
  }
  EXPECT_TRUE(heard) << "no NOTIFY kagzi_wakeup " << expected;
  auto again = Claim(NewUuid(), {{"wf", 1}}, 1);
  ASSERT_EQ(again.runs.size(), 1u);
  EXPECT_EQ(again.runs[0].run.id, runs[0].run.id);
}

// A group's step records go as one statement (kRecordSteps); each still
// gets the answer its own RecordStep would have given.
TEST_F(GroupCommitTest, StepsOfAGroupAreOneStatementAndEachIsAnsweredAsAlone) {
  auto runs = StartAndClaim(4);
  ASSERT_TRUE(store_->RecordStep(LeaseOf(runs[1]), MakeStep("x", 0, "1")).ok());
  db_->Query("UPDATE kagzi_runs SET deadline_at = now() - interval '1 second' WHERE id = '" +
             runs[2].run.id + "'");
  FencedWrite a = StepWrite(runs[0], "a", 0);
  FencedWrite changed = StepWrite(runs[1], "x", 0);  // "x" was recorded with another output
  FencedWrite late = StepWrite(runs[2], "c", 0);
  FencedWrite p = StepWrite(runs[3], "p", 0);  // two members of one run's parallel group
  FencedWrite q = StepWrite(runs[3], "q", 1);
  store_->ApplyWrites({&q, &late, &a, &changed, &p});

  EXPECT_TRUE(a.result.ok()) << a.result.message();
  EXPECT_EQ(changed.result.code(), StatusCode::kInternal) << changed.result.message();
  EXPECT_NE(changed.result.message().find("conflicts with the recorded journal"), std::string::npos)
      << changed.result.message();
  EXPECT_EQ(late.result.code(), StatusCode::kPermanent) << late.result.message();
  EXPECT_NE(late.result.message().find("deadline exceeded"), std::string::npos)
      << late.result.message();
  EXPECT_TRUE(p.result.ok()) << p.result.message();
  EXPECT_TRUE(q.result.ok()) << q.result.message();
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps WHERE step_id IN ('a', 'p', 'q')"), 3);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps WHERE step_id = 'c'"), 0);
  EXPECT_EQ(db_->Query("SELECT output::text FROM kagzi_steps WHERE step_id = 'x'"), "1");
  EXPECT_EQ(WritingTransactions("kagzi_steps", "step_id IN ('a', 'p', 'q')"), 1);
}

// New entries (FencedWrite::new_entry) are inserted without ON CONFLICT,
// alone or in a group; and where one exists after all, each write of the
// group is answered as an upsert would answer it.
TEST_F(GroupCommitTest, NewEntriesAreInsertedPlainlyAndEachIsAnsweredAsAnUpsertWouldBe) {
  auto runs = StartAndClaim(6);
  std::string since = WalEnd();
  FencedWrite alone = StepWrite(runs[0], "alone", 0, /*new_entry=*/true);
  store_->ApplyWrites({&alone});
  FencedWrite g1 = StepWrite(runs[1], "g1", 0, true);
  FencedWrite g2 = StepWrite(runs[2], "g2", 0, true);
  store_->ApplyWrites({&g2, &g1});
  ASSERT_TRUE(alone.result.ok()) << alone.result.message();
  ASSERT_TRUE(g1.result.ok()) << g1.result.message();
  ASSERT_TRUE(g2.result.ok()) << g2.result.message();
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps WHERE step_id IN ('alone', 'g1', 'g2')"), 3);
  EXPECT_EQ(SpeculativeInserts("kagzi_steps", since), 0);
  // The same writes as upserts do show in the WAL: the check above can fail.
  since = WalEnd();
  FencedWrite up1 = StepWrite(runs[1], "up1", 1);
  FencedWrite up2 = StepWrite(runs[2], "up2", 1);
  store_->ApplyWrites({&up1, &up2});
  ASSERT_TRUE(up1.result.ok()) << up1.result.message();
  EXPECT_EQ(SpeculativeInserts("kagzi_steps", since), 2);

  // Entries that exist after all: "x" recorded with another output, and
  // "alone" and "g1" written again identically (their first commit's reply
  // lost). Alone and in a group, each is answered as before.
  ASSERT_TRUE(store_->RecordStep(LeaseOf(runs[3]), MakeStep("x", 0, "1")).ok());
  FencedWrite changed = StepWrite(runs[3], "x", 0, true);
  store_->ApplyWrites({&changed});
  EXPECT_EQ(changed.result.code(), StatusCode::kInternal) << changed.result.message();
  EXPECT_NE(changed.result.message().find("conflicts with the recorded journal"), std::string::npos)
      << changed.result.message();
  store_->ApplyWrites({&alone});
  EXPECT_TRUE(alone.result.ok()) << alone.result.message();
  FencedWrite fresh = StepWrite(runs[4], "fresh", 0, true);
  changed.result = Status::Ok();
  store_->ApplyWrites({&g1, &changed, &fresh});
  EXPECT_TRUE(g1.result.ok()) << g1.result.message();
  EXPECT_EQ(changed.result.code(), StatusCode::kInternal) << changed.result.message();
  EXPECT_TRUE(fresh.result.ok()) << fresh.result.message();
  EXPECT_EQ(db_->Query("SELECT output::text FROM kagzi_steps WHERE step_id = 'x'"), "1");
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps WHERE step_id IN ('alone', 'g1', 'fresh')"), 3);
  // A new entry of a run whose lease is gone is refused, as an upsert is.
  FencedWrite stale = StepWrite(runs[5], "late", 0, true);
  stale.lease.epoch += 1;
  store_->ApplyWrites({&stale});
  EXPECT_EQ(stale.result.code(), StatusCode::kConflict) << stale.result.message();
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps WHERE step_id = 'late'"), 0);
}

TEST_F(GroupCommitTest, CancelRequestsReachTheWriterInTheGroup) {
  auto runs = StartAndClaim(2);
  auto cancelled = store_->RequestCancel(runs[1].run.id, "stop it");
  ASSERT_TRUE(cancelled.ok()) << cancelled.status().message();
  FencedWrite a = StepWrite(runs[0], "a", 0);
  FencedWrite b = StepWrite(runs[1], "b", 0);
  store_->ApplyWrites({&a, &b});
  ASSERT_TRUE(a.result.ok());
  ASSERT_TRUE(b.result.ok());
  EXPECT_FALSE(a.feedback.cancel_requested);
  EXPECT_TRUE(b.feedback.cancel_requested);
  EXPECT_EQ(b.feedback.cancel_reason, "stop it");
}

TEST_F(GroupCommitTest, AFailingWriteDoesNotTakeTheOthersWithIt) {
  auto runs = StartAndClaim(3);
  ASSERT_TRUE(store_->RecordStep(LeaseOf(runs[1]), MakeStep("first", 0, "1")).ok());
  FencedWrite a = StepWrite(runs[0], "a", 0);
  FencedWrite clash = StepWrite(runs[1], "other", 0);  // seq 0 is "first"'s
  FencedWrite bad = StepWrite(runs[2], "c", 0);
  bad.step.output = "{not json";
  FencedWrite done = EndWrite(runs[0], FencedWrite::Kind::kCompleteRun, "null");
  // Two writes of one run (a parallel group's members may do that): in
  // the order given.
  store_->ApplyWrites({&a, &clash, &bad});
  store_->ApplyWrites({&done});

  EXPECT_TRUE(a.result.ok()) << a.result.message();
  EXPECT_EQ(clash.result.code(), StatusCode::kInternal) << clash.result.message();
  EXPECT_NE(clash.result.message().find("other"), std::string::npos) << clash.result.message();
  EXPECT_EQ(bad.result.code(), StatusCode::kInvalidArgument) << bad.result.message();
  EXPECT_TRUE(done.result.ok()) << done.result.message();
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps WHERE step_id IN ('a', 'first')"), 2);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps WHERE step_id IN ('other', 'c')"), 0);
}

TEST_F(GroupCommitTest, AGroupRetriedAfterItCommittedIsAnsweredTheSame) {
  // What the fallback relies on when a commit's reply is lost: recording
  // the same entries again is a success, finishing a finished run a
  // conflict, and nothing changes.
  auto runs = StartAndClaim(2);
  FencedWrite a = StepWrite(runs[0], "a", 0);
  FencedWrite done = EndWrite(runs[1], FencedWrite::Kind::kCompleteRun, "7");
  store_->ApplyWrites({&a, &done});
  ASSERT_TRUE(a.result.ok());
  ASSERT_TRUE(done.result.ok());
  store_->ApplyWrites({&a, &done});
  EXPECT_TRUE(a.result.ok()) << a.result.message();
  EXPECT_EQ(done.result.code(), StatusCode::kConflict) << done.result.message();
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps"), 1);
  EXPECT_EQ(Get(runs[1].run.id).output, "7");
}

// The same for a park (its group's reply lost, the group written again
// write by write): parking a parked run is a lost lease, and the run keeps
// its wake time and its one journal entry.
TEST_F(GroupCommitTest, AParkRetriedAfterItCommittedIsAnsweredTheSame) {
  auto runs = StartAndClaim(2);
  ParkOptions an_hour;
  an_hour.delay = std::chrono::hours(1);
  FencedWrite nap = ParkWrite(runs[0], an_hour, "nap");
  FencedWrite a = StepWrite(runs[1], "a", 0);
  store_->ApplyWrites({&nap, &a});
  ASSERT_TRUE(nap.result.ok()) << nap.result.message();
  ASSERT_TRUE(nap.parked_until.has_value());
  const Micros wake = *nap.parked_until;

  nap.parked_until.reset();
  store_->ApplyWrites({&nap, &a});
  EXPECT_EQ(nap.result.code(), StatusCode::kConflict) << nap.result.message();
  EXPECT_FALSE(nap.parked_until.has_value());
  EXPECT_TRUE(a.result.ok()) << a.result.message();
  RunRecord parked = Get(runs[0].run.id);
  EXPECT_EQ(parked.status, RunStatus::kSleeping);
  EXPECT_EQ(parked.available_at, wake);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps WHERE step_id = 'nap'"), 1);
}

TEST_F(GroupCommitTest, CommitterGathersConcurrentWritersIntoFewerCommits) {
  constexpr int kRuns = 32;
  auto runs = StartAndClaim(kRuns);
  daemon::GroupCommitter committer(*store_, 256);
  committer.Start();
  std::vector<FencedWrite> writes;
  for (const auto& run : runs) writes.push_back(StepWrite(run, "s", 0));
  std::vector<std::thread> threads;
  for (auto& w : writes) threads.emplace_back([&committer, &w] { committer.Write(w); });
  for (auto& t : threads) t.join();
  committer.Stop();
  for (const auto& w : writes) EXPECT_TRUE(w.result.ok()) << w.result.message();
  EXPECT_EQ(committer.writes(), kRuns);
  EXPECT_GE(committer.groups(), 1);
  EXPECT_LE(committer.groups(), kRuns);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps"), kRuns);
  EXPECT_EQ(WritingTransactions("kagzi_steps", "true"), committer.groups());

  // Once stopped, a write is made by its caller, on its own.
  FencedWrite late = EndWrite(runs[0], FencedWrite::Kind::kCompleteRun, "1");
  committer.Write(late);
  EXPECT_TRUE(late.result.ok()) << late.result.message();
  EXPECT_EQ(committer.writes(), kRuns);
}

// A write that finds no commit in flight and none waiting is committed by
// its own thread, as a group of one.
TEST_F(GroupCommitTest, ALoneWriteIsCommittedByItsWriter) {
  auto runs = StartAndClaim(2);
  daemon::GroupCommitter committer(*store_, 256);
  committer.Start();
  FencedWrite step = StepWrite(runs[0], "s", 0);
  committer.Write(step);
  EXPECT_TRUE(step.result.ok()) << step.result.message();
  FencedWrite end = EndWrite(runs[1], FencedWrite::Kind::kCompleteRun, "{\"ok\":1}");
  committer.Write(end);
  EXPECT_TRUE(end.result.ok()) << end.result.message();
  EXPECT_EQ(committer.groups(), 2);
  EXPECT_EQ(committer.direct_groups(), 2);
  EXPECT_EQ(committer.writes(), 2);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps"), 1);
  EXPECT_EQ(Get(runs[1].run.id).status, RunStatus::kCompleted);
  committer.Stop();
}

// WriteAsync: with nothing in flight and leave to, the caller commits the
// write itself and is called back before it returns; without leave, the
// committer's thread commits it and calls back. Once the committer is
// stopped, the caller commits it, whatever the leave.
TEST_F(GroupCommitTest, AWriteNobodyWaitsForIsCommittedHereOnlyWithLeave) {
  auto runs = StartAndClaim(3);
  daemon::GroupCommitter committer(*store_, 256);
  committer.Start();
  const auto caller = std::this_thread::get_id();

  FencedWrite here = EndWrite(runs[0], FencedWrite::Kind::kCompleteRun, "1");
  std::optional<std::thread::id> here_by;
  committer.WriteAsync(
      here, [&] { here_by = std::this_thread::get_id(); }, true);
  ASSERT_TRUE(here_by.has_value())
      << "committed alone, it is called back before WriteAsync returns";
  EXPECT_EQ(*here_by, caller);
  EXPECT_TRUE(here.result.ok()) << here.result.message();
  EXPECT_EQ(committer.direct_groups(), 1);

  FencedWrite there = EndWrite(runs[1], FencedWrite::Kind::kFailRun, "no");
  std::promise<std::thread::id> there_by;
  committer.WriteAsync(
      there, [&] { there_by.set_value(std::this_thread::get_id()); }, false);
  auto by = there_by.get_future();
  ASSERT_EQ(by.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_NE(by.get(), caller);
  EXPECT_TRUE(there.result.ok()) << there.result.message();
  EXPECT_EQ(committer.groups(), 2);
  EXPECT_EQ(committer.direct_groups(), 1);
  EXPECT_EQ(Get(runs[0].run.id).status, RunStatus::kCompleted);
  EXPECT_EQ(Get(runs[1].run.id).status, RunStatus::kFailed);

  committer.Stop();
  FencedWrite late = EndWrite(runs[2], FencedWrite::Kind::kCompleteRun, "2");
  bool late_done = false;
  committer.WriteAsync(
      late, [&] { late_done = true; }, false);
  EXPECT_TRUE(late_done);
  EXPECT_TRUE(late.result.ok()) << late.result.message();
  EXPECT_EQ(Get(runs[2].run.id).status, RunStatus::kCompleted);
}

// A write nobody waits for, queued behind a commit in flight: WriteAsync
// returns at once, and the callback comes only once the write is durable,
// with its answer in it (here one ending written, one refused: its lease is
// gone).
TEST_F(GroupCommitTest, AQueuedWriteIsCalledBackOnceItIsDurable) {
  auto runs = StartAndClaim(3);
  auto holder = HoldRow(runs[0].run.id);
  ASSERT_NE(holder, nullptr);

  daemon::GroupCommitter committer(*store_, 256);
  committer.Start();
  FencedWrite first = StepWrite(runs[0], "s", 0);
  std::thread first_writer = WriteHeldStep(committer, first);

  FencedWrite end = EndWrite(runs[1], FencedWrite::Kind::kCompleteRun, "{\"done\":true}");
  ClaimedRun stale = runs[2];
  ++stale.run.lease_epoch;  // a lease that is not the run's
  FencedWrite refused = EndWrite(stale, FencedWrite::Kind::kCompleteRun, "1");
  std::atomic<int> called{0};
  std::promise<void> both;
  auto done = [&] {
    if (++called == 2) both.set_value();
  };
  committer.WriteAsync(end, done, true);
  committer.WriteAsync(refused, done, true);
  // Both returned with the commit still in flight: neither is written.
  EXPECT_EQ(called, 0);
  EXPECT_EQ(committer.waiting(), 2u);
  EXPECT_EQ(Get(runs[1].run.id).status, RunStatus::kRunning);

  EXPECT_TRUE(holder->Exec("COMMIT").ok());
  holder.reset();
  first_writer.join();
  ASSERT_EQ(both.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_TRUE(first.result.ok()) << first.result.message();
  EXPECT_TRUE(end.result.ok()) << end.result.message();
  EXPECT_EQ(refused.result.code(), StatusCode::kConflict) << refused.result.message();
  RunRecord ended = Get(runs[1].run.id);
  EXPECT_EQ(ended.status, RunStatus::kCompleted);
  EXPECT_EQ(ended.output.value_or(""), "{\"done\":true}");
  EXPECT_EQ(Get(runs[2].run.id).status, RunStatus::kRunning);
  committer.Stop();
  EXPECT_EQ(committer.groups(), 2);
  EXPECT_EQ(committer.writes(), 3);
}

// One commit at a time: writes that come while a writer's own commit is in
// flight wait for it, then go to the committer together, in one commit.
TEST_F(GroupCommitTest, WritesThatComeWhileACommitIsInFlightWaitAndGoTogether) {
  constexpr int kLate = 4;
  auto runs = StartAndClaim(1 + kLate);
  // Holds the first run's row, so that its write's commit waits.
  auto holder = HoldRow(runs[0].run.id);
  ASSERT_NE(holder, nullptr);

  daemon::GroupCommitter committer(*store_, 256);
  committer.Start();
  FencedWrite first = StepWrite(runs[0], "s", 0);
  std::thread first_writer = WriteHeldStep(committer, first);

  std::vector<FencedWrite> late;
  for (int i = 1; i <= kLate; ++i) late.push_back(StepWrite(runs[i], "s", 0));
  std::vector<std::thread> late_writers;
  for (auto& w : late) late_writers.emplace_back([&committer, &w] { committer.Write(w); });
  for (int i = 0; i < 200 && committer.waiting() < static_cast<std::size_t>(kLate); ++i) {
    SleepFor(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(committer.waiting(), static_cast<std::size_t>(kLate));
  // None of them was committed beside the one in flight.
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps"), 0);

  EXPECT_TRUE(holder->Exec("COMMIT").ok());
  holder.reset();  // whatever happened, the lock goes with the connection
  first_writer.join();
  for (auto& t : late_writers) t.join();
  committer.Stop();
  EXPECT_TRUE(first.result.ok()) << first.result.message();
  for (const auto& w : late) EXPECT_TRUE(w.result.ok()) << w.result.message();
  EXPECT_EQ(committer.groups(), 2);
  EXPECT_EQ(committer.direct_groups(), 1);
  EXPECT_EQ(committer.writes(), 1 + kLate);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps"), 1 + kLate);
  EXPECT_EQ(WritingTransactions("kagzi_steps", "run_id <> '" + runs[0].run.id + "'"), 1);
}

// The generic plans of a group's statements apply the group's run ids to
// the scan of kagzi_runs itself (as its index condition or its filter), so
// that only the group's runs are joined with its writes, and never scan
// the table. Checked on three tables: one never analyzed, one analyzed
// beside a backlog of parked runs with none RUNNING (kagzi-bench's
// backlog), and one where ten daemons hold 64 runs each among 20,000 that
// ended.
void ExpectGroupWritesLookUpRunsById(PgStore& store) {
  auto plans = store.ExplainGroupWrites();
  ASSERT_TRUE(plans.ok()) << plans.status().message();
  const std::string& text = *plans;
  const auto record_steps = text.find("kagzi_record_steps:");
  const auto end_runs = text.find("kagzi_end_runs:");
  ASSERT_EQ(text.find("kagzi_insert_steps:"), 0U) << text;
  ASSERT_NE(record_steps, std::string::npos) << text;
  ASSERT_NE(end_runs, std::string::npos) << text;
  for (const std::string& plan :
       {text.substr(0, record_steps), text.substr(record_steps, end_runs - record_steps),
        text.substr(end_runs)}) {
    // The node that scans kagzi_runs: its line and the lines of its
    // conditions, up to the next node of the plan.
    std::istringstream lines(plan);
    std::string line;
    std::string node;
    while (std::getline(lines, line)) {
      if (node.empty()) {
        if (line.find("Scan") == std::string::npos) continue;
        if (line.find(" on kagzi_runs r ") == std::string::npos) continue;
      } else if (line.find("->") != std::string::npos) {
        break;
      }
      node += line + "\n";
    }
    ASSERT_FALSE(node.empty()) << plan;
    // Looked up: the ids are the index's condition, not a filter applied
    // to every RUNNING run that an index walk reads (a filter costs one
    // array search per RUNNING run, of every daemon, per group).
    const auto cond = node.find("Index Cond: ");
    ASSERT_NE(cond, std::string::npos) << plan;
    const std::string cond_line = node.substr(cond, node.find('\n', cond) - cond);
    EXPECT_NE(cond_line.find("id = ANY ($1)"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("Seq Scan on kagzi_runs"), std::string::npos) << plan;
  }
}

TEST_F(GroupCommitTest, GroupWritesLookUpTheirRunsByIdInATableNeverAnalyzed) {
  HoldRuns(1);
  ExpectGroupWritesLookUpRunsById(*store_);
}

TEST_F(GroupCommitTest, GroupWritesLookUpTheirRunsByIdBesideABacklog) {
  db_->Query(
      "INSERT INTO kagzi_runs (id, workflow, version, status, input, available_at)"
      " SELECT kagzi_new_run_id(), 'wf', 1, 'SLEEPING', 'null', now() + interval '1 year'"
      " FROM generate_series(1, 20000)");
  db_->Query("ANALYZE kagzi_runs");
  HoldRuns(1);
  ExpectGroupWritesLookUpRunsById(*store_);
}

TEST_F(GroupCommitTest, GroupWritesLookUpTheirRunsByIdAmongOtherDaemonsRuns) {
  db_->Query(
      "INSERT INTO kagzi_runs (id, workflow, input, status, output) SELECT kagzi_new_run_id(),"
      " 'wf', 'null', 'COMPLETED', 'null' FROM generate_series(1, 20000)");
  HoldRuns(10);
  db_->Query("ANALYZE kagzi_runs");
  ExpectGroupWritesLookUpRunsById(*store_);
}

TEST_F(GroupCommitTest, StartRunsStartsABatchInOneTransaction) {
  std::vector<StartRequest> batch(3);
  batch[0].workflow = "wf";
  batch[0].input = "{\"i\":0}";
  batch[1].workflow = "wf";
  batch[1].idempotency_key = "order-1";
  batch[2].workflow = "other";
  batch[2].timeout = std::chrono::minutes(5);
  auto started = store_->StartRuns(batch);
  ASSERT_TRUE(started.ok()) << started.status().message();
  ASSERT_EQ(started->size(), 3u);
  for (const auto& r : *started) {
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_TRUE(r->created);
  }
  EXPECT_EQ(Get((*started)[0]->run_id).input, "{\"i\":0}");
  EXPECT_EQ(Get((*started)[2]->run_id).workflow, "other");
  EXPECT_TRUE(Get((*started)[2]->run_id).deadline_at.has_value());
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_runs"), 3);
  EXPECT_EQ(WritingTransactions("kagzi_runs", "true"), 1);

  // The key again (twice in one batch, once for another workflow), and a
  // new run: each gets StartRun's answer, and only the new run is added.
  std::vector<StartRequest> again(4);
  again[0].workflow = "wf";
  again[0].idempotency_key = "order-1";
  again[1].workflow = "wf";
  again[1].idempotency_key = "order-1";
  again[2].workflow = "other";
  again[2].idempotency_key = "order-1";
  again[3].workflow = "wf";
  auto second = store_->StartRuns(again);
  ASSERT_TRUE(second.ok()) << second.status().message();
  ASSERT_EQ(second->size(), 4u);
  for (int i : {0, 1}) {
    ASSERT_TRUE((*second)[i].ok()) << (*second)[i].status().message();
    EXPECT_FALSE((*second)[i]->created);
    EXPECT_EQ((*second)[i]->run_id, (*started)[1]->run_id);
  }
  EXPECT_EQ((*second)[2].status().code(), StatusCode::kConflict);
  EXPECT_NE((*second)[2].status().message().find("order-1"), std::string::npos);
  ASSERT_TRUE((*second)[3].ok());
  EXPECT_TRUE((*second)[3]->created);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_runs"), 4);

  // A new key twice in one batch: the first start makes the run, the
  // second gets it.
  std::vector<StartRequest> twice(2);
  for (auto& r : twice) {
    r.workflow = "wf";
    r.idempotency_key = "order-2";
  }
  auto third = store_->StartRuns(twice);
  ASSERT_TRUE(third.ok()) << third.status().message();
  ASSERT_EQ(third->size(), 2u);
  ASSERT_TRUE((*third)[0].ok() && (*third)[1].ok());
  EXPECT_TRUE((*third)[0]->created);
  EXPECT_FALSE((*third)[1]->created);
  EXPECT_EQ((*third)[1]->run_id, (*third)[0]->run_id);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_runs WHERE idempotency_key = 'order-2'"), 1);
}

// Runs without an idempotency key, which cannot conflict, are inserted
// without ON CONFLICT (a speculative insertion per run), one or many.
TEST_F(GroupCommitTest, RunsWithoutAKeyAreStartedByAPlainInsert) {
  std::string since = WalEnd();
  std::vector<StartRequest> batch(3);
  for (auto& r : batch) r.workflow = "wf";
  auto started = store_->StartRuns(batch);
  ASSERT_TRUE(started.ok()) << started.status().message();
  auto one = store_->StartRuns({batch[0]});
  ASSERT_TRUE(one.ok()) << one.status().message();
  for (const auto& r : *started) EXPECT_TRUE(r.ok() && r->created);
  EXPECT_TRUE((*one)[0].ok() && (*one)[0]->created);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_runs"), 4);
  EXPECT_EQ(SpeculativeInserts("kagzi_runs", since), 0);
  // With a key in the batch, all of it goes through ON CONFLICT.
  since = WalEnd();
  batch[1].idempotency_key = "order-1";
  started = store_->StartRuns(batch);
  ASSERT_TRUE(started.ok()) << started.status().message();
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_runs"), 7);
  EXPECT_EQ(SpeculativeInserts("kagzi_runs", since), 3);
}

TEST_F(GroupCommitTest, StartRunsWithOneBadRequestStartsNothing) {
  std::vector<StartRequest> batch(3);
  for (auto& r : batch) r.workflow = "wf";
  batch[1].input = "{\"unclosed\":";
  auto started = store_->StartRuns(batch);
  ASSERT_FALSE(started.ok());
  EXPECT_EQ(started.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(started.status().message().find("run #2"), std::string::npos)
      << started.status().message();
  batch[1].input = "null";
  batch[2].idempotency_key = "kagzi:child:x/y";
  started = store_->StartRuns(batch);
  ASSERT_FALSE(started.ok());
  EXPECT_NE(started.status().message().find("run #3"), std::string::npos)
      << started.status().message();
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_runs"), 0);
  auto none = store_->StartRuns({});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

}  // namespace
}  // namespace kagzi::testing
