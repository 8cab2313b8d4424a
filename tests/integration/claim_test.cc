// Claiming runs on a real PostgreSQL: batches never hand one run to two
// claimers, versions are pinned at the first claim, only loaded workflows
// are claimed, and the journal comes back with the claim, byte for byte.
#include <algorithm>
#include <iostream>
#include <latch>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "kagzi/core/pg.h"
#include "store_fixture.h"

namespace kagzi::testing {
namespace {

using std::chrono::milliseconds;

class ClaimTest : public StoreTest {};

TEST_F(ClaimTest, ConcurrentClaimersNeverShareARun) {
  constexpr int kRuns = 200;
  constexpr int kClaimers = 4;
  std::set<std::string> started;
  for (int i = 0; i < kRuns; ++i)
    started.insert(Start("orders", "{\"n\":" + std::to_string(i) + "}"));
  ASSERT_EQ(started.size(), static_cast<std::size_t>(kRuns));
  std::set<std::string> ghosts;
  for (int i = 0; i < 10; ++i) ghosts.insert(Start("not_loaded"));

  const std::vector<WorkflowKey> loaded = {{"orders", 1}, {"orders", 2}};
  std::vector<std::string> owners;
  std::vector<std::unique_ptr<PgStore>> stores;
  for (int i = 0; i < kClaimers; ++i) {
    owners.push_back(NewUuid());
    stores.push_back(NewStore(1));
  }

  std::mutex mu;
  std::map<std::string, std::vector<std::string>> claimed_by;  // run id -> owners
  std::vector<ClaimedRun> all;
  std::vector<std::string> errors;
  std::latch go(kClaimers);
  std::vector<std::thread> threads;
  for (int t = 0; t < kClaimers; ++t) {
    threads.emplace_back([&, t] {
      go.arrive_and_wait();
      ClaimRequest req;
      req.owner = owners[static_cast<std::size_t>(t)];
      req.loaded = loaded;
      req.limit = 7;
      req.lease_ttl = std::chrono::minutes(5);
      while (true) {
        auto batch = stores[static_cast<std::size_t>(t)]->ClaimRuns(req);
        std::lock_guard lock(mu);
        if (!batch.ok()) {
          errors.push_back(batch.status().message());
          return;
        }
        if (batch->runs.size() > 7) errors.push_back("batch larger than the limit");
        if (batch->runs.empty()) return;
        for (auto& c : batch->runs) {
          claimed_by[c.run.id].push_back(req.owner);
          all.push_back(std::move(c));
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(errors.empty()) << errors.front();

  // Every run handed out exactly once, and all of them handed out.
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kRuns));
  EXPECT_EQ(claimed_by.size(), static_cast<std::size_t>(kRuns));
  for (const auto& [id, who] : claimed_by) {
    EXPECT_EQ(who.size(), 1u) << "run " << id << " was claimed " << who.size() << " times";
    EXPECT_TRUE(started.contains(id)) << id;
  }
  for (const auto& c : all) {
    EXPECT_EQ(c.run.status, RunStatus::kRunning);
    EXPECT_EQ(c.run.lease_epoch, 1);
    EXPECT_EQ(c.run.attempts, 1);
    EXPECT_EQ(c.run.version, 2) << "unpinned runs take the highest loaded version";
    EXPECT_EQ(c.run.workflow, "orders");
    ASSERT_TRUE(c.run.lease_owner.has_value());
    EXPECT_EQ(claimed_by[c.run.id].front(), *c.run.lease_owner);
    EXPECT_TRUE(c.run.lease_expires_at.has_value());
    EXPECT_TRUE(c.journal.empty());
  }
  // The table agrees, and no claim touched the workflow nobody loaded.
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_runs WHERE workflow = 'orders' AND status = "
                  "'RUNNING' AND lease_epoch = 1 AND version = 2 AND attempts = 1"),
            kRuns);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_runs WHERE workflow = 'not_loaded' AND status = "
                  "'PENDING' AND lease_epoch = 0 AND version IS NULL AND lease_owner IS NULL"),
            10);
  // Nothing left for anyone.
  EXPECT_TRUE(Claim(NewUuid(), loaded, 100).runs.empty());
  for (const auto& id : ghosts) EXPECT_EQ(Get(id).status, RunStatus::kPending);
}

// The claim reads the runs it takes, not the backlog: with runs waiting
// and many more parked in the future, its plan walks the claim index in
// order and stops at the limit (no bitmap scan of every runnable run, no
// sort of them). A plan, not a timing: kagzi-bench reports the times.
TEST_F(ClaimTest, ClaimWalksTheClaimIndexHoweverManyRunsWaitOrSleep) {
  db_->Query(
      "INSERT INTO kagzi_runs (id, workflow, input, status, available_at)"
      " SELECT gen_random_uuid(), 'wf', '{}', 'SLEEPING', now() + interval '30 days'"
      " FROM generate_series(1, 50000)");
  db_->Query(
      "INSERT INTO kagzi_runs (id, workflow, input) SELECT gen_random_uuid(), 'wf', '{}'"
      " FROM generate_series(1, 5000)");
  db_->Query("ANALYZE kagzi_runs");
  auto plan = store_->ExplainClaim(ClaimRequest{NewUuid(), {{"wf", 1}}, 32});
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  EXPECT_NE(plan->find("Index Scan using kagzi_runs_claim_order"), std::string::npos) << *plan;
  EXPECT_EQ(plan->find("Bitmap Heap Scan"), std::string::npos) << *plan;
  EXPECT_EQ(plan->find("Seq Scan"), std::string::npos) << *plan;
  // And the claim takes the due runs, none of the parked ones.
  ClaimBatch batch = Claim(NewUuid(), {{"wf", 1}}, 32);
  EXPECT_EQ(batch.runs.size(), 32u);
  for (const auto& claimed : batch.runs) EXPECT_EQ(claimed.run.attempts, 1);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_runs WHERE status = 'SLEEPING'"), 50000);
}

// EXPLAIN ANALYZE of a claim of 32 runs of "wf", rolled back: the plan (or
// the error) and the buffers its top node read (-1: no plan).
std::pair<std::string, int> ExplainAnalyzeClaim(PgStore& store) {
  auto plan = store.ExplainClaim(ClaimRequest{NewUuid(), {{"wf", 1}}, 32}, /*analyze=*/true);
  if (!plan.ok()) return {plan.status().message(), -1};
  return {*plan, TopBuffers(*plan)};
}

// A claim that finds fewer due runs than it asks for stops at the first
// run not due yet, priority by priority: it does not read the entries of
// every parked run (one walk over the claim index without a bound on its
// first column would, 450 ms with a million parked). And runs are claimed
// highest priority first.
TEST_F(ClaimTest, AClaimThatFindsFewDueRunsDoesNotReadTheParkedOnes) {
  db_->Query(
      "INSERT INTO kagzi_runs (id, workflow, input, status, priority, available_at)"
      " SELECT gen_random_uuid(), 'wf', '{}', 'SLEEPING', i % 2 * 5,"
      " now() + interval '30 days' FROM generate_series(1, 60000) i");
  std::vector<std::string> low, high;
  for (int i = 0; i < 3; ++i) low.push_back(Start("wf"));
  for (int i = 0; i < 2; ++i) {
    high.push_back(Start("wf"));
    db_->Query("UPDATE kagzi_runs SET priority = 5 WHERE id = '" + high.back() + "'");
  }
  db_->Query("VACUUM (ANALYZE) kagzi_runs");
  auto [plan, buffers] = ExplainAnalyzeClaim(*store_);
  EXPECT_GT(buffers, 0) << plan;
  // 60,000 entries fill about 300 leaf pages of the claim index.
  EXPECT_LT(buffers, 150) << plan;
  EXPECT_EQ(plan.find("Seq Scan"), std::string::npos) << plan;
  EXPECT_EQ(Get(low[0]).status, RunStatus::kPending) << "EXPLAIN ANALYZE claimed a run";

  ClaimBatch first = Claim(NewUuid(), {{"wf", 1}}, 2);
  ASSERT_EQ(first.runs.size(), 2u);
  for (const auto& c : first.runs) {
    EXPECT_NE(std::find(high.begin(), high.end(), c.run.id), high.end()) << "priority 5 first";
  }
  EXPECT_EQ(Claim(NewUuid(), {{"wf", 1}}, 32).runs.size(), 3u);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_runs WHERE status = 'SLEEPING'"), 60000);
}

// With statistics showing many runs due, the claim still reads only the
// runs it takes. A generic plan cannot know the claim's limit: PostgreSQL
// planned for a tenth of the due runs, and updated them through a hash
// join over every run of the table (every run's primary key entry and
// row: 10 ms per claim with 20,000 due). Statistics like these are what
// autovacuum records during a backlog, and any daemon started then or
// re-planning after that ANALYZE claimed that way, for every claim.
TEST_F(ClaimTest, AClaimReadsTheRunsItTakesWhenStatisticsShowManyDue) {
  db_->Query(
      "INSERT INTO kagzi_runs (id, workflow, input) SELECT kagzi_new_run_id(), 'wf', '{}'"
      " FROM generate_series(1, 40000)");
  db_->Query("VACUUM (ANALYZE) kagzi_runs");
  auto [plan, buffers] = ExplainAnalyzeClaim(*store_);
  EXPECT_GT(buffers, 0) << plan;
  // Reading every run is over 40,000 buffers; 32 runs' index entries,
  // rows, locks and updates are a few hundred.
  EXPECT_LT(buffers, 2000) << plan;
  EXPECT_EQ(Claim(NewUuid(), {{"wf", 1}}, 32).runs.size(), 32u);
}

// A young table: its statistics, taken while it was empty, say it holds
// nothing, and autovacuum has not analyzed it since. PostgreSQL would then
// read every runnable run by bitmap scan and sort them for each claim; the
// claim's plan settings keep it on the index.
TEST_F(ClaimTest, ClaimWalksTheClaimIndexOnATableAnalyzedWhileEmpty) {
  db_->Query("ANALYZE kagzi_runs");
  db_->Query(
      "INSERT INTO kagzi_runs (id, workflow, input) SELECT gen_random_uuid(), 'wf', '{}'"
      " FROM generate_series(1, 5000)");
  auto plan = store_->ExplainClaim(ClaimRequest{NewUuid(), {{"wf", 1}}, 32});
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  EXPECT_NE(plan->find("Index Scan using kagzi_runs_claim_order"), std::string::npos) << *plan;
  EXPECT_EQ(plan->find("Bitmap Heap Scan"), std::string::npos) << *plan;
  EXPECT_EQ(plan->find("Seq Scan"), std::string::npos) << *plan;
  EXPECT_EQ(Claim(NewUuid(), {{"wf", 1}}, 32).runs.size(), 32u);
}

TEST_F(ClaimTest, BatchRespectsLimitAndReturnsDbTime) {
  for (int i = 0; i < 10; ++i) Start("wf");
  auto before = store_->Now();
  ASSERT_TRUE(before.ok());
  auto batch = Claim(NewUuid(), {{"wf", 1}}, 3);
  EXPECT_EQ(batch.runs.size(), 3u);
  EXPECT_GE(batch.db_now, *before);
  for (const auto& c : batch.runs) {
    ASSERT_TRUE(c.run.lease_expires_at.has_value());
    // lease_ttl 30 s from the claim's now().
    EXPECT_EQ(*c.run.lease_expires_at - batch.db_now, 30'000'000);
    ASSERT_TRUE(c.run.started_at.has_value());
  }
  EXPECT_EQ(Claim(NewUuid(), {{"wf", 1}}, 100).runs.size(), 7u);
}

TEST_F(ClaimTest, OnlyLoadedWorkflowsAreClaimed) {
  std::string a = Start("alpha");
  std::string b = Start("beta");
  auto batch = Claim(NewUuid(), {{"alpha", 3}}, 10);
  ASSERT_EQ(batch.runs.size(), 1u);
  EXPECT_EQ(batch.runs[0].run.id, a);
  EXPECT_EQ(batch.runs[0].run.version, 3);
  EXPECT_TRUE(Claim(NewUuid(), {}, 10).runs.empty());
  EXPECT_TRUE(Claim(NewUuid(), {{"gamma", 1}}, 10).runs.empty());
  EXPECT_EQ(Get(b).status, RunStatus::kPending);
  EXPECT_FALSE(Get(b).version.has_value());
}

TEST_F(ClaimTest, RunIsPinnedToTheVersionThatFirstClaimedIt) {
  std::string id = Start("wf");
  const std::string v1_owner = NewUuid();
  auto first = Claim(v1_owner, {{"wf", 1}}, 1);
  ASSERT_EQ(first.runs.size(), 1u);
  EXPECT_EQ(first.runs[0].run.version, 1);
  ASSERT_TRUE(store_->ReleaseRun(LeaseOf(first.runs[0])).ok());

  // A claimer with only version 2 never takes the version-1 run.
  EXPECT_TRUE(Claim(NewUuid(), {{"wf", 2}}, 10).runs.empty());
  EXPECT_TRUE(Claim(NewUuid(), {{"wf", 2}, {"other", 1}}, 10).runs.empty());
  EXPECT_EQ(Get(id).status, RunStatus::kPending);
  EXPECT_EQ(Get(id).version, 1);

  // A new run started meanwhile goes to the version-2 claimer.
  std::string fresh = Start("wf");
  auto v2 = Claim(NewUuid(), {{"wf", 2}}, 10);
  ASSERT_EQ(v2.runs.size(), 1u);
  EXPECT_EQ(v2.runs[0].run.id, fresh);
  EXPECT_EQ(v2.runs[0].run.version, 2);

  // A claimer with both versions takes the pinned run and keeps it at 1.
  auto both = Claim(NewUuid(), {{"wf", 2}, {"wf", 1}}, 10);
  ASSERT_EQ(both.runs.size(), 1u);
  EXPECT_EQ(both.runs[0].run.id, id);
  EXPECT_EQ(both.runs[0].run.version, 1);
  EXPECT_EQ(both.runs[0].run.lease_epoch, 3);  // claim, release, claim
  EXPECT_EQ(both.runs[0].run.attempts, 2);
}

TEST_F(ClaimTest, RefusedClaimLeavesTheConnectionUsable) {
  std::string id = Start("wf");
  auto store = NewStore(1);  // one connection: it must come back clean
  ClaimRequest req;
  req.owner = "not-a-uuid";
  req.loaded = {{"wf", 1}};
  auto bad = store->ClaimRuns(req);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument) << bad.status().message();
  EXPECT_EQ(Get(id).status, RunStatus::kPending);
  EXPECT_EQ(Get(id).lease_epoch, 0);

  auto batch = Claim(NewUuid(), {{"wf", 1}}, 1, std::chrono::seconds(30), store.get());
  ASSERT_EQ(batch.runs.size(), 1u);
  EXPECT_EQ(batch.runs[0].run.id, id);
  // Committed, not left in an open transaction: another connection sees it.
  EXPECT_EQ(Get(id).status, RunStatus::kRunning);
}

TEST_F(ClaimTest, HigherPriorityIsClaimedFirst) {
  Start("wf");
  StartRequest req;
  req.workflow = "wf";
  req.priority = 10;
  auto urgent = store_->StartRun(req);
  ASSERT_TRUE(urgent.ok()) << urgent.status().message();
  auto batch = Claim(NewUuid(), {{"wf", 1}}, 1);
  ASSERT_EQ(batch.runs.size(), 1u);
  EXPECT_EQ(batch.runs[0].run.id, urgent->run_id);
  EXPECT_EQ(batch.runs[0].run.priority, 10);
}

TEST_F(ClaimTest, JournalComesBackWithTheClaimByteForByte) {
  std::string id = Start("wf", "{\"in\":  [1, 2]}");
  const std::string owner = NewUuid();
  auto batch = Claim(owner, {{"wf", 1}}, 1);
  ASSERT_EQ(batch.runs.size(), 1u);
  EXPECT_EQ(batch.runs[0].run.input, "{\"in\":  [1, 2]}");
  Lease lease = LeaseOf(batch.runs[0]);

  // Recorded in an order that differs from the step ids' alphabetical order.
  const std::vector<std::pair<std::string, std::string>> outputs = {
      {"zeta", "{\"b\":1,   \"a\":[1,2] }"},
      {"alpha", "\"caf\xc3\xa9 \\u00e9 \\n\""},
      {"mid", "  [ 1.50, -0 ,1e3 ]  "},
  };
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    StepRecord s = MakeStep(outputs[i].first, static_cast<int>(i), outputs[i].second);
    s.attempts = static_cast<int>(i) + 1;
    s.started_at = batch.db_now;
    Status st = store_->RecordStep(lease, s);
    ASSERT_TRUE(st.ok()) << st.message();
  }
  StepRecord failed;
  failed.step_id = "flaky";
  failed.seq = 3;
  failed.status = StepStatus::kFailed;
  failed.error = "connection refused by smtp.example";
  failed.error_kind = ErrorKind::kRetryable;
  failed.attempts = 4;
  ASSERT_TRUE(store_->RecordStep(lease, failed).ok());
  ASSERT_TRUE(store_->ReleaseRun(lease).ok());

  auto again = Claim(NewUuid(), {{"wf", 1}}, 1);
  ASSERT_EQ(again.runs.size(), 1u);
  const auto& journal = again.runs[0].journal;
  ASSERT_EQ(journal.size(), 4u);
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    EXPECT_EQ(journal[i].seq, static_cast<int>(i));
    EXPECT_EQ(journal[i].step_id, outputs[i].first);
    EXPECT_EQ(journal[i].kind, StepKind::kStep);
    EXPECT_EQ(journal[i].status, StepStatus::kCompleted);
    ASSERT_TRUE(journal[i].output.has_value());
    EXPECT_EQ(*journal[i].output, outputs[i].second);  // exact bytes, spacing included
    EXPECT_EQ(journal[i].attempts, static_cast<int>(i) + 1);
    EXPECT_EQ(journal[i].started_at, batch.db_now);
    EXPECT_FALSE(journal[i].error.has_value());
    EXPECT_GT(journal[i].finished_at, 0);
  }
  EXPECT_EQ(journal[3].step_id, "flaky");
  EXPECT_EQ(journal[3].status, StepStatus::kFailed);
  EXPECT_EQ(journal[3].error, "connection refused by smtp.example");
  EXPECT_EQ(journal[3].error_kind, ErrorKind::kRetryable);
  EXPECT_EQ(journal[3].attempts, 4);
  EXPECT_FALSE(journal[3].output.has_value());

  // GetSteps (kagzictl show) agrees with the journal of the claim.
  auto steps = store_->GetSteps(id);
  ASSERT_TRUE(steps.ok()) << steps.status().message();
  ASSERT_EQ(steps->size(), journal.size());
  for (std::size_t i = 0; i < journal.size(); ++i) {
    EXPECT_EQ((*steps)[i].step_id, journal[i].step_id);
    EXPECT_EQ((*steps)[i].output, journal[i].output);
  }
}

TEST_F(ClaimTest, JournalsOfSeveralRunsInOneBatchStaySeparate) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(Start("wf"));
  const std::string owner = NewUuid();
  auto batch = Claim(owner, {{"wf", 1}}, 5);
  ASSERT_EQ(batch.runs.size(), 5u);
  std::map<std::string, int> steps_of;
  int n = 0;
  for (const auto& c : batch.runs) {
    // Run k gets k steps (0..4), each output naming its run.
    for (int s = 0; s < n; ++s) {
      ASSERT_TRUE(
          store_
              ->RecordStep(LeaseOf(c), MakeStep("s" + std::to_string(s), s, "\"" + c.run.id + "\""))
              .ok());
    }
    steps_of[c.run.id] = n++;
    ASSERT_TRUE(store_->ReleaseRun(LeaseOf(c)).ok());
  }
  auto again = Claim(NewUuid(), {{"wf", 1}}, 5);
  ASSERT_EQ(again.runs.size(), 5u);
  std::set<std::string> seen;
  for (const auto& c : again.runs) {
    EXPECT_TRUE(seen.insert(c.run.id).second) << "run " << c.run.id << " appears twice";
    ASSERT_EQ(c.journal.size(), static_cast<std::size_t>(steps_of[c.run.id])) << c.run.id;
    for (std::size_t s = 0; s < c.journal.size(); ++s) {
      EXPECT_EQ(c.journal[s].seq, static_cast<int>(s));
      EXPECT_EQ(c.journal[s].output, "\"" + c.run.id + "\"");
    }
  }
}

// Invariant 1 under the tightest race: the previous owner, whose lease has
// just expired, records a step while another daemon is claiming the run.
// Either the write is refused, or the new owner's journal has the step; a
// step that was recorded and is missing from the journal would run twice.
// Many other runnable runs make the claim statement take a while, so the
// write regularly lands while the claim is in flight.
TEST_F(ClaimTest, StepRecordedByTheOldOwnerDuringAClaimIsInTheJournal) {
  db_->Query(
      "INSERT INTO kagzi_runs (id, workflow, input) "
      "SELECT gen_random_uuid(), 'wf', 'null' FROM generate_series(1, 20000)");
  auto old_owner_store = NewStore(1);
  auto claimer_store = NewStore(1);
  int recorded = 0;
  for (int iter = 0; iter < 30; ++iter) {
    StartRequest req;
    req.workflow = "wf";
    req.priority = 100;  // claimed before the 20000 others
    auto started = store_->StartRun(req);
    ASSERT_TRUE(started.ok()) << started.status().message();
    auto first = Claim(NewUuid(), {{"wf", 1}}, 1, milliseconds(1));
    ASSERT_EQ(first.runs.size(), 1u);
    ASSERT_EQ(first.runs[0].run.id, started->run_id);
    WaitUntilDbTime(*first.runs[0].run.lease_expires_at);

    ClaimBatch racing;
    std::thread claimer([&] {
      racing = Claim(NewUuid(), {{"wf", 1}}, 1, std::chrono::minutes(5), claimer_store.get());
    });
    SleepFor(milliseconds(iter % 8));
    Status write = old_owner_store->RecordStep(LeaseOf(first.runs[0]), MakeStep("s", 0, "1"));
    claimer.join();
    ASSERT_TRUE(write.ok() || write.IsConflict()) << write.message();

    // The run as its next owner sees it: the racing claimer, or (if the
    // write's row lock made the claim skip it) whoever claims it next.
    ClaimedRun next;
    if (!racing.runs.empty() && racing.runs[0].run.id == started->run_id) {
      next = racing.runs[0];
    } else {
      auto again = Claim(NewUuid(), {{"wf", 1}}, 1, std::chrono::minutes(5));
      ASSERT_EQ(again.runs.size(), 1u);
      ASSERT_EQ(again.runs[0].run.id, started->run_id);
      next = again.runs[0];
    }
    if (write.ok()) {
      ++recorded;
      ASSERT_EQ(next.journal.size(), 1u) << "iteration " << iter << ": step \"s\" was recorded "
                                         << "but the new owner's journal does not have it";
      EXPECT_EQ(next.journal[0].step_id, "s");
    } else {
      EXPECT_TRUE(next.journal.empty());
      EXPECT_EQ(Count("SELECT count(*) FROM kagzi_steps WHERE run_id = '" + started->run_id + "'"),
                0);
    }
    ASSERT_TRUE(store_->CompleteRun(LeaseOf(next), "null").ok());
  }
  std::cout << "[          ] the old owner's write won " << recorded << " of 30 races\n";
}

// A claimed run whose journal cannot be read is given back at once (not
// left until its lease expires), and the next claim takes it with its
// journal. The read is made to fail by a lock on the journal table that
// outlasts the claimer's lock_timeout.
TEST_F(ClaimTest, ARunWhoseJournalCannotBeReadIsGivenBackAtOnce) {
  const std::string id = Start("orders");
  ClaimBatch first = Claim(NewUuid(), {{"orders", 1}}, 1);
  ASSERT_EQ(first.runs.size(), 1u);
  ASSERT_TRUE(store_->RecordStep(LeaseOf(first.runs[0]), MakeStep("a", 0, "1")).ok());
  // The first lease is lost (its daemon died): the run is claimable again,
  // with attempts 1, so the next claim reads its journal.
  db_->Query(
      "UPDATE kagzi_runs SET status = 'PENDING', lease_owner = NULL,"
      " lease_expires_at = NULL, available_at = now() WHERE id = '" +
      id + "'");

  db_->Query("ALTER DATABASE \"" + db_->name() + "\" SET lock_timeout = '200ms'");
  std::unique_ptr<PgStore> claimer = NewStore(1);
  auto locker = PgConnection::Connect(db_->url(), "kagzi-test-locker");
  ASSERT_TRUE(locker.ok()) << locker.status().message();
  ASSERT_TRUE((*locker)->Exec("BEGIN").ok());
  ASSERT_TRUE((*locker)->Exec("LOCK TABLE kagzi_steps IN ACCESS EXCLUSIVE MODE").ok());

  ClaimRequest req;
  req.owner = NewUuid();
  req.loaded = {{"orders", 1}};
  req.limit = 5;
  req.lease_ttl = std::chrono::minutes(5);
  auto refused = claimer->ClaimRuns(req);
  ASSERT_FALSE(refused.ok()) << "the journal read was expected to time out on the lock";
  EXPECT_NE(refused.status().message().find("reading the journals of claimed runs"),
            std::string::npos)
      << refused.status().message();
  RunRecord given_back = Get(id);
  EXPECT_EQ(given_back.status, RunStatus::kPending);
  EXPECT_FALSE(given_back.lease_owner.has_value());
  EXPECT_EQ(given_back.lease_epoch, first.runs[0].run.lease_epoch + 2)
      << "claimed once more, then released with its epoch bumped";

  ASSERT_TRUE((*locker)->Exec("COMMIT").ok());
  auto again = claimer->ClaimRuns(req);
  ASSERT_TRUE(again.ok()) << again.status().message();
  ASSERT_EQ(again->runs.size(), 1u);
  EXPECT_EQ(again->runs[0].run.id, id);
  ASSERT_EQ(again->runs[0].journal.size(), 1u);
  EXPECT_EQ(again->runs[0].journal[0].step_id, "a");
}

// --- claims of announced runs (ClaimRequest::run_ids, wakeup.h) ----------

ClaimBatch ClaimIds(PgStore& store, const std::vector<std::string>& ids, int limit,
                    const std::vector<WorkflowKey>& loaded = {{"wf", 1}}) {
  ClaimRequest req;
  req.owner = NewUuid();
  req.loaded = loaded;
  req.limit = limit;
  req.run_ids = ids;
  auto batch = store.ClaimRuns(req);
  EXPECT_TRUE(batch.ok()) << batch.status().message();
  return batch.ok() ? *std::move(batch) : ClaimBatch{};
}

std::vector<std::string> IdsOf(const ClaimBatch& batch) {
  std::vector<std::string> ids;
  for (const auto& c : batch.runs) ids.push_back(c.run.id);
  return ids;
}

// Only the named runs, and of those only what any claim may take: due,
// of a loaded workflow, not leased. Each as the index claim leases it.
TEST_F(ClaimTest, AClaimOfAnnouncedRunsTakesOnlyThoseThatAreDueLoadedAndFree) {
  const std::string named = Start("wf");
  const std::string unnamed = Start("wf");
  const std::string other = Start("other");
  const std::string parked = Start("wf");
  db_->Query(
      "UPDATE kagzi_runs SET status = 'SLEEPING', available_at = now() + interval '1 h'"
      " WHERE id = '" +
      parked + "'");
  const std::string leased = Start("wf");
  ASSERT_EQ(ClaimIds(*store_, {leased}, 1).runs.size(), 1u);
  const std::string done = Start("wf");
  db_->Query("UPDATE kagzi_runs SET status = 'COMPLETED' WHERE id = '" + done + "'");

  const std::string owner = NewUuid();
  ClaimRequest req;
  req.owner = owner;
  req.loaded = {{"wf", 4}};
  req.limit = 10;
  req.lease_ttl = std::chrono::seconds(30);
  req.run_ids = {named, other, parked, leased, done, NewUuid()};
  auto batch = store_->ClaimRuns(req);
  ASSERT_TRUE(batch.ok()) << batch.status().message();
  ASSERT_EQ(IdsOf(*batch), std::vector<std::string>{named});
  const RunRecord& run = batch->runs[0].run;
  EXPECT_EQ(run.status, RunStatus::kRunning);
  EXPECT_EQ(run.lease_owner, owner);
  EXPECT_EQ(run.lease_epoch, 1);
  EXPECT_EQ(run.attempts, 1);
  EXPECT_EQ(run.version, 4);
  EXPECT_GT(batch->db_now, 0);
  EXPECT_EQ(Get(named).status, RunStatus::kRunning) << "committed";
  for (const auto& id : {unnamed, other}) EXPECT_EQ(Get(id).status, RunStatus::kPending);
  EXPECT_EQ(Get(parked).status, RunStatus::kSleeping);
  EXPECT_EQ(Get(leased).lease_epoch, 1) << "not taken from its holder";
  EXPECT_EQ(Get(done).status, RunStatus::kCompleted);
  // The runs not named are left to the index claim.
  EXPECT_EQ(IdsOf(Claim(NewUuid(), {{"wf", 1}}, 10)), std::vector<std::string>{unnamed});
}

TEST_F(ClaimTest, AClaimOfAnnouncedRunsTakesAtMostItsLimit) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(Start("wf"));
  EXPECT_EQ(ClaimIds(*store_, ids, 2).runs.size(), 2u);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_runs WHERE status = 'PENDING'"), 1);
  EXPECT_EQ(ClaimIds(*store_, ids, 2).runs.size(), 1u);
}

// Two daemons hear the same notification and claim the same run by id:
// the one that finds it locked by the other skips it, without waiting.
TEST_F(ClaimTest, AClaimOfAnnouncedRunsSkipsARunAnotherClaimerHolds) {
  const std::string a = Start("wf");
  const std::string b = Start("wf");
  auto locker = PgConnection::Connect(db_->url(), "kagzi-test-locker");
  ASSERT_TRUE(locker.ok()) << locker.status().message();
  ASSERT_TRUE((*locker)->Exec("BEGIN").ok());
  ASSERT_TRUE((*locker)->Exec("SELECT 1 FROM kagzi_runs WHERE id = '" + a + "' FOR UPDATE").ok());
  db_->Query("ALTER DATABASE \"" + db_->name() + "\" SET lock_timeout = '5s'");
  std::unique_ptr<PgStore> claimer = NewStore(1);
  const auto began = std::chrono::steady_clock::now();
  EXPECT_EQ(IdsOf(ClaimIds(*claimer, {a, b}, 2)), std::vector<std::string>{b});
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::seconds(5))
      << "waited for the lock";
  ASSERT_TRUE((*locker)->Exec("ROLLBACK").ok());
  EXPECT_EQ(IdsOf(ClaimIds(*claimer, {a, b}, 2)), std::vector<std::string>{a});
}

// A run claimed again by id (a run parked, then woken by its child's end)
// comes with its journal, as from the index claim.
TEST_F(ClaimTest, ARunClaimedAgainByIdComesWithItsJournal) {
  const std::string id = Start("wf");
  ClaimBatch first = ClaimIds(*store_, {id}, 1);
  ASSERT_EQ(first.runs.size(), 1u);
  ASSERT_TRUE(store_->RecordStep(LeaseOf(first.runs[0]), MakeStep("a", 0, "{\"x\": 1}")).ok());
  ASSERT_TRUE(store_->ReleaseRun(LeaseOf(first.runs[0])).ok());
  ClaimBatch again = ClaimIds(*store_, {id}, 1);
  ASSERT_EQ(again.runs.size(), 1u);
  EXPECT_EQ(again.runs[0].run.attempts, 2);
  ASSERT_EQ(again.runs[0].journal.size(), 1u);
  EXPECT_EQ(again.runs[0].journal[0].step_id, "a");
  EXPECT_EQ(again.runs[0].journal[0].output, "{\"x\": 1}");
}

// By primary key, whatever the table holds or its statistics say: a
// million parked runs must not make an announced run's claim walk an
// index of them, nor a young table's statistics make it a scan.
TEST_F(ClaimTest, AClaimOfAnnouncedRunsReadsThemByPrimaryKey) {
  db_->Query("ANALYZE kagzi_runs");  // statistics of an empty table
  db_->Query(
      "INSERT INTO kagzi_runs (id, workflow, input, status, available_at)"
      " SELECT kagzi_new_run_id(), 'wf', '{}', 'SLEEPING', now() + interval '30 days'"
      " FROM generate_series(1, 30000)");
  std::vector<std::string> ids = {Start("wf"), Start("wf")};
  for (bool analyzed : {false, true}) {
    if (analyzed) db_->Query("VACUUM (ANALYZE) kagzi_runs");
    ClaimRequest req{NewUuid(), {{"wf", 1}}, 2};
    req.run_ids = ids;
    auto plan = store_->ExplainClaim(req, /*analyze=*/true);
    ASSERT_TRUE(plan.ok()) << plan.status().message();
    EXPECT_NE(plan->find("Index Scan using kagzi_runs_pkey"), std::string::npos) << *plan;
    EXPECT_EQ(plan->find("kagzi_runs_claim_order"), std::string::npos) << *plan;
    EXPECT_EQ(plan->find("Seq Scan"), std::string::npos) << *plan;
    EXPECT_EQ(plan->find("Bitmap"), std::string::npos) << *plan;
    // 30,000 runs fill over 300 pages; two runs and their index entries
    // are a few dozen buffers.
    EXPECT_GT(TopBuffers(*plan), 0) << *plan;
    EXPECT_LT(TopBuffers(*plan), 100) << *plan;
  }
  EXPECT_EQ(ClaimIds(*store_, ids, 2).runs.size(), 2u);
}

}  // namespace
}  // namespace kagzi::testing
