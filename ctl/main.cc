// kagzictl: parses the command line (cli.cc) and runs the command
// (commands.cc). Single-threaded.
#include <iostream>

#include "cli.h"
#include "commands.h"

namespace {

using kagzi::ctl::Command;
using kagzi::ctl::ExitCode;

ExitCode Run(const kagzi::ctl::CommandLine& line, kagzi::ctl::Console& console) {
  using namespace kagzi::ctl;  // NOLINT(google-build-using-namespace)
  switch (line.command) {
    case Command::kStart:
      return StartCommand(line.global, line.start, console);
    case Command::kStatus:
      return StatusCommand(line.global, line.run, console);
    case Command::kShow:
      return ShowCommand(line.global, line.run, console);
    case Command::kResult:
      return ResultCommand(line.global, line.run, console);
    case Command::kWait:
      return WaitCommand(line.global, line.wait, console);
    case Command::kList:
      return ListCommand(line.global, line.list, console);
    case Command::kCancel:
      return CancelCommand(line.global, line.cancel, console);
    case Command::kSignal:
      return SignalCommand(line.global, line.signal, console);
    case Command::kRetry:
      return RetryCommand(line.global, line.run, console);
    case Command::kWorkflows:
      return WorkflowsCommand(line.global, line.table, console);
    case Command::kWorkers:
      return WorkersCommand(line.global, line.table, console);
  }
  return ExitCode::kInternal;
}

}  // namespace

int main(int argc, char** argv) {
  kagzi::ctl::CommandLine line;
  if (auto done = kagzi::ctl::ParseCommandLine(argc, argv, &line, std::cout, std::cerr)) {
    std::cout.flush();
    return *done;
  }
  kagzi::ctl::Console console{std::cout, std::cerr};
  const ExitCode code = Run(line, console);
  std::cout.flush();
  return static_cast<int>(code);
}
