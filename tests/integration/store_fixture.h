// Shared set-up for the store integration tests: a fresh database on the test
// PostgreSQL, migrated, and a real PgStore on it. Plus small helpers that
// keep the tests about behaviour: start runs, claim, read rows directly.
#pragma once

#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kagzi/core/store.h"
#include "support/test_db.h"

namespace kagzi::testing {

// A random (version 4) UUID: daemon ids and lease owners.
std::string NewUuid();

// Sleeps; only to let leases or wake times pass, never as an assertion.
void SleepFor(std::chrono::milliseconds d);

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override;

  // Another PgStore on the same database (what another daemon would have).
  std::unique_ptr<PgStore> NewStore(int pool_size = 2) const;

  // Starts a run and returns its id (fails the test on error).
  std::string Start(const std::string& workflow, const std::string& input = "null",
                    PgStore* store = nullptr);

  // One claim; fails the test on error.
  ClaimBatch Claim(const std::string& owner, const std::vector<WorkflowKey>& loaded, int limit,
                   std::chrono::milliseconds ttl = std::chrono::seconds(30),
                   PgStore* store = nullptr);

  // The run as stored now (fails the test on error).
  RunRecord Get(const std::string& run_id);

  // Polls the database clock until it reaches `t` (micros), up to 30 s.
  void WaitUntilDbTime(Micros t);

  // SELECT count(*) ... as a number.
  int Count(const std::string& sql) const;

  // The WAL's end (flushed), for SpeculativeInserts.
  std::string WalEnd() const;

  // How many rows were inserted into `table` by speculative insertion (an
  // INSERT ... ON CONFLICT) since `since` (WalEnd): the records of the WAL
  // that confirm them, read with pg_walinspect.
  int SpeculativeInserts(const std::string& table, const std::string& since) const;

  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<PgStore> store_;
};

Lease LeaseOf(const ClaimedRun& claimed);

StepRecord MakeStep(const std::string& id, int seq, const std::string& output_json);

// Buffers the top node of an EXPLAIN (ANALYZE, BUFFERS) read (hit + read);
// -1 if the plan shows none.
int TopBuffers(const std::string& plan);

}  // namespace kagzi::testing
