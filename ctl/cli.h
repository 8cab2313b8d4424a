// kagzictl's command line: every subcommand and option (CLI11), and the
// --help texts with the exit codes. Parsing touches nothing but the
// streams it is given, so tests and the fuzz target ctl_args
// (tests/fuzz/) call it without a database.
#pragma once

#include <iosfwd>
#include <optional>

#include "commands.h"

namespace kagzi::ctl {

enum class Command {
  kStart,
  kStatus,
  kShow,
  kResult,
  kWait,
  kList,
  kCancel,
  kSignal,
  kRetry,
  kWorkflows,
  kWorkers,
};

// A parsed command line: the command and its options (only the member of
// that command is filled in).
struct CommandLine {
  Command command = Command::kStatus;
  GlobalOptions global;
  StartOptions start;
  RunOptions run;  // status, show, result, retry
  WaitOptions wait;
  ListOptions list;
  CancelOptions cancel;
  SignalOptions signal;
  TableOptions table;  // workflows, workers
};

// Parses argv (argv[0] is the program). Returns nullopt with *line filled
// in when a command is to run; otherwise the exit code to end with now:
// 0 after --help or --version (printed on `out`), 2 after a usage error
// (printed on `err` as "kagzictl: ...").
std::optional<int> ParseCommandLine(int argc, const char* const* argv, CommandLine* line,
                                    std::ostream& out, std::ostream& err);

}  // namespace kagzi::ctl
