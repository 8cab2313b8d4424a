// kagzi-bench's counters on the test PostgreSQL (bench/bench_server.h): a
// window's COMMIT records are still counted after checkpoints in the window
// recycled the WAL segments it began in, because the bench holds the WAL
// from its first reading until Delta has counted them.
#include "bench_server.h"

#include <gtest/gtest.h>

#include "support/test_db.h"

namespace kagzi::testing {
namespace {

using bench::BenchServer;
using bench::ServerOptions;

TEST(BenchServerTest, CommitRecordsAreCountedAfterCheckpointsRecycleTheWindowsFirstSegment) {
  auto db = TestDatabase::Create();
  ASSERT_NE(db, nullptr);
  ServerOptions options;
  options.url = TestServerUrl("postgres");
  auto server = BenchServer::Open(options);
  ASSERT_TRUE(server.ok()) << server.status().message();
  ASSERT_EQ((*server)->walinspect_problem(), "") << "the test server lacks pg_walinspect";

  auto before = (*server)->ReadCounters(db->name());
  ASSERT_TRUE(before.ok()) << before.status().message();
  const std::string slot = (*server)->wal_slot();
  ASSERT_NE(slot, "") << "the WAL is not held";
  const std::string slot_count =
      "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '" + slot + "'";
  EXPECT_EQ(db->Query(slot_count), "1");
  db->Query("CREATE TABLE t (x int)");
  // Each round: a write transaction, then a new segment and a checkpoint,
  // after which PostgreSQL recycles the segments before the checkpoint's
  // redo point, the window's first among them (unless something holds them).
  for (int i = 0; i < 3; ++i) {
    db->Query("INSERT INTO t VALUES (1)");
    db->Query("SELECT pg_switch_wal()");
    db->Query("CHECKPOINT");
  }
  auto after = (*server)->ReadCounters(db->name());
  ASSERT_TRUE(after.ok()) << after.status().message();
  auto delta = (*server)->Delta(*before, *after);
  ASSERT_TRUE(delta.ok()) << delta.status().message();
  EXPECT_EQ(delta->commit_records_problem, "");
  ASSERT_TRUE(delta->commit_records.has_value());
  // The CREATE TABLE and three INSERTs, at least (the server is shared).
  EXPECT_GE(*delta->commit_records, 4);

  // The WAL is let go once counted. (Only this server's slot is looked
  // for: the smoke test's bench may hold one of its own meanwhile.)
  EXPECT_EQ((*server)->wal_slot(), "");
  EXPECT_EQ(db->Query(slot_count), "0");
}

}  // namespace
}  // namespace kagzi::testing
