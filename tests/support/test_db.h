// TestDatabase: a fresh, empty database on the test PostgreSQL server (the
// one the kagzi_pg CTest fixture starts; located by KAGZI_TEST_PG_HOST and
// KAGZI_TEST_PG_PORT), dropped when the object dies. Tests that need a
// database FAIL when the server is missing; they never skip.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace kagzi::testing {

class TestDatabase {
 public:
  // Creates "kagzi_test_<random>". On failure records a fatal gtest failure
  // and returns nullptr (use ASSERT_NE(db, nullptr)).
  static std::unique_ptr<TestDatabase> Create();
  ~TestDatabase();

  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }

  // Runs SQL on this database (simple protocol); fails the test on error.
  // Returns the first column of the first row, or "" when there is none.
  std::string Query(const std::string& sql) const;

  // Polls pg_stat_activity, up to 10 s, until a session of this database
  // waits for a lock while running a statement that starts with
  // `statement_prefix`. False if none did.
  bool WaitForLockWait(const std::string& statement_prefix) const;

 private:
  TestDatabase(std::string name, std::string url) : name_(std::move(name)), url_(std::move(url)) {}
  std::string name_;
  std::string url_;
};

// URL of database `db` on the test server (no creation).
std::string TestServerUrl(const std::string& db);

// Environment variable or a fatal failure naming it.
std::string RequiredEnv(const char* name);

// The executor flags for every kagzid a test starts: none by default (a
// thread per run); with KAGZI_TEST_EXECUTOR=fibers (the "fibers." copies of
// the end-to-end tests, tests/e2e/CMakeLists.txt, or scripts/chaos.sh
// --executor fibers), runs on fibers over two carrier threads per worker.
std::vector<std::string> ExecutorArgs();

}  // namespace kagzi::testing
