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
#include <string>
#include <thread>
#include <vector>

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
    "id",          "workflow",      "version",        "status",     "input",
    "output",      "error",         "attempts",       "created_at", "started_at",
    "finished_at", "parent_run_id", "idempotency_key"};
const std::vector<std::string> kStepMembers = {"step_id",    "seq",        "kind",     "status",
                                               "output",     "error",      "attempts", "wake_at",
                                               "started_at", "finished_at"};

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
    Status st = store_->FailRun(lease, error);
    EXPECT_TRUE(st.ok()) << st.message();
    return id;
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

  auto started = Ctl({"start", "hello", "--allow-unknown", "--wait", "--timeout", "500ms"});
  EXPECT_EQ(started.exit_code, 4) << started.err;
  auto lines = Lines(started.out);
  ASSERT_EQ(lines.size(), 1u) << started.out;
  EXPECT_TRUE(IsUuid(lines[0]));
  EXPECT_TRUE(Contains(started.err, "timed out"));
  EXPECT_TRUE(Contains(started.err, lines[0]));

  auto bad = Ctl({"wait", id, "--timeout", "soon"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_TRUE(Contains(bad.err, "--timeout"));
  auto needs_wait = Ctl({"start", "hello", "--timeout", "1"});
  EXPECT_EQ(needs_wait.exit_code, 2) << needs_wait.err;
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
  for (const auto& command :
       {"start", "status", "show", "list", "result", "wait", "workflows", "workers"}) {
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

}  // namespace
}  // namespace kagzi
