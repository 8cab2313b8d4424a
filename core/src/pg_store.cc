// PgStore: the Store on PostgreSQL. All SQL of the claim/lease protocol is
// here, as prepared statements with parameters. Fenced writes lock the run
// row (FOR NO KEY UPDATE, or an UPDATE) and re-check owner and epoch under
// that lock, so a write from a stale lease can never interleave with a new
// claim: either it commits before the claim locks the run (and the claim's
// journal read, a later statement, sees it), or it sees the new epoch and
// writes nothing. See docs/ARCHITECTURE.md.
#include <thread>

#include "kagzi/core/store.h"
#include "kagzi/core/validation.h"

namespace kagzi {
namespace {

#define KAGZI_RUN_COLUMNS                                                                     \
  "r.id::text, r.workflow, r.version, r.status, r.input::text, r.output::text, r.error, "     \
  "r.priority, kagzi_us(r.available_at), r.lease_owner::text, kagzi_us(r.lease_expires_at), " \
  "r.lease_epoch, r.attempts, r.parent_run_id::text, r.idempotency_key, "                     \
  "kagzi_us(r.created_at), kagzi_us(r.started_at), kagzi_us(r.updated_at), "                  \
  "kagzi_us(r.finished_at)"
constexpr int kRunColumnCount = 19;

#define KAGZI_STEP_COLUMNS                                                                  \
  "s.step_id, s.seq, s.kind, s.status, s.output::text, s.error, s.error_kind, s.attempts, " \
  "kagzi_us(s.wake_at), kagzi_us(s.started_at), kagzi_us(s.finished_at)"

#define KAGZI_LEASE_MATCHES \
  "id = $1::uuid AND lease_owner = $2::uuid AND lease_epoch = $3 AND status = 'RUNNING'"

// Runs of the loaded (workflow, version) pairs; unpinned runs (version
// NULL) of a loaded workflow qualify too. $A/$B are text[]/int[].
#define KAGZI_LOADED_FILTER(names, versions)                        \
  "r.workflow = ANY(" names                                         \
  "::text[]) AND (r.version IS NULL OR (r.workflow, r.version) IN " \
  "(SELECT * FROM unnest(" names "::text[], " versions "::int[])))"

const Statement kClaim = {
    "kagzi_claim",
    "WITH loaded AS (SELECT * FROM unnest($2::text[], $3::int[]) AS l(name, version)), "
    "latest AS (SELECT name, max(version) AS version FROM loaded GROUP BY name), "
    "picked AS ("
    "  SELECT r.id FROM kagzi_runs r"
    "  WHERE ((r.status IN ('PENDING', 'SLEEPING') AND r.available_at <= now())"
    "         OR (r.status = 'RUNNING' AND r.lease_expires_at < now()))"
    "    AND " KAGZI_LOADED_FILTER("$2", "$3")
    "  ORDER BY r.priority DESC, r.available_at, r.id"
    "  LIMIT $4"
    "  FOR UPDATE OF r SKIP LOCKED), "
    "claimed AS ("
    "  UPDATE kagzi_runs r SET status = 'RUNNING', lease_owner = $1::uuid,"
    "    lease_expires_at = now() + $5::bigint * interval '1 millisecond',"
    "    lease_epoch = r.lease_epoch + 1, attempts = r.attempts + 1,"
    "    version = COALESCE(r.version, (SELECT l.version FROM latest l WHERE l.name = r.workflow)),"
    "    started_at = COALESCE(r.started_at, now()), updated_at = now()"
    "  FROM picked WHERE r.id = picked.id"
    "  RETURNING r.*) "
    "SELECT " KAGZI_RUN_COLUMNS ", kagzi_us(now()) FROM claimed r ORDER BY r.id"};

// The journals of the runs just claimed, read by a second statement of the
// claim's transaction (see ClaimRuns for why not by the claim itself).
const Statement kClaimJournal = {
    "kagzi_claim_journal",
    "SELECT s.run_id::text, " KAGZI_STEP_COLUMNS
    " FROM kagzi_steps s WHERE s.run_id = ANY($1::uuid[]) ORDER BY s.run_id, s.seq"};

const Statement kHeartbeat = {
    "kagzi_heartbeat",
    "WITH d AS (UPDATE kagzi_daemons SET heartbeat_at = now() WHERE id = $1::uuid) "
    "UPDATE kagzi_runs SET lease_expires_at = now() + $2::bigint * interval '1 millisecond' "
    "WHERE lease_owner = $1::uuid AND status = 'RUNNING' RETURNING id::text"};

const Statement kNextWake = {
    "kagzi_next_wake",
    "SELECT kagzi_us(min(t)) FROM ("
    "  SELECT min(r.available_at) AS t FROM kagzi_runs r"
    "  WHERE r.status IN ('PENDING', 'SLEEPING') AND " KAGZI_LOADED_FILTER("$1", "$2")
    "  UNION ALL"
    "  SELECT min(r.lease_expires_at) FROM kagzi_runs r"
    "  WHERE r.status = 'RUNNING' AND " KAGZI_LOADED_FILTER("$1", "$2") ") x"};

const Statement kRecordStep = {
    "kagzi_record_step",
    "WITH lease AS (SELECT id FROM kagzi_runs WHERE " KAGZI_LEASE_MATCHES
    " FOR NO KEY UPDATE) "
    "INSERT INTO kagzi_steps (run_id, step_id, seq, kind, status, output, error, error_kind,"
    "  attempts, wake_at, started_at) "
    "SELECT lease.id, $4, $5, $6, $7, $8::json, $9, $10, $11, kagzi_ts($12), kagzi_ts($13) "
    "FROM lease ON CONFLICT DO NOTHING"};

const Statement kLeaseStillHeld = {"kagzi_lease_still_held",
                                   "SELECT count(*) FROM kagzi_runs WHERE " KAGZI_LEASE_MATCHES};

const Statement kPark = {
    "kagzi_park",
    "WITH lease AS (UPDATE kagzi_runs SET status = 'SLEEPING',"
    "    available_at = now() + $4::bigint * interval '1 millisecond',"
    "    lease_owner = NULL, lease_expires_at = NULL, updated_at = now()"
    "  WHERE " KAGZI_LEASE_MATCHES
    " RETURNING id, available_at), "
    "ins AS (INSERT INTO kagzi_steps (run_id, step_id, seq, kind, status, wake_at, started_at)"
    "  SELECT lease.id, $5, $6, 'sleep', 'COMPLETED', lease.available_at, kagzi_ts($7)"
    "  FROM lease WHERE $5::text IS NOT NULL RETURNING 1) "
    "SELECT kagzi_us(available_at), (SELECT count(*) FROM ins) FROM lease"};

const Statement kComplete = {
    "kagzi_complete",
    "UPDATE kagzi_runs SET status = 'COMPLETED', output = $4::json, error = NULL,"
    " lease_owner = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now() "
    "WHERE " KAGZI_LEASE_MATCHES};

const Statement kFail = {
    "kagzi_fail",
    "UPDATE kagzi_runs SET status = 'FAILED', error = $4,"
    " lease_owner = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now() "
    "WHERE " KAGZI_LEASE_MATCHES};

const Statement kRelease = {
    "kagzi_release",
    "UPDATE kagzi_runs SET status = 'PENDING', available_at = now(), lease_owner = NULL,"
    " lease_expires_at = NULL, lease_epoch = lease_epoch + 1, updated_at = now() "
    "WHERE " KAGZI_LEASE_MATCHES};

const Statement kStart = {"kagzi_start",
                          "INSERT INTO kagzi_runs (id, workflow, input, idempotency_key, priority) "
                          "VALUES (gen_random_uuid(), $1, $2::json, $3, $4) "
                          "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id::text"};

const Statement kFindByKey = {
    "kagzi_find_by_key", "SELECT id::text, workflow FROM kagzi_runs WHERE idempotency_key = $1"};

const Statement kWorkflowKnown = {
    "kagzi_workflow_known", "SELECT EXISTS (SELECT 1 FROM kagzi_workflows WHERE workflow = $1)"};

const Statement kGetRun = {"kagzi_get_run",
                           "SELECT " KAGZI_RUN_COLUMNS " FROM kagzi_runs r WHERE r.id = $1::uuid"};

const Statement kGetSteps = {"kagzi_get_steps",
                             "SELECT " KAGZI_STEP_COLUMNS
                             " FROM kagzi_steps s WHERE s.run_id = $1::uuid ORDER BY s.seq"};

const Statement kListRuns = {
    "kagzi_list_runs",
    "SELECT " KAGZI_RUN_COLUMNS
    " FROM kagzi_runs r "
    "WHERE ($1::text IS NULL OR r.status = $1) AND ($2::text IS NULL OR r.workflow = $2) "
    "ORDER BY r.created_at DESC, r.id LIMIT $3"};

const Statement kListWorkflows = {
    "kagzi_list_workflows",
    "SELECT w.workflow, w.version, string_agg(d.id::text, ',' ORDER BY d.id), min(w.plugin_path),"
    " (SELECT count(*) FROM kagzi_runs r WHERE r.workflow = w.workflow AND r.version = w.version"
    "    AND r.status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')) "
    "FROM kagzi_daemon_workflows w JOIN kagzi_daemons d ON d.id = w.daemon_id "
    "WHERE d.heartbeat_at + d.lease_ttl_ms * interval '1 millisecond' > now() "
    "GROUP BY w.workflow, w.version ORDER BY w.workflow, w.version"};

const Statement kListDaemons = {
    "kagzi_list_daemons",
    "SELECT d.id::text, d.hostname, d.pid, d.version, d.concurrency, d.lease_ttl_ms,"
    " kagzi_us(d.started_at), kagzi_us(d.heartbeat_at),"
    " d.heartbeat_at + d.lease_ttl_ms * interval '1 millisecond' > now(),"
    " (SELECT count(*) FROM kagzi_runs r WHERE r.lease_owner = d.id AND r.status = 'RUNNING') "
    "FROM kagzi_daemons d ORDER BY d.started_at, d.id"};

const Statement kNow = {"kagzi_now", "SELECT kagzi_us(now())"};

const Statement kUpsertDaemon = {
    "kagzi_upsert_daemon",
    "INSERT INTO kagzi_daemons (id, hostname, pid, version, concurrency, lease_ttl_ms) "
    "VALUES ($1::uuid, $2, $3, $4, $5, $6) "
    "ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), concurrency = EXCLUDED.concurrency"};

const Statement kForgetDeadDaemons = {
    "kagzi_forget_dead_daemons",
    "DELETE FROM kagzi_daemons WHERE heartbeat_at < now() - interval '1 day'"};

const Statement kClearDaemonWorkflows = {
    "kagzi_clear_daemon_workflows",
    "DELETE FROM kagzi_daemon_workflows WHERE daemon_id = $1::uuid"};

const Statement kInsertDaemonWorkflows = {
    "kagzi_insert_daemon_workflows",
    "INSERT INTO kagzi_daemon_workflows (daemon_id, workflow, version, plugin_path, plugin_name) "
    "SELECT $1::uuid, w, v, p, n FROM unnest($2::text[], $3::int[], $4::text[], $5::text[]) "
    "AS t(w, v, p, n)"};

const Statement kRememberWorkflows = {
    "kagzi_remember_workflows",
    "INSERT INTO kagzi_workflows (workflow, version) "
    "SELECT * FROM unnest($1::text[], $2::int[]) "
    "ON CONFLICT (workflow, version) DO UPDATE SET last_seen = now()"};

const Statement kDeleteDaemon = {"kagzi_delete_daemon",
                                 "DELETE FROM kagzi_daemons WHERE id = $1::uuid"};

RunRecord ParseRun(const PgResult& r, int row) {
  RunRecord run;
  run.id = r.GetString(row, 0);
  run.workflow = r.GetString(row, 1);
  if (auto v = r.GetOptionalInt(row, 2)) run.version = static_cast<int>(*v);
  run.status = ParseRunStatus(r.Get(row, 3)).value_or(RunStatus::kPending);
  run.input = r.GetString(row, 4);
  run.output = r.GetOptional(row, 5);
  run.error = r.GetOptional(row, 6);
  run.priority = static_cast<int>(r.GetInt(row, 7));
  run.available_at = r.GetInt(row, 8);
  run.lease_owner = r.GetOptional(row, 9);
  run.lease_expires_at = r.GetOptionalInt(row, 10);
  run.lease_epoch = r.GetInt(row, 11);
  run.attempts = static_cast<int>(r.GetInt(row, 12));
  run.parent_run_id = r.GetOptional(row, 13);
  run.idempotency_key = r.GetOptional(row, 14);
  run.created_at = r.GetInt(row, 15);
  run.started_at = r.GetOptionalInt(row, 16);
  run.updated_at = r.GetInt(row, 17);
  run.finished_at = r.GetOptionalInt(row, 18);
  return run;
}

StepRecord ParseStep(const PgResult& r, int row, int c) {
  StepRecord s;
  s.step_id = r.GetString(row, c + 0);
  s.seq = static_cast<int>(r.GetInt(row, c + 1));
  s.kind = ParseStepKind(r.Get(row, c + 2)).value_or(StepKind::kStep);
  s.status = r.Get(row, c + 3) == "FAILED" ? StepStatus::kFailed : StepStatus::kCompleted;
  s.output = r.GetOptional(row, c + 4);
  s.error = r.GetOptional(row, c + 5);
  s.error_kind = r.Get(row, c + 6) == "retryable" ? ErrorKind::kRetryable : ErrorKind::kPermanent;
  s.attempts = static_cast<int>(r.GetInt(row, c + 7));
  s.wake_at = r.GetOptionalInt(row, c + 8);
  s.started_at = r.GetOptionalInt(row, c + 9);
  s.finished_at = r.GetInt(row, c + 10);
  return s;
}

std::pair<std::string, std::string> LoadedArrays(const std::vector<WorkflowKey>& loaded) {
  std::vector<std::string> names;
  std::vector<std::int64_t> versions;
  for (const auto& k : loaded) {
    names.push_back(k.name);
    versions.push_back(k.version);
  }
  return {PgTextArray(names), PgIntArray(versions)};
}

std::optional<std::string> OptMicros(const std::optional<Micros>& v) {
  if (!v) return std::nullopt;
  return std::to_string(*v);
}

Status CheckRunId(std::string_view id) {
  if (!IsUuid(id)) return Status::InvalidArgument("\"{}\" is not a run id (a UUID)", id);
  return Status::Ok();
}

}  // namespace

std::string_view RunStatusName(RunStatus s) {
  switch (s) {
    case RunStatus::kPending:
      return "PENDING";
    case RunStatus::kRunning:
      return "RUNNING";
    case RunStatus::kSleeping:
      return "SLEEPING";
    case RunStatus::kCompleted:
      return "COMPLETED";
    case RunStatus::kFailed:
      return "FAILED";
    case RunStatus::kCancelled:
      return "CANCELLED";
  }
  return "UNKNOWN";
}

std::optional<RunStatus> ParseRunStatus(std::string_view s) {
  std::string up(s);
  for (auto& ch : up) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  for (auto st : {RunStatus::kPending, RunStatus::kRunning, RunStatus::kSleeping,
                  RunStatus::kCompleted, RunStatus::kFailed, RunStatus::kCancelled}) {
    if (RunStatusName(st) == up) return st;
  }
  return std::nullopt;
}

std::string_view StepKindName(StepKind k) {
  switch (k) {
    case StepKind::kStep:
      return "step";
    case StepKind::kSleep:
      return "sleep";
    case StepKind::kEvent:
      return "event";
    case StepKind::kChild:
      return "child";
  }
  return "unknown";
}

std::optional<StepKind> ParseStepKind(std::string_view s) {
  for (auto k : {StepKind::kStep, StepKind::kSleep, StepKind::kEvent, StepKind::kChild}) {
    if (StepKindName(k) == s) return k;
  }
  return std::nullopt;
}

PgStore::PgStore(PgStoreOptions options)
    : options_(std::move(options)),
      pool_(options_.database_url, options_.application_name, options_.pool_size) {}

PgStore::~PgStore() = default;

Result<core::MigrationReport> PgStore::Migrate() {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  return core::ApplyMigrations(**conn, core::EmbeddedMigrations());
}

Status PgStore::RegisterDaemon(const DaemonInfo& info,
                               const std::vector<LoadedWorkflow>& workflows) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  PgConnection& c = **conn;
  std::vector<std::string> names, paths, plugin_names;
  std::vector<std::int64_t> versions;
  for (const auto& w : workflows) {
    names.push_back(w.key.name);
    versions.push_back(w.key.version);
    paths.push_back(w.plugin_path);
    plugin_names.push_back(w.plugin_name);
  }
  auto run = [&]() -> Status {
    if (auto r = c.Exec("BEGIN"); !r.ok()) return r.status();
    if (auto r = c.ExecPrepared(kForgetDeadDaemons, {}); !r.ok()) return r.status();
    if (auto r = c.ExecPrepared(kUpsertDaemon,
                                {info.id, info.hostname, info.pid, info.version, info.concurrency,
                                 static_cast<std::int64_t>(info.lease_ttl.count())});
        !r.ok()) {
      return r.status();
    }
    if (auto r = c.ExecPrepared(kClearDaemonWorkflows, {info.id}); !r.ok()) return r.status();
    if (auto r = c.ExecPrepared(kInsertDaemonWorkflows,
                                {info.id, PgTextArray(names), PgIntArray(versions),
                                 PgTextArray(paths), PgTextArray(plugin_names)});
        !r.ok()) {
      return r.status();
    }
    if (auto r = c.ExecPrepared(kRememberWorkflows, {PgTextArray(names), PgIntArray(versions)});
        !r.ok()) {
      return r.status();
    }
    if (auto r = c.Exec("COMMIT"); !r.ok()) return r.status();
    return Status::Ok();
  };
  Status st = run();
  if (!st.ok() && !c.broken()) (void)c.Exec("ROLLBACK");
  return st.WithContext("registering daemon");
}

Status PgStore::UnregisterDaemon(std::string_view daemon_id) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(kDeleteDaemon, {daemon_id});
  return r.ok() ? Status::Ok() : r.status();
}

Result<ClaimBatch> PgStore::ClaimRuns(const ClaimRequest& req) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  PgConnection& c = **conn;
  auto [names, versions] = LoadedArrays(req.loaded);
  // Two statements in one READ COMMITTED transaction. The claim locks and
  // updates the runs; the journal is read afterwards under a fresh snapshot.
  // Reading it in the claim statement would use the snapshot taken before
  // the row locks, and miss a step that the previous (expired) lease holder
  // committed in between: that step would then run twice. A write committed
  // before the claim locked the row is visible to the second statement; one
  // attempted after it waits for the lock, sees the new epoch and writes
  // nothing.
  auto run = [&]() -> Result<ClaimBatch> {
    if (auto b = c.Exec("BEGIN ISOLATION LEVEL READ COMMITTED"); !b.ok()) return b.status();
    auto r = c.ExecPrepared(kClaim, {req.owner, names, versions, req.limit,
                                     static_cast<std::int64_t>(req.lease_ttl.count())});
    if (!r.ok()) return r.status();
    ClaimBatch batch;
    std::vector<std::string> ids;
    for (int i = 0; i < r->rows(); ++i) {
      batch.db_now = r->GetInt(i, kRunColumnCount);
      batch.runs.push_back(ClaimedRun{ParseRun(*r, i), {}});
      ids.push_back(batch.runs.back().run.id);
    }
    if (!ids.empty()) {
      auto steps = c.ExecPrepared(kClaimJournal, {PgTextArray(ids)});
      if (!steps.ok()) return steps.status();
      std::size_t k = 0;  // both results are sorted by run id
      for (int i = 0; i < steps->rows(); ++i) {
        std::string_view run_id = steps->Get(i, 0);
        while (k < batch.runs.size() && batch.runs[k].run.id != run_id) ++k;
        if (k == batch.runs.size()) {
          return Status::Internal("claim: journal row for run {} that was not claimed", run_id);
        }
        batch.runs[k].journal.push_back(ParseStep(*steps, i, 1));
      }
    }
    if (auto cm = c.Exec("COMMIT"); !cm.ok()) return cm.status();
    return batch;
  };
  auto result = run();
  if (!result.ok() && !c.broken()) (void)c.Exec("ROLLBACK");
  return result;
}

Result<std::vector<std::string>> PgStore::Heartbeat(std::string_view owner,
                                                    std::chrono::milliseconds lease_ttl) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(kHeartbeat, {owner, static_cast<std::int64_t>(lease_ttl.count())});
  if (!r.ok()) return r.status();
  std::vector<std::string> ids;
  for (int i = 0; i < r->rows(); ++i) ids.push_back(r->GetString(i, 0));
  return ids;
}

Result<std::optional<Micros>> PgStore::NextWakeTime(const std::vector<WorkflowKey>& loaded) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto [names, versions] = LoadedArrays(loaded);
  auto r = (*conn)->ExecPrepared(kNextWake, {names, versions});
  if (!r.ok()) return r.status();
  return r->GetOptionalInt(0, 0);
}

Status PgStore::RecordStep(const Lease& lease, const StepRecord& s) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  bool failed = s.status == StepStatus::kFailed;
  auto r = (*conn)->ExecPrepared(
      kRecordStep,
      {lease.run_id, lease.owner, lease.epoch, s.step_id, s.seq, StepKindName(s.kind),
       failed ? "FAILED" : "COMPLETED", s.output, s.error,
       failed ? PgParam(s.error_kind == ErrorKind::kRetryable ? "retryable" : "permanent")
              : PgParam(std::nullopt),
       s.attempts, OptMicros(s.wake_at), OptMicros(s.started_at)});
  if (!r.ok()) return r.status();
  if (r->Affected() == 1) return Status::Ok();
  // Nothing written: the lease is gone, or the journal already has this id
  // or seq (which replay should have prevented).
  auto held = (*conn)->ExecPrepared(kLeaseStillHeld, {lease.run_id, lease.owner, lease.epoch});
  if (!held.ok()) return held.status();
  if (held->GetInt(0, 0) == 0) {
    return Status::Conflict("run {}: lease lost (epoch {}) before step \"{}\" was recorded",
                            lease.run_id, lease.epoch, s.step_id);
  }
  return Status::Internal("run {}: step \"{}\" (seq {}) conflicts with the recorded journal",
                          lease.run_id, s.step_id, s.seq);
}

Result<Micros> PgStore::ParkRun(const Lease& lease, const std::optional<StepRecord>& step,
                                std::chrono::milliseconds delay) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(
      kPark, {lease.run_id, lease.owner, lease.epoch,
              static_cast<std::int64_t>(std::max<std::int64_t>(0, delay.count())),
              step ? PgParam(step->step_id) : PgParam(std::nullopt),
              step ? PgParam(step->seq) : PgParam(std::nullopt),
              step ? OptMicros(step->started_at) : std::nullopt});
  if (!r.ok()) {
    // A unique violation can only come from the journal insert, which runs
    // only when the lease matched: the lease is intact (the statement rolled
    // back), the journal already has this step id or seq. Not kConflict,
    // which means "lease lost".
    if (r.status().IsConflict() && step) {
      return Status::Internal(
          "run {}: sleep \"{}\" (seq {}) conflicts with the recorded journal: {}", lease.run_id,
          step->step_id, step->seq, r.status().message());
    }
    return r.status();
  }
  if (r->rows() == 0) {
    return Status::Conflict("run {}: lease lost (epoch {}) before it could be parked", lease.run_id,
                            lease.epoch);
  }
  return r->GetInt(0, 0);
}

namespace {
Status FencedUpdate(PgPool& pool, const Statement& stmt, const Lease& lease,
                    std::optional<std::string> value, std::string_view what) {
  auto conn = pool.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = value ? (*conn)->ExecPrepared(stmt, {lease.run_id, lease.owner, lease.epoch, *value})
                 : (*conn)->ExecPrepared(stmt, {lease.run_id, lease.owner, lease.epoch});
  if (!r.ok()) return r.status();
  if (r->Affected() == 0) {
    return Status::Conflict("run {}: lease lost (epoch {}) before it could be {}", lease.run_id,
                            lease.epoch, what);
  }
  return Status::Ok();
}
}  // namespace

Status PgStore::CompleteRun(const Lease& lease, std::string_view output_json) {
  return FencedUpdate(pool_, kComplete, lease, std::string(output_json), "completed");
}

Status PgStore::FailRun(const Lease& lease, std::string_view error) {
  return FencedUpdate(pool_, kFail, lease, std::string(error), "failed");
}

Status PgStore::ReleaseRun(const Lease& lease) {
  return FencedUpdate(pool_, kRelease, lease, std::nullopt, "released");
}

Result<StartResult> PgStore::StartRun(const StartRequest& req) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(
      kStart,
      {req.workflow, req.input,
       req.idempotency_key ? PgParam(*req.idempotency_key) : PgParam(std::nullopt), req.priority});
  if (!r.ok()) return r.status();
  if (r->rows() == 1) return StartResult{r->GetString(0, 0), true};
  auto existing = (*conn)->ExecPrepared(kFindByKey, {*req.idempotency_key});
  if (!existing.ok()) return existing.status();
  if (existing->rows() == 0) {
    return Status::Conflict("idempotency key \"{}\" is in use by a run being started",
                            *req.idempotency_key);
  }
  if (existing->Get(0, 1) != req.workflow) {
    return Status::Conflict("idempotency key \"{}\" already belongs to run {} of workflow \"{}\"",
                            *req.idempotency_key, existing->Get(0, 0), existing->Get(0, 1));
  }
  return StartResult{existing->GetString(0, 0), false};
}

Result<bool> PgStore::WorkflowKnown(std::string_view workflow) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(kWorkflowKnown, {workflow});
  if (!r.ok()) return r.status();
  return r->GetBool(0, 0);
}

Result<RunRecord> PgStore::GetRun(std::string_view run_id) {
  KAGZI_RETURN_IF_ERROR(CheckRunId(run_id));
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(kGetRun, {run_id});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return Status::NotFound("run {} does not exist", run_id);
  return ParseRun(*r, 0);
}

Result<std::vector<StepRecord>> PgStore::GetSteps(std::string_view run_id) {
  KAGZI_RETURN_IF_ERROR(CheckRunId(run_id));
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(kGetSteps, {run_id});
  if (!r.ok()) return r.status();
  std::vector<StepRecord> steps;
  for (int i = 0; i < r->rows(); ++i) steps.push_back(ParseStep(*r, i, 0));
  return steps;
}

Result<std::vector<RunRecord>> PgStore::ListRuns(const ListFilter& f) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(
      kListRuns, {f.status ? PgParam(RunStatusName(*f.status)) : PgParam(std::nullopt),
                  f.workflow ? PgParam(*f.workflow) : PgParam(std::nullopt), f.limit});
  if (!r.ok()) return r.status();
  std::vector<RunRecord> runs;
  for (int i = 0; i < r->rows(); ++i) runs.push_back(ParseRun(*r, i));
  return runs;
}

Result<std::vector<WorkflowRecord>> PgStore::ListWorkflows() {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(kListWorkflows, {});
  if (!r.ok()) return r.status();
  std::vector<WorkflowRecord> out;
  for (int i = 0; i < r->rows(); ++i) {
    WorkflowRecord w;
    w.key = {r->GetString(i, 0), static_cast<int>(r->GetInt(i, 1))};
    std::string ids = r->GetString(i, 2);
    for (std::size_t pos = 0; pos < ids.size();) {
      auto comma = ids.find(',', pos);
      if (comma == std::string::npos) comma = ids.size();
      w.daemons.push_back(ids.substr(pos, comma - pos));
      pos = comma + 1;
    }
    w.plugin_path = r->GetString(i, 3);
    w.open_runs = static_cast<int>(r->GetInt(i, 4));
    out.push_back(std::move(w));
  }
  return out;
}

Result<std::vector<DaemonRecord>> PgStore::ListDaemons() {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(kListDaemons, {});
  if (!r.ok()) return r.status();
  std::vector<DaemonRecord> out;
  for (int i = 0; i < r->rows(); ++i) {
    DaemonRecord d;
    d.info.id = r->GetString(i, 0);
    d.info.hostname = r->GetString(i, 1);
    d.info.pid = static_cast<int>(r->GetInt(i, 2));
    d.info.version = r->GetString(i, 3);
    d.info.concurrency = static_cast<int>(r->GetInt(i, 4));
    d.info.lease_ttl = std::chrono::milliseconds(r->GetInt(i, 5));
    d.started_at = r->GetInt(i, 6);
    d.heartbeat_at = r->GetInt(i, 7);
    d.alive = r->GetBool(i, 8);
    d.running = static_cast<int>(r->GetInt(i, 9));
    out.push_back(std::move(d));
  }
  return out;
}

Result<Micros> PgStore::Now() {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(kNow, {});
  if (!r.ok()) return r.status();
  return r->GetInt(0, 0);
}

Result<RunRecord> PgStore::WaitForRun(std::string_view run_id,
                                      std::optional<std::chrono::milliseconds> timeout) {
  KAGZI_RETURN_IF_ERROR(CheckRunId(run_id));
  const bool has_deadline = timeout.has_value();
  const auto deadline =
      std::chrono::steady_clock::now() + timeout.value_or(std::chrono::milliseconds(0));
  // A dedicated connection: it LISTENs, so it must not go back to the pool.
  auto conn = PgConnection::Connect(options_.database_url, options_.application_name);
  if (!conn.ok()) return conn.status();
  PgConnection& c = **conn;
  KAGZI_RETURN_IF_ERROR(c.Listen("kagzi_run_finished"));
  while (true) {
    auto r = c.ExecPrepared(kGetRun, {run_id});
    if (!r.ok()) return r.status();
    if (r->rows() == 0) return Status::NotFound("run {} does not exist", run_id);
    RunRecord run = ParseRun(*r, 0);
    if (IsTerminal(run.status)) return run;
    auto wait = std::chrono::milliseconds(1000);  // polling is only the safety net
    if (has_deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return run;
      wait = std::min(wait, left);
    }
    auto n = c.WaitForNotifications(wait);
    if (!n.ok()) return n.status();
  }
}

}  // namespace kagzi
