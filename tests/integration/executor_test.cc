// The executor pool on a real PostgreSQL, with the hello example plugin: a
// run gives its slot back when its workflow code returns, and is still in
// flight (its lease renewed, the pool not idle) until its completion is
// committed. Each write is made on its own here (no group commit), so that
// the second run's step is not queued behind the first run's held
// completion.
#include "executor.h"

#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "kagzi/core/pg.h"
#include "store_fixture.h"

namespace kagzi::testing {
namespace {

namespace fs = std::filesystem;
using daemon::ExecutorOptions;
using daemon::ExecutorPool;
using daemon::InFlightRuns;
using daemon::PluginRegistry;

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

  void TearDown() override {
    if (!plugin_dir_.empty()) fs::remove_all(plugin_dir_);
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

  int Steps(const std::string& run_id) const {
    return Count("SELECT count(*) FROM kagzi_steps WHERE run_id = '" + run_id + "'");
  }

  // Starts a pool of one slot that counts the slots it frees. It is
  // destroyed (its threads joined) after the test body.
  ExecutorPool& StartPool() {
    ExecutorOptions options;
    options.slots = 1;
    pool_ = std::make_unique<ExecutorPool>(
        *store_, registry_, in_flight_, options, [this] { ++slots_freed_; },
        daemon::ParkListener{});
    pool_->Start();
    return *pool_;
  }

  fs::path plugin_dir_;
  PluginRegistry registry_;
  InFlightRuns in_flight_;
  std::atomic<int> slots_freed_{0};
  std::unique_ptr<ExecutorPool> pool_;
};

TEST_F(ExecutorPoolTest, ARunGivesItsSlotBackBeforeItsCompletionIsCommitted) {
  // Completions wait for advisory lock 7, which the test holds.
  db_->Query(
      "CREATE FUNCTION hold_completion() RETURNS trigger LANGUAGE plpgsql AS"
      " $$ BEGIN PERFORM pg_advisory_xact_lock(7); RETURN NEW; END $$");
  db_->Query(
      "CREATE TRIGGER hold_completion BEFORE UPDATE ON kagzi_runs FOR EACH ROW"
      " WHEN (NEW.status = 'COMPLETED') EXECUTE FUNCTION hold_completion()");
  auto locker = PgConnection::Connect(db_->url(), "kagzi-test-locker");
  ASSERT_TRUE(locker.ok()) << locker.status().message();
  ASSERT_TRUE((*locker)->Exec("SELECT pg_advisory_lock(7)").ok());

  std::string first = Start("hello", R"({"name":"first"})");
  std::string second = Start("hello", R"({"name":"second"})");
  const std::string owner = NewUuid();

  ExecutorPool& pool = StartPool();
  // Whatever fails below, the held completions go through before the pool
  // (destroyed after the test body) waits for its threads.
  struct Unlock {
    PgConnection* c;
    ~Unlock() { (void)c->Exec("SELECT pg_advisory_unlock_all()"); }
  } unlock{locker->get()};

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

  // The slot runs the second run meanwhile, on another thread.
  batch = Claim(owner, {{"hello", 1}}, 1);
  ASSERT_EQ(batch.runs.size(), 1u);
  ASSERT_EQ(batch.runs[0].run.id, second);
  pool.Submit(std::move(batch.runs), batch.db_now);
  ASSERT_TRUE(Eventually([&] { return slots_freed_ == 2; }));
  EXPECT_EQ(Steps(second), 1);
  EXPECT_EQ(Get(first).status, RunStatus::kRunning);
  EXPECT_EQ(Get(second).status, RunStatus::kRunning);
  EXPECT_EQ(in_flight_.size(), 2u);

  ASSERT_TRUE((*locker)->Exec("SELECT pg_advisory_unlock(7)").ok());
  EXPECT_TRUE(pool.WaitIdle(std::chrono::seconds(30)));
  EXPECT_EQ(in_flight_.size(), 0u);
  for (const auto& [id, name] : {std::pair{first, "first"}, std::pair{second, "second"}}) {
    RunRecord run = Get(id);
    EXPECT_EQ(run.status, RunStatus::kCompleted) << id;
    EXPECT_EQ(run.output.value_or(""), std::string(R"({"greeting":"Hello, )") + name + "!\"}");
  }
  EXPECT_EQ(slots_freed_, 2);
}

// A completion refused after the run gave its slot back: the slot is
// freed once, the run leaves InFlightRuns, the pool goes idle, and the run
// stays RUNNING under its lease (which expires, and another claim resumes
// it from its journal); its step stays recorded.
TEST_F(ExecutorPoolTest, ACompletionRefusedAfterTheSlotIsFreedLeavesThePoolIdle) {
  db_->Query(
      "CREATE FUNCTION refuse_completion() RETURNS trigger LANGUAGE plpgsql AS"
      " $$ BEGIN RAISE EXCEPTION 'completion refused by the test'; END $$");
  db_->Query(
      "CREATE TRIGGER refuse_completion BEFORE UPDATE ON kagzi_runs FOR EACH ROW"
      " WHEN (NEW.status = 'COMPLETED') EXECUTE FUNCTION refuse_completion()");
  std::string run = Start("hello", R"({"name":"refused"})");

  ExecutorPool& pool = StartPool();
  ClaimBatch batch = Claim(NewUuid(), {{"hello", 1}}, 1);
  ASSERT_EQ(batch.runs.size(), 1u);
  pool.Submit(std::move(batch.runs), batch.db_now);

  EXPECT_TRUE(pool.WaitIdle(std::chrono::seconds(30)));
  EXPECT_EQ(slots_freed_, 1);
  EXPECT_EQ(pool.FreeSlots(), 1);
  EXPECT_EQ(in_flight_.size(), 0u);
  EXPECT_EQ(Get(run).status, RunStatus::kRunning);
  EXPECT_EQ(Steps(run), 1);
}

}  // namespace
}  // namespace kagzi::testing
