// Helpers shared by the end-to-end tests: start real kagzid processes on a
// private plugin directory, run kagzictl, read runs and the side-effect
// ledger the "ledger" fixture plugin writes.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kagzi/core/store.h"
#include "support/process.h"
#include "support/test_db.h"

namespace kagzi::testing {

inline std::string PluginPath(const std::string& name) {
  return RequiredEnv("KAGZI_TEST_PLUGIN_DIR") + "/" + name;
}
inline std::string FixturePluginPath(const std::string& name) {
  return RequiredEnv("KAGZI_TEST_FIXTURE_PLUGIN_DIR") + "/" + name;
}

// A plugin directory (mode 0755) holding copies of the given .so files.
inline void FillPluginDir(const std::string& dir, const std::vector<std::string>& plugins) {
  std::filesystem::create_directories(dir);
  ::chmod(dir.c_str(), 0755);
  for (const auto& p : plugins) {
    auto dest = std::filesystem::path(dir) / std::filesystem::path(p).filename();
    std::filesystem::copy_file(p, dest, std::filesystem::copy_options::overwrite_existing);
    ::chmod(dest.c_str(), 0755);
  }
}

struct DaemonOptions {
  std::string lease_ttl = "5s";
  std::string heartbeat_interval = "1s";
  std::string poll_interval = "1s";
  std::string drain_timeout = "20s";
  int concurrency = 8;
};

inline std::unique_ptr<Process> StartDaemon(const std::string& url, const std::string& plugin_dir,
                                            const std::string& log_path,
                                            const DaemonOptions& o = {}) {
  std::vector<std::string> argv{RequiredEnv("KAGZI_TEST_KAGZID"),
                                "-c",
                                "/dev/null",
                                "--database-url",
                                url,
                                "--plugin-dir",
                                plugin_dir,
                                "--lease-ttl",
                                o.lease_ttl,
                                "--heartbeat-interval",
                                o.heartbeat_interval,
                                "--poll-interval",
                                o.poll_interval,
                                "--drain-timeout",
                                o.drain_timeout,
                                "--concurrency",
                                std::to_string(o.concurrency),
                                "--log-level",
                                "debug"};
  for (auto& arg : ExecutorArgs()) argv.push_back(std::move(arg));
  auto p = std::make_unique<Process>(argv, std::map<std::string, std::string>{}, log_path);
  EXPECT_TRUE(p->Start());
  return p;
}

// Starts a daemon and waits until it logs that it is ready.
inline std::unique_ptr<Process> StartReadyDaemon(const std::string& url,
                                                 const std::string& plugin_dir,
                                                 const std::string& log_path,
                                                 const DaemonOptions& o = {}) {
  auto p = StartDaemon(url, plugin_dir, log_path, o);
  EXPECT_TRUE(p->WaitForLog("ready: instance", std::chrono::seconds(30))) << p->Log();
  return p;
}

inline CommandResult Ctl(const std::string& url, std::vector<std::string> args,
                         std::chrono::milliseconds timeout = std::chrono::seconds(120)) {
  std::vector<std::string> argv = {RequiredEnv("KAGZI_TEST_KAGZICTL"), "-c", "/dev/null",
                                   "--database-url", url};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, {}, timeout);
}

// First line of kagzictl start's stdout: the run id.
inline std::string FirstLine(const std::string& s) { return s.substr(0, s.find('\n')); }

// Lines "<run id> <step id>" the ledger plugin appended, counted.
inline std::map<std::string, int> LedgerCounts(const std::string& path) {
  std::map<std::string, int> counts;
  std::string text = ReadFile(path);
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    if (nl > pos) ++counts[text.substr(pos, nl - pos)];
    pos = nl + 1;
  }
  return counts;
}

inline std::string LedgerInput(const std::string& ledger, int steps, int step_ms, int sleep_ms = 0,
                               int sleep_after = 0) {
  return "{\"ledger\":\"" + ledger + "\",\"steps\":" + std::to_string(steps) +
         ",\"step_ms\":" + std::to_string(step_ms) + ",\"sleep_ms\":" + std::to_string(sleep_ms) +
         ",\"sleep_after\":" + std::to_string(sleep_after) + "}";
}

}  // namespace kagzi::testing
