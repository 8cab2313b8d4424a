// Executor threads: replay one run at a time each.
#include "executor.h"

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

ExecutorPool::~ExecutorPool() { Stop(); }

void ExecutorPool::Start() {
  // A thread for every slot, and one more for each run that may still be
  // writing its outcome after giving its slot back; no more than there are
  // crash slots, which name the run a crashed thread was executing.
  const int threads = options_.slots + std::min(options_.slots, kMaxWorkerSlots - options_.slots);
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this, i] {
      BindThreadToSlot(i < kMaxWorkerSlots ? i : -1);
      ThreadMain();
    });
  }
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
  for (int i = 0; i < wake; ++i) cv_.notify_one();
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
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void ExecutorPool::ThreadMain() {
  while (true) {
    Job job;
    {
      std::unique_lock lock(mu_);
      // No more runs executing than slots: the pool has more threads (for
      // runs writing their outcome) and the queue may hold more runs.
      cv_.wait(lock, [&] { return stopping_ || (!queue_.empty() && executing_ < options_.slots); });
      if (queue_.empty()) return;  // stopping and nothing left
      job = std::move(queue_.front());
      queue_.pop_front();
      ++executing_;
    }
    SlotEnterRun(job.claim.run.id);
    Execute(job);
    LeaveSlot(job);
    in_flight_.Remove(job.claim.run.id);
    {
      std::lock_guard lock(mu_);
      --ending_;
    }
    idle_cv_.notify_all();
  }
}

void ExecutorPool::LeaveSlot(Job& job) {
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
  // A queued run takes the slot at once.
  if (queued) cv_.notify_one();
  if (on_slot_free_) on_slot_free_();
}

void ExecutorPool::Execute(Job& job) {
  auto log = Logger("executor");
  const RunRecord& run = job.claim.run;
  WorkflowKey key{run.workflow, run.version.value_or(0)};
  auto workflow = registry_.Find(key);
  if (!workflow) {
    // Claims only cover loaded versions, so this is a bug; give it back.
    log->error("run {}: workflow \"{}\" version {} is not loaded; releasing it", run.id, key.name,
               key.version);
    (void)store_.ReleaseRun(job.control->lease);
    return;
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
    return;
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
  LeaveSlot(job);  // the code is done; what is left is writing its outcome
  RunOutcome outcome = ctx.Finish(status, exception);
  switch (outcome) {
    case RunOutcome::kCompleted:
      log->info("run {} ({} v{}): completed", run.id, key.name, key.version);
      break;
    case RunOutcome::kFailed:
      log->warn("run {} ({} v{}): failed: {}", run.id, key.name, key.version, ctx.outcome_detail());
      break;
    case RunOutcome::kParked:
      log->info("run {} ({} v{}): parked: {}", run.id, key.name, key.version, ctx.outcome_detail());
      break;
    case RunOutcome::kReleased:
      log->info("run {} ({} v{}): released for another daemon ({})", run.id, key.name, key.version,
                ctx.outcome_detail());
      break;
    case RunOutcome::kCancelled:
      log->info("run {} ({} v{}): cancelled: {}", run.id, key.name, key.version,
                ctx.outcome_detail());
      break;
    case RunOutcome::kTimedOut:
      log->warn("run {} ({} v{}): failed: {}", run.id, key.name, key.version, ctx.outcome_detail());
      break;
    case RunOutcome::kAbandoned:
      log->warn("run {} ({} v{}): abandoned, nothing more written: {}", run.id, key.name,
                key.version, ctx.outcome_detail());
      break;
  }
}

}  // namespace kagzi::daemon
