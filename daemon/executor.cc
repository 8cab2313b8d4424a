// Executor threads (or fibers): replay one run at a time each.
#include "executor.h"

#include <algorithm>
#include <chrono>
#include <system_error>

#include <fmt/format.h>

#include "group_commit.h"
#include "kagzi/core/log.h"
#include "worker_shared.h"

namespace kagzi::daemon {

using std::chrono::steady_clock;

// The prefetch room: the runs the slots are expected to free within
// kPrefetchHorizon (FreeRate, counting in kRateWindow), at most half the
// slots. The horizon covers a claim's round trip and the gathering of freed
// slots before it (scheduler.cc, kClaimGather).
constexpr std::chrono::microseconds kPrefetchHorizon{10'000};
constexpr std::chrono::milliseconds kRateWindow{100};

ExecutorPool::ExecutorPool(Store& store, const PluginRegistry& registry, InFlightRuns& in_flight,
                           ExecutorOptions options, std::function<void()> on_slot_free,
                           ParkListener on_park)
    : store_(store),
      registry_(registry),
      in_flight_(in_flight),
      options_(options),
      on_slot_free_(std::move(on_slot_free)),
      on_park_(std::move(on_park)),
      free_rate_(kRateWindow) {}

// A run whose completion or failure is queued to the group committer: what
// is needed to finish it once the write is durable, after its RunContext
// and its thread have moved on.
struct ExecutorPool::Ending {
  std::string run_id;
  WorkflowKey key;
  std::shared_ptr<RunControl> control;
  RunEnd end;
};

namespace {

void LogOutcome(const std::string& run_id, const WorkflowKey& key, RunOutcome outcome,
                const std::string& detail) {
  auto log = Logger("executor");
  switch (outcome) {
    case RunOutcome::kCompleted:
      log->info("run {} ({} v{}): completed", run_id, key.name, key.version);
      break;
    case RunOutcome::kFailed:
      log->warn("run {} ({} v{}): failed: {}", run_id, key.name, key.version, detail);
      break;
    case RunOutcome::kParked:
      log->info("run {} ({} v{}): parked: {}", run_id, key.name, key.version, detail);
      break;
    case RunOutcome::kReleased:
      log->info("run {} ({} v{}): released for another daemon ({})", run_id, key.name, key.version,
                detail);
      break;
    case RunOutcome::kCancelled:
      log->info("run {} ({} v{}): cancelled: {}", run_id, key.name, key.version, detail);
      break;
    case RunOutcome::kTimedOut:
      log->warn("run {} ({} v{}): failed: {}", run_id, key.name, key.version, detail);
      break;
    case RunOutcome::kAbandoned:
      log->warn("run {} ({} v{}): abandoned, nothing more written: {}", run_id, key.name,
                key.version, detail);
      break;
  }
}

}  // namespace

ExecutorPool::~ExecutorPool() {
  Stop();
  // Last writes still queued to the committer call Ended, on its thread,
  // with this pool: wait for them.
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [&] { return ending_ == 0; });
}

void ExecutorPool::Start() {
  // A thread (or fiber) for every slot, and one more for each run that may
  // still be writing its outcome after giving its slot back; no more than
  // there are crash slots, which name the run a crashed thread was
  // executing.
  if (options_.fiber_threads > 0) {
    for (int i = 0; i < options_.fiber_threads; ++i) {
      carriers_.push_back(std::make_unique<FiberCarrier>());
      // A fiber committing a write on its carrier would hold queued runs.
      carriers_.back()->SetOtherWork([this] {
        std::lock_guard lock(mu_);
        return HasWork();
      });
    }
    for (auto& carrier : carriers_) {
      threads_.emplace_back([this, c = carrier.get()] { CarrierMain(*c); });
    }
    return;
  }
  const int threads = options_.slots + std::min(options_.slots, kMaxWorkerSlots - options_.slots);
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this, i] {
      BindThreadToSlot(i < kMaxWorkerSlots ? i : -1);
      ThreadMain();
    });
  }
}

void ExecutorPool::WakeFor(int n) {
  if (n <= 0) return;
  if (!carriers_.empty()) {
    for (auto& carrier : carriers_) carrier->Poke();
    return;
  }
  for (int i = 0; i < n; ++i) cv_.notify_one();
}

void ExecutorPool::Submit(std::vector<ClaimedRun> runs, Micros db_now) {
  int wake = 0;
  {
    const auto now = steady_clock::now();
    std::lock_guard lock(mu_);
    for (auto& claim : runs) {
      Lease lease{claim.run.id, claim.run.lease_owner.value_or(""), claim.run.lease_epoch};
      auto control = in_flight_.Add(lease);
      queue_.push_back(Job{std::move(claim), db_now, std::move(control), now});
    }
    // Runs claimed ahead, beyond the free slots, wait for LeaveSlot's
    // notification: a thread woken for them now would find no slot and
    // sleep again.
    wake = std::min(static_cast<int>(runs.size()), std::max(0, options_.slots - executing_));
  }
  // One idle thread per run that has a slot, not every idle thread; after
  // unlocking, so that a woken thread does not sleep again on mu_ at once.
  WakeFor(wake);
}

int ExecutorPool::FreeSlots() const {
  std::lock_guard lock(mu_);
  return options_.slots - executing_ - static_cast<int>(queue_.size());
}

int ExecutorPool::ClaimRoom() const {
  const auto now = steady_clock::now();
  std::lock_guard lock(mu_);
  const int prefetch = static_cast<int>(
      std::min<std::int64_t>(options_.slots / 2, free_rate_.Expected(now, kPrefetchHorizon)));
  const int room = options_.slots + prefetch - executing_ - static_cast<int>(queue_.size());
  return std::max(0, room);
}

int ExecutorPool::Queued() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(queue_.size());
}

int ExecutorPool::ReleaseStale(std::chrono::milliseconds age) {
  std::vector<Job> stale;
  {
    const auto before = steady_clock::now() - age;
    std::lock_guard lock(mu_);
    while (!queue_.empty() && queue_.front().queued_at < before) {
      stale.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  }
  for (Job& job : stale) {
    if (Status st = store_.ReleaseRun(job.control->lease); !st.ok()) {
      Logger("executor")
          ->warn("run {}: queued {} ms without a free slot; giving it back failed: {}",
                 job.claim.run.id, age.count(), st.message());
    } else {
      Logger("executor")
          ->debug("run {}: queued {} ms without a free slot; given back", job.claim.run.id,
                  age.count());
    }
    in_flight_.Remove(job.claim.run.id);
  }
  if (!stale.empty()) idle_cv_.notify_all();
  return static_cast<int>(stale.size());
}

bool ExecutorPool::WaitIdle(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return idle_cv_.wait_for(lock, timeout,
                           [&] { return executing_ == 0 && ending_ == 0 && queue_.empty(); });
}

void ExecutorPool::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& carrier : carriers_) carrier->Poke();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

bool ExecutorPool::HasWork() const {
  return !tasks_.empty() || (!queue_.empty() && executing_ < options_.slots);
}

bool ExecutorPool::TakeWork(Work& work) {
  if (!tasks_.empty()) {
    work.task = std::move(tasks_.front());
    tasks_.pop_front();
    return true;
  }
  if (queue_.empty()) return false;
  work.job = std::move(queue_.front());
  queue_.pop_front();
  ++executing_;
  return true;
}

void ExecutorPool::RunWork(Work& work) {
  if (work.task) {
    work.task();
    return;
  }
  Job& job = work.job;
  SlotEnterRun(job.claim.run.id);
  const bool done = Execute(job);
  LeaveSlot(job, false);  // if Execute returned early: this thread is free
  if (done) Forget(job.claim.run.id);
}

void ExecutorPool::ThreadMain() {
  while (true) {
    Work work;
    {
      std::unique_lock lock(mu_);
      // No more runs executing than slots: the pool has more threads (for
      // runs writing their outcome) and the queue may hold more runs.
      cv_.wait(lock, [&] { return stopping_ || HasWork(); });
      if (!TakeWork(work)) return;  // stopping and nothing left
    }
    RunWork(work);
  }
}

int ExecutorPool::TakeCrashSlot() {
  std::lock_guard lock(mu_);
  if (!free_crash_slots_.empty()) {
    const int slot = free_crash_slots_.back();
    free_crash_slots_.pop_back();
    return slot;
  }
  return crash_slots_used_ < kMaxWorkerSlots ? crash_slots_used_++ : -1;
}

void ExecutorPool::GiveCrashSlot(int slot) {
  if (slot < 0) return;
  std::lock_guard lock(mu_);
  free_crash_slots_.push_back(slot);
}

std::unique_ptr<Fiber> ExecutorPool::MakeFiber(FiberCarrier& carrier) {
  const int slot = TakeCrashSlot();
  try {
    return std::make_unique<Fiber>(carrier, options_.fiber_stack_bytes, slot);
  } catch (const std::system_error& e) {
    GiveCrashSlot(slot);
    int earlier = 0;
    {
      std::lock_guard lock(mu_);
      const auto now = steady_clock::now();
      ++stack_failures_;
      if (stack_failure_logged_ != steady_clock::time_point{} &&
          now - stack_failure_logged_ < std::chrono::seconds(10)) {
        return nullptr;
      }
      earlier = stack_failures_ - 1;
      stack_failures_ = 0;
      stack_failure_logged_ = now;
    }
    Logger("executor")
        ->error(
            "no fiber for a run: {}; it runs on its carrier thread's own stack instead, and the "
            "carrier's other runs wait while it does{}",
            e.what(),
            earlier > 0 ? fmt::format(" ({} more such runs since the last report)", earlier) : "");
    return nullptr;
  }
}

void ExecutorPool::DropFiber(std::unique_ptr<Fiber> fiber) {
  const int slot = fiber->crash_slot();
  fiber.reset();
  GiveCrashSlot(slot);
}

void ExecutorPool::RunOnCarrier(Work& work) {
  const int slot = TakeCrashSlot();
  BindThreadToSlot(slot);
  RunWork(work);
  BindThreadToSlot(-1);
  GiveCrashSlot(slot);
}

void ExecutorPool::CarrierMain(FiberCarrier& carrier) {
  // Idle fibers kept for the next runs: beyond this carrier's share of the
  // slots, a fiber whose run is done goes (its stack unmapped).
  const std::size_t keep =
      static_cast<std::size_t>(std::max(1, options_.slots / std::max(1, options_.fiber_threads)));
  std::vector<std::unique_ptr<Fiber>> idle;
  std::vector<std::unique_ptr<Fiber>> busy;  // with work, running or suspended
  while (true) {
    Fiber* fiber = carrier.PopReady();
    if (fiber == nullptr) {
      Work work;
      bool taken = false;
      bool stopping = false;
      {
        std::lock_guard lock(mu_);
        stopping = stopping_;
        if (stopping_ || HasWork()) taken = TakeWork(work);
      }
      if (!taken) {
        // Stopping ends the carrier once its suspended fibers are done.
        if (stopping && busy.empty()) break;
        carrier.Wait();
        continue;
      }
      std::unique_ptr<Fiber> made;
      if (idle.empty()) {
        made = MakeFiber(carrier);
      } else {
        made = std::move(idle.back());
        idle.pop_back();
      }
      if (!made) {
        RunOnCarrier(work);
        continue;
      }
      busy.push_back(std::move(made));
      fiber = busy.back().get();
      fiber->Assign([this, work = std::move(work)]() mutable { RunWork(work); });
    }
    fiber->Resume();
    if (fiber->Idle()) {
      auto it =
          std::find_if(busy.begin(), busy.end(), [&](const auto& f) { return f.get() == fiber; });
      std::unique_ptr<Fiber> done = std::move(*it);
      *it = std::move(busy.back());
      busy.pop_back();
      if (idle.size() < keep) {
        idle.push_back(std::move(done));
      } else {
        DropFiber(std::move(done));
      }
    }
  }
  while (!idle.empty()) {
    DropFiber(std::move(idle.back()));
    idle.pop_back();
  }
}

void ExecutorPool::Forget(const std::string& run_id) {
  in_flight_.Remove(run_id);
  // Notified under the lock: on the committer's thread, the last run's end
  // lets ~ExecutorPool return, which it can only do once it has the lock
  // again, so never while idle_cv_ is still being notified here.
  std::lock_guard lock(mu_);
  --ending_;
  idle_cv_.notify_all();
}

void ExecutorPool::Ended(const std::shared_ptr<Ending>& ending) {
  FencedWrite& write = *ending->end.write;
  if (!write.result.IsUnavailable() || ending->control->lease_lost) {
    Done(*ending, ending->end.Written(), ending->end.detail);
    return;
  }
  // The database was unreachable: retried on a pool thread, with the
  // back-off and budget of every run's writes, not on the committer's.
  auto retry = [this, ending] {
    FencedWrite& w = *ending->end.write;
    (void)RetryWhileUnavailable(*ending->control, options_.run.write_retry_budget, [&] {
      options_.run.writer->Write(w);
      return w.result;
    });
    Done(*ending, ending->end.Written(), ending->end.detail);
  };
  {
    std::unique_lock lock(mu_);
    if (!stopping_) {
      tasks_.push_back(std::move(retry));
      lock.unlock();
      WakeFor(1);
      return;
    }
  }
  retry();  // no pool thread left to take it
}

void ExecutorPool::Done(const Ending& ending, RunOutcome outcome, const std::string& detail) {
  // On the committer's thread, or a retrying one: the line gets the run's
  // fields as it would on the run's own thread. Not made for a line that
  // is not logged (a completion, below info level: kagzid at warn).
  if (outcome != RunOutcome::kCompleted || Logger("executor")->should_log(spdlog::level::info)) {
    ScopedLogContext fields(
        {.run_id = ending.run_id, .workflow = ending.key.name, .version = ending.key.version});
    LogOutcome(ending.run_id, ending.key, outcome, detail);
  }
  Forget(ending.run_id);
}

void ExecutorPool::LeaveSlot(Job& job, bool hand_over) {
  if (!job.holds_slot) return;
  job.holds_slot = false;
  SlotLeaveRun();
  bool queued = false;
  {
    const auto now = steady_clock::now();
    std::lock_guard lock(mu_);
    --executing_;
    ++ending_;
    queued = !queue_.empty();
    free_rate_.Note(now);
  }
  // A queued run takes the slot at once: on another thread if this one
  // is to wait for a write first.
  if (queued && hand_over) WakeFor(1);
  if (on_slot_free_) on_slot_free_();
}

bool ExecutorPool::Execute(Job& job) {
  auto log = Logger("executor");
  const RunRecord& run = job.claim.run;
  WorkflowKey key{run.workflow, run.version.value_or(0)};
  auto workflow = registry_.Find(key);
  if (!workflow) {
    // Claims only cover loaded versions, so this is a bug; give it back.
    log->error("run {}: workflow \"{}\" version {} is not loaded; releasing it", run.id, key.name,
               key.version);
    (void)store_.ReleaseRun(job.control->lease);
    return true;
  }
  ScopedLogContext log_ctx(
      {.run_id = run.id, .workflow = run.workflow, .version = key.version, .step = {}});
  // A workflow's default deadline applies to runs started without their own.
  if (!run.deadline_at && workflow->timeout_ms > 0) {
    Micros deadline = run.created_at + static_cast<Micros>(workflow->timeout_ms) * 1000;
    if (Status st = store_.SetDeadline(job.control->lease, deadline); !st.ok()) {
      log->warn("run {}: could not set its default deadline: {}", run.id, st.message());
    }
    job.claim.run.deadline_at = deadline;
  }
  log->debug("run {} ({} v{}): replaying, attempt {}, {} journal entries", run.id, key.name,
             key.version, run.attempts, job.claim.journal.size());
  if (run.deadline_at && job.db_now >= *run.deadline_at) {
    // Claimed at or after its deadline (parked runs wake at it): fail it
    // without running any workflow code. No call failed (the one it was
    // parked in has no FAILED entry), so a retry deletes no entry.
    Status st = store_.FailRun(job.control->lease,
                               "deadline exceeded: the run did not finish in time", std::nullopt);
    log->warn("run {} ({} v{}): failed: deadline exceeded{}", run.id, key.name, key.version,
              st.ok() ? "" : " (not recorded: " + st.message() + ")");
    return true;
  }
  RunContext ctx(store_, job.claim, job.db_now, job.control, options_.run, on_park_);
  kagzi_status status = KAGZI_ERR_PERMANENT;
  std::optional<std::string> exception;
  const kagzi_workflow* wf = workflow->descriptor;
  try {
    status = wf->run(RunContext::HostTable(), ctx.handle(), wf->user_data);
  } catch (const std::exception& e) {
    exception = e.what();
  } catch (...) {
    exception = "unknown exception";
  }
  // The code is done; what is left is writing its outcome. Through the
  // group committer, this thread does not wait for it (a release or a
  // cancellation, rare, is written here) and takes the next queued run
  // itself. Written here, another thread takes it meanwhile.
  GroupCommitter* writer = options_.run.writer;
  LeaveSlot(job, writer == nullptr);
  if (writer == nullptr) {
    RunOutcome outcome = ctx.Finish(status, exception);
    LogOutcome(run.id, key, outcome, ctx.outcome_detail());
    return true;
  }
  RunEnd end = ctx.Conclude(status, exception);
  if (!end.write) {
    LogOutcome(run.id, key, end.outcome, end.detail);
    return true;
  }
  // The completion or failure goes to the committer, and this thread on
  // to the next queued run (see the header). With none queued, it may as
  // well commit the write itself if nothing else is being committed,
  // sparing the committer's wake-up (an idle daemon's latency).
  auto ending = std::make_shared<Ending>(Ending{run.id, key, job.control, std::move(end)});
  writer->WriteAsync(
      *ending->end.write, [this, ending] { Ended(ending); }, Queued() == 0 && !FiberCarrierBusy());
  return false;
}

}  // namespace kagzi::daemon
