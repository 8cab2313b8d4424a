// Configuration shared by kagzid and kagzictl.
//
// Sources, lowest to highest precedence: built-in defaults, a TOML file
// (default /etc/kagzi/kagzid.toml, or KAGZI_CONFIG, or -c PATH), KAGZI_*
// environment variables, then command-line flags. Unknown keys and bad
// values are refused with the key and its source named. Pure functions; no
// global state; thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kagzi/core/status.h"

namespace kagzi {

inline constexpr std::string_view kDefaultConfigPath = "/etc/kagzi/kagzid.toml";

struct Config {
  std::string database_url = "postgresql:///kagzi";
  // A file holding the database password alone (key database_password_file;
  // empty: none). LoadConfig reads it, refuses it when group or others may
  // read it, and adds the password to database_url as libpq's `password`
  // keyword (DatabaseUrlWithPassword), so that every connection gets it.
  // database_url is therefore secret after loading: print it only through
  // RedactDatabaseUrl.
  std::string database_password_file;
  std::string plugin_dir = "/usr/lib/kagzi/plugins";
  int concurrency = 16;
  std::chrono::milliseconds lease_ttl{30'000};
  std::chrono::milliseconds heartbeat_interval{10'000};
  std::chrono::milliseconds poll_interval{10'000};
  std::chrono::milliseconds drain_timeout{30'000};
  std::string log_level = "info";
  // Largest run input, step result or output accepted, in bytes.
  std::int64_t max_payload_bytes = 16 * 1024 * 1024;
  // The retry policy of steps that do not give their own (ABI 1.1).
  int retry_max_attempts = 3;
  std::chrono::milliseconds retry_initial_interval{1'000};
  std::chrono::milliseconds retry_max_interval{60'000};
  double retry_multiplier = 2.0;
  double retry_jitter = 0.2;
  // Most steps of one parallel group that run at the same time.
  int parallel_limit = 8;
  // Crash isolation: worker processes (each runs concurrency / workers runs),
  // how many times a run may kill a worker before it is failed, and how long
  // one step function may run before its worker is killed.
  int workers = 2;
  int max_crashes = 3;
  std::chrono::milliseconds step_timeout{30 * 60'000};
  // Whether each worker process, with every thread it starts, is kept on
  // one CPU (key worker_cpu_affinity: "off" or "auto"). With "auto", worker
  // i runs on CPU (i - 1) mod n of the n CPUs kagzid may use (its own
  // affinity, e.g. systemd's CPUAffinity=), so a worker's executor threads
  // and its group committer wake one another on their own CPU.
  enum class CpuAffinity { kOff, kAuto };
  CpuAffinity worker_cpu_affinity = CpuAffinity::kOff;
  // How a worker executes runs (key executor): a thread per run ("threads"),
  // or each run on a fiber over fiber_threads carrier threads ("fibers").
  // A run waiting for its step's commit then holds no thread, which saves
  // two thread switches per step; a step function that blocks holds its
  // carrier, and the runs on it wait meanwhile.
  enum class Executor { kThreads, kFibers };
  Executor executor = Executor::kThreads;
  int fiber_threads = 2;

  // Where the file part came from ("" when no file was read).
  std::string source_file;
};

// Every key a config file, KAGZI_<KEY> variable or --<key-with-dashes> flag
// may set.
const std::vector<std::string_view>& ConfigKeys();

// Maps a key to its environment variable: "lease_ttl" -> "KAGZI_LEASE_TTL".
std::string EnvVarForKey(std::string_view key);

struct ConfigLoadOptions {
  // An explicit file (-c PATH): it must exist.
  std::optional<std::string> explicit_file;
  // Values from command-line flags, by key. Highest precedence.
  std::map<std::string, std::string> flag_values;
  // Environment lookup; tests inject their own.
  std::function<std::optional<std::string>(const std::string&)> getenv;
};

// Loads and validates. When no explicit file is given, KAGZI_CONFIG names
// one (must exist), else the default path is read if it exists.
Result<Config> LoadConfig(const ConfigLoadOptions& options);

// Parses TOML text into config (on top of the defaults in *config). `origin`
// names the text in errors (a file path).
Status ApplyToml(std::string_view toml_text, std::string_view origin, Config* config);

// Sets one key from text (an env var or flag value); `origin` names it.
Status ApplyValue(std::string_view key, std::string_view value, std::string_view origin,
                  Config* config);

// Cross-key checks (e.g. heartbeat_interval < lease_ttl).
Status ValidateConfig(const Config& config);

// "250ms", "30s", "5m", "1h", or a bare integer of seconds.
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);
std::string FormatDuration(std::chrono::milliseconds d);

// A connection URL or conninfo string with any password replaced by "***",
// safe to log.
std::string RedactDatabaseUrl(std::string_view url);

// libpq's error `message` about `url`, safe to show: libpq's parse errors
// quote the text they stumbled on (`invalid percent-encoded token:
// "se%zzcret"`), which may be part of a password. When the URL does not
// parse and holds a password, the quoted text is replaced by "***".
std::string RedactLibpqError(std::string_view url, std::string_view message);

// The password in a database_password_file: the whole file less a trailing
// newline. Refused, with the key, the path and the mode named (never the
// contents), when the file is not a regular file, group or others may read
// or write it (mode & 077), it is empty, or it holds a line break or NUL.
Result<std::string> ReadDatabasePasswordFile(const std::string& path);

// `url` (a libpq URI or conninfo string, as database_url) with `password`
// added as libpq's password keyword: a percent-encoded query parameter of a
// URI, a quoted keyword of a conninfo string. Every other option (host,
// sslmode, sslrootcert, sslcert, sslkey, ...) is kept as written. Refused
// when libpq cannot parse `url` or it already holds a password.
Result<std::string> DatabaseUrlWithPassword(std::string_view url, std::string_view password);

// The config as TOML text, for --check-config (password redacted).
std::string DescribeConfig(const Config& config);

}  // namespace kagzi
