// kagzi-bench: measures Kagzi end to end on the workloads of
// docs/benchmarks.md (bench0, bench3, sleep, idle-latency, backlog, idle),
// with real kagzid processes, the bench plugin (bench/plugin/bench.cc) and
// a PostgreSQL with its durable defaults. Prints a table, writes a JSON
// report. It measures; it asserts nothing about time.
//
// Exit codes: 0 every selected workload was measured and all its runs
// completed; 1 a workload failed, timed out, had failed runs or was
// interrupted; 2 bad usage; 3 the setup failed (PostgreSQL, kagzid, the
// plugin). This file holds the command line and the order of things;
// workloads.cc the workloads, bench_server.cc the server and its counters,
// kagzid_process.cc the daemon processes, report.cc the output.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "bench_paths.h"
#include "bench_server.h"
#include "kagzi/core/log.h"
#include "proc_stats.h"
#include "report.h"
#include "workloads.h"

namespace {

using kagzi::Status;
using namespace kagzi::bench;

constexpr int kExitIncomplete = 1;
constexpr int kExitUsage = 2;
constexpr int kExitSetup = 3;
// The rule: at most 64 start calls outstanding.
constexpr int kMaxClients = 64;

std::atomic<bool> g_interrupted{false};

void OnSignal(int) { g_interrupted.store(true); }

struct Flags {
  std::vector<std::string> workloads{"all"};
  int runs = 0;  // 0: each workload's default
  int rounds = 1;
  int concurrency = 64;
  int clients = 64;
  int daemons = 1;
  std::string start_mode = "per-start";
  int batch_size = 100;
  std::string json;
  bool quick = false;
  std::string url;
  std::string kagzid = kDefaultKagzid;
  std::string plugin_dir = kDefaultPluginDir;
  std::string work_dir = kDefaultWorkDir;
  std::string pg_dir = kDefaultPgDir;
  int pg_port = 55435;
  bool keep_pg = false;
  int timeout_s = 600;
  std::int64_t backlog_rows = -1;  // -1: the default (1,000,000; --quick 20,000)
  int idle_seconds = -1;           // -1: the default (30; --quick 5)
  int ceiling_seconds = -1;        // -1: the default (15; --quick 2)
  int ceiling_clients = 32;
  int ceiling_threads = 2;
  unsigned seed = 1;
  std::vector<std::string> kagzid_args;
};

// The time now, UTC: RFC 3339, or compact for file names.
enum class TimeFormat { kRfc3339, kCompact };
std::string UtcNow(TimeFormat format) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[64];
  if (format == TimeFormat::kRfc3339) {
    std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  } else {
    std::strftime(buffer, sizeof buffer, "%Y%m%dT%H%M%SZ", &tm);
  }
  return buffer;
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "";
}

std::string CommandLine(int argc, char** argv) {
  std::string out;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (i > 0) out += ' ';
    if (arg.find_first_of(" \t'\"$") != std::string::npos) {
      out += "'" + arg + "'";
    } else {
      out += arg;
    }
  }
  return out;
}

// A fresh plugin directory holding bench.so alone, as kagzid requires it:
// mode 0755, not group- or world-writable, owned by us.
Status PreparePluginDir(const std::string& from_dir, const std::string& to_dir) {
  namespace fs = std::filesystem;
  const fs::path source = fs::path(from_dir) / "bench.so";
  std::error_code ec;
  if (!fs::is_regular_file(source, ec)) {
    return Status::NotFound(
        "the bench plugin {} does not exist; build it (make bench, or "
        "cmake --build <dir> --target bench_plugin) or pass --plugin-dir",
        source.string());
  }
  fs::remove_all(to_dir, ec);
  fs::create_directories(to_dir, ec);
  if (ec) return Status::Unavailable("cannot create {}: {}", to_dir, ec.message());
  const fs::path target = fs::path(to_dir) / "bench.so";
  fs::copy_file(source, target, fs::copy_options::overwrite_existing, ec);
  if (ec) {
    return Status::Unavailable("cannot copy {} to {}: {}", source.string(), target.string(),
                               ec.message());
  }
  ::chmod(to_dir.c_str(), 0755);
  ::chmod(target.c_str(), 0755);
  return Status::Ok();
}

int Main(int argc, char** argv) {
  Flags f;
  CLI::App app{
      "kagzi-bench: starts real kagzid processes with the bench plugin on a PostgreSQL with "
      "durable defaults (a private one unless --url), runs the workloads, each on a fresh "
      "database, and reports throughput, commits, WAL, fsyncs, latency, sleep lateness, CPU "
      "and memory as a table and as JSON (docs/benchmarks.md).",
      "kagzi-bench"};
  app.add_option("--workload", f.workloads,
                 "Workloads to run, comma-separated or repeated: bench0, ceiling, bench3, sleep, "
                 "idle-latency, backlog, idle, or all (in that order)")
      ->delimiter(',');
  app.add_option("-W,--runs", f.runs,
                 "Runs per workload (default: bench0, bench3, backlog 10000; sleep 500; "
                 "idle-latency 20 measured runs; idle has none)")
      ->check(CLI::Range(1, 10'000'000));
  app.add_option("--rounds", f.rounds,
                 "Run the workloads this many times over, in turn (1-1000, default 1); with more "
                 "than one, the report adds each figure's median, lowest and highest value, and "
                 "how many rounds met each target of docs/benchmarks.md")
      ->check(CLI::Range(1, 1000));
  app.add_option("--concurrency", f.concurrency, "kagzid --concurrency (default 64)")
      ->check(CLI::Range(1, 4096));
  app.add_option("--clients", f.clients,
                 "Client threads starting runs, i.e. start calls outstanding at most (1-64, "
                 "default 64)")
      ->check(CLI::Range(1, kMaxClients));
  app.add_option("--daemons", f.daemons, "kagzid processes (default 1)")->check(CLI::Range(1, 16));
  app.add_option("--start-mode", f.start_mode,
                 "How bench0, bench3, sleep and backlog start their runs: per-start "
                 "(PgStore::StartRun, one run per call, concurrent calls sharing commits; the "
                 "default) or batch "
                 "(PgStore::StartRuns, --batch-size runs per call and commit). idle-latency "
                 "always starts one run at a time")
      ->check(CLI::IsMember({"per-start", "batch"}));
  app.add_option("--batch-size", f.batch_size, "Runs per StartRuns call (default 100)")
      ->check(CLI::Range(1, 10'000));
  app.add_option("--json", f.json,
                 "Write the JSON report here (default <work-dir>/kagzi-bench-<UTC time>.json)");
  app.add_flag("--quick", f.quick,
               "Small sizes, so the whole suite takes about a minute: a smoke check, not figures");
  app.add_option("--url", f.url,
                 "Use this PostgreSQL (libpq URL or conninfo; its database is used to create "
                 "and drop the workload databases) instead of a private one. It must be "
                 "otherwise idle: the WAL and fsync figures are cluster-wide");
  app.add_option("--kagzid", f.kagzid, "The kagzid binary (default: this build's)");
  app.add_option("--plugin-dir", f.plugin_dir,
                 "Directory holding bench.so (default: this build's)");
  app.add_option("--work-dir", f.work_dir,
                 "kagzid logs, notify sockets and the default JSON report");
  app.add_option("--pg-dir", f.pg_dir, "The private PostgreSQL's directory (scripts/pg.sh)");
  app.add_option("--pg-port", f.pg_port, "The private PostgreSQL's port (default 55435)")
      ->check(CLI::Range(1, 65535));
  app.add_flag("--keep-pg", f.keep_pg, "Leave the private PostgreSQL running at the end");
  app.add_option("--timeout", f.timeout_s,
                 "Seconds a workload's runs may take to finish (default 600)")
      ->check(CLI::Range(1, 86'400));
  app.add_option("--backlog-rows", f.backlog_rows,
                 "Parked runs the backlog workload inserts (default 1000000)")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{100'000'000}));
  app.add_option("--idle-seconds", f.idle_seconds, "How long the idle workload idles (default 30)")
      ->check(CLI::Range(1, 3600));
  app.add_option("--ceiling-seconds", f.ceiling_seconds,
                 "How long the ceiling workload inserts (default 15; --quick 2)")
      ->check(CLI::Range(1, 3600));
  app.add_option("--ceiling-clients", f.ceiling_clients,
                 "The ceiling workload's connections, one INSERT in flight on each (default 32)")
      ->check(CLI::Range(1, 1000));
  app.add_option("--ceiling-threads", f.ceiling_threads,
                 "Threads driving the ceiling's connections, as pgbench -j (default 2)")
      ->check(CLI::Range(1, 64));
  app.add_option("--seed", f.seed, "Seed of idle-latency's random gaps (default 1)");
  app.add_option("--kagzid-arg", f.kagzid_args,
                 "An extra kagzid flag, e.g. --kagzid-arg=--workers=1 (repeatable)")
      ->allow_extra_args(false);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }

  std::vector<std::string> workloads;
  for (const auto& w : f.workloads) {
    if (w == "all") {
      for (const auto& name : WorkloadNames()) workloads.push_back(name);
      continue;
    }
    if (std::find(WorkloadNames().begin(), WorkloadNames().end(), w) == WorkloadNames().end()) {
      fmt::print(stderr,
                 "kagzi-bench: unknown workload \"{}\" (expected bench0, ceiling, bench3, sleep, "
                 "idle-latency, backlog, idle or all)\n",
                 w);
      return kExitUsage;
    }
    workloads.push_back(w);
  }

  namespace fs = std::filesystem;
  std::error_code ec;
  f.work_dir = fs::absolute(f.work_dir, ec).string();
  fs::create_directories(f.work_dir, ec);
  if (ec) {
    fmt::print(stderr, "kagzi-bench: cannot create the work directory {}: {}\n", f.work_dir,
               ec.message());
    return kExitSetup;
  }
  if (f.json.empty())
    f.json = fmt::format("{}/kagzi-bench-{}.json", f.work_dir, UtcNow(TimeFormat::kCompact));
  if (::access(f.kagzid.c_str(), X_OK) != 0) {
    fmt::print(stderr,
               "kagzi-bench: kagzid {} is not an executable file; build it (make bench) or pass "
               "--kagzid\n",
               f.kagzid);
    return kExitSetup;
  }

  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  // PgStore logs through kagzi's loggers; only its warnings matter here.
  (void)kagzi::InitLogging("warn");

  const auto started = std::chrono::steady_clock::now();
  RunInfo info;
  info.command_line = CommandLine(argc, argv);
  info.started_at = UtcNow(TimeFormat::kRfc3339);
  const bool batch = f.start_mode == "batch";
  info.start_path = batch ? fmt::format(
                                "PgStore::StartRuns, {} runs per call and commit (kagzi_core, the "
                                "client library; idle-latency: PgStore::StartRun)",
                                f.batch_size)
                          : std::string(
                                "PgStore::StartRun, one run per call from each client thread; "
                                "concurrent calls share commits (kagzi_core, the client library "
                                "kagzictl start uses)");
  info.kagzid = f.kagzid;
  info.plugin = f.plugin_dir + "/bench.so";
  info.bench_build_type = kBuildType;
  info.concurrency = f.concurrency;
  info.clients = f.clients;
  info.daemons = f.daemons;
  info.kagzid_args = f.kagzid_args;
  info.cpus = static_cast<int>(std::thread::hardware_concurrency());
  info.cpu_model = CpuModel();
  info.seed = f.seed;
  info.quick = f.quick;
  info.rounds = f.rounds;
  if (auto version = RunForStdout({f.kagzid, "--version"}); version.ok()) {
    info.kagzid_version = *version;
    while (!info.kagzid_version.empty() && info.kagzid_version.back() == '\n') {
      info.kagzid_version.pop_back();
    }
  }

  BenchSettings settings;
  settings.kagzid = f.kagzid;
  settings.plugin_dir = f.work_dir + "/plugins";
  settings.work_dir = f.work_dir;
  settings.concurrency = f.concurrency;
  settings.clients = f.clients;
  settings.daemons = f.daemons;
  settings.start_mode = batch ? StartMode::kBatch : StartMode::kPerStart;
  settings.batch_size = f.batch_size;
  settings.kagzid_args = f.kagzid_args;
  settings.timeout = std::chrono::seconds(f.timeout_s);
  settings.backlog_rows = f.backlog_rows >= 0 ? f.backlog_rows : (f.quick ? 20'000 : 1'000'000);
  settings.idle_duration =
      std::chrono::seconds(f.idle_seconds > 0 ? f.idle_seconds : (f.quick ? 5 : 30));
  settings.seed = f.seed;
  settings.ceiling_clients = f.ceiling_clients;
  settings.ceiling_threads = f.ceiling_threads;
  settings.ceiling_duration =
      std::chrono::seconds(f.ceiling_seconds > 0 ? f.ceiling_seconds : (f.quick ? 2 : 15));
  if (f.quick) {
    settings.gap_min = std::chrono::milliseconds(200);
    settings.gap_max = std::chrono::milliseconds(400);
    settings.warmups = 1;
    settings.plan_capture_runs = 50;
  }
  if (Status s = PreparePluginDir(f.plugin_dir, settings.plugin_dir); !s.ok()) {
    fmt::print(stderr, "kagzi-bench: {}\n", s.message());
    return kExitSetup;
  }

  ServerOptions server_options;
  if (!f.url.empty()) server_options.url = f.url;
  server_options.pg_script = kPgScript;
  server_options.pg_dir = fs::absolute(f.pg_dir, ec).string();
  server_options.pg_port = f.pg_port;
  server_options.keep_running = f.keep_pg;
  auto server = BenchServer::Open(server_options);
  if (!server.ok()) {
    fmt::print(stderr, "kagzi-bench: {}\n", server.status().message());
    return kExitSetup;
  }
  auto clock = (*server)->MeasureClockOffset();
  if (!clock.ok()) {
    fmt::print(stderr, "kagzi-bench: {}\n", clock.status().message());
    return kExitSetup;
  }
  settings.clock = *clock;
  info.server = (*server)->DisplayUrl();
  info.private_server = (*server)->is_private();
  info.server_settings = (*server)->settings();
  info.walinspect_problem = (*server)->walinspect_problem();
  info.transactions_per_connection = (*server)->transactions_per_connection();
  info.clock_offset_us = clock->offset_us;
  info.clock_rtt_us = clock->rtt_us;

  WorkloadRunner runner(**server, settings, g_interrupted);
  std::vector<WorkloadResult> results;
  bool complete = true;
  for (int round = 1; round <= f.rounds && !g_interrupted.load(); ++round) {
    if (f.rounds > 1) fmt::print(stderr, "kagzi-bench: round {} of {}\n", round, f.rounds);
    for (const auto& w : workloads) {
      if (g_interrupted.load()) break;
      const int runs = f.runs > 0 ? f.runs : DefaultRuns(w, f.quick);
      results.push_back(runner.Run(w, runs));
      WorkloadResult& r = results.back();
      r.round = round;
      if (!r.error.empty() || r.timed_out || r.failed > 0 || r.completed < r.runs) complete = false;
    }
  }
  if (g_interrupted.load()) complete = false;
  info.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  RelateResults(results);

  std::fputs(FormatTable(info, results).c_str(), stdout);
  std::fflush(stdout);
  if (Status s = WriteJson(f.json, info, results); !s.ok()) {
    fmt::print(stderr, "kagzi-bench: {}\n", s.message());
    complete = false;
  } else {
    fmt::print(stderr, "kagzi-bench: JSON report: {}\n", f.json);
  }
  fmt::print(stderr, "kagzi-bench: {:.0f} s in all\n", info.wall_seconds);
  return complete ? 0 : kExitIncomplete;
}

}  // namespace

int main(int argc, char** argv) {
  // Nothing is expected to throw past Main; should it (bad_alloc), say so
  // rather than terminate without a word.
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kagzi-bench: internal error: %s\n", e.what());
    return kExitSetup;
  }
}
