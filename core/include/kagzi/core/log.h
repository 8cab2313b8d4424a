// Logging: one named spdlog logger per subsystem ("scheduler", "executor",
// "lease", "plugins", "store", "workflow", "kagzid"), all sharing one sink
// and one level. Lines name their object (run id, step id, plugin path) and
// the reason. Never log a database password: pass URLs through
// RedactDatabaseUrl (config.h). Thread-safe after InitLogging.
//
// Where lines go (decided once, at the first Logger() call):
//   - the systemd journal, with structured fields, when stderr is connected
//     to it (a service started by systemd: JOURNAL_STREAM names the stderr
//     stream), or when KAGZI_LOG_TARGET=journal;
//   - stderr otherwise, or when KAGZI_LOG_TARGET=stderr.
// Journal entries carry MESSAGE, PRIORITY, SYSLOG_IDENTIFIER (the program
// name), TID, KAGZI_SUBSYSTEM (the logger's name) and, from the calling
// thread's ScopedLogContext, KAGZI_RUN_ID, KAGZI_WORKFLOW,
// KAGZI_WORKFLOW_VERSION and KAGZI_STEP. So, for example:
//   journalctl -u kagzid KAGZI_RUN_ID=<run id>
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include "kagzi/core/status.h"

struct iovec;

namespace kagzi {

// Sets the level of every logger (existing and future). Unknown level names
// are refused.
Status InitLogging(std::string_view level);

// The logger for a subsystem, created on first use.
std::shared_ptr<spdlog::logger> Logger(const std::string& subsystem);

// What a log line is about. Empty strings (and version 0) mean "not known".
struct LogContext {
  std::string run_id{};
  std::string workflow{};
  std::int64_t version = 0;
  std::string step{};
};

// Attaches fields to every line logged by this thread while it lives:
//   kagzi::ScopedLogContext log_ctx({.run_id = run.id, .workflow = run.workflow});
//   ...
//   kagzi::ScopedLogContext step_ctx({.step = id});  // keeps run_id, workflow
// Fields left empty are inherited from the enclosing context; the
// destructor restores it. Scopes must nest (it is a stack per thread).
class ScopedLogContext {
 public:
  explicit ScopedLogContext(const LogContext& fields);
  ~ScopedLogContext();
  ScopedLogContext(const ScopedLogContext&) = delete;
  ScopedLogContext& operator=(const ScopedLogContext&) = delete;

 private:
  LogContext saved_;
};

// The calling thread's current context (empty outside any scope).
const LogContext& CurrentLogContext();
// Swaps the calling thread's context with `other`: for code that runs
// several contexts' work on one thread in turn (fibers).
void SwapLogContext(LogContext& other);

enum class LogTarget { kStderr, kJournal };

// Where Logger() sends lines, from the environment: KAGZI_LOG_TARGET
// ("journal", "stderr"; anything else or unset: automatic), then whether
// JOURNAL_STREAM ("<device>:<inode>", set by systemd) names this process's
// stderr. `getenv` is injectable for tests.
LogTarget DetectLogTarget(const std::function<const char*(const char*)>& getenv = nullptr);

// Sends one journal entry (the sd_journal_sendv contract: each iovec is one
// "FIELD=value"; returns >= 0 on success).
using JournalSender = std::function<int(const struct iovec*, int)>;

// A sink writing journal entries with the fields listed above. `send`
// defaults to sd_journal_sendv; `identifier` (SYSLOG_IDENTIFIER) to the
// program's name. An entry the journal refuses is written to stderr instead.
spdlog::sink_ptr MakeJournalSink(JournalSender send = nullptr, std::string identifier = "");

}  // namespace kagzi
