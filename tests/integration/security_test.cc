// Database credentials and privileges on the real test PostgreSQL:
//  - a password from database_password_file reaches libpq's connection
//    options, authenticates a role that must give a password, and is never
//    printed by kagzid or kagzictl;
//  - libpq's TLS options in database_url reach the connection unchanged;
//  - the least-privilege role of docs/operations.md (its grants block, run
//    as written) runs kagzid, a claim/record/complete cycle and every
//    kagzictl command, after the owner role migrated.
//
// The test server (scripts/pg.sh) trusts every local connection, so a
// password is not checked there. PasswordFileTest adds one line to the
// server's pg_hba.conf that requires scram-sha-256 for a role of its own
// (a random name no other test uses) and reloads the server, then removes
// the line again; every other role keeps trust authentication.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include "e2e/e2e_support.h"
#include "kagzi/core/config.h"
#include "kagzi/core/pg.h"
#include "store_fixture.h"
#include "support/process.h"
#include "support/test_db.h"

#ifndef KAGZI_SOURCE_DIR
#error "KAGZI_SOURCE_DIR must be defined (tests/integration/CMakeLists.txt)"
#endif

namespace kagzi::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string RandomHex() {
  std::random_device rd;
  return fmt::format("{:08x}", rd());
}

// Runs SQL as the superuser on database `db`; returns the error ("" on success).
std::string SuperSql(const std::string& db, const std::string& sql) {
  PGconn* conn = PQconnectdb(TestServerUrl(db).c_str());
  std::string error;
  if (PQstatus(conn) != CONNECTION_OK) {
    error = PQerrorMessage(conn);
  } else {
    PGresult* res = PQexec(conn, sql.c_str());
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
      error = PQresultErrorMessage(res);
    }
    PQclear(res);
  }
  PQfinish(conn);
  return error;
}

// URL of database `db` on the test server as role `user`.
std::string UrlAs(const std::string& user, const std::string& db) {
  return fmt::format("postgresql://{}@/{}?host={}&port={}", user, db,
                     RequiredEnv("KAGZI_TEST_PG_HOST"), RequiredEnv("KAGZI_TEST_PG_PORT"));
}

// Login roles of this test, dropped (with what they own) when it ends. Declare
// before the TestDatabase, so that the database is dropped first.
class Roles {
 public:
  ~Roles() {
    for (const auto& r : names_) {
      std::string err = SuperSql("postgres", "DROP ROLE IF EXISTS " + r);
      if (!err.empty()) ADD_FAILURE() << "dropping role " << r << ": " << err;
    }
  }
  std::string Create(const std::string& prefix, const std::string& options = "") {
    std::string name = prefix + "_" + RandomHex();
    std::string err = SuperSql("postgres", fmt::format("CREATE ROLE {} LOGIN {}", name, options));
    EXPECT_EQ(err, "") << "creating role " << name;
    names_.push_back(name);
    return name;
  }

 private:
  std::vector<std::string> names_;
};

// libpq's options of an open connection: keyword -> value, set ones only.
std::map<std::string, std::string> ConnectionOptions(PGconn* conn) {
  std::map<std::string, std::string> out;
  PQconninfoOption* opts = PQconninfo(conn);
  for (PQconninfoOption* o = opts; o != nullptr && o->keyword != nullptr; ++o) {
    if (o->val != nullptr) out[o->keyword] = o->val;
  }
  PQconninfoFree(opts);
  return out;
}

std::string WriteSecretFile(const std::string& dir, const std::string& name,
                            const std::string& text) {
  std::string path = dir + "/" + name;
  std::ofstream(path) << text;
  EXPECT_EQ(::chmod(path.c_str(), 0600), 0);
  return path;
}

Config LoadWith(const std::map<std::string, std::string>& flags) {
  ConfigLoadOptions options;
  options.explicit_file = "/dev/null";
  options.flag_values = flags;
  options.getenv = [](const std::string&) { return std::optional<std::string>(); };
  auto c = LoadConfig(options);
  EXPECT_TRUE(c.ok()) << c.status().message();
  return c.ok() ? *c : Config{};
}

// kagzictl with a password file from the environment (never on the command line).
CommandResult CtlWithPasswordFile(const std::string& url, const std::string& password_file,
                                  std::vector<std::string> args) {
  std::vector<std::string> argv = {RequiredEnv("KAGZI_TEST_KAGZICTL"), "-c", "/dev/null",
                                   "--database-url", url};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, {{"KAGZI_DATABASE_PASSWORD_FILE", password_file}}, seconds(120));
}

// One line of pg_hba.conf, first in the file, for as long as this lives.
class HbaLine {
 public:
  explicit HbaLine(const std::string& line) : line_(line) {
    auto res = RunQuery("SHOW hba_file");
    path_ = res;
    EXPECT_FALSE(path_.empty());
    std::string old = ReadFile(path_);
    std::ofstream(path_) << line_ << "\n" << old;
    Reload();
  }
  ~HbaLine() {
    std::string text = ReadFile(path_);
    std::string prefix = line_ + "\n";
    if (text.starts_with(prefix)) std::ofstream(path_) << text.substr(prefix.size());
    Reload();
  }

 private:
  static std::string RunQuery(const std::string& sql) {
    PGconn* conn = PQconnectdb(TestServerUrl("postgres").c_str());
    std::string out;
    PGresult* res = PQexec(conn, sql.c_str());
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0) out = PQgetvalue(res, 0, 0);
    PQclear(res);
    PQfinish(conn);
    return out;
  }
  void Reload() { EXPECT_EQ(RunQuery("SELECT pg_reload_conf()"), "t"); }
  std::string line_;
  std::string path_;
};

TEST(PasswordFileTest, PasswordReachesLibpqAuthenticatesAndIsNeverPrinted) {
  const std::string secret = "s3cr3t 'pass' w%rd";
  std::string sql_secret = std::regex_replace(secret, std::regex("'"), "''");
  Roles roles;
  std::string role = roles.Create("kagzi_pw", fmt::format("PASSWORD '{}'", sql_secret));
  auto db = TestDatabase::Create();
  ASSERT_NE(db, nullptr);
  // The role owns the database, so it can migrate it itself.
  db->Query(fmt::format("ALTER DATABASE {} OWNER TO {}", db->name(), role));
  TempDir dir;
  std::string good = WriteSecretFile(dir.path(), "good", secret + "\n");
  std::string wrong = WriteSecretFile(dir.path(), "wrong", "not-the-password-xyzzy\n");
  const std::string url = UrlAs(role, db->name());

  // 1. Under trust authentication: the file's password is in the options
  //    libpq connected with, as the `password` keyword.
  Config config = LoadWith({{"database_url", url}, {"database_password_file", good}});
  {
    auto conn = PgConnection::Connect(config.database_url, "kagzi-security-test");
    ASSERT_TRUE(conn.ok()) << conn.status().message();
    auto options = ConnectionOptions((*conn)->raw());
    EXPECT_EQ(options["password"], secret);
    EXPECT_EQ(options["user"], role);
    EXPECT_EQ(options["dbname"], db->name());
    EXPECT_EQ(std::string(PQpass((*conn)->raw())), secret);
  }
  {
    PgStore store(PgStoreOptions{config.database_url, "kagzi-security-test", 1});
    auto migrated = store.Migrate();
    ASSERT_TRUE(migrated.ok()) << migrated.status().message();
  }

  // 2. A role that must authenticate with scram-sha-256.
  HbaLine hba(fmt::format("local all {} scram-sha-256", role));
  ASSERT_TRUE(Eventually(
      [&] {
        PGconn* c = PQconnectdb(url.c_str());
        bool refused = PQstatus(c) != CONNECTION_OK;
        PQfinish(c);
        return refused;
      },
      seconds(10)))
      << "the server still lets " << role << " in without a password";
  {
    auto conn = PgConnection::Connect(config.database_url, "kagzi-security-test");
    ASSERT_TRUE(conn.ok()) << conn.status().message();
    EXPECT_EQ(PQconnectionUsedPassword((*conn)->raw()), 1);
  }
  Config wrong_config = LoadWith({{"database_url", url}, {"database_password_file", wrong}});
  {
    auto conn = PgConnection::Connect(wrong_config.database_url, "kagzi-security-test");
    ASSERT_FALSE(conn.ok());
    EXPECT_NE(conn.status().message().find("password authentication failed"), std::string::npos)
        << conn.status().message();
    EXPECT_EQ(conn.status().message().find("xyzzy"), std::string::npos) << conn.status().message();
  }

  // 3. kagzictl: connects with the file, and prints the password nowhere,
  //    neither when it works nor when the password is wrong.
  auto list = CtlWithPasswordFile(url, good, {"list"});
  EXPECT_EQ(list.exit_code, 0) << list.out << list.err;
  EXPECT_EQ((list.out + list.err).find("s3cr3t"), std::string::npos);
  auto workers = CtlWithPasswordFile(url, good, {"workers", "--json"});
  EXPECT_EQ(workers.exit_code, 0) << workers.out << workers.err;
  auto refused = CtlWithPasswordFile(url, wrong, {"list"});
  EXPECT_EQ(refused.exit_code, 3) << refused.out << refused.err;
  EXPECT_NE(refused.err.find("password authentication failed"), std::string::npos) << refused.err;
  EXPECT_EQ((refused.out + refused.err).find("xyzzy"), std::string::npos) << refused.err;

  // 4. kagzid: --check-config shows the file and a redacted URL; a daemon
  //    whose password is wrong logs why it waits, without the password.
  auto check = RunCommand({RequiredEnv("KAGZI_TEST_KAGZID"), "-c", "/dev/null", "--database-url",
                           url, "--database-password-file", good, "--check-config"});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_NE(check.out.find("database_password_file = \"" + good + "\""), std::string::npos)
      << check.out;
  EXPECT_NE(check.out.find("password=***"), std::string::npos) << check.out;
  EXPECT_EQ((check.out + check.err).find("s3cr3t"), std::string::npos) << check.out;
  {
    Process daemon({RequiredEnv("KAGZI_TEST_KAGZID"), "-c", "/dev/null", "--database-url", url,
                    "--plugin-dir", dir.path(), "--log-level", "debug"},
                   {{"KAGZI_DATABASE_PASSWORD_FILE", wrong}}, dir.path() + "/kagzid.log");
    ASSERT_TRUE(daemon.Start());
    EXPECT_TRUE(daemon.WaitForLog("password authentication failed", seconds(60))) << daemon.Log();
    daemon.Signal(SIGTERM);
    EXPECT_TRUE(daemon.Wait(seconds(60)).has_value());
    EXPECT_EQ(daemon.Log().find("xyzzy"), std::string::npos) << daemon.Log();
    EXPECT_NE(daemon.Log().find("password=***"), std::string::npos) << daemon.Log();
  }
  // A password file others may read is refused before anything starts.
  ASSERT_EQ(::chmod(good.c_str(), 0644), 0);
  auto open_file = CtlWithPasswordFile(url, good, {"list"});
  EXPECT_EQ(open_file.exit_code, 2) << open_file.out << open_file.err;
  EXPECT_NE(open_file.err.find("database_password_file"), std::string::npos) << open_file.err;
  EXPECT_NE(open_file.err.find("mode 0644"), std::string::npos) << open_file.err;
  EXPECT_EQ(open_file.err.find("s3cr3t"), std::string::npos) << open_file.err;
}

// libpq's TLS options reach the connection (and kagzictl's libpq) unchanged.
// The test server listens on a Unix socket only, where libpq does not use
// TLS, so the files need not exist; an invalid sslmode, which libpq itself
// refuses, proves that kagzictl hands the option to libpq as written.
TEST(TlsOptionsTest, ReachLibpqUnchanged) {
  auto db = TestDatabase::Create();
  ASSERT_NE(db, nullptr);
  const std::string tls =
      "&sslmode=prefer&sslrootcert=/etc/kagzi/tls/root.crt&sslcert=/etc/kagzi/tls/kagzi.crt"
      "&sslkey=/etc/kagzi/tls/kagzi.key";
  Config config = LoadWith({{"database_url", db->url() + tls}});
  auto conn = PgConnection::Connect(config.database_url, "kagzi-security-test");
  ASSERT_TRUE(conn.ok()) << conn.status().message();
  auto options = ConnectionOptions((*conn)->raw());
  EXPECT_EQ(options["sslmode"], "prefer");
  EXPECT_EQ(options["sslrootcert"], "/etc/kagzi/tls/root.crt");
  EXPECT_EQ(options["sslcert"], "/etc/kagzi/tls/kagzi.crt");
  EXPECT_EQ(options["sslkey"], "/etc/kagzi/tls/kagzi.key");

  auto invalid = Ctl(db->url() + "&sslmode=verify-fool", {"list"});
  EXPECT_EQ(invalid.exit_code, 3) << invalid.out << invalid.err;
  EXPECT_NE(invalid.err.find("invalid sslmode value: \"verify-fool\""), std::string::npos)
      << invalid.err;
}

// libpq's parse errors quote the text they stumbled on; kagzictl and kagzid
// show the error, never the password in it.
TEST(PasswordFileTest, MalformedUrlErrorsNeverShowThePassword) {
  const std::string url =
      fmt::format("postgresql://u:se%zzcret@/db?host={}&port={}", RequiredEnv("KAGZI_TEST_PG_HOST"),
                  RequiredEnv("KAGZI_TEST_PG_PORT"));
  auto ctl = Ctl(url, {"list"});
  EXPECT_EQ(ctl.exit_code, 3) << ctl.out << ctl.err;
  EXPECT_NE(ctl.err.find("invalid percent-encoded token"), std::string::npos) << ctl.err;
  EXPECT_EQ((ctl.out + ctl.err).find("zzcret"), std::string::npos) << ctl.err;

  TempDir dir;
  Process daemon({RequiredEnv("KAGZI_TEST_KAGZID"), "-c", "/dev/null", "--database-url", url,
                  "--plugin-dir", dir.path()},
                 {}, dir.path() + "/kagzid.log");
  ASSERT_TRUE(daemon.Start());
  EXPECT_TRUE(daemon.WaitForLog("invalid percent-encoded token", seconds(60))) << daemon.Log();
  daemon.Signal(SIGTERM);
  EXPECT_TRUE(daemon.Wait(seconds(60)).has_value());
  EXPECT_EQ(daemon.Log().find("zzcret"), std::string::npos) << daemon.Log();
}

// The grants block of docs/operations.md ("A least-privilege role"), with
// the role and database names of this test.
std::string DocumentedGrants(const std::string& owner, const std::string& app,
                             const std::string& db) {
  std::string doc = ReadFile(std::string(KAGZI_SOURCE_DIR) + "/docs/operations.md");
  const std::string marker = "tests/integration/security_test.cc runs this block";
  auto at = doc.find(marker);
  EXPECT_NE(at, std::string::npos) << "docs/operations.md lost its grants block";
  if (at == std::string::npos) return "";
  auto begin = doc.find("```sql\n", at);
  auto end = doc.find("```\n", begin + 7);
  std::string sql = doc.substr(begin + 7, end - begin - 7);
  sql = std::regex_replace(sql, std::regex("\\bkagzi_owner\\b"), owner);
  sql = std::regex_replace(sql, std::regex("\\bkagzi_app\\b"), app);
  sql = std::regex_replace(sql, std::regex("DATABASE kagzi\\b"), "DATABASE " + db);
  return sql;
}

TEST(LeastPrivilegeTest, DocumentedGrantsRunDaemonsAndKagzictl) {
  Roles roles;
  const std::string owner = roles.Create("kagzi_owner");
  const std::string app = roles.Create("kagzi_app");
  auto db = TestDatabase::Create();
  ASSERT_NE(db, nullptr);
  db->Query(fmt::format("ALTER DATABASE {} OWNER TO {}", db->name(), owner));
  const std::string owner_url = UrlAs(owner, db->name());
  const std::string app_url = UrlAs(app, db->name());

  // The owner migrates (what running kagzid once as the owner does).
  {
    PgStore store(PgStoreOptions{owner_url, "kagzi-security-test", 1});
    auto migrated = store.Migrate();
    ASSERT_TRUE(migrated.ok()) << migrated.status().message();
    EXPECT_GT(migrated->applied, 0);
  }
  std::string grants = DocumentedGrants(owner, app, db->name());
  ASSERT_NE(grants, "");
  db->Query(grants);

  // The application role changes rows, never the schema.
  for (const char* sql :
       {"CREATE TABLE kagzi_extra (a int)", "DROP TABLE kagzi_steps",
        "ALTER TABLE kagzi_runs ADD COLUMN x int", "TRUNCATE kagzi_runs",
        "INSERT INTO kagzi_schema_migrations (name, checksum) VALUES ('9999_x', 'x')",
        "DELETE FROM kagzi_schema_migrations"}) {
    PGconn* c = PQconnectdb(app_url.c_str());
    ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
    PGresult* r = PQexec(c, sql);
    EXPECT_EQ(PQresultStatus(r), PGRES_FATAL_ERROR) << sql;
    std::string msg = PQresultErrorMessage(r);
    EXPECT_TRUE(msg.find("must be owner") != std::string::npos ||
                msg.find("permission denied") != std::string::npos)
        << sql << ": " << msg;
    PQclear(r);
    PQfinish(c);
  }

  // A claim, record and complete cycle through PgStore, as kagzid's worker
  // makes it; first the migration check every kagzid start makes.
  PgStore store(PgStoreOptions{app_url, "kagzi-security-test", 2});
  auto checked = store.Migrate();
  ASSERT_TRUE(checked.ok()) << checked.status().message();
  EXPECT_EQ(checked->applied, 0);
  const std::string owner_id = NewUuid();
  DaemonInfo info;
  info.id = owner_id;
  info.hostname = "security-test";
  info.pid = static_cast<int>(getpid());
  info.version = "test";
  info.concurrency = 2;
  ASSERT_TRUE(store.RegisterDaemon(info, {{{"cycle", 1}, "/x/cycle.so", "cycle"}}).ok());
  StartRequest start;
  start.workflow = "cycle";
  start.input = "{\"n\":1}";
  auto started = store.StartRun(start);
  ASSERT_TRUE(started.ok()) << started.status().message();
  start.input = "{\"n\":2}";
  auto second = store.StartRun(start);
  ASSERT_TRUE(second.ok()) << second.status().message();
  ClaimRequest claim;
  claim.owner = owner_id;
  claim.loaded = {{"cycle", 1}};
  claim.limit = 2;
  auto batch = store.ClaimRuns(claim);
  ASSERT_TRUE(batch.ok()) << batch.status().message();
  ASSERT_EQ(batch->runs.size(), 2u);
  for (const auto& claimed : batch->runs) {
    Lease lease = LeaseOf(claimed);
    ASSERT_TRUE(store.RecordStep(lease, MakeStep("one", 0, "1")).ok());
    auto hb = store.Heartbeat(owner_id, seconds(30));
    ASSERT_TRUE(hb.ok()) << hb.status().message();
    if (claimed.run.id == started->run_id) {
      auto done = store.CompleteRun(lease, "{\"ok\":true}");
      ASSERT_TRUE(done.ok()) << done.message();
    } else {
      auto failed = store.FailRun(lease, "failed on purpose", std::nullopt);
      ASSERT_TRUE(failed.ok()) << failed.message();
    }
  }
  auto run = store.GetRun(started->run_id);
  ASSERT_TRUE(run.ok()) << run.status().message();
  EXPECT_EQ(run->status, RunStatus::kCompleted);
  ASSERT_TRUE(store.UnregisterDaemon(owner_id).ok());

  // A real kagzid (supervisor and workers) and every kagzictl command.
  TempDir dir;
  std::string plugins = dir.path() + "/plugins";
  FillPluginDir(plugins, {PluginPath("hello.so"), PluginPath("welcome_email.so")});
  auto daemon = StartReadyDaemon(app_url, plugins, dir.path() + "/kagzid.log");
  auto hello = Ctl(app_url, {"start", "hello", "--input", "{\"name\":\"least\"}", "--wait"});
  ASSERT_EQ(hello.exit_code, 0) << hello.out << hello.err;
  EXPECT_NE(hello.out.find("Hello, least!"), std::string::npos) << hello.out;
  std::string id = FirstLine(hello.out);
  for (std::vector<std::string> args : {std::vector<std::string>{"status", id},
                                        {"show", id},
                                        {"result", id},
                                        {"wait", id},
                                        {"list"},
                                        {"workflows"},
                                        {"workers"}}) {
    auto r = Ctl(app_url, args);
    EXPECT_EQ(r.exit_code, 0) << args[0] << ": " << r.out << r.err;
  }
  auto sleeper = Ctl(app_url, {"start", "welcome_email", "--input",
                               "{\"email\":\"a@example.com\",\"sleep_ms\":600000}"});
  ASSERT_EQ(sleeper.exit_code, 0) << sleeper.out << sleeper.err;
  std::string sleeping = FirstLine(sleeper.out);
  auto signalled = Ctl(app_url, {"signal", sleeping, "poke", "--data", "{\"x\":1}"});
  EXPECT_EQ(signalled.exit_code, 0) << signalled.out << signalled.err;
  auto cancelled = Ctl(app_url, {"cancel", sleeping});
  EXPECT_EQ(cancelled.exit_code, 0) << cancelled.out << cancelled.err;
  auto retried = Ctl(app_url, {"retry", second->run_id});
  EXPECT_EQ(retried.exit_code, 0) << retried.out << retried.err;
  daemon->Signal(SIGTERM);
  auto code = daemon->Wait(seconds(60));
  ASSERT_TRUE(code.has_value()) << daemon->Log();
  EXPECT_EQ(*code, 0) << daemon->Log();
  EXPECT_EQ(daemon->Log().find("permission denied"), std::string::npos) << daemon->Log();
}

}  // namespace
}  // namespace kagzi::testing
