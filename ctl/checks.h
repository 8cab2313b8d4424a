// kagzictl's checks of what the user typed, made before the database is
// contacted: run ids, names, idempotency keys, JSON inputs, start --batch
// files and event data (against max_payload_bytes), timeouts, times and
// list filters.
//
// Every error is the complete message kagzictl prints after "kagzictl: ",
// naming the option or argument, the limit and the config key where there
// is one. Pure functions: no database, no globals, no I/O except through
// the FileReader given to CheckStart. The fuzz target ctl_args
// (tests/fuzz/) drives them together with the command line parser.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "commands.h"
#include "kagzi/core/config.h"
#include "kagzi/core/store.h"

namespace kagzi::ctl {

// Most runs list prints (--limit); also the number of children show reads.
inline constexpr int kMaxListLimit = 10'000;
// start --timeout T --wait waits until the deadline plus this, so that a
// daemon has time to record the run's failure ("deadline exceeded").
inline constexpr std::chrono::milliseconds kDeadlineGrace{2'000};
// Longest cancel reason accepted (it becomes the runs' error).
inline constexpr std::size_t kMaxReasonBytes = 4096;
inline constexpr char kDefaultCancelReason[] = "cancelled with kagzictl cancel";

// "30", "1.5" (seconds) or a duration with a unit ("500ms", "2m"); `flag`
// names the option in errors. 0 to 1e9 seconds.
Result<std::chrono::milliseconds> ParseTimeout(std::string_view text,
                                               std::string_view flag = "--timeout");

// RFC 3339: "2026-11-26T10:00:00Z", "2026-11-26T10:00:00.5+01:00" ('t',
// 'z' and a space for 'T' accepted), or a date alone ("2026-11-26",
// midnight UTC). Micros since the epoch; nullopt when malformed.
std::optional<Micros> ParseRfc3339(std::string_view text);

// A --since/--until value: an absolute time, or how long ago.
struct TimeSpec {
  bool relative = false;
  Micros value = 0;  // micros since the epoch, or micros ago
};
Result<TimeSpec> ParseTimeSpec(std::string_view text, std::string_view flag);

// A canonical UUID, as kagzictl start prints run ids.
Status CheckRunId(std::string_view id);

// A cancel reason: 1..kMaxReasonBytes bytes of valid UTF-8 without NUL.
Status ValidateReason(std::string_view reason);

// Reads a run input file or a --batch file ("-": stdin), refusing one of
// more than max_bytes bytes without reading further than that; the error
// names the limit as `limit_name` (a config key, or what the limit is).
using FileReader = std::function<Result<std::string>(
    const std::string& path, std::int64_t max_bytes, std::string_view limit_name)>;
Result<std::string> ReadInputFile(const std::string& path, std::int64_t max_bytes,
                                  std::string_view limit_name = "max_payload_bytes");

// start --batch: the most runs one call starts (non-blank lines), and the
// most bytes its file may hold. The whole batch is one transaction, built
// in memory and sent as one pipeline; more is refused, not cut.
inline constexpr std::size_t kMaxBatchRuns = 100'000;
inline constexpr std::int64_t kMaxBatchBytes = std::int64_t{128} << 20;
inline constexpr char kBatchBytesLimitName[] = "128 MiB, the most one --batch file may hold";

// One run of a --batch file.
struct BatchRun {
  int line = 0;       // 1-based line of the file, as errors and keys name it
  std::string input;  // checked JSON (a trailing '\r' removed)
  std::optional<std::string> idempotency_key;  // "<id prefix>-<line>"
};

struct BatchOptions {
  std::string source;  // how errors name the file: --batch "runs.jsonl"
  std::optional<std::string> id_prefix;
  std::int64_t max_payload_bytes = 0;  // per line
  std::size_t max_runs = kMaxBatchRuns;
};

// How messages name a --batch file: --batch "runs.jsonl", or for "-",
// --batch - (stdin).
std::string BatchSourceName(const std::string& path);

// The runs of a --batch file's text, in file order: one per line that is
// not blank (blank: nothing but spaces, tabs and a '\r'). Every line is
// checked as --input is (JSON, UTF-8, no NUL, max_payload_bytes); the first
// bad line fails the whole batch with "<source>: line N: <why>". A byte
// order mark opening the text is skipped; one opening a later line is
// refused. More than max_runs runs is refused. An empty result (no runs)
// is not an error.
// The id prefix itself must be a valid idempotency key; each line's key
// "<prefix>-<line>" is checked too.
Result<std::vector<BatchRun>> ParseBatch(std::string_view text, const BatchOptions& options);

// What start does once its arguments are checked.
struct StartPlan {
  std::string input;                                    // checked JSON
  std::optional<std::vector<BatchRun>> batch;           // --batch: its runs
  std::optional<std::chrono::milliseconds> deadline;    // the run's --timeout
  std::optional<std::chrono::milliseconds> wait_limit;  // how long --wait waits
};
// The workflow name, --id, --timeout, --wait-timeout, and the input (--input
// or the file read by `read`) against config.max_payload_bytes; with
// --batch, the batch file (read by `read`, at most kMaxBatchBytes) through
// ParseBatch, and no --input, --input-file, --id or --wait.
Result<StartPlan> CheckStart(const StartOptions& options, const Config& config,
                             const FileReader& read);

// The run id, event name, and the event data (default null) against
// config.max_payload_bytes; returns the data to send.
Result<std::string> CheckSignal(const SignalOptions& options, const Config& config);

// list's filters. Relative times (--since 10m) are left in since/until for
// the caller to resolve on the database clock; absolute ones are in filter.
struct ListPlan {
  ListFilter filter;
  std::optional<TimeSpec> since;
  std::optional<TimeSpec> until;
};
Result<ListPlan> CheckList(const ListOptions& options);

// The run id and --reason; returns the reason to record.
Result<std::string> CheckCancel(const CancelOptions& options);

// The run id and --timeout of wait.
Result<std::optional<std::chrono::milliseconds>> CheckWait(const WaitOptions& options);

}  // namespace kagzi::ctl
