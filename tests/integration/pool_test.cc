// The connection pool (PgPool), and how a daemon's connections are readied
// before its first run: statements prepared and their generic plans made
// ahead (PgConnection::PlanAhead, PgStore::WarmPool).
#include <atomic>
#include <optional>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kagzi/core/pg.h"
#include "store_fixture.h"

namespace kagzi::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using PoolTest = StoreTest;

int BackendPid(PgConnection& c) {
  auto r = c.Exec("SELECT pg_backend_pid()");
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? static_cast<int>(r->GetInt(0, 0)) : -1;
}

std::string Query(PgConnection& c, const std::string& sql) {
  auto r = c.Exec(sql);
  EXPECT_TRUE(r.ok()) << sql << ": " << r.status().message();
  std::string text;
  for (int i = 0; r.ok() && i < r->rows(); ++i) text.append(r->Get(i, 0)).append("\n");
  return text;
}

PgPool::Lease MustAcquire(PgPool& pool) {
  auto lease = pool.Acquire();
  EXPECT_TRUE(lease.ok()) << lease.status().message();
  return std::move(lease).value();
}

// An idle daemon keeps using the connections it used last (their statements
// prepared and planned), not each of the pool's in turn.
TEST_F(PoolTest, HandsOutTheMostRecentlyReleasedConnectionFirst) {
  PgPool pool(db_->url(), "kagzi-pool-test", 3);
  std::optional<PgPool::Lease> a(MustAcquire(pool)), b(MustAcquire(pool)), c(MustAcquire(pool));
  const int pid_b = BackendPid(**b), pid_c = BackendPid(**c);
  a.reset();
  b.reset();
  c.reset();
  {
    auto next = MustAcquire(pool);
    EXPECT_EQ(BackendPid(*next), pid_c);
    auto after = MustAcquire(pool);
    EXPECT_EQ(BackendPid(*after), pid_b);
  }
}

TEST_F(PoolTest, SetsUpEveryConnectionItOpensOnce) {
  std::atomic<int> setups = 0;
  PgPool pool(db_->url(), "kagzi-pool-test", 3, [&](PgConnection& c) {
    ++setups;
    return c.Exec("SET plan_cache_mode = force_generic_plan").status();
  });
  int warmed = 0;
  auto count_warmed = [&](PgConnection&) {
    ++warmed;
    return Status::Ok();
  };
  ASSERT_TRUE(pool.Warm(2, count_warmed).ok());
  EXPECT_EQ(setups, 2);
  EXPECT_EQ(warmed, 2);
  {
    // Two warmed ones, then one opened on demand.
    auto a = MustAcquire(pool), b = MustAcquire(pool), c = MustAcquire(pool);
    EXPECT_EQ(setups, 3);
    for (PgConnection* conn : {&*a, &*b, &*c}) {
      EXPECT_EQ(Query(*conn, "SHOW plan_cache_mode"), "force_generic_plan\n");
    }
  }
  // Reused, not set up again; and warming again warms the open ones.
  ASSERT_TRUE(pool.Warm(3, count_warmed).ok());
  EXPECT_EQ(setups, 3);
  EXPECT_EQ(warmed, 5);
}

// A connection whose set-up fails is closed, the failure named, and its
// place in the pool freed for the next Acquire.
TEST_F(PoolTest, AConnectionWhoseSetUpFailsIsNotKept) {
  int setups = 0;
  PgPool pool(db_->url(), "kagzi-pool-test", 1, [&](PgConnection& c) {
    return ++setups == 1 ? c.Exec("SET plan_cache_mode = no_such_mode").status() : Status::Ok();
  });
  auto refused = pool.Acquire();
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("plan_cache_mode"));
  auto next = pool.Acquire();  // with its slot still taken, this would block
  ASSERT_TRUE(next.ok()) << next.status().message();
  EXPECT_EQ(setups, 2);
}

// A failed warming is reported; the connection stays in the pool, usable.
TEST_F(PoolTest, AFailedWarmingIsReportedAndTheConnectionKept) {
  PgPool pool(db_->url(), "kagzi-pool-test", 2);
  Status st =
      pool.Warm(2, [](PgConnection& c) { return c.Exec("SELECT no_such_column").status(); });
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("no_such_column"));
  auto next = MustAcquire(pool);
  EXPECT_EQ(Query(*next, "SELECT 1"), "1\n");
}

// A statement that cannot be prepared or planned is named, and the
// connection stays usable.
TEST_F(PoolTest, PlanAheadNamesAStatementItCannotPlan) {
  auto conn = PgConnection::Connect(db_->url(), "kagzi-pool-test");
  ASSERT_TRUE(conn.ok()) << conn.status().message();
  PgConnection& c = **conn;
  const Statement good = {"t_good", "SELECT $1::int + 1"};
  const Statement bad = {"t_bad", "SELECT v FROM no_such_table WHERE id = $1"};
  Status st = c.PlanAhead({&good, &bad});
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("t_bad"));
  EXPECT_THAT(st.message(), HasSubstr("no_such_table"));
  EXPECT_FALSE(c.broken());
  auto r = c.ExecPrepared(good, {PgParam(41)});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->GetInt(0, 0), 42);
}

// PlanAhead makes a statement's generic plan without running it, under the
// settings given for its transaction, and the plan stays cached after them.
TEST_F(PoolTest, PlanAheadKeepsTheGenericPlanMadeUnderItsSettings) {
  auto conn = PgConnection::Connect(db_->url(), "kagzi-pool-test");
  ASSERT_TRUE(conn.ok()) << conn.status().message();
  PgConnection& c = **conn;
  ASSERT_TRUE(c.Exec("CREATE TABLE t (id int PRIMARY KEY, v text);"
                     " INSERT INTO t SELECT g, 'v' FROM generate_series(1, 10000) g;"
                     " ANALYZE t; SET plan_cache_mode = force_generic_plan")
                  .ok());
  const Statement no_index = {"t_no_index",
                              "SELECT set_config('enable_indexscan', 'off', true),"
                              " set_config('enable_bitmapscan', 'off', true)"};
  const Statement ahead = {"t_ahead", "SELECT v FROM t WHERE id = $1"};
  const Statement on_use = {"t_on_use", "SELECT v FROM t WHERE id = $1"};
  ASSERT_TRUE(c.PlanAhead({&ahead}, &no_index).ok());
  ASSERT_TRUE(c.PrepareAll({&on_use}).ok());

  EXPECT_EQ(Query(c,
                  "SELECT name || ' ' || generic_plans FROM pg_prepared_statements"
                  " WHERE name IN ('t_ahead', 't_on_use') ORDER BY name"),
            "t_ahead 1\nt_on_use 0\n");
  EXPECT_EQ(Query(c, "SHOW enable_indexscan"), "on\n");  // the transaction's only
  // The plan made ahead is the one a call runs now...
  EXPECT_THAT(Query(c, ExplainExecuteSql("t_ahead", 1)), HasSubstr("Seq Scan on t"));
  // ... where the same query, planned when first run, uses the index.
  EXPECT_THAT(Query(c, ExplainExecuteSql("t_on_use", 1)), HasSubstr("Index Scan"));
  EXPECT_EQ(Query(c, "SELECT v FROM t WHERE id = 7"), "v\n");
}

// ExecUnprepared plans its statement for its values (a custom plan) even on
// a connection whose session forces generic plans, and leaves the session
// as it was.
TEST_F(PoolTest, ExecUnpreparedPlansForItsValuesWhateverTheSession) {
  auto conn = PgConnection::Connect(db_->url(), "kagzi-pool-test");
  ASSERT_TRUE(conn.ok()) << conn.status().message();
  PgConnection& c = **conn;
  ASSERT_TRUE(c.Exec("SET plan_cache_mode = force_generic_plan").ok());
  const Statement mode = {"mode", "SELECT current_setting('plan_cache_mode'), $1::int + 1"};
  auto r = c.ExecUnprepared(mode, {PgParam(std::int64_t{41})});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->Get(0, 0), "force_custom_plan");
  EXPECT_EQ(r->GetInt(0, 1), 42);
  EXPECT_EQ(Query(c, "SHOW plan_cache_mode"), "force_generic_plan\n");
  // A failing statement is reported as such, and the connection stays usable.
  auto bad = c.ExecUnprepared({"bad", "SELECT 1 / $1::int"}, {PgParam(std::int64_t{0})});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("division by zero"));
  EXPECT_FALSE(c.broken());
  EXPECT_EQ(Query(c, "SELECT 1"), "1\n");
}

// Array parameters sent in binary form (PgColumns with element types)
// reach the server as the same values as their text form, through each
// way a statement is sent: prepared, pipelined, unnamed. Text needs no
// quoting; an element that is not the plain text of its type is sent as
// text, and the server's error names it.
TEST_F(PoolTest, BinaryArrayParametersArriveAsTheirTextWould) {
  auto conn = PgConnection::Connect(db_->url(), "kagzi-pool-test");
  ASSERT_TRUE(conn.ok()) << conn.status().message();
  PgConnection& c = **conn;
  const std::vector<std::vector<PgParam>> rows = {
      {"quote \" backslash \\ comma , braces {} NULL", "0190f1c2-3b4a-7d5e-8f60-718293a4b5c6",
       2147483647, std::int64_t{-9223372036854775807 - 1}},
      {"", "0190F1C2-3B4A-7D5E-8F60-718293A4B5C7", -2147483647 - 1, std::int64_t{4294967296}},
      {"caf\u00e9 \u65e5\u672c", std::nullopt, std::nullopt, std::nullopt},
      {std::nullopt, "0190f1c2-3b4a-7d5e-8f60-718293a4b5c8", 0, std::int64_t{0}}};
  using E = PgElement;
  const std::vector<PgParam> binary = PgColumns(rows, {E::kText, E::kUuid, E::kInt4, E::kInt8});
  const std::vector<PgParam> text = PgColumns(rows);
  for (const PgParam& p : binary) EXPECT_TRUE(p.binary());
  const Statement show = {"show_arrays",
                          "SELECT $1::text[]::text, $2::uuid[]::text, $3::int[]::text,"
                          " $4::bigint[]::text, cardinality($1::text[])"};
  auto want = c.ExecPrepared({"show_arrays_text", show.sql}, text);
  ASSERT_TRUE(want.ok()) << want.status().message();
  EXPECT_EQ(want->GetInt(0, 4), 4);
  EXPECT_EQ(want->Get(0, 2), "{2147483647,-2147483648,NULL,0}");
  auto prepared = c.ExecPrepared(show, binary);
  auto pipelined = c.ExecTransaction({{&show, binary}});
  auto unnamed = c.ExecUnprepared(show, binary);
  ASSERT_TRUE(prepared.ok()) << prepared.status().message();
  ASSERT_TRUE(pipelined.ok()) << pipelined.status().message();
  ASSERT_TRUE(unnamed.ok()) << unnamed.status().message();
  for (int col = 0; col < 5; ++col) {
    EXPECT_EQ(prepared->Get(0, col), want->Get(0, col)) << col;
    EXPECT_EQ((*pipelined)[0].Get(0, col), want->Get(0, col)) << col;
    EXPECT_EQ(unnamed->Get(0, col), want->Get(0, col)) << col;
  }
  // Empty arrays.
  const std::vector<PgParam> none = {
      PgParam::Binary(*PgBinaryArray({}, E::kText)), PgParam::Binary(*PgBinaryArray({}, E::kUuid)),
      PgParam::Binary(*PgBinaryArray({}, E::kInt4)), PgParam::Binary(*PgBinaryArray({}, E::kInt8))};
  auto zero = c.ExecPrepared(show, none);
  ASSERT_TRUE(zero.ok()) << zero.status().message();
  EXPECT_EQ(zero->Get(0, 0), "{}");
  EXPECT_EQ(zero->Get(0, 1), "{}");
  EXPECT_EQ(zero->GetInt(0, 4), 0);
  // Not a uuid: that column goes as text, and the server names the value.
  auto bad = PgColumns({{"a", "not-a-uuid", 1, std::int64_t{1}}},
                       {E::kText, E::kUuid, E::kInt4, E::kInt8});
  EXPECT_FALSE(bad[1].binary());
  EXPECT_TRUE(bad[0].binary());
  auto refused = c.ExecPrepared(show, bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("invalid input syntax for type uuid"));
  EXPECT_THAT(refused.status().message(), HasSubstr("not-a-uuid"));
  EXPECT_FALSE(c.broken());
  // Text that is not valid UTF-8 is refused by the server, as in text form.
  auto latin1 = c.ExecPrepared(show, PgColumns({{"caf\xe9", std::nullopt, 1, std::int64_t{1}}},
                                               {E::kText, E::kUuid, E::kInt4, E::kInt8}));
  ASSERT_FALSE(latin1.ok());
  EXPECT_THAT(latin1.status().message(), HasSubstr("UTF8"));
  EXPECT_EQ(Query(c, "SELECT 1"), "1\n");
}

// A daemon's store opens the connections an idle worker uses and caches
// the generic plans of the statements of every run, each made as it runs:
// the claim's under its own settings (kClaimPlan), so that on a table
// analyzed while empty it still walks the claim index.
TEST_F(PoolTest, WarmPoolPlansTheStatementsOfEveryRunAhead) {
  db_->Query("ANALYZE kagzi_runs");
  db_->Query(
      "INSERT INTO kagzi_runs (id, workflow, input) SELECT gen_random_uuid(), 'wf', '{}'"
      " FROM generate_series(1, 5000)");
  PgStore store(PgStoreOptions{.database_url = db_->url(),
                               .application_name = "kagzi-warm-test",
                               .pool_size = 4,
                               .generic_plans = true});
  ASSERT_TRUE(store.WarmPool(2).ok());
  EXPECT_EQ(Count("SELECT count(*) FROM pg_stat_activity"
                  " WHERE application_name = 'kagzi-warm-test'"),
            2);
  auto plans = store.CachedPlans();
  ASSERT_TRUE(plans.ok()) << plans.status().message();
  for (const char* name :
       {"kagzi_claim", "kagzi_next_wake", "kagzi_record_step", "kagzi_record_steps",
        "kagzi_end_runs", "kagzi_park", "kagzi_complete", "kagzi_fail", "kagzi_heartbeat"}) {
    EXPECT_TRUE(plans->contains(name)) << name;
  }
  const std::string& claim = (*plans)["kagzi_claim"];
  EXPECT_THAT(claim, HasSubstr("Index Scan using kagzi_runs_claim_order"));
  EXPECT_THAT(claim, Not(HasSubstr("Seq Scan")));
  EXPECT_THAT(claim, Not(HasSubstr("Bitmap Heap Scan")));
  // And the warmed store claims as any other.
  EXPECT_EQ(Claim(NewUuid(), {{"wf", 1}}, 32, std::chrono::seconds(30), &store).runs.size(), 32u);
}

}  // namespace
}  // namespace kagzi::testing
