// ExecutorPool: threads that execute claimed runs, `slots` of them at a
// time.
//
// The scheduler submits at most ClaimRoom() runs: the free slots, and
// while slots free up quickly (a busy daemon of short runs), as many runs
// more as the slots are expected to free in the next kPrefetchHorizon, up
// to half the slots. Those wait in the queue, leased, and a slot that frees
// takes one at once instead of waiting for a claim (a transaction and its
// commit, 1-3 ms under load, with the claims of several slots gathered).
// With slots that free slowly (long runs) there is no such room, and a run
// queued longer than a moment (the rate fell after it was claimed) is given
// back by ReleaseStale for another daemon to run.
//
// Each run is registered in InFlightRuns (for heartbeats and drain) while
// it is queued and executes, replayed through a RunContext, and its outcome
// recorded. A run gives its slot back as soon as its workflow code has
// returned, before its outcome (completion, failure) is written: the pool
// calls on_slot_free then, so the scheduler claims the next run while that
// write is being committed, not after. The run stays in InFlightRuns, its
// lease renewed, until the write is done. With a group committer
// (RunContextOptions::writer), a completion or failure is queued to it
// without waiting (GroupCommitter::WriteAsync), and the thread takes the
// next queued run at once: the committer's thread finishes the run
// (Ended) once the write is durable. Other outcomes, and a last write
// retried because the database was unreachable, keep their thread until
// done, so the pool has up to twice as many threads as slots.
//
// With ExecutorOptions::fiber_threads, runs execute on fibers instead, over
// that many carrier threads: a run waiting for a write suspends its fiber,
// not a thread (fiber.h). Each carrier takes queued runs and retries as a
// thread would, starts each on a fiber of its own (reused, up to twice as
// many as slots in all), and resumes the fibers the committer makes ready.
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "fiber.h"
#include "free_rate.h"
#include "in_flight.h"
#include "plugin_host.h"
#include "run_context.h"

namespace kagzi::daemon {

struct ExecutorOptions {
  int slots = 16;  // runs whose workflow code may run at once (concurrency)
  RunContextOptions run;
  // 0: a thread per run. More: each run on a fiber (fiber.h), over this
  // many carrier threads.
  int fiber_threads = 0;
  std::size_t fiber_stack_bytes = 1 << 20;
};

class ExecutorPool {
 public:
  ExecutorPool(Store& store, const PluginRegistry& registry, InFlightRuns& in_flight,
               ExecutorOptions options, std::function<void()> on_slot_free, ParkListener on_park);
  ~ExecutorPool();  // Stop() + join, and waits for the last writes queued

  void Start();
  // Queues runs claimed at db_now (their leases are already ours).
  void Submit(std::vector<ClaimedRun> runs, Micros db_now);
  // Slots neither queued for nor executing workflow code (negative while
  // runs wait in the queue beyond the free slots).
  int FreeSlots() const;
  // How many runs to claim now: FreeSlots() and the prefetch room.
  int ClaimRoom() const;
  // Runs queued now.
  int Queued() const;
  // Gives back (ReleaseRun) the runs queued for longer than `age`, which
  // no slot took; returns how many.
  int ReleaseStale(std::chrono::milliseconds age);
  int Slots() const { return options_.slots; }
  // Waits until no run is queued, executing or writing its outcome, or the
  // timeout passes.
  bool WaitIdle(std::chrono::milliseconds timeout);
  // Stops the threads after the current runs (callers drain first).
  void Stop();

 private:
  struct Job {
    ClaimedRun claim;
    Micros db_now;
    std::shared_ptr<RunControl> control;
    std::chrono::steady_clock::time_point queued_at;
    bool holds_slot = true;
  };
  // A run whose completion or failure was queued to the group committer.
  struct Ending;
  // What a thread or fiber does next: a task, or else a job.
  struct Work {
    Job job;
    std::function<void()> task;
  };

  // Work to take now: a task, or a queued run with a free slot (while
  // stopping, with or without one). mu_ held.
  bool HasWork() const;
  // Takes it (HasWork() true, or stopping); false if there is none. mu_ held.
  bool TakeWork(Work& work);
  void RunWork(Work& work);
  // Wakes up to `n` threads, or the carriers, for work just queued.
  void WakeFor(int n);
  void ThreadMain();
  void CarrierMain(FiberCarrier& carrier);
  // A fiber for `carrier`, with a crash slot of its own if one is left;
  // nullptr (logged) if its stack cannot be mapped.
  std::unique_ptr<Fiber> MakeFiber(FiberCarrier& carrier);
  void DropFiber(std::unique_ptr<Fiber> fiber);
  // A crash slot for a fiber, or for a run on its carrier's own stack (-1
  // if none is left), and back.
  int TakeCrashSlot();
  void GiveCrashSlot(int slot);
  // Runs `work` on the carrier's own stack, as an executor thread would
  // (blocking the carrier while it waits): when no fiber could be made.
  void RunOnCarrier(Work& work);
  // Executes the job's run. Returns false if its last write was queued
  // (the run then ends in Ended), true if the run is done.
  bool Execute(Job& job);
  // The run's workflow code is done: frees its slot (once). `hand_over`:
  // this thread has a write to wait for first, so another one is woken for
  // a queued run.
  void LeaveSlot(Job& job, bool hand_over);
  // The committer's callback for a queued last write: retries it on a
  // pool thread if the database was unreachable, else ends the run.
  void Ended(const std::shared_ptr<Ending>& ending);
  // Logs how the run ended, and lets it go (InFlightRuns, ending_).
  void Done(const Ending& ending, RunOutcome outcome, const std::string& detail);
  // Removes a run from InFlightRuns and counts its end.
  void Forget(const std::string& run_id);

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
  // Work for any thread, before queued runs: last writes to retry.
  std::deque<std::function<void()>> tasks_;  // guarded by mu_
  int executing_ = 0;                        // runs holding a slot; guarded by mu_
  int ending_ = 0;                           // runs writing their outcome; guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  FreeRate free_rate_;                       // slots freed lately; guarded by mu_
  std::vector<std::thread> threads_;
  std::vector<std::unique_ptr<FiberCarrier>> carriers_;  // with fiber_threads
  // Crash slots for fibers: given back when a fiber goes; guarded by mu_.
  std::vector<int> free_crash_slots_;
  int crash_slots_used_ = 0;
  // Fiber stacks that could not be mapped since the last one logged, and
  // when that was (MakeFiber logs one such failure per 10 s at most);
  // guarded by mu_.
  int stack_failures_ = 0;
  std::chrono::steady_clock::time_point stack_failure_logged_;
};

}  // namespace kagzi::daemon
