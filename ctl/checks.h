// kagzictl's checks of what the user typed, made before the database is
// contacted: run ids, names, idempotency keys, JSON inputs and event data
// (against max_payload_bytes), timeouts, times and list filters.
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

// Reads a run input file ("-": stdin), refusing one of more than max_bytes
// bytes (max_payload_bytes) without reading further than that.
using FileReader =
    std::function<Result<std::string>(const std::string& path, std::int64_t max_bytes)>;
Result<std::string> ReadInputFile(const std::string& path, std::int64_t max_bytes);

// What start does once its arguments are checked.
struct StartPlan {
  std::string input;                                    // checked JSON
  std::optional<std::chrono::milliseconds> deadline;    // the run's --timeout
  std::optional<std::chrono::milliseconds> wait_limit;  // how long --wait waits
};
// The workflow name, --id, --timeout, --wait-timeout, and the input (--input
// or the file read by `read`) against config.max_payload_bytes.
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
