// End to end, crash isolation: a plugin that kills its process (SIGSEGV,
// abort(), exit(), a hung step) takes down only its worker. The supervisor
// releases the worker's leases at once (the tests use a 60 s lease TTL, so
// waiting for expiry would be visible), blames the one run whose code
// crashed, fails it after max_crashes, restarts the worker, and every other
// run completes. Real kagzid (supervisor + workers), real PostgreSQL.
#include <sched.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <rapidjson/document.h>

#include "e2e/e2e_support.h"

namespace kagzi::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class CrashIsolationE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = TestDatabase::Create();
    ASSERT_NE(db_, nullptr);
    store_ = std::make_unique<PgStore>(PgStoreOptions{db_->url(), "crash-test", 2});
    ASSERT_TRUE(store_->Migrate().ok());
    plugin_dir_ = dir_.path() + "/plugins";
    ledger_ = dir_.path() + "/ledger.txt";
    FillPluginDir(plugin_dir_, {FixturePluginPath("crasher.so"), FixturePluginPath("ledger.so")});
  }

  // A daemon whose leases would take a minute to expire.
  std::unique_ptr<Process> Daemon(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {RequiredEnv("KAGZI_TEST_KAGZID"),
                                     "-c",
                                     "/dev/null",
                                     "--database-url",
                                     db_->url(),
                                     "--plugin-dir",
                                     plugin_dir_,
                                     "--lease-ttl",
                                     "60s",
                                     "--heartbeat-interval",
                                     "5s",
                                     "--poll-interval",
                                     "1s",
                                     "--concurrency",
                                     "4",
                                     "--workers",
                                     "2",
                                     "--log-level",
                                     "debug"};
    for (auto& arg : ExecutorArgs()) argv.push_back(std::move(arg));
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto p = std::make_unique<Process>(argv, std::map<std::string, std::string>{},
                                       dir_.path() + "/kagzid.log");
    EXPECT_TRUE(p->Start());
    EXPECT_TRUE(p->WaitForLog("ready: instance", seconds(30))) << p->Log();
    return p;
  }

  RunRecord Run(const std::string& id) {
    auto r = store_->GetRun(id);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? *r : RunRecord{};
  }
  bool WaitForStatus(const std::string& id, RunStatus status, milliseconds timeout) {
    return Eventually([&] { return Run(id).status == status; }, timeout);
  }
  std::string Start(const std::string& workflow, const std::string& input) {
    auto r = Ctl(db_->url(), {"start", workflow, "--input", input});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return FirstLine(r.out);
  }
  std::string Crasher(const std::string& mode) {
    return Start("crasher", R"({"mode":")" + mode + R"(","ledger":")" + ledger_ + "\"}");
  }
  int LedgerCount(const std::string& line) { return LedgerCounts(ledger_)[line]; }

  // Total restarts of the live workers of the daemon, from kagzictl.
  int Restarts() {
    auto r = Ctl(db_->url(), {"workers", "--json"});
    rapidjson::Document d;
    d.Parse(r.out.c_str());
    int total = 0;
    if (!d.IsObject() || !d.HasMember("workers")) return -1;
    for (const auto& w : d["workers"].GetArray()) {
      if (w["alive"].GetBool()) total += w["restarts"].GetInt();
    }
    return total;
  }

  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<PgStore> store_;
  TempDir dir_;
  std::string plugin_dir_;
  std::string ledger_;
};

TEST_F(CrashIsolationE2E, SegfaultingStepFailsItsRunAfterThreeCrashesAndOtherRunsComplete) {
  auto d = Daemon();
  std::vector<std::string> innocent;
  for (int i = 0; i < 6; ++i) innocent.push_back(Start("ledger", LedgerInput(ledger_, 4, 300)));
  std::string bad = Crasher("segv");

  ASSERT_TRUE(WaitForStatus(bad, RunStatus::kFailed, seconds(60))) << d->Log();
  RunRecord run = Run(bad);
  EXPECT_EQ(run.error.value_or(""),
            "worker killed by SIGSEGV while running step \"charge-card\" (3 times)");
  EXPECT_EQ(run.crash_count, 3);
  // "prepare" was recorded before the first crash: it never ran again.
  EXPECT_EQ(LedgerCount(bad + " prepare"), 1);
  EXPECT_EQ(LedgerCount(bad + " charge-card"), 3);

  // Runs that shared a worker with the crash were released at once, not
  // after the 60 s lease: all complete well within that.
  for (const auto& id : innocent) {
    ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(45))) << id << "\n" << d->Log();
    EXPECT_EQ(Run(id).crash_count, 0) << "an innocent run was blamed";
  }
  EXPECT_TRUE(d->running()) << "the supervisor must survive its workers";
  EXPECT_TRUE(Eventually([&] { return Restarts() >= 3; }, seconds(30))) << Restarts();
  d->Signal(SIGTERM);
  EXPECT_EQ(d->Wait(seconds(60)), 0) << d->Log();
}

TEST_F(CrashIsolationE2E, AbortAndExitInAStepAreNamedInTheFailure) {
  auto d = Daemon({"--max-crashes", "2"});
  std::string aborts = Crasher("abort");
  std::string exits = Crasher("exit");
  ASSERT_TRUE(WaitForStatus(aborts, RunStatus::kFailed, seconds(60))) << d->Log();
  ASSERT_TRUE(WaitForStatus(exits, RunStatus::kFailed, seconds(60))) << d->Log();
  EXPECT_EQ(Run(aborts).error.value_or(""),
            "worker killed by SIGABRT while running step \"charge-card\" (2 times)");
  EXPECT_EQ(Run(exits).error.value_or(""),
            "worker called exit() while running step \"charge-card\" (2 times)");
  // A good run still completes afterwards.
  std::string ok = Crasher("ok");
  ASSERT_TRUE(WaitForStatus(ok, RunStatus::kCompleted, seconds(30))) << d->Log();
  d->Signal(SIGTERM);
  EXPECT_EQ(d->Wait(seconds(60)), 0);
}

TEST_F(CrashIsolationE2E, AStepPastItsTimeoutHasItsWorkerKilledAndIsFailed) {
  auto d = Daemon({"--step-timeout", "1s", "--max-crashes", "2"});
  std::string hung = Crasher("hang");
  std::string innocent = Start("ledger", LedgerInput(ledger_, 3, 200));
  ASSERT_TRUE(WaitForStatus(hung, RunStatus::kFailed, seconds(60))) << d->Log();
  EXPECT_EQ(Run(hung).error.value_or(""),
            "step \"charge-card\" ran past its timeout of 1s (2 times)");
  ASSERT_TRUE(WaitForStatus(innocent, RunStatus::kCompleted, seconds(45))) << d->Log();
  d->Signal(SIGTERM);
  EXPECT_EQ(d->Wait(seconds(60)), 0);
}

// A parallel group's members share their run's crash slot. A member still
// running past the timeout is found after another member has returned, and
// a crash is blamed on the member that crashed, not on the oldest one
// running ("audit" starts first and is still running in both cases).
TEST_F(CrashIsolationE2E, AHungOrCrashingParallelMemberIsFoundAndNamed) {
  auto d = Daemon({"--step-timeout", "1s", "--max-crashes", "2"});
  std::string hung = Crasher("parallel-hang");
  std::string crashed = Crasher("parallel-segv");
  ASSERT_TRUE(WaitForStatus(hung, RunStatus::kFailed, seconds(60))) << d->Log();
  EXPECT_EQ(Run(hung).error.value_or(""),
            "step \"charge-card\" ran past its timeout of 1s (2 times)");
  ASSERT_TRUE(WaitForStatus(crashed, RunStatus::kFailed, seconds(60))) << d->Log();
  EXPECT_EQ(Run(crashed).error.value_or(""),
            "worker killed by SIGSEGV while running step \"charge-card\" (2 times)");
  d->Signal(SIGTERM);
  EXPECT_EQ(d->Wait(seconds(60)), 0);
}

TEST_F(CrashIsolationE2E, AWorkerKilledFromOutsideBlamesNoRunAndItsRunsResumeAtOnce) {
  auto d = Daemon();
  std::vector<std::string> runs;
  for (int i = 0; i < 4; ++i) runs.push_back(Start("ledger", LedgerInput(ledger_, 6, 300)));
  // Wait until a worker leases something, then SIGKILL that worker process.
  int victim = 0;
  ASSERT_TRUE(Eventually(
      [&] {
        auto r = Ctl(db_->url(), {"workers", "--json"});
        rapidjson::Document doc;
        doc.Parse(r.out.c_str());
        if (!doc.IsObject()) return false;
        for (const auto& w : doc["workers"].GetArray()) {
          if (w["alive"].GetBool() && w["running"].GetInt() > 0) {
            victim = w["pid"].GetInt();
            return true;
          }
        }
        return false;
      },
      seconds(30)));
  ASSERT_NE(victim, d->pid());
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  for (const auto& id : runs) {
    ASSERT_TRUE(WaitForStatus(id, RunStatus::kCompleted, seconds(45))) << id << "\n" << d->Log();
    EXPECT_EQ(Run(id).crash_count, 0);
  }
  EXPECT_NE(d->Log().find("worker killed by SIGKILL"), std::string::npos) << d->Log();
  EXPECT_TRUE(d->running());
  d->Signal(SIGTERM);
  EXPECT_EQ(d->Wait(seconds(60)), 0);
}

// --- worker_cpu_affinity -----------------------------------------------------------------------

// The CPUs this test may run on, as the kernel lists them ("0-1").
std::vector<int> TestCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  std::vector<int> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

// The pid of the supervisor's child named `comm` ("kagzid-w1"), or 0.
pid_t WorkerPid(pid_t supervisor, const std::string& comm) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // pid (comm) state ppid ...
    const auto open = line.find('('), close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == supervisor && line.substr(open + 1, close - open - 1) == comm) {
      return static_cast<pid_t>(std::stoi(name));
    }
  }
  return 0;
}

// "Cpus_allowed_list" of a /proc status file: "0-1".
std::string CpusAllowed(const std::filesystem::path& status_file) {
  std::ifstream status(status_file);
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Cpus_allowed_list:", 0) == 0) {
      return line.substr(line.find_first_not_of(" \t", 18));
    }
  }
  return "";
}

// Each thread of `pid` with the CPUs it may run on.
std::map<std::string, std::string> ThreadCpus(pid_t pid) {
  std::map<std::string, std::string> out;
  std::error_code ec;
  const auto tasks = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& t : std::filesystem::directory_iterator(tasks, ec)) {
    std::string cpus = CpusAllowed(t.path() / "status");
    if (!cpus.empty()) out[t.path().filename()] = cpus;  // empty: the thread has ended
  }
  return out;
}

// Every thread of worker i runs on the i-th CPU kagzid may use, a worker
// restarted after a crash too, and runs complete as before.
TEST_F(CrashIsolationE2E, WithCpuAffinityAutoEachWorkerKeepsToItsCpuAcrossRestarts) {
  const std::vector<int> cpus = TestCpus();
  ASSERT_FALSE(cpus.empty());
  auto d = Daemon({"--worker-cpu-affinity", "auto"});
  for (int i = 1; i <= 2; ++i) {
    const std::string cpu = std::to_string(cpus[(i - 1) % cpus.size()]);
    const pid_t pid = WorkerPid(d->pid(), "kagzid-w" + std::to_string(i));
    ASSERT_NE(pid, 0) << "no worker " << i;
    auto threads = ThreadCpus(pid);
    EXPECT_GT(threads.size(), 3u) << "worker " << i << "'s executor threads are not started";
    for (const auto& [tid, list] : threads) {
      EXPECT_EQ(list, cpu) << "worker " << i << ", thread " << tid;
    }
    EXPECT_NE(d->Log().find("worker " + std::to_string(i) + " runs on CPU " + cpu),
              std::string::npos)
        << d->Log();
  }
  std::string run = Start("ledger", LedgerInput(ledger_, 2, 10));
  ASSERT_TRUE(WaitForStatus(run, RunStatus::kCompleted, seconds(30))) << d->Log();

  const pid_t first = WorkerPid(d->pid(), "kagzid-w1");
  ASSERT_EQ(kill(first, SIGKILL), 0);
  pid_t again = 0;
  ASSERT_TRUE(Eventually(
      [&] {
        again = WorkerPid(d->pid(), "kagzid-w1");
        return again != 0 && again != first && ThreadCpus(again).size() > 3;
      },
      seconds(30)))
      << d->Log();
  for (const auto& [tid, list] : ThreadCpus(again)) {
    EXPECT_EQ(list, std::to_string(cpus[0])) << "restarted worker 1, thread " << tid;
  }
  d->Signal(SIGTERM);
  EXPECT_EQ(d->Wait(seconds(60)), 0);
}

// By default (worker_cpu_affinity = "off") a worker's threads may run on
// every CPU kagzid may use.
TEST_F(CrashIsolationE2E, ByDefaultWorkersMayRunOnEveryCpu) {
  const std::string all = CpusAllowed("/proc/self/status");
  ASSERT_FALSE(all.empty());
  auto d = Daemon();
  for (int i = 1; i <= 2; ++i) {
    const pid_t pid = WorkerPid(d->pid(), "kagzid-w" + std::to_string(i));
    ASSERT_NE(pid, 0) << "no worker " << i;
    for (const auto& [tid, list] : ThreadCpus(pid)) {
      EXPECT_EQ(list, all) << "worker " << i << ", thread " << tid;
    }
  }
  EXPECT_EQ(d->Log().find("runs on CPU"), std::string::npos) << d->Log();
  d->Signal(SIGTERM);
  EXPECT_EQ(d->Wait(seconds(60)), 0);
}

}  // namespace
}  // namespace kagzi::testing
