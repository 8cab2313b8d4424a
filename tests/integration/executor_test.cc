// The executor pool on a real PostgreSQL, with the hello example plugin: a
// run gives its slot back when its workflow code returns, and is still in
// flight (its lease renewed, the pool not idle) until its completion is
// committed. Each write is made on its own here (no group commit), so that
// the second run's step is not queued behind the first run's held
// completion. And the scheduler in front of the pool: which claim each
// kind of wake-up makes.
#include "executor.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <thread>

#include <spdlog/sinks/base_sink.h>

#include "group_commit.h"
#include "kagzi/core/log.h"
#include "kagzi/core/pg.h"
#include "kagzi/core/wakeup.h"
#include "scheduler.h"
#include "store_fixture.h"

namespace kagzi::testing {
namespace {

namespace fs = std::filesystem;
using daemon::ExecutorOptions;
using daemon::ExecutorPool;
using daemon::InFlightRuns;
using daemon::PluginRegistry;

// Keeps each line logged through it, with the run id in the logging
// thread's log context (the journal's KAGZI_RUN_ID) when it was logged.
class RunIdSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  // The run id of the first line that contains `text` ("-" if none does).
  std::string RunIdOfLine(const std::string& text) {
    std::lock_guard lock(lines_mu_);
    for (const auto& [line, run_id] : lines_) {
      if (line.find(text) != std::string::npos) return run_id;
    }
    return "-";
  }

  // How many lines contain `text`.
  int CountLines(const std::string& text) {
    std::lock_guard lock(lines_mu_);
    return static_cast<int>(std::count_if(lines_.begin(), lines_.end(), [&](const auto& l) {
      return l.first.find(text) != std::string::npos;
    }));
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::lock_guard lock(lines_mu_);
    lines_.emplace_back(std::string(msg.payload.data(), msg.payload.size()),
                        CurrentLogContext().run_id);
  }
  void flush_() override {}

 private:
  std::mutex lines_mu_;
  std::vector<std::pair<std::string, std::string>> lines_;
};

class ExecutorPoolTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    if (HasFatalFailure()) return;
    // A private plugin directory (kagzid refuses group- or world-writable
    // ones) with hello.so in it.
    std::string dir = (fs::temp_directory_path() / "kagzi-executor-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(dir.data()), nullptr);
    plugin_dir_ = dir;
    fs::copy_file(KAGZI_HELLO_PLUGIN, plugin_dir_ / "hello.so");
    auto report = registry_.Scan(plugin_dir_.string());
    ASSERT_EQ(report.loaded_paths.size(), 1u)
        << (report.refusals.empty() ? "" : report.refusals[0].ToString());
  }

  // In this order: the scheduler claims no more; held writes go through;
  // the pool joins its threads, which may still wake the scheduler (still
  // there, stopped); then the group committer, if any, and the scheduler
  // go.
  void TearDown() override {
    if (scheduler_) scheduler_->Stop();
    ReleaseWrites();
    pool_.reset();
    committer_.reset();  // after the pool, which waits for its last writes
    scheduler_.reset();
    if (captured_) spdlog::drop("executor");  // Logger() makes kagzid's again
    if (!plugin_dir_.empty()) fs::remove_all(plugin_dir_);
  }

  // Lines logged by the executor go to `sink` (at info level) until the
  // test ends.
  void CaptureExecutorLog(const std::shared_ptr<RunIdSink>& sink) {
    spdlog::drop("executor");
    auto logger = std::make_shared<spdlog::logger>("executor", sink);
    logger->set_level(spdlog::level::info);
    spdlog::register_logger(logger);
    captured_ = true;
  }

  // Holds every write that fires a trigger `when` ("BEFORE UPDATE ON
  // kagzi_runs FOR EACH ROW WHEN (...)") until ReleaseWrites(): it waits
  // for an advisory lock the test holds. Released in TearDown at the
  // latest, before the pool waits for its threads.
  void HoldWrites(const std::string& when) {
    db_->Query(
        "CREATE FUNCTION hold_writes() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN PERFORM pg_advisory_xact_lock_shared(7); RETURN NEW; END $$");
    db_->Query("CREATE TRIGGER hold_writes " + when + " EXECUTE FUNCTION hold_writes()");
    auto locker = PgConnection::Connect(db_->url(), "kagzi-test-locker");
    ASSERT_TRUE(locker.ok()) << locker.status().message();
    locker_ = std::move(locker).value();
    ASSERT_TRUE(locker_->Exec("SELECT pg_advisory_lock(7)").ok());
  }
  void ReleaseWrites() {
    if (locker_) {
      EXPECT_TRUE(locker_->Exec("SELECT pg_advisory_unlock_all()").ok());
      locker_.reset();
    }
  }

  // Polls `done` for up to 30 s.
  template <typename F>
  static bool Eventually(F done) {
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!done()) {
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

  // Writes waiting for HoldWrites' lock (in this test's database: other
  // tests run beside it on the same server).
  int HeldWrites() const {
    return Count(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())");
  }

  // A run whose completion a trigger refuses, on a pool of one slot
  // (its writes through a group committer if `group_commit`): see the
  // tests below.
  // Runs the PL/pgSQL `body` in a trigger `name` before every update
  // that completes a run.
  void OnCompletion(const std::string& name, const std::string& body) {
    db_->Query("CREATE FUNCTION " + name + "() RETURNS trigger LANGUAGE plpgsql AS $$ " + body +
               " $$");
    db_->Query("CREATE TRIGGER " + name +
               " BEFORE UPDATE ON kagzi_runs FOR EACH ROW"
               " WHEN (NEW.status = 'COMPLETED') EXECUTE FUNCTION " +
               name + "()");
  }

  // Starts n runs of hello greeting `name` and submits them, claimed, to a
  // new pool of n slots on fibers over one carrier, its writes through a
  // group committer. Returns the runs' ids.
  std::vector<std::string> SubmitRunsOnOneCarrier(int n, const std::string& name) {
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) ids.push_back(Start("hello", R"({"name":")" + name + R"("})"));
    fiber_threads_ = 1;
    ExecutorPool& pool = StartPool(n, true);
    ClaimBatch batch = Claim(NewUuid(), {{"hello", 1}}, n);
    EXPECT_EQ(batch.runs.size(), static_cast<std::size_t>(n));
    pool.Submit(std::move(batch.runs), batch.db_now);
    return ids;
  }

  // Once the pool is idle: the runs `ids` completed with their one step,
  // each freed its slot once, and nothing is in flight.
  void ExpectAllCompleted(const std::vector<std::string>& ids) {
    EXPECT_TRUE(pool_->WaitIdle(std::chrono::seconds(30)));
    for (const std::string& id : ids) {
      EXPECT_EQ(Get(id).status, RunStatus::kCompleted) << id;
      EXPECT_EQ(Steps(id), 1) << id;
    }
    EXPECT_EQ(slots_freed_, static_cast<int>(ids.size()));
    EXPECT_EQ(in_flight_.size(), 0u);
  }

  // Starts a run of hello greeting `name` and submits it, claimed, to a new
  // pool of one slot (pool_; writes through a group committer if
  // `group_commit`). Returns the run's id.
  std::string SubmitOneRun(const std::string& name, bool group_commit) {
    std::string run = Start("hello", R"({"name":")" + name + R"("})");
    ExecutorPool& pool = StartPool(1, group_commit);
    ClaimBatch batch = Claim(NewUuid(), {{"hello", 1}}, 1);
    EXPECT_EQ(batch.runs.size(), 1u);
    pool.Submit(std::move(batch.runs), batch.db_now);
    return run;
  }

  void ExpectARefusedCompletionLeavesThePoolIdle(bool group_commit) {
    OnCompletion("refuse_completion",
                 "BEGIN RAISE EXCEPTION 'completion refused by the test'; END");
    std::string run = SubmitOneRun("refused", group_commit);
    ExecutorPool& pool = *pool_;

    EXPECT_TRUE(pool.WaitIdle(std::chrono::seconds(30)));
    EXPECT_EQ(slots_freed_, 1);
    EXPECT_EQ(pool.FreeSlots(), 1);
    EXPECT_EQ(in_flight_.size(), 0u);
    EXPECT_EQ(Get(run).status, RunStatus::kRunning);
    EXPECT_EQ(Steps(run), 1);
  }

  // Once the pool is idle: nothing is in flight, and the runs "first" and
  // "second" of hello completed, each freeing its slot once.
  void ExpectBothGreeted(ExecutorPool& pool, const std::string& first, const std::string& second) {
    EXPECT_TRUE(pool.WaitIdle(std::chrono::seconds(30)));
    EXPECT_EQ(in_flight_.size(), 0u);
    for (const auto& [id, name] : {std::pair{first, "first"}, std::pair{second, "second"}}) {
      RunRecord run = Get(id);
      EXPECT_EQ(run.status, RunStatus::kCompleted) << id;
      EXPECT_EQ(run.output.value_or(""), std::string(R"({"greeting":"Hello, )") + name + "!\"}");
    }
    EXPECT_EQ(slots_freed_, 2);
  }

  int Steps(const std::string& run_id) const {
    return Count("SELECT count(*) FROM kagzi_steps WHERE run_id = '" + run_id + "'");
  }

  // Starts a pool of `slots` (its writes through a group committer,
  // committer_, if `group_commit`) that counts the slots it frees (and wakes
  // the scheduler, if there is one, as kagzid's does). It is destroyed
  // (its threads joined) after the test body.
  ExecutorPool& StartPool(int slots = 1, bool group_commit = false) {
    ExecutorOptions options;
    options.slots = slots;
    options.fiber_threads = fiber_threads_;
    options.fiber_stack_bytes = fiber_stack_bytes_;
    if (group_commit) {
      committer_ = std::make_unique<daemon::GroupCommitter>(*store_, 256);
      committer_->Start();
      options.run.writer = committer_.get();
    }
    pool_ = std::make_unique<ExecutorPool>(
        *store_, registry_, in_flight_, options,
        [this] {
          ++slots_freed_;
          if (scheduler_ready_) scheduler_->Wake();
        },
        daemon::ParkListener{});
    pool_->Start();
    return *pool_;
  }

  // Two runs of "hello" claimed together onto a pool of one slot: the
  // first executes, held at its first step's insert (HoldWrites); the
  // second (`queued_`, claimed at `queued_epoch_`) waits in the queue.
  void QueueARunBehindAHeldOne() {
    HoldWrites("BEFORE INSERT ON kagzi_steps FOR EACH ROW");
    held_ = Start("hello", R"({"name":"first"})");
    queued_ = Start("hello", R"({"name":"second"})");
    StartPool(1);
    ClaimBatch batch = Claim(NewUuid(), {{"hello", 1}}, 2);
    ASSERT_EQ(batch.runs.size(), 2u);
    queued_epoch_ = batch.runs[1].run.lease_epoch;
    ASSERT_EQ(batch.runs[1].run.id, queued_);
    pool_->Submit(std::move(batch.runs), batch.db_now);
    ASSERT_TRUE(Eventually([&] { return HeldWrites() == 1; }));
  }

  int fiber_threads_ = 0;  // StartPool: a thread per run, or fibers over these
  std::size_t fiber_stack_bytes_ = std::size_t{1} << 20;  // StartPool: each fiber's
  fs::path plugin_dir_;
  PluginRegistry registry_;
  InFlightRuns in_flight_;
  std::atomic<int> slots_freed_{0};
  std::unique_ptr<PgConnection> locker_;  // HoldWrites
  std::unique_ptr<daemon::GroupCommitter> committer_;
  std::unique_ptr<ExecutorPool> pool_;
  bool captured_ = false;      // CaptureExecutorLog
  std::string held_, queued_;  // QueueARunBehindAHeldOne
  std::int64_t queued_epoch_ = 0;
  std::unique_ptr<daemon::Scheduler> scheduler_;  // see TearDown
  std::atomic<bool> scheduler_ready_{false};      // scheduler_ is set
};

// The pool's tests run twice: with a thread per run, and with runs on
// fibers over two carrier threads (the second carrier takes a run while
// the first is held in a write made on its own thread, as a second thread
// would).
class ExecutorModeTest : public ExecutorPoolTest, public ::testing::WithParamInterface<int> {
 protected:
  void SetUp() override {
    fiber_threads_ = GetParam();
    ExecutorPoolTest::SetUp();
  }
};

TEST_P(ExecutorModeTest, ARunGivesItsSlotBackBeforeItsCompletionIsCommitted) {
  HoldWrites("BEFORE UPDATE ON kagzi_runs FOR EACH ROW WHEN (NEW.status = 'COMPLETED')");
  std::string first = Start("hello", R"({"name":"first"})");
  std::string second = Start("hello", R"({"name":"second"})");
  const std::string owner = NewUuid();
  ExecutorPool& pool = StartPool();

  ClaimBatch batch = Claim(owner, {{"hello", 1}}, 1);
  ASSERT_EQ(batch.runs.size(), 1u);
  ASSERT_EQ(batch.runs[0].run.id, first);
  pool.Submit(std::move(batch.runs), batch.db_now);

  // The first run's step is recorded and its code returned: its slot is
  // free, though its completion waits for the lock.
  ASSERT_TRUE(Eventually([&] { return slots_freed_ == 1; }));
  EXPECT_EQ(pool.FreeSlots(), 1);
  EXPECT_EQ(Steps(first), 1);
  EXPECT_EQ(Get(first).status, RunStatus::kRunning);
  EXPECT_EQ(in_flight_.size(), 1u) << "its lease is still renewed until the completion commits";
  EXPECT_FALSE(pool.WaitIdle(std::chrono::milliseconds(100)));

  // The slot runs the second run meanwhile, on another thread (or carrier).
  batch = Claim(owner, {{"hello", 1}}, 1);
  ASSERT_EQ(batch.runs.size(), 1u);
  ASSERT_EQ(batch.runs[0].run.id, second);
  pool.Submit(std::move(batch.runs), batch.db_now);
  ASSERT_TRUE(Eventually([&] { return slots_freed_ == 2; }));
  EXPECT_EQ(Steps(second), 1);
  EXPECT_EQ(Get(first).status, RunStatus::kRunning);
  EXPECT_EQ(Get(second).status, RunStatus::kRunning);
  EXPECT_EQ(in_flight_.size(), 2u);

  ReleaseWrites();
  ExpectBothGreeted(pool, first, second);
}

// A completion refused after the run gave its slot back: the slot is
// freed once, the run leaves InFlightRuns, the pool goes idle, and the run
// stays RUNNING under its lease (which expires, and another claim resumes
// it from its journal); its step stays recorded.
TEST_P(ExecutorModeTest, ACompletionRefusedAfterTheSlotIsFreedLeavesThePoolIdle) {
  ExpectARefusedCompletionLeavesThePoolIdle(false);
}

// The same through the group committer: the refusal comes back in
// WriteAsync's callback (ExecutorPool::Ended), which ends the run.
TEST_P(ExecutorModeTest, ACompletionRefusedThroughTheGroupCommitterLeavesThePoolIdle) {
  ExpectARefusedCompletionLeavesThePoolIdle(true);
}

// Through a group committer, a run's completion is queued to it, and the
// run's thread takes the next queued run meanwhile (here the second run's
// step cannot commit past the first run's held completion). The
// first run stays in flight, its lease renewed and the pool not idle, until
// its completion is durable; then both runs end.
TEST_P(ExecutorModeTest, ThroughTheGroupCommitterARunEndsOnceItsCompletionIsDurable) {
  auto sink = std::make_shared<RunIdSink>();
  CaptureExecutorLog(sink);
  HoldWrites("BEFORE UPDATE ON kagzi_runs FOR EACH ROW WHEN (NEW.status = 'COMPLETED')");
  std::string first = Start("hello", R"({"name":"first"})");
  std::string second = Start("hello", R"({"name":"second"})");
  ExecutorPool& pool = StartPool(1, true);
  const daemon::GroupCommitter& committer = *committer_;
  ClaimBatch batch = Claim(NewUuid(), {{"hello", 1}}, 2);
  ASSERT_EQ(batch.runs.size(), 2u);
  ASSERT_EQ(batch.runs[0].run.id, first);
  pool.Submit(std::move(batch.runs), batch.db_now);

  // The only slot took the second run; its step waits in the committer, or
  // in the held commit with the first run's completion.
  ASSERT_TRUE(Eventually([&] { return HeldWrites() == 1 && pool.Queued() == 0; }))
      << "held " << HeldWrites() << ", queued " << pool.Queued();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(committer.groups(), 1) << "only the first run's step was committed";
  EXPECT_EQ(slots_freed_, 1);
  EXPECT_EQ(pool.Queued(), 0);
  EXPECT_EQ(Steps(first), 1);
  EXPECT_EQ(Steps(second), 0);
  EXPECT_EQ(Get(first).status, RunStatus::kRunning);
  EXPECT_EQ(in_flight_.size(), 2u)
      << "the first run's lease is renewed until its completion commits";
  EXPECT_FALSE(pool.WaitIdle(std::chrono::milliseconds(100)));

  ReleaseWrites();
  ExpectBothGreeted(pool, first, second);
  // The first run's end was logged on the committer's thread, with the
  // run's fields all the same.
  EXPECT_EQ(sink->RunIdOfLine("run " + first + " (hello v1): completed"), first);
  EXPECT_EQ(sink->RunIdOfLine("run " + second + " (hello v1): completed"), second);
}

// A completion the committer could not write because the database dropped
// the connection (here: its backend is terminated, twice) is retried, with
// back-off, on a pool thread, until it is written; meanwhile the run stays
// in flight.
TEST_P(ExecutorModeTest, ACompletionLostWithItsConnectionIsRetriedUntilWritten) {
  db_->Query("CREATE SEQUENCE completion_attempts");
  OnCompletion("drop_completion",
               "BEGIN IF nextval('completion_attempts') <= 2 THEN"
               " PERFORM pg_terminate_backend(pg_backend_pid()); END IF; RETURN NEW; END");
  std::string run = SubmitOneRun("retried", true);
  ExecutorPool& pool = *pool_;

  EXPECT_TRUE(pool.WaitIdle(std::chrono::seconds(30)));
  EXPECT_EQ(in_flight_.size(), 0u);
  RunRecord done = Get(run);
  EXPECT_EQ(done.status, RunStatus::kCompleted);
  EXPECT_EQ(done.output.value_or(""), R"({"greeting":"Hello, retried!"})");
  EXPECT_GE(Count("SELECT last_value FROM completion_attempts"), 3)
      << "the completion was not attempted again after its connection was dropped";
  EXPECT_EQ(Steps(run), 1);
}

// A step's entry is new (FencedWrite::new_entry) unless the journal has
// one of its id: inserted without ON CONFLICT, whose speculative insertion
// would show in the WAL.
TEST_P(ExecutorModeTest, AStepsFirstEntryIsInsertedWithoutSpeculation) {
  const std::string since = WalEnd();
  std::string run = SubmitOneRun("plain", true);
  EXPECT_TRUE(pool_->WaitIdle(std::chrono::seconds(30)));
  EXPECT_EQ(Get(run).status, RunStatus::kCompleted);
  EXPECT_EQ(Steps(run), 1);
  EXPECT_EQ(SpeculativeInserts("kagzi_steps", since), 0);
}

// Tried again after its connection was lost (here: its backend terminated
// once, before the insert), the entry is upserted: a try whose reply was
// lost may have committed it.
TEST_P(ExecutorModeTest, AStepsEntryTriedAgainAfterItsConnectionWasLostIsUpserted) {
  db_->Query("CREATE SEQUENCE step_attempts");
  db_->Query(
      "CREATE FUNCTION drop_step() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
      " IF nextval('step_attempts') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid());"
      " END IF; RETURN NEW; END $$");
  db_->Query(
      "CREATE TRIGGER drop_step BEFORE INSERT ON kagzi_steps FOR EACH ROW"
      " EXECUTE FUNCTION drop_step()");
  const std::string since = WalEnd();
  std::string run = SubmitOneRun("again", true);
  EXPECT_TRUE(pool_->WaitIdle(std::chrono::seconds(30)));
  EXPECT_EQ(Get(run).status, RunStatus::kCompleted);
  EXPECT_EQ(Steps(run), 1);
  EXPECT_GE(Count("SELECT last_value FROM step_attempts"), 2);
  EXPECT_EQ(SpeculativeInserts("kagzi_steps", since), 1);
}

// Runs queued beyond the free slots (claimed ahead, ClaimRoom) wait: the
// pool's spare threads, there for runs writing their outcome, never run a
// queued run past the slots. Each starts when a slot frees.
TEST_P(ExecutorModeTest, QueuedRunsWaitForASlotWhateverThreadsAreIdle) {
  HoldWrites("BEFORE INSERT ON kagzi_steps FOR EACH ROW");
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(Start("hello", R"({"name":"queued"})"));
  ExecutorPool& pool = StartPool(1);
  EXPECT_EQ(pool.ClaimRoom(), 1) << "no slot has freed yet: no room beyond the slots";
  ClaimBatch batch = Claim(NewUuid(), {{"hello", 1}}, 3);
  ASSERT_EQ(batch.runs.size(), 3u);
  pool.Submit(std::move(batch.runs), batch.db_now);

  // One run's step record waits for the lock; the other two stay queued.
  ASSERT_TRUE(Eventually([&] { return HeldWrites() == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(HeldWrites(), 1);
  EXPECT_EQ(pool.Queued(), 2);
  EXPECT_EQ(pool.FreeSlots(), -2);
  EXPECT_EQ(pool.ClaimRoom(), 0);
  EXPECT_EQ(in_flight_.size(), 3u) << "queued runs' leases are renewed too";

  ReleaseWrites();
  EXPECT_TRUE(pool.WaitIdle(std::chrono::seconds(30)));
  for (const std::string& id : ids) EXPECT_EQ(Get(id).status, RunStatus::kCompleted) << id;
  EXPECT_EQ(slots_freed_, 3);
  EXPECT_EQ(pool.Queued(), 0);
}

// A run that waited in the queue longer than it may is given back: PENDING
// again, claimable by any daemon, its epoch bumped so that nothing of this
// lease can be written, and no longer renewed here.
TEST_P(ExecutorModeTest, ARunQueuedTooLongIsGivenBack) {
  ASSERT_NO_FATAL_FAILURE(QueueARunBehindAHeldOne());
  ExecutorPool& pool = *pool_;
  const std::string first = held_, second = queued_;
  const std::int64_t epoch = queued_epoch_;

  EXPECT_EQ(pool.ReleaseStale(std::chrono::seconds(60)), 0) << "not queued that long";
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(pool.ReleaseStale(std::chrono::milliseconds(50)), 1);
  EXPECT_EQ(pool.Queued(), 0);
  EXPECT_EQ(in_flight_.size(), 1u);
  RunRecord given_back = Get(second);
  EXPECT_EQ(given_back.status, RunStatus::kPending);
  EXPECT_FALSE(given_back.lease_owner.has_value());
  EXPECT_GT(given_back.lease_epoch, epoch);

  ReleaseWrites();
  EXPECT_TRUE(pool.WaitIdle(std::chrono::seconds(30)));
  EXPECT_EQ(Get(first).status, RunStatus::kCompleted);
  EXPECT_EQ(Get(second).status, RunStatus::kPending);
  EXPECT_EQ(Steps(second), 0);
}

// A run queued so long that its lease expired and another daemon claimed
// it: giving it back is refused by the lease fence (the new owner keeps
// it), and the pool forgets it all the same: no heartbeat, no execution.
TEST_P(ExecutorModeTest, AStaleQueuedRunWhoseLeaseWasTakenIsDroppedAndLeftToItsNewOwner) {
  ASSERT_NO_FATAL_FAILURE(QueueARunBehindAHeldOne());
  ExecutorPool& pool = *pool_;
  const std::string first = held_, second = queued_;
  const std::int64_t epoch = queued_epoch_;

  const std::string other = NewUuid();
  db_->Query("UPDATE kagzi_runs SET lease_owner = '" + other +
             "', lease_epoch = lease_epoch + 1 WHERE id = '" + second + "'");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(pool.ReleaseStale(std::chrono::milliseconds(50)), 1);
  EXPECT_EQ(pool.Queued(), 0);
  EXPECT_EQ(in_flight_.size(), 1u) << "the dropped run is still heartbeated";
  RunRecord taken = Get(second);
  EXPECT_EQ(taken.status, RunStatus::kRunning);
  EXPECT_EQ(taken.lease_owner.value_or(""), other);
  EXPECT_EQ(taken.lease_epoch, epoch + 1);

  ReleaseWrites();
  EXPECT_TRUE(pool.WaitIdle(std::chrono::seconds(30)));
  EXPECT_EQ(Get(first).status, RunStatus::kCompleted);
  EXPECT_EQ(Get(second).lease_owner.value_or(""), other);
  EXPECT_EQ(Steps(second), 0);
}

INSTANTIATE_TEST_SUITE_P(Executors, ExecutorModeTest, ::testing::Values(0, 2),
                         [](const ::testing::TestParamInfo<int>& mode) {
                           return mode.param == 0 ? std::string("Threads") : std::string("Fibers");
                         });

// A fiber whose stack cannot be mapped (here: 1 PiB asked for, beyond the
// address space) does not take the worker down: its run goes on the
// carrier thread's own stack, as on an executor thread, and the failure is
// logged once, with its reason.
TEST_F(ExecutorPoolTest, OnFibersARunWithoutAStackRunsOnItsCarrier) {
  auto sink = std::make_shared<RunIdSink>();
  CaptureExecutorLog(sink);
  fiber_stack_bytes_ = std::size_t{1} << 50;
  std::vector<std::string> ids = SubmitRunsOnOneCarrier(4, "stackless");
  ExpectAllCompleted(ids);
  EXPECT_EQ(sink->CountLines("no fiber for a run: mapping a fiber stack of "), 1)
      << "logged once for the four runs (at most once per 10 s)";
  EXPECT_EQ(sink->CountLines("Cannot allocate memory"), 1);
  EXPECT_EQ(sink->CountLines("since the last report"), 0)
      << "the first report has no earlier failures to count";
}

// On fibers, a run waiting for its step's commit holds no thread: one
// carrier thread takes all eight runs while the first one's step is held in
// its commit. (A run that held the carrier would leave the others queued:
// the carrier takes a run only between fibers.)
TEST_F(ExecutorPoolTest, OnFibersOneCarrierExecutesRunsWhileTheirStepsWaitForACommit) {
  HoldWrites("BEFORE INSERT ON kagzi_steps FOR EACH ROW");
  std::vector<std::string> ids = SubmitRunsOnOneCarrier(8, "fiber");
  ExecutorPool& pool = *pool_;

  ASSERT_TRUE(Eventually([&] { return HeldWrites() == 1 && pool.Queued() == 0; }))
      << "held " << HeldWrites() << ", queued " << pool.Queued();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(committer_->groups(), 0) << "no step can have been committed";
  EXPECT_EQ(pool.FreeSlots(), 0);
  EXPECT_EQ(slots_freed_, 0);
  EXPECT_EQ(in_flight_.size(), 8u);

  ReleaseWrites();
  ExpectAllCompleted(ids);
}

// --- the scheduler ----------------------------------------------------------

// A scheduler over a pool of `slots`, polling only once a minute: a run is
// claimed within a test's time only because a notification or a freed
// slot woke the scheduler. Returns once its first claim (at start-up, of
// whatever is due) is made, which is after it began to listen.
class SchedulerTest : public ExecutorPoolTest {
 protected:
  daemon::Scheduler& StartScheduler(int slots) {
    StartPool(slots);
    daemon::SchedulerOptions options;
    options.database_url = db_->url();
    options.owner = NewUuid();
    options.poll_interval = std::chrono::minutes(1);
    scheduler_ = std::make_unique<daemon::Scheduler>(*store_, registry_, *pool_, options);
    scheduler_ready_ = true;
    scheduler_->Start();
    EXPECT_TRUE(Eventually([&] { return scheduler_->claims() >= 1; }));
    return *scheduler_;
  }

  bool Completes(const std::string& run_id) {
    return Eventually([&] { return Get(run_id).status == RunStatus::kCompleted; });
  }

  // A run inserted without a notification (as a writer that defers them
  // would, before it sends them; or one whose notification was lost).
  std::string StartQuietly() {
    const std::string id = NewRunId();
    db_->Query(
        "BEGIN; SELECT set_config('kagzi.notify', 'after_commit', true);"
        " INSERT INTO kagzi_runs (id, workflow, input) VALUES ('" +
        id + "', 'hello', '{\"name\":\"quiet\"}'); COMMIT");
    return id;
  }
};

TEST_F(SchedulerTest, ARunAnnouncedByItsStartIsClaimedById) {
  daemon::Scheduler& scheduler = StartScheduler(2);
  const std::int64_t claims = scheduler.claims();
  const std::string id = Start("hello", R"({"name":"announced"})");
  ASSERT_TRUE(Completes(id));
  EXPECT_EQ(scheduler.claims_by_id(), 1);
  EXPECT_GT(scheduler.claims(), claims);
  EXPECT_EQ(scheduler.claim_failures(), 0);
}

// A notification that names no run (the trigger's, an operator's NOTIFY)
// or one the daemon cannot read makes the claim of whatever is due, and
// that claim succeeds (an unreadable id is never sent as a uuid); one
// naming runs claims by id, even runs that do not exist.
TEST_F(SchedulerTest, AWakeupThatNamesNoRunsClaimsWhatIsDue) {
  daemon::Scheduler& scheduler = StartScheduler(2);
  auto notifier = PgConnection::Connect(db_->url(), "kagzi-test-notifier");
  ASSERT_TRUE(notifier.ok()) << notifier.status().message();
  // Sends `payload` and returns once the claim it caused is made; whether
  // that claim was by id.
  auto claim_after = [&](const std::string& payload) {
    const std::int64_t claims = scheduler.claims();
    const std::int64_t by_id = scheduler.claims_by_id();
    char* quoted = PQescapeLiteral((*notifier)->raw(), payload.data(), payload.size());
    EXPECT_TRUE(
        (*notifier)->Exec(std::string("SELECT pg_notify('kagzi_wakeup', ") + quoted + ")").ok());
    PQfreemem(quoted);
    EXPECT_TRUE(Eventually([&] { return scheduler.claims() > claims; })) << payload;
    return scheduler.claims_by_id() > by_id;
  };
  EXPECT_TRUE(claim_after(WakeupPayload("hello", {NewRunId()})));
  EXPECT_FALSE(claim_after("hello"));
  EXPECT_FALSE(claim_after("hello\tnot-a-uuid"));
  EXPECT_FALSE(claim_after("hello\t" + NewRunId() + "\t'); DROP TABLE kagzi_runs; --"));
  EXPECT_FALSE(claim_after(""));
  EXPECT_TRUE(claim_after(WakeupPayload("hello", {NewRunId(), NewRunId()})));

  // And the runs announced are the ones run.
  const std::string id = Start("hello", R"({"name":"after"})");
  ASSERT_TRUE(Completes(id));
  EXPECT_EQ(scheduler.claims_by_id(), 3);
  EXPECT_EQ(scheduler.claim_failures(), 0);
}

// A due run that no notification named is not left to the poll (a minute
// here) by a claim of other runs by id: after that claim, the next wake
// time read finds it due, and the scheduler claims what is due at once.
// The announced run's step is held (its slot stays taken, so no freed slot
// wakes the scheduler) until the quiet run is claimed.
TEST_F(SchedulerTest, ADueRunNoNotificationNamedIsClaimedAfterAClaimById) {
  HoldWrites("BEFORE INSERT ON kagzi_steps FOR EACH ROW");
  daemon::Scheduler& scheduler = StartScheduler(2);
  const std::string quiet = StartQuietly();
  const std::string announced = Start("hello", R"({"name":"announced"})");
  EXPECT_TRUE(Eventually([&] { return Get(quiet).status == RunStatus::kRunning; }));
  EXPECT_EQ(Get(announced).status, RunStatus::kRunning);
  EXPECT_EQ(slots_freed_, 0) << "no freed slot woke the scheduler";
  EXPECT_EQ(scheduler.claims_by_id(), 1);

  ReleaseWrites();
  EXPECT_TRUE(Completes(announced));
  EXPECT_TRUE(Completes(quiet));
  EXPECT_EQ(scheduler.claim_failures(), 0);
}

// More runs announced than free slots: the claim of what is due, highest
// priority first, not whichever named runs the claim happens to read.
TEST_F(SchedulerTest, MoreAnnouncedRunsThanFreeSlotsAreClaimedByPriority) {
  daemon::Scheduler& scheduler = StartScheduler(1);
  std::vector<StartRequest> requests(3);
  for (std::size_t i = 0; i < requests.size(); ++i) {
    requests[i].workflow = "hello";
    requests[i].input = R"({"name":"batch"})";
    requests[i].priority = static_cast<int>(i);
  }
  auto started = store_->StartRuns(requests);
  ASSERT_TRUE(started.ok()) << started.status().message();
  for (const auto& r : *started) ASSERT_TRUE(r.ok()) << r.status().message();
  for (const auto& r : *started) ASSERT_TRUE(Completes(r->run_id));
  EXPECT_EQ(scheduler.claims_by_id(), 0);
  // The highest priority first: it started first.
  EXPECT_LE(Get((*started)[2]->run_id).started_at, Get((*started)[0]->run_id).started_at);
}

// A run parked for a moment (its wake time noted, as a park notes it) is
// claimed by the scheduler's timer: no notification, and the poll a
// minute away.
TEST_F(SchedulerTest, AParkedRunIsClaimedByTheTimerWhenItIsDue) {
  daemon::Scheduler& scheduler = StartScheduler(2);
  const std::string id = NewRunId();
  db_->Query(
      "BEGIN; SELECT set_config('kagzi.notify', 'after_commit', true);"
      " INSERT INTO kagzi_runs (id, workflow, input, status, available_at) VALUES ('" +
      id +
      "', 'hello', '{\"name\":\"timer\"}', 'SLEEPING', now() + interval '300 milliseconds');"
      " COMMIT");
  const Micros due = Get(id).available_at;
  scheduler.NoteWakeAt(due);
  ASSERT_TRUE(Completes(id));
  EXPECT_GE(Get(id).started_at, due);
  EXPECT_EQ(scheduler.claim_failures(), 0);
}

// A wake time already past, of a run another claimer holds locked, does
// not spin the scheduler: it waits 2 ms or more between claims until the
// run is free.
TEST_F(SchedulerTest, ADueRunLockedElsewhereDoesNotSpinTheClaimLoop) {
  daemon::Scheduler& scheduler = StartScheduler(2);
  const std::string id = StartQuietly();
  auto holder = PgConnection::Connect(db_->url(), "kagzi-test-holder");
  ASSERT_TRUE(holder.ok()) << holder.status().message();
  ASSERT_TRUE((*holder)->Exec("BEGIN").ok());
  ASSERT_TRUE((*holder)->Exec("SELECT 1 FROM kagzi_runs WHERE id = '" + id + "' FOR UPDATE").ok());
  const std::int64_t before = scheduler.claims();
  const auto began = std::chrono::steady_clock::now();
  scheduler.Wake();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const std::int64_t claims = scheduler.claims() - before;
  const auto waited = std::chrono::steady_clock::now() - began;
  // One claim for the Wake(), then at most one per 2 ms.
  EXPECT_GE(claims, 1);
  EXPECT_LE(claims, 2 + waited / std::chrono::milliseconds(2)) << claims << " claims";
  ASSERT_TRUE((*holder)->Exec("ROLLBACK").ok());
  EXPECT_TRUE(Completes(id));
}

}  // namespace
}  // namespace kagzi::testing
