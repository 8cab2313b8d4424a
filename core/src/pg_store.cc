// PgStore: the Store on PostgreSQL. All SQL of the claim/lease protocol is
// here, as prepared statements with parameters. Fenced writes lock the run
// row (FOR NO KEY UPDATE, or an UPDATE) and re-check owner and epoch under
// that lock, so a write from a stale lease can never interleave with a new
// claim: either it commits before the claim locks the run (and the claim's
// journal read, a later statement, sees it), or it sees the new epoch and
// writes nothing. See docs/ARCHITECTURE.md.
#include <algorithm>
#include <thread>

#include "kagzi/core/log.h"
#include "kagzi/core/store.h"
#include "kagzi/core/validation.h"
#include "pg_store_internal.h"
#include "start_group.h"

namespace kagzi {
namespace {

using namespace pg_internal;  // NOLINT(google-build-using-namespace)

#define KAGZI_LEASE_MATCHES \
  "id = $1::uuid AND lease_owner = $2::uuid AND lease_epoch = $3 AND status = 'RUNNING'"

// Runs of the loaded (workflow, version) pairs; unpinned runs (version
// NULL) of a loaded workflow qualify too. $A/$B are text[]/int[].
#define KAGZI_LOADED_FILTER(names, versions)                        \
  "r.workflow = ANY(" names                                         \
  "::text[]) AND (r.version IS NULL OR (r.workflow, r.version) IN " \
  "(SELECT * FROM unnest(" names "::text[], " versions "::int[])))"

// The loaded (workflow, version) pairs, and the latest version of each
// workflow: a run claimed for the first time is pinned to it.
#define KAGZI_CLAIM_LOADED                                                        \
  "loaded AS (SELECT * FROM unnest($2::text[], $3::int[]) AS l(name, version)), " \
  "latest AS (SELECT name, max(version) AS version FROM loaded GROUP BY name), "

// Leases the runs of `picked` (locked by it) to $1 for $5 ms, and returns
// them, by id.
#define KAGZI_CLAIM_PICKED                                                                         \
  "claimed AS ("                                                                                   \
  "  UPDATE kagzi_runs r SET status = 'RUNNING', lease_owner = $1::uuid,"                          \
  "    lease_expires_at = now() + $5::bigint * interval '1 millisecond',"                          \
  "    lease_epoch = r.lease_epoch + 1, attempts = r.attempts + 1,"                                \
  "    version = COALESCE(r.version, (SELECT l.version FROM latest l WHERE l.name = r.workflow))," \
  "    started_at = COALESCE(r.started_at, now()), updated_at = now()"                             \
  "  WHERE r.id = ANY (ARRAY(SELECT id FROM picked))"                                              \
  "  RETURNING r.*) "                                                                              \
  "SELECT " KAGZI_RUN_COLUMNS ", kagzi_us(now()) FROM claimed r ORDER BY r.id"

// Runnable runs come from two places, each read in its own index order and
// locked with SKIP LOCKED: due runs (PENDING/SLEEPING with available_at
// reached) and runs whose lease expired. The best $4 of both are claimed;
// an expired run locked but not picked is left as it was.
//
// Due runs are read priority by priority, highest first: `prios` finds the
// distinct priorities of PENDING/SLEEPING runs one index descent each, and
// for each the claim walks kagzi_runs_claim_order (priority DESC,
// available_at, id) from that priority's first entry and stops at the
// first run not due yet. One walk over the whole index, with no equality on
// its first column, could not stop there: a claim that found fewer than $4
// due runs read every parked run's entry (450 ms with a million parked).
//
// The picked runs are updated through their primary key, by the array of
// their ids: a join with `picked` left the choice to the planner, and a
// generic plan, which cannot know $4, planned for a tenth of the due runs.
// With statistics showing many runs due (taken during a backlog), that was
// a hash join over every run of the table: 10 ms per claim with 20,000
// due, and growing with the table.
#define KAGZI_CLAIM_SQL \
  "WITH RECURSIVE " KAGZI_CLAIM_LOADED \
  "prios AS (" \
  "  (SELECT r.priority FROM kagzi_runs r WHERE r.status IN ('PENDING', 'SLEEPING')" \
  "   ORDER BY r.priority DESC LIMIT 1)" \
  "  UNION ALL" \
  "  SELECT (SELECT r.priority FROM kagzi_runs r WHERE r.status IN ('PENDING', 'SLEEPING')" \
  "    AND r.priority < p.priority ORDER BY r.priority DESC LIMIT 1)" \
  "  FROM prios p WHERE p.priority IS NOT NULL), " \
  "due AS (" \
  "  SELECT d.* FROM prios p CROSS JOIN LATERAL (" \
  "    SELECT r.id, r.priority, r.available_at AS since FROM kagzi_runs r" \
  "    WHERE r.status IN ('PENDING', 'SLEEPING') AND r.priority = p.priority" \
  "      AND r.available_at <= now() AND " KAGZI_LOADED_FILTER("$2", "$3") \
  "    ORDER BY r.available_at, r.id" \
  "    LIMIT $4" \
  "    FOR UPDATE OF r SKIP LOCKED) d" \
  "  WHERE p.priority IS NOT NULL LIMIT $4), " \
  "expired AS (" \
  "  SELECT r.id, r.priority, r.lease_expires_at AS since FROM kagzi_runs r" \
  "  WHERE r.status = 'RUNNING' AND r.lease_expires_at < now()" \
  "    AND " KAGZI_LOADED_FILTER("$2", "$3") \
  "  ORDER BY r.lease_expires_at" \
  "  LIMIT $4" \
  "  FOR UPDATE OF r SKIP LOCKED), " \
  "picked AS (" \
  "  SELECT id FROM (SELECT * FROM due UNION ALL SELECT * FROM expired) c" \
  "  ORDER BY priority DESC, since, id LIMIT $4), " KAGZI_CLAIM_PICKED

const Statement kClaim = {"kagzi_claim", KAGZI_CLAIM_SQL};

// The claim of announced runs (ClaimRequest::run_ids, wakeup.h): of the
// runs $6, those due, of the loaded workflows and not locked by another
// claimer, by primary key; at most $4 of them, any ones (the scheduler
// claims this way only when it has a slot for each). The index walks of
// kClaim, priority by priority, and its look for expired leases are what
// make it the heavier claim, for a run whose id is known. Run after
// kClaimPlan like kClaim: on any table, the runs are read through the
// primary key, never by a scan of the table or a walk of a claim index.
// Hence no ORDER BY: with sorting disabled, it made the plan walk
// kagzi_runs_claim_order for the order instead (ClaimTest).
#define KAGZI_CLAIM_IDS_SQL \
  "WITH " KAGZI_CLAIM_LOADED \
  "picked AS (" \
  "  SELECT r.id FROM kagzi_runs r" \
  "  WHERE r.id = ANY ($6::uuid[]) AND r.status IN ('PENDING', 'SLEEPING')" \
  "    AND r.available_at <= now()" \
  "    AND " KAGZI_LOADED_FILTER("$2", "$3") \
  "  LIMIT $4" \
  "  FOR UPDATE OF r SKIP LOCKED), " KAGZI_CLAIM_PICKED
const Statement kClaimIds = {"kagzi_claim_ids", KAGZI_CLAIM_IDS_SQL};

// The most concurrent StartRun calls one transaction takes (StartGroup).
constexpr std::size_t kMaxStartsPerCommit = 1000;

// Run before the claim (and before kNextWake), in its transaction: the
// claim's plan must walk the claim indexes in order, never read and sort
// every runnable run. Planned on the statistics of a young kagzi_runs
// (before autovacuum's first ANALYZE, which on a new database under load
// can be a minute away)
// PostgreSQL took the runnable runs by bitmap scan and sorted them: 10 ms
// per claim with 10,000 waiting, where the index walk takes 0.05 ms.
// enable_sort = off makes every plan that sorts the runnable runs cost
// more than the index walk, whatever the statistics say (the few rows the
// claim picks are still sorted: there is no other way). And the generic
// plan, always: with every plan's cost that high, PostgreSQL's choice
// between a generic and a custom plan flipped from one connection to the
// next, and a custom plan is 0.5 ms of planning per claim (bench3: 90% of
// claims planned afresh in some runs, 2% in others). enable_seqscan = off
// for the same reason: on such a table the runs picked were looked up for
// the UPDATE by a hash join over a scan of the whole table. And
// enable_bitmapscan = off: the claim reads by index walks in order; the
// picked runs, looked up by their ids, are read by primary key, not
// gathered into a bitmap first.
const Statement kClaimPlan = {"kagzi_claim_plan",
                              "SELECT set_config('enable_sort', 'off', true),"
                              " set_config('enable_seqscan', 'off', true),"
                              " set_config('enable_bitmapscan', 'off', true),"
                              " set_config('plan_cache_mode', 'force_generic_plan', true)"};

// The journals of runs claimed again, read after the claim committed (see
// ClaimRuns for why not by the claim itself).
const Statement kClaimJournal = {
    "kagzi_claim_journal", "SELECT s.run_id::text, " KAGZI_STEP_COLUMNS
                           ", c.status, c.output::text, c.error"
                           " FROM kagzi_steps s LEFT JOIN kagzi_runs c ON c.id = s.child_run_id"
                           " WHERE s.run_id = ANY($1::uuid[]) ORDER BY s.run_id, s.seq"};

const Statement kHeartbeat = {
    "kagzi_heartbeat",
    "WITH d AS (UPDATE kagzi_daemons SET heartbeat_at = now() WHERE id = $1::uuid) "
    "UPDATE kagzi_runs SET lease_expires_at = now() + $2::bigint * interval '1 millisecond' "
    "WHERE lease_owner = $1::uuid AND status = 'RUNNING'"
    " AND ($3::uuid[] IS NULL OR id = ANY($3::uuid[])) RETURNING id::text"};

// When the scheduler should look again: the first wake time of a parked
// run, or lease expiry, of the loaded workflows. Run after kClaimPlan, in
// its transaction (NextWakeTime): each part is the first entry of its
// index in order (kagzi_runs_runnable, kagzi_runs_lease_expiry), in a
// generic plan. As min() it was planned afresh at every call (1-3 ms of
// planning, after nearly every claim of an idle daemon, while the claimed
// run's first step was due), and a generic plan of min() made on a young
// table read every entry of the index.
#define KAGZI_NEXT_WAKE_SQL \
  "SELECT kagzi_us(least("                                                                      \
  "  (SELECT r.available_at FROM kagzi_runs r"                                                  \
  "    WHERE r.available_at < 'infinity' AND r.status IN ('PENDING', 'SLEEPING') AND "          \
  KAGZI_LOADED_FILTER("$1", "$2") "    ORDER BY r.available_at LIMIT 1),"                      \
  "  (SELECT r.lease_expires_at FROM kagzi_runs r"                                              \
  "    WHERE r.status = 'RUNNING' AND " KAGZI_LOADED_FILTER("$1", "$2")                         \
  "    ORDER BY r.lease_expires_at LIMIT 1)))"
const Statement kNextWake = {"kagzi_next_wake", KAGZI_NEXT_WAKE_SQL};

// Upserts one journal entry: a new one, or a pending one (RETRYING or
// WAITING) with the same id and seq; a final entry is never changed. Only
// under the lease, and only before the run's deadline.
#define KAGZI_UPSERT_STEP_CONFLICT                                                           \
  " ON CONFLICT (run_id, step_id) DO UPDATE SET status = EXCLUDED.status,"                   \
  " output = EXCLUDED.output, error = EXCLUDED.error, error_kind = EXCLUDED.error_kind,"     \
  " attempts = EXCLUDED.attempts, wake_at = EXCLUDED.wake_at, finished_at = now(),"          \
  " child_run_id = COALESCE(EXCLUDED.child_run_id, kagzi_steps.child_run_id)"                \
  " WHERE kagzi_steps.seq = EXCLUDED.seq AND (kagzi_steps.status IN ('RETRYING', 'WAITING')" \
  "   OR (kagzi_steps.status = EXCLUDED.status AND kagzi_steps.kind = EXCLUDED.kind"         \
  "       AND kagzi_steps.output::text IS NOT DISTINCT FROM EXCLUDED.output::text"           \
  "       AND kagzi_steps.error IS NOT DISTINCT FROM EXCLUDED.error))"                       \
  " RETURNING run_id, step_id"

#define KAGZI_RECORD_STEP_SQL(conflict)                                                      \
  "WITH lease AS (SELECT id, cancel_requested, cancel_reason,"                               \
  "    (deadline_at IS NULL OR deadline_at > now()) AS in_time"                              \
  "  FROM kagzi_runs WHERE " KAGZI_LEASE_MATCHES                                             \
  " FOR NO KEY UPDATE), "                                                                    \
  "ins AS (INSERT INTO kagzi_steps (run_id, step_id, seq, kind, status, output, error,"      \
  "    error_kind, attempts, wake_at, started_at, event_name, child_run_id)"                 \
  "  SELECT lease.id, $4, $5, $6, $7, $8::json, $9, $10, $11, kagzi_ts($12), kagzi_ts($13)," \
  "    $14, $15::uuid FROM lease WHERE lease.in_time" conflict                               \
  ") "                                                                                       \
  "SELECT (SELECT count(*) FROM ins), cancel_requested, cancel_reason, in_time FROM lease"
const Statement kRecordStep = {"kagzi_record_step",
                               KAGZI_RECORD_STEP_SQL(KAGZI_UPSERT_STEP_CONFLICT)};

// kRecordStep for a new entry (FencedWrite::new_entry): a plain INSERT,
// which fails if the entry exists after all. An upsert costs PostgreSQL a
// speculative insertion per row (a lock taken and released on a token,
// the unique index searched twice, a confirmation written to the WAL):
// 100,000 rows upserted in batches of 500 into a table with kagzi_steps'
// two unique indexes took 1.4 to 1.9 times as long as plain INSERTs.
#define KAGZI_INSERT_STEP_CONFLICT " RETURNING run_id, step_id"
const Statement kInsertStep = {"kagzi_insert_step",
                               KAGZI_RECORD_STEP_SQL(KAGZI_INSERT_STEP_CONFLICT)};

// Run first in a group's transaction, before kRecordSteps and kEndRuns
// (and with them when they are planned ahead): no sequential or bitmap scan
// of kagzi_runs, so that their plans, generic or made again after the
// table's statistics change, look the group's runs up by primary key.
// Local to the transaction, as kClaimPlan's.
const Statement kGroupPlan = {"kagzi_group_plan",
                              "SELECT set_config('enable_seqscan', 'off', true),"
                              " set_config('enable_bitmapscan', 'off', true)"};

// Many kRecordStep at once (a group of the GroupCommitter): the same
// writes and checks, $1..$15 holding kRecordStep's parameters as arrays,
// one element per write. Row locks are taken in run id order. One row per
// write, in order: whether its entry was written, the run's cancellation
// request, and whether the lease matched.
//
// `lease` locks the group's runs by id alone, and the lease is matched
// after, in `mine` and in the answer, against the values of the row as
// locked (after any concurrent update: a run claimed again meanwhile shows
// its new owner and epoch). Matched in the locking scan itself, as a join
// with the writes, it made PostgreSQL keep a copy of every write's whole
// row, output included, for EvalPlanQual (ExecEvalWholeRowVar): a quarter
// of the statement's time in kagzi-bench's bench3 (docs/benchmarks.md). A
// stale write (its run leased anew) thus locks that run's row until the
// group commits, and writes nothing. The runs are found by primary key, as
// kEndRuns finds them (see there).
#define KAGZI_RECORD_STEPS_SQL(conflict)                                                       \
  "WITH w AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[],"          \
  "    $5::int[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int[],"    \
  "    $12::bigint[], $13::bigint[], $14::text[], $15::uuid[]) WITH ORDINALITY"                \
  "  AS w(run_id, owner, epoch, step_id, seq, kind, status, output, error, error_kind,"        \
  "       attempts, wake_at, started_at, event_name, child_run_id, ord)), "                    \
  "lease AS (SELECT r.id, r.lease_owner, r.lease_epoch, r.cancel_requested, r.cancel_reason,"  \
  "    (r.deadline_at IS NULL OR r.deadline_at > now()) AS in_time FROM kagzi_runs r"          \
  "  WHERE r.id = ANY($1::uuid[])"                                                             \
  "  ORDER BY r.id FOR NO KEY UPDATE), "                                                       \
  "mine AS (SELECT w.*, lease.in_time FROM w JOIN lease ON lease.id = w.run_id"                \
  "  AND lease.lease_owner = w.owner AND lease.lease_epoch = w.epoch), "                       \
  "ins AS (INSERT INTO kagzi_steps (run_id, step_id, seq, kind, status, output, error,"        \
  "    error_kind, attempts, wake_at, started_at, event_name, child_run_id)"                   \
  "  SELECT run_id, step_id, seq, kind, status, output::json, error, error_kind, attempts,"    \
  "    kagzi_ts(wake_at), kagzi_ts(started_at), event_name, child_run_id"                      \
  "  FROM mine WHERE in_time ORDER BY ord" conflict                                            \
  ") "                                                                                         \
  "SELECT EXISTS (SELECT 1 FROM ins WHERE ins.run_id = w.run_id AND ins.step_id = w.step_id)," \
  "  lease.cancel_requested, lease.cancel_reason, lease.id IS NOT NULL"                        \
  " FROM w LEFT JOIN lease ON lease.id = w.run_id AND lease.lease_owner = w.owner"             \
  "   AND lease.lease_epoch = w.epoch ORDER BY w.ord"
const Statement kRecordSteps = {"kagzi_record_steps",
                                KAGZI_RECORD_STEPS_SQL(KAGZI_UPSERT_STEP_CONFLICT)};
// kRecordSteps for a group whose entries are all new, like kInsertStep.
const Statement kInsertSteps = {"kagzi_insert_steps",
                                KAGZI_RECORD_STEPS_SQL(KAGZI_INSERT_STEP_CONFLICT)};

// kRecordSteps' parameters as binary arrays (PgColumns): the element type
// of $1..$15, as cast in its unnest above. Keep the two in step: a
// mismatch fails every group, which is then made again write by write.
const std::vector<PgElement> kRecordStepsElements = {
    PgElement::kUuid, PgElement::kUuid, PgElement::kInt8, PgElement::kText, PgElement::kInt4,
    PgElement::kText, PgElement::kText, PgElement::kText, PgElement::kText, PgElement::kText,
    PgElement::kInt4, PgElement::kInt8, PgElement::kInt8, PgElement::kText, PgElement::kUuid};

const Statement kPark = {
    "kagzi_park",
    // $4 delay ms, $5 until (us), $6 expected wake_seq, then the optional
    // journal entry: $7 step id, $8 seq, $9 kind, $10 status, $11 error,
    // $12 error_kind, $13 attempts, $14 started_at, $15 event name.
    "WITH params AS (SELECT CASE WHEN $4::bigint IS NOT NULL"
    "    THEN now() + $4::bigint * interval '1 millisecond' ELSE kagzi_ts($5::bigint) END AS "
    "wake), "
    "lease AS (UPDATE kagzi_runs SET status = 'SLEEPING',"
    // A run asked to cancel while it ran must not sleep through it.
    "    available_at = CASE WHEN cancel_requested THEN now()"
    "      WHEN $6::bigint IS NOT NULL AND wake_seq <> $6::bigint THEN now()"
    "      ELSE least(COALESCE((SELECT wake FROM params), 'infinity'),"
    "                 COALESCE(deadline_at, 'infinity')) END,"
    "    lease_owner = NULL, lease_expires_at = NULL, updated_at = now()"
    "  WHERE " KAGZI_LEASE_MATCHES
    " RETURNING id, available_at), "
    "ins AS (INSERT INTO kagzi_steps (run_id, step_id, seq, kind, status, error, error_kind,"
    "    attempts, wake_at, started_at, event_name)"
    "  SELECT lease.id, $7, $8, $9, $10, $11, $12, $13, params.wake, kagzi_ts($14), $15"
    "  FROM lease, params WHERE $7::text IS NOT NULL" KAGZI_UPSERT_STEP_CONFLICT
    ") "
    "SELECT kagzi_us(available_at), kagzi_us((SELECT wake FROM params)),"
    "  CASE WHEN $7::text IS NOT NULL AND (SELECT count(*) FROM ins) = 0"
    "    THEN kagzi_journal_conflict(id, $7) END FROM lease"};

const Statement kConsumeEvent = {
    "kagzi_consume_event",
    // $4 event name, $5 step id, $6 seq, $7 started_at
    "WITH lease AS (SELECT id FROM kagzi_runs WHERE " KAGZI_LEASE_MATCHES
    "    AND (deadline_at IS NULL OR deadline_at > now()) FOR NO KEY UPDATE), "
    "ev AS (SELECT e.id, e.payload FROM kagzi_events e JOIN lease ON e.run_id = lease.id"
    "  WHERE e.name = $4 AND e.consumed_at IS NULL"
    "    AND NOT EXISTS (SELECT 1 FROM kagzi_steps s WHERE s.run_id = lease.id"
    "      AND s.step_id = $5 AND s.status = 'COMPLETED')"
    "  ORDER BY e.id LIMIT 1"
    "  FOR UPDATE OF e SKIP LOCKED), "
    "used AS (UPDATE kagzi_events e SET consumed_at = now(), consumed_by = $5"
    "  FROM ev WHERE e.id = ev.id RETURNING e.id), "
    "ins AS (INSERT INTO kagzi_steps (run_id, step_id, seq, kind, status, output, attempts,"
    "    started_at, event_name)"
    "  SELECT lease.id, $5, $6, 'event', 'COMPLETED', ev.payload, 1, kagzi_ts($7), $4"
    "  FROM lease, ev" KAGZI_UPSERT_STEP_CONFLICT
    ") "
    "SELECT (SELECT count(*) FROM lease), COALESCE((SELECT payload::text FROM ev),"
    "  (SELECT s.output::text FROM kagzi_steps s JOIN lease ON s.run_id = lease.id"
    "    WHERE s.step_id = $5 AND s.seq = $6 AND s.kind = 'event' AND s.status = 'COMPLETED')),"
    "  CASE WHEN EXISTS (SELECT 1 FROM ev) AND NOT EXISTS (SELECT 1 FROM ins)"
    "    THEN kagzi_journal_conflict($1::uuid, $5) END"};

const Statement kStartChild = {
    "kagzi_start_child",
    // $4 step id, $5 seq, $6 started_at, $7 workflow, $8 input, $9 key
    "WITH lease AS (SELECT id FROM kagzi_runs WHERE " KAGZI_LEASE_MATCHES
    "    AND (deadline_at IS NULL OR deadline_at > now()) FOR NO KEY UPDATE), "
    "child AS (INSERT INTO kagzi_runs (id, workflow, input, idempotency_key, parent_run_id)"
    "  SELECT kagzi_new_run_id(), $7, $8::json, $9, lease.id FROM lease"
    "  ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id), "
    "kid AS (SELECT id FROM child UNION ALL"
    "  SELECT r.id FROM kagzi_runs r, lease WHERE r.idempotency_key = $9 LIMIT 1), "
    "ins AS (INSERT INTO kagzi_steps (run_id, step_id, seq, kind, status, attempts, started_at,"
    "    child_run_id)"
    "  SELECT lease.id, $4, $5, 'child', 'WAITING', 1, kagzi_ts($6), kid.id FROM lease, kid"
    "  ON CONFLICT (run_id, step_id) DO NOTHING RETURNING 1) "
    "SELECT (SELECT count(*) FROM lease), (SELECT id::text FROM kid),"
    "  CASE WHEN EXISTS (SELECT 1 FROM lease) AND NOT EXISTS (SELECT 1 FROM ins)"
    "    THEN kagzi_journal_conflict($1::uuid, $4) END"};

const Statement kSetDeadline = {
    "kagzi_set_deadline",
    "UPDATE kagzi_runs SET deadline_at = kagzi_ts($4::bigint), updated_at = now()"
    " WHERE " KAGZI_LEASE_MATCHES " AND deadline_at IS NULL"};

const Statement kCancelRun = {
    "kagzi_cancel_run",
    "WITH lease AS (UPDATE kagzi_runs SET status = 'CANCELLED', error = $4,"
    "    cancel_requested = true, cancel_reason = COALESCE(cancel_reason, $4),"
    "    lease_owner = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now()"
    "  WHERE " KAGZI_LEASE_MATCHES
    " RETURNING id) "
    "SELECT (SELECT count(*) FROM lease),"
    "  (SELECT COALESCE(sum(kagzi_cancel(c.id, $4)), 0) FROM kagzi_runs c JOIN lease"
    "     ON c.parent_run_id = lease.id"
    "   WHERE c.status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED'))"};

const Statement kLeaseStillHeld = {
    "kagzi_lease_still_held",
    "SELECT count(*), bool_and(deadline_at IS NULL OR deadline_at > now())"
    " FROM kagzi_runs WHERE " KAGZI_LEASE_MATCHES};

const Statement kComplete = {
    "kagzi_complete",
    "UPDATE kagzi_runs SET status = 'COMPLETED', output = $4::json, error = NULL,"
    " lease_owner = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now() "
    "WHERE " KAGZI_LEASE_MATCHES};

// $5: the seq at which the failing call began (NULL: none), for a retry.
const Statement kFail = {
    "kagzi_fail",
    "UPDATE kagzi_runs SET status = 'FAILED', error = $4, failed_call_seq = $5::int,"
    " lease_owner = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now() "
    "WHERE " KAGZI_LEASE_MATCHES};

// Many kComplete / kFail at once (a group of the GroupCommitter): $4 is
// each run's new status, $5 its output (COMPLETED) or error (FAILED), $6
// a failure's failed_call_seq (as kFail's $5). One row per run whose lease
// matched: its position in the arrays.
//
// Each run's values are taken from the arrays by its position in $1
// (array_position, a scan of at most a group's ids), not by a join with
// their unnest: an UPDATE joined with another relation keeps a copy of each
// joined row, output included, for EvalPlanQual (ExecEvalWholeRowVar):
// 13 % of the statement's time in bench3. The lease is matched in the WHERE
// clause, which PostgreSQL checks again on the newest version of a row
// updated concurrently.
//
// How it finds the runs (kRecordSteps likewise): by primary key, `r.id =
// ANY($1)` its index condition, run after kGroupPlan. There is no
// condition on the status: the lease match implies it (the table's CHECK
// ties a lease owner to RUNNING), and with one the planner could walk a
// partial index of RUNNING runs instead (kagzi_runs_lease_owner,
// _lease_expiry), small in the statistics of a young table or of one
// analyzed beside a backlog of parked runs: every RUNNING run of every
// daemon read, and tested against the group's ids, for each group
// (kagzi-bench bench3 at --concurrency 512: 262 runs read for 60 ends).
// Without the status condition and without kGroupPlan, a generic plan made
// while the table was small was a sequential scan, and stayed one as the
// table grew. See GroupCommitTest's GroupWritesLookUpTheirRunsById tests.
const Statement kEndRuns = {
    "kagzi_end_runs",
    "UPDATE kagzi_runs r SET status = ($4::text[])[array_position($1::uuid[], r.id)],"
    " output = CASE WHEN ($4::text[])[array_position($1::uuid[], r.id)] = 'COMPLETED'"
    "   THEN (($5::text[])[array_position($1::uuid[], r.id)])::json ELSE r.output END,"
    " error = CASE WHEN ($4::text[])[array_position($1::uuid[], r.id)] = 'COMPLETED'"
    "   THEN NULL ELSE ($5::text[])[array_position($1::uuid[], r.id)] END,"
    " failed_call_seq = ($6::int[])[array_position($1::uuid[], r.id)],"
    " lease_owner = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now() "
    "WHERE r.id = ANY($1::uuid[])"
    " AND r.lease_owner = ($2::uuid[])[array_position($1::uuid[], r.id)]"
    " AND r.lease_epoch = ($3::bigint[])[array_position($1::uuid[], r.id)]"
    " RETURNING array_position($1::uuid[], r.id)"};

// kEndRuns' parameters as binary arrays: $1..$6 as cast above.
const std::vector<PgElement> kEndRunsElements = {PgElement::kUuid, PgElement::kUuid,
                                                 PgElement::kInt8, PgElement::kText,
                                                 PgElement::kText, PgElement::kInt4};

const Statement kRelease = {
    "kagzi_release",
    "UPDATE kagzi_runs SET status = 'PENDING', available_at = now(), lease_owner = NULL,"
    " lease_expires_at = NULL, lease_epoch = lease_epoch + 1, updated_at = now() "
    "WHERE " KAGZI_LEASE_MATCHES};

const Statement kNow = {"kagzi_now", "SELECT kagzi_us(now())"};

const Statement kUpsertDaemon = {
    "kagzi_upsert_daemon",
    "INSERT INTO kagzi_daemons (id, hostname, pid, version, concurrency, lease_ttl_ms,"
    "  supervisor_id, worker_index, restarts) "
    "VALUES ($1::uuid, $2, $3, $4, $5, $6, $7::uuid, $8, $9) "
    "ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), concurrency = EXCLUDED.concurrency"};

// A dead worker: blame one run (fail it at $4 crashes), release the rest.
const Statement kBlameCrashedRun = {
    "kagzi_blame_crashed_run",
    "UPDATE kagzi_runs SET crash_count = crash_count + 1, last_crash = $3,"
    "  status = CASE WHEN crash_count + 1 >= $4 THEN 'FAILED' ELSE 'PENDING' END,"
    "  error = CASE WHEN crash_count + 1 >= $4"
    "    THEN $3 || ' (' || (crash_count + 1) || ' times)' ELSE error END,"
    "  finished_at = CASE WHEN crash_count + 1 >= $4 THEN now() END,"
    "  available_at = now(), lease_owner = NULL, lease_expires_at = NULL,"
    "  lease_epoch = lease_epoch + 1, updated_at = now()"
    " WHERE id = $2::uuid AND lease_owner = $1::uuid AND status = 'RUNNING'"
    " RETURNING crash_count, status = 'FAILED'"};

const Statement kReleaseWorkerRuns = {
    "kagzi_release_worker_runs",
    "UPDATE kagzi_runs SET status = 'PENDING', available_at = now(), lease_owner = NULL,"
    "  lease_expires_at = NULL, lease_epoch = lease_epoch + 1, updated_at = now()"
    " WHERE lease_owner = $1::uuid AND status = 'RUNNING'"};

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

std::pair<std::string, std::string> LoadedArrays(const std::vector<WorkflowKey>& loaded) {
  std::vector<std::string> names;
  std::vector<std::int64_t> versions;
  for (const auto& k : loaded) {
    names.push_back(k.name);
    versions.push_back(k.version);
  }
  return {PgTextArray(names), PgIntArray(versions)};
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
    case StepKind::kHelper:
      return "helper";
  }
  return "unknown";
}

std::optional<StepKind> ParseStepKind(std::string_view s) {
  for (auto k :
       {StepKind::kStep, StepKind::kSleep, StepKind::kEvent, StepKind::kChild, StepKind::kHelper}) {
    if (StepKindName(k) == s) return k;
  }
  return std::nullopt;
}

PgStore::PgStore(PgStoreOptions options)
    : options_(std::move(options)),
      pool_(options_.database_url, options_.application_name, options_.pool_size,
            options_.generic_plans ? PgPool::Setup([](PgConnection& c) {
              return c.Exec("SET plan_cache_mode = force_generic_plan").status();
            })
                                   : PgPool::Setup()),
      starts_(std::make_unique<StartGroup>(kMaxStartsPerCommit)) {}

PgStore::~PgStore() = default;

Status PgStore::WarmPool(int connections) {
  return pool_.Warm(connections, [](PgConnection& c) -> Status {
    // The claim and the next wake are planned under kClaimPlan's settings,
    // as they run: a cached plan is not made again when settings change.
    KAGZI_RETURN_IF_ERROR(c.PlanAhead({&kClaim, &kClaimIds, &kNextWake}, &kClaimPlan));
    KAGZI_RETURN_IF_ERROR(c.PlanAhead({&kInsertSteps, &kRecordSteps, &kEndRuns}, &kGroupPlan));
    return c.PlanAhead({&kInsertStep, &kRecordStep, &kPark, &kComplete, &kFail, &kHeartbeat,
                        &kNotifyAfterCommitMode, &kNotifyFinished});
  });
}

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
    if (auto r = c.ExecPrepared(
            kUpsertDaemon,
            {info.id, info.hostname, info.pid, info.version, info.concurrency,
             static_cast<std::int64_t>(info.lease_ttl.count()),
             info.supervisor_id ? PgParam(*info.supervisor_id) : PgParam(std::nullopt),
             info.worker_index, info.restarts});
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

Result<WorkerRecovery> PgStore::RecoverWorker(const WorkerDeath& death) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  PgConnection& c = **conn;
  auto run = [&]() -> Result<WorkerRecovery> {
    WorkerRecovery out;
    if (auto r = c.Exec("BEGIN"); !r.ok()) return r.status();
    if (death.blamed_run_id) {
      auto r = c.ExecPrepared(kBlameCrashedRun, {death.worker_id, *death.blamed_run_id,
                                                 death.reason, death.max_crashes});
      if (!r.ok()) return r.status();
      if (r->rows() == 1) {
        out.blamed_crashes = static_cast<int>(r->GetInt(0, 0));
        out.blamed_failed = r->GetBool(0, 1);
      }
    }
    auto released = c.ExecPrepared(kReleaseWorkerRuns, {death.worker_id});
    if (!released.ok()) return released.status();
    out.released = static_cast<int>(released->Affected());
    if (auto r = c.ExecPrepared(kDeleteDaemon, {death.worker_id}); !r.ok()) return r.status();
    if (auto r = c.Exec("COMMIT"); !r.ok()) return r.status();
    return out;
  };
  auto result = run();
  if (!result.ok() && !c.broken()) (void)c.Exec("ROLLBACK");
  return result;
}

Status PgStore::UnregisterDaemon(std::string_view daemon_id) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(kDeleteDaemon, {daemon_id});
  return r.ok() ? Status::Ok() : r.status();
}

namespace {

// The claim statement with its parameters.
PgConnection::Call ClaimCall(const ClaimRequest& req, const std::string& names,
                             const std::string& versions) {
  if (!req.run_ids.empty()) {
    return {&kClaimIds,
            {req.owner, names, versions, req.limit,
             static_cast<std::int64_t>(req.lease_ttl.count()), PgTextArray(req.run_ids)}};
  }
  return {
      &kClaim,
      {req.owner, names, versions, req.limit, static_cast<std::int64_t>(req.lease_ttl.count())}};
}

}  // namespace

Result<ClaimBatch> PgStore::ClaimRuns(const ClaimRequest& req) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  PgConnection& c = **conn;
  auto [names, versions] = LoadedArrays(req.loaded);
  // The claim is a statement of its own, committed at once: it locks the
  // runs it takes, bumps their epochs and commits. Their journals are read
  // afterwards, under a snapshot taken after that commit: a step the
  // previous (expired) lease holder committed before the claim locked the
  // row is in it, and one it attempted later waited for the lock, saw the
  // new epoch and wrote nothing. (Read by the claim statement itself, the
  // journal would come from the snapshot taken before the row locks and
  // miss such a step, which would then run twice.) Every journal write is
  // made under a lease, so a run claimed for the first time (attempts 1)
  // has none and its journal is not read.
  auto results = c.ExecTransaction({{&kClaimPlan, {}}, ClaimCall(req, names, versions)});
  if (!results.ok()) return results.status();
  const PgResult* r = &(*results)[1];
  ClaimBatch batch;
  std::vector<std::string> replayed;
  for (int i = 0; i < r->rows(); ++i) {
    batch.db_now = r->GetInt(i, kRunColumnCount);
    batch.runs.push_back(ClaimedRun{ParseRun(*r, i), {}, {}});
    if (batch.runs.back().run.attempts > 1) replayed.push_back(batch.runs.back().run.id);
  }
  if (replayed.empty()) return batch;
  if (Status st = ReadJournals(c, replayed, batch); !st.ok()) {
    // The runs are leased to us but cannot be replayed: give them back
    // rather than leave them until their lease expires.
    for (const ClaimedRun& claimed : batch.runs) {
      if (c.broken()) break;
      (void)c.ExecPrepared(kRelease, {claimed.run.id, req.owner, claimed.run.lease_epoch});
    }
    return st.WithContext("reading the journals of claimed runs");
  }
  return batch;
}

Status PgStore::ReadJournals(PgConnection& c, const std::vector<std::string>& run_ids,
                             ClaimBatch& batch) {
  // Planned on each read: on a young database a cached plan would scan the
  // whole journal table every time (kagzi-bench saw 20 million rows read
  // for 10,000 runs) until autovacuum's ANALYZE.
  auto steps = c.ExecUnprepared(kClaimJournal, {PgTextArray(run_ids)});
  if (!steps.ok()) return steps.status();
  std::size_t k = 0;  // both are sorted by run id
  for (int i = 0; i < steps->rows(); ++i) {
    std::string_view run_id = steps->Get(i, 0);
    while (k < batch.runs.size() && batch.runs[k].run.id != run_id) ++k;
    if (k == batch.runs.size()) {
      return Status::Internal("claim: journal row for run {} that was not claimed", run_id);
    }
    StepRecord step = ParseStep(*steps, i, 1);
    const int child_col = 1 + kStepColumnCount;
    if (step.child_run_id && !steps->IsNull(i, child_col)) {
      ChildOutcome outcome;
      outcome.status = ParseRunStatus(steps->Get(i, child_col)).value_or(RunStatus::kPending);
      outcome.output = steps->GetOptional(i, child_col + 1);
      outcome.error = steps->GetOptional(i, child_col + 2);
      batch.runs[k].children[*step.child_run_id] = std::move(outcome);
    }
    batch.runs[k].journal.push_back(std::move(step));
  }
  return Status::Ok();
}

namespace {
// An EXPLAIN's rows, one line each.
std::string PlanText(const PgResult& r) {
  std::string plan;
  for (int i = 0; i < r.rows(); ++i) {
    plan += r.Get(i, 0);
    plan += '\n';
  }
  return plan;
}

// The generic plan of a statement run after kClaimPlan (the claim, the next
// wake time), as the daemon runs it: EXPLAIN EXECUTE of the prepared
// statement, its parameters quoted into the text, after kClaimPlan in a
// transaction that is rolled back (with `analyze` the statement runs).
// EXPLAIN of the statement's text with parameters would plan it for their
// values, as a custom plan: not the plan the daemon runs.
Result<std::string> ExplainAfterClaimPlan(PgConnection& c, const PgConnection::Call& call,
                                          bool analyze) {
  KAGZI_RETURN_IF_ERROR(c.PrepareAll({call.stmt}));
  std::string args;
  for (const PgParam& p : call.params) {
    if (!p.value()) {
      args += args.empty() ? "NULL" : ", NULL";
      continue;
    }
    char* quoted = PQescapeLiteral(c.raw(), p.value()->data(), p.value()->size());
    if (quoted == nullptr) {
      return Status::Internal("quoting a parameter of {} failed", call.stmt->name);
    }
    args += args.empty() ? quoted : std::string(", ") + quoted;
    PQfreemem(quoted);
  }
  std::string sql =
      fmt::format("EXPLAIN {}EXECUTE {}({})", analyze ? "(ANALYZE, BUFFERS, TIMING OFF) " : "",
                  call.stmt->name, args);
  KAGZI_RETURN_IF_ERROR(c.Exec("BEGIN").status());
  auto set = c.ExecPrepared(kClaimPlan, {});
  auto plan = set.ok() ? c.Exec(sql) : set;
  auto rolled_back = c.Exec("ROLLBACK");
  if (!plan.ok()) return plan.status();
  if (!rolled_back.ok()) return rolled_back.status();
  return PlanText(*plan);
}

}  // namespace

Result<std::string> PgStore::ExplainClaim(const ClaimRequest& req, bool analyze) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  // The plan ClaimRuns runs: kClaim's generic plan, made after kClaimPlan
  // in its transaction. EXPLAIN ANALYZE runs the claim, rolled back.
  auto [names, versions] = LoadedArrays(req.loaded);
  return ExplainAfterClaimPlan(**conn, ClaimCall(req, names, versions), analyze);
}

Result<std::string> PgStore::ExplainGroupWrites() {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  PgConnection& c = **conn;
  // The generic plans, as the pool's prepared statements use them (after
  // kGroupPlan): each statement prepared under a name of its own,
  // explained with NULL parameters (which a generic plan does not fold),
  // in a transaction rolled back.
  std::string plans;
  KAGZI_RETURN_IF_ERROR(c.Exec("BEGIN").status());
  Status st = c.Exec("SET LOCAL plan_cache_mode = force_generic_plan").status();
  if (st.ok()) st = c.Exec(kGroupPlan.sql).status();
  for (const auto& [stmt, params] :
       {std::pair{&kInsertSteps, 15}, std::pair{&kRecordSteps, 15}, std::pair{&kEndRuns, 6}}) {
    if (!st.ok()) break;
    std::string nulls = "NULL";
    for (int i = 1; i < params; ++i) nulls += ", NULL";
    st = c.Exec(fmt::format("PREPARE kagzi_explain_group AS {}", stmt->sql)).status();
    if (!st.ok()) break;
    auto plan = c.Exec(fmt::format("EXPLAIN EXECUTE kagzi_explain_group({})", nulls));
    if (!plan.ok()) {
      st = plan.status();
      break;
    }
    plans += fmt::format("{}:\n{}", stmt->name, PlanText(*plan));
    st = c.Exec("DEALLOCATE kagzi_explain_group").status();
  }
  auto rolled_back = c.Exec("ROLLBACK");
  if (!st.ok()) return st.WithContext("explaining the group commit's statements");
  if (!rolled_back.ok()) return rolled_back.status();
  return plans;
}

Result<std::vector<std::string>> PgStore::Heartbeat(
    std::string_view owner, std::chrono::milliseconds lease_ttl,
    const std::optional<std::vector<std::string>>& only) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(kHeartbeat,
                                 {owner, static_cast<std::int64_t>(lease_ttl.count()),
                                  only ? PgParam(PgTextArray(*only)) : PgParam(std::nullopt)});
  if (!r.ok()) return r.status();
  std::vector<std::string> ids;
  for (int i = 0; i < r->rows(); ++i) ids.push_back(r->GetString(i, 0));
  return ids;
}

Result<std::string> PgStore::ExplainNextWake(const std::vector<WorkflowKey>& loaded, bool analyze) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto [names, versions] = LoadedArrays(loaded);
  return ExplainAfterClaimPlan(**conn, {&kNextWake, {names, versions}}, analyze);
}

Result<std::map<std::string, std::string>> PgStore::CachedPlans() {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  PgConnection& c = **conn;
  auto r = c.Exec(
      "SELECT name, cardinality(parameter_types) FROM pg_prepared_statements"
      " WHERE generic_plans > 0");
  if (!r.ok()) return r.status();
  std::map<std::string, std::string> plans;
  for (int i = 0; i < r->rows(); ++i) {
    const std::string name(r->Get(i, 0));
    auto plan = c.Exec(ExplainExecuteSql(name, static_cast<int>(r->GetInt(i, 1))));
    if (!plan.ok()) return plan.status();
    plans[name] = PlanText(*plan);
  }
  return plans;
}

Result<std::optional<Micros>> PgStore::NextWakeTime(const std::vector<WorkflowKey>& loaded) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto [names, versions] = LoadedArrays(loaded);
  auto results = (*conn)->ExecTransaction({{&kClaimPlan, {}}, {&kNextWake, {names, versions}}});
  if (!results.ok()) return results.status();
  return (*results)[1].GetOptionalInt(0, 0);
}

namespace {

std::vector<PgParam> LeaseParams(const Lease& lease) {
  return {lease.run_id, lease.owner, lease.epoch};
}

// Why a fenced statement matched no run: the lease is gone (kConflict), or
// the run's deadline passed (kPermanent), or neither (kInternal: a journal
// conflict).
Status WhyNothingWritten(PgConnection& conn, const Lease& lease, std::string_view what) {
  auto held = conn.ExecPrepared(kLeaseStillHeld, LeaseParams(lease));
  if (!held.ok()) return held.status();
  if (held->GetInt(0, 0) == 0) {
    return Status::Conflict("run {}: lease lost (epoch {}) before {}", lease.run_id, lease.epoch,
                            what);
  }
  if (!held->GetBool(0, 1)) {
    return Status::Permanent("run {}: deadline exceeded before {}", lease.run_id, what);
  }
  return Status::Internal("run {}: {} conflicts with the recorded journal", lease.run_id, what);
}

PgParam OptInt(const std::optional<std::int64_t>& v) {
  return v ? PgParam(*v) : PgParam(std::nullopt);
}

}  // namespace

std::string_view StepStatusName(StepStatus s) {
  switch (s) {
    case StepStatus::kCompleted:
      return "COMPLETED";
    case StepStatus::kFailed:
      return "FAILED";
    case StepStatus::kRetrying:
      return "RETRYING";
    case StepStatus::kWaiting:
      return "WAITING";
  }
  return "UNKNOWN";
}

std::optional<StepStatus> ParseStepStatus(std::string_view s) {
  for (auto st :
       {StepStatus::kCompleted, StepStatus::kFailed, StepStatus::kRetrying, StepStatus::kWaiting}) {
    if (StepStatusName(st) == s) return st;
  }
  return std::nullopt;
}

std::string_view ErrorKindName(ErrorKind k) {
  switch (k) {
    case ErrorKind::kRetryable:
      return "retryable";
    case ErrorKind::kPermanent:
      return "permanent";
    case ErrorKind::kTimeout:
      return "timeout";
    case ErrorKind::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

std::optional<ErrorKind> ParseErrorKind(std::string_view s) {
  for (auto k :
       {ErrorKind::kRetryable, ErrorKind::kPermanent, ErrorKind::kTimeout, ErrorKind::kCancelled}) {
    if (ErrorKindName(k) == s) return k;
  }
  return std::nullopt;
}

namespace {

std::vector<PgParam> RecordStepParams(const Lease& lease, const StepRecord& s) {
  bool failed = s.status == StepStatus::kFailed || s.status == StepStatus::kRetrying;
  return {lease.run_id,
          lease.owner,
          lease.epoch,
          s.step_id,
          s.seq,
          StepKindName(s.kind),
          StepStatusName(s.status),
          s.output,
          s.error,
          failed ? PgParam(ErrorKindName(s.error_kind)) : PgParam(std::nullopt),
          s.attempts,
          OptMicros(s.wake_at),
          OptMicros(s.started_at),
          s.event_name,
          s.child_run_id};
}

// kRecordStep's answer: whether the entry was written, and the run's
// cancellation request into *feedback.
bool RecordStepWritten(const PgResult& r, WriteFeedback* feedback) {
  if (r.rows() != 1) return false;
  if (feedback) {
    feedback->cancel_requested = r.GetBool(0, 1);
    feedback->cancel_reason = r.GetOptional(0, 2);
  }
  return r.GetInt(0, 0) == 1;
}

// kRecordSteps' parameters: column k holds parameter k of each write's
// kRecordStep.
std::vector<PgParam> RecordStepsParams(const std::vector<FencedWrite*>& steps) {
  std::vector<std::vector<PgParam>> rows;
  rows.reserve(steps.size());
  for (const FencedWrite* w : steps) rows.push_back(RecordStepParams(w->lease, w->step));
  return PgColumns(rows, kRecordStepsElements);
}

// kEndRuns' parameters: one element per completion or failure.
std::vector<PgParam> EndRunsParams(const std::vector<FencedWrite*>& ends) {
  std::vector<std::vector<PgParam>> rows;
  rows.reserve(ends.size());
  for (const FencedWrite* w : ends) {
    const bool completed = w->kind == FencedWrite::Kind::kCompleteRun;
    rows.push_back({w->lease.run_id, w->lease.owner, w->lease.epoch,
                    completed ? "COMPLETED" : "FAILED", w->value,
                    completed ? std::nullopt : OptInt(w->failed_call_seq)});
  }
  return PgColumns(rows, kEndRunsElements);
}

// kRecordSteps' answer for the write in row `row`, like RecordStepWritten.
bool RecordStepsWritten(const PgResult& r, int row, WriteFeedback* feedback) {
  if (row >= r.rows() || !r.GetBool(row, 3)) return false;  // the lease did not match
  if (feedback) {
    feedback->cancel_requested = r.GetBool(row, 1);
    feedback->cancel_reason = r.GetOptional(row, 2);
  }
  return r.GetBool(row, 0);
}

std::string RecordedWhat(const StepRecord& s) {
  return fmt::format("step \"{}\" was recorded", s.step_id);
}

Status LeaseLost(const Lease& lease, std::string_view what) {
  return Status::Conflict("run {}: lease lost (epoch {}) before it could be {}", lease.run_id,
                          lease.epoch, what);
}

}  // namespace

Status PgStore::RecordStep(const Lease& lease, const StepRecord& s, WriteFeedback* feedback) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(kRecordStep, RecordStepParams(lease, s));
  if (!r.ok()) {
    // A unique violation can only come from the journal (a seq taken by
    // another id): the statement rolled back and the lease is intact.
    if (r.status().IsConflict()) {
      return Status::Internal(
          "run {}: step \"{}\" (seq {}) conflicts with the recorded journal: {}", lease.run_id,
          s.step_id, s.seq, r.status().message());
    }
    return r.status();
  }
  if (RecordStepWritten(*r, feedback)) return Status::Ok();
  return WhyNothingWritten(**conn, lease, RecordedWhat(s));
}

bool PgStore::InsertStep(FencedWrite& w) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) {
    w.result = conn.status();
    return true;
  }
  auto r = (*conn)->ExecPrepared(kInsertStep, RecordStepParams(w.lease, w.step));
  // A unique violation: the entry, or its seq, exists after all; the
  // statement rolled back, and the upsert gives the answer.
  if (!r.ok() && r.status().IsConflict()) return false;
  if (!r.ok()) {
    w.result = r.status();
  } else if (RecordStepWritten(*r, &w.feedback)) {
    w.result = Status::Ok();
  } else {
    w.result = WhyNothingWritten(**conn, w.lease, RecordedWhat(w.step));
  }
  return true;
}

namespace {

std::vector<PgParam> ParkParams(const Lease& lease, const std::optional<StepRecord>& step,
                                const ParkOptions& o) {
  std::vector<PgParam> p = LeaseParams(lease);
  p.push_back(o.delay
                  ? PgParam(static_cast<std::int64_t>(std::max<std::int64_t>(0, o.delay->count())))
                  : PgParam(std::nullopt));
  p.push_back(OptInt(o.until));
  p.push_back(OptInt(o.expected_wake_seq));
  if (step) {
    bool failed = step->status == StepStatus::kFailed || step->status == StepStatus::kRetrying;
    p.insert(p.end(), {step->step_id, step->seq, StepKindName(step->kind),
                       StepStatusName(step->status), step->error,
                       failed ? PgParam(ErrorKindName(step->error_kind)) : PgParam(std::nullopt),
                       step->attempts, OptMicros(step->started_at), step->event_name});
  } else {
    for (int i = 0; i < 9; ++i) p.push_back(std::nullopt);
  }
  return p;
}

// kPark's answer: the wake time (nullopt: until woken), or kConflict if
// the lease was lost.
Result<std::optional<Micros>> ParkedUntil(const PgResult& r, const Lease& lease) {
  if (r.rows() == 0) {
    return Status::Conflict("run {}: lease lost (epoch {}) before it could be parked", lease.run_id,
                            lease.epoch);
  }
  return r.GetOptionalInt(0, 0);
}

}  // namespace

Result<std::optional<Micros>> PgStore::ParkRun(const Lease& lease,
                                               const std::optional<StepRecord>& step,
                                               const ParkOptions& o) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(kPark, ParkParams(lease, step, o));
  if (!r.ok()) {
    // A journal conflict aborts the whole statement: the run is still ours
    // and unchanged. Not kConflict, which means "lease lost".
    if (step && !(*conn)->broken() && !r.status().IsUnavailable()) {
      return Status::Internal("run {}: {} \"{}\" (seq {}) cannot be parked: {}", lease.run_id,
                              StepKindName(step->kind), step->step_id, step->seq,
                              r.status().message());
    }
    return r.status();
  }
  return ParkedUntil(*r, lease);
}

Result<std::optional<std::string>> PgStore::ConsumeEvent(const Lease& lease,
                                                         const StepRecord& wait) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(
      kConsumeEvent, {lease.run_id, lease.owner, lease.epoch, wait.event_name.value_or(""),
                      wait.step_id, wait.seq, OptMicros(wait.started_at)});
  if (!r.ok()) return r.status();
  if (r->GetInt(0, 0) == 0) {
    return WhyNothingWritten(**conn, lease,
                             fmt::format("event wait \"{}\" was recorded", wait.step_id));
  }
  return r->GetOptional(0, 1);
}

Result<std::string> PgStore::StartChild(const Lease& lease, const StepRecord& entry,
                                        const StartRequest& child) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(
      kStartChild,
      {lease.run_id, lease.owner, lease.epoch, entry.step_id, entry.seq,
       OptMicros(entry.started_at), child.workflow, child.input,
       child.idempotency_key ? PgParam(*child.idempotency_key) : PgParam(std::nullopt)});
  if (!r.ok()) return r.status();
  if (r->GetInt(0, 0) == 0) {
    return WhyNothingWritten(**conn, lease,
                             fmt::format("child call \"{}\" was recorded", entry.step_id));
  }
  if (r->IsNull(0, 1)) {
    return Status::Internal("run {}: child of \"{}\" was neither created nor found", lease.run_id,
                            entry.step_id);
  }
  return r->GetString(0, 1);
}

Status PgStore::SetDeadline(const Lease& lease, Micros deadline_at) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r =
      (*conn)->ExecPrepared(kSetDeadline, {lease.run_id, lease.owner, lease.epoch, deadline_at});
  return r.ok() ? Status::Ok() : r.status();
}

Status PgStore::CancelRun(const Lease& lease, std::string_view reason) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(kCancelRun, {lease.run_id, lease.owner, lease.epoch, reason});
  if (!r.ok()) return r.status();
  if (r->GetInt(0, 0) == 0) {
    return Status::Conflict("run {}: lease lost (epoch {}) before it could be cancelled",
                            lease.run_id, lease.epoch);
  }
  return Status::Ok();
}

namespace {
// A statement on the lease's run ($1-$3: id, owner, epoch; then `more`).
Status FencedUpdate(PgPool& pool, const Statement& stmt, const Lease& lease,
                    std::vector<PgParam> more, std::string_view what) {
  auto conn = pool.Acquire();
  if (!conn.ok()) return conn.status();
  std::vector<PgParam> params = {lease.run_id, lease.owner, lease.epoch};
  params.insert(params.end(), std::make_move_iterator(more.begin()),
                std::make_move_iterator(more.end()));
  auto r = (*conn)->ExecPrepared(stmt, params);
  if (!r.ok()) return r.status();
  if (r->Affected() == 0) return LeaseLost(lease, what);
  return Status::Ok();
}
}  // namespace

Status PgStore::CompleteRun(const Lease& lease, std::string_view output_json) {
  return FencedUpdate(pool_, kComplete, lease, {output_json}, "completed");
}

Status PgStore::FailRun(const Lease& lease, std::string_view error,
                        std::optional<int> failed_call_seq) {
  return FencedUpdate(pool_, kFail, lease, {error, OptInt(failed_call_seq)}, "failed");
}

Status PgStore::ReleaseRun(const Lease& lease) {
  return FencedUpdate(pool_, kRelease, lease, {}, "released");
}

void Store::ApplyWrites(const std::vector<FencedWrite*>& writes) {
  for (FencedWrite* w : writes) {
    switch (w->kind) {
      case FencedWrite::Kind::kRecordStep:
        w->result = RecordStep(w->lease, w->step, &w->feedback);
        break;
      case FencedWrite::Kind::kCompleteRun:
        w->result = CompleteRun(w->lease, w->value);
        break;
      case FencedWrite::Kind::kFailRun:
        w->result = FailRun(w->lease, w->value, w->failed_call_seq);
        break;
      case FencedWrite::Kind::kPark: {
        auto parked =
            ParkRun(w->lease, w->park_step ? std::optional(w->step) : std::nullopt, w->park);
        w->result = parked.status();
        if (parked.ok()) w->parked_until = *parked;
        break;
      }
    }
  }
}

void PgStore::ApplyWrites(const std::vector<FencedWrite*>& writes) {
  // A lone step record or park goes as a statement of its own; a group, or
  // a run's end (whose notifications go after the commit), as one pipeline.
  if (writes.size() == 1 && writes[0]->kind == FencedWrite::Kind::kRecordStep &&
      writes[0]->new_entry && InsertStep(*writes[0])) {
    return;
  }
  if (writes.empty() || (writes.size() == 1 && (writes[0]->kind == FencedWrite::Kind::kRecordStep ||
                                                writes[0]->kind == FencedWrite::Kind::kPark))) {
    return Store::ApplyWrites(writes);
  }
  // Row locks are taken in run id order, so two daemons' groups never wait
  // for each other in a cycle (a completion's trigger may still lock a
  // parent out of order; a deadlock then fails the group, below).
  std::vector<FencedWrite*> sorted = writes;
  std::sort(sorted.begin(), sorted.end(), [](const FencedWrite* a, const FencedWrite* b) {
    return a->lease.run_id < b->lease.run_id;
  });
  // The calls: kGroupPlan, then the parks (a statement each), then the
  // notification mode if runs end here (their kagzi_run_finished goes after
  // the commit, not inside it), then the step records, then the ends of runs
  // (one statement for all of each). The parks come before the notification
  // mode: a park that wakes at once (something it waits for has happened)
  // is announced by the status trigger, which that mode would silence.
  std::vector<FencedWrite*> parks;
  std::vector<FencedWrite*> steps;
  std::vector<FencedWrite*> ends;
  std::vector<std::string> finishing;
  std::vector<std::string> parents;
  for (FencedWrite* w : sorted) {
    if (w->kind == FencedWrite::Kind::kRecordStep) {
      steps.push_back(w);
      continue;
    }
    if (w->kind == FencedWrite::Kind::kPark) {
      parks.push_back(w);
      continue;
    }
    ends.push_back(w);
    finishing.push_back(w->lease.run_id);
    if (w->parent_run_id) parents.push_back(*w->parent_run_id);
  }
  std::vector<PgConnection::Call> calls;
  // kGroupPlan first, for the kRecordSteps and kEndRuns below.
  if (steps.size() > 1 || !ends.empty()) calls.push_back({&kGroupPlan, {}});
  const std::size_t first_park = calls.size();
  for (const FencedWrite* w : parks) {
    calls.push_back(
        {&kPark,
         ParkParams(w->lease, w->park_step ? std::optional(w->step) : std::nullopt, w->park)});
  }
  if (!ends.empty()) calls.push_back({&kNotifyAfterCommitMode, {}});
  // New entries only: inserted as they are. Should one exist after all,
  // the group fails and its writes are made again one by one, upserted.
  const bool all_new =
      std::all_of(steps.begin(), steps.end(), [](const FencedWrite* w) { return w->new_entry; });
  const std::size_t steps_call = calls.size();
  if (steps.size() == 1) {
    calls.push_back(
        {all_new ? &kInsertStep : &kRecordStep, RecordStepParams(steps[0]->lease, steps[0]->step)});
  } else if (steps.size() > 1) {
    calls.push_back({all_new ? &kInsertSteps : &kRecordSteps, RecordStepsParams(steps)});
  }
  const std::size_t ends_call = calls.size();
  if (!ends.empty()) calls.push_back({&kEndRuns, EndRunsParams(ends)});
  const PgConnection::Call notify = NotifyFinished(finishing, parents);
  {
    auto conn = pool_.Acquire();
    if (!conn.ok()) {
      for (FencedWrite* w : sorted) w->result = conn.status();
      return;
    }
    auto results = (*conn)->ExecTransaction(calls, ends.empty() ? nullptr : &notify);
    if (results.ok()) {
      for (std::size_t i = 0; i < parks.size(); ++i) {
        FencedWrite* w = parks[i];
        auto parked = ParkedUntil((*results)[first_park + i], w->lease);
        w->result = parked.status();
        if (parked.ok()) w->parked_until = *parked;
      }
      for (std::size_t i = 0; i < steps.size(); ++i) {
        FencedWrite* w = steps[i];
        const PgResult& r = (*results)[steps_call];
        const bool written = steps.size() == 1
                                 ? RecordStepWritten(r, &w->feedback)
                                 : RecordStepsWritten(r, static_cast<int>(i), &w->feedback);
        w->result =
            written ? Status::Ok() : WhyNothingWritten(**conn, w->lease, RecordedWhat(w->step));
      }
      std::vector<bool> ended(ends.size(), false);
      if (!ends.empty()) {
        const PgResult& r = (*results)[ends_call];
        for (int row = 0; row < r.rows(); ++row) {
          const std::int64_t ord = r.GetInt(row, 0);  // 1-based
          if (ord >= 1 && ord <= static_cast<std::int64_t>(ends.size())) ended[ord - 1] = true;
        }
      }
      for (std::size_t i = 0; i < ends.size(); ++i) {
        FencedWrite* w = ends[i];
        const bool completed = w->kind == FencedWrite::Kind::kCompleteRun;
        w->result =
            ended[i] ? Status::Ok() : LeaseLost(w->lease, completed ? "completed" : "failed");
      }
      return;
    }
    Logger("store")->debug("a group of {} writes failed, writing them one by one: {}",
                           sorted.size(), results.status().message());
  }
  // Nothing of the group was written (a statement failed: a journal
  // conflict, a deadlock, a serialization failure), or the connection died
  // and whether it committed is unknown. Each write then goes on its own
  // and gets its own answer. They are idempotent, so a group that did
  // commit is answered too: a recorded entry is recorded again identically,
  // and a finished run's lease is gone (kConflict, as after any lost reply).
  Store::ApplyWrites(sorted);
}

Result<Micros> PgStore::Now() {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->ExecPrepared(kNow, {});
  if (!r.ok()) return r.status();
  return r->GetInt(0, 0);
}

}  // namespace kagzi
