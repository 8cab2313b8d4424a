// Named spdlog loggers sharing one sink and one level. The sink is stderr,
// or the systemd journal (with structured fields) when running as a
// service whose stderr is connected to the journal. See log.h.
#include "kagzi/core/log.h"

#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <vector>

#include <spdlog/details/null_mutex.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <systemd/sd-journal.h>

namespace kagzi {
namespace {

std::mutex g_mu;
spdlog::level::level_enum g_level = spdlog::level::info;

thread_local LogContext t_context;

spdlog::sink_ptr SharedSink() {
  static spdlog::sink_ptr sink = [] {
    if (DetectLogTarget() == LogTarget::kJournal) return MakeJournalSink();
    return spdlog::sink_ptr(std::make_shared<spdlog::sinks::stderr_sink_mt>());
  }();
  return sink;
}

// syslog(3) priorities, as journald expects in PRIORITY=.
int SyslogPriority(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug:
      return 7;  // LOG_DEBUG
    case spdlog::level::info:
      return 6;  // LOG_INFO
    case spdlog::level::warn:
      return 4;  // LOG_WARNING
    case spdlog::level::err:
      return 3;  // LOG_ERR
    case spdlog::level::critical:
      return 2;  // LOG_CRIT
    default:
      return 6;
  }
}

// Writes each line to the journal through `send` as one entry with fields.
// spdlog's own systemd_sink cannot add per-thread fields, hence this one.
// sd_journal_sendv is thread-safe, so the sink needs no lock of its own.
class JournalSink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
 public:
  JournalSink(JournalSender send, std::string identifier)
      : send_(std::move(send)), identifier_(std::move(identifier)) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    const LogContext& ctx = t_context;
    const std::string_view subsystem(msg.logger_name.data(), msg.logger_name.size());
    const std::string_view payload(msg.payload.data(), msg.payload.size());

    std::vector<std::string> fields;
    fields.reserve(10);
    std::string message = "MESSAGE=";
    if (!subsystem.empty()) message.append("[").append(subsystem).append("] ");
    message.append(payload);
    fields.push_back(std::move(message));
    fields.push_back(fmt::format("PRIORITY={}", SyslogPriority(msg.level)));
    if (!identifier_.empty()) fields.push_back("SYSLOG_IDENTIFIER=" + identifier_);
    fields.push_back(fmt::format("TID={}", msg.thread_id));
    if (!subsystem.empty()) fields.push_back(fmt::format("KAGZI_SUBSYSTEM={}", subsystem));
    if (!ctx.run_id.empty()) fields.push_back("KAGZI_RUN_ID=" + ctx.run_id);
    if (!ctx.workflow.empty()) fields.push_back("KAGZI_WORKFLOW=" + ctx.workflow);
    if (ctx.version != 0) fields.push_back(fmt::format("KAGZI_WORKFLOW_VERSION={}", ctx.version));
    if (!ctx.step.empty()) fields.push_back("KAGZI_STEP=" + ctx.step);

    std::vector<struct iovec> iov(fields.size());
    for (std::size_t i = 0; i < fields.size(); ++i) {
      iov[i].iov_base = fields[i].data();
      iov[i].iov_len = fields[i].size();
    }
    if (send_(iov.data(), static_cast<int>(iov.size())) < 0) {
      // journald is gone (or refused the entry): keep the line anyway.
      std::fprintf(stderr, "<%d>[%.*s] %.*s\n", SyslogPriority(msg.level),
                   static_cast<int>(subsystem.size()), subsystem.data(),
                   static_cast<int>(payload.size()), payload.data());
    }
  }
  void flush_() override {}

 private:
  JournalSender send_;
  std::string identifier_;
};

}  // namespace

Status InitLogging(std::string_view level) {
  auto parsed = spdlog::level::from_str(std::string(level));
  // from_str maps unknown names to "off"; only accept "off" when asked.
  if (parsed == spdlog::level::off && level != "off") {
    return Status::InvalidArgument(
        "log_level \"{}\" is not one of trace, debug, info, warn, error, critical, off", level);
  }
  std::lock_guard lock(g_mu);
  g_level = parsed;
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& l) { l->set_level(parsed); });
  return Status::Ok();
}

std::shared_ptr<spdlog::logger> Logger(const std::string& subsystem) {
  std::lock_guard lock(g_mu);
  if (auto existing = spdlog::get(subsystem)) return existing;
  auto logger = std::make_shared<spdlog::logger>(subsystem, SharedSink());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%-5l%$ [%n] %v");
  logger->set_level(g_level);
  logger->flush_on(spdlog::level::info);
  spdlog::register_logger(logger);
  return logger;
}

ScopedLogContext::ScopedLogContext(const LogContext& fields) : saved_(t_context) {
  if (!fields.run_id.empty()) t_context.run_id = fields.run_id;
  if (!fields.workflow.empty()) t_context.workflow = fields.workflow;
  if (fields.version != 0) t_context.version = fields.version;
  if (!fields.step.empty()) t_context.step = fields.step;
}

ScopedLogContext::~ScopedLogContext() { t_context = std::move(saved_); }

const LogContext& CurrentLogContext() { return t_context; }

void SwapLogContext(LogContext& other) { std::swap(t_context, other); }

LogTarget DetectLogTarget(const std::function<const char*(const char*)>& getenv) {
  auto get = [&](const char* name) -> const char* {
    return getenv ? getenv(name) : std::getenv(name);
  };
  if (const char* forced = get("KAGZI_LOG_TARGET")) {
    const std::string_view f(forced);
    if (f == "journal") return LogTarget::kJournal;
    if (f == "stderr") return LogTarget::kStderr;
  }
  // systemd sets JOURNAL_STREAM=<st_dev>:<st_ino> of the stream it connected
  // to stdout/stderr. Compare with fd 2 itself: a child whose stderr was
  // redirected elsewhere inherits the variable but must not use the journal.
  const char* stream = get("JOURNAL_STREAM");
  if (stream == nullptr) return LogTarget::kStderr;
  std::uintmax_t dev = 0, ino = 0;
  char extra = 0;
  if (std::sscanf(stream, "%ju:%ju%c", &dev, &ino, &extra) != 2) return LogTarget::kStderr;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return LogTarget::kStderr;
  const bool same = static_cast<std::uintmax_t>(st.st_dev) == dev &&
                    static_cast<std::uintmax_t>(st.st_ino) == ino;
  return same ? LogTarget::kJournal : LogTarget::kStderr;
}

spdlog::sink_ptr MakeJournalSink(JournalSender send, std::string identifier) {
  if (!send) send = [](const struct iovec* iov, int n) { return sd_journal_sendv(iov, n); };
  if (identifier.empty()) identifier = program_invocation_short_name;
  return std::make_shared<JournalSink>(std::move(send), std::move(identifier));
}

}  // namespace kagzi
