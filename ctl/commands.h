// The kagzictl commands: what each subcommand does once its command line is
// parsed (main.cc owns the parsing), and the exit codes they return.
//
// Every command loads the config first (no database access), checks its
// arguments, and only then connects, so bad input never waits on or changes
// the database. Results go to Console::out (one JSON document with --json,
// else human text); errors go to Console::err as "kagzictl: <message>".
// Single-threaded: one command per process.
#pragma once

#include <iosfwd>
#include <optional>
#include <string>

namespace kagzi::ctl {

// The process exit codes; documented to users by kExitCodesHelp.
enum class ExitCode : int {
  kSuccess = 0,      // done (with --wait, wait and result: the run COMPLETED)
  kRunFailed = 1,    // the run FAILED or was CANCELLED
  kUsage = 2,        // bad usage or bad input; nothing was changed
  kDatabase = 3,     // cannot reach or use the database
  kNotFinished = 4,  // a wait timed out, or result of an unfinished run
  kInternal = 5,     // a bug or an unexpected database error
};

// The "Exit codes:" section printed at the end of every --help.
extern const char kExitCodesHelp[];

// Where output goes; std::cout / std::cerr in the binary.
struct Console {
  std::ostream& out;
  std::ostream& err;
};

// Options every command accepts (before or after the subcommand name).
struct GlobalOptions {
  std::optional<std::string> config_file;   // -c/--config
  std::optional<std::string> database_url;  // --database-url
};

struct StartOptions {
  std::string workflow;
  std::optional<std::string> input;       // --input JSON
  std::optional<std::string> input_file;  // --input-file PATH ("-": stdin)
  std::optional<std::string> idempotency_key;
  // --batch PATH ("-": stdin): JSON Lines, one run's input per non-blank
  // line, all started in one transaction. Excludes input, input_file,
  // idempotency_key and wait.
  std::optional<std::string> batch;
  // --id-prefix P (with batch): line n's run gets idempotency key "P-n", so
  // starting the same file again starts nothing new.
  std::optional<std::string> id_prefix;
  bool allow_unknown = false;
  bool wait = false;
  // The run's deadline ("30", "1.5", "500ms", "2m"); also bounds --wait
  // (until the deadline plus kDeadlineGrace) unless wait_timeout is given.
  std::optional<std::string> timeout;
  std::optional<std::string> wait_timeout;  // with wait: how long to wait
  bool json = false;
};

// status, show, result, retry.
struct RunOptions {
  std::string run_id;
  bool json = false;
};

struct WaitOptions {
  std::string run_id;
  std::optional<std::string> timeout;
  bool json = false;
};

struct ListOptions {
  std::optional<std::string> status;
  std::optional<std::string> workflow;
  std::optional<int> version;
  std::optional<std::string> since;  // RFC 3339 time or a duration ago ("10m", "2h", "1d")
  std::optional<std::string> until;  // same forms; exclusive
  std::optional<std::string> parent;
  int limit = 50;
  bool json = false;
};

struct CancelOptions {
  std::string run_id;
  std::optional<std::string> reason;
  bool json = false;
};

struct SignalOptions {
  std::string run_id;
  std::string name;
  std::optional<std::string> data;  // JSON; default null
  bool json = false;
};

// workflows, workers.
struct TableOptions {
  bool json = false;
};

ExitCode StartCommand(const GlobalOptions& global, const StartOptions& options, Console& console);
ExitCode StatusCommand(const GlobalOptions& global, const RunOptions& options, Console& console);
ExitCode ShowCommand(const GlobalOptions& global, const RunOptions& options, Console& console);
ExitCode ListCommand(const GlobalOptions& global, const ListOptions& options, Console& console);
ExitCode ResultCommand(const GlobalOptions& global, const RunOptions& options, Console& console);
ExitCode WaitCommand(const GlobalOptions& global, const WaitOptions& options, Console& console);
ExitCode CancelCommand(const GlobalOptions& global, const CancelOptions& options, Console& console);
ExitCode SignalCommand(const GlobalOptions& global, const SignalOptions& options, Console& console);
ExitCode RetryCommand(const GlobalOptions& global, const RunOptions& options, Console& console);
ExitCode WorkflowsCommand(const GlobalOptions& global, const TableOptions& options,
                          Console& console);
ExitCode WorkersCommand(const GlobalOptions& global, const TableOptions& options, Console& console);

}  // namespace kagzi::ctl
