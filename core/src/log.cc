// Named spdlog loggers sharing one stderr sink and one level.
#include "kagzi/core/log.h"

#include <mutex>

#include <spdlog/sinks/stdout_sinks.h>

namespace kagzi {
namespace {

std::mutex g_mu;
spdlog::level::level_enum g_level = spdlog::level::info;

spdlog::sink_ptr SharedSink() {
  static spdlog::sink_ptr sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  return sink;
}

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

}  // namespace kagzi
