// RunContext: one invocation of a workflow's run() -- the replay engine.
//
// It implements the host table of plugin.h for one claimed run. Every
// context call that the journal records (step, sleep, event wait, child
// call, helper value, each member of a parallel group) takes the next
// sequence number; on replay the n-th call must have the id and kind the
// journal recorded as the n-th (non-determinism otherwise). Recorded
// outcomes are returned without running anything again; new work is
// recorded under the run's Lease before its result reaches the workflow.
// A refused (fenced) write means the lease was lost, and the run is
// abandoned without writing anything more. Parking (sleep, retry backoff,
// waits) releases the lease and returns KAGZI_SUSPEND to the plugin.
//
// Thread safety: a RunContext is used by the executor thread that created
// it; calls from any other thread are refused as misuse. The step
// functions of a parallel group run on worker threads that touch only
// their own slot and the (thread-safe) Store.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "in_flight.h"
#include "kagzi/core/store.h"
#include <kagzi/plugin.h>

namespace kagzi::daemon {
class RunContext;
class SlotStepGroup;
}  // namespace kagzi::daemon

// The opaque context of plugin.h, as the host defines it.
struct kagzi_context {
  std::uint64_t magic;
  kagzi::daemon::RunContext* self;
};

namespace kagzi::daemon {

// How a run() invocation ended, decided by RunContext::Finish.
enum class RunOutcome {
  kCompleted,  // output recorded
  kFailed,     // error recorded
  kCancelled,  // cancelled (kagzictl cancel), recorded
  kTimedOut,   // deadline exceeded, recorded as FAILED
  kParked,     // sleeping or waiting; already recorded
  kReleased,   // drained: lease given back for another daemon
  kAbandoned,  // lease lost or database unreachable: nothing more written
};
std::string_view RunOutcomeName(RunOutcome o);

// A step retry policy, validated (plugin.h kagzi_retry_policy).
struct RetryPolicy {
  int max_attempts = 3;
  std::chrono::milliseconds initial_interval{1'000};
  std::chrono::milliseconds max_interval{60'000};
  double multiplier = 2.0;
  double jitter = 0.2;
};

class GroupCommitter;

struct RunContextOptions {
  std::int64_t max_payload_bytes = 16 * 1024 * 1024;
  // How long a fenced write is retried while the database is unreachable
  // before the run is abandoned (its lease then expires and it is resumed).
  std::chrono::milliseconds write_retry_budget{10'000};
  RetryPolicy default_retry;
  int parallel_limit = 8;
  // Step results, completions and failures go through it (group commit);
  // nullptr: each is written on its own.
  GroupCommitter* writer = nullptr;
};

// Runs `write` until it succeeds, fails for a reason other than an
// unreachable database, `budget` has passed, or `control`'s lease is lost;
// retries back off from 50 ms to 1 s. Returns the last result.
Status RetryWhileUnavailable(const RunControl& control, std::chrono::milliseconds budget,
                             const std::function<Status()>& write);

// How a run() invocation ends, before anything is written for it: its
// outcome, or, for a completion or a failure, the write that records it
// and the outcome once that write is durable. The executor applies the
// write through the group committer without waiting (WriteAsync), and
// RunEnd::Written decides the outcome from its result.
struct RunEnd {
  RunOutcome outcome = RunOutcome::kAbandoned;
  std::string detail;                  // for logs (RunContext::outcome_detail)
  std::unique_ptr<FencedWrite> write;  // null: nothing left to write

  // The outcome once `write` was applied (its result filled in): `outcome`
  // if it was written; kAbandoned (detail: why) if it was refused or the
  // database stayed unreachable.
  RunOutcome Written();
};

// Called when a run parks, with its wake time (database clock, micros), if
// it has one.
using ParkListener = std::function<void(Micros wake_at)>;

class RunContext {
 public:
  RunContext(Store& store, const ClaimedRun& claim, Micros db_now,
             std::shared_ptr<RunControl> control, RunContextOptions options, ParkListener on_park);
  RunContext(const RunContext&) = delete;
  RunContext& operator=(const RunContext&) = delete;

  // The host table every run() gets (static, shared by all contexts).
  static const kagzi_host* HostTable();
  // The opaque pointer passed to run() for this context.
  kagzi_context* handle() { return &handle_; }

  // Decides and records the outcome after run() returned `status` (or threw,
  // with `exception` describing it): Conclude, then its write, if any,
  // applied and retried like every other.
  RunOutcome Finish(kagzi_status status, std::optional<std::string> exception);
  // Decides the outcome after run() returned `status` (or threw, with
  // `exception` describing it). What needs no write, or a write other than
  // the run's completion or failure (a release, a cancellation), is done
  // here; a completion or failure is returned as RunEnd::write, not yet
  // applied. Sets outcome_detail to the RunEnd's detail.
  RunEnd Conclude(kagzi_status status, std::optional<std::string> exception);

  // A short description of the last error, for logs.
  const std::string& outcome_detail() const { return outcome_detail_; }

  // --- host callbacks (called through HostTable) ---------------------------
  kagzi_status GetInput(const char** data, std::size_t* len);
  kagzi_status Step(const char* step_id, kagzi_step_fn fn, void* user,
                    const kagzi_retry_policy* policy, const char** out, std::size_t* out_len);
  kagzi_status Sleep(const char* step_id, std::uint64_t duration_ms);
  kagzi_status WaitForEvent(const char* step_id, const char* event_name, std::int64_t timeout_ms,
                            const char** payload, std::size_t* payload_len);
  kagzi_status CallChild(const char* step_id, const char* workflow, const char* input,
                         std::size_t input_len, const char** out, std::size_t* out_len);
  kagzi_status Parallel(kagzi_parallel_step* steps, std::size_t count,
                        std::uint32_t max_concurrency);
  kagzi_status NowMs(const char* step_id, std::int64_t* unix_ms);
  kagzi_status RandomU64(const char* step_id, std::uint64_t* value);
  kagzi_status SetOutput(const char* json, std::size_t len);
  kagzi_status SetError(const char* message, std::size_t len);
  void Log(std::int32_t level, const char* message, std::size_t len);
  kagzi_status GetRunId(const char** id, std::size_t* len);

  static RunContext* FromHandle(kagzi_context* ctx);

 private:
  // The result of running one step function (no context state touched:
  // safe on a worker thread).
  struct Attempt {
    kagzi_status status = KAGZI_ERR_PERMANENT;
    std::string text;  // JSON result or error message
    bool overflow = false;
  };
  // A step call resolved to what must be written: its record, and the
  // status/text handed back to the plugin once written.
  struct StepPlan {
    StepRecord record;
    std::optional<std::chrono::milliseconds> retry_in;  // RETRYING: next attempt
    kagzi_status result = KAGZI_OK;
    std::string text;
  };

  // Checks common to every journaled call; assigns the call's seq and
  // returns the recorded entry, if any.
  kagzi_status BeginCall(const char* step_id, StepKind kind, const StepRecord** recorded,
                         std::string* id_out, int* seq_out);
  // Before doing anything new: lease lost, deadline passed, cancellation
  // pending, draining. Returns KAGZI_OK to go on; otherwise what to return
  // to the plugin (a delivered cancellation is journaled under id/seq/kind).
  kagzi_status CheckInterrupts(const std::string& id, int seq, StepKind kind);
  // The outcome a recorded final entry stands for.
  kagzi_status RecordedStatus(const StepRecord& r);
  kagzi_status HostError(kagzi_status code, std::string message);
  kagzi_status Suspend(RunOutcome why, std::string detail);
  // Maps a failed store write to what the plugin gets back.
  kagzi_status WriteFailed(const Status& st);
  // Parks the run; returns KAGZI_SUSPEND (or a write failure's status).
  kagzi_status Park(const std::optional<StepRecord>& step, const ParkOptions& options,
                    std::string detail);
  // Runs a fenced write, retrying while the database is unreachable.
  Status Write(const std::function<Status()>& write);
  // Records a journal entry (a step's result, a sleep, a wait); new_entry:
  // the journal had no entry of its id (FencedWrite::new_entry).
  Status Record(const StepRecord& record, bool new_entry = false);
  // A fenced write of `kind` for this run (step: kRecordStep, the step's
  // record; value: kCompleteRun's output, kFailRun's error).
  FencedWrite MakeFenced(FencedWrite::Kind kind, const StepRecord* step, std::string value) const;
  // A step result, completion or failure, through options_.writer (group
  // commit) when there is one; retried like Write.
  Status Fenced(FencedWrite::Kind kind, const StepRecord* step, std::string value,
                WriteFeedback* feedback = nullptr, bool new_entry = false);
  // Applies `w` (a step result, end or park) through options_.writer when
  // there is one, else on its own; retried like Write.
  Status Apply(FencedWrite& w);
  // Runs a step function; `group` is set for a parallel group's members,
  // which share the run's crash slot.
  Attempt RunStepFunction(kagzi_step_fn fn, void* user, const std::string& id,
                          SlotStepGroup* group = nullptr) const;
  StepPlan PlanStep(const std::string& id, int seq, int attempt, const RetryPolicy& policy,
                    Attempt attempt_result, Micros started) const;
  std::chrono::milliseconds Backoff(const RetryPolicy& policy, int attempt) const;
  // The run's random generator, seeded on first use; call with g_rng_mu held.
  std::mt19937_64& Rng() const;
  Status ParsePolicy(const kagzi_retry_policy* p, RetryPolicy* out) const;
  kagzi_status RecordHelper(const char* step_id, const std::function<std::string()>& make,
                            std::string* value);
  const char* Keep(std::string s, std::size_t* len);
  // Keeps `text` for the run and points a host call's (text, length)
  // out-parameters at it (either may be NULL).
  void GiveText(std::string text, const char** out, std::size_t* out_len);
  Micros DbNow() const;
  bool DeadlinePassed() const;
  bool OnRunThread() const { return std::this_thread::get_id() == thread_; }
  bool CheckThread();

  Store& store_;
  const ClaimedRun& claim_;
  std::shared_ptr<RunControl> control_;
  RunContextOptions options_;
  ParkListener on_park_;
  kagzi_context handle_;
  std::atomic<bool> foreign_call_{false};  // a call came from another thread
  std::thread::id thread_;
  Micros db_now_at_claim_;
  std::chrono::steady_clock::time_point claimed_at_;
  // Seeded at first use (Rng()): most runs never draw a number, and seeding
  // from std::random_device for every run cost 1% of the machine's CPU
  // in kagzi-bench bench3.
  mutable std::optional<std::mt19937_64> rng_;

  std::unordered_map<std::string, const StepRecord*> journal_by_id_;
  std::vector<const StepRecord*> journal_by_seq_;
  std::unordered_set<std::string> used_ids_;
  int next_seq_ = 0;
  // The seq at which the latest call began (a parallel group's first
  // member): a failure of the run is blamed on it, for kagzictl retry.
  std::optional<int> last_call_seq_;

  bool in_step_ = false;
  std::string current_step_;             // id of the step whose function is running
  std::optional<RunOutcome> suspended_;  // host returned SUSPEND for this reason
  std::optional<std::pair<kagzi_status, std::string>> host_error_;  // misuse/non-determinism
  // Cancellation: requested (at claim, or learnt from a write) and whether
  // it was delivered to the workflow yet.
  bool cancel_requested_ = false;
  std::string cancel_reason_;
  bool cancel_delivered_ = false;
  std::optional<std::string> output_;
  std::optional<std::string> error_;
  std::deque<std::string> kept_;  // strings handed to the plugin (stable addresses)
  std::string outcome_detail_;
};

}  // namespace kagzi::daemon
