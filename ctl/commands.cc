// kagzictl command implementations. Each command owns, for its lifetime, one
// PgStore (a pool of one connection, plus the dedicated LISTEN connection
// WaitForRun opens). Store errors are mapped to exit codes in one place,
// Session::ReportStoreError, which also recognises a database without the Kagzi schema
// and keeps passwords out of every message (RedactDatabaseUrl).
#include "commands.h"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>

#include <fmt/format.h>

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
    "     another workflow, a bad config file; nothing was changed\n"
    "  3  cannot reach or use the database: connection failed, no Kagzi schema\n"
    "     (start kagzid once to create it), permission denied\n"
    "  4  the run has not finished: a --timeout ran out (start --wait, wait), or\n"
    "     result of a run that is still PENDING, RUNNING or SLEEPING\n"
    "  5  internal error: a bug, or an unexpected database error\n";

namespace {

using std::chrono::milliseconds;

constexpr int kMaxListLimit = 10'000;

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

// "30", "1.5" (seconds) or a duration with a unit ("500ms", "2m").
Result<milliseconds> ParseTimeout(std::string_view text) {
  double seconds = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (!text.empty() && ec == std::errc() && end == text.data() + text.size()) {
    if (!std::isfinite(seconds) || seconds < 0 || seconds > 1e9) {
      return Status::InvalidArgument("--timeout \"{}\" must be between 0 and 1e9 seconds", text);
    }
    return milliseconds(std::llround(seconds * 1000));
  }
  auto d = ParseDuration(text);
  if (!d.ok()) {
    return Status::InvalidArgument(
        "--timeout \"{}\" is not a number of seconds or a duration like 500ms, 30s, 5m", text);
  }
  return *d;
}

Result<std::string> ReadInputFile(const std::string& path) {
  if (path == "-") {
    std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    if (std::cin.bad()) return Status::InvalidArgument("cannot read the input from stdin");
    return text;
  }
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return Status::InvalidArgument("cannot read input file \"{}\": it is a directory", path);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::InvalidArgument("cannot read input file \"{}\": {}", path, std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::InvalidArgument("cannot read input file \"{}\"", path);
  return text.str();
}

Status CheckRunId(std::string_view id) {
  if (IsUuid(id)) return Status::Ok();
  return Status::InvalidArgument(
      "\"{}\" is not a run id: runs are named by UUIDs, as printed by kagzictl start", id);
}

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
  return ReportError(console, ExitCode::kNotFinished,
                     fmt::format("timed out after {} waiting for run {}: it is still {}",
                                 FormatElapsed(timeout.value_or(milliseconds(0)).count() * 1000),
                                 run->id, RunStatusName(run->status)));
}

}  // namespace

ExitCode StartCommand(const GlobalOptions& global, const StartOptions& o, Console& console) {
  Session session(global, console);
  if (auto failed = session.LoadConfig()) return *failed;
  const std::string context = fmt::format("cannot start workflow \"{}\"", o.workflow);
  auto usage = [&](const Status& st) {
    return ReportError(console, ExitCode::kUsage, st.WithContext(context).message());
  };
  if (Status st = ValidateName(o.workflow, "the workflow name"); !st.ok()) {
    return ReportError(console, ExitCode::kUsage, st.message());
  }
  if (o.idempotency_key) {
    if (Status st = ValidateName(*o.idempotency_key, "the idempotency key (--id)"); !st.ok()) {
      return usage(st);
    }
  }
  std::optional<milliseconds> timeout;
  if (o.timeout) {
    auto t = ParseTimeout(*o.timeout);
    if (!t.ok()) return usage(t.status());
    timeout = *t;
  }
  std::string input = "{}";
  std::string what = "input (--input)";
  if (o.input) {
    input = *o.input;
  } else if (o.input_file) {
    auto text = ReadInputFile(*o.input_file);
    if (!text.ok()) return usage(text.status());
    input = std::move(text).value();
    what = fmt::format("input file \"{}\"", *o.input_file);
  }
  if (Status st = ValidateJson(input, what, session.config().max_payload_bytes); !st.ok()) {
    return usage(st);
  }

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
  StartRequest request;
  request.workflow = o.workflow;
  request.input = std::move(input);
  request.idempotency_key = o.idempotency_key;
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
  return WaitAndReport(session, console, started->run_id, timeout, o.json, started->created);
}

ExitCode StatusCommand(const GlobalOptions& global, const RunOptions& o, Console& console) {
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
    WriteRunMembers(w, *run);
    w.EndObject();
    console.out << FinishJson(buffer);
  } else {
    console.out << RenderRunFields(*run);
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
  if (o.json) {
    rapidjson::StringBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    WriteRunMembers(w, *run);
    WriteString(w, "steps");
    w.StartArray();
    for (const auto& step : *steps) WriteStep(w, step);
    w.EndArray();
    w.EndObject();
    console.out << FinishJson(buffer);
    return ExitCode::kSuccess;
  }
  console.out << RenderRunFields(*run) << "\n";
  if (steps->empty()) {
    console.out << "no steps recorded\n";
  } else {
    console.out << RenderStepsTable(*steps);
  }
  return ExitCode::kSuccess;
}

ExitCode ListCommand(const GlobalOptions& global, const ListOptions& o, Console& console) {
  Session session(global, console);
  if (auto failed = session.LoadConfig()) return *failed;
  ListFilter filter;
  if (o.status) {
    filter.status = ParseRunStatus(*o.status);
    if (!filter.status) {
      return ReportError(console, ExitCode::kUsage,
                         fmt::format("--status \"{}\" is not a run status (allowed, in any case: "
                                     "PENDING, RUNNING, SLEEPING, COMPLETED, FAILED, CANCELLED)",
                                     *o.status));
    }
  }
  if (o.workflow) {
    if (Status st = ValidateName(*o.workflow, "--workflow"); !st.ok()) {
      return ReportError(console, ExitCode::kUsage, st.message());
    }
    filter.workflow = o.workflow;
  }
  if (o.limit < 1 || o.limit > kMaxListLimit) {
    return ReportError(console, ExitCode::kUsage,
                       fmt::format("--limit {} is out of range (1..{})", o.limit, kMaxListLimit));
  }
  filter.limit = o.limit;
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
  if (Status st = CheckRunId(o.run_id); !st.ok()) {
    return ReportError(console, ExitCode::kUsage, st.message());
  }
  std::optional<milliseconds> timeout;
  if (o.timeout) {
    auto t = ParseTimeout(*o.timeout);
    if (!t.ok()) return ReportError(console, ExitCode::kUsage, t.status().message());
    timeout = *t;
  }
  return WaitAndReport(session, console, o.run_id, timeout, o.json, std::nullopt);
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
    console.out << "no live kagzid has loaded a workflow\n";
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
