// kagzictl: the command line. Declares every subcommand and option with
// CLI11, documents the exit codes in every --help, and hands the parsed
// options to commands.cc. Usage errors exit 2 like every other bad input
// (CLI11's own exit codes are not used). Single-threaded.
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "commands.h"

namespace {

using kagzi::ctl::ExitCode;

constexpr char kConfigHelp[] =
    "Configuration: kagzictl reads the same file and variables as kagzid (it uses only\n"
    "database_url): -c PATH, else $KAGZI_CONFIG, else /etc/kagzi/kagzid.toml if it\n"
    "exists; then $KAGZI_DATABASE_URL; then --database-url. Passwords in URLs are\n"
    "never printed.\n"
    "\n";

constexpr char kRunJsonHelp[] =
    "With --json a run is printed as one object: id, workflow, version, status,\n"
    "input, output (JSON values), error, attempts, created_at, started_at,\n"
    "finished_at (RFC 3339, UTC), parent_run_id, idempotency_key; absent values\n"
    "are null.\n"
    "\n";

std::string Footer(const char* extra = "") {
  return std::string(extra) + kagzi::ctl::kExitCodesHelp;
}

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

int main(int argc, char** argv) {
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
  kagzi::ctl::StartOptions start;
  OptionalString start_input, start_input_file, start_id, start_timeout;
  CLI::App* start_cmd = app.add_subcommand(
      "start",
      "Start a run of WORKFLOW and print its id (with --wait: then its output JSON).\n"
      "The input is validated before the database is contacted.");
  start_cmd->footer(
      Footer("--id KEY is an idempotency key: starting again with the same key prints the\n"
             "same run id (exit 0; a note on stderr says it already existed). A key used by\n"
             "another workflow is refused (exit 2). With --json (no --wait): {id, workflow,\n"
             "created, idempotency_key}; with --wait --json: the run object plus created.\n"
             "\n"));
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
  AddOptional(start_cmd, &start_id, "--id", "Idempotency key")->option->type_name("KEY");
  start_cmd->add_flag("--allow-unknown", start.allow_unknown,
                      "Start even if no kagzid has ever loaded WORKFLOW");
  auto* wait_flag =
      start_cmd->add_flag("--wait", start.wait, "Wait for the run to finish and print its output");
  AddOptional(start_cmd, &start_timeout, "--timeout",
              "With --wait: give up after SECONDS (exit 4); default: wait forever")
      ->option->type_name("SECONDS")
      ->needs(wait_flag);
  AddJsonFlag(start_cmd, &start.json);

  // status, show, result
  kagzi::ctl::RunOptions status, show, result;
  CLI::App* status_cmd = app.add_subcommand("status", "Print a run's status and times");
  status_cmd->footer(Footer(kRunJsonHelp));
  status_cmd->add_option("run", status.run_id, "Run id (UUID)")->required()->type_name("RUN");
  AddJsonFlag(status_cmd, &status.json);

  CLI::App* show_cmd = app.add_subcommand(
      "show", "Print a run and each step of its journal (kind, status, attempts, times, output)");
  show_cmd->footer(
      Footer("With --json: the run object (see status --help) plus steps: [{step_id, seq, kind,\n"
             "status, output, error, error_kind, attempts, wake_at, started_at, finished_at}].\n"
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
  kagzi::ctl::WaitOptions wait;
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
  kagzi::ctl::ListOptions list;
  OptionalString list_status, list_workflow;
  CLI::App* list_cmd = app.add_subcommand("list", "List runs, newest first");
  list_cmd->footer(Footer("With --json: {runs: [run objects, see status --help]}.\n\n"));
  AddOptional(list_cmd, &list_status, "--status",
              "Only runs in this status: PENDING, RUNNING, SLEEPING, COMPLETED, FAILED, "
              "CANCELLED")
      ->option->type_name("S");
  AddOptional(list_cmd, &list_workflow, "--workflow", "Only runs of this workflow")
      ->option->type_name("W");
  list_cmd->add_option("--limit", list.limit, "At most N runs (1..10000)")
      ->type_name("N")
      ->capture_default_str();
  AddJsonFlag(list_cmd, &list.json);

  // workflows, workers
  kagzi::ctl::TableOptions workflows, workers;
  CLI::App* workflows_cmd = app.add_subcommand(
      "workflows", "List the workflows live daemons have loaded (version, daemons, open runs)");
  workflows_cmd->footer(
      Footer("With --json: {workflows: [{workflow, version, daemons: [ids], open_runs,\n"
             "plugin_path}]}.\n\n"));
  AddJsonFlag(workflows_cmd, &workflows.json);

  CLI::App* workers_cmd =
      app.add_subcommand("workers", "List live and recently dead daemons and their heartbeats");
  workers_cmd->footer(Footer(
      "With --json: {now, workers: [{id, hostname, pid, version, concurrency, lease_ttl_ms,\n"
      "running, started_at, heartbeat_at, heartbeat_age_ms, alive}]}.\n\n"));
  AddJsonFlag(workers_cmd, &workers.json);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {
      return app.exit(e);  // --help, --version
    }
    std::cerr << "kagzictl: " << e.what() << "\nRun 'kagzictl --help' for usage.\n";
    return static_cast<int>(ExitCode::kUsage);
  }

  kagzi::ctl::GlobalOptions global{config_file.get(), database_url.get()};
  kagzi::ctl::Console console{std::cout, std::cerr};
  ExitCode code = ExitCode::kInternal;
  if (app.got_subcommand(start_cmd)) {
    start.input = start_input.get();
    start.input_file = start_input_file.get();
    start.idempotency_key = start_id.get();
    start.timeout = start_timeout.get();
    code = kagzi::ctl::StartCommand(global, start, console);
  } else if (app.got_subcommand(status_cmd)) {
    code = kagzi::ctl::StatusCommand(global, status, console);
  } else if (app.got_subcommand(show_cmd)) {
    code = kagzi::ctl::ShowCommand(global, show, console);
  } else if (app.got_subcommand(result_cmd)) {
    code = kagzi::ctl::ResultCommand(global, result, console);
  } else if (app.got_subcommand(wait_cmd)) {
    wait.timeout = wait_timeout.get();
    code = kagzi::ctl::WaitCommand(global, wait, console);
  } else if (app.got_subcommand(list_cmd)) {
    list.status = list_status.get();
    list.workflow = list_workflow.get();
    code = kagzi::ctl::ListCommand(global, list, console);
  } else if (app.got_subcommand(workflows_cmd)) {
    code = kagzi::ctl::WorkflowsCommand(global, workflows, console);
  } else if (app.got_subcommand(workers_cmd)) {
    code = kagzi::ctl::WorkersCommand(global, workers, console);
  }
  std::cout.flush();
  return static_cast<int>(code);
}
