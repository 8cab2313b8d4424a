// ABI tests: the plugin host against a corpus of broken and hostile plugins
// (tests/abi/plugins/, built into KAGZI_ABI_PLUGIN_DIR; see CMakeLists.txt).
//
// AbiRegistryTest drives the loader in-process, without a database: every
// broken file is refused with its named reason, the good plugins load, a
// plugin is accepted or refused whole, a rescan retries nothing.
// AbiKagzidTest runs the real kagzid over the same corpus on the test
// PostgreSQL: each refusal is in its log, it keeps serving hello and
// abi_good, every run-time misbehaviour (abi_runtime*.so) ends in the
// documented state with an error naming the problem, and SIGTERM stops it
// cleanly. Each test builds its own plugin directory and database.
#include <signal.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kagzi/core/store.h"
#include "plugin_host.h"
#include "support/process.h"
#include "support/test_db.h"

namespace kagzi {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;
using testing::CommandResult;
using testing::RequiredEnv;
using testing::RunCommand;
using testing::TempDir;

// ---------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------

// A plugin file that must be refused, and fragments its reason must contain.
struct ExpectedRefusal {
  std::string file;
  std::vector<std::string> reason_fragments;
};

// Every refusal the corpus directory must produce; `dir` is that directory.
std::vector<ExpectedRefusal> ExpectedRefusals(const std::string& dir) {
  return {
      {"bogus.so", {"not an ELF shared object"}},
      {"broken_abi_major.so", {"ABI 2.0, host speaks 1.x"}},
      {"broken_abi_minor.so",
       {"ABI 1.7 is newer than this host's ABI 1." + std::to_string(KAGZI_ABI_MINOR) +
        "; upgrade kagzid"}},
      {"broken_already_loaded.so",
       {"workflow \"abi_good\" version 1 is already loaded from \"" + dir + "/abi_good.so\""}},
      {"broken_bad_workflow_name.so", {"workflow #0 name contains a control character (0x0a)"}},
      {"broken_directory.so", {"not a regular file"}},
      {"broken_duplicate_workflow.so", {"workflow \"abi_duplicate\" version 3 is declared twice"}},
      {"broken_empty.so", {"not an ELF shared object"}},
      {"broken_entry_null.so", {"kagzi_plugin_entry returned NULL"}},
      {"broken_entry_throws.so", {"kagzi_plugin_entry threw a C++ exception across the C ABI"}},
      {"broken_group_writable.so",
       {"the file is group- or world-writable (mode 0664); run chmod go-w"}},
      {"broken_huge_workflow_count.so",
       {"declares 4294967295 workflows, more than the limit of 4096"}},
      // 10 MiB, with unreadable pages after the first 4 KiB: refused by the
      // 256-byte bound, without a crash.
      {"broken_huge_workflow_name.so",
       {"workflow #0 name is ", "longer than the limit of 255 bytes"}},
      {"broken_init_error.so", {"init() returned status 3"}},
      {"broken_init_throws.so", {"init() threw a C++ exception across the C ABI"}},
      {"broken_no_entry.so", {"no kagzi_plugin_entry symbol"}},
      {"broken_no_workflows.so", {"declares no workflows"}},
      {"broken_non_utf8_plugin_name.so", {"plugin name is not valid UTF-8 (at byte 3)"}},
      {"broken_non_utf8_workflow_name.so", {"workflow #0 name is not valid UTF-8 (at byte 3)"}},
      {"broken_null_plugin_name.so", {"plugin name is NULL"}},
      {"broken_null_run.so", {"workflow \"abi_null_run\" version 1: run function is NULL"}},
      {"broken_null_workflow_array.so", {"declares 2 workflows but the workflow array is NULL"}},
      {"broken_null_workflow_name.so", {"workflow #0 name is NULL"}},
      {"broken_partial.so", {"workflow \"abi_partial_bad\" version 1: run function is NULL"}},
      {"broken_struct_size.so",
       {"plugin descriptor struct_size 8 is smaller than ABI 1." + std::to_string(KAGZI_ABI_MINOR) +
        "'s"}},
      {"broken_undefined_symbol.so",
       {"dlopen failed: ", "undefined symbol: abi_symbol_nobody_defines"}},
      {"broken_reserved.so", {"workflow \"abi_reserved\": reserved0 is not 0"}},
      {"broken_version_huge.so",
       {"workflow \"abi_version_huge\": version 4294967295 is larger than the maximum "
        "2147483647"}},
      {"broken_version_zero.so", {"workflow \"abi_version_zero\": version must be >= 1"}},
      {"broken_workflow_abi.so", {"workflow #0: ABI 2.0, host speaks 1.x"}},
  };
}

// The plugins that must load, and the workflows they must register.
const std::vector<std::string> kLoadedFiles = {"abi_good.so", "abi_limits.so", "abi_runtime.so",
                                               "abi_runtime_cxx.so", "hello.so"};
const std::vector<WorkflowKey> kLoadedWorkflows = {
    {"abi_good", 1},
    {"abi_step_in_step", 1},
    {"abi_duplicate_step_id", 1},
    {"abi_swallow_suspend", 1},
    {"abi_fake_suspend", 1},
    {"abi_bad_output", 1},
    {"abi_bad_step_json", 1},
    {"abi_bad_step_id", 1},
    {"abi_nondeterminism", 1},
    {"abi_permanent", 1},
    {"abi_unknown_status", 1},
    {"abi_run_throws", 1},
    {"abi_run_throws_int", 1},
    {"abi_step_throws", 1},
    {"abi_foreign_thread", 1},
    {"abi_step_result_too_big", 1},
    {"abi_step_result_at_limit", 1},
    {"abi_output_too_big", 1},
    {"abi_child_input_too_big", 1},
    {"hello", 1},
};

// Files MakeCorpusDir creates at test time rather than copying from the build.
const std::vector<std::string> kTestTimeFiles = {"broken_directory.so", "broken_empty.so",
                                                 "broken_group_writable.so", "hello.so"};

// Copies the corpus (exactly the files named above, so stale build outputs
// never leak in), hello.so and the test-time cases into <root>/plugins with
// safe modes (directory 0755, files 0644), whatever the build's umask.
// Test-time cases: a group-writable copy of hello.so (mode 0664), an empty
// file and a directory named like plugins.
std::string MakeCorpusDir(const std::string& root) {
  const fs::path dir = fs::path(root) / "plugins";
  fs::create_directory(dir);
  fs::permissions(dir, fs::perms(0755));
  std::vector<std::string> corpus = kLoadedFiles;
  for (const auto& e : ExpectedRefusals("")) corpus.push_back(e.file);
  for (const auto& file : corpus) {
    if (std::find(kTestTimeFiles.begin(), kTestTimeFiles.end(), file) != kTestTimeFiles.end()) {
      continue;
    }
    fs::copy_file(fs::path(KAGZI_ABI_PLUGIN_DIR) / file, dir / file);
  }
  const fs::path hello = fs::path(RequiredEnv("KAGZI_TEST_PLUGIN_DIR")) / "hello.so";
  fs::copy_file(hello, dir / "hello.so");
  fs::copy_file(hello, dir / "broken_group_writable.so");
  std::ofstream(dir / "broken_empty.so").close();
  for (const auto& entry : fs::directory_iterator(dir)) {
    fs::permissions(entry.path(), fs::perms(0644));
  }
  fs::permissions(dir / "broken_group_writable.so", fs::perms(0664));
  fs::create_directory(dir / "broken_directory.so");
  fs::permissions(dir / "broken_directory.so", fs::perms(0755));
  return dir.string();
}

::testing::AssertionResult Contains(const std::string& haystack, const std::string& needle) {
  if (haystack.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << needle << "\" not found in:\n" << haystack;
}

// ---------------------------------------------------------------------------
// The loader, in-process
// ---------------------------------------------------------------------------

TEST(AbiRegistryTest, RefusesEachBrokenPluginWithItsReasonAndLoadsTheGoodOnes) {
  TempDir tmp;
  const std::string dir = MakeCorpusDir(tmp.path());
  daemon::PluginRegistry registry;
  daemon::ScanReport report = registry.Scan(dir);
  ASSERT_TRUE(report.directory_error.ok()) << report.directory_error.message();

  std::map<std::string, std::string> refused;  // file name -> reason
  for (const auto& r : report.refusals) {
    EXPECT_EQ(refused.count(fs::path(r.path).filename()), 0u) << r.path << " refused twice";
    refused[fs::path(r.path).filename()] = r.reason;
    EXPECT_EQ(r.ToString(), "plugin \"" + r.path + "\" refused: " + r.reason);
  }
  const auto expected = ExpectedRefusals(dir);
  for (const auto& e : expected) {
    SCOPED_TRACE(e.file);
    auto it = refused.find(e.file);
    ASSERT_NE(it, refused.end()) << e.file << " was not refused";
    for (const auto& fragment : e.reason_fragments) EXPECT_TRUE(Contains(it->second, fragment));
  }
  EXPECT_EQ(report.refusals.size(), expected.size());

  std::vector<std::string> loaded;
  for (const auto& p : report.loaded_paths) loaded.push_back(fs::path(p).filename());
  std::sort(loaded.begin(), loaded.end());
  EXPECT_EQ(loaded, kLoadedFiles);

  // Exactly the good plugins' workflows: a refused plugin registers nothing,
  // not even its well-formed workflows (abi_partial, abi_already_loaded_other,
  // abi_init_error), and abi_good stays bound to abi_good.so.
  std::vector<WorkflowKey> keys = registry.LoadedKeys();
  EXPECT_EQ(keys.size(), kLoadedWorkflows.size());
  for (const auto& key : kLoadedWorkflows) {
    EXPECT_NE(std::find(keys.begin(), keys.end(), key), keys.end()) << key.name;
  }
  for (const char* name :
       {"abi_partial", "abi_already_loaded_other", "abi_init_error", "abi_init_throws",
        "abi_version_huge", "abi_duplicate", "abi_huge_count", "abi_non_utf8"}) {
    for (const auto& key : keys) EXPECT_NE(key.name, name) << "registered from a refused plugin";
  }
  auto good = registry.Find({"abi_good", 1});
  ASSERT_TRUE(good.has_value());
  EXPECT_EQ(good->plugin_path, dir + "/abi_good.so");
  EXPECT_EQ(good->plugin_name, "abi_good");

  // A rescan (SIGHUP) neither reloads nor re-refuses files it has seen.
  daemon::ScanReport again = registry.Scan(dir);
  EXPECT_TRUE(again.loaded_paths.empty());
  EXPECT_TRUE(again.refusals.empty());
  EXPECT_EQ(registry.LoadedKeys().size(), kLoadedWorkflows.size());
  registry.Deinit();
}

TEST(AbiRegistryTest, RefusesAGroupWritableDirectoryWhole) {
  TempDir tmp;
  const std::string dir = MakeCorpusDir(tmp.path());
  fs::permissions(dir, fs::perms(0775));
  daemon::PluginRegistry registry;
  daemon::ScanReport report = registry.Scan(dir);
  const std::string expected = "plugin_dir \"" + dir +
                               "\" is unsafe: the directory is group- or world-writable "
                               "(mode 0775)";
  EXPECT_TRUE(Contains(report.directory_error.message(), expected));
  EXPECT_TRUE(report.loaded_paths.empty());
  EXPECT_TRUE(report.refusals.empty());
  EXPECT_TRUE(registry.LoadedKeys().empty());
}

// ---------------------------------------------------------------------------
// The real kagzid
// ---------------------------------------------------------------------------

class AbiKagzidTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = testing::TestDatabase::Create();
    ASSERT_NE(db_, nullptr);
    plugin_dir_ = MakeCorpusDir(tmp_.path());
    log_path_ = tmp_.path() + "/kagzid.log";
    kagzid_ = std::make_unique<testing::Process>(
        std::vector<std::string>{RequiredEnv("KAGZI_TEST_KAGZID"), "-c", "/dev/null",
                                 "--database-url", db_->url(), "--plugin-dir", plugin_dir_,
                                 "--poll-interval", "200ms", "--lease-ttl", "5s",
                                 "--heartbeat-interval", "1s", "--log-level", "info",
                                 // abi_limits.so's payloads are sized against this.
                                 "--max-payload-bytes", "4096"},
        std::map<std::string, std::string>{}, log_path_);
    ASSERT_TRUE(kagzid_->Start());
    ASSERT_TRUE(kagzid_->WaitForLog(" ready: instance ", seconds(60)))
        << "kagzid did not become ready:\n"
        << kagzid_->Log();
    store_ = std::make_unique<PgStore>(PgStoreOptions{db_->url(), "abi_test", 2});
  }

  void TearDown() override {
    if (HasFailure() && kagzid_) std::cerr << "--- kagzid log ---\n" << kagzid_->Log();
  }

  CommandResult Ctl(std::vector<std::string> args) {
    std::vector<std::string> argv{RequiredEnv("KAGZI_TEST_KAGZICTL"), "--database-url", db_->url()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, {}, seconds(60));
  }

  // Starts a run through kagzictl and returns its id ("" on failure).
  std::string Start(const std::string& workflow, const std::string& input) {
    CommandResult r = Ctl({"start", workflow, "--input", input});
    EXPECT_EQ(r.exit_code, 0) << workflow << ": " << r.err;
    std::string id = r.out;
    id.erase(
        std::remove_if(id.begin(), id.end(), [](unsigned char c) { return std::isspace(c) != 0; }),
        id.end());
    EXPECT_EQ(id.size(), 36u) << "kagzictl start " << workflow << " printed: " << r.out;
    return id;
  }

  // Starts a run and waits (kagzictl start --wait) for it to complete.
  void ExpectCompletes(const std::string& workflow, const std::string& input,
                       const std::string& output_fragment) {
    CommandResult r = Ctl({"start", workflow, "--input", input, "--wait", "--timeout", "30"});
    EXPECT_EQ(r.exit_code, 0) << workflow << ": " << r.out << r.err;
    EXPECT_TRUE(Contains(r.out, output_fragment)) << workflow;
  }

  RunRecord WaitTerminal(const std::string& run_id) {
    auto run = store_->WaitForRun(run_id, seconds(30));
    EXPECT_TRUE(run.ok()) << run.status().message();
    if (!run.ok()) return {};
    EXPECT_TRUE(IsTerminal(run->status))
        << "run " << run_id << " (" << run->workflow << ") is still " << RunStatusName(run->status);
    return *run;
  }

  std::vector<StepRecord> Steps(const std::string& run_id) {
    auto steps = store_->GetSteps(run_id);
    EXPECT_TRUE(steps.ok()) << steps.status().message();
    return steps.ok() ? *steps : std::vector<StepRecord>{};
  }

  TempDir tmp_;
  std::unique_ptr<testing::TestDatabase> db_;
  std::string plugin_dir_;
  std::string log_path_;
  std::unique_ptr<testing::Process> kagzid_;
  std::unique_ptr<PgStore> store_;
};

// A run-time misbehaviour and the error its run must fail with.
struct ExpectedFailure {
  std::string workflow;
  std::string input;
  std::vector<std::string> error_fragments;
};

TEST_F(AbiKagzidTest, RefusesBrokenPluginsServesGoodOnesAndFailsMisbehavingRuns) {
  // --- Load time: one named refusal per broken file, the daemon serves on.
  const std::string log = kagzid_->Log();
  const auto refusals = ExpectedRefusals(plugin_dir_);
  for (const auto& e : refusals) {
    SCOPED_TRACE(e.file);
    const std::string prefix = "plugin \"" + plugin_dir_ + "/" + e.file + "\" refused: ";
    const auto at = log.find(prefix);
    ASSERT_NE(at, std::string::npos) << prefix << " not in the log:\n" << log;
    EXPECT_EQ(log.find(prefix, at + 1), std::string::npos) << "refused twice";
    const auto end = log.find('\n', at);
    const std::string reason = log.substr(at + prefix.size(), end - at - prefix.size());
    for (const auto& fragment : e.reason_fragments) EXPECT_TRUE(Contains(reason, fragment));
  }
  EXPECT_TRUE(Contains(log, "plugins: " + std::to_string(kLoadedWorkflows.size()) +
                                " workflow(s) loaded from \"" + plugin_dir_ + "\", " +
                                std::to_string(refusals.size()) + " plugin(s) refused"));
  for (const auto& key : kLoadedWorkflows) {
    EXPECT_TRUE(Contains(log, "loaded workflow \"" + key.name + "\" version 1 from plugin"));
  }
  ASSERT_TRUE(kagzid_->running());

  ExpectCompletes("hello", R"({"name":"abi"})", "Hello, abi!");
  ExpectCompletes("abi_good", R"({"n":1})", R"({"echo":{"n":1}})");

  // --- Run time: first the swallowed SUSPEND, then every other misbehaving
  // run at once; hello and abi_good keep completing afterwards.
  const std::string swallow_ledger = tmp_.path() + "/swallow.ledger";
  const std::string nondeterminism_ledger = tmp_.path() + "/nondeterminism.ledger";
  const std::vector<ExpectedFailure> failures = {
      {"abi_step_in_step",
       "{}",
       {"step \"inner\" called from inside the step function of \"outer\""}},
      {"abi_duplicate_step_id",
       "{}",
       {"step id \"same\" is used twice in one run; step ids must be unique within a run"}},
      {"abi_fake_suspend",
       "{}",
       {"workflow returned KAGZI_SUSPEND although the host never suspended it"}},
      {"abi_bad_output", "{}", {"workflow output is not valid JSON"}},
      {"abi_bad_step_json", "{}", {"result of step \"broken\" is not valid JSON"}},
      {"abi_bad_step_id", "{}", {"step id is empty"}},
      {"abi_nondeterminism",
       "\"" + nondeterminism_ledger + "\"",
       {"non-determinism: call #1 is step \"b\" but the journal recorded step \"a\" there"}},
      {"abi_permanent", "{}", {"abi_permanent: the card was declined"}},
      {"abi_unknown_status", "{}", {"workflow returned unknown status 42"}},
      {"abi_run_throws",
       "{}",
       {"workflow threw a C++ exception across the C ABI: abi_run_throws: thrown through the "
        "C ABI"}},
      {"abi_run_throws_int",
       "{}",
       {"workflow threw a C++ exception across the C ABI: unknown exception"}},
      {"abi_step_throws", "{}", {"step function threw a C++ exception across the C ABI"}},
      {"abi_foreign_thread", "{}", {"the context was called from a thread other than the run's"}},
      {"abi_step_result_too_big",
       "{}",
       {"step result is larger than max_payload_bytes (4096 bytes)"}},
      {"abi_output_too_big",
       "{}",
       {"workflow output is 4097 bytes, larger than the limit of 4096 bytes (max_payload_bytes)"}},
      {"abi_child_input_too_big",
       "{}",
       {"input of child call \"kid\" is 4097 bytes, larger than the limit of 4096 bytes "
        "(max_payload_bytes)"}},
  };
  const std::string swallow_id = Start("abi_swallow_suspend", "\"" + swallow_ledger + "\"");

  // The swallowed SUSPEND: the OK returned after it is not committed and the
  // run stays parked for its 4 s sleep (checked at once, well within it);
  // the misbehaving runs below are started and fail while it sleeps...
  ASSERT_TRUE(
      kagzid_->WaitForLog("abi_swallow_suspend: step after KAGZI_SUSPEND returned 5", seconds(20)));
  ASSERT_TRUE(
      kagzid_->WaitForLog("workflow returned status 0 after the host returned "
                          "KAGZI_SUSPEND; ignored, the run stays parked",
                          seconds(20)));
  {
    auto parked = store_->GetRun(swallow_id);
    ASSERT_TRUE(parked.ok()) << parked.status().message();
    EXPECT_EQ(RunStatusName(parked->status), "SLEEPING");
    EXPECT_FALSE(parked->output.has_value());
    EXPECT_EQ(testing::ReadFile(swallow_ledger), "before\n") << "step \"after\" ran";
  }

  std::map<std::string, std::string> ids;  // workflow -> run id
  for (const auto& f : failures) ids[f.workflow] = Start(f.workflow, f.input);

  for (const auto& f : failures) {
    SCOPED_TRACE(f.workflow);
    const RunRecord run = WaitTerminal(ids[f.workflow]);
    EXPECT_EQ(RunStatusName(run.status), "FAILED");
    EXPECT_FALSE(run.output.has_value()) << *run.output;
    for (const auto& fragment : f.error_fragments) {
      EXPECT_TRUE(Contains(run.error.value_or("(no error)"), fragment));
    }
  }
  {
    auto permanent = store_->GetRun(ids["abi_permanent"]);
    ASSERT_TRUE(permanent.ok()) << permanent.status().message();
    EXPECT_EQ(permanent->error.value_or(""), "abi_permanent: the card was declined");
  }

  // What the failed runs left in their journals.
  EXPECT_TRUE(Steps(ids["abi_step_in_step"]).empty()) << "a step misused the context";
  EXPECT_TRUE(Steps(ids["abi_bad_step_json"]).empty()) << "an invalid result was recorded";
  {
    auto steps = Steps(ids["abi_duplicate_step_id"]);
    ASSERT_EQ(steps.size(), 1u);
    EXPECT_EQ(steps[0].step_id, "same");
  }
  {
    auto steps = Steps(ids["abi_nondeterminism"]);
    ASSERT_EQ(steps.size(), 2u);
    EXPECT_EQ(steps[0].step_id, "a");
    EXPECT_EQ(steps[1].step_id, "nap");
    EXPECT_EQ(testing::ReadFile(nondeterminism_ledger), "a\n") << "step \"b\" ran";
  }
  {
    auto steps = Steps(ids["abi_step_throws"]);
    ASSERT_EQ(steps.size(), 1u);
    EXPECT_EQ(steps[0].step_id, "throws");
    EXPECT_EQ(steps[0].status, StepStatus::kFailed);
    EXPECT_EQ(steps[0].error.value_or(""),
              "step function threw a C++ exception across the C ABI: abi_step_throws: thrown "
              "from a step function");
  }
  EXPECT_TRUE(
      kagzid_->WaitForLog("abi_foreign_thread: get_input returned 5, step returned 5", seconds(5)));
  {
    // The oversized result is recorded as the step's failure, not stored.
    auto steps = Steps(ids["abi_step_result_too_big"]);
    ASSERT_EQ(steps.size(), 1u);
    EXPECT_EQ(steps[0].step_id, "sized");
    EXPECT_EQ(steps[0].status, StepStatus::kFailed);
    EXPECT_FALSE(steps[0].output.has_value());
    EXPECT_EQ(steps[0].error.value_or(""),
              "step result is larger than max_payload_bytes (4096 bytes)");
  }
  EXPECT_TRUE(Steps(ids["abi_child_input_too_big"]).empty()) << "an oversized child was started";
  {
    ListFilter children;
    children.parent_run_id = ids["abi_child_input_too_big"];
    auto runs = store_->ListRuns(children);
    ASSERT_TRUE(runs.ok()) << runs.status().message();
    EXPECT_TRUE(runs->empty()) << "an oversized child run was started";
  }
  // Exactly max_payload_bytes is within the limit.
  ExpectCompletes("abi_step_result_at_limit", "{}", "fits");

  // ... and its replay after the sleep completes it properly, running step
  // "after" exactly once.
  {
    const RunRecord run = WaitTerminal(swallow_id);
    EXPECT_EQ(RunStatusName(run.status), "COMPLETED") << run.error.value_or("");
    EXPECT_TRUE(Contains(run.output.value_or(""), "slept"));
    EXPECT_EQ(run.output.value_or("").find("swallowed"), std::string::npos);
    EXPECT_EQ(testing::ReadFile(swallow_ledger), "before\nafter\n");
    auto steps = Steps(swallow_id);
    ASSERT_EQ(steps.size(), 3u);
    EXPECT_EQ(steps[0].step_id, "before");
    EXPECT_EQ(steps[1].step_id, "nap");
    EXPECT_EQ(steps[2].step_id, "after");
  }

  // --- After all that, the daemon still serves, and stops cleanly.
  ASSERT_TRUE(kagzid_->running());
  ExpectCompletes("hello", R"({"name":"again"})", "Hello, again!");
  ExpectCompletes("abi_good", R"({"n":2})", R"({"echo":{"n":2}})");
  kagzid_->Signal(SIGTERM);
  EXPECT_EQ(kagzid_->Wait(seconds(30)), std::optional<int>(0));
  EXPECT_EQ(kagzid_->Log().find("terminate called"), std::string::npos);
}

}  // namespace
}  // namespace kagzi
