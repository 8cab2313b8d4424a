// TestDatabase implementation over libpq.
#include "support/test_db.h"

#include <chrono>
#include <cstdlib>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include "support/test_paths.h"

namespace kagzi::testing {
namespace {

std::string RunSql(const std::string& url, const std::string& sql, std::string* error) {
  PGconn* conn = PQconnectdb(url.c_str());
  std::string out;
  if (PQstatus(conn) != CONNECTION_OK) {
    *error = PQerrorMessage(conn);
  } else {
    PGresult* res = PQexec(conn, sql.c_str());
    auto st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      *error = PQresultErrorMessage(res);
    } else if (PQntuples(res) > 0 && PQnfields(res) > 0) {
      out = PQgetvalue(res, 0, 0);
    }
    PQclear(res);
  }
  PQfinish(conn);
  return out;
}

}  // namespace

std::vector<std::string> ExecutorArgs() {
  const char* executor = std::getenv("KAGZI_TEST_EXECUTOR");
  if (executor == nullptr || *executor == '\0') return {};
  return {"--executor", executor, "--fiber-threads", "2"};
}

std::string RequiredEnv(const char* name) {
  const char* v = std::getenv(name);
  if (v != nullptr && *v != '\0') return v;
  for (const auto& p : kTestPaths) {
    if (std::string_view(p.name) == name) return p.value;
  }
  ADD_FAILURE() << name << " is not set and has no built-in default";
  return "";
}

std::string TestServerUrl(const std::string& db) {
  return fmt::format("postgresql://postgres@/{}?host={}&port={}", db,
                     RequiredEnv("KAGZI_TEST_PG_HOST"), RequiredEnv("KAGZI_TEST_PG_PORT"));
}

std::unique_ptr<TestDatabase> TestDatabase::Create() {
  std::random_device rd;
  std::string name = fmt::format("kagzi_test_{:08x}{:08x}", rd(), rd());
  std::string error;
  RunSql(TestServerUrl("postgres"), "CREATE DATABASE " + name, &error);
  if (!error.empty()) {
    ADD_FAILURE() << "cannot create test database " << name << ": " << error;
    return nullptr;
  }
  return std::unique_ptr<TestDatabase>(new TestDatabase(name, TestServerUrl(name)));
}

TestDatabase::~TestDatabase() {
  std::string error;
  RunSql(TestServerUrl("postgres"), "DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)", &error);
}

std::string TestDatabase::Query(const std::string& sql) const {
  std::string error;
  std::string out = RunSql(url_, sql, &error);
  if (!error.empty()) ADD_FAILURE() << "SQL failed: " << sql << ": " << error;
  return out;
}

bool TestDatabase::WaitForLockWait(const std::string& statement_prefix) const {
  std::string quoted;  // as an SQL string literal's contents
  for (char c : statement_prefix) quoted += c == '\'' ? std::string("''") : std::string(1, c);
  const std::string sql = fmt::format(
      "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
      " AND datname = current_database() AND starts_with(query, '{}')",
      quoted);
  for (int i = 0; i < 200; ++i) {
    if (Query(sql) != "0") return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

}  // namespace kagzi::testing
