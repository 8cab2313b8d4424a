// Logging: one named spdlog logger per subsystem ("scheduler", "executor",
// "lease", "plugins", "store", "workflow", "kagzid"), all writing to stderr
// in one format. Lines name their object (run id, step id, plugin path) and
// the reason. Never log a database password: pass URLs through
// RedactDatabaseUrl (config.h). Thread-safe after InitLogging.
#pragma once

#include <memory>
#include <string_view>

#include <spdlog/spdlog.h>

#include "kagzi/core/status.h"

namespace kagzi {

// Sets the level of every logger (existing and future). Unknown level names
// are refused.
Status InitLogging(std::string_view level);

// The logger for a subsystem, created on first use.
std::shared_ptr<spdlog::logger> Logger(const std::string& subsystem);

}  // namespace kagzi
