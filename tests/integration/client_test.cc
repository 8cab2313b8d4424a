// What kagzictl and the daemon registry use, on a real PostgreSQL: starting
// runs (idempotency keys, JSON checked by the database), the registry of
// daemons and their workflows, waiting for a run, and surviving the loss of
// pooled connections.
#include <algorithm>
#include <latch>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "kagzi/core/validation.h"
#include "store_fixture.h"
#include "support/process.h"

namespace kagzi::testing {
namespace {

using std::chrono::milliseconds;

class ClientTest : public StoreTest {};

TEST_F(ClientTest, StartRunStoresThePendingRun) {
  StartRequest req;
  req.workflow = "hello";
  req.input = "{\"name\":  \"world\"}";
  req.priority = 3;
  auto started = store_->StartRun(req);
  ASSERT_TRUE(started.ok()) << started.status().message();
  EXPECT_TRUE(started->created);
  EXPECT_TRUE(IsUuid(started->run_id)) << started->run_id;
  RunRecord run = Get(started->run_id);
  EXPECT_EQ(run.workflow, "hello");
  EXPECT_EQ(run.input, "{\"name\":  \"world\"}");
  EXPECT_EQ(run.status, RunStatus::kPending);
  EXPECT_EQ(run.priority, 3);
  EXPECT_FALSE(run.version.has_value());
  EXPECT_EQ(run.lease_epoch, 0);
  EXPECT_EQ(run.attempts, 0);
  EXPECT_FALSE(run.idempotency_key.has_value());
  EXPECT_GT(run.created_at, 0);
  auto now = store_->Now();
  ASSERT_TRUE(now.ok());
  EXPECT_LE(run.available_at, *now);
}

TEST_F(ClientTest, IdempotencyKeyReturnsTheSameRun) {
  StartRequest req;
  req.workflow = "hello";
  req.input = "1";
  req.idempotency_key = "order-42";
  auto first = store_->StartRun(req);
  ASSERT_TRUE(first.ok()) << first.status().message();
  EXPECT_TRUE(first->created);
  req.input = "2";  // a retry with other input still gets the first run
  auto second = store_->StartRun(req);
  ASSERT_TRUE(second.ok()) << second.status().message();
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->run_id, first->run_id);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_runs"), 1);
  EXPECT_EQ(Get(first->run_id).input, "1");
  EXPECT_EQ(Get(first->run_id).idempotency_key, "order-42");

  // The same key for another workflow is a conflict naming the key.
  req.workflow = "goodbye";
  auto clash = store_->StartRun(req);
  ASSERT_FALSE(clash.ok());
  EXPECT_EQ(clash.status().code(), StatusCode::kConflict);
  EXPECT_NE(clash.status().message().find("order-42"), std::string::npos)
      << clash.status().message();
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_runs"), 1);
}

TEST_F(ClientTest, ConcurrentStartsWithOneKeyCreateOneRun) {
  constexpr int kThreads = 8;
  std::vector<std::unique_ptr<PgStore>> stores;
  for (int i = 0; i < kThreads; ++i) stores.push_back(NewStore(1));
  std::mutex mu;
  std::vector<Result<StartResult>> results;
  std::latch go(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      StartRequest req;
      req.workflow = "hello";
      req.idempotency_key = "same-key";
      go.arrive_and_wait();
      auto r = stores[static_cast<std::size_t>(i)]->StartRun(req);
      std::lock_guard lock(mu);
      results.push_back(std::move(r));
    });
  }
  for (auto& t : threads) t.join();
  int created = 0;
  std::set<std::string> ids;
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status().message();
    created += r->created ? 1 : 0;
    ids.insert(r->run_id);
  }
  EXPECT_EQ(created, 1);
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_runs"), 1);
}

TEST_F(ClientTest, InvalidJsonInputIsRefusedAndNothingIsInserted) {
  for (const char* bad : {"{\"a\":", "not json", "", "{'a': 1}", "[1,]"}) {
    StartRequest req;
    req.workflow = "hello";
    req.input = bad;
    req.idempotency_key = std::string("key-") + bad;
    auto r = store_->StartRun(req);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument)
        << bad << ": " << r.status().message();
  }
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_runs"), 0);
}

TEST_F(ClientTest, GetRunRefusesBadIdsAndReportsMissingRuns) {
  auto bad = store_->GetRun("not-a-uuid");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  std::string missing_id = NewUuid();
  auto missing = store_->GetRun(missing_id);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(missing_id), std::string::npos);
  auto steps = store_->GetSteps("x'; DROP TABLE kagzi_runs; --");
  EXPECT_EQ(steps.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_runs"), 0);
}

TEST_F(ClientTest, ListRunsFiltersByStatusAndWorkflow) {
  std::string a1 = Start("a");
  std::string a2 = Start("a");
  std::string b1 = Start("b");
  auto claimed = Claim(NewUuid(), {{"b", 1}}, 1);
  ASSERT_EQ(claimed.runs.size(), 1u);
  ASSERT_TRUE(store_->CompleteRun(LeaseOf(claimed.runs[0]), "\"ok\"").ok());

  ListFilter all;
  auto everything = store_->ListRuns(all);
  ASSERT_TRUE(everything.ok());
  EXPECT_EQ(everything->size(), 3u);

  ListFilter by_workflow;
  by_workflow.workflow = "a";
  auto only_a = store_->ListRuns(by_workflow);
  ASSERT_TRUE(only_a.ok());
  std::set<std::string> ids;
  for (const auto& r : *only_a) ids.insert(r.id);
  EXPECT_EQ(ids, (std::set<std::string>{a1, a2}));

  ListFilter done;
  done.status = RunStatus::kCompleted;
  auto completed = store_->ListRuns(done);
  ASSERT_TRUE(completed.ok());
  ASSERT_EQ(completed->size(), 1u);
  EXPECT_EQ((*completed)[0].id, b1);
  EXPECT_EQ((*completed)[0].output, "\"ok\"");

  ListFilter limited;
  limited.limit = 2;
  auto two = store_->ListRuns(limited);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->size(), 2u);
}

DaemonInfo Daemon(const std::string& id, std::chrono::milliseconds ttl = std::chrono::seconds(30)) {
  DaemonInfo info;
  info.id = id;
  info.hostname = "worker-" + id.substr(0, 4);
  info.pid = 4242;
  info.version = "0.1.0";
  info.concurrency = 8;
  info.lease_ttl = ttl;
  return info;
}

LoadedWorkflow Loaded(const std::string& name, int version) {
  return LoadedWorkflow{{name, version}, "/plugins/" + name + ".so", name + "-plugin"};
}

const WorkflowRecord* Find(const std::vector<WorkflowRecord>& list, const std::string& name,
                           int version) {
  for (const auto& w : list) {
    if (w.key.name == name && w.key.version == version) return &w;
  }
  return nullptr;
}

TEST_F(ClientTest, RegistryListsLiveDaemonsAndTheirWorkflows) {
  const std::string d1 = NewUuid();
  const std::string d2 = NewUuid();
  ASSERT_TRUE(store_->RegisterDaemon(Daemon(d1), {Loaded("orders", 1), Loaded("orders", 2)}).ok());
  ASSERT_TRUE(store_->RegisterDaemon(Daemon(d2), {Loaded("orders", 2), Loaded("solo", 1)}).ok());

  // Open runs: two pinned to orders v2 (one completed), one still unpinned.
  for (int i = 0; i < 3; ++i) Start("orders");
  auto claimed = Claim(d1, {{"orders", 2}}, 2);
  ASSERT_EQ(claimed.runs.size(), 2u);
  ASSERT_TRUE(store_->CompleteRun(LeaseOf(claimed.runs[1]), "null").ok());

  auto workflows = store_->ListWorkflows();
  ASSERT_TRUE(workflows.ok()) << workflows.status().message();
  ASSERT_EQ(workflows->size(), 3u);
  const WorkflowRecord* o1 = Find(*workflows, "orders", 1);
  const WorkflowRecord* o2 = Find(*workflows, "orders", 2);
  const WorkflowRecord* solo = Find(*workflows, "solo", 1);
  ASSERT_NE(o1, nullptr);
  ASSERT_NE(o2, nullptr);
  ASSERT_NE(solo, nullptr);
  EXPECT_EQ(o1->daemons, std::vector<std::string>{d1});
  std::vector<std::string> both = {d1, d2};
  std::sort(both.begin(), both.end());
  EXPECT_EQ(o2->daemons, both);
  EXPECT_EQ(solo->daemons, std::vector<std::string>{d2});
  EXPECT_EQ(o1->open_runs, 0);
  EXPECT_EQ(o2->open_runs, 1);
  EXPECT_EQ(o2->plugin_path, "/plugins/orders.so");

  auto daemons = store_->ListDaemons();
  ASSERT_TRUE(daemons.ok()) << daemons.status().message();
  ASSERT_EQ(daemons->size(), 2u);
  for (const auto& d : *daemons) {
    EXPECT_TRUE(d.alive) << d.info.id;
    EXPECT_EQ(d.info.pid, 4242);
    EXPECT_EQ(d.info.version, "0.1.0");
    EXPECT_EQ(d.info.concurrency, 8);
    EXPECT_EQ(d.info.lease_ttl, std::chrono::seconds(30));
    EXPECT_EQ(d.info.hostname, "worker-" + d.info.id.substr(0, 4));
    EXPECT_GT(d.heartbeat_at, 0);
    EXPECT_EQ(d.running, d.info.id == d1 ? 1 : 0) << d.info.id;
  }

  // d2 stops heartbeating: dead, and its workflows are no longer listed.
  db_->Query("UPDATE kagzi_daemons SET heartbeat_at = now() - interval '31 seconds' WHERE id = '" +
             d2 + "'");
  daemons = store_->ListDaemons();
  ASSERT_TRUE(daemons.ok());
  ASSERT_EQ(daemons->size(), 2u);
  for (const auto& d : *daemons) EXPECT_EQ(d.alive, d.info.id == d1) << d.info.id;
  workflows = store_->ListWorkflows();
  ASSERT_TRUE(workflows.ok());
  EXPECT_EQ(workflows->size(), 2u);
  EXPECT_EQ(Find(*workflows, "solo", 1), nullptr);
  ASSERT_NE(Find(*workflows, "orders", 2), nullptr);
  EXPECT_EQ(Find(*workflows, "orders", 2)->daemons, std::vector<std::string>{d1});
}

TEST_F(ClientTest, ReRegisteringReplacesTheLoadedWorkflows) {
  const std::string d1 = NewUuid();
  ASSERT_TRUE(store_->RegisterDaemon(Daemon(d1), {Loaded("old", 1), Loaded("keep", 1)}).ok());
  ASSERT_TRUE(store_->RegisterDaemon(Daemon(d1), {Loaded("keep", 1), Loaded("new", 1)}).ok());
  auto workflows = store_->ListWorkflows();
  ASSERT_TRUE(workflows.ok());
  EXPECT_EQ(workflows->size(), 2u);
  EXPECT_EQ(Find(*workflows, "old", 1), nullptr);
  EXPECT_NE(Find(*workflows, "new", 1), nullptr);
  auto daemons = store_->ListDaemons();
  ASSERT_TRUE(daemons.ok());
  EXPECT_EQ(daemons->size(), 1u);
  // "old" was registered once: it stays known.
  auto known = store_->WorkflowKnown("old");
  ASSERT_TRUE(known.ok());
  EXPECT_TRUE(*known);
}

TEST_F(ClientTest, WorkflowKnownCountsPastDaemons) {
  const std::string d1 = NewUuid();
  auto unknown = store_->WorkflowKnown("hello");
  ASSERT_TRUE(unknown.ok()) << unknown.status().message();
  EXPECT_FALSE(*unknown);

  ASSERT_TRUE(store_->RegisterDaemon(Daemon(d1), {Loaded("hello", 1)}).ok());
  auto known = store_->WorkflowKnown("hello");
  ASSERT_TRUE(known.ok());
  EXPECT_TRUE(*known);
  auto other = store_->WorkflowKnown("goodbye");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(*other);

  ASSERT_TRUE(store_->UnregisterDaemon(d1).ok());
  auto daemons = store_->ListDaemons();
  ASSERT_TRUE(daemons.ok());
  EXPECT_TRUE(daemons->empty());
  auto workflows = store_->ListWorkflows();
  ASSERT_TRUE(workflows.ok());
  EXPECT_TRUE(workflows->empty());
  auto still = store_->WorkflowKnown("hello");
  ASSERT_TRUE(still.ok());
  EXPECT_TRUE(*still);
}

TEST_F(ClientTest, WaitForRunReturnsWhenAnotherThreadCompletesIt) {
  std::string id = Start("wf", "{\"x\":1}");
  auto batch = Claim(NewUuid(), {{"wf", 1}}, 1);
  ASSERT_EQ(batch.runs.size(), 1u);
  Lease lease = LeaseOf(batch.runs[0]);

  auto other = NewStore(1);
  std::thread finisher([&] {
    SleepFor(milliseconds(300));
    Status st = other->CompleteRun(lease, "{\"greeting\": \"hi\"}");
    EXPECT_TRUE(st.ok()) << st.message();
  });
  auto start = std::chrono::steady_clock::now();
  auto r = store_->WaitForRun(id, std::chrono::seconds(60));
  auto waited = std::chrono::steady_clock::now() - start;
  finisher.join();
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->status, RunStatus::kCompleted);
  EXPECT_EQ(r->output, "{\"greeting\": \"hi\"}");
  // Generous: woken by NOTIFY, it returns long before the 60 s timeout.
  EXPECT_LT(waited, std::chrono::seconds(5));
}

TEST_F(ClientTest, WaitForRunSeesFailureToo) {
  std::string id = Start("wf");
  auto batch = Claim(NewUuid(), {{"wf", 1}}, 1);
  ASSERT_EQ(batch.runs.size(), 1u);
  std::thread failer([&, lease = LeaseOf(batch.runs[0])] {
    SleepFor(milliseconds(100));
    EXPECT_TRUE(NewStore(1)->FailRun(lease, "boom").ok());
  });
  auto r = store_->WaitForRun(id, std::nullopt);
  failer.join();
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->status, RunStatus::kFailed);
  EXPECT_EQ(r->error, "boom");
}

TEST_F(ClientTest, WaitForRunTimesOutWithTheRunAsItIs) {
  std::string id = Start("wf");
  auto r = store_->WaitForRun(id, milliseconds(200));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->id, id);
  EXPECT_EQ(r->status, RunStatus::kPending);
  EXPECT_FALSE(IsTerminal(r->status));

  auto missing = store_->WaitForRun(NewUuid(), milliseconds(200));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  auto bad = store_->WaitForRun("nope", milliseconds(200));
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(ClientTest, WaitForAFinishedRunReturnsAtOnce) {
  std::string id = Start("wf");
  auto batch = Claim(NewUuid(), {{"wf", 1}}, 1);
  ASSERT_EQ(batch.runs.size(), 1u);
  ASSERT_TRUE(store_->CompleteRun(LeaseOf(batch.runs[0]), "42").ok());
  auto r = store_->WaitForRun(id, std::chrono::seconds(60));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, RunStatus::kCompleted);
  EXPECT_EQ(r->output, "42");
}

// Kills every connection to the test database except the caller's, and waits
// until they are gone.
void TerminateOtherBackends(const TestDatabase& db) {
  db.Query(
      "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
      "WHERE datname = current_database() AND pid <> pg_backend_pid()");
}

TEST_F(ClientTest, PoolReplacesAConnectionTheServerKilled) {
  auto store = NewStore(1);
  auto warm = store->Now();
  ASSERT_TRUE(warm.ok()) << warm.status().message();
  std::string id = Start("wf", "null", store.get());
  ASSERT_EQ(Count("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                  "AND application_name = 'kagzi-integration-test' AND pid <> pg_backend_pid()"),
            2);  // store_ (from SetUp) and store

  TerminateOtherBackends(*db_);

  auto next = store->GetRun(id);
  if (!next.ok()) {
    EXPECT_EQ(next.status().code(), StatusCode::kUnavailable) << next.status().message();
  }
  auto after = store->GetRun(id);
  ASSERT_TRUE(after.ok()) << after.status().message();
  EXPECT_EQ(after->id, id);
  // Fenced writes work on the replacement connection too.
  auto batch = Claim(NewUuid(), {{"wf", 1}}, 1, std::chrono::seconds(30), store.get());
  ASSERT_EQ(batch.runs.size(), 1u);
  EXPECT_TRUE(store->CompleteRun(LeaseOf(batch.runs[0]), "true").ok());
}

TEST_F(ClientTest, EveryBrokenPooledConnectionFailsAtMostOnce) {
  constexpr int kPool = 4;
  auto store = NewStore(kPool);
  // Open several pooled connections with concurrent calls.
  {
    std::latch go(kPool);
    std::vector<std::thread> threads;
    for (int i = 0; i < kPool; ++i) {
      threads.emplace_back([&] {
        go.arrive_and_wait();
        for (int k = 0; k < 20; ++k) EXPECT_TRUE(store->Now().ok());
      });
    }
    for (auto& t : threads) t.join();
  }
  TerminateOtherBackends(*db_);

  int failures = 0;
  int calls = 0;
  while (true) {
    ASSERT_LE(calls, kPool + 1) << "the pool kept handing out dead connections";
    ++calls;
    auto r = store->Now();
    if (r.ok()) break;
    EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().message();
    ++failures;
  }
  EXPECT_LE(failures, kPool);
  // Once a call succeeded, the dead connections are all gone.
  for (int i = 0; i < 10; ++i) {
    auto r = store->Now();
    ASSERT_TRUE(r.ok()) << r.status().message();
  }
  // The fixture's store recovers the same way.
  auto recovered = store_->Now();
  if (!recovered.ok()) {
    EXPECT_TRUE(recovered.status().IsUnavailable());
  }
  EXPECT_TRUE(store_->Now().ok());
}

TEST_F(ClientTest, WaitForRunReportsALostConnection) {
  std::string id = Start("wf");
  Result<RunRecord> waited = Status::Internal("not run");
  std::thread waiter([&] { waited = store_->WaitForRun(id, std::chrono::seconds(60)); });
  // Wait until the waiter's own connection is up (the fixture's pool holds
  // the other one), then kill both.
  ASSERT_TRUE(Eventually(
      [&] {
        return Count(
                   "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                   "AND application_name = 'kagzi-integration-test'") >= 2;
      },
      std::chrono::seconds(30)));
  TerminateOtherBackends(*db_);
  waiter.join();
  ASSERT_FALSE(waited.ok());
  EXPECT_EQ(waited.status().code(), StatusCode::kUnavailable) << waited.status().message();
}

}  // namespace
}  // namespace kagzi::testing
