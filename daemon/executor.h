// ExecutorPool: `concurrency` threads that execute claimed runs.
//
// The scheduler submits at most FreeSlots() runs, so the queue never grows
// past the pool. Each run is registered in InFlightRuns (for heartbeats and
// drain) while it executes, replayed through a RunContext, and its outcome
// recorded; then the pool calls on_slot_free so the scheduler can claim
// again. Thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "in_flight.h"
#include "plugin_host.h"
#include "run_context.h"

namespace kagzi::daemon {

struct ExecutorOptions {
  int threads = 16;
  RunContextOptions run;
};

class ExecutorPool {
 public:
  ExecutorPool(Store& store, const PluginRegistry& registry, InFlightRuns& in_flight,
               ExecutorOptions options, std::function<void()> on_slot_free, ParkListener on_park);
  ~ExecutorPool();  // Stop() + join

  void Start();
  // Queues runs claimed at db_now (their leases are already ours).
  void Submit(std::vector<ClaimedRun> runs, Micros db_now);
  // Slots neither queued nor executing.
  int FreeSlots() const;
  int Slots() const { return options_.threads; }
  int Busy() const;
  // Waits until no run is queued or executing, or the timeout passes.
  bool WaitIdle(std::chrono::milliseconds timeout);
  // Stops the threads after the current runs (callers drain first).
  void Stop();

 private:
  struct Job {
    ClaimedRun claim;
    Micros db_now;
    std::shared_ptr<RunControl> control;
  };
  void ThreadMain();
  void Execute(Job& job);

  Store& store_;
  const PluginRegistry& registry_;
  InFlightRuns& in_flight_;
  ExecutorOptions options_;
  std::function<void()> on_slot_free_;
  ParkListener on_park_;

  mutable std::mutex mu_;
  std::condition_variable cv_;       // work or stop
  std::condition_variable idle_cv_;  // a job finished
  std::deque<Job> queue_;            // guarded by mu_
  int executing_ = 0;                // guarded by mu_
  bool stopping_ = false;            // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace kagzi::daemon
