// PgStore, the clients' side (kagzictl): starting, finding, listing,
// waiting for, cancelling, signalling and retrying runs, and the registry
// views. The daemon's side (claims, leases, fenced writes) is pg_store.cc.
#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <thread>

#include "kagzi/core/store.h"
#include "kagzi/core/validation.h"
#include "kagzi/core/wakeup.h"
#include "pg_store_internal.h"
#include "start_group.h"

namespace kagzi {
namespace {

using namespace pg_internal;  // NOLINT(google-build-using-namespace)

// The largest JSON text the client calls store (a run input, an event
// payload): the largest max_payload_bytes may be set to.
constexpr std::int64_t kMaxStoredJsonBytes = std::int64_t{1} << 30;

// $5: the run's timeout in milliseconds (NULL: no deadline); the deadline
// is taken on the database clock. $6: the new run's id, made here
// (NewRunId) so that the notification can name it. When the idempotency
// key matches an existing run, that run (and its deadline) is left as it
// is.
#define KAGZI_START_SQL(conflict)                                                         \
  "INSERT INTO kagzi_runs (id, workflow, input, idempotency_key, priority, deadline_at) " \
  "VALUES ($6::uuid, $1, $2::json, $3, $4,"                                               \
  " now() + $5::bigint * interval '1 millisecond') " conflict " RETURNING id::text"
#define KAGZI_START_KEY_TAKEN \
  "ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
const Statement kStart = {"kagzi_start", KAGZI_START_SQL(KAGZI_START_KEY_TAKEN)};
// kStart for runs without an idempotency key, which cannot conflict: a
// plain INSERT. ON CONFLICT would cost PostgreSQL a speculative insertion
// per run (a lock taken and released on a token, a confirmation written to
// the WAL) for nothing.
const Statement kStartUnkeyed = {"kagzi_start_unkeyed", KAGZI_START_SQL("")};

// Many kStart at once, $1..$6 holding kStart's parameters as arrays, in one
// statement: one row per start, in order, with the new run's id (NULL: the
// idempotency key was taken, also by an earlier start of the same call).
#define KAGZI_START_MANY_SQL(conflict)                                                           \
  "WITH w AS (SELECT * FROM unnest($1::text[], $2::text[],"                                      \
  "    $3::text[], $4::int[], $5::bigint[], $6::uuid[]) WITH ORDINALITY"                         \
  "  AS w(workflow, input, idempotency_key, priority, timeout_ms, id, ord)), "                   \
  "ins AS (INSERT INTO kagzi_runs (id, workflow, input, idempotency_key, priority, deadline_at)" \
  "  SELECT id, workflow, input::json, idempotency_key, priority,"                               \
  "    now() + timeout_ms * interval '1 millisecond' FROM w ORDER BY ord " conflict              \
  " RETURNING id) "                                                                              \
  "SELECT ins.id::text FROM w LEFT JOIN ins ON ins.id = w.id ORDER BY w.ord"
const Statement kStartMany = {"kagzi_start_many", KAGZI_START_MANY_SQL(KAGZI_START_KEY_TAKEN)};
// kStartMany when no run has an idempotency key, like kStartUnkeyed.
const Statement kStartManyUnkeyed = {"kagzi_start_many_unkeyed", KAGZI_START_MANY_SQL("")};

// kStartMany's parameters as binary arrays (PgColumns): $1..$6 as cast
// above.
const std::vector<PgElement> kStartManyElements = {PgElement::kText, PgElement::kText,
                                                   PgElement::kText, PgElement::kInt4,
                                                   PgElement::kInt8, PgElement::kUuid};

const Statement kFindByKeys = {"kagzi_find_by_keys",
                               "SELECT idempotency_key, id::text, workflow FROM kagzi_runs"
                               " WHERE idempotency_key = ANY($1::text[])"};

const Statement kWorkflowKnown = {
    "kagzi_workflow_known", "SELECT EXISTS (SELECT 1 FROM kagzi_workflows WHERE workflow = $1)"};

const Statement kGetRun = {"kagzi_get_run",
                           "SELECT " KAGZI_RUN_COLUMNS " FROM kagzi_runs r WHERE r.id = $1::uuid"};

const Statement kGetSteps = {"kagzi_get_steps",
                             "SELECT " KAGZI_STEP_COLUMNS
                             " FROM kagzi_steps s WHERE s.run_id = $1::uuid ORDER BY s.seq"};

// Every filter is optional (NULL: not filtered). Times are micros.
const Statement kListRuns = {
    "kagzi_list_runs",
    "SELECT " KAGZI_RUN_COLUMNS
    " FROM kagzi_runs r "
    "WHERE ($1::text IS NULL OR r.status = $1) AND ($2::text IS NULL OR r.workflow = $2)"
    " AND ($3::int IS NULL OR r.version = $3)"
    " AND ($4::bigint IS NULL OR r.created_at >= kagzi_ts($4))"
    " AND ($5::bigint IS NULL OR r.created_at < kagzi_ts($5))"
    " AND ($6::uuid IS NULL OR r.parent_run_id = $6) "
    "ORDER BY r.created_at DESC, r.id LIMIT $7"};

// One row per (workflow, version) that a live daemon has loaded or that an
// open (not terminal) run is pinned to, with the live daemons that have it
// and the open runs pinned to it. Open runs not pinned yet (version NULL)
// make a row of version 0 (no real version is 0: plugins declare >= 1)
// whose daemons are the live ones with any version of the workflow: any of
// them would claim such a run. A row without daemons is a version that
// open runs need and no live daemon has.
const Statement kListWorkflows = {
    "kagzi_list_workflows",
    "WITH live AS ("
    "  SELECT w.workflow, w.version, w.daemon_id, w.plugin_path"
    "  FROM kagzi_daemon_workflows w JOIN kagzi_daemons d ON d.id = w.daemon_id"
    "  WHERE d.heartbeat_at + d.lease_ttl_ms * interval '1 millisecond' > now()), "
    "open AS ("
    "  SELECT r.workflow, COALESCE(r.version, 0) AS version, count(*) AS n FROM kagzi_runs r"
    "  WHERE r.status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED') GROUP BY 1, 2), "
    "keys AS (SELECT workflow, version FROM live UNION SELECT workflow, version FROM open) "
    "SELECT k.workflow, k.version,"
    " (SELECT string_agg(DISTINCT l.daemon_id::text, ',' ORDER BY l.daemon_id::text) FROM live l"
    "   WHERE l.workflow = k.workflow AND (k.version = 0 OR l.version = k.version)),"
    " (SELECT min(l.plugin_path) FROM live l"
    "   WHERE l.workflow = k.workflow AND l.version = k.version),"
    " COALESCE((SELECT o.n FROM open o WHERE o.workflow = k.workflow AND o.version = k.version),"
    "   0) "
    "FROM keys k ORDER BY k.workflow, k.version"};

// Cancellation: the run's status as the statement found it, and what
// kagzi_cancel did (NULL when the run was already terminal: nothing is
// cancelled, not even its children).
const Statement kCancel = {
    "kagzi_request_cancel",
    "SELECT r.status, CASE WHEN r.status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')"
    " THEN kagzi_cancel(r.id, $2) END FROM kagzi_runs r WHERE r.id = $1::uuid"};

const Statement kRunStatus = {"kagzi_run_status",
                              "SELECT status FROM kagzi_runs WHERE id = $1::uuid"};

// Locks the run row against concurrent status changes for the rest of the
// transaction (a daemon's fenced write waits for it).
const Statement kLockRun = {
    "kagzi_lock_run",
    "SELECT status, deadline_at <= now() FROM kagzi_runs WHERE id = $1::uuid FOR NO KEY UPDATE"};

const Statement kInsertEvent = {
    "kagzi_insert_event",
    "INSERT INTO kagzi_events (run_id, name, payload) VALUES ($1::uuid, $2, $3::json)"};

const Statement kWake = {"kagzi_wake_run", "SELECT kagzi_wake($1::uuid)"};

// The FAILED entries of the call that failed the run: from its
// failed_call_seq on (NULL: none).
const Statement kDeleteFailedSteps = {
    "kagzi_delete_failed_steps",
    "DELETE FROM kagzi_steps s USING kagzi_runs r WHERE s.run_id = $1::uuid AND r.id = s.run_id"
    " AND s.status = 'FAILED' AND s.seq >= r.failed_call_seq"};

// $2: clear the deadline (it has passed).
const Statement kRetry = {
    "kagzi_retry",
    "UPDATE kagzi_runs SET status = 'PENDING', available_at = now(), error = NULL, output = NULL,"
    " failed_call_seq = NULL, finished_at = NULL, lease_owner = NULL, lease_expires_at = NULL,"
    " lease_epoch = lease_epoch + 1, cancel_requested = false, cancel_reason = NULL,"
    " deadline_at = CASE WHEN $2::boolean THEN NULL ELSE deadline_at END, updated_at = now() "
    "WHERE id = $1::uuid AND status = 'FAILED'"};

const Statement kListDaemons = {
    "kagzi_list_daemons",
    "SELECT d.id::text, d.hostname, d.pid, d.version, d.concurrency, d.lease_ttl_ms,"
    " kagzi_us(d.started_at), kagzi_us(d.heartbeat_at),"
    " d.heartbeat_at + d.lease_ttl_ms * interval '1 millisecond' > now(),"
    " (SELECT count(*) FROM kagzi_runs r WHERE r.lease_owner = d.id AND r.status = 'RUNNING'),"
    " d.supervisor_id::text, d.worker_index, d.restarts "
    "FROM kagzi_daemons d ORDER BY d.started_at, d.id"};

}  // namespace

namespace {

// What StartRun checks before it writes; `which` names the request in a
// batch ("" for a single start).
Status CheckStart(const StartRequest& req, std::string_view which) {
  auto named = [&](const Status& st) {
    return which.empty() ? st : Status(st.code(), fmt::format("{}: {}", which, st.message()));
  };
  // Callers (kagzictl) validate first, against the configured
  // max_payload_bytes; these checks keep whatever reaches the table sane
  // even for a caller that did not: a name, a key that is not Kagzi's own,
  // and JSON within what a json column holds.
  if (Status st = ValidateName(req.workflow, "the workflow name"); !st.ok()) return named(st);
  if (req.idempotency_key) {
    if (Status st = ValidateIdempotencyKey(*req.idempotency_key, "the idempotency key"); !st.ok()) {
      return named(st);
    }
  }
  if (Status st = ValidateJson(req.input, "the run input", kMaxStoredJsonBytes, ""); !st.ok()) {
    return named(st);
  }
  if (req.timeout && req.timeout->count() <= 0) {
    return named(Status::InvalidArgument("the timeout of a run must be positive, not {} ms",
                                         req.timeout->count()));
  }
  return Status::Ok();
}

std::vector<PgParam> StartParams(const StartRequest& req, const std::string& id) {
  return {req.workflow,
          req.input,
          req.idempotency_key ? PgParam(*req.idempotency_key) : PgParam(std::nullopt),
          req.priority,
          req.timeout ? PgParam(static_cast<std::int64_t>(req.timeout->count()))
                      : PgParam(std::nullopt),
          id};
}

// The answer to a start whose idempotency key was taken: the run that
// holds it, if it is of the same workflow. `holder`: that run's id and
// workflow (nullopt: not visible yet, its start has not committed).
Result<StartResult> KeyTakenAnswer(
    const StartRequest& req, const std::optional<std::pair<std::string, std::string>>& holder) {
  if (!holder) {
    return Status::Conflict("idempotency key \"{}\" is in use by a run being started",
                            *req.idempotency_key);
  }
  if (holder->second != req.workflow) {
    return Status::Conflict("idempotency key \"{}\" already belongs to run {} of workflow \"{}\"",
                            *req.idempotency_key, holder->first, holder->second);
  }
  return StartResult{holder->first, false};
}

}  // namespace

Result<StartResult> PgStore::StartRun(const StartRequest& req) {
  KAGZI_RETURN_IF_ERROR(CheckStart(req, ""));
  // Concurrent calls share a transaction (StartGroup); each returns once its
  // own run is durable.
  return starts_->Start(req, [this](const std::vector<StartGroup::Pending*>& group) {
    StartGroup::CommitGroup(group, [this](const std::vector<const StartRequest*>& requests) {
      return InsertRuns(requests);
    });
  });
}

Result<std::vector<Result<StartResult>>> PgStore::StartRuns(
    const std::vector<StartRequest>& requests) {
  std::vector<const StartRequest*> checked;
  checked.reserve(requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i) {
    KAGZI_RETURN_IF_ERROR(CheckStart(requests[i], fmt::format("run #{}", i + 1)));
    checked.push_back(&requests[i]);
  }
  return InsertRuns(checked);
}

Result<std::vector<Result<StartResult>>> PgStore::InsertRuns(
    const std::vector<const StartRequest*>& requests) {
  std::vector<Result<StartResult>> out;
  if (requests.empty()) return out;
  // calls[0] defers the notifications to after the commit (one per
  // workflow, naming its new runs); calls[1] starts the runs: kStart for
  // one, kStartMany (one row per request) for more, each as a plain INSERT
  // when no run has an idempotency key.
  std::vector<PgConnection::Call> calls;
  calls.push_back({&kNotifyAfterCommitMode, {}});
  std::vector<std::pair<std::string, std::string>> started;  // workflow, id
  std::vector<std::vector<PgParam>> rows;
  rows.reserve(requests.size());
  for (const StartRequest* req : requests) {
    started.emplace_back(req->workflow, NewRunId());
    rows.push_back(StartParams(*req, started.back().second));
  }
  const bool keyed = std::any_of(requests.begin(), requests.end(), [](const StartRequest* r) {
    return r->idempotency_key.has_value();
  });
  if (rows.size() == 1) {
    calls.push_back({keyed ? &kStart : &kStartUnkeyed, std::move(rows.front())});
  } else {
    calls.push_back(
        {keyed ? &kStartMany : &kStartManyUnkeyed, PgColumns(rows, kStartManyElements)});
  }
  // One notification per workflow, naming its new runs (wakeup.h).
  std::sort(started.begin(), started.end());
  std::vector<std::string> payloads;
  std::vector<std::string> ids;
  for (std::size_t i = 0; i < started.size();) {
    ids.clear();
    std::size_t j = i;
    for (; j < started.size() && started[j].first == started[i].first; ++j) {
      ids.push_back(started[j].second);
    }
    payloads.push_back(WakeupPayload(started[i].first, ids));
    i = j;
  }
  const PgConnection::Call notify = NotifyStarted(payloads);
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  // The new runs' ids as they arrive; an empty id: the key was taken.
  std::vector<std::string> created(requests.size());
  KAGZI_RETURN_IF_ERROR((*conn)->ExecTransaction(
      calls,
      [&](std::size_t i, const PgResult& r) {
        if (i != 1) return;
        for (int row = 0; row < r.rows() && row < static_cast<int>(created.size()); ++row) {
          if (!r.IsNull(row, 0)) created[row] = r.GetString(row, 0);
        }
      },
      &notify));
  // Keys that were taken: who has them, in one more statement (not one per
  // key: re-running a batch of 100,000 would make 100,000 round trips).
  std::vector<std::string> taken;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (created[i].empty()) taken.push_back(*requests[i]->idempotency_key);
  }
  std::map<std::string, std::pair<std::string, std::string>, std::less<>> holders;  // key: id, wf
  if (!taken.empty()) {
    auto found = (*conn)->ExecPrepared(kFindByKeys, {PgTextArray(taken)});
    if (!found.ok()) return found.status();
    for (int row = 0; row < found->rows(); ++row) {
      holders[found->GetString(row, 0)] = {found->GetString(row, 1), found->GetString(row, 2)};
    }
  }
  out.reserve(requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const StartRequest& req = *requests[i];
    if (!created[i].empty()) {
      out.emplace_back(StartResult{std::move(created[i]), true});
      continue;
    }
    auto holder = holders.find(*req.idempotency_key);
    out.push_back(KeyTakenAnswer(
        req, holder == holders.end() ? std::nullopt : std::make_optional(holder->second)));
  }
  return out;
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
  if (f.parent_run_id) KAGZI_RETURN_IF_ERROR(CheckRunId(*f.parent_run_id));
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(
      kListRuns, {f.status ? PgParam(RunStatusName(*f.status)) : PgParam(std::nullopt),
                  f.workflow ? PgParam(*f.workflow) : PgParam(std::nullopt),
                  f.version ? PgParam(*f.version) : PgParam(std::nullopt),
                  OptMicros(f.created_after), OptMicros(f.created_before),
                  f.parent_run_id ? PgParam(*f.parent_run_id) : PgParam(std::nullopt), f.limit});
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
    w.plugin_path = r->GetString(i, 3);  // "" when no live daemon has this version
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
    d.info.supervisor_id = r->GetOptional(i, 10);
    d.info.worker_index = static_cast<int>(r->GetInt(i, 11));
    d.info.restarts = static_cast<int>(r->GetInt(i, 12));
    out.push_back(std::move(d));
  }
  return out;
}

namespace {

bool IsTerminalName(std::string_view status) {
  auto s = ParseRunStatus(status);
  return s && IsTerminal(*s);
}

// Runs `body` between BEGIN and COMMIT on `c`; rolls back when it fails
// (unless the connection is gone, which rolls back by itself).
template <typename Body>
Status InTransaction(PgConnection& c, Body body) {
  auto run = [&]() -> Status {
    if (auto b = c.Exec("BEGIN"); !b.ok()) return b.status();
    KAGZI_RETURN_IF_ERROR(body());
    if (auto cm = c.Exec("COMMIT"); !cm.ok()) return cm.status();
    return Status::Ok();
  };
  Status st = run();
  if (!st.ok() && !c.broken()) (void)c.Exec("ROLLBACK");
  return st;
}

}  // namespace

Result<int> PgStore::RequestCancel(std::string_view run_id, std::string_view reason) {
  KAGZI_RETURN_IF_ERROR(CheckRunId(run_id));
  // The reason becomes the error of every run cancelled at once.
  const std::string why = reason.empty() ? std::string("cancelled") : SanitizeText(reason, 4096);
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(kCancel, {run_id, why});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return Status::NotFound("run {} does not exist", run_id);
  if (r->IsNull(0, 1)) {
    return Status::InvalidArgument("run {} is already {}: there is nothing to cancel", run_id,
                                   r->Get(0, 0));
  }
  const int affected = static_cast<int>(r->GetInt(0, 1));
  if (affected == 0) {
    // The run finished between the statement's snapshot and kagzi_cancel's
    // row locks.
    auto now = (*conn)->ExecPrepared(kRunStatus, {run_id});
    if (!now.ok()) return now.status();
    return Status::InvalidArgument("run {} is already {}: there is nothing to cancel", run_id,
                                   now->rows() == 1 ? now->Get(0, 0) : "gone");
  }
  return affected;
}

Status PgStore::SendEvent(std::string_view run_id, std::string_view name,
                          std::string_view payload_json) {
  KAGZI_RETURN_IF_ERROR(CheckRunId(run_id));
  KAGZI_RETURN_IF_ERROR(ValidateName(name, "the event name"));
  // The size limit is the caller's (kagzictl checks max_payload_bytes
  // before connecting); this cap only keeps the text within what a json
  // column holds.
  KAGZI_RETURN_IF_ERROR(ValidateJson(payload_json, "the event payload", kMaxStoredJsonBytes, ""));
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  PgConnection& c = **conn;
  // One transaction: the run row is locked first, so it cannot become
  // terminal between the check and the insert, and the event and the wake
  // (wake_seq + 1, runnable now if parked) commit together: a run that
  // parks to wait for the event either sees it at its claim or is woken.
  Status st = InTransaction(c, [&]() -> Status {
    auto lock = c.ExecPrepared(kLockRun, {run_id});
    if (!lock.ok()) return lock.status();
    if (lock->rows() == 0) return Status::NotFound("run {} does not exist", run_id);
    if (IsTerminalName(lock->Get(0, 0))) {
      return Status::InvalidArgument("run {} is already {}: it cannot receive event \"{}\"", run_id,
                                     lock->Get(0, 0), name);
    }
    if (auto ins = c.ExecPrepared(kInsertEvent, {run_id, name, payload_json}); !ins.ok()) {
      return ins.status();
    }
    if (auto wake = c.ExecPrepared(kWake, {run_id}); !wake.ok()) return wake.status();
    return Status::Ok();
  });
  return st;
}

// Retrying a FAILED run. In one transaction, under the run's row lock:
//   - the FAILED journal entries of the call that failed it (from the
//     run's failed_call_seq on: that step, or the failed members of that
//     parallel group) are deleted: those steps run again at the replay
//     (their seq is free again, and the replay records them under the same
//     one). Every other entry stays, so recorded steps are not executed
//     again, and a failure the workflow caught and went past is replayed
//     as it was recorded (running it again could change the path the
//     workflow takes, which the replay would refuse as non-determinism).
//     A run with no failed call (failed_call_seq NULL) loses no entry.
//   - the run becomes PENDING and runnable now, its error, output and
//     finished_at are cleared, any lease is cleared and the epoch bumped,
//     a cancel request is withdrawn; it keeps its pinned version, attempts
//     and deadline, except that a deadline already passed (the run failed
//     by exceeding it, or would fail again at once) is cleared.
// The status trigger NOTIFYs kagzi_wakeup, so a daemon takes it at once.
Status PgStore::RetryRun(std::string_view run_id) {
  KAGZI_RETURN_IF_ERROR(CheckRunId(run_id));
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  PgConnection& c = **conn;
  return InTransaction(c, [&]() -> Status {
    auto lock = c.ExecPrepared(kLockRun, {run_id});
    if (!lock.ok()) return lock.status();
    if (lock->rows() == 0) return Status::NotFound("run {} does not exist", run_id);
    if (lock->Get(0, 0) != "FAILED") {
      return Status::InvalidArgument("run {} is {}: only a FAILED run can be retried", run_id,
                                     lock->Get(0, 0));
    }
    const bool deadline_passed = !lock->IsNull(0, 1) && lock->GetBool(0, 1);
    if (auto del = c.ExecPrepared(kDeleteFailedSteps, {run_id}); !del.ok()) return del.status();
    auto upd = c.ExecPrepared(kRetry, {run_id, deadline_passed});
    if (!upd.ok()) return upd.status();
    if (upd->Affected() != 1) {
      return Status::Internal("run {}: retry updated {} rows", run_id, upd->Affected());
    }
    return Status::Ok();
  });
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
