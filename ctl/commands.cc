// kagzictl command implementations. Each command owns, for its lifetime, one
// PgStore (a pool of one connection, plus the dedicated LISTEN connection
// WaitForRun opens). Store errors are mapped to exit codes in one place,
// Session::ReportStoreError, which also recognises a database without the Kagzi schema
// and keeps passwords out of every message (RedactDatabaseUrl).
#include "commands.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <ostream>

#include <fmt/format.h>

#include "checks.h"
#include "kagzi/core/config.h"
#include "kagzi/core/store.h"
#include "kagzi/core/validation.h"
#include "render.h"

namespace kagzi::ctl {

const char kExitCodesHelp[] =
    "Exit codes:\n"
    "  0  success (start --wait, wait, result: the run COMPLETED)\n"
    "  1  the run FAILED or was CANCELLED (its error is printed on stderr)\n"
    "  2  bad usage or bad input: unknown option, malformed JSON, invalid or unknown\n"
    "     workflow, malformed or unknown run id, an idempotency key that belongs to\n"
    "     another workflow, a bad config file, a run in the wrong state (cancel or\n"
    "     signal a finished run, retry a run that is not FAILED); nothing was changed\n"
    "     (start --batch: the runs of the lines named on stderr were refused, the\n"
    "     others were started)\n"
    "  3  cannot reach or use the database: connection failed, no Kagzi schema\n"
    "     (start kagzid once to create it), permission denied\n"
    "  4  the run has not finished: the wait ran out (start --wait, wait), or\n"
    "     result of a run that is still PENDING, RUNNING or SLEEPING\n"
    "  5  internal error: a bug, or an unexpected database error\n";

namespace {

using std::chrono::milliseconds;

ExitCode ReportError(Console& console, ExitCode code, std::string_view message) {
  console.err << "kagzictl: " << EscapeText(message, Newlines::kKeep) << "\n";
  return code;
}

bool HasSqlState(std::string_view message, std::string_view state) {
  return message.find(fmt::format("SQLSTATE {}", state)) != std::string_view::npos;
}

std::string_view FirstLine(std::string_view s) { return s.substr(0, s.find('\n')); }

std::optional<std::string> Getenv(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

// Config, then the store; reports failures with the right exit code.
class Session {
 public:
  Session(const GlobalOptions& global, Console& console) : global_(global), console_(console) {}

  // Loads the config (no database access). On failure prints the error and
  // returns the exit code.
  std::optional<ExitCode> LoadConfig() {
    ConfigLoadOptions options;
    options.explicit_file = global_.config_file;
    if (global_.database_url) options.flag_values["database_url"] = *global_.database_url;
    if (DefaultConfigUnreadableButNotNeeded()) options.explicit_file = "/dev/null";
    auto config = kagzi::LoadConfig(options);
    if (!config.ok()) return ReportError(console_, ExitCode::kUsage, config.status().message());
    config_ = std::move(config).value();
    return std::nullopt;
  }

  const Config& config() const { return config_; }

  // Connects lazily: the first store call opens the connection.
  PgStore& store() {
    if (!store_) {
      store_ = std::make_unique<PgStore>(PgStoreOptions{
          .database_url = config_.database_url, .application_name = "kagzictl", .pool_size = 1});
    }
    return *store_;
  }

  // Prints a failed store call's error and returns its exit code.
  ExitCode ReportStoreError(const Status& status) {
    const std::string& message = status.message();
    const std::string url = RedactDatabaseUrl(config_.database_url);
    switch (status.code()) {
      case StatusCode::kInvalidArgument:
      case StatusCode::kNotFound:
      case StatusCode::kConflict:
        return ReportError(console_, ExitCode::kUsage, message);
      case StatusCode::kUnavailable:
        if (message.find("database_url") != std::string::npos) {
          return ReportError(console_, ExitCode::kDatabase, message);
        }
        return ReportError(console_, ExitCode::kDatabase,
                           fmt::format("database \"{}\": {}", url, message));
      case StatusCode::kOk:
      case StatusCode::kPermanent:
      case StatusCode::kInternal:
        break;
    }
    // Undefined table, function or schema: nobody migrated this database.
    if (HasSqlState(message, "42P01") || HasSqlState(message, "42883") ||
        HasSqlState(message, "3F000")) {
      return ReportError(console_, ExitCode::kDatabase,
                         fmt::format("database \"{}\" has no Kagzi schema: start kagzid once to "
                                     "migrate it ({})",
                                     url, FirstLine(message)));
    }
    if (HasSqlState(message, "42501")) {
      return ReportError(console_, ExitCode::kDatabase,
                         fmt::format("database \"{}\": {}", url, FirstLine(message)));
    }
    return ReportError(console_, ExitCode::kInternal, fmt::format("unexpected error: {}", message));
  }

 private:
  // The default config file often holds a password and is readable only by
  // kagzid. When no file was asked for and the database URL comes from a
  // flag or KAGZI_DATABASE_URL, such a file is not needed: skip it rather
  // than refuse to run. (Asked-for files, and an unreadable default file
  // when nothing else names the database, are still errors.)
  bool DefaultConfigUnreadableButNotNeeded() const {
    if (global_.config_file) return false;
    if (auto env = Getenv("KAGZI_CONFIG"); env && !env->empty()) return false;
    if (!global_.database_url && !Getenv("KAGZI_DATABASE_URL")) return false;
    const std::string path(kDefaultConfigPath);
    std::error_code ec;
    return std::filesystem::exists(path, ec) && access(path.c_str(), R_OK) != 0;
  }

  const GlobalOptions& global_;
  Console& console_;
  Config config_;
  std::unique_ptr<PgStore> store_;
};

// A JSON value for the terminal: compact and escaped; "null" when absent.
std::string PrintableJson(const std::optional<std::string>& json) {
  if (!json) return "null";
  if (auto compact = CompactJson(*json)) return TerminalSafeJson(*compact);
  return EscapeText(*json);
}

std::string StillRunningMessage(const RunRecord& run) {
  return fmt::format("run {} is {}, not finished (use 'kagzictl wait {}' to wait for it)", run.id,
                     RunStatusName(run.status), run.id);
}

std::string RunFailedMessage(const RunRecord& run) {
  return fmt::format("run {} of workflow \"{}\" {}: {}", run.id, run.workflow,
                     RunStatusName(run.status), run.error.value_or("(no error recorded)"));
}

// Waits for run_id, prints the outcome, returns the exit code. `created`
// is set when called from start (it then appears in the JSON document).
ExitCode WaitAndReport(Session& session, Console& console, const std::string& run_id,
                       std::optional<milliseconds> timeout, bool json,
                       std::optional<bool> created) {
  auto run = session.store().WaitForRun(run_id, timeout);
  if (!run.ok()) return session.ReportStoreError(run.status());
  if (json) {
    rapidjson::StringBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    WriteRunMembers(w, *run);
    if (created) {
      WriteString(w, "created");
      w.Bool(*created);
    }
    w.EndObject();
    console.out << FinishJson(buffer);
  }
  switch (run->status) {
    case RunStatus::kCompleted:
      if (!json) console.out << PrintableJson(run->output) << "\n";
      return ExitCode::kSuccess;
    case RunStatus::kFailed:
    case RunStatus::kCancelled:
      return ReportError(console, ExitCode::kRunFailed, RunFailedMessage(*run));
    case RunStatus::kPending:
    case RunStatus::kRunning:
    case RunStatus::kSleeping:
      break;
  }
  std::string message = fmt::format("timed out after {} waiting for run {}: it is still {}",
                                    FormatElapsed(timeout.value_or(milliseconds(0)).count() * 1000),
                                    run->id, RunStatusName(run->status));
  if (run->deadline_at) {
    message += fmt::format(
        " (its deadline is {}; a kagzid that has workflow \"{}\" loaded "
        "fails it once that passes)",
        FormatTime(*run->deadline_at), run->workflow);
  }
  return ReportError(console, ExitCode::kNotFinished, message);
}

// Why nothing will run `run` now: no live daemon has its (workflow,
// version) loaded, or, for a run not pinned to a version yet, no live
// daemon has the workflow at all. nullopt when a live daemon could run it,
// or when the run is terminal.
Result<std::optional<std::string>> BlockedReason(PgStore& store, const RunRecord& run) {
  if (IsTerminal(run.status)) return std::optional<std::string>();
  auto workflows = store.ListWorkflows();
  if (!workflows.ok()) return workflows.status();
  const int version = run.version.value_or(0);  // 0: the row of unpinned runs
  std::vector<std::string> live_versions;
  for (const auto& w : *workflows) {
    if (w.key.name != run.workflow || w.daemons.empty()) continue;
    if (w.key.version == version) return std::optional<std::string>();
    if (w.key.version != 0) live_versions.push_back(std::to_string(w.key.version));
  }
  if (!run.version) {
    return std::optional<std::string>(
        fmt::format("no live kagzid has workflow \"{}\" loaded", run.workflow));
  }
  std::string reason = fmt::format("no live kagzid has workflow \"{}\" version {} loaded",
                                   run.workflow, *run.version);
  if (!live_versions.empty()) {
    reason += fmt::format(
        " (live daemons have version {}; a run stays on the version it "
        "started with)",
        fmt::join(live_versions, ", "));
  }
  return std::optional<std::string>(std::move(reason));
}

void WriteOptionalString(JsonWriter& w, std::string_view key,
                         const std::optional<std::string>& value) {
  WriteString(w, key);
  if (value) {
    WriteString(w, *value);
  } else {
    w.Null();
  }
}

// start --batch: every run of the file in one StartRuns call (one
// transaction: all are started or, on an error, none), then their ids in
// file order. A run refused alone (its key belongs to another workflow)
// does not stop the others: it is named on stderr, and the exit code is
// that of the worst refusal (2 for a key).
ExitCode StartBatch(Session& session, Console& console, const StartOptions& o, StartPlan plan,
                    std::string_view context) {
  std::vector<BatchRun>& runs = *plan.batch;
  const std::string source = BatchSourceName(*o.batch);
  std::vector<StartRequest> requests;
  requests.reserve(runs.size());
  for (auto& run : runs) {
    StartRequest request;
    request.workflow = o.workflow;
    request.input = std::move(run.input);
    request.idempotency_key = run.idempotency_key;
    request.timeout = plan.deadline;
    requests.push_back(std::move(request));
  }
  auto started = session.store().StartRuns(requests);
  if (!started.ok()) return session.ReportStoreError(started.status().WithContext(context));
  requests.clear();

  std::vector<BatchStartOutcome> outcomes;
  outcomes.reserve(runs.size());
  ExitCode code = ExitCode::kSuccess;
  std::size_t refused = 0;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const Result<StartResult>& result = (*started)[i];
    BatchStartOutcome outcome;
    outcome.line = runs[i].line;
    outcome.idempotency_key = runs[i].idempotency_key;
    const std::string where = fmt::format("{}: line {}", source, runs[i].line);
    if (!result.ok()) {
      ++refused;
      outcome.error = result.status().message();
      code = std::max(code, session.ReportStoreError(result.status().WithContext(
                                fmt::format("{}: {}", context, where))));
    } else {
      outcome.run_id = result->run_id;
      outcome.created = result->created;
      if (!result->created) {
        console.err << "kagzictl: "
                    << EscapeText(fmt::format("{}: run {} already exists for idempotency key "
                                              "\"{}\"; not starting another",
                                              where, result->run_id,
                                              runs[i].idempotency_key.value_or("")))
                    << "\n";
      }
    }
    outcomes.push_back(std::move(outcome));
  }
  if (runs.empty()) {
    console.err << "kagzictl: "
                << EscapeText(fmt::format("{} holds no runs (every line is blank): nothing started",
                                          source))
                << "\n";
  }
  if (refused > 0) {
    ReportError(console, code,
                fmt::format("{}: {} of the {} runs of {} refused (named above); the other {} {} "
                            "started",
                            context, refused, runs.size(), source, runs.size() - refused,
                            runs.size() - refused == 1 ? "was" : "were"));
  }
  console.out << (o.json ? RenderBatchStartJson(o.workflow, outcomes)
                         : RenderBatchStartIds(outcomes));
  return code;
}

}  // namespace

ExitCode StartCommand(const GlobalOptions& global, const StartOptions& o, Console& console) {
  Session session(global, console);
  if (auto failed = session.LoadConfig()) return *failed;
  const std::string context = fmt::format("cannot start workflow \"{}\"", o.workflow);
  auto checked = CheckStart(o, session.config(), ReadInputFile);
  if (!checked.ok()) return ReportError(console, ExitCode::kUsage, checked.status().message());
  StartPlan plan = std::move(checked).value();

  // Everything the user typed is valid: now the database.
  PgStore& store = session.store();
  if (!o.allow_unknown) {
    auto known = store.WorkflowKnown(o.workflow);
    if (!known.ok()) return session.ReportStoreError(known.status().WithContext(context));
    if (!*known) {
      return ReportError(
          console, ExitCode::kUsage,
          fmt::format("workflow \"{}\" is not known: no kagzid has ever loaded it (is its "
                      "plugin installed in plugin_dir? use --allow-unknown to start it "
                      "anyway)",
                      o.workflow));
    }
  }
  if (plan.batch) return StartBatch(session, console, o, std::move(plan), context);
  StartRequest request;
  request.workflow = o.workflow;
  request.input = std::move(plan.input);
  request.idempotency_key = o.idempotency_key;
  request.timeout = plan.deadline;
  auto started = store.StartRun(request);
  if (!started.ok()) return session.ReportStoreError(started.status().WithContext(context));
  if (!started->created) {
    console.err << "kagzictl: "
                << EscapeText(fmt::format("run {} already exists for idempotency key \"{}\"; "
                                          "not starting another",
                                          started->run_id, o.idempotency_key.value_or("")))
                << "\n";
  }
  if (!o.wait) {
    if (o.json) {
      rapidjson::StringBuffer buffer;
      JsonWriter w(buffer);
      w.StartObject();
      WriteMember(w, "id", started->run_id);
      WriteMember(w, "workflow", o.workflow);
      WriteString(w, "created");
      w.Bool(started->created);
      WriteString(w, "idempotency_key");
      if (o.idempotency_key) {
        WriteString(w, *o.idempotency_key);
      } else {
        w.Null();
      }
      w.EndObject();
      console.out << FinishJson(buffer);
    } else {
      console.out << started->run_id << "\n";
    }
    return ExitCode::kSuccess;
  }
  if (!o.json) console.out << started->run_id << "\n" << std::flush;
  return WaitAndReport(session, console, started->run_id, plan.wait_limit, o.json,
                       started->created);
}

ExitCode StatusCommand(const GlobalOptions& global, const RunOptions& o, Console& console) {
  Session session(global, console);
  if (auto failed = session.LoadConfig()) return *failed;
  if (Status st = CheckRunId(o.run_id); !st.ok()) {
    return ReportError(console, ExitCode::kUsage, st.message());
  }
  auto run = session.store().GetRun(o.run_id);
  if (!run.ok()) return session.ReportStoreError(run.status());
  auto blocked = BlockedReason(session.store(), *run);
  if (!blocked.ok()) return session.ReportStoreError(blocked.status());
  if (o.json) {
    rapidjson::StringBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    WriteRunMembers(w, *run);
    WriteOptionalString(w, "blocked_reason", *blocked);
    w.EndObject();
    console.out << FinishJson(buffer);
  } else {
    console.out << RenderRunFields(*run, *blocked);
  }
  return ExitCode::kSuccess;
}

ExitCode ShowCommand(const GlobalOptions& global, const RunOptions& o, Console& console) {
  Session session(global, console);
  if (auto failed = session.LoadConfig()) return *failed;
  if (Status st = CheckRunId(o.run_id); !st.ok()) {
    return ReportError(console, ExitCode::kUsage, st.message());
  }
  auto run = session.store().GetRun(o.run_id);
  if (!run.ok()) return session.ReportStoreError(run.status());
  auto steps = session.store().GetSteps(o.run_id);
  if (!steps.ok()) return session.ReportStoreError(steps.status());
  ListFilter of_parent;
  of_parent.parent_run_id = o.run_id;
  of_parent.limit = kMaxListLimit;
  auto children = session.store().ListRuns(of_parent);
  if (!children.ok()) return session.ReportStoreError(children.status());
  std::reverse(children->begin(), children->end());  // oldest first
  auto blocked = BlockedReason(session.store(), *run);
  if (!blocked.ok()) return session.ReportStoreError(blocked.status());
  if (o.json) {
    rapidjson::StringBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    WriteRunMembers(w, *run);
    WriteOptionalString(w, "blocked_reason", *blocked);
    WriteString(w, "children");
    w.StartArray();
    for (const auto& child : *children) WriteString(w, child.id);
    w.EndArray();
    WriteString(w, "steps");
    w.StartArray();
    for (const auto& step : *steps) WriteStep(w, step);
    w.EndArray();
    w.EndObject();
    console.out << FinishJson(buffer);
    return ExitCode::kSuccess;
  }
  console.out << RenderRunFields(*run, *blocked) << "\n";
  if (steps->empty()) {
    console.out << "no steps recorded\n";
  } else {
    console.out << RenderStepsTable(*steps);
  }
  if (!children->empty()) console.out << "\n" << RenderChildrenTable(*children);
  return ExitCode::kSuccess;
}

ExitCode ListCommand(const GlobalOptions& global, const ListOptions& o, Console& console) {
  Session session(global, console);
  if (auto failed = session.LoadConfig()) return *failed;
  auto checked = CheckList(o);
  if (!checked.ok()) return ReportError(console, ExitCode::kUsage, checked.status().message());
  ListFilter filter = checked->filter;
  std::optional<TimeSpec> since = checked->since;
  std::optional<TimeSpec> until = checked->until;
  if ((since && since->relative) || (until && until->relative)) {
    auto now = session.store().Now();  // "ago" is on the database clock
    if (!now.ok()) return session.ReportStoreError(now.status());
    if (since && since->relative) since = TimeSpec{false, *now - since->value};
    if (until && until->relative) until = TimeSpec{false, *now - until->value};
  }
  if (since) filter.created_after = since->value;
  if (until) filter.created_before = until->value;
  auto runs = session.store().ListRuns(filter);
  if (!runs.ok()) return session.ReportStoreError(runs.status());
  if (o.json) {
    rapidjson::StringBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    WriteString(w, "runs");
    w.StartArray();
    for (const auto& run : *runs) {
      w.StartObject();
      WriteRunMembers(w, run);
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    console.out << FinishJson(buffer);
  } else if (runs->empty()) {
    console.out << "no runs\n";
  } else {
    console.out << RenderRunsTable(*runs);
  }
  return ExitCode::kSuccess;
}

ExitCode ResultCommand(const GlobalOptions& global, const RunOptions& o, Console& console) {
  Session session(global, console);
  if (auto failed = session.LoadConfig()) return *failed;
  if (Status st = CheckRunId(o.run_id); !st.ok()) {
    return ReportError(console, ExitCode::kUsage, st.message());
  }
  auto run = session.store().GetRun(o.run_id);
  if (!run.ok()) return session.ReportStoreError(run.status());
  if (o.json) {
    rapidjson::StringBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    WriteMember(w, "id", run->id);
    WriteMember(w, "workflow", run->workflow);
    WriteMember(w, "status", RunStatusName(run->status));
    WriteJsonMember(w, "output", run->output);
    WriteString(w, "error");
    if (run->error) {
      WriteString(w, *run->error);
    } else {
      w.Null();
    }
    w.EndObject();
    console.out << FinishJson(buffer);
  }
  switch (run->status) {
    case RunStatus::kCompleted:
      if (!o.json) console.out << PrintableJson(run->output) << "\n";
      return ExitCode::kSuccess;
    case RunStatus::kFailed:
    case RunStatus::kCancelled:
      return ReportError(console, ExitCode::kRunFailed, RunFailedMessage(*run));
    case RunStatus::kPending:
    case RunStatus::kRunning:
    case RunStatus::kSleeping:
      break;
  }
  return ReportError(console, ExitCode::kNotFinished, StillRunningMessage(*run));
}

ExitCode WaitCommand(const GlobalOptions& global, const WaitOptions& o, Console& console) {
  Session session(global, console);
  if (auto failed = session.LoadConfig()) return *failed;
  auto timeout = CheckWait(o);
  if (!timeout.ok()) return ReportError(console, ExitCode::kUsage, timeout.status().message());
  return WaitAndReport(session, console, o.run_id, *timeout, o.json, std::nullopt);
}

ExitCode CancelCommand(const GlobalOptions& global, const CancelOptions& o, Console& console) {
  Session session(global, console);
  if (auto failed = session.LoadConfig()) return *failed;
  auto checked = CheckCancel(o);
  if (!checked.ok()) return ReportError(console, ExitCode::kUsage, checked.status().message());
  const std::string reason = std::move(checked).value();
  const std::string context = fmt::format("cannot cancel run {}", o.run_id);
  auto affected = session.store().RequestCancel(o.run_id, reason);
  if (!affected.ok()) {
    // Unknown and already finished runs: the message names the run (and
    // its status) already.
    if (affected.status().IsNotFound() || affected.status().IsInvalidArgument()) {
      return ReportError(console, ExitCode::kUsage, affected.status().message());
    }
    return session.ReportStoreError(affected.status().WithContext(context));
  }
  const int children = std::max(0, *affected - 1);
  auto run = session.store().GetRun(o.run_id);
  if (!run.ok()) return session.ReportStoreError(run.status());
  const bool now = run->status == RunStatus::kCancelled;
  const bool pending = !IsTerminal(run->status) && run->cancel_requested;
  if (o.json) {
    rapidjson::StringBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    WriteMember(w, "id", run->id);
    WriteMember(w, "status", RunStatusName(run->status));
    WriteString(w, "cancelled");
    w.Bool(now);
    WriteString(w, "cancel_pending");
    w.Bool(pending);
    WriteString(w, "children");
    w.Int(children);
    WriteMember(w, "reason", reason);
    w.EndObject();
    console.out << FinishJson(buffer);
    return ExitCode::kSuccess;
  }
  std::string message;
  if (now) {
    message = fmt::format("run {} cancelled", run->id);
  } else if (pending) {
    message = fmt::format(
        "run {} is {}: cancel requested; it stops at its next step boundary (its "
        "workflow may run cleanup steps first)",
        run->id, RunStatusName(run->status));
  } else {
    message = fmt::format("run {} finished as {} before the cancel took effect", run->id,
                          RunStatusName(run->status));
  }
  if (children > 0) {
    message += fmt::format(
        "\n{} descendant run{} cancelled too (pending and parked ones at once, "
        "running ones at their next step boundary)",
        children, children == 1 ? "" : "s");
  }
  console.out << EscapeText(message, Newlines::kKeep) << "\n";
  return ExitCode::kSuccess;
}

ExitCode SignalCommand(const GlobalOptions& global, const SignalOptions& o, Console& console) {
  Session session(global, console);
  if (auto failed = session.LoadConfig()) return *failed;
  auto checked = CheckSignal(o, session.config());
  if (!checked.ok()) return ReportError(console, ExitCode::kUsage, checked.status().message());
  const std::string context = fmt::format("cannot signal run {}", o.run_id);
  const std::string data = std::move(checked).value();
  Status sent = session.store().SendEvent(o.run_id, o.name, data);
  if (!sent.ok()) {
    if (sent.IsNotFound() || sent.IsInvalidArgument()) {
      return ReportError(console, ExitCode::kUsage, sent.message());
    }
    return session.ReportStoreError(sent.WithContext(context));
  }
  if (o.json) {
    rapidjson::StringBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    WriteMember(w, "id", o.run_id);
    WriteMember(w, "event", o.name);
    WriteJsonMember(w, "data", data);
    WriteString(w, "sent");
    w.Bool(true);
    w.EndObject();
    console.out << FinishJson(buffer);
  } else {
    console.out << EscapeText(fmt::format("event \"{}\" sent to run {}", o.name, o.run_id)) << "\n";
  }
  return ExitCode::kSuccess;
}

ExitCode RetryCommand(const GlobalOptions& global, const RunOptions& o, Console& console) {
  Session session(global, console);
  if (auto failed = session.LoadConfig()) return *failed;
  if (Status st = CheckRunId(o.run_id); !st.ok()) {
    return ReportError(console, ExitCode::kUsage, st.message());
  }
  Status retried = session.store().RetryRun(o.run_id);
  if (!retried.ok()) {
    if (retried.IsNotFound() || retried.IsInvalidArgument()) {
      return ReportError(console, ExitCode::kUsage, retried.message());
    }
    return session.ReportStoreError(
        retried.WithContext(fmt::format("cannot retry run {}", o.run_id)));
  }
  auto run = session.store().GetRun(o.run_id);
  if (!run.ok()) return session.ReportStoreError(run.status());
  auto blocked = BlockedReason(session.store(), *run);
  if (!blocked.ok()) return session.ReportStoreError(blocked.status());
  if (o.json) {
    rapidjson::StringBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    WriteRunMembers(w, *run);
    WriteOptionalString(w, "blocked_reason", *blocked);
    w.EndObject();
    console.out << FinishJson(buffer);
  } else {
    console.out << EscapeText(fmt::format("run {} is {} again: it resumes from its failed step "
                                          "(recorded steps are not run again)",
                                          run->id, RunStatusName(run->status)))
                << "\n";
  }
  if (*blocked) {
    console.err << "kagzictl: " << EscapeText(fmt::format("note: {}", **blocked)) << "\n";
  }
  return ExitCode::kSuccess;
}

ExitCode WorkflowsCommand(const GlobalOptions& global, const TableOptions& o, Console& console) {
  Session session(global, console);
  if (auto failed = session.LoadConfig()) return *failed;
  auto workflows = session.store().ListWorkflows();
  if (!workflows.ok()) return session.ReportStoreError(workflows.status());
  if (o.json) {
    rapidjson::StringBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    WriteString(w, "workflows");
    w.StartArray();
    for (const auto& wf : *workflows) WriteWorkflow(w, wf);
    w.EndArray();
    w.EndObject();
    console.out << FinishJson(buffer);
  } else if (workflows->empty()) {
    console.out << "no live kagzid has loaded a workflow, and no open run needs one\n";
  } else {
    console.out << RenderWorkflowsTable(*workflows);
  }
  return ExitCode::kSuccess;
}

ExitCode WorkersCommand(const GlobalOptions& global, const TableOptions& o, Console& console) {
  Session session(global, console);
  if (auto failed = session.LoadConfig()) return *failed;
  auto daemons = session.store().ListDaemons();
  if (!daemons.ok()) return session.ReportStoreError(daemons.status());
  auto now = session.store().Now();
  if (!now.ok()) return session.ReportStoreError(now.status());
  if (o.json) {
    rapidjson::StringBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    WriteTimeMember(w, "now", *now);
    WriteString(w, "workers");
    w.StartArray();
    for (const auto& d : *daemons) WriteDaemon(w, d, *now);
    w.EndArray();
    w.EndObject();
    console.out << FinishJson(buffer);
  } else if (daemons->empty()) {
    console.out << "no kagzid is registered\n";
  } else {
    console.out << RenderDaemonsTable(*daemons, *now);
  }
  return ExitCode::kSuccess;
}

}  // namespace kagzi::ctl
