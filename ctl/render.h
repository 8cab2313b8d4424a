// Rendering for kagzictl: human-readable fields and tables, and JSON
// documents for scripts.
//
// Everything kagzictl prints goes through here, so two rules hold in one
// place: text from the database (names, ids, errors, outputs) has its control
// characters escaped before it reaches a terminal, and JSON is only ever
// produced by RapidJSON's Writer, never by concatenating user text.
// Pure functions and plain values; thread-safe.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "kagzi/core/store.h"

namespace kagzi::ctl {

// --- times -------------------------------------------------------------------

// "2026-11-26 04:47:28.123Z": UTC, millisecond precision, for humans.
std::string FormatTime(Micros t);
// "2026-11-26T04:47:28.123456Z": RFC 3339, UTC, microsecond precision.
std::string FormatRfc3339(Micros t);
// A duration for humans: "0.012s", "1.234s", "2m05.123s", "3h04m05s".
// Negative durations (clock skew) render as "0.000s".
std::string FormatElapsed(Micros d);

// --- text ----------------------------------------------------------------------

enum class Newlines { kEscape, kKeep };

// `text` made safe to print on a terminal: C0 control characters, DEL and C1
// control characters become \n, \r, \t, \xNN or \u00NN; bytes that are not
// valid UTF-8 become \xNN. With Newlines::kKeep, '\n' and '\t' pass through
// (for multi-line error messages on stderr).
std::string EscapeText(std::string_view text, Newlines newlines = Newlines::kEscape);

// Number of characters (UTF-8 code points) in text, for column alignment.
std::size_t DisplayWidth(std::string_view text);

// --- JSON text -------------------------------------------------------------------

// The compact form of one JSON value: whitespace between tokens removed,
// numbers kept exactly as written, strings re-escaped by RapidJSON. nullopt
// when `json` is not valid JSON.
std::optional<std::string> CompactJson(std::string_view json);

// Rewrites DEL and C1 control characters in a valid JSON text as \u escapes.
// They can only occur inside strings, so the meaning is unchanged; the
// result is safe on a terminal (RapidJSON already escapes C0 characters).
std::string TerminalSafeJson(std::string_view json);

// A single-line preview of a JSON value for tables: compact, escaped, at
// most max_chars characters, "..." appended when cut.
std::string Preview(std::string_view json, std::size_t max_chars = 60);

// --- human output ------------------------------------------------------------------

// A table with a header row; cells are escaped when added. Columns are
// separated by two spaces and aligned by DisplayWidth.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  void AddRow(std::vector<std::string> cells);
  bool empty() const { return rows_.empty(); }
  // Every line ends with '\n'; trailing spaces are trimmed.
  std::string Render() const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// "key:  value" lines with the values aligned; values are escaped.
class FieldList {
 public:
  void Add(std::string key, std::string_view value);
  std::string Render() const;

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

// The fields of a run (status, show): id, workflow, version, status,
// attempts, times, deadline, cancel request, parent, error, and `waiting`
// (why nothing runs it) when given.
std::string RenderRunFields(const RunRecord& run,
                            const std::optional<std::string>& waiting = std::nullopt);
// The journal of a run as a table (show): seq, id, kind, status, attempts,
// times, duration, and a detail column (wake or wait deadline, next attempt,
// error with its kind, event name, child run id, or the result).
std::string RenderStepsTable(const std::vector<StepRecord>& steps);
// The child runs of a run as a table (show).
std::string RenderChildrenTable(const std::vector<RunRecord>& children);
// Runs as a table (list).
std::string RenderRunsTable(const std::vector<RunRecord>& runs);
// Workflow versions as a table (workflows); version 0 is the row of open
// runs not pinned to a version yet ("unpinned").
std::string RenderWorkflowsTable(const std::vector<WorkflowRecord>& workflows);
// Daemons as a table (workers); `now` is the database clock.
std::string RenderDaemonsTable(const std::vector<DaemonRecord>& daemons, Micros now);

// --- JSON output -------------------------------------------------------------------

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

// A string value; invalid UTF-8 is replaced by U+FFFD so the document stays
// valid JSON.
void WriteString(JsonWriter& w, std::string_view s);
// A member name and string value.
void WriteMember(JsonWriter& w, std::string_view key, std::string_view value);
// A member whose value is a timestamp in RFC 3339, or null.
void WriteTimeMember(JsonWriter& w, std::string_view key, std::optional<Micros> t);
// A member whose value is the JSON text `json` embedded as a value (not as a
// string), or null when absent. Text that is not valid JSON is embedded as a
// string.
void WriteJsonMember(JsonWriter& w, std::string_view key, const std::optional<std::string>& json);

// The members of a run object (without the braces), documented in --help:
// id, workflow, version, status, input, output, error, attempts, created_at,
// started_at, finished_at, parent_run_id, idempotency_key, deadline_at,
// cancel_requested, cancel_reason.
void WriteRunMembers(JsonWriter& w, const RunRecord& run);
// One journal entry as an object: step_id, seq, kind, status, output, error,
// error_kind, attempts, wake_at, started_at, finished_at, event_name,
// child_run_id.
void WriteStep(JsonWriter& w, const StepRecord& step);
// One workflow version as an object: workflow, version (null: open runs not
// pinned yet), daemons (ids of live daemons that have it), open_runs,
// plugin_path (null when no live daemon has it).
void WriteWorkflow(JsonWriter& w, const WorkflowRecord& workflow);
// One daemon as an object: id, hostname, pid, version, concurrency,
// lease_ttl_ms, running, started_at, heartbeat_at, heartbeat_age_ms, alive.
void WriteDaemon(JsonWriter& w, const DaemonRecord& daemon, Micros now);

// The finished document as printed: terminal-safe, one line, '\n'-ended.
std::string FinishJson(const rapidjson::StringBuffer& buffer);

// --- start --batch ------------------------------------------------------------------

// One run of start --batch as reported: the run it started or found, or why
// it was refused.
struct BatchStartOutcome {
  int line = 0;                       // its line in the batch file
  std::optional<std::string> run_id;  // absent when refused
  bool created = false;               // false: its idempotency key had a run
  std::optional<std::string> idempotency_key;
  std::optional<std::string> error;  // why it was refused
};
// Each run id on a line of its own, in the order given; refused runs print
// nothing.
std::string RenderBatchStartIds(const std::vector<BatchStartOutcome>& runs);
// The --json document: {workflow, runs: [{line, id (null: refused), created,
// idempotency_key, error (null unless refused)}]}, finished by FinishJson.
std::string RenderBatchStartJson(std::string_view workflow,
                                 const std::vector<BatchStartOutcome>& runs);

}  // namespace kagzi::ctl
