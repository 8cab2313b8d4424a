// WorkerShared: the page a kagzid supervisor shares with one worker process
// (mmap MAP_SHARED, made before fork), and the worker-side crash reporting.
//
// Each executor thread of a worker owns one CrashSlot and writes into it
// which run, and which step function, it is running (the members of a
// parallel group run on more threads that share their run's slot, through
// SlotStepGroup). When plugin code kills
// the worker (a signal such as SIGSEGV or SIGABRT, or exit()), the worker's
// crash handler records the crashing thread's slot index before the process
// dies, so the supervisor knows exactly which run to blame; the other runs
// of the worker are released without blame. The supervisor also reads the
// slots to find step functions running past step_timeout, and the loop
// heartbeat to find a wedged worker.
//
// Concurrency: written by the worker's threads, read by the supervisor,
// through std::atomic fields (lock-free, address-free: valid across
// processes) and plain character arrays that the supervisor reads only
// after the worker is dead or through the slot's sequence counter.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace kagzi::daemon {

inline constexpr int kMaxWorkerSlots = 1024;
// crash_signal value meaning "plugin code called exit()", and the status the
// worker then exits with.
inline constexpr int kCrashExitCalled = -1;
inline constexpr int kExitCalledStatus = 121;

struct CrashSlot {
  // 0: idle, 1: running the workflow function, 2: inside a step function.
  std::atomic<std::uint32_t> state;
  // Bumped before and after run_id/step_id change (odd while writing).
  std::atomic<std::uint32_t> version;
  // CLOCK_MONOTONIC milliseconds when the current step function started.
  std::atomic<std::int64_t> step_started_ms;
  // The signal this thread died of (or kCrashExitCalled), set before it
  // claims crashed_slot: whichever thread wins, its own reason is there.
  std::atomic<std::int32_t> crash_signal;
  // 1 once the thread that crashed first has copied the step it was running
  // into crash_step_id (several threads share a slot in a parallel group,
  // and step_id shows only the oldest running member).
  std::atomic<std::int32_t> crash_step_known;
  char run_id[40];
  char step_id[256];
  char crash_step_id[256];
};

struct WorkerShared {
  std::atomic<std::int64_t> loop_heartbeat_ms;  // CLOCK_MONOTONIC ms, scheduler loop
  std::atomic<std::int32_t> ready;              // 1 once the worker is serving
  std::atomic<std::int32_t> crashed_slot;       // slot of the thread that crashed first, or -1
  std::atomic<std::int32_t> in_flight;          // runs in flight (for STATUS=)
  std::atomic<std::int32_t> loaded_workflows;   // (workflow, version) pairs loaded
  std::atomic<std::int32_t> normal_exit;        // 1 once the worker exits on purpose
  char instance_id[40];                         // the worker's lease owner id
  CrashSlot slots[kMaxWorkerSlots];
};

static_assert(std::atomic<std::int64_t>::is_always_lock_free);
static_assert(std::atomic<std::int32_t>::is_always_lock_free);

// Maps a zeroed shared page for one worker (in the supervisor, before fork).
WorkerShared* MapWorkerShared();
void ResetWorkerShared(WorkerShared* shared);

std::int64_t MonotonicMs();

// --- worker side ----------------------------------------------------------

// Installs the crash handlers (fatal signals, atexit) of this worker process;
// they record the calling thread's slot in `shared`. Call once, in the
// worker, before any plugin is loaded.
void InstallCrashReporting(WorkerShared* shared);
// Marks the calling thread as the owner of slot `index` (an executor thread,
// or a parallel-step worker thread borrowing its run's slot); -1 for none.
void BindThreadToSlot(int index);
int CurrentSlot();
// Swaps the calling thread's crash slot and current step with `slot` and
// `step`: a fiber (fiber.h) carries its own across switches.
void SwapSlotState(int& slot, const char*& step);
// The worker shared page (nullptr when not running as a supervised worker).
WorkerShared* CurrentWorkerShared();

// Slot updates for the calling thread's slot (no-ops without one).
void SlotEnterRun(const std::string& run_id);
void SlotEnterStep(const std::string& step_id);
void SlotLeaveStep();
void SlotLeaveRun();

// The members of a run's parallel group run on several threads that share
// the run's slot. The group is the slot's one writer while it runs: the slot
// shows the oldest member still running (its id and start time), so the step
// watchdog times the member that has run longest, and it stays "inside a
// step" until the last member returns.
class SlotStepGroup {
 public:
  void Enter(const std::string& step_id);
  void Leave(const std::string& step_id);

 private:
  std::mutex mu_;
  std::vector<std::pair<std::string, std::int64_t>> running_;  // oldest first
};

// Called when the worker exits on purpose (so atexit does not report it).
void MarkNormalExit();

}  // namespace kagzi::daemon
