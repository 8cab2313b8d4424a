// Shared by pg_store.cc (the daemon's side of the Store) and
// pg_store_client.cc (kagzictl's side): the column lists every query of a
// run or a journal entry selects, and their parsers. Internal to core/.
#pragma once

#include <string>
#include <vector>

#include "kagzi/core/pg.h"
#include "kagzi/core/store.h"
#include "kagzi/core/validation.h"

namespace kagzi::pg_internal {

#define KAGZI_RUN_COLUMNS                                                                     \
  "r.id::text, r.workflow, r.version, r.status, r.input::text, r.output::text, r.error, "     \
  "r.priority, kagzi_us(r.available_at), r.lease_owner::text, kagzi_us(r.lease_expires_at), " \
  "r.lease_epoch, r.attempts, r.parent_run_id::text, r.idempotency_key, "                     \
  "kagzi_us(r.created_at), kagzi_us(r.started_at), kagzi_us(r.updated_at), "                  \
  "kagzi_us(r.finished_at), kagzi_us(r.deadline_at), r.cancel_requested, r.cancel_reason, "   \
  "r.wake_seq, r.crash_count, r.last_crash"
inline constexpr int kRunColumnCount = 25;

#define KAGZI_STEP_COLUMNS                                                                  \
  "s.step_id, s.seq, s.kind, s.status, s.output::text, s.error, s.error_kind, s.attempts, " \
  "kagzi_us(s.wake_at), kagzi_us(s.started_at), kagzi_us(s.finished_at), s.event_name, "    \
  "s.child_run_id::text"
inline constexpr int kStepColumnCount = 13;

inline RunRecord ParseRun(const PgResult& r, int row) {
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
  run.deadline_at = r.GetOptionalInt(row, 19);
  run.cancel_requested = r.GetBool(row, 20);
  run.cancel_reason = r.GetOptional(row, 21);
  run.wake_seq = r.GetInt(row, 22);
  run.crash_count = static_cast<int>(r.GetInt(row, 23));
  run.last_crash = r.GetOptional(row, 24);
  return run;
}

inline StepRecord ParseStep(const PgResult& r, int row, int c) {
  StepRecord s;
  s.step_id = r.GetString(row, c + 0);
  s.seq = static_cast<int>(r.GetInt(row, c + 1));
  s.kind = ParseStepKind(r.Get(row, c + 2)).value_or(StepKind::kStep);
  s.status = ParseStepStatus(r.Get(row, c + 3)).value_or(StepStatus::kCompleted);
  s.output = r.GetOptional(row, c + 4);
  s.error = r.GetOptional(row, c + 5);
  s.error_kind = ParseErrorKind(r.Get(row, c + 6)).value_or(ErrorKind::kPermanent);
  s.attempts = static_cast<int>(r.GetInt(row, c + 7));
  s.wake_at = r.GetOptionalInt(row, c + 8);
  s.started_at = r.GetOptionalInt(row, c + 9);
  s.finished_at = r.GetInt(row, c + 10);
  s.event_name = r.GetOptional(row, c + 11);
  s.child_run_id = r.GetOptional(row, c + 12);
  return s;
}

inline std::optional<std::string> OptMicros(const std::optional<Micros>& v) {
  if (!v) return std::nullopt;
  return std::to_string(*v);
}

inline std::optional<std::string> OptInt(const std::optional<int>& v) {
  if (!v) return std::nullopt;
  return std::to_string(*v);
}

inline Status CheckRunId(std::string_view id) {
  if (!IsUuid(id)) return Status::InvalidArgument("\"{}\" is not a run id (a UUID)", id);
  return Status::Ok();
}

// Notifications after the commit (migration 0005). A transaction that
// notifies holds a database-wide lock through its WAL flush, so busy
// writers (starts, the group committer's ends of runs) run
// kNotifyAfterCommitMode first, which keeps the status trigger quiet, and
// send what it would have sent as ExecTransaction's `after`:
// NotifyStarted, kagzi_wakeup for the workflows of runs just started
// (payloads made by WakeupPayload, naming the runs), or NotifyFinished,
// kagzi_run_finished for each run whose end was written and kagzi_wakeup,
// naming it, for each of their parents that is claimable now (a finished
// child wakes its parent). A spurious notification (an end refused
// because the lease was lost) or a lost one costs only latency: daemons
// and waiters re-read the table. The common statements read no table, so
// that PostgreSQL keeps one generic plan for them.
inline constexpr Statement kNotifyAfterCommitMode = {
    "kagzi_notify_after_commit_mode", "SELECT set_config('kagzi.notify', 'after_commit', true)"};
inline constexpr Statement kNotifyStarted = {
    "kagzi_notify_started", "SELECT pg_notify('kagzi_wakeup', w) FROM unnest($1::text[]) AS w"};
inline constexpr Statement kNotifyFinished = {
    "kagzi_notify_finished",
    "SELECT pg_notify('kagzi_run_finished', r) FROM unnest($1::text[]) AS r"};
inline constexpr Statement kNotifyFinishedAndParents = {
    "kagzi_notify_finished_and_parents",
    "SELECT pg_notify('kagzi_run_finished', r) FROM unnest($1::text[]) AS r "
    "UNION ALL "
    "SELECT pg_notify('kagzi_wakeup', p.workflow || E'\\t' || p.id::text) FROM kagzi_runs p"
    " WHERE p.id = ANY($2::uuid[]) AND p.status IN ('PENDING', 'SLEEPING')"
    "   AND p.available_at <= now()"};

inline PgConnection::Call NotifyStarted(const std::vector<std::string>& payloads) {
  return {&kNotifyStarted, {PgTextArray(payloads)}};
}
inline PgConnection::Call NotifyFinished(const std::vector<std::string>& run_ids,
                                         const std::vector<std::string>& parent_ids) {
  if (parent_ids.empty()) return {&kNotifyFinished, {PgTextArray(run_ids)}};
  return {&kNotifyFinishedAndParents, {PgTextArray(run_ids), PgTextArray(parent_ids)}};
}

}  // namespace kagzi::pg_internal
