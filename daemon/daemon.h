// Daemon: one kagzid process's life, start to stop.
//
//   Start():  connect and migrate (retrying while the database is
//             unreachable), scan plugin_dir, register this instance and its
//             workflows, start executors, the lease keeper and the
//             scheduler, then READY=1.
//   Reload(): rescan plugin_dir for new .so files (SIGHUP).
//   Shutdown(): STOPPING=1, stop claiming, ask in-flight runs to stop at
//             their next step boundary and give their leases back, wait up
//             to drain_timeout, release whatever is still running, and
//             unregister.
// Called from the main thread only.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>

#include "executor.h"
#include "group_commit.h"
#include "in_flight.h"
#include "kagzi/core/config.h"
#include "lease_keeper.h"
#include "notifier.h"
#include "plugin_host.h"
#include "scheduler.h"
#include "worker_shared.h"

namespace kagzi::daemon {

// Who this Daemon is when it runs as a supervised worker process.
struct WorkerIdentity {
  int index = 0;  // 1..workers
  std::optional<std::string> supervisor_id;
  int restarts = 0;                // times this worker slot was restarted
  WorkerShared* shared = nullptr;  // the page shared with the supervisor
  bool migrate = true;             // workers skip it: the supervisor migrated
};

class Daemon {
 public:
  Daemon(Config config, std::unique_ptr<Notifier> notifier, WorkerIdentity identity = {});
  ~Daemon();

  // Returns non-OK when the daemon cannot start (e.g. the database schema
  // is newer than this binary). `stop_requested` is polled while waiting
  // for the database.
  Status Start(const std::atomic<bool>& stop_requested);
  void Reload();
  // Returns true when every run was handed back within drain_timeout.
  bool Shutdown();

  const std::string& id() const { return id_; }

 private:
  Status Register();
  void UpdateStatus();

  Config config_;
  std::unique_ptr<Notifier> notifier_;
  WorkerIdentity identity_;
  std::string id_;
  std::unique_ptr<PgStore> store_;
  PluginRegistry registry_;
  InFlightRuns in_flight_;
  // Declared before the executors, which use it: destroyed after them.
  std::unique_ptr<GroupCommitter> committer_;
  std::unique_ptr<ExecutorPool> executors_;
  std::unique_ptr<LeaseKeeper> lease_keeper_;
  std::unique_ptr<Scheduler> scheduler_;
  std::atomic<std::int64_t> last_status_ms_{0};
};

// Waits for the database (retrying with backoff, logging and reporting
// STATUS= while it is unreachable) and applies pending migrations. Returns
// non-OK when stop_requested becomes true or the schema is refused.
Status WaitForDatabaseAndMigrate(PgStore& store, Notifier& notifier,
                                 const std::function<bool()>& stop_requested);

// A random (version 4) UUID in canonical text form.
std::string NewUuid();

}  // namespace kagzi::daemon
