// The Store: every read and write Kagzi makes to its database.
//
// Store is the interface the daemon and kagzictl program against; PgStore
// (below) is its PostgreSQL implementation. The claim/lease protocol it
// implements is described in docs/ARCHITECTURE.md ("Leases and fencing"):
//   - ClaimRuns takes a batch of runnable runs with FOR UPDATE SKIP LOCKED,
//     bumps each run's lease epoch (the fencing token), commits, and returns
//     each run with its journal (read by a second statement, after the
//     claim committed, so it includes every step the previous lease holder
//     committed; a run claimed for the first time has none to read).
//   - Every write made for a claimed run (RecordStep, ParkRun, FinishRun,
//     ReleaseRun) carries a Lease and succeeds only if the run's lease owner
//     and epoch still match; otherwise it returns kConflict and writes
//     nothing.
//   - Heartbeat renews all of a daemon's leases in one statement.
// Times are microseconds since the Unix epoch on the DATABASE clock.
// Thread safety: PgStore methods may be called from any thread concurrently
// (each call takes a pooled connection).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kagzi/core/migrations.h"
#include "kagzi/core/pg.h"
#include "kagzi/core/status.h"

namespace kagzi {

using Micros = std::int64_t;  // microseconds since the Unix epoch (DB clock)

enum class RunStatus { kPending, kRunning, kSleeping, kCompleted, kFailed, kCancelled };
std::string_view RunStatusName(RunStatus s);                  // "PENDING", ...
std::optional<RunStatus> ParseRunStatus(std::string_view s);  // case-insensitive
inline bool IsTerminal(RunStatus s) {
  return s == RunStatus::kCompleted || s == RunStatus::kFailed || s == RunStatus::kCancelled;
}

enum class StepKind { kStep, kSleep, kEvent, kChild, kHelper };
std::string_view StepKindName(StepKind k);  // "step", "sleep", ...
std::optional<StepKind> ParseStepKind(std::string_view s);

// COMPLETED/FAILED are final. RETRYING: a step between attempts (wake_at is
// when the next is due). WAITING: an event wait or child call not yet
// satisfied.
enum class StepStatus { kCompleted, kFailed, kRetrying, kWaiting };
std::string_view StepStatusName(StepStatus s);  // "COMPLETED", ...
std::optional<StepStatus> ParseStepStatus(std::string_view s);
enum class ErrorKind { kRetryable, kPermanent, kTimeout, kCancelled };
std::string_view ErrorKindName(ErrorKind k);  // "retryable", ...
std::optional<ErrorKind> ParseErrorKind(std::string_view s);

// One journal entry.
struct StepRecord {
  std::string step_id;
  int seq = 0;  // order in which the run first recorded it (0-based)
  StepKind kind = StepKind::kStep;
  StepStatus status = StepStatus::kCompleted;
  std::optional<std::string> output;  // JSON text (COMPLETED steps)
  std::optional<std::string> error;   // message (FAILED steps)
  ErrorKind error_kind = ErrorKind::kPermanent;
  int attempts = 1;
  std::optional<Micros> wake_at;  // sleeps; next attempt (RETRYING); wait deadline (WAITING)
  std::optional<Micros> started_at;
  Micros finished_at = 0;
  std::optional<std::string> event_name;    // event waits
  std::optional<std::string> child_run_id;  // child calls
};

// A child call's child, as the claim found it (journal entries of kind
// child that are WAITING).
struct ChildOutcome {
  RunStatus status = RunStatus::kPending;
  std::optional<std::string> output;
  std::optional<std::string> error;
};

struct RunRecord {
  std::string id;
  std::string workflow;
  std::optional<int> version;
  RunStatus status = RunStatus::kPending;
  std::string input;
  std::optional<std::string> output;
  std::optional<std::string> error;
  int priority = 0;
  Micros available_at = 0;
  std::optional<std::string> lease_owner;
  std::optional<Micros> lease_expires_at;
  std::int64_t lease_epoch = 0;
  int attempts = 0;
  std::optional<std::string> parent_run_id;
  std::optional<std::string> idempotency_key;
  Micros created_at = 0;
  std::optional<Micros> started_at;
  Micros updated_at = 0;
  std::optional<Micros> finished_at;
  std::optional<Micros> deadline_at;
  int crash_count = 0;
  std::optional<std::string> last_crash;
  bool cancel_requested = false;
  std::optional<std::string> cancel_reason;
  std::int64_t wake_seq = 0;
};

// Proof of ownership carried by every write for a claimed run.
struct Lease {
  std::string run_id;
  std::string owner;  // daemon instance id
  std::int64_t epoch = 0;
};

struct WorkflowKey {
  std::string name;
  int version = 0;
  bool operator==(const WorkflowKey&) const = default;
};

struct ClaimRequest {
  std::string owner;
  std::vector<WorkflowKey> loaded;  // only runs of these are claimed
  int limit = 1;
  std::chrono::milliseconds lease_ttl{30'000};
  // Empty: the due runs (and runs whose lease expired), highest priority
  // first. Otherwise only these runs, if due (runs announced by their
  // start, wakeup.h), read by primary key; at most `limit` of them, in no
  // particular order.
  std::vector<std::string> run_ids{};
};

struct ClaimedRun {
  RunRecord run;                    // status RUNNING, version pinned, epoch bumped
  std::vector<StepRecord> journal;  // sorted by seq
  // For child-call entries: the child's state, by child run id.
  std::map<std::string, ChildOutcome> children;
};

// What a fenced write learned about the run while it held its row lock.
struct WriteFeedback {
  bool cancel_requested = false;
  std::optional<std::string> cancel_reason;
};

// How to park a run (ParkRun).
struct ParkOptions {
  // Wake time: a delay from now (database clock), or an absolute time, or
  // neither (until woken by kagzi_wake: an event arrives, a child finishes).
  std::optional<std::chrono::milliseconds> delay;
  std::optional<Micros> until;
  // For waits: park only if the run's wake_seq still has this value (the
  // value read at the claim); otherwise something happened since, and the
  // run stays claimable now.
  std::optional<std::int64_t> expected_wake_seq;
};

// One fenced write for a claimed run, for Store::ApplyWrites; `result`
// and `feedback` (`parked_until` for a park) are filled in as RecordStep,
// CompleteRun, FailRun or ParkRun would return them.
struct FencedWrite {
  enum class Kind { kRecordStep, kCompleteRun, kFailRun, kPark };
  Kind kind = Kind::kRecordStep;
  Lease lease;
  StepRecord step;  // kRecordStep; kPark, if park_step
  // kRecordStep: the run's journal had no entry of this id when the run
  // was claimed, and this is the write's first try. Such entries are
  // inserted as they are (no upsert, which costs PostgreSQL a speculative
  // insertion); should the entry exist after all, the statement fails and
  // the write is made again as an upsert, with the same answer.
  bool new_entry = false;
  // kPark: how the run parks, whether `step` is written with it, and the
  // wake time ParkRun returned (nullopt: until woken).
  ParkOptions park;
  bool park_step = false;
  std::optional<Micros> parked_until;
  std::string value;  // kCompleteRun: the output JSON; kFailRun: the error
  // kFailRun: the seq at which the run's last call began (see FailRun).
  std::optional<int> failed_call_seq;
  // kCompleteRun, kFailRun: the run's parent, which its end wakes (for the
  // kagzi_wakeup sent after the commit).
  std::optional<std::string> parent_run_id;
  Status result;
  WriteFeedback feedback;
};

struct ClaimBatch {
  Micros db_now = 0;
  std::vector<ClaimedRun> runs;
};

struct DaemonInfo {
  std::string id;
  std::string hostname;
  int pid = 0;
  std::string version;
  int concurrency = 0;
  std::chrono::milliseconds lease_ttl{30'000};
  // A worker process of a kagzid supervisor (crash isolation).
  std::optional<std::string> supervisor_id;
  int worker_index = 0;
  int restarts = 0;
};

// What the supervisor knows after a worker process died.
struct WorkerDeath {
  std::string worker_id;  // the dead worker's lease owner id
  // The run whose code was running on the thread that crashed, if known,
  // and why ("worker killed by SIGSEGV while running step \"x\"").
  std::optional<std::string> blamed_run_id;
  std::string reason;
  int max_crashes = 3;  // the blamed run fails at this many crashes
};

struct WorkerRecovery {
  int released = 0;                   // runs given back, runnable now
  std::optional<int> blamed_crashes;  // the blamed run's crash count now
  bool blamed_failed = false;         // ... and whether it was failed for it
};

struct LoadedWorkflow {
  WorkflowKey key;
  std::string plugin_path;
  std::string plugin_name;
};

struct DaemonRecord {
  DaemonInfo info;
  Micros started_at = 0;
  Micros heartbeat_at = 0;
  bool alive = false;  // heartbeat within its lease TTL
  int running = 0;     // runs it currently leases
};

struct WorkflowRecord {
  WorkflowKey key;
  std::vector<std::string> daemons;  // live daemon ids that have it loaded
  std::string plugin_path;           // as loaded by one of them
  int open_runs = 0;                 // runs of this version not yet terminal
};

struct StartRequest {
  std::string workflow;
  std::string input = "null";  // validated JSON text
  std::optional<std::string> idempotency_key;
  int priority = 0;
  // Deadline, from now; the run fails with "deadline exceeded" after it.
  std::optional<std::chrono::milliseconds> timeout;
};

struct StartResult {
  std::string run_id;
  bool created = false;  // false: the idempotency key matched an existing run
};

struct ListFilter {
  std::optional<RunStatus> status;
  std::optional<std::string> workflow;
  std::optional<int> version;
  std::optional<Micros> created_after;   // inclusive
  std::optional<Micros> created_before;  // exclusive
  std::optional<std::string> parent_run_id;
  int limit = 50;
};

class Store {
 public:
  virtual ~Store() = default;

  // --- daemon registry ---------------------------------------------------
  // Upserts the daemon row, replaces its loaded workflows, and records each
  // (workflow, version) in the registry of ever-seen workflows.
  virtual Status RegisterDaemon(const DaemonInfo& info,
                                const std::vector<LoadedWorkflow>& workflows) = 0;
  virtual Status UnregisterDaemon(std::string_view daemon_id) = 0;
  // After a worker process died: in one transaction, records a crash against
  // the blamed run (failing it at max_crashes, else making it runnable now),
  // gives every other run the worker leased back (runnable now, epoch
  // bumped: no waiting for the lease TTL), and unregisters the worker.
  virtual Result<WorkerRecovery> RecoverWorker(const WorkerDeath& death) = 0;

  // --- claim and lease ---------------------------------------------------
  virtual Result<ClaimBatch> ClaimRuns(const ClaimRequest& request) = 0;
  // Renews every lease `owner` holds and its daemon heartbeat, in one
  // statement; returns the ids of the runs whose lease was renewed.
  // With `only`, renews just those runs (the ones this instance is working
  // on): a run it abandoned, or claimed without learning it, then expires.
  virtual Result<std::vector<std::string>> Heartbeat(
      std::string_view owner, std::chrono::milliseconds lease_ttl,
      const std::optional<std::vector<std::string>>& only = std::nullopt) = 0;
  // Earliest available_at among PENDING/SLEEPING runs of the given
  // workflows, and earliest lease expiry among RUNNING runs; nullopt when
  // there is none.
  virtual Result<std::optional<Micros>> NextWakeTime(const std::vector<WorkflowKey>& loaded) = 0;

  // --- fenced writes for a claimed run (kConflict: lease lost) -----------
  // Records one journal entry, or updates a pending one (RETRYING/WAITING)
  // with the same id; a final entry is never changed. Fills *feedback.
  // kPermanent: the run's deadline has passed (nothing written).
  virtual Status RecordStep(const Lease& lease, const StepRecord& step,
                            WriteFeedback* feedback = nullptr) = 0;
  // Optionally records a journal entry and parks the run as SLEEPING
  // (lease released) per options; available_at is capped by the run's
  // deadline. Returns the wake time (nullopt: until woken).
  virtual Result<std::optional<Micros>> ParkRun(const Lease& lease,
                                                const std::optional<StepRecord>& step,
                                                const ParkOptions& options) = 0;
  // Convenience: park for `delay` from now.
  Result<Micros> ParkRun(const Lease& lease, const std::optional<StepRecord>& step,
                         std::chrono::milliseconds delay) {
    auto r = ParkRun(lease, step, ParkOptions{delay, std::nullopt, std::nullopt});
    if (!r.ok()) return r.status();
    return r->value_or(0);
  }
  // Consumes the oldest unconsumed event named wait.event_name sent to the
  // run and records `wait` COMPLETED with its payload, in one statement.
  // Returns the payload, or nullopt when there is no such event (nothing
  // written).
  virtual Result<std::optional<std::string>> ConsumeEvent(const Lease& lease,
                                                          const StepRecord& wait) = 0;
  // Starts the child run (parent = lease.run_id; idempotent per parent and
  // step id) and records `entry` WAITING with its id. Returns the child's
  // run id.
  virtual Result<std::string> StartChild(const Lease& lease, const StepRecord& entry,
                                         const StartRequest& child) = 0;
  // Sets the run's deadline if it has none (a workflow's default timeout).
  virtual Status SetDeadline(const Lease& lease, Micros deadline_at) = 0;
  // Ends the run CANCELLED with reason, and cancels its children.
  virtual Status CancelRun(const Lease& lease, std::string_view reason) = 0;
  virtual Status CompleteRun(const Lease& lease, std::string_view output_json) = 0;
  // Ends the run FAILED with error. failed_call_seq: the journal seq at
  // which the workflow's last call began (a parallel group's first member),
  // whose FAILED entries a retry runs again; nullopt if no call is to blame.
  virtual Status FailRun(const Lease& lease, std::string_view error,
                         std::optional<int> failed_call_seq) = 0;
  // Gives the run back (PENDING, runnable now) so another daemon takes it at
  // once; bumps the epoch so late writes from this lease are refused.
  virtual Status ReleaseRun(const Lease& lease) = 0;
  // Applies fenced writes of different runs (at most one per run) and
  // fills in each one's result, with as few commits as it can: PgStore
  // commits them together, in one transaction sent as one pipeline (group
  // commit). Every write is durable once this returns with its result ok.
  // This default makes the calls one by one.
  virtual void ApplyWrites(const std::vector<FencedWrite*>& writes);

  // --- clients (kagzictl) -------------------------------------------------
  virtual Result<StartResult> StartRun(const StartRequest& request) = 0;
  // True if any daemon, live or past, registered this workflow name.
  virtual Result<bool> WorkflowKnown(std::string_view workflow) = 0;
  virtual Result<RunRecord> GetRun(std::string_view run_id) = 0;
  virtual Result<std::vector<StepRecord>> GetSteps(std::string_view run_id) = 0;
  virtual Result<std::vector<RunRecord>> ListRuns(const ListFilter& filter) = 0;
  virtual Result<std::vector<WorkflowRecord>> ListWorkflows() = 0;
  virtual Result<std::vector<DaemonRecord>> ListDaemons() = 0;
  virtual Result<Micros> Now() = 0;
  // Cancels a run and its children (kagzi_cancel): parked and pending runs
  // at once, running ones at their next step boundary. kInvalidArgument if
  // the run is already terminal. Returns how many runs were affected.
  virtual Result<int> RequestCancel(std::string_view run_id, std::string_view reason) = 0;
  // Sends an event to a non-terminal run and wakes it if it is parked.
  virtual Status SendEvent(std::string_view run_id, std::string_view name,
                           std::string_view payload_json) = 0;
  // Resumes a FAILED run from the call that failed it: that call's FAILED
  // journal entries are removed (they run again), every other entry stays
  // (a failure the workflow handled too); the run becomes PENDING.
  virtual Status RetryRun(std::string_view run_id) = 0;
};

struct PgStoreOptions {
  std::string database_url;
  std::string application_name = "kagzi";
  int pool_size = 4;
  // Every connection runs its prepared statements with their generic plans
  // (plan_cache_mode = force_generic_plan), planned once per connection,
  // instead of planning each of the first five calls afresh. For the
  // daemon: each of its statements is written for its generic plan (the
  // claim's, the group writes' and the next wake's plans are tested).
  bool generic_plans = false;
};

namespace pg_internal {
class StartGroup;
}  // namespace pg_internal

class PgStore final : public Store {
 public:
  explicit PgStore(PgStoreOptions options);
  ~PgStore() override;

  // Connects once and applies pending migrations (kagzid start).
  Result<core::MigrationReport> Migrate();

  // Opens `connections` of the pool now, prepares on each the statements a
  // daemon runs for every run (claim, step records, ends, heartbeats) and
  // plans them (plans that stay cached with generic_plans): the first runs
  // a daemon takes after a quiet start wait for no connection, parse or
  // plan.
  Status WarmPool(int connections);
  // The generic plans cached on the connection the pool hands out next, by
  // statement name, as EXPLAIN prints them: for tests of WarmPool.
  Result<std::map<std::string, std::string>> CachedPlans();

  // Blocks until the run is terminal (LISTEN kagzi_run_finished, with
  // polling as the safety net) or the timeout passes, and returns the run as
  // it then is: callers check IsTerminal(run.status).
  Result<RunRecord> WaitForRun(std::string_view run_id,
                               std::optional<std::chrono::milliseconds> timeout);

  Status RegisterDaemon(const DaemonInfo& info,
                        const std::vector<LoadedWorkflow>& workflows) override;
  Status UnregisterDaemon(std::string_view daemon_id) override;
  Result<WorkerRecovery> RecoverWorker(const WorkerDeath& death) override;
  Result<ClaimBatch> ClaimRuns(const ClaimRequest& request) override;
  // PostgreSQL's plan for ClaimRuns(request), as EXPLAIN prints it (the
  // claim is planned, not run): the generic plan the claims run, made as
  // ClaimRuns makes it, or the one this connection has cached. For tests
  // and kagzi-bench. With `analyze`,
  // as EXPLAIN (ANALYZE, BUFFERS) prints it: the claim runs, in a
  // transaction that is rolled back, so nothing is claimed.
  Result<std::string> ExplainClaim(const ClaimRequest& request, bool analyze = false);
  // The generic plans of the group commit's batch statements (new step
  // entries, step records and run ends), as EXPLAIN prints them, one after
  // the other, each after its name and a colon.
  Result<std::string> ExplainGroupWrites();
  // NextWakeTime's plan, as EXPLAIN prints it: the generic plan, made
  // under the settings it runs with. With `analyze`, as EXPLAIN (ANALYZE,
  // BUFFERS) prints it (it only reads).
  Result<std::string> ExplainNextWake(const std::vector<WorkflowKey>& loaded, bool analyze = false);
  Result<std::vector<std::string>> Heartbeat(
      std::string_view owner, std::chrono::milliseconds lease_ttl,
      const std::optional<std::vector<std::string>>& only = std::nullopt) override;
  Result<std::optional<Micros>> NextWakeTime(const std::vector<WorkflowKey>& loaded) override;
  Status RecordStep(const Lease& lease, const StepRecord& step,
                    WriteFeedback* feedback = nullptr) override;
  using Store::ParkRun;
  Result<std::optional<Micros>> ParkRun(const Lease& lease, const std::optional<StepRecord>& step,
                                        const ParkOptions& options) override;
  Result<std::optional<std::string>> ConsumeEvent(const Lease& lease,
                                                  const StepRecord& wait) override;
  Result<std::string> StartChild(const Lease& lease, const StepRecord& entry,
                                 const StartRequest& child) override;
  Status SetDeadline(const Lease& lease, Micros deadline_at) override;
  Status CancelRun(const Lease& lease, std::string_view reason) override;
  Status CompleteRun(const Lease& lease, std::string_view output_json) override;
  Status FailRun(const Lease& lease, std::string_view error,
                 std::optional<int> failed_call_seq) override;
  Status ReleaseRun(const Lease& lease) override;
  void ApplyWrites(const std::vector<FencedWrite*>& writes) override;
  Result<StartResult> StartRun(const StartRequest& request) override;
  // Starts many runs with one round trip and one commit. Every request is
  // checked first as StartRun checks it; one that fails fails the call and
  // nothing is started. Otherwise all new runs are committed together, and
  // each request gets what StartRun would have returned (an idempotency key
  // that matches a run of another workflow: that request's kConflict).
  Result<std::vector<Result<StartResult>>> StartRuns(const std::vector<StartRequest>& requests);
  Result<bool> WorkflowKnown(std::string_view workflow) override;
  Result<RunRecord> GetRun(std::string_view run_id) override;
  Result<std::vector<StepRecord>> GetSteps(std::string_view run_id) override;
  Result<std::vector<RunRecord>> ListRuns(const ListFilter& filter) override;
  Result<std::vector<WorkflowRecord>> ListWorkflows() override;
  Result<std::vector<DaemonRecord>> ListDaemons() override;
  Result<Micros> Now() override;
  Result<int> RequestCancel(std::string_view run_id, std::string_view reason) override;
  Status SendEvent(std::string_view run_id, std::string_view name,
                   std::string_view payload_json) override;
  Status RetryRun(std::string_view run_id) override;

 private:
  // A lone step write of a new entry (FencedWrite::new_entry), with a
  // plain INSERT: answers `w` and returns true, or returns false, having
  // written nothing, if the entry or its seq exists after all.
  bool InsertStep(FencedWrite& w);
  // Inserts already-checked requests in one transaction and announces them
  // after its commit: StartRuns, and each group of concurrent StartRun.
  Result<std::vector<Result<StartResult>>> InsertRuns(
      const std::vector<const StartRequest*>& requests);
  // Adds the journals of `run_ids` (claimed again) to their runs in `batch`.
  static Status ReadJournals(PgConnection& c, const std::vector<std::string>& run_ids,
                             ClaimBatch& batch);

  PgStoreOptions options_;
  PgPool pool_;
  std::unique_ptr<pg_internal::StartGroup> starts_;  // concurrent StartRun calls
};

}  // namespace kagzi
