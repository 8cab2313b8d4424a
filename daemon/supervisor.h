// Supervisor: what the kagzid process is. It never loads a plugin.
//
// It waits for the database and migrates it, then forks `workers` worker
// processes; each worker loads the plugins and runs a Daemon (claims,
// executors, heartbeats) under its own lease identity. Design as in
// PostgreSQL's postmaster and nginx's master: a plugin that crashes
// (SIGSEGV, abort(), exit()) kills only its worker. The supervisor then, at
// once and in one transaction, releases every lease the worker held (no
// waiting for the lease TTL), records a crash against the one run whose
// code was running on the crashing thread (found through the shared page,
// worker_shared.h), fails that run once it has killed a worker max_crashes
// times ("worker killed by SIGSEGV while running step \"charge-card\" (3
// times)"), and restarts the worker with backoff. A step function running
// past step_timeout is handled the same way (its worker is killed), and a
// worker whose scheduler loop stops beating is killed and restarted.
//
// systemd sees one service: only the supervisor talks to it (READY=1 once
// every worker serves, WATCHDOG=1 while every worker's loop beats, STATUS=).
// SIGTERM/SIGINT: forwarded to the workers, which drain and hand their runs
// over; SIGHUP: forwarded (plugin rescan). Single-threaded (signalfd + poll),
// so forking is safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon.h"
#include "kagzi/core/config.h"
#include "kagzi/core/store.h"
#include "notifier.h"
#include "worker_shared.h"

namespace kagzi::daemon {

class Supervisor {
 public:
  Supervisor(Config config, std::unique_ptr<Notifier> notifier);
  ~Supervisor();

  // Runs until stopped; returns the process exit code.
  int Run();

 private:
  struct Worker {
    int index = 0;
    pid_t pid = -1;
    WorkerShared* shared = nullptr;
    int restarts = 0;
    int failures_in_a_row = 0;
    std::chrono::steady_clock::time_point started_at;
    std::optional<std::chrono::steady_clock::time_point> restart_at;
    // Set when the supervisor killed the worker itself, and why.
    std::optional<std::string> kill_reason;
    std::optional<std::string> kill_blamed_run;
  };

  bool HandleSignals();  // false once the supervisor should exit
  void Spawn(Worker& w);
  void Reap();
  void OnWorkerDeath(Worker& w, int wait_status);
  void Supervise();  // step timeouts, wedged loops, restarts, readiness
  void Kill(Worker& w, std::string reason, std::optional<std::string> blamed_run);
  Config WorkerConfig(int index) const;
  bool AllStopped() const;

  Config config_;
  std::unique_ptr<Notifier> notifier_;
  std::string id_;
  std::unique_ptr<PgStore> store_;
  std::vector<Worker> workers_;
  int signal_fd_ = -1;
  bool stopping_ = false;
  bool ready_sent_ = false;
  std::chrono::steady_clock::time_point stop_deadline_;
  std::chrono::steady_clock::time_point last_status_;
};

// The body of a worker process (after fork): returns its exit code.
int RunWorker(const Config& config, WorkerIdentity identity);

}  // namespace kagzi::daemon
