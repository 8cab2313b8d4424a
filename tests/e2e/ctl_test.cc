// End-to-end tests of the real kagzictl binary (KAGZI_TEST_KAGZICTL) against
// a fresh, migrated database per test. No daemon runs: a workflow becomes
// "known" through a row in kagzi_workflows or Store::RegisterDaemon, and a
// run is finished the way kagzid finishes it, through PgStore's ClaimRuns,
// RecordStep, ParkRun, CompleteRun and FailRun under a made-up daemon id.
// Each test owns its database and temp dir, so tests may run in parallel.
#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "kagzi/core/store.h"
#include "kagzi/core/validation.h"
#include "support/process.h"
#include "support/test_db.h"

namespace kagzi {
namespace {

using kagzi::testing::CommandResult;

constexpr char kDaemonId[] = "6f1c1c1e-0000-4000-8000-000000000001";
// No server listens on this socket path: connecting fails at once.
constexpr char kUnreachableUrl[] = "postgresql://nobody@/x?host=/nonexistent&port=1";

// The members every run object in --json output has.
const std::vector<std::string> kRunMembers = {
    "id",           "workflow",      "version",         "status",      "input",
    "output",       "error",         "attempts",        "created_at",  "started_at",
    "finished_at",  "parent_run_id", "idempotency_key", "deadline_at", "cancel_requested",
    "cancel_reason"};
const std::vector<std::string> kStepMembers = {
    "step_id", "seq",        "kind",        "status",     "output",     "error",       "attempts",
    "wake_at", "started_at", "finished_at", "error_kind", "event_name", "child_run_id"};

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    lines.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return lines;
}

// Parses stdout of a --json command: exactly one JSON document on one line.
rapidjson::Document ParseJson(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  EXPECT_FALSE(doc.HasParseError()) << "not JSON: " << text;
  EXPECT_EQ(Lines(text).size(), 1u) << "expected one line: " << text;
  return doc;
}

void ExpectMembers(const rapidjson::Value& object, const std::vector<std::string>& members) {
  ASSERT_TRUE(object.IsObject());
  for (const auto& m : members) EXPECT_TRUE(object.HasMember(m.c_str())) << "missing " << m;
}

std::string Str(const rapidjson::Value& v) {
  if (!v.IsString()) return "<not a string>";
  return std::string(v.GetString(), v.GetStringLength());
}

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << part << "\" not found in: " << text;
}

::testing::AssertionResult Lacks(const std::string& text, const std::string& part) {
  if (text.find(part) == std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << part << "\" unexpectedly found in: " << text;
}

bool ContainsControlBytes(const std::string& text) {
  return text.find('\x1b') != std::string::npos || text.find('\x7f') != std::string::npos ||
         text.find("\xc2\x85") != std::string::npos;
}

class CtlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kagzictl_ = kagzi::testing::RequiredEnv("KAGZI_TEST_KAGZICTL");
    ASSERT_FALSE(kagzictl_.empty());
    db_ = kagzi::testing::TestDatabase::Create();
    ASSERT_NE(db_, nullptr);
    store_ = std::make_unique<PgStore>(PgStoreOptions{.database_url = db_->url()});
    auto migrated = store_->Migrate();
    ASSERT_TRUE(migrated.ok()) << migrated.status().message();
    // The tests must not depend on /etc/kagzi or the caller's KAGZI_CONFIG.
    empty_config_ = tmp_.path() + "/empty.toml";
    WriteFile(empty_config_, "");
  }

  // kagzictl ARGS with no database URL given.
  CommandResult CtlRaw(const std::vector<std::string>& args,
                       std::map<std::string, std::string> env = {}) {
    std::vector<std::string> argv = {kagzictl_};
    argv.insert(argv.end(), args.begin(), args.end());
    env.emplace("KAGZI_CONFIG", empty_config_);
    return kagzi::testing::RunCommand(argv, env, std::chrono::seconds(60));
  }

  // kagzictl --database-url <test db> ARGS.
  CommandResult Ctl(const std::vector<std::string>& args,
                    std::map<std::string, std::string> env = {}) {
    std::vector<std::string> all = {"--database-url", db_->url()};
    all.insert(all.end(), args.begin(), args.end());
    return CtlRaw(all, std::move(env));
  }

  // As a kagzid that loaded it once would leave it.
  void KnowWorkflow(const std::string& name) {
    db_->Query("INSERT INTO kagzi_workflows (workflow, version) VALUES ('" + name + "', 1)");
  }

  // kagzictl start; returns the run id printed on stdout.
  std::string Start(const std::string& workflow, const std::string& input = "{}") {
    auto r = Ctl({"start", workflow, "--allow-unknown", "--input", input});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::string id = r.out.substr(0, r.out.find('\n'));
    EXPECT_TRUE(IsUuid(id)) << r.out;
    return id;
  }

  // Claims run_id of workflow (version 1) as daemon kDaemonId would.
  Lease Claim(const std::string& run_id, const std::string& workflow) {
    ClaimRequest request;
    request.owner = kDaemonId;
    request.loaded = {{workflow, 1}};
    request.limit = 1;
    auto batch = store_->ClaimRuns(request);
    if (!batch.ok()) {
      ADD_FAILURE() << "claim failed: " << batch.status().message();
      return {};
    }
    for (const auto& claimed : batch->runs) {
      if (claimed.run.id == run_id) return Lease{run_id, kDaemonId, claimed.run.lease_epoch};
    }
    ADD_FAILURE() << "run " << run_id << " was not claimed";
    return {};
  }

  Micros Now() {
    auto now = store_->Now();
    EXPECT_TRUE(now.ok()) << now.status().message();
    return now.ok() ? *now : 0;
  }

  // Runs workflow "hello" like kagzid: a step, a zero-length sleep (park and
  // wake), then completion with `output`.
  std::string StartAndComplete(const std::string& output) {
    KnowWorkflow("hello");
    std::string id = Start("hello", R"({"name":"world"})");
    Lease lease = Claim(id, "hello");
    StepRecord greet;
    greet.step_id = "greet";
    greet.seq = 0;
    greet.output = R"({"greeting": "hello, world"})";
    greet.started_at = Now();
    EXPECT_TRUE(store_->RecordStep(lease, greet).ok());
    StepRecord nap;
    nap.step_id = "nap";
    nap.seq = 1;
    nap.kind = StepKind::kSleep;
    nap.started_at = Now();
    auto woke = store_->ParkRun(lease, nap, std::chrono::milliseconds(0));
    EXPECT_TRUE(woke.ok()) << woke.status().message();
    Lease again = Claim(id, "hello");
    Status st = store_->CompleteRun(again, output);
    EXPECT_TRUE(st.ok()) << st.message();
    return id;
  }

  // Runs `workflow` to failure: a failed step, then the run fails with error.
  std::string StartAndFail(const std::string& workflow, const std::string& step_id,
                           const std::string& error) {
    std::string id = Start(workflow);
    Lease lease = Claim(id, workflow);
    StepRecord charge;
    charge.step_id = step_id;
    charge.status = StepStatus::kFailed;
    charge.error = error;
    charge.error_kind = ErrorKind::kPermanent;
    charge.started_at = Now();
    EXPECT_TRUE(store_->RecordStep(lease, charge).ok());
    Status st = store_->FailRun(lease, error, charge.seq);
    EXPECT_TRUE(st.ok()) << st.message();
    return id;
  }

  // A child run of `parent` as StartChild leaves it (status PENDING unless
  // given), created `ago` before now; returns its id.
  std::string InsertChild(const std::string& parent, const std::string& status = "PENDING",
                          const std::string& ago = "0 seconds") {
    std::string id = db_->Query("SELECT gen_random_uuid()::text");
    db_->Query(
        "INSERT INTO kagzi_runs (id, workflow, input, parent_run_id, status, finished_at,"
        " created_at) VALUES ('" +
        id + "', 'child', '{}', '" + parent + "', '" + status + "', " +
        (status == "PENDING" || status == "SLEEPING" ? "NULL" : "now()") + ", now() - interval '" +
        ago + "')");
    return id;
  }

  std::string RunColumn(const std::string& id, const std::string& expr) {
    return db_->Query("SELECT " + expr + " FROM kagzi_runs WHERE id = '" + id + "'");
  }

  // A live daemon (kDaemonId unless given) with these workflows loaded.
  void RegisterLive(const std::vector<LoadedWorkflow>& loaded, const std::string& id = kDaemonId) {
    DaemonInfo info;
    info.id = id;
    info.hostname = "test-host";
    info.pid = 4242;
    info.version = "0.1.0";
    info.concurrency = 8;
    info.lease_ttl = std::chrono::seconds(30);
    Status st = store_->RegisterDaemon(info, loaded);
    ASSERT_TRUE(st.ok()) << st.message();
  }

  std::string kagzictl_;
  kagzi::testing::TempDir tmp_;
  std::unique_ptr<kagzi::testing::TestDatabase> db_;
  std::unique_ptr<PgStore> store_;
  std::string empty_config_;
};

// --- start: input, workflow and database checks ---------------------------------

TEST_F(CtlTest, MalformedJsonInputExits2WithoutTouchingTheDatabase) {
  // The URL points nowhere: exit 3 would mean kagzictl tried to connect.
  auto r = CtlRaw({"--database-url", kUnreachableUrl, "start", "hello", "--input", R"({"a":)"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(Contains(r.err, "JSON"));
  EXPECT_TRUE(Contains(r.err, "at byte 5"));
  EXPECT_TRUE(Contains(r.err, "kagzictl: "));
  EXPECT_EQ(r.out, "");
}

TEST_F(CtlTest, OversizedInputExits2WithoutTouchingTheDatabase) {
  std::string big = "\"" + std::string(2000, 'x') + "\"";
  auto r = CtlRaw({"--database-url", kUnreachableUrl, "start", "hello", "--input", big},
                  {{"KAGZI_MAX_PAYLOAD_BYTES", "1024"}});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(Contains(r.err, "larger than the limit of 1024 bytes"));
}

TEST_F(CtlTest, InvalidWorkflowNameExits2) {
  auto r = CtlRaw({"--database-url", kUnreachableUrl, "start", "bad\x01name"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(Contains(r.err, "control character"));
  EXPECT_TRUE(Lacks(r.err, "\x01"));
}

TEST_F(CtlTest, UnreachableDatabaseExits3NamingTheRedactedUrl) {
  const std::string url = "postgresql://nobody:s3cret-pw@/x?host=/nonexistent&port=1";
  // --database-url after the subcommand works too.
  auto r = CtlRaw({"start", "hello", "--input", "{}", "--database-url", url});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(Contains(r.err, "postgresql://nobody:***@/x?host=/nonexistent&port=1"));
  EXPECT_TRUE(Lacks(r.err, "s3cret-pw"));

  // A conninfo string in KAGZI_DATABASE_URL, on a read command.
  auto list =
      CtlRaw({"list"},
             {{"KAGZI_DATABASE_URL", "host=/nonexistent port=1 user=nobody password=s3cret-pw"}});
  EXPECT_EQ(list.exit_code, 3) << list.err;
  EXPECT_TRUE(Contains(list.err, "password=***"));
  EXPECT_TRUE(Lacks(list.err, "s3cret-pw"));
}

TEST_F(CtlTest, DatabaseWithoutSchemaExits3WithAHint) {
  auto empty = kagzi::testing::TestDatabase::Create();
  ASSERT_NE(empty, nullptr);
  auto list = CtlRaw({"--database-url", empty->url(), "list"});
  EXPECT_EQ(list.exit_code, 3) << list.err;
  EXPECT_TRUE(Contains(list.err, "has no Kagzi schema: start kagzid once to migrate it"));
  auto start = CtlRaw({"--database-url", empty->url(), "start", "hello"});
  EXPECT_EQ(start.exit_code, 3) << start.err;
  EXPECT_TRUE(Contains(start.err, "no Kagzi schema"));
}

TEST_F(CtlTest, UnknownWorkflowExits2NamingIt) {
  auto r = Ctl({"start", "no-such-flow"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(Contains(r.err, "workflow \"no-such-flow\" is not known"));
  EXPECT_TRUE(Contains(r.err, "--allow-unknown"));
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_runs"), "0");
}

TEST_F(CtlTest, KnownWorkflowStartsWithDefaultInput) {
  KnowWorkflow("hello");
  auto r = Ctl({"start", "hello"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string id = r.out.substr(0, r.out.size() - 1);
  EXPECT_EQ(r.out, id + "\n");
  EXPECT_TRUE(IsUuid(id)) << r.out;
  EXPECT_EQ(db_->Query("SELECT input::text FROM kagzi_runs WHERE id = '" + id + "'"), "{}");
  EXPECT_EQ(db_->Query("SELECT status FROM kagzi_runs WHERE id = '" + id + "'"), "PENDING");
}

TEST_F(CtlTest, AllowUnknownStartsARun) {
  auto r = Ctl({"start", "brand-new", "--allow-unknown", "--input", R"({"n": 1})"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string id = r.out.substr(0, r.out.find('\n'));
  EXPECT_TRUE(IsUuid(id)) << r.out;
  EXPECT_EQ(db_->Query("SELECT workflow FROM kagzi_runs WHERE id = '" + id + "'"), "brand-new");
  EXPECT_EQ(db_->Query("SELECT input::text FROM kagzi_runs WHERE id = '" + id + "'"),
            R"({"n": 1})");
}

TEST_F(CtlTest, IdempotencyKeyReturnsTheSameRun) {
  KnowWorkflow("hello");
  auto first = Ctl({"start", "hello", "--id", "order-42"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.err, "");
  auto second = Ctl({"start", "hello", "--id", "order-42"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(second.out, first.out);
  EXPECT_TRUE(Contains(second.err, "already exists"));
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_runs"), "1");

  auto json = Ctl({"start", "hello", "--id", "order-42", "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  auto doc = ParseJson(json.out);
  ExpectMembers(doc, {"id", "workflow", "created", "idempotency_key"});
  EXPECT_EQ(Str(doc["id"]) + "\n", first.out);
  EXPECT_FALSE(doc["created"].GetBool());
  EXPECT_EQ(Str(doc["idempotency_key"]), "order-42");

  KnowWorkflow("other");
  auto conflict = Ctl({"start", "other", "--id", "order-42"});
  EXPECT_EQ(conflict.exit_code, 2) << conflict.err;
  EXPECT_TRUE(Contains(conflict.err, "idempotency key \"order-42\""));
  EXPECT_TRUE(Contains(conflict.err, "\"hello\""));
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_runs"), "1");
}

TEST_F(CtlTest, InputFileIsReadAndCheckedBeforeConnecting) {
  KnowWorkflow("hello");
  const std::string path = tmp_.path() + "/input.json";
  const std::string text = "{\n  \"name\": \"from a file\"\n}\n";
  WriteFile(path, text);
  auto r = Ctl({"start", "hello", "--input-file", path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string id = r.out.substr(0, r.out.find('\n'));
  EXPECT_EQ(db_->Query("SELECT input::text FROM kagzi_runs WHERE id = '" + id + "'"), text);

  const std::string missing = tmp_.path() + "/missing.json";
  auto gone =
      CtlRaw({"--database-url", kUnreachableUrl, "start", "hello", "--input-file", missing});
  EXPECT_EQ(gone.exit_code, 2) << gone.err;
  EXPECT_TRUE(Contains(gone.err, missing));

  const std::string bad = tmp_.path() + "/bad.json";
  WriteFile(bad, "[1, 2");
  auto malformed =
      CtlRaw({"--database-url", kUnreachableUrl, "start", "hello", "--input-file", bad});
  EXPECT_EQ(malformed.exit_code, 2) << malformed.err;
  EXPECT_TRUE(Contains(malformed.err, bad));
  EXPECT_TRUE(Contains(malformed.err, "JSON"));

  auto both = Ctl({"start", "hello", "--input", "{}", "--input-file", path});
  EXPECT_EQ(both.exit_code, 2) << both.err;
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_runs"), "1");
}

// --- start --batch ------------------------------------------------------------------

// kagzictl ARGS with `stdin_text` on its standard input (through a pipe).
CommandResult CtlWithStdin(const std::string& kagzictl, const std::string& stdin_path,
                           const std::vector<std::string>& args,
                           const std::map<std::string, std::string>& env) {
  std::vector<std::string> argv = {"/bin/sh", "-c",       "f=$1; shift; cat \"$f\" | exec \"$@\"",
                                   "sh",      stdin_path, kagzictl};
  argv.insert(argv.end(), args.begin(), args.end());
  return kagzi::testing::RunCommand(argv, env, std::chrono::seconds(60));
}

// The ids a batch printed, checked to be run ids.
std::vector<std::string> Ids(const CommandResult& r) {
  std::vector<std::string> ids = Lines(r.out);
  for (const auto& id : ids) EXPECT_TRUE(IsUuid(id)) << r.out;
  return ids;
}

TEST_F(CtlTest, BatchStartsOneRunPerLineInFileOrderInOneTransaction) {
  KnowWorkflow("hello");
  const std::string path = tmp_.path() + "/runs.jsonl";
  // A blank line, a line of spaces, a CRLF line end and a last line without
  // a newline: four runs.
  WriteFile(path, "{\"n\": 1}\n\n  \t\n[2, \"two\"]\r\n\"three\"\n{\"n\": 4}");
  auto r = Ctl({"start", "hello", "--batch", path, "--timeout", "1h"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  std::vector<std::string> ids = Ids(r);
  ASSERT_EQ(ids.size(), 4u) << r.out;
  const std::vector<std::string> inputs = {R"({"n": 1})", R"([2, "two"])", R"("three")",
                                           R"({"n": 4})"};
  for (std::size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(RunColumn(ids[i], "input::text"), inputs[i]) << "run " << i;
    EXPECT_EQ(RunColumn(ids[i], "concat_ws('|', workflow, status, idempotency_key IS NULL)"),
              "hello|PENDING|t");
    // --timeout applies to each run.
    EXPECT_EQ(RunColumn(ids[i], "deadline_at > now() + interval '59 minutes'"), "t");
  }
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_runs"), "4");
  // One transaction: now(), the default of created_at, is the same for all.
  EXPECT_EQ(db_->Query("SELECT count(DISTINCT created_at) FROM kagzi_runs"), "1");
}

TEST_F(CtlTest, BatchJsonNamesEachRunsLineIdAndKey) {
  KnowWorkflow("hello");
  const std::string path = tmp_.path() + "/runs.jsonl";
  WriteFile(path, "{}\n\n{\"a\": 1}\n");
  auto r = Ctl({"start", "hello", "--batch", path, "--id-prefix", "import-7", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto doc = ParseJson(r.out);
  ExpectMembers(doc, {"workflow", "runs"});
  EXPECT_EQ(Str(doc["workflow"]), "hello");
  ASSERT_TRUE(doc["runs"].IsArray());
  ASSERT_EQ(doc["runs"].Size(), 2u);
  const int lines[] = {1, 3};
  for (rapidjson::SizeType i = 0; i < 2; ++i) {
    const auto& run = doc["runs"][i];
    ExpectMembers(run, {"line", "id", "created", "idempotency_key", "error"});
    EXPECT_EQ(run["line"].GetInt(), lines[i]);
    EXPECT_TRUE(IsUuid(Str(run["id"])));
    EXPECT_TRUE(run["created"].GetBool());
    EXPECT_EQ(Str(run["idempotency_key"]), fmt::format("import-7-{}", lines[i]));
    EXPECT_TRUE(run["error"].IsNull());
    EXPECT_EQ(RunColumn(Str(run["id"]), "idempotency_key"), Str(run["idempotency_key"]));
  }
  EXPECT_EQ(RunColumn(Str(doc["runs"][1]["id"]), "input::text"), R"({"a": 1})");
}

// The same file with the same --id-prefix again: nothing new, the same ids,
// a note per line.
TEST_F(CtlTest, BatchWithIdPrefixIsIdempotent) {
  KnowWorkflow("hello");
  const std::string path = tmp_.path() + "/runs.jsonl";
  WriteFile(path, "1\n2\n3\n");
  auto first = Ctl({"start", "hello", "--batch", path, "--id-prefix", "nightly-2026-11-26"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.err, "");
  ASSERT_EQ(Ids(first).size(), 3u);

  auto again = Ctl({"start", "hello", "--batch", path, "--id-prefix", "nightly-2026-11-26"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.out, first.out);
  EXPECT_EQ(Lines(again.err).size(), 3u) << again.err;
  const std::vector<std::string> ids = Ids(first);
  EXPECT_TRUE(Contains(again.err, "--batch \"" + path + "\": line 2: run " + ids[1] +
                                      " already exists for idempotency key "
                                      "\"nightly-2026-11-26-2\"; not starting another"));
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_runs"), "3");

  auto json =
      Ctl({"start", "hello", "--batch", path, "--id-prefix", "nightly-2026-11-26", "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  auto doc = ParseJson(json.out);
  ASSERT_EQ(doc["runs"].Size(), 3u);
  for (rapidjson::SizeType i = 0; i < 3; ++i) {
    EXPECT_FALSE(doc["runs"][i]["created"].GetBool());
    EXPECT_EQ(Str(doc["runs"][i]["id"]), ids[i]);
  }

  // A longer file with the same prefix starts only its new lines.
  WriteFile(path, "1\n2\n3\n4\n");
  auto longer = Ctl({"start", "hello", "--batch", path, "--id-prefix", "nightly-2026-11-26"});
  ASSERT_EQ(longer.exit_code, 0) << longer.err;
  std::vector<std::string> four = Ids(longer);
  ASSERT_EQ(four.size(), 4u);
  EXPECT_EQ(std::vector<std::string>(four.begin(), four.begin() + 3), ids);
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_runs"), "4");
  // Without a prefix there are no keys: every call starts new runs.
  auto unkeyed = Ctl({"start", "hello", "--batch", path});
  ASSERT_EQ(unkeyed.exit_code, 0) << unkeyed.err;
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_runs"), "8");
}

// A key that belongs to another workflow refuses its line alone, as start
// --id refuses it: exit 2, the line named; the other lines' runs start.
TEST_F(CtlTest, BatchLineWhoseKeyBelongsToAnotherWorkflowIsRefusedAlone) {
  KnowWorkflow("hello");
  KnowWorkflow("other");
  auto taken = Ctl({"start", "other", "--id", "p-2"});
  ASSERT_EQ(taken.exit_code, 0) << taken.err;
  const std::string other_id = Lines(taken.out).at(0);
  const std::string path = tmp_.path() + "/runs.jsonl";
  WriteFile(path, "{}\n{}\n{}\n");
  auto r = Ctl({"start", "hello", "--batch", path, "--id-prefix", "p"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  std::vector<std::string> ids = Ids(r);
  ASSERT_EQ(ids.size(), 2u) << r.out;
  EXPECT_TRUE(Contains(r.err, "cannot start workflow \"hello\": --batch \"" + path +
                                  "\": line 2: idempotency key \"p-2\" already belongs to run " +
                                  other_id + " of workflow \"other\""));
  EXPECT_TRUE(Contains(r.err, "1 of the 3 runs of --batch \"" + path +
                                  "\" refused (named above); the other 2 were started"));
  EXPECT_EQ(RunColumn(ids[0], "idempotency_key"), "p-1");
  EXPECT_EQ(RunColumn(ids[1], "idempotency_key"), "p-3");
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_runs WHERE workflow = 'hello'"), "2");

  auto json = Ctl({"start", "hello", "--batch", path, "--id-prefix", "p", "--json"});
  EXPECT_EQ(json.exit_code, 2) << json.err;
  auto doc = ParseJson(json.out);
  ASSERT_EQ(doc["runs"].Size(), 3u);
  EXPECT_TRUE(doc["runs"][1]["id"].IsNull());
  EXPECT_FALSE(doc["runs"][1]["created"].GetBool());
  EXPECT_TRUE(Contains(Str(doc["runs"][1]["error"]), "already belongs to run " + other_id));
  EXPECT_EQ(Str(doc["runs"][2]["id"]), ids[1]);
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_runs"), "3");
}

// Every line is checked before the database is contacted (the URL points
// nowhere: exit 3 would mean kagzictl tried to connect); one bad line
// starts nothing.
TEST_F(CtlTest, BatchBadLineIsNamedAndNothingStarts) {
  const std::string path = tmp_.path() + "/runs.jsonl";
  WriteFile(path, "{}\n\n{\"a\":\n{}\n");
  auto r = CtlRaw({"--database-url", kUnreachableUrl, "start", "hello", "--batch", path});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(Contains(r.err, "kagzictl: cannot start workflow \"hello\": --batch \"" + path +
                                  "\": line 3: the run input is not valid JSON"));
  EXPECT_TRUE(Contains(r.err, "(at byte 5)"));

  const std::map<std::string, std::string> small = {{"KAGZI_MAX_PAYLOAD_BYTES", "1024"}};
  WriteFile(path, "{}\n\"" + std::string(2000, 'x') + "\"\n");
  auto big = CtlRaw({"--database-url", kUnreachableUrl, "start", "hello", "--batch", path}, small);
  EXPECT_EQ(big.exit_code, 2) << big.err;
  EXPECT_TRUE(Contains(big.err,
                       "line 2: the run input is 2002 bytes, larger than the limit of 1024 "
                       "bytes (max_payload_bytes)"));

  WriteFile(path, "{}\n{}\n\"bad \xff byte\"\n");
  auto utf8 = CtlRaw({"--database-url", kUnreachableUrl, "start", "hello", "--batch", path});
  EXPECT_EQ(utf8.exit_code, 2) << utf8.err;
  EXPECT_TRUE(Contains(utf8.err, "line 3: the run input is not valid UTF-8 (at byte 5)"));
  EXPECT_FALSE(ContainsControlBytes(utf8.err));

  auto missing = CtlRaw({"--database-url", kUnreachableUrl, "start", "hello", "--batch",
                         tmp_.path() + "/missing.jsonl"});
  EXPECT_EQ(missing.exit_code, 2) << missing.err;
  EXPECT_TRUE(Contains(missing.err, "missing.jsonl"));

  // And against the real database: line 3 of 4 is bad, no run exists.
  KnowWorkflow("hello");
  WriteFile(path, "{}\n{}\n[\n{}\n");
  auto real = Ctl({"start", "hello", "--batch", path});
  EXPECT_EQ(real.exit_code, 2) << real.err;
  EXPECT_TRUE(Contains(real.err, "line 3: the run input is not valid JSON"));
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_runs"), "0");
}

// kMaxBatchRuns (100,000) runs per call, the real limit: refused or
// accepted before the database is contacted, so this is cheap.
TEST_F(CtlTest, BatchOfMoreThanTheLimitIsRefused) {
  const std::string path = tmp_.path() + "/many.jsonl";
  std::string text;
  for (int i = 0; i < 100'000; ++i) text += "{}\n";
  WriteFile(path, "\n" + text);  // a blank line first: 100,000 runs, 100,001 lines
  auto at_limit = CtlRaw({"--database-url", kUnreachableUrl, "start", "w", "--batch", path});
  EXPECT_EQ(at_limit.exit_code, 3)
      << "the checks passed, then the connection failed: " << at_limit.err;
  WriteFile(path, text + "{}\n");
  auto over = CtlRaw({"--database-url", kUnreachableUrl, "start", "w", "--batch", path});
  EXPECT_EQ(over.exit_code, 2) << over.err;
  EXPECT_TRUE(Contains(over.err, "--batch \"" + path +
                                     "\": more than 100000 runs (line 100001 is run 100001); "
                                     "one call starts at most 100000: split the file"));
}

TEST_F(CtlTest, BatchReadsStdinAndAnEmptyBatchStartsNothing) {
  KnowWorkflow("hello");
  const std::string path = tmp_.path() + "/runs.jsonl";
  WriteFile(path, "{\"via\": \"stdin\"}\n{}\n");
  std::map<std::string, std::string> env = {{"KAGZI_CONFIG", empty_config_}};
  auto piped = CtlWithStdin(kagzictl_, path,
                            {"--database-url", db_->url(), "start", "hello", "--batch", "-"}, env);
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  std::vector<std::string> ids = Ids(piped);
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(RunColumn(ids[0], "input::text"), R"({"via": "stdin"})");

  // A bad line on stdin is named as such.
  WriteFile(path, "{}\nnope\n");
  auto bad = CtlWithStdin(kagzictl_, path,
                          {"--database-url", db_->url(), "start", "hello", "--batch", "-"}, env);
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_TRUE(Contains(bad.err, "--batch - (stdin): line 2: the run input is not valid JSON"));

  // An empty batch (here: stdin is /dev/null) is zero runs, not an error.
  auto empty = Ctl({"start", "hello", "--batch", "-"});
  EXPECT_EQ(empty.exit_code, 0) << empty.err;
  EXPECT_EQ(empty.out, "");
  EXPECT_TRUE(Contains(empty.err,
                       "--batch - (stdin) holds no runs (every line is blank): "
                       "nothing started"));
  WriteFile(path, "\n  \n");
  auto blank_json = Ctl({"start", "hello", "--batch", path, "--json"});
  EXPECT_EQ(blank_json.exit_code, 0) << blank_json.err;
  auto doc = ParseJson(blank_json.out);
  EXPECT_EQ(Str(doc["workflow"]), "hello");
  ASSERT_TRUE(doc["runs"].IsArray());
  EXPECT_EQ(doc["runs"].Size(), 0u);
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_runs"), "2");
}

TEST_F(CtlTest, BatchRefusesSingleRunOptionsAndUnknownWorkflows) {
  const std::string path = tmp_.path() + "/runs.jsonl";
  WriteFile(path, "{}\n");
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"start", "w", "--batch", path, "--input", "{}"}, "excludes"},
      {{"start", "w", "--batch", path, "--input-file", path}, "excludes"},
      {{"start", "w", "--batch", path, "--id", "k"}, "excludes"},
      {{"start", "w", "--batch", path, "--wait"}, "excludes"},
      {{"start", "w", "--id-prefix", "p"}, "--id-prefix requires --batch"},
      {{"start", "w", "--batch", path, "--id-prefix", "kagzi:x"},
       "the idempotency key prefix (--id-prefix) begins with \"kagzi:\", which is reserved"},
      {{"start", "w", "--batch", path, "--id-prefix", std::string(254, 'p')},
       "line 1: its idempotency key (--id-prefix) is 256 bytes, longer than the limit of 255"},
  };
  for (const auto& [args, message] : cases) {
    std::vector<std::string> all = {"--database-url", kUnreachableUrl};
    all.insert(all.end(), args.begin(), args.end());
    auto r = CtlRaw(all);
    EXPECT_EQ(r.exit_code, 2) << message << ": " << r.err;
    EXPECT_TRUE(Contains(r.err, message));
    EXPECT_EQ(r.out, "");
  }
  auto unknown = Ctl({"start", "no-such-flow", "--batch", path});
  EXPECT_EQ(unknown.exit_code, 2) << unknown.err;
  EXPECT_TRUE(Contains(unknown.err, "workflow \"no-such-flow\" is not known"));
  auto allowed = Ctl({"start", "no-such-flow", "--batch", path, "--allow-unknown"});
  EXPECT_EQ(allowed.exit_code, 0) << allowed.err;
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_runs"), "1");
}

// --- start --wait and wait ------------------------------------------------------------

TEST_F(CtlTest, StartWaitPrintsTheIdThenTheOutput) {
  KnowWorkflow("hello");
  // A stand-in daemon: claims the run as soon as kagzictl inserted it.
  std::thread daemon([&] {
    ClaimRequest request;
    request.owner = kDaemonId;
    request.loaded = {{"hello", 1}};
    Lease lease;
    kagzi::testing::Eventually(
        [&] {
          auto batch = store_->ClaimRuns(request);
          if (!batch.ok() || batch->runs.empty()) return false;
          lease = {batch->runs[0].run.id, kDaemonId, batch->runs[0].run.lease_epoch};
          return true;
        },
        std::chrono::seconds(30));
    Status st = store_->CompleteRun(lease, R"({"greeting": "hello, world"})");
    EXPECT_TRUE(st.ok()) << st.message();
  });
  auto r = Ctl({"start", "hello", "--input", R"({"name":"world"})", "--wait", "--timeout", "30"});
  daemon.join();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_TRUE(IsUuid(lines[0])) << r.out;
  EXPECT_EQ(lines[1], R"({"greeting":"hello, world"})");
}

TEST_F(CtlTest, WaitTimesOutWithExit4OnAPendingRun) {
  std::string id = Start("hello");
  auto r = Ctl({"wait", id, "--timeout", "1"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_TRUE(Contains(r.err, id));
  EXPECT_TRUE(Contains(r.err, "PENDING"));
  EXPECT_EQ(r.out, "");

  auto json = Ctl({"wait", id, "--timeout", "0.2", "--json"});
  EXPECT_EQ(json.exit_code, 4) << json.err;
  auto doc = ParseJson(json.out);
  ExpectMembers(doc, kRunMembers);
  EXPECT_EQ(Str(doc["status"]), "PENDING");

  auto started = Ctl({"start", "hello", "--allow-unknown", "--wait", "--wait-timeout", "500ms"});
  EXPECT_EQ(started.exit_code, 4) << started.err;
  auto lines = Lines(started.out);
  ASSERT_EQ(lines.size(), 1u) << started.out;
  EXPECT_TRUE(IsUuid(lines[0]));
  EXPECT_TRUE(Contains(started.err, "timed out"));
  EXPECT_TRUE(Contains(started.err, lines[0]));

  auto bad = Ctl({"wait", id, "--timeout", "soon"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_TRUE(Contains(bad.err, "--timeout"));
  // --wait-timeout only bounds a wait (--timeout, the run's deadline, does
  // not need --wait any more: see StartTimeoutSetsTheRunsDeadline).
  auto needs_wait = Ctl({"start", "hello", "--wait-timeout", "1"});
  EXPECT_EQ(needs_wait.exit_code, 2) << needs_wait.err;
  EXPECT_TRUE(Contains(needs_wait.err, "--wait"));
  auto bad_wait = Ctl({"start", "hello", "--wait", "--wait-timeout", "soon"});
  EXPECT_EQ(bad_wait.exit_code, 2) << bad_wait.err;
  EXPECT_TRUE(Contains(bad_wait.err, "--wait-timeout \"soon\""));
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_runs WHERE deadline_at IS NOT NULL"), "0");
}

// --- a completed run -------------------------------------------------------------------

TEST_F(CtlTest, CompletedRunThroughEveryCommand) {
  // The big number must come back exactly as the workflow wrote it.
  const std::string output = R"({"greeting":"hello, world","n":12345678901234567890})";
  std::string id = StartAndComplete(output);

  auto result = Ctl({"result", id});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, output + "\n");

  auto wait = Ctl({"wait", id, "--timeout", "5"});
  EXPECT_EQ(wait.exit_code, 0) << wait.err;
  EXPECT_EQ(wait.out, output + "\n");

  auto status = Ctl({"status", id});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_TRUE(Contains(status.out, id));
  EXPECT_TRUE(Contains(status.out, "hello"));
  EXPECT_TRUE(Contains(status.out, "COMPLETED"));
  EXPECT_TRUE(Contains(status.out, "attempts:  2"));
  EXPECT_TRUE(Contains(status.out, "took "));

  auto show = Ctl({"show", id});
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_TRUE(Contains(show.out, "COMPLETED"));
  EXPECT_TRUE(Contains(show.out, "greet"));
  EXPECT_TRUE(Contains(show.out, R"({"greeting":"hello, world"})"));
  EXPECT_TRUE(Contains(show.out, "nap"));
  EXPECT_TRUE(Contains(show.out, "sleep"));
  EXPECT_TRUE(Contains(show.out, "wakes "));

  auto list = Ctl({"list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(Contains(list.out, id));
  EXPECT_TRUE(Contains(list.out, "COMPLETED"));
}

TEST_F(CtlTest, JsonOutputOfEveryRunCommandHasTheDocumentedFields) {
  const std::string output = R"({"greeting":"hello, world"})";
  std::string id = StartAndComplete(output);

  auto status = Ctl({"status", id, "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  auto run = ParseJson(status.out);
  ExpectMembers(run, kRunMembers);
  EXPECT_EQ(Str(run["id"]), id);
  EXPECT_EQ(Str(run["workflow"]), "hello");
  EXPECT_EQ(run["version"].GetInt(), 1);
  EXPECT_EQ(Str(run["status"]), "COMPLETED");
  EXPECT_EQ(Str(run["input"]["name"]), "world");  // embedded JSON, not a string
  EXPECT_EQ(Str(run["output"]["greeting"]), "hello, world");
  EXPECT_TRUE(run["error"].IsNull());
  EXPECT_EQ(run["attempts"].GetInt(), 2);
  EXPECT_TRUE(Str(run["created_at"]).ends_with("Z"));
  EXPECT_EQ(Str(run["created_at"])[10], 'T');
  EXPECT_TRUE(run["finished_at"].IsString());
  EXPECT_TRUE(run["parent_run_id"].IsNull());
  EXPECT_TRUE(run["idempotency_key"].IsNull());

  auto show = Ctl({"show", id, "--json"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  auto shown = ParseJson(show.out);
  ExpectMembers(shown, kRunMembers);
  ASSERT_TRUE(shown["steps"].IsArray());
  ASSERT_EQ(shown["steps"].Size(), 2u);
  const auto& greet = shown["steps"][0];
  ExpectMembers(greet, kStepMembers);
  EXPECT_EQ(Str(greet["step_id"]), "greet");
  EXPECT_EQ(greet["seq"].GetInt(), 0);
  EXPECT_EQ(Str(greet["kind"]), "step");
  EXPECT_EQ(Str(greet["status"]), "COMPLETED");
  EXPECT_EQ(Str(greet["output"]["greeting"]), "hello, world");
  EXPECT_TRUE(greet["wake_at"].IsNull());
  const auto& nap = shown["steps"][1];
  ExpectMembers(nap, kStepMembers);
  EXPECT_EQ(Str(nap["kind"]), "sleep");
  EXPECT_TRUE(nap["wake_at"].IsString());

  auto list = Ctl({"list", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  auto listed = ParseJson(list.out);
  ASSERT_TRUE(listed["runs"].IsArray());
  ASSERT_EQ(listed["runs"].Size(), 1u);
  ExpectMembers(listed["runs"][0], kRunMembers);
  EXPECT_EQ(Str(listed["runs"][0]["id"]), id);

  auto result = Ctl({"result", id, "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  auto res = ParseJson(result.out);
  ExpectMembers(res, {"id", "workflow", "status", "output", "error"});
  EXPECT_EQ(Str(res["output"]["greeting"]), "hello, world");

  auto wait = Ctl({"wait", id, "--json"});
  ASSERT_EQ(wait.exit_code, 0) << wait.err;
  auto waited = ParseJson(wait.out);
  ExpectMembers(waited, kRunMembers);
  EXPECT_EQ(Str(waited["status"]), "COMPLETED");

  auto start = Ctl({"start", "hello", "--json"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  auto started = ParseJson(start.out);
  ExpectMembers(started, {"id", "workflow", "created", "idempotency_key"});
  EXPECT_TRUE(IsUuid(Str(started["id"])));
  EXPECT_TRUE(started["created"].GetBool());
}

// --- a failed run ------------------------------------------------------------------------

TEST_F(CtlTest, FailedRunExits1AndShowsTheError) {
  std::string id = StartAndFail("payment", "charge", "card declined");

  auto result = Ctl({"result", id});
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_EQ(result.out, "");
  EXPECT_TRUE(Contains(result.err, id));
  EXPECT_TRUE(Contains(result.err, "FAILED"));
  EXPECT_TRUE(Contains(result.err, "card declined"));

  auto wait = Ctl({"wait", id});
  EXPECT_EQ(wait.exit_code, 1) << wait.err;
  EXPECT_TRUE(Contains(wait.err, "card declined"));

  auto status = Ctl({"status", id});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_TRUE(Contains(status.out, "FAILED"));
  EXPECT_TRUE(Contains(status.out, "error:"));
  EXPECT_TRUE(Contains(status.out, "card declined"));

  auto show = Ctl({"show", id});
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_TRUE(Contains(show.out, "charge"));
  EXPECT_TRUE(Contains(show.out, "permanent error: card declined"));

  auto json = Ctl({"result", id, "--json"});
  EXPECT_EQ(json.exit_code, 1) << json.err;
  auto doc = ParseJson(json.out);
  EXPECT_EQ(Str(doc["status"]), "FAILED");
  EXPECT_EQ(Str(doc["error"]), "card declined");
  EXPECT_TRUE(doc["output"].IsNull());

  auto show_json = Ctl({"show", id, "--json"});
  ASSERT_EQ(show_json.exit_code, 0) << show_json.err;
  auto shown = ParseJson(show_json.out);
  ASSERT_EQ(shown["steps"].Size(), 1u);
  EXPECT_EQ(Str(shown["steps"][0]["status"]), "FAILED");
  EXPECT_EQ(Str(shown["steps"][0]["error"]), "card declined");
  EXPECT_EQ(Str(shown["steps"][0]["error_kind"]), "permanent");
}

TEST_F(CtlTest, ResultOfAnUnfinishedRunExits4) {
  std::string id = Start("hello");
  auto r = Ctl({"result", id});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_TRUE(Contains(r.err, "run " + id + " is PENDING, not finished"));
}

TEST_F(CtlTest, ControlCharactersFromTheDatabaseAreEscaped) {
  const std::string error = "bad \x1b[31mthing\x7f\nsecond line";
  std::string id = StartAndFail("payment", "evil\x1b[2J step", error);

  for (const auto& command : {"status", "show", "result"}) {
    auto r = Ctl({command, id});
    EXPECT_FALSE(ContainsControlBytes(r.out)) << command << ": " << r.out;
    EXPECT_FALSE(ContainsControlBytes(r.err)) << command << ": " << r.err;
  }
  auto status = Ctl({"status", id});
  EXPECT_TRUE(Contains(status.out, R"(bad \x1b[31mthing\x7f\nsecond line)"));
  auto show = Ctl({"show", id});
  EXPECT_TRUE(Contains(show.out, R"(evil\x1b[2J step)"));

  // JSON keeps the exact text, escaped the JSON way.
  auto json = Ctl({"show", id, "--json"});
  EXPECT_FALSE(ContainsControlBytes(json.out)) << json.out;
  auto doc = ParseJson(json.out);
  EXPECT_EQ(Str(doc["error"]), error);
  EXPECT_EQ(Str(doc["steps"][0]["step_id"]), "evil\x1b[2J step");

  // Outputs: DEL and C1 controls inside JSON strings come out as \u escapes.
  KnowWorkflow("hello");
  std::string done = Start("hello");
  Lease lease = Claim(done, "hello");
  ASSERT_TRUE(store_->CompleteRun(lease, "{\"s\":\"\\u001b[31m\x7f\xc2\x85\"}").ok());
  auto result = Ctl({"result", done});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_FALSE(ContainsControlBytes(result.out)) << result.out;
  auto parsed = ParseJson(result.out);
  EXPECT_EQ(Str(parsed["s"]), "\x1b[31m\x7f\xc2\x85");
}

// --- list ---------------------------------------------------------------------------------

TEST_F(CtlTest, ListFiltersByStatusAndWorkflowAndLimits) {
  std::string failed = StartAndFail("payment", "charge", "declined");
  std::string pending = Start("report");

  auto all = Ctl({"list"});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  EXPECT_TRUE(Contains(all.out, failed));
  EXPECT_TRUE(Contains(all.out, pending));
  EXPECT_TRUE(Contains(Lines(all.out)[0], "ID"));
  EXPECT_TRUE(Contains(Lines(all.out)[0], "DURATION"));

  auto only_failed = Ctl({"list", "--status", "failed"});
  ASSERT_EQ(only_failed.exit_code, 0) << only_failed.err;
  EXPECT_TRUE(Contains(only_failed.out, failed));
  EXPECT_TRUE(Lacks(only_failed.out, pending));

  auto by_workflow = Ctl({"list", "--workflow", "report", "--json"});
  ASSERT_EQ(by_workflow.exit_code, 0) << by_workflow.err;
  auto doc = ParseJson(by_workflow.out);
  ASSERT_EQ(doc["runs"].Size(), 1u);
  EXPECT_EQ(Str(doc["runs"][0]["id"]), pending);

  auto limited = Ctl({"list", "--limit", "1", "--json"});
  ASSERT_EQ(limited.exit_code, 0) << limited.err;
  EXPECT_EQ(ParseJson(limited.out)["runs"].Size(), 1u);

  auto none = Ctl({"list", "--workflow", "nothing-here"});
  EXPECT_EQ(none.exit_code, 0) << none.err;
  EXPECT_EQ(none.out, "no runs\n");

  auto bogus = Ctl({"list", "--status", "bogus"});
  EXPECT_EQ(bogus.exit_code, 2) << bogus.err;
  EXPECT_TRUE(Contains(bogus.err, "\"bogus\""));
  EXPECT_TRUE(Contains(bogus.err, "PENDING, RUNNING, SLEEPING, COMPLETED, FAILED, CANCELLED"));

  auto zero = Ctl({"list", "--limit", "0"});
  EXPECT_EQ(zero.exit_code, 2) << zero.err;
}

// --- run ids ---------------------------------------------------------------------------------

TEST_F(CtlTest, MalformedRunIdExits2WithoutTouchingTheDatabase) {
  for (const auto& command : {"status", "show", "result", "wait"}) {
    auto r = CtlRaw({"--database-url", kUnreachableUrl, command, "not-a-uuid"});
    EXPECT_EQ(r.exit_code, 2) << command << ": " << r.err;
    EXPECT_TRUE(Contains(r.err, "\"not-a-uuid\" is not a run id")) << command;
  }
}

TEST_F(CtlTest, UnknownRunIdExits2) {
  const std::string id = "00000000-0000-4000-8000-000000000000";
  for (const auto& command : {"status", "show", "result", "wait"}) {
    auto r = Ctl({command, id});
    EXPECT_EQ(r.exit_code, 2) << command << ": " << r.err;
    EXPECT_TRUE(Contains(r.err, "run " + id + " does not exist")) << command;
  }
}

// --- workflows and workers -------------------------------------------------------------------

TEST_F(CtlTest, WorkflowsAndWorkersShowRegisteredDaemons) {
  auto empty_workflows = Ctl({"workflows"});
  EXPECT_EQ(empty_workflows.exit_code, 0) << empty_workflows.err;
  auto empty_workers = Ctl({"workers", "--json"});
  EXPECT_EQ(empty_workers.exit_code, 0) << empty_workers.err;
  EXPECT_EQ(ParseJson(empty_workers.out)["workers"].Size(), 0u);

  DaemonInfo live;
  live.id = kDaemonId;
  live.hostname = "test-host";
  live.pid = 4242;
  live.version = "0.1.0";
  live.concurrency = 8;
  live.lease_ttl = std::chrono::seconds(30);
  ASSERT_TRUE(store_
                  ->RegisterDaemon(
                      live, {LoadedWorkflow{
                                {"hello", 1}, "/usr/lib/kagzi/plugins/hello.so", "hello-plugin"}})
                  .ok());
  DaemonInfo dead = live;
  dead.id = "6f1c1c1e-0000-4000-8000-000000000002";
  dead.hostname = "gone-host";
  dead.lease_ttl = std::chrono::milliseconds(1);
  ASSERT_TRUE(
      store_->RegisterDaemon(dead, {LoadedWorkflow{{"old", 1}, "/old/old.so", "old-plugin"}}).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));

  // One run of hello is leased by the live daemon: an open run, running 1.
  std::string id = Start("hello");
  Claim(id, "hello");

  auto workflows = Ctl({"workflows"});
  ASSERT_EQ(workflows.exit_code, 0) << workflows.err;
  EXPECT_TRUE(Contains(workflows.out, "hello"));
  EXPECT_TRUE(Contains(workflows.out, "/usr/lib/kagzi/plugins/hello.so"));
  EXPECT_TRUE(Lacks(workflows.out, "/old/old.so"));  // only live daemons

  auto workflows_json = Ctl({"workflows", "--json"});
  ASSERT_EQ(workflows_json.exit_code, 0) << workflows_json.err;
  auto wf = ParseJson(workflows_json.out);
  ASSERT_EQ(wf["workflows"].Size(), 1u);
  const auto& hello = wf["workflows"][0];
  ExpectMembers(hello, {"workflow", "version", "daemons", "open_runs", "plugin_path"});
  EXPECT_EQ(Str(hello["workflow"]), "hello");
  EXPECT_EQ(hello["version"].GetInt(), 1);
  ASSERT_EQ(hello["daemons"].Size(), 1u);
  EXPECT_EQ(Str(hello["daemons"][0]), kDaemonId);
  EXPECT_EQ(hello["open_runs"].GetInt(), 1);
  EXPECT_EQ(Str(hello["plugin_path"]), "/usr/lib/kagzi/plugins/hello.so");

  // Through KAGZI_DATABASE_URL this time, not the flag.
  auto workers = CtlRaw({"workers"}, {{"KAGZI_DATABASE_URL", db_->url()}});
  ASSERT_EQ(workers.exit_code, 0) << workers.err;
  EXPECT_TRUE(Contains(workers.out, "test-host"));
  EXPECT_TRUE(Contains(workers.out, "4242"));
  EXPECT_TRUE(Contains(workers.out, "alive"));
  EXPECT_TRUE(Contains(workers.out, "gone-host"));
  EXPECT_TRUE(Contains(workers.out, "dead"));
  EXPECT_TRUE(Contains(workers.out, " ago"));

  auto workers_json = Ctl({"workers", "--json"});
  ASSERT_EQ(workers_json.exit_code, 0) << workers_json.err;
  auto wk = ParseJson(workers_json.out);
  EXPECT_TRUE(wk["now"].IsString());
  ASSERT_EQ(wk["workers"].Size(), 2u);
  for (const auto& d : wk["workers"].GetArray()) {
    ExpectMembers(d, {"id", "hostname", "pid", "version", "concurrency", "lease_ttl_ms", "running",
                      "started_at", "heartbeat_at", "heartbeat_age_ms", "alive"});
    if (Str(d["id"]) == kDaemonId) {
      EXPECT_EQ(Str(d["hostname"]), "test-host");
      EXPECT_EQ(d["pid"].GetInt(), 4242);
      EXPECT_EQ(d["running"].GetInt(), 1);
      EXPECT_TRUE(d["alive"].GetBool());
    } else {
      EXPECT_EQ(Str(d["hostname"]), "gone-host");
      EXPECT_FALSE(d["alive"].GetBool());
    }
  }
}

// --- cancel ----------------------------------------------------------------------------------

TEST_F(CtlTest, CancelOfAPendingRunCancelsItAtOnce) {
  std::string id = Start("hello");
  auto r = Ctl({"cancel", id, "--reason", "changed my mind"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "run " + id + " cancelled\n");
  EXPECT_EQ(RunColumn(id, "concat_ws('|', status, error, cancel_requested, cancel_reason)"),
            "CANCELLED|changed my mind|t|changed my mind");

  auto result = Ctl({"result", id});
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_TRUE(Contains(result.err, "CANCELLED: changed my mind"));

  // Cancelling a finished run is refused, naming its status.
  auto again = Ctl({"cancel", id});
  EXPECT_EQ(again.exit_code, 2) << again.err;
  EXPECT_TRUE(Contains(again.err, "run " + id + " is already CANCELLED"));
  EXPECT_EQ(again.out, "");
}

TEST_F(CtlTest, CancelOfARunningRunStopsItAtItsNextStepAndCancelsItsChildren) {
  std::string id = Start("order");
  Lease lease = Claim(id, "order");
  std::string pending = InsertChild(id, "PENDING");
  std::string sleeping = InsertChild(id, "SLEEPING");
  std::string done = InsertChild(id, "COMPLETED");

  auto r = Ctl({"cancel", id, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto doc = ParseJson(r.out);
  ExpectMembers(doc, {"id", "status", "cancelled", "cancel_pending", "children", "reason"});
  EXPECT_EQ(Str(doc["id"]), id);
  EXPECT_EQ(Str(doc["status"]), "RUNNING");
  EXPECT_FALSE(doc["cancelled"].GetBool());
  EXPECT_TRUE(doc["cancel_pending"].GetBool());
  EXPECT_EQ(doc["children"].GetInt(), 2);
  EXPECT_EQ(Str(doc["reason"]), "cancelled with kagzictl cancel");

  // The run stays the daemon's (same owner and epoch) with the request set;
  // its open children are cancelled at once, the finished one untouched.
  EXPECT_EQ(RunColumn(id, "concat_ws('|', status, lease_owner, lease_epoch, cancel_requested)"),
            fmt::format("RUNNING|{}|{}|t", kDaemonId, lease.epoch));
  EXPECT_EQ(RunColumn(pending, "status"), "CANCELLED");
  EXPECT_EQ(RunColumn(sleeping, "status"), "CANCELLED");
  EXPECT_EQ(RunColumn(done, "status"), "COMPLETED");

  // The daemon learns it at its next write.
  WriteFeedback feedback;
  StepRecord step;
  step.step_id = "reserve";
  step.output = "1";
  ASSERT_TRUE(store_->RecordStep(lease, step, &feedback).ok());
  EXPECT_TRUE(feedback.cancel_requested);

  auto status = Ctl({"status", id});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_TRUE(Contains(status.out, "requested, pending: cancelled with kagzictl cancel"));

  // Human output, for a second running run with one child.
  std::string other = Start("order");
  Claim(other, "order");
  InsertChild(other);
  auto human = Ctl({"cancel", other, "--reason", "stop"});
  ASSERT_EQ(human.exit_code, 0) << human.err;
  EXPECT_TRUE(Contains(human.out, "run " + other + " is RUNNING: cancel requested"));
  EXPECT_TRUE(Contains(human.out, "next step boundary"));
  EXPECT_TRUE(Contains(human.out, "1 descendant run cancelled too"));
}

TEST_F(CtlTest, CancelRefusesFinishedUnknownAndMalformedRuns) {
  std::string done = StartAndComplete(R"({"ok":true})");
  auto finished = Ctl({"cancel", done});
  EXPECT_EQ(finished.exit_code, 2) << finished.err;
  EXPECT_TRUE(Contains(finished.err, "is already COMPLETED"));
  EXPECT_EQ(RunColumn(done, "cancel_requested"), "f");

  const std::string missing = "00000000-0000-4000-8000-000000000000";
  auto unknown = Ctl({"cancel", missing});
  EXPECT_EQ(unknown.exit_code, 2) << unknown.err;
  EXPECT_TRUE(Contains(unknown.err, "run " + missing + " does not exist"));

  auto malformed = CtlRaw({"--database-url", kUnreachableUrl, "cancel", "not-a-uuid"});
  EXPECT_EQ(malformed.exit_code, 2) << malformed.err;
  EXPECT_TRUE(Contains(malformed.err, "\"not-a-uuid\" is not a run id"));
  auto empty_reason =
      CtlRaw({"--database-url", kUnreachableUrl, "cancel", missing, "--reason", ""});
  EXPECT_EQ(empty_reason.exit_code, 2) << empty_reason.err;
  EXPECT_TRUE(Contains(empty_reason.err, "--reason"));
}

// --- signal ----------------------------------------------------------------------------------

TEST_F(CtlTest, SignalStoresTheEventAndWakesTheParkedRun) {
  std::string id = Start("approval");
  Lease lease = Claim(id, "approval");
  auto parked = store_->ParkRun(lease, std::nullopt, std::chrono::hours(1));
  ASSERT_TRUE(parked.ok()) << parked.status().message();
  ASSERT_EQ(RunColumn(id, "available_at > now() + interval '30 minutes'"), "t");

  auto r = Ctl({"signal", id, "approved", "--data", R"({"by": "alice"})"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "event \"approved\" sent to run " + id + "\n");
  EXPECT_EQ(db_->Query("SELECT concat_ws('|', name, payload::text, consumed_at IS NULL) FROM "
                       "kagzi_events WHERE run_id = '" +
                       id + "'"),
            R"(approved|{"by": "alice"}|t)");
  // Woken: runnable now, wake_seq bumped.
  EXPECT_EQ(RunColumn(id, "concat_ws('|', status, available_at <= now(), wake_seq)"),
            "SLEEPING|t|1");

  auto json = Ctl({"signal", id, "approved", "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  auto doc = ParseJson(json.out);
  ExpectMembers(doc, {"id", "event", "data", "sent"});
  EXPECT_EQ(Str(doc["event"]), "approved");
  EXPECT_TRUE(doc["data"].IsNull());
  EXPECT_TRUE(doc["sent"].GetBool());
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_events"), "2");
}

TEST_F(CtlTest, SignalRefusesMalformedDataBeforeConnectingAndFinishedRuns) {
  const std::string some_run = "00000000-0000-4000-8000-000000000000";
  auto malformed = CtlRaw(
      {"--database-url", kUnreachableUrl, "signal", some_run, "approved", "--data", R"({"a":)"});
  EXPECT_EQ(malformed.exit_code, 2) << malformed.err;
  EXPECT_TRUE(Contains(malformed.err, "JSON"));
  EXPECT_TRUE(Contains(malformed.err, "--data"));
  auto bad_name = CtlRaw({"--database-url", kUnreachableUrl, "signal", some_run, "bad\x01name"});
  EXPECT_EQ(bad_name.exit_code, 2) << bad_name.err;
  EXPECT_TRUE(Contains(bad_name.err, "event name"));
  auto bad_id = CtlRaw({"--database-url", kUnreachableUrl, "signal", "nope", "go"});
  EXPECT_EQ(bad_id.exit_code, 2) << bad_id.err;

  std::string failed = StartAndFail("payment", "charge", "declined");
  auto terminal = Ctl({"signal", failed, "go"});
  EXPECT_EQ(terminal.exit_code, 2) << terminal.err;
  EXPECT_TRUE(Contains(terminal.err, "is already FAILED"));
  auto unknown = Ctl({"signal", some_run, "go"});
  EXPECT_EQ(unknown.exit_code, 2) << unknown.err;
  EXPECT_TRUE(Contains(unknown.err, "does not exist"));
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_events"), "0");
}

// --- retry -----------------------------------------------------------------------------------

TEST_F(CtlTest, RetryResumesAFailedRunFromItsFailedStep) {
  std::string id = Start("payment");
  Lease lease = Claim(id, "payment");
  StepRecord fetch;
  fetch.step_id = "fetch";
  fetch.seq = 0;
  fetch.output = R"({"user": 7})";
  ASSERT_TRUE(store_->RecordStep(lease, fetch).ok());
  StepRecord charge;
  charge.step_id = "charge";
  charge.seq = 1;
  charge.status = StepStatus::kFailed;
  charge.error = "card declined";
  ASSERT_TRUE(store_->RecordStep(lease, charge).ok());
  ASSERT_TRUE(store_->FailRun(lease, "card declined", charge.seq).ok());

  auto r = Ctl({"retry", id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "run " + id + " is PENDING again"));
  // Nothing has payment v1 loaded: said on stderr, not an error.
  EXPECT_TRUE(Contains(r.err, "no live kagzid has workflow \"payment\" version 1 loaded"));
  EXPECT_EQ(RunColumn(id,
                      "concat_ws('|', status, error IS NULL, finished_at IS NULL, "
                      "lease_epoch, version)"),
            fmt::format("PENDING|t|t|{}|1", lease.epoch + 1));
  EXPECT_EQ(db_->Query("SELECT string_agg(step_id, ',' ORDER BY seq) FROM kagzi_steps WHERE "
                       "run_id = '" +
                       id + "'"),
            "fetch");

  // Only FAILED runs: this one is PENDING now.
  auto again = Ctl({"retry", id});
  EXPECT_EQ(again.exit_code, 2) << again.err;
  EXPECT_TRUE(Contains(again.err, "is PENDING: only a FAILED run can be retried"));
  std::string done = StartAndComplete("1");
  auto completed = Ctl({"retry", done});
  EXPECT_EQ(completed.exit_code, 2) << completed.err;
  EXPECT_TRUE(Contains(completed.err, "is COMPLETED"));
  auto unknown = Ctl({"retry", "00000000-0000-4000-8000-000000000000"});
  EXPECT_EQ(unknown.exit_code, 2) << unknown.err;

  std::string other = StartAndFail("billing", "charge", "declined");
  auto json = Ctl({"retry", other, "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  auto doc = ParseJson(json.out);
  ExpectMembers(doc, kRunMembers);
  EXPECT_EQ(Str(doc["status"]), "PENDING");
  EXPECT_TRUE(doc["error"].IsNull());
  EXPECT_TRUE(Contains(Str(doc["blocked_reason"]), "no live kagzid"));
}

// --- start --timeout: the run's deadline ------------------------------------------------------

TEST_F(CtlTest, StartTimeoutSetsTheRunsDeadline) {
  KnowWorkflow("hello");
  auto r = Ctl({"start", "hello", "--timeout", "90"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string id = r.out.substr(0, r.out.find('\n'));
  ASSERT_TRUE(IsUuid(id)) << r.out;
  // now() is the same in the whole insert: exactly 90 s after created_at.
  EXPECT_EQ(RunColumn(id, "extract(epoch FROM deadline_at - created_at)::int"), "90");
  auto status = Ctl({"status", id, "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_TRUE(ParseJson(status.out)["deadline_at"].IsString());
  EXPECT_TRUE(Contains(Ctl({"status", id}).out, "deadline:"));

  auto minutes = Ctl({"start", "hello", "--timeout", "2m"});
  ASSERT_EQ(minutes.exit_code, 0) << minutes.err;
  std::string id2 = minutes.out.substr(0, minutes.out.find('\n'));
  EXPECT_EQ(RunColumn(id2, "extract(epoch FROM deadline_at - created_at)::int"), "120");

  auto none = Ctl({"start", "hello"});
  ASSERT_EQ(none.exit_code, 0) << none.err;
  EXPECT_EQ(RunColumn(none.out.substr(0, none.out.find('\n')), "deadline_at IS NULL"), "t");

  // With --wait the deadline bounds the wait too (plus a 2 s grace for the
  // daemon to record the timeout); no daemon runs here, so it ends in exit 4.
  auto begin = std::chrono::steady_clock::now();
  auto waited = Ctl({"start", "hello", "--wait", "--timeout", "1"});
  auto took = std::chrono::steady_clock::now() - begin;
  EXPECT_EQ(waited.exit_code, 4) << waited.err;
  EXPECT_GE(took, std::chrono::milliseconds(2900));
  EXPECT_LT(took, std::chrono::seconds(30));
  EXPECT_TRUE(Contains(waited.err, "timed out after 3.000s"));
  EXPECT_TRUE(Contains(waited.err, "its deadline is"));

  // --wait-timeout takes precedence for the wait and sets no deadline.
  auto short_wait = Ctl({"start", "hello", "--wait", "--timeout", "60", "--wait-timeout", "0.2"});
  EXPECT_EQ(short_wait.exit_code, 4) << short_wait.err;
  std::string id3 = Lines(short_wait.out)[0];
  EXPECT_EQ(RunColumn(id3, "extract(epoch FROM deadline_at - created_at)::int"), "60");

  for (const auto& bad : {"soon", "0", "-1"}) {
    auto refused = CtlRaw({"--database-url", kUnreachableUrl, "start", "hello", "--timeout", bad});
    EXPECT_EQ(refused.exit_code, 2) << bad << ": " << refused.err;
    EXPECT_TRUE(Contains(refused.err, "--timeout")) << bad;
  }
}

// --- list: version, time and parent filters -------------------------------------------------

TEST_F(CtlTest, ListFiltersByVersionTimeAndParent) {
  std::string v1 = Start("orders");
  Claim(v1, "orders");  // pinned to version 1
  std::string v2 = Start("orders");
  db_->Query(
      "UPDATE kagzi_runs SET version = 2, created_at = now() - interval '3 hours' "
      "WHERE id = '" +
      v2 + "'");
  std::string child = InsertChild(v1);
  auto ids = [&](const std::vector<std::string>& args) {
    std::vector<std::string> all = {"list", "--json"};
    all.insert(all.end(), args.begin(), args.end());
    auto r = Ctl(all);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::string> out;
    if (r.exit_code != 0) return out;
    auto doc = ParseJson(r.out);
    for (const auto& run : doc["runs"].GetArray()) out.push_back(Str(run["id"]));
    return out;
  };
  EXPECT_EQ(ids({"--version", "2"}), std::vector<std::string>{v2});
  EXPECT_EQ(ids({"--version", "1", "--workflow", "orders"}), std::vector<std::string>{v1});
  EXPECT_EQ(ids({"--since", "1h"}), (std::vector<std::string>{child, v1}));
  EXPECT_EQ(ids({"--until", "2h"}), std::vector<std::string>{v2});
  EXPECT_EQ(ids({"--since", "1d", "--until", "90m"}), std::vector<std::string>{v2});
  EXPECT_EQ(ids({"--parent", v1}), std::vector<std::string>{child});
  EXPECT_TRUE(ids({"--parent", v2}).empty());

  // RFC 3339, in UTC and with an offset.
  const std::string four_hours_ago = db_->Query(
      "SELECT to_char(now() AT TIME ZONE 'UTC' - interval '4 hours', "
      "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')");
  const std::string two_hours_ago_plus_one = db_->Query(
      "SELECT to_char(now() AT TIME ZONE 'UTC' - interval '1 hour', "
      "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+01:00\"')");
  EXPECT_EQ(ids({"--since", four_hours_ago, "--until", two_hours_ago_plus_one}),
            std::vector<std::string>{v2});

  for (const auto& [flag, value] :
       std::vector<std::pair<std::string, std::string>>{{"--since", "yesterday"},
                                                        {"--until", "5x"},
                                                        {"--since", "2026-02-30T00:00:00Z"},
                                                        {"--until", "2026-11-26T10:00:00"},
                                                        {"--version", "abc"},
                                                        {"--version", "0"},
                                                        {"--parent", "nope"}}) {
    auto r = CtlRaw({"--database-url", kUnreachableUrl, "list", flag, value});
    EXPECT_EQ(r.exit_code, 2) << flag << " " << value << ": " << r.err;
    EXPECT_TRUE(Contains(r.err, flag)) << flag << " " << value;
  }
}

// --- show: the timeline ------------------------------------------------------------------------

TEST_F(CtlTest, ShowPrintsTheTimelineWithPendingEntriesAndChildren) {
  std::string id = Start("order", R"({"order": 1})");
  Claim(id, "order");
  db_->Query(
      "UPDATE kagzi_runs SET deadline_at = now() + interval '1 hour',"
      " cancel_requested = true, cancel_reason = 'stop soon' WHERE id = '" +
      id + "'");
  std::string older = InsertChild(id, "COMPLETED", "1 minute");
  std::string newer = InsertChild(id, "PENDING");
  // A journal with every kind of entry, as the daemon records them.
  db_->Query(
      "INSERT INTO kagzi_steps (run_id, step_id, seq, kind, status, output, error, error_kind,"
      " attempts, wake_at, started_at, finished_at, event_name, child_run_id) VALUES "
      "('" +
      id +
      "', 'fetch', 0, 'step', 'COMPLETED', '{\"user\": 7}', NULL, NULL, 1, NULL,"
      "  now() - interval '2 seconds', now() - interval '500 milliseconds', NULL, NULL),"
      "('" +
      id +
      "', 'charge', 1, 'step', 'RETRYING', NULL, 'gateway timeout', 'retryable', 2,"
      "  now() + interval '30 seconds', now(), now(), NULL, NULL),"
      "('" +
      id +
      "', 'approval', 2, 'event', 'WAITING', NULL, NULL, NULL, 1,"
      "  now() + interval '1 hour', now(), now(), 'approved', NULL),"
      "('" +
      id +
      "', 'ship', 3, 'child', 'WAITING', NULL, NULL, NULL, 1, NULL, now(), now(),"
      "  NULL, '" +
      newer +
      "'),"
      "('" +
      id +
      "', 'audit', 4, 'step', 'FAILED', NULL, 'too slow', 'timeout', 1, NULL,"
      "  now(), now(), NULL, NULL)");

  auto show = Ctl({"show", id});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  for (const auto& part :
       {"deadline:", "cancel:", "requested, pending: stop soon", "DETAIL", "COMPLETED", "RETRYING",
        "WAITING", "FAILED", "1.500s", "next attempt ", "after retryable error: gateway timeout",
        "event \"approved\": waiting until ", "timeout error: too slow", "CHILD"}) {
    EXPECT_TRUE(Contains(show.out, part));
  }
  EXPECT_TRUE(Contains(show.out, "child " + newer + ": waiting"));
  EXPECT_TRUE(Contains(show.out, older));
  // The children table comes after the journal, oldest first.
  EXPECT_LT(show.out.find(older), show.out.find(newer, show.out.find("CHILD")));

  auto json = Ctl({"show", id, "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  auto doc = ParseJson(json.out);
  ExpectMembers(doc, kRunMembers);
  EXPECT_TRUE(doc["deadline_at"].IsString());
  EXPECT_TRUE(doc["cancel_requested"].GetBool());
  EXPECT_EQ(Str(doc["cancel_reason"]), "stop soon");
  EXPECT_TRUE(doc["parent_run_id"].IsNull());
  ASSERT_TRUE(doc["children"].IsArray());
  ASSERT_EQ(doc["children"].Size(), 2u);
  EXPECT_EQ(Str(doc["children"][0]), older);
  EXPECT_EQ(Str(doc["children"][1]), newer);
  const auto& steps = doc["steps"];
  ASSERT_EQ(steps.Size(), 5u);
  for (const auto& step : steps.GetArray()) ExpectMembers(step, kStepMembers);
  EXPECT_EQ(Str(steps[0]["status"]), "COMPLETED");
  EXPECT_TRUE(steps[0]["error_kind"].IsNull());
  EXPECT_EQ(Str(steps[1]["status"]), "RETRYING");
  EXPECT_EQ(steps[1]["attempts"].GetInt(), 2);
  EXPECT_EQ(Str(steps[1]["error_kind"]), "retryable");
  EXPECT_TRUE(steps[1]["wake_at"].IsString());
  EXPECT_EQ(Str(steps[2]["status"]), "WAITING");
  EXPECT_EQ(Str(steps[2]["kind"]), "event");
  EXPECT_EQ(Str(steps[2]["event_name"]), "approved");
  EXPECT_EQ(Str(steps[3]["child_run_id"]), newer);
  EXPECT_TRUE(steps[3]["event_name"].IsNull());
  EXPECT_EQ(Str(steps[4]["error_kind"]), "timeout");
  EXPECT_EQ(Str(steps[4]["error"]), "too slow");

  // The child links back to its parent.
  auto child = Ctl({"show", newer, "--json"});
  ASSERT_EQ(child.exit_code, 0) << child.err;
  auto child_doc = ParseJson(child.out);
  EXPECT_EQ(Str(child_doc["parent_run_id"]), id);
  EXPECT_EQ(child_doc["children"].Size(), 0u);
  EXPECT_TRUE(Contains(Ctl({"show", newer}).out, "parent:"));
}

// --- status: runs no live daemon can run --------------------------------------------------------

TEST_F(CtlTest, StatusSaysWhenNoLiveDaemonHasTheRunsWorkflowVersion) {
  std::string unpinned = Start("report");
  auto r = Ctl({"status", unpinned});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "waiting:"));
  EXPECT_TRUE(Contains(r.out, "no live kagzid has workflow \"report\" loaded"));
  auto json = Ctl({"status", unpinned, "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  auto doc = ParseJson(json.out);
  ExpectMembers(doc, kRunMembers);
  EXPECT_EQ(Str(doc["blocked_reason"]), "no live kagzid has workflow \"report\" loaded");

  // A live daemon with version 2: the unpinned run is not blocked (it will
  // take version 2), but a run pinned to version 1 is.
  RegisterLive({LoadedWorkflow{{"report", 2}, "/plugins/report-v2.so", "report"}});
  std::string pinned = Start("report");
  db_->Query("UPDATE kagzi_runs SET version = 1 WHERE id = '" + pinned + "'");
  auto unblocked = Ctl({"status", unpinned, "--json"});
  ASSERT_EQ(unblocked.exit_code, 0) << unblocked.err;
  EXPECT_TRUE(ParseJson(unblocked.out)["blocked_reason"].IsNull());
  EXPECT_TRUE(Lacks(Ctl({"status", unpinned}).out, "waiting:"));

  auto stuck = Ctl({"status", pinned});
  ASSERT_EQ(stuck.exit_code, 0) << stuck.err;
  EXPECT_TRUE(Contains(stuck.out, "waiting:"));
  EXPECT_TRUE(Contains(stuck.out, "no live kagzid has workflow \"report\" version 1 loaded"));
  EXPECT_TRUE(Contains(stuck.out, "live daemons have version 2"));
  auto stuck_json = Ctl({"status", pinned, "--json"});
  EXPECT_TRUE(Contains(Str(ParseJson(stuck_json.out)["blocked_reason"]),
                       "no live kagzid has workflow \"report\" version 1 loaded"));

  // A finished run waits for nothing.
  std::string failed = StartAndFail("payment", "charge", "declined");
  auto done = Ctl({"status", failed, "--json"});
  EXPECT_TRUE(ParseJson(done.out)["blocked_reason"].IsNull());
}

// --- workflows: versions with open runs --------------------------------------------------------

TEST_F(CtlTest, WorkflowsListsEachVersionWithItsOpenRunsEvenWithoutADaemon) {
  RegisterLive({LoadedWorkflow{{"orders", 2}, "/plugins/orders-v2.so", "orders"}});
  std::string old_run = Start("orders");
  db_->Query("UPDATE kagzi_runs SET version = 1 WHERE id = '" + old_run + "'");
  Start("orders");  // not pinned yet

  auto r = Ctl({"workflows", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto doc = ParseJson(r.out);
  ASSERT_EQ(doc["workflows"].Size(), 3u);
  const auto& unpinned = doc["workflows"][0];
  ExpectMembers(unpinned, {"workflow", "version", "daemons", "open_runs", "plugin_path"});
  EXPECT_TRUE(unpinned["version"].IsNull());
  EXPECT_EQ(unpinned["open_runs"].GetInt(), 1);
  EXPECT_EQ(unpinned["daemons"].Size(), 1u);
  EXPECT_TRUE(unpinned["plugin_path"].IsNull());
  const auto& v1 = doc["workflows"][1];
  EXPECT_EQ(v1["version"].GetInt(), 1);
  EXPECT_EQ(v1["open_runs"].GetInt(), 1);
  EXPECT_EQ(v1["daemons"].Size(), 0u);
  EXPECT_TRUE(v1["plugin_path"].IsNull());
  const auto& v2 = doc["workflows"][2];
  EXPECT_EQ(v2["version"].GetInt(), 2);
  EXPECT_EQ(v2["open_runs"].GetInt(), 0);
  ASSERT_EQ(v2["daemons"].Size(), 1u);
  EXPECT_EQ(Str(v2["daemons"][0]), kDaemonId);
  EXPECT_EQ(Str(v2["plugin_path"]), "/plugins/orders-v2.so");

  auto human = Ctl({"workflows"});
  ASSERT_EQ(human.exit_code, 0) << human.err;
  std::vector<std::vector<std::string>> rows;
  for (const auto& line : Lines(human.out)) {
    std::istringstream in(line);
    std::vector<std::string> cells;
    for (std::string cell; in >> cell;) cells.push_back(cell);
    rows.push_back(cells);
  }
  ASSERT_EQ(rows.size(), 4u) << human.out;
  EXPECT_EQ(rows[0],
            (std::vector<std::string>{"WORKFLOW", "VERSION", "DAEMONS", "OPEN", "RUNS", "PLUGIN"}));
  EXPECT_EQ(rows[1], (std::vector<std::string>{"orders", "unpinned", "1", "1", "-"}));
  EXPECT_EQ(rows[2], (std::vector<std::string>{"orders", "1", "0", "1", "-"}));
  EXPECT_EQ(rows[3], (std::vector<std::string>{"orders", "2", "1", "0", "/plugins/orders-v2.so"}));
}

// --- configuration, help and usage ------------------------------------------------------------

TEST_F(CtlTest, ReadsTheDaemonConfigFile) {
  const std::string path = tmp_.path() + "/kagzid.toml";
  WriteFile(path, "database_url = \"" + db_->url() +
                      "\"\nplugin_dir = \"/opt/plugins\"\nconcurrency = 4\n"
                      "lease_ttl = \"20s\"\nlog_level = \"debug\"\n");
  auto by_flag = CtlRaw({"-c", path, "list"});
  EXPECT_EQ(by_flag.exit_code, 0) << by_flag.err;
  EXPECT_EQ(by_flag.out, "no runs\n");
  auto by_env = kagzi::testing::RunCommand({kagzictl_, "list"}, {{"KAGZI_CONFIG", path}});
  EXPECT_EQ(by_env.exit_code, 0) << by_env.err;

  const std::string missing = tmp_.path() + "/missing.toml";
  auto gone = CtlRaw({"--config", missing, "list"});
  EXPECT_EQ(gone.exit_code, 2) << gone.err;
  EXPECT_TRUE(Contains(gone.err, missing));

  const std::string bad = tmp_.path() + "/bad.toml";
  WriteFile(bad, "no_such_key = 1\n");
  auto refused = CtlRaw({"-c", bad, "list"});
  EXPECT_EQ(refused.exit_code, 2) << refused.err;
  EXPECT_TRUE(Contains(refused.err, "no_such_key"));
}

TEST_F(CtlTest, HelpDocumentsExitCodesAndUsageErrorsExit2) {
  auto help = CtlRaw({"--help"});
  EXPECT_EQ(help.exit_code, 0) << help.err;
  EXPECT_TRUE(Contains(help.out, "Exit codes:"));
  for (const auto& line : {"  0  success", "  1  the run FAILED", "  2  bad usage",
                           "  3  cannot reach", "  4  the run has not finished"}) {
    EXPECT_TRUE(Contains(help.out, line));
  }
  for (const auto& command : {"start", "status", "show", "list", "result", "wait", "cancel",
                              "signal", "retry", "workflows", "workers"}) {
    auto r = CtlRaw({command, "--help"});
    EXPECT_EQ(r.exit_code, 0) << command << ": " << r.err;
    EXPECT_TRUE(Contains(r.out, "Exit codes:")) << command;
    EXPECT_TRUE(Contains(r.out, "--json")) << command;
  }

  auto version = CtlRaw({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.out, std::string("kagzictl ") + KAGZI_VERSION + "\n");

  auto nothing = CtlRaw({});
  EXPECT_EQ(nothing.exit_code, 2) << nothing.err;
  auto unknown_command = CtlRaw({"frobnicate"});
  EXPECT_EQ(unknown_command.exit_code, 2) << unknown_command.err;
  auto unknown_option = CtlRaw({"list", "--frobnicate"});
  EXPECT_EQ(unknown_option.exit_code, 2) << unknown_option.err;
  EXPECT_TRUE(Contains(unknown_option.err, "kagzictl: "));
  auto missing_run = CtlRaw({"status"});
  EXPECT_EQ(missing_run.exit_code, 2) << missing_run.err;
}

// --- hostile names, keys and payloads ----------------------------------------------

// Names and idempotency keys are bound as parameters, never spliced into
// SQL: quotes and SQL text are stored verbatim and printed safely, and the
// tables are intact.
TEST_F(CtlTest, SqlAndQuotesInNamesAndKeysAreStoredVerbatimAndShownSafely) {
  const std::string name = "x'); DROP TABLE kagzi_runs;--";
  const std::string key = R"(it's "order" 42 \ '); DELETE FROM kagzi_steps;--)";
  const std::string input = R"({"q":"'; DROP TABLE kagzi_events;--","b":"\\"})";
  auto started = Ctl({"start", name, "--allow-unknown", "--id", key, "--input", input});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  const std::string id = started.out.substr(0, started.out.find('\n'));
  ASSERT_TRUE(IsUuid(id)) << started.out;

  // Stored exactly as given.
  EXPECT_EQ(RunColumn(id, "workflow"), name);
  EXPECT_EQ(RunColumn(id, "idempotency_key"), key);
  EXPECT_EQ(RunColumn(id, "input->>'q'"), "'; DROP TABLE kagzi_events;--");
  // The same key finds the same run; the note on stderr quotes the key.
  auto again = Ctl({"start", name, "--allow-unknown", "--id", key});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.out, started.out);
  EXPECT_TRUE(Contains(again.err, "already exists for idempotency key \"" + key + "\""));

  // Human output: the name and key as typed, on their own lines or cells.
  auto list = Ctl({"list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(Contains(list.out, id + "  " + name));
  auto filtered = Ctl({"list", "--workflow", name});
  ASSERT_EQ(filtered.exit_code, 0) << filtered.err;
  EXPECT_TRUE(Contains(filtered.out, id));
  auto show = Ctl({"show", id});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_TRUE(Contains(show.out, "workflow:  " + name + "\n"));
  EXPECT_TRUE(Contains(show.out, "key:       " + key + "\n"));
  auto status = Ctl({"status", id});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_TRUE(Contains(status.out, name));

  // JSON output: valid documents holding the exact strings.
  auto list_json = Ctl({"list", "--json"});
  ASSERT_EQ(list_json.exit_code, 0) << list_json.err;
  auto runs = ParseJson(list_json.out);
  ASSERT_TRUE(runs["runs"].IsArray());
  ASSERT_EQ(runs["runs"].Size(), 1u);
  EXPECT_EQ(Str(runs["runs"][0]["workflow"]), name);
  EXPECT_EQ(Str(runs["runs"][0]["idempotency_key"]), key);
  auto show_json = Ctl({"show", id, "--json"});
  ASSERT_EQ(show_json.exit_code, 0) << show_json.err;
  auto doc = ParseJson(show_json.out);
  EXPECT_EQ(Str(doc["workflow"]), name);
  EXPECT_EQ(Str(doc["idempotency_key"]), key);
  EXPECT_EQ(Str(doc["input"]["q"]), "'; DROP TABLE kagzi_events;--");
  EXPECT_EQ(Str(doc["input"]["b"]), "\\");

  // An event named like SQL, with quotes in its data.
  auto signal = Ctl({"signal", id, name, "--data", R"({"why":"it's \"quoted\""})"});
  ASSERT_EQ(signal.exit_code, 0) << signal.err;
  EXPECT_EQ(db_->Query("SELECT name FROM kagzi_events WHERE run_id = '" + id + "'"), name);

  // Every table is still there, with what was written.
  for (const char* table : {"kagzi_runs", "kagzi_steps", "kagzi_events", "kagzi_workflows"}) {
    EXPECT_EQ(db_->Query(std::string("SELECT to_regclass('") + table + "') IS NOT NULL"), "t")
        << table;
  }
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_runs"), "1");
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_events"), "1");
}

// Control characters (C0, DEL, C1) in names and keys are refused before
// the database is contacted, with the byte named and not echoed raw.
TEST_F(CtlTest, ControlCharactersInNamesAndKeysAreRefusedBeforeConnecting) {
  const std::string some_run = "00000000-0000-4000-8000-000000000000";
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"start", "two\nlines"}, "the workflow name contains a control character (0x0a)"},
      {{"start", "esc\x1b[2J"}, "the workflow name contains a control character (0x1b)"},
      {{"start", "nel\xc2\x85"}, "the workflow name contains a control character (U+0085)"},
      {{"start", "w", "--id", "key\r"}, "the idempotency key (--id) contains a control character"},
      {{"start", "w", "--id", "kagzi:child:" + some_run + "/charge"},
       "the idempotency key (--id) begins with \"kagzi:\", which is reserved"},
      {{"start", "w", "--id", std::string(256, 'k')},
       "the idempotency key (--id) is 256 bytes, longer than the limit of 255 bytes"},
      {{"start", std::string(256, 'w')},
       "the workflow name is 256 bytes, longer than the limit of 255 bytes"},
      {{"signal", some_run, "ev\x7f"}, "the event name contains a control character (0x7f)"},
      {{"signal", some_run, std::string(256, 'e')},
       "the event name is 256 bytes, longer than the limit of 255 bytes"},
      {{"list", "--workflow", "a\tb"}, "--workflow contains a control character (0x09)"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"--database-url", kUnreachableUrl};
    args.insert(args.end(), c.args.begin(), c.args.end());
    auto r = CtlRaw(args);
    EXPECT_EQ(r.exit_code, 2) << c.message << ": " << r.err;
    EXPECT_TRUE(Contains(r.err, c.message));
    EXPECT_FALSE(ContainsControlBytes(r.err)) << r.err;
  }
}

// max_payload_bytes bounds the run input (--input, --input-file, stdin)
// and event data; errors name the limit and the key, and an endless input
// file is not read to its end.
TEST_F(CtlTest, PayloadLimitsNameTheConfigKey) {
  const std::map<std::string, std::string> small = {{"KAGZI_MAX_PAYLOAD_BYTES", "1024"}};
  const std::string big = "\"" + std::string(2000, 'x') + "\"";
  auto input = CtlRaw({"--database-url", kUnreachableUrl, "start", "w", "--input", big}, small);
  EXPECT_EQ(input.exit_code, 2) << input.err;
  EXPECT_TRUE(Contains(input.err,
                       "input (--input) is 2002 bytes, larger than the limit of 1024 bytes "
                       "(max_payload_bytes)"));

  const auto started = std::chrono::steady_clock::now();
  auto endless =
      CtlRaw({"--database-url", kUnreachableUrl, "start", "w", "--input-file", "/dev/zero"}, small);
  EXPECT_EQ(endless.exit_code, 2) << endless.err;
  EXPECT_TRUE(Contains(endless.err,
                       "input file \"/dev/zero\" is larger than the limit of 1024 bytes "
                       "(max_payload_bytes)"));
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(20));

  auto data = CtlRaw({"--database-url", kUnreachableUrl, "signal",
                      "00000000-0000-4000-8000-000000000000", "go", "--data", big},
                     small);
  EXPECT_EQ(data.exit_code, 2) << data.err;
  EXPECT_TRUE(Contains(data.err,
                       "event data (--data) is 2002 bytes, larger than the limit of 1024 bytes "
                       "(max_payload_bytes)"));

  // At the limit is fine.
  const std::string exact = "\"" + std::string(1022, 'x') + "\"";
  auto fits = Ctl({"start", "w", "--allow-unknown", "--input", exact}, small);
  EXPECT_EQ(fits.exit_code, 0) << fits.err;
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_runs"), "1");
}

// The store refuses what kagzictl refuses, for callers that skip kagzictl.
TEST_F(CtlTest, StoreRefusesBadNamesKeysAndPayloads) {
  StartRequest request;
  request.workflow = "w";
  request.input = "{}";
  request.idempotency_key = "kagzi:child:00000000-0000-4000-8000-000000000000/s";
  auto reserved = store_->StartRun(request);
  ASSERT_FALSE(reserved.ok());
  EXPECT_TRUE(reserved.status().IsInvalidArgument()) << reserved.status().message();
  request.idempotency_key = "ok";
  request.workflow = "bad\nname";
  EXPECT_FALSE(store_->StartRun(request).ok());
  request.workflow = "w";
  request.input = R"("\udc00")";
  EXPECT_FALSE(store_->StartRun(request).ok());
  request.input = "{";
  EXPECT_FALSE(store_->StartRun(request).ok());
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_runs"), "0");

  request.input = "{}";
  auto run = store_->StartRun(request);
  ASSERT_TRUE(run.ok()) << run.status().message();
  Status bad_name = store_->SendEvent(run->run_id, "a\xc2\x9b", "null");
  EXPECT_TRUE(bad_name.IsInvalidArgument()) << bad_name.message();
  Status bad_data = store_->SendEvent(run->run_id, "go", R"(["\ude00"])");
  EXPECT_TRUE(bad_data.IsInvalidArgument()) << bad_data.message();
  EXPECT_EQ(db_->Query("SELECT count(*) FROM kagzi_events"), "0");
}

}  // namespace
}  // namespace kagzi
