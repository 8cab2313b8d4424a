// kagzictl's command line (see cli.h): declares every subcommand and
// option with CLI11 and documents the exit codes in every --help. Usage
// errors exit 2 like every other bad input (CLI11's own exit codes are not
// used).
#include "cli.h"

#include <charconv>
#include <ostream>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "checks.h"
#include "render.h"

namespace kagzi::ctl {

namespace {

constexpr char kConfigHelp[] =
    "Configuration: kagzictl reads the same file and variables as kagzid (it uses only\n"
    "database_url): -c PATH, else $KAGZI_CONFIG, else /etc/kagzi/kagzid.toml if it\n"
    "exists; then $KAGZI_DATABASE_URL; then --database-url. Passwords in URLs are\n"
    "never printed.\n"
    "\n";

constexpr char kRunJsonHelp[] =
    "With --json a run is printed as one object: id, workflow, version, status,\n"
    "input, output (JSON values), error, attempts, created_at, started_at,\n"
    "finished_at, deadline_at (RFC 3339, UTC), parent_run_id, idempotency_key,\n"
    "cancel_requested (true/false), cancel_reason; absent values are null.\n"
    "\n";

constexpr char kStatusJsonHelp[] =
    "A run that is not finished but that no live kagzid can run (none has its\n"
    "workflow version loaded; for a run not yet pinned to a version, none has the\n"
    "workflow) is reported as \"waiting: no live kagzid has ...\".\n"
    "With --json a run is printed as one object: id, workflow, version, status,\n"
    "input, output (JSON values), error, attempts, created_at, started_at,\n"
    "finished_at, deadline_at (RFC 3339, UTC), parent_run_id, idempotency_key,\n"
    "cancel_requested (true/false), cancel_reason, blocked_reason (that waiting\n"
    "reason, or null); absent values are null.\n"
    "\n";

std::string Footer(std::string_view extra = "") { return std::string(extra) + kExitCodesHelp; }

void AddJsonFlag(CLI::App* command, bool* json) {
  command->add_flag("--json", *json, "Print one JSON document on stdout (for scripts)");
}

// Adds a std::optional<std::string> option: CLI11 2.1 fills a string and we
// record whether it was given.
struct OptionalString {
  std::string value;
  CLI::Option* option = nullptr;
  std::optional<std::string> get() const {
    if (option == nullptr || option->count() == 0) return std::nullopt;
    return value;
  }
};

OptionalString* AddOptional(CLI::App* command, OptionalString* target, const std::string& name,
                            const std::string& help) {
  target->option = command->add_option(name, target->value, help);
  return target;
}

}  // namespace

std::optional<int> ParseCommandLine(int argc, const char* const* argv, CommandLine* line,
                                    std::ostream& out, std::ostream& err) {
  CLI::App app{
      "kagzictl: start Kagzi workflow runs and inspect runs, workflows and daemons.\n"
      "It talks to PostgreSQL directly; no kagzid needs to be running to start a run.",
      "kagzictl"};
  app.set_version_flag("--version", std::string("kagzictl ") + KAGZI_VERSION,
                       "Print the version and exit");
  app.require_subcommand(1);
  app.fallthrough();
  app.footer(Footer(kConfigHelp));

  OptionalString config_file, database_url;
  AddOptional(&app, &config_file, "-c,--config", "Config file (TOML), as for kagzid")
      ->option->type_name("PATH");
  AddOptional(&app, &database_url, "--database-url",
              "PostgreSQL URL or conninfo (overrides the config file and KAGZI_DATABASE_URL)")
      ->option->type_name("URL");

  // start
  StartOptions start;
  OptionalString start_input, start_input_file, start_id, start_timeout, start_wait_timeout,
      start_batch, start_id_prefix;
  CLI::App* start_cmd = app.add_subcommand(
      "start",
      "Start a run of WORKFLOW and print its id (with --wait: then its output JSON).\n"
      "The input is validated before the database is contacted.");
  start_cmd->footer(Footer(
      "--id KEY is an idempotency key: starting again with the same key prints the\n"
      "same run id (exit 0; a note on stderr says it already existed). A key used by\n"
      "another workflow is refused (exit 2). With --json (no --wait): {id, workflow,\n"
      "created, idempotency_key}; with --wait --json: the run object plus created.\n"
      "\n"
      "--timeout SECONDS gives the run a deadline: a run not finished by then fails\n"
      "(\"deadline exceeded\"). With --wait it also bounds the wait: kagzictl waits\n"
      "until the deadline plus 2 s (for kagzid to record the timeout), then exits 4\n"
      "if the run is still not finished. --wait-timeout SECONDS bounds the wait\n"
      "alone (and takes precedence); without either, --wait waits forever.\n"
      "SECONDS: a number (\"30\", \"1.5\") or a duration (\"500ms\", \"2m\").\n"
      "\n" +
      fmt::format("--batch PATH (- for stdin) starts many runs in one transaction: each line\n"
                  "that is not blank is one run's input JSON (JSON Lines). Every line is\n"
                  "checked before the database is contacted; a bad line is named (\"line 7:\")\n"
                  "and nothing is started. At most {} runs and {} MiB per call. The ids are\n"
                  "printed one per line, in file order; a file with no runs starts nothing\n"
                  "(exit 0). --id-prefix P gives line N the idempotency key P-N, so that\n"
                  "starting the same file again (after an error, or if unsure whether it\n"
                  "ran) starts nothing new and prints the same ids. A key that belongs to\n"
                  "another workflow refuses its line alone: the other runs are started, each\n"
                  "refused line is named on stderr, and the exit code is 2. With --json:\n"
                  "{{workflow, runs: [{{line, id, created, idempotency_key, error}}]}}.\n"
                  "\n",
                  kMaxBatchRuns, kMaxBatchBytes >> 20)));
  start_cmd->add_option("workflow", start.workflow, "Workflow name")->required();
  auto* input_opt =
      AddOptional(start_cmd, &start_input, "--input", "Run input as JSON text (default {})")
          ->option;
  input_opt->type_name("JSON");
  auto* input_file_opt = AddOptional(start_cmd, &start_input_file, "--input-file",
                                     "Read the run input JSON from PATH (- for stdin)")
                             ->option;
  input_file_opt->type_name("PATH");
  input_opt->excludes(input_file_opt);
  auto* id_opt =
      AddOptional(start_cmd, &start_id, "--id", "Idempotency key")->option->type_name("KEY");
  auto* batch_opt =
      AddOptional(start_cmd, &start_batch, "--batch",
                  "Start one run per line of PATH (JSON Lines; - for stdin) in one transaction")
          ->option;
  batch_opt->type_name("PATH");
  AddOptional(start_cmd, &start_id_prefix, "--id-prefix",
              "With --batch: line N's run gets the idempotency key P-N")
      ->option->type_name("P")
      ->needs(batch_opt);
  start_cmd->add_flag("--allow-unknown", start.allow_unknown,
                      "Start even if no kagzid has ever loaded WORKFLOW");
  auto* wait_flag =
      start_cmd->add_flag("--wait", start.wait, "Wait for the run to finish and print its output");
  batch_opt->excludes(input_opt)->excludes(input_file_opt)->excludes(id_opt)->excludes(wait_flag);
  AddOptional(start_cmd, &start_timeout, "--timeout",
              "The run's deadline, SECONDS from now; with --wait, also stop waiting 2 s after "
              "it (exit 4)")
      ->option->type_name("SECONDS");
  AddOptional(start_cmd, &start_wait_timeout, "--wait-timeout",
              "With --wait: give up waiting after SECONDS (exit 4); the run is not affected")
      ->option->type_name("SECONDS")
      ->needs(wait_flag);
  AddJsonFlag(start_cmd, &start.json);

  // status, show, result
  RunOptions status, show, result;
  CLI::App* status_cmd = app.add_subcommand(
      "status", "Print a run's status and times, and why it waits if no live kagzid can run it");
  status_cmd->footer(Footer(kStatusJsonHelp));
  status_cmd->add_option("run", status.run_id, "Run id (UUID)")->required()->type_name("RUN");
  AddJsonFlag(status_cmd, &status.json);

  CLI::App* show_cmd = app.add_subcommand(
      "show",
      "Print a run's timeline: the run, each entry of its journal (kind, status, attempts,\n"
      "times, duration, wake or wait deadline, error, event, child run) and its child runs");
  show_cmd->footer(
      Footer("Journal statuses: COMPLETED, FAILED, RETRYING (between attempts: DETAIL shows\n"
             "the next attempt's time and the last error), WAITING (an event wait or child\n"
             "call not yet satisfied). Error kinds: retryable, permanent, timeout, cancelled.\n"
             "\n"
             "With --json: the run object (see status --help, including blocked_reason) plus\n"
             "children: [child run ids, oldest first] and steps: [{step_id, seq, kind, status,\n"
             "output, error, error_kind, attempts, wake_at, started_at, finished_at,\n"
             "event_name, child_run_id}].\n"
             "\n"));
  show_cmd->add_option("run", show.run_id, "Run id (UUID)")->required()->type_name("RUN");
  AddJsonFlag(show_cmd, &show.json);

  CLI::App* result_cmd = app.add_subcommand(
      "result",
      "Print the output JSON of a COMPLETED run (FAILED/CANCELLED: exit 1; unfinished: exit 4)");
  result_cmd->footer(Footer(
      "With --json: {id, workflow, status, output, error}, printed whatever the status.\n\n"));
  result_cmd->add_option("run", result.run_id, "Run id (UUID)")->required()->type_name("RUN");
  AddJsonFlag(result_cmd, &result.json);

  // wait
  WaitOptions wait;
  OptionalString wait_timeout;
  CLI::App* wait_cmd = app.add_subcommand(
      "wait", "Wait for a run to finish and print its output JSON (like start --wait)");
  wait_cmd->footer(Footer(kRunJsonHelp));
  wait_cmd->add_option("run", wait.run_id, "Run id (UUID)")->required()->type_name("RUN");
  AddOptional(wait_cmd, &wait_timeout, "--timeout",
              "Give up after SECONDS (exit 4); default: wait forever")
      ->option->type_name("SECONDS");
  AddJsonFlag(wait_cmd, &wait.json);

  // list
  ListOptions list;
  OptionalString list_status, list_workflow, list_version, list_since, list_until, list_parent;
  CLI::App* list_cmd = app.add_subcommand("list", "List runs, newest first");
  list_cmd->footer(
      Footer("TIME is an RFC 3339 time (2026-11-26T10:00:00Z, 2026-11-26T11:00:00+01:00,\n"
             "2026-11-26) or a duration ago on the database clock (30s, 10m, 2h, 1d, 1w).\n"
             "Filters combine (AND). With --json: {runs: [run objects, see status --help]}.\n"
             "\n"));
  AddOptional(list_cmd, &list_status, "--status",
              "Only runs in this status: PENDING, RUNNING, SLEEPING, COMPLETED, FAILED, "
              "CANCELLED")
      ->option->type_name("S");
  AddOptional(list_cmd, &list_workflow, "--workflow", "Only runs of this workflow")
      ->option->type_name("W");
  AddOptional(list_cmd, &list_version, "--version",
              "Only runs pinned to this workflow version (a run is pinned at its first claim)")
      ->option->type_name("N");
  AddOptional(list_cmd, &list_since, "--since", "Only runs created at or after TIME")
      ->option->type_name("TIME");
  AddOptional(list_cmd, &list_until, "--until", "Only runs created before TIME")
      ->option->type_name("TIME");
  AddOptional(list_cmd, &list_parent, "--parent", "Only the child runs of run RUN")
      ->option->type_name("RUN");
  list_cmd->add_option("--limit", list.limit, "At most N runs (1..10000)")
      ->type_name("N")
      ->capture_default_str();
  AddJsonFlag(list_cmd, &list.json);

  // cancel
  CancelOptions cancel;
  OptionalString cancel_reason;
  CLI::App* cancel_cmd = app.add_subcommand(
      "cancel",
      "Cancel a run and its child runs: a pending or parked run at once, a running one at\n"
      "its next step boundary");
  cancel_cmd->footer(
      Footer("A run that already finished (COMPLETED, FAILED, CANCELLED) is refused with exit 2.\n"
             "With --json: {id, status, cancelled (true: CANCELLED now), cancel_pending (true:\n"
             "running, stops at its next step boundary), children (descendant runs affected),\n"
             "reason}.\n\n"));
  cancel_cmd->add_option("run", cancel.run_id, "Run id (UUID)")->required()->type_name("RUN");
  AddOptional(cancel_cmd, &cancel_reason, "--reason",
              "Why (recorded as the cancelled runs' error); default \"cancelled with kagzictl "
              "cancel\"")
      ->option->type_name("TEXT");
  AddJsonFlag(cancel_cmd, &cancel.json);

  // signal
  SignalOptions signal_opts;
  OptionalString signal_data;
  CLI::App* signal_cmd = app.add_subcommand(
      "signal",
      "Send event NAME to a run: a workflow waiting for it resumes at once; one sent before\n"
      "the workflow waits is kept until it does (each event is consumed once)");
  signal_cmd->footer(
      Footer("The data is validated before the database is contacted. A run that already\n"
             "finished is refused with exit 2. With --json: {id, event, data, sent}.\n\n"));
  signal_cmd->add_option("run", signal_opts.run_id, "Run id (UUID)")->required()->type_name("RUN");
  signal_cmd->add_option("name", signal_opts.name, "Event name")->required()->type_name("NAME");
  AddOptional(signal_cmd, &signal_data, "--data", "The event's payload as JSON text (default null)")
      ->option->type_name("JSON");
  AddJsonFlag(signal_cmd, &signal_opts.json);

  // retry
  RunOptions retry;
  CLI::App* retry_cmd = app.add_subcommand(
      "retry",
      "Resume a FAILED run from the call that failed it: that call's failed steps run again,\n"
      "every other journal entry stays recorded");
  retry_cmd->footer(
      Footer("The run becomes PENDING and stays on its workflow version; a deadline that has\n"
             "passed is cleared. Any other status is refused with exit 2. With --json: the run\n"
             "object (see status --help, including blocked_reason).\n\n"));
  retry_cmd->add_option("run", retry.run_id, "Run id (UUID)")->required()->type_name("RUN");
  AddJsonFlag(retry_cmd, &retry.json);

  // workflows, workers
  TableOptions workflows, workers;
  CLI::App* workflows_cmd = app.add_subcommand(
      "workflows",
      "List each workflow version with its live daemons and open runs, including versions\n"
      "that open runs need but no live daemon has (DAEMONS 0)");
  workflows_cmd->footer(
      Footer("VERSION \"unpinned\" counts open runs not pinned to a version yet (no daemon\n"
             "has claimed them); its DAEMONS are the live ones with any version of the\n"
             "workflow. With --json: {workflows: [{workflow, version (null: unpinned),\n"
             "daemons: [ids], open_runs, plugin_path (null: no live daemon has it)}]}.\n\n"));
  AddJsonFlag(workflows_cmd, &workflows.json);

  CLI::App* workers_cmd =
      app.add_subcommand("workers", "List live and recently dead daemons and their heartbeats");
  workers_cmd->footer(Footer(
      "Each kagzid runs worker processes (its supervisor restarts one that crashes): one line\n"
      "per worker, with its supervisor, worker index and restart count.\n"
      "With --json: {now, workers: [{id, hostname, pid, version, concurrency, lease_ttl_ms,\n"
      "running, started_at, heartbeat_at, heartbeat_age_ms, alive, supervisor_id,\n"
      "worker_index, restarts}]}.\n\n"));
  AddJsonFlag(workers_cmd, &workers.json);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {
      return app.exit(e, out, err);  // --help, --version
    }
    err << "kagzictl: " << EscapeText(e.what(), Newlines::kKeep)
        << "\nRun 'kagzictl --help' for usage.\n";
    return static_cast<int>(ExitCode::kUsage);
  }

  line->global = GlobalOptions{config_file.get(), database_url.get()};
  if (app.got_subcommand(start_cmd)) {
    line->command = Command::kStart;
    start.input = start_input.get();
    start.input_file = start_input_file.get();
    start.idempotency_key = start_id.get();
    start.timeout = start_timeout.get();
    start.wait_timeout = start_wait_timeout.get();
    start.batch = start_batch.get();
    start.id_prefix = start_id_prefix.get();
    line->start = std::move(start);
  } else if (app.got_subcommand(status_cmd)) {
    line->command = Command::kStatus;
    line->run = std::move(status);
  } else if (app.got_subcommand(show_cmd)) {
    line->command = Command::kShow;
    line->run = std::move(show);
  } else if (app.got_subcommand(result_cmd)) {
    line->command = Command::kResult;
    line->run = std::move(result);
  } else if (app.got_subcommand(wait_cmd)) {
    line->command = Command::kWait;
    wait.timeout = wait_timeout.get();
    line->wait = std::move(wait);
  } else if (app.got_subcommand(list_cmd)) {
    line->command = Command::kList;
    list.status = list_status.get();
    list.workflow = list_workflow.get();
    if (auto v = list_version.get()) {
      int version = 0;
      auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), version);
      if (v->empty() || ec != std::errc() || end != v->data() + v->size()) {
        err << "kagzictl: --version \"" << EscapeText(*v)
            << "\" is not a workflow version (a whole number, 1 or more)\n";
        return static_cast<int>(ExitCode::kUsage);
      }
      list.version = version;
    }
    list.since = list_since.get();
    list.until = list_until.get();
    list.parent = list_parent.get();
    line->list = std::move(list);
  } else if (app.got_subcommand(cancel_cmd)) {
    line->command = Command::kCancel;
    cancel.reason = cancel_reason.get();
    line->cancel = std::move(cancel);
  } else if (app.got_subcommand(signal_cmd)) {
    line->command = Command::kSignal;
    signal_opts.data = signal_data.get();
    line->signal = std::move(signal_opts);
  } else if (app.got_subcommand(retry_cmd)) {
    line->command = Command::kRetry;
    line->run = std::move(retry);
  } else if (app.got_subcommand(workflows_cmd)) {
    line->command = Command::kWorkflows;
    line->table = workflows;
  } else if (app.got_subcommand(workers_cmd)) {
    line->command = Command::kWorkers;
    line->table = workers;
  } else {
    // require_subcommand(1) makes this unreachable.
    err << "kagzictl: a command is required\nRun 'kagzictl --help' for usage.\n";
    return static_cast<int>(ExitCode::kUsage);
  }
  return std::nullopt;
}

}  // namespace kagzi::ctl
