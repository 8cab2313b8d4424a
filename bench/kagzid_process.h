// One real kagzid process (a supervisor and its worker processes), as
// kagzi-bench runs it.
//
// Kagzid starts the binary with flags only (-c /dev/null, so no config file
// or KAGZI_CONFIG applies; other KAGZI_* variables of the environment still
// do), its output appended to a log file. Readiness is kagzid's own: the
// READY=1 it sends to $NOTIFY_SOCKET (sd_notify) once every worker serves,
// which works at any --log-level. The process gets SIGTERM if the bench
// dies (PR_SET_PDEATHSIG). Stop() sends SIGTERM (kagzid drains) and reaps
// it with wait4(): the supervisor reaps its workers before it exits, so the
// rusage covers the whole process tree.
//
// Thread safety: none; one owner.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kagzi/core/status.h"

namespace kagzi::bench {

struct KagzidOptions {
  std::string binary;      // path of kagzid
  std::string conninfo;    // --database-url
  std::string plugin_dir;  // --plugin-dir
  int concurrency = 64;    // --concurrency
  std::string log_level = "warn";
  std::vector<std::string> extra_args;  // appended as given (--kagzid-arg)
  std::string log_path;                 // stdout and stderr, appended
  std::string notify_socket_path;       // where READY=1 arrives
};

// What the process used, known once it has exited.
struct KagzidUsage {
  double cpu_seconds = 0;  // user + system, supervisor and workers
  double lifetime_seconds = 0;
  int exit_code = 0;  // -signal when killed
};

class KagzidProcess {
 public:
  explicit KagzidProcess(KagzidOptions options);
  // Kills the process (SIGKILL) if it still runs.
  ~KagzidProcess();
  KagzidProcess(const KagzidProcess&) = delete;
  KagzidProcess& operator=(const KagzidProcess&) = delete;

  Status Start();
  // Waits for READY=1. Fails, naming the log, if the process exits first or
  // the timeout passes; stops early when *interrupted becomes true.
  Status WaitReady(std::chrono::milliseconds timeout, const std::atomic<bool>& interrupted);
  // Fails, naming the log, once the process has exited by itself.
  Status CheckAlive();
  // The peak resident set size (VmHWM, KiB) of the supervisor and of each of
  // its live workers; call while it runs.
  std::vector<std::int64_t> PeakRssKiB() const;
  // The PSS (KiB) of the supervisor and its live workers, summed: what they
  // use together now, each shared page counted once.
  std::optional<std::int64_t> PssKiB() const;
  // CPU seconds the supervisor and its workers have used so far (/proc).
  std::optional<double> CpuSecondsSoFar() const;
  // SIGTERM, then waits up to `timeout` (SIGKILL after it).
  Result<KagzidUsage> Stop(std::chrono::milliseconds timeout);

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return options_.log_path; }

 private:
  void CloseNotifySocket();
  std::string LogTail() const;

  KagzidOptions options_;
  pid_t pid_ = -1;
  int notify_fd_ = -1;
  bool exited_ = false;
  int wait_status_ = 0;
  std::chrono::steady_clock::time_point started_at_;
};

}  // namespace kagzi::bench
