// Migrations on a real PostgreSQL: idempotent, concurrent daemons migrate
// once, and a database this binary does not understand is refused.
#include "kagzi/core/migrations.h"

#include <atomic>
#include <chrono>
#include <latch>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "kagzi/core/pg.h"
#include "kagzi/core/store.h"
#include "store_fixture.h"
#include "support/test_db.h"

namespace kagzi::testing {
namespace {

std::unique_ptr<PgStore> StoreOn(const TestDatabase& db) {
  PgStoreOptions options;
  options.database_url = db.url();
  options.pool_size = 1;
  return std::make_unique<PgStore>(options);
}

// The plan PostgreSQL prints for `explain` (an EXPLAIN statement), one line
// per row; the reason when it fails.
std::string PlanText(PgConnection& conn, const std::string& explain) {
  auto plan = conn.Exec(explain);
  if (!plan.ok()) return "EXPLAIN failed: " + plan.status().message();
  std::string text;
  for (int i = 0; i < plan->rows(); ++i) text += std::string(plan->Get(i, 0)) + "\n";
  return text;
}

// Everything about the schema that a migration could change, as one text.
std::string SchemaSnapshot(const TestDatabase& db) {
  return db.Query(
      "SELECT concat_ws(E'\\n',"
      " (SELECT string_agg(table_name || '.' || column_name || ':' || data_type || ':' ||"
      "   is_nullable || ':' || coalesce(column_default, ''), E'\\n' ORDER BY table_name,"
      "   column_name) FROM information_schema.columns WHERE table_schema = 'public'),"
      " (SELECT string_agg(indexdef, E'\\n' ORDER BY indexname) FROM pg_indexes"
      "   WHERE schemaname = 'public'),"
      " (SELECT string_agg(conname || ':' || pg_get_constraintdef(oid), E'\\n' ORDER BY conname)"
      "   FROM pg_constraint WHERE connamespace = 'public'::regnamespace),"
      " (SELECT string_agg(proname || ':' || md5(prosrc), E'\\n' ORDER BY proname) FROM pg_proc"
      "   WHERE pronamespace = 'public'::regnamespace),"
      " (SELECT string_agg(tgname, E'\\n' ORDER BY tgname) FROM pg_trigger WHERE NOT "
      "tgisinternal))");
}

TEST(MigrationsTest, EmbeddedMigrationsAreNumberedAndSorted) {
  const auto& migrations = core::EmbeddedMigrations();
  ASSERT_FALSE(migrations.empty());
  EXPECT_EQ(migrations.front().name, "0001_initial.sql");
  for (std::size_t i = 1; i < migrations.size(); ++i) {
    EXPECT_LT(migrations[i - 1].name, migrations[i].name);
  }
  for (const auto& m : migrations) EXPECT_FALSE(m.sql.empty()) << m.name;
}

TEST(MigrationsTest, ApplyingTwiceAppliesNothingTheSecondTime) {
  auto db = TestDatabase::Create();
  ASSERT_NE(db, nullptr);
  const int total = static_cast<int>(core::EmbeddedMigrations().size());
  auto store = StoreOn(*db);

  auto first = store->Migrate();
  ASSERT_TRUE(first.ok()) << first.status().message();
  EXPECT_EQ(first->applied, total);
  EXPECT_EQ(first->already, 0);
  EXPECT_EQ(first->latest, core::EmbeddedMigrations().back().name);
  const std::string schema = SchemaSnapshot(*db);
  EXPECT_NE(schema.find("kagzi_runs"), std::string::npos);

  auto second = store->Migrate();
  ASSERT_TRUE(second.ok()) << second.status().message();
  EXPECT_EQ(second->applied, 0);
  EXPECT_EQ(second->already, total);
  EXPECT_EQ(second->latest, core::EmbeddedMigrations().back().name);
  EXPECT_EQ(SchemaSnapshot(*db), schema);
  EXPECT_EQ(db->Query("SELECT count(*) FROM kagzi_schema_migrations"), std::to_string(total));

  // A new store (a restarted daemon) finds everything recorded too.
  auto third = StoreOn(*db)->Migrate();
  ASSERT_TRUE(third.ok()) << third.status().message();
  EXPECT_EQ(third->applied, 0);
  EXPECT_EQ(SchemaSnapshot(*db), schema);
}

// The tests of what the migrations made of the schema: each gets a fresh,
// migrated database and a connection to it.
class MigratedSchemaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = TestDatabase::Create();
    ASSERT_NE(db_, nullptr);
    auto migrated = StoreOn(*db_)->Migrate();
    ASSERT_TRUE(migrated.ok()) << migrated.status().message();
    auto conn = PgConnection::Connect(db_->url(), "kagzi-test");
    ASSERT_TRUE(conn.ok()) << conn.status().message();
    conn_ = std::move(*conn);
  }

  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<PgConnection> conn_;
};

// kagzi_us and kagzi_ts are inlined into the statements that call them
// (migration 0006): declared more stable than their bodies, they ran as
// functions of their own, planned afresh at every call. And they convert
// exactly, both ways, with infinity as NULL.
TEST_F(MigratedSchemaTest, TimeConversionsAreInlinedAndExact) {
  const std::string text = PlanText(
      *conn_,
      "EXPLAIN (VERBOSE) SELECT kagzi_us(created_at), kagzi_ts(lease_epoch) FROM kagzi_runs");
  EXPECT_EQ(text.find("kagzi_us("), std::string::npos) << text;
  EXPECT_EQ(text.find("kagzi_ts("), std::string::npos) << text;
  EXPECT_NE(text.find("EXTRACT(epoch"), std::string::npos) << text;
  EXPECT_EQ(db_->Query("SELECT kagzi_us(kagzi_ts(1700000000123456))"), "1700000000123456");
  EXPECT_EQ(db_->Query("SELECT kagzi_us(timestamptz '1970-01-01 00:00:01.5+00')"), "1500000");
  EXPECT_EQ(db_->Query("SELECT coalesce(kagzi_us('infinity')::text, 'null')"), "null");
}

// Runs without an idempotency key are not in the key's unique index
// (migration 0007): every version of their row would add an entry nothing
// looks up. Keys stay unique, and a lookup by key still uses the index.
TEST_F(MigratedSchemaTest, OnlyRunsWithAKeyAreInTheKeyIndex) {
  EXPECT_EQ(db_->Query("SELECT string_agg(pg_get_indexdef(indexrelid), ';') FROM pg_index"
                       " WHERE indrelid = 'kagzi_runs'::regclass AND indisunique"
                       " AND pg_get_indexdef(indexrelid) LIKE '%(idempotency_key)%'"),
            "CREATE UNIQUE INDEX kagzi_runs_idempotency_key ON public.kagzi_runs USING btree "
            "(idempotency_key) WHERE (idempotency_key IS NOT NULL)");
  ASSERT_TRUE(conn_
                  ->Exec("INSERT INTO kagzi_runs (id, workflow, input, idempotency_key)"
                         " SELECT gen_random_uuid(), 'wf', 'null', NULL"
                         " FROM generate_series(1, 3)")
                  .ok());
  ASSERT_TRUE(conn_
                  ->Exec("INSERT INTO kagzi_runs (id, workflow, input, idempotency_key)"
                         " VALUES (gen_random_uuid(), 'wf', 'null', 'k')")
                  .ok());
  auto again = conn_->Exec(
      "INSERT INTO kagzi_runs (id, workflow, input, idempotency_key)"
      " VALUES (gen_random_uuid(), 'wf', 'null', 'k')");
  EXPECT_EQ(again.status().code(), StatusCode::kConflict) << again.status().message();
  const std::string text =
      PlanText(*conn_, "EXPLAIN SELECT id FROM kagzi_runs WHERE idempotency_key = ANY(ARRAY['k'])");
  EXPECT_NE(text.find("kagzi_runs_idempotency_key"), std::string::npos) << text;
}

// A fenced write's generic plan (what a prepared statement runs once
// PostgreSQL stops planning it per call) finds the run by lease owner and
// id in the index (migration 0008), not by the owner alone: that read
// every run the daemon held, per write.
TEST_F(MigratedSchemaTest, AFencedWriteFindsItsRunByOwnerAndIdInTheIndex) {
  // 64 runs held by one daemon, among many others.
  ASSERT_TRUE(conn_
                  ->Exec("INSERT INTO kagzi_runs (id, workflow, input)"
                         " SELECT gen_random_uuid(), 'wf', 'null'"
                         " FROM generate_series(1, 5000)")
                  .ok());
  ASSERT_TRUE(conn_
                  ->Exec("UPDATE kagzi_runs SET status = 'RUNNING',"
                         " lease_owner = '11111111-1111-1111-1111-111111111111'"
                         " WHERE id IN (SELECT id FROM kagzi_runs LIMIT 64)")
                  .ok());
  ASSERT_TRUE(conn_->Exec("ANALYZE kagzi_runs").ok());
  ASSERT_TRUE(conn_->Exec("SET plan_cache_mode = force_generic_plan").ok());
  ASSERT_TRUE(conn_
                  ->Exec("PREPARE fenced(uuid, uuid, bigint) AS UPDATE kagzi_runs"
                         " SET updated_at = now() WHERE id = $1 AND lease_owner = $2"
                         " AND lease_epoch = $3 AND status = 'RUNNING'")
                  .ok());
  const std::string text = PlanText(*conn_, "EXPLAIN EXECUTE fenced(NULL, NULL, NULL)");
  const bool by_owner_and_id =
      text.find("Index Cond: ((lease_owner = $2) AND (id = $1))") != std::string::npos;
  const bool by_id = text.find("Index Cond: (id = $1)") != std::string::npos;
  EXPECT_TRUE(by_owner_and_id || by_id) << text;
}

// RUNNING runs are not in the (status, created_at) index (migration
// 0010); listing by another status still reads it, newest first.
TEST_F(MigratedSchemaTest, TheStatusIndexLeavesOutRunningRuns) {
  EXPECT_EQ(db_->Query("SELECT pg_get_indexdef('kagzi_runs_status_created'::regclass)"),
            "CREATE INDEX kagzi_runs_status_created ON public.kagzi_runs USING btree "
            "(status, created_at) WHERE (status <> 'RUNNING'::text)");
  ASSERT_TRUE(conn_
                  ->Exec("INSERT INTO kagzi_runs (id, workflow, input, status, error)"
                         " SELECT gen_random_uuid(), 'wf', 'null',"
                         " CASE WHEN i % 100 = 0 THEN 'FAILED' ELSE 'COMPLETED' END, 'x'"
                         " FROM generate_series(1, 5000) i")
                  .ok());
  ASSERT_TRUE(conn_->Exec("ANALYZE kagzi_runs").ok());
  const std::string text = PlanText(*conn_,
                                    "EXPLAIN SELECT id FROM kagzi_runs WHERE status = 'FAILED'"
                                    " ORDER BY created_at DESC LIMIT 5");
  EXPECT_NE(text.find("kagzi_runs_status_created"), std::string::npos) << text;
}

// Runs that failed before migration 0011 keep the retry they had: every
// FAILED journal entry runs again (failed_call_seq = the first of them).
// Other runs, and failed runs with no FAILED entry, get NULL.
TEST_F(MigratedSchemaTest, RunsThatFailedBeforeFailedCallSeqKeepTheirRetry) {
  std::string sql;
  for (const auto& m : core::EmbeddedMigrations()) {
    if (m.name == "0011_failed_call_seq.sql") sql = std::string(m.sql);
  }
  ASSERT_FALSE(sql.empty());
  // The schema as 0010 left it, with a failed run whose entries 1 and 3
  // failed, a failed run with none, and a completed run with one.
  ASSERT_TRUE(conn_->Exec("ALTER TABLE kagzi_runs DROP COLUMN failed_call_seq").ok());
  ASSERT_TRUE(conn_
                  ->Exec("INSERT INTO kagzi_runs (id, workflow, input, status) VALUES"
                         " ('00000000-0000-0000-0000-00000000000a', 'wf', 'null', 'FAILED'),"
                         " ('00000000-0000-0000-0000-00000000000b', 'wf', 'null', 'FAILED'),"
                         " ('00000000-0000-0000-0000-00000000000c', 'wf', 'null', 'COMPLETED')")
                  .ok());
  ASSERT_TRUE(conn_
                  ->Exec("INSERT INTO kagzi_steps (run_id, step_id, seq, kind, status) VALUES"
                         " ('00000000-0000-0000-0000-00000000000a', 's0', 0, 'step', 'COMPLETED'),"
                         " ('00000000-0000-0000-0000-00000000000a', 's1', 1, 'step', 'FAILED'),"
                         " ('00000000-0000-0000-0000-00000000000a', 's2', 2, 'step', 'COMPLETED'),"
                         " ('00000000-0000-0000-0000-00000000000a', 's3', 3, 'step', 'FAILED'),"
                         " ('00000000-0000-0000-0000-00000000000c', 's0', 0, 'step', 'FAILED')")
                  .ok());
  auto applied = conn_->Exec(sql);
  ASSERT_TRUE(applied.ok()) << applied.status().message();
  EXPECT_EQ(db_->Query("SELECT string_agg(right(id::text, 1) || '=' ||"
                       " coalesce(failed_call_seq::text, 'null'), ',' ORDER BY id)"
                       " FROM kagzi_runs"),
            "a=1,b=null,c=null");
}

// Since migration 0012 no foreign key ties a journal entry to its run; a
// trigger deletes a run's journal with the run, as ON DELETE CASCADE did.
// A journal entry naming a child run still keeps that child from being
// deleted alone; deleting the parent with it in one statement works.
class JournalLinkTest : public MigratedSchemaTest {
 protected:
  void SetUp() override {
    MigratedSchemaTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(conn_
                    ->Exec("INSERT INTO kagzi_runs (id, workflow, input, parent_run_id) VALUES"
                           " ('00000000-0000-0000-0000-00000000000a', 'wf', 'null', NULL),"
                           " ('00000000-0000-0000-0000-00000000000b', 'wf', 'null', NULL),"
                           " ('00000000-0000-0000-0000-00000000000c', 'wf', 'null',"
                           "  '00000000-0000-0000-0000-00000000000a')")
                    .ok());
    ASSERT_TRUE(
        conn_
            ->Exec("INSERT INTO kagzi_steps (run_id, step_id, seq, kind, status, child_run_id)"
                   " VALUES ('00000000-0000-0000-0000-00000000000a', 's0', 0, 'step', "
                   "'COMPLETED', NULL),"
                   " ('00000000-0000-0000-0000-00000000000a', 'child', 1, 'child', 'COMPLETED',"
                   "  '00000000-0000-0000-0000-00000000000c'),"
                   " ('00000000-0000-0000-0000-00000000000b', 's0', 0, 'step', 'COMPLETED', NULL),"
                   " ('00000000-0000-0000-0000-00000000000c', 's0', 0, 'step', 'COMPLETED', NULL)")
            .ok());
  }

  // "run=entries" for each run with a journal, in run order.
  std::string Journals() const {
    return db_->Query(
        "SELECT coalesce(string_agg(run || '=' || n, ',' ORDER BY run), '') FROM"
        " (SELECT right(run_id::text, 1) AS run, count(*) AS n FROM kagzi_steps"
        "  GROUP BY run_id) j");
  }
};

TEST_F(JournalLinkTest, DeletingARunDeletesItsJournalOnly) {
  auto deleted =
      conn_->Exec("DELETE FROM kagzi_runs WHERE id = '00000000-0000-0000-0000-00000000000b'");
  ASSERT_TRUE(deleted.ok()) << deleted.status().message();
  EXPECT_EQ(Journals(), "a=2,c=1");
}

TEST_F(JournalLinkTest, AChildNamedInAJournalIsDeletedOnlyWithItsParent) {
  auto child =
      conn_->Exec("DELETE FROM kagzi_runs WHERE id = '00000000-0000-0000-0000-00000000000c'");
  EXPECT_FALSE(child.ok());
  EXPECT_NE(child.status().message().find("kagzi_steps_child_run_id_fkey"), std::string::npos)
      << child.status().message();
  EXPECT_EQ(Journals(), "a=2,b=1,c=1");
  auto both = conn_->Exec(
      "DELETE FROM kagzi_runs WHERE id IN ('00000000-0000-0000-0000-00000000000c',"
      " '00000000-0000-0000-0000-00000000000a')");
  ASSERT_TRUE(both.ok()) << both.status().message();
  EXPECT_EQ(Journals(), "b=1");
}

// A journal entry written under its run's lock while a DELETE of that run
// waits for the lock is deleted with the run: none is left without its run.
TEST_F(JournalLinkTest, AnEntryCommittedWhileItsRunIsBeingDeletedGoesWithIt) {
  auto writer = PgConnection::Connect(db_->url(), "kagzi-test-writer");
  ASSERT_TRUE(writer.ok()) << writer.status().message();
  ASSERT_TRUE((*writer)->Exec("BEGIN").ok());
  // What every journal write does first: lock the run's row.
  ASSERT_TRUE((*writer)
                  ->Exec("SELECT id FROM kagzi_runs WHERE id = "
                         "'00000000-0000-0000-0000-00000000000b' FOR NO KEY UPDATE")
                  .ok());
  ASSERT_TRUE((*writer)
                  ->Exec("INSERT INTO kagzi_steps (run_id, step_id, seq, kind, status) VALUES"
                         " ('00000000-0000-0000-0000-00000000000b', 's1', 1, 'step', "
                         "'COMPLETED')")
                  .ok());
  Status delete_status = Status::Internal("the delete did not finish");
  std::thread deleter([&] {
    auto deleted =
        conn_->Exec("DELETE FROM kagzi_runs WHERE id = '00000000-0000-0000-0000-00000000000b'");
    delete_status = deleted.status();
  });
  // The delete waits for the writer's lock.
  EXPECT_TRUE(db_->WaitForLockWait("DELETE FROM kagzi_runs"))
      << "the DELETE never waited for the run's lock";
  EXPECT_TRUE((*writer)->Exec("COMMIT").ok());
  writer->reset();  // whatever happened, the lock goes with the connection
  deleter.join();
  ASSERT_TRUE(delete_status.ok()) << delete_status.message();
  EXPECT_EQ(Journals(), "a=2,c=1");
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_steps s WHERE NOT EXISTS"
                       " (SELECT 1 FROM kagzi_runs r WHERE r.id = s.run_id)"),
            "0");
}

TEST(MigrationsTest, ConcurrentDaemonsMigrateOnce) {
  auto db = TestDatabase::Create();
  ASSERT_NE(db, nullptr);
  const int total = static_cast<int>(core::EmbeddedMigrations().size());
  constexpr int kThreads = 8;
  std::vector<std::unique_ptr<PgStore>> stores;
  for (int i = 0; i < kThreads; ++i) stores.push_back(StoreOn(*db));

  std::vector<Result<core::MigrationReport>> results(kThreads, Status::Internal("did not run"));
  std::latch go(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      go.arrive_and_wait();
      results[static_cast<std::size_t>(i)] = stores[static_cast<std::size_t>(i)]->Migrate();
    });
  }
  for (auto& t : threads) t.join();

  int appliers = 0;
  int applied_total = 0;
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status().message();
    if (r->applied > 0) ++appliers;
    applied_total += r->applied;
    EXPECT_EQ(r->applied + r->already, total);
  }
  EXPECT_EQ(appliers, 1);
  EXPECT_EQ(applied_total, total);
  EXPECT_EQ(db->Query("SELECT count(*) FROM kagzi_schema_migrations"), std::to_string(total));
  EXPECT_EQ(db->Query("SELECT count(DISTINCT name) FROM kagzi_schema_migrations"),
            std::to_string(total));
  // The advisory lock is not left behind (pg_locks is cluster-wide; other
  // tests migrate their own databases meanwhile).
  EXPECT_EQ(db->Query("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                      "WHERE l.locktype = 'advisory' AND d.datname = current_database()"),
            "0");
}

TEST(MigrationsTest, UnknownRecordedMigrationIsRefused) {
  auto db = TestDatabase::Create();
  ASSERT_NE(db, nullptr);
  auto store = StoreOn(*db);
  ASSERT_TRUE(store->Migrate().ok());
  db->Query(
      "INSERT INTO kagzi_schema_migrations (name, checksum) VALUES ('9999_future.sql', 'abc')");
  const std::string schema = SchemaSnapshot(*db);

  auto r = StoreOn(*db)->Migrate();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kPermanent);
  EXPECT_NE(r.status().message().find("9999_future.sql"), std::string::npos)
      << r.status().message();
  EXPECT_EQ(SchemaSnapshot(*db), schema);
}

TEST(MigrationsTest, ChecksumMismatchIsRefused) {
  auto db = TestDatabase::Create();
  ASSERT_NE(db, nullptr);
  auto store = StoreOn(*db);
  ASSERT_TRUE(store->Migrate().ok());
  const std::string first(core::EmbeddedMigrations().front().name);
  db->Query("UPDATE kagzi_schema_migrations SET checksum = '0000000000000000' WHERE name = '" +
            first + "'");

  auto r = StoreOn(*db)->Migrate();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kPermanent);
  EXPECT_NE(r.status().message().find(first), std::string::npos) << r.status().message();
}

TEST(MigrationsTest, FailedMigrationLeavesNothingOfItself) {
  auto db = TestDatabase::Create();
  ASSERT_NE(db, nullptr);
  auto conn = PgConnection::Connect(db->url(), "kagzi-migrations-test");
  ASSERT_TRUE(conn.ok()) << conn.status().message();

  std::vector<core::EmbeddedMigration> broken = {
      {"0001_a.sql", "CREATE TABLE t_a (x integer);"},
      {"0002_b.sql", "CREATE TABLE t_b (x integer); SELECT 1 / 0;"},
  };
  auto r = core::ApplyMigrations(**conn, broken);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("0002_b.sql"), std::string::npos) << r.status().message();
  EXPECT_EQ(db->Query("SELECT to_regclass('t_a') IS NOT NULL"), "t");
  EXPECT_EQ(db->Query("SELECT to_regclass('t_b') IS NULL"), "t");
  EXPECT_EQ(db->Query("SELECT string_agg(name, ',' ORDER BY name) FROM kagzi_schema_migrations"),
            "0001_a.sql");

  // Fixed, it applies only what is missing, on the same connection.
  std::vector<core::EmbeddedMigration> fixed = {
      {"0001_a.sql", "CREATE TABLE t_a (x integer);"},
      {"0002_b.sql", "CREATE TABLE t_b (x integer);"},
  };
  auto again = core::ApplyMigrations(**conn, fixed);
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->applied, 1);
  EXPECT_EQ(again->already, 1);
  EXPECT_EQ(again->latest, "0002_b.sql");
  EXPECT_EQ(db->Query("SELECT to_regclass('t_b') IS NOT NULL"), "t");
}

TEST(MigrationsTest, UnreachableDatabaseIsUnavailableAndHidesThePassword) {
  PgStoreOptions options;
  options.database_url =
      "postgresql://postgres:hunter2@/kagzi_no_such_db?host=" + RequiredEnv("KAGZI_TEST_PG_HOST") +
      "&port=" + RequiredEnv("KAGZI_TEST_PG_PORT");
  PgStore store(options);
  auto r = store.Migrate();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().message();
  EXPECT_EQ(r.status().message().find("hunter2"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("kagzi_no_such_db"), std::string::npos)
      << r.status().message();
}

}  // namespace
}  // namespace kagzi::testing
