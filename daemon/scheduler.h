// Scheduler: the claim loop of one daemon.
//
// It claims batches of runnable runs (up to the executor pool's ClaimRoom())
// for the (workflow, version) pairs loaded here, and hands them to the
// executors. It wakes on NOTIFY kagzi_wakeup (a run was started or given
// back), on a timer for the earliest parked run or lease expiry it knows
// of, when an executor frees a slot, and at poll_interval as the safety net.
// Woken only by notifications that name their runs (wakeup.h), with a free
// slot for each, it claims just those runs, by id; woken any other way, it
// claims the due runs in priority order.
// It listens only while it has no backlog: with one (its last claim was
// full) it claims again as slots free up, and notifications would only
// cost a transaction in its listening backend and a wake-up here.
// Owns one database connection (LISTEN) besides the Store's pool, and one
// thread. Thread-safe: Wake(), NoteWakeAt() and Stop() may be called from
// any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <thread>

#include "executor.h"
#include "kagzi/core/pg.h"
#include "plugin_host.h"

namespace kagzi::daemon {

struct SchedulerOptions {
  std::string database_url;
  std::string owner;  // this daemon's instance id (lease owner)
  std::chrono::milliseconds lease_ttl{30'000};
  std::chrono::milliseconds poll_interval{5'000};
};

class Scheduler {
 public:
  Scheduler(Store& store, const PluginRegistry& registry, ExecutorPool& executors,
            SchedulerOptions options);
  ~Scheduler();

  void Start();
  // Stops claiming and joins the thread.
  void Stop();
  // Claim again soon (a slot freed, plugins reloaded).
  void Wake();
  // A run parked here wakes at this database time (micros).
  void NoteWakeAt(Micros wake_at);
  // Called on every loop iteration (systemd watchdog, status).
  void SetLoopHook(std::function<void()> hook) { loop_hook_ = std::move(hook); }

  // Claims made so far, how many of them were of announced runs, and
  // claims that failed.
  std::int64_t claims() const { return claims_.load(); }
  std::int64_t claims_by_id() const { return claims_by_id_.load(); }
  std::int64_t claim_failures() const { return claim_failures_.load(); }

 private:
  // What ended a wait: only notifications naming runs (`announced`), or
  // anything else (`due`: claim what is due).
  struct Wakeup {
    bool due = true;
    std::vector<std::string> announced;
  };
  void ThreadMain();
  // Connects the listener if needed and LISTENs; false if it cannot.
  bool EnsureListener();
  // UNLISTENs (the connection stays open), while the daemon has a backlog.
  void StopListening();
  // Waits on the listener socket and the wake eventfd.
  Wakeup WaitForWork(std::chrono::microseconds timeout);
  std::chrono::steady_clock::time_point LocalTime(Micros db_time) const;

  Store& store_;
  const PluginRegistry& registry_;
  ExecutorPool& executors_;
  SchedulerOptions options_;
  std::function<void()> loop_hook_;

  int wake_fd_ = -1;  // eventfd
  std::atomic<bool> stopping_{false};
  std::unique_ptr<PgConnection> listener_;  // scheduler thread only
  bool listening_ = false;                  // LISTEN kagzi_wakeup is on, on listener_
  std::atomic<std::int64_t> claims_{0};
  std::atomic<std::int64_t> claims_by_id_{0};
  std::atomic<std::int64_t> claim_failures_{0};
  std::thread thread_;

  std::mutex mu_;
  std::optional<Micros> local_wake_;  // guarded by mu_
  // Database clock estimate: db_now_ was read at steady_at_.
  Micros db_now_ = 0;                                // guarded by mu_
  std::chrono::steady_clock::time_point steady_at_;  // guarded by mu_
};

}  // namespace kagzi::daemon
