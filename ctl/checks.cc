// kagzictl's argument checks (see checks.h). Moved out of commands.cc so
// that they can be tested and fuzzed without a database.
#include "checks.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <fmt/format.h>

#include "kagzi/core/validation.h"

namespace kagzi::ctl {

using std::chrono::milliseconds;

Result<milliseconds> ParseTimeout(std::string_view text, std::string_view flag) {
  double seconds = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (!text.empty() && ec == std::errc() && end == text.data() + text.size()) {
    if (!std::isfinite(seconds) || seconds < 0 || seconds > 1e9) {
      return Status::InvalidArgument("{} \"{}\" must be between 0 and 1e9 seconds", flag, text);
    }
    return milliseconds(std::llround(seconds * 1000));
  }
  auto d = ParseDuration(text);
  if (!d.ok()) {
    return Status::InvalidArgument(
        "{} \"{}\" is not a number of seconds or a duration like 500ms, 30s, 5m", flag, text);
  }
  return *d;
}

namespace {

// Parses a decimal number of exactly `digits` digits at text[pos].
std::optional<int> Digits(std::string_view text, std::size_t pos, std::size_t digits) {
  if (pos + digits > text.size()) return std::nullopt;
  int v = 0;
  for (std::size_t i = pos; i < pos + digits; ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    v = v * 10 + (text[i] - '0');
  }
  return v;
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// days_from_civil).
std::int64_t DaysFromCivil(std::int64_t y, int m, int d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy =
      (153 * static_cast<unsigned>(m > 2 ? m - 3 : m + 9) + 2) / 5 + static_cast<unsigned>(d) - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

int DaysInMonth(int y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[m - 1];
}

}  // namespace

std::optional<Micros> ParseRfc3339(std::string_view text) {
  auto year = Digits(text, 0, 4);
  auto month = Digits(text, 5, 2);
  auto day = Digits(text, 8, 2);
  if (!year || !month || !day || text[4] != '-' || text[7] != '-') return std::nullopt;
  if (*month < 1 || *month > 12 || *day < 1 || *day > DaysInMonth(*year, *month)) {
    return std::nullopt;
  }
  Micros t = DaysFromCivil(*year, *month, *day) * 86'400 * 1'000'000;
  if (text.size() == 10) return t;
  if (text.size() < 20 || (text[10] != 'T' && text[10] != 't' && text[10] != ' ')) {
    return std::nullopt;
  }
  auto hour = Digits(text, 11, 2);
  auto minute = Digits(text, 14, 2);
  auto second = Digits(text, 17, 2);
  if (!hour || !minute || !second || text[13] != ':' || text[16] != ':' || *hour > 23 ||
      *minute > 59 || *second > 60) {
    return std::nullopt;
  }
  t += ((*hour * 60 + *minute) * 60 + std::min(*second, 59)) * Micros{1'000'000};
  std::size_t pos = 19;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    Micros frac = 0;
    int scale = 100'000;
    std::size_t start = pos;
    for (; pos < text.size() && text[pos] >= '0' && text[pos] <= '9'; ++pos) {
      frac += (text[pos] - '0') * scale;
      scale /= 10;
    }
    if (pos == start) return std::nullopt;
    t += frac;
  }
  std::string_view zone = text.substr(std::min(pos, text.size()));
  if (zone == "Z" || zone == "z") return t;
  if (zone.size() != 6 || (zone[0] != '+' && zone[0] != '-') || zone[3] != ':') {
    return std::nullopt;
  }
  auto zh = Digits(zone, 1, 2);
  auto zm = Digits(zone, 4, 2);
  if (!zh || !zm || *zh > 23 || *zm > 59) return std::nullopt;
  const Micros offset = (*zh * 60 + *zm) * Micros{60'000'000};
  return zone[0] == '+' ? t - offset : t + offset;
}

Result<TimeSpec> ParseTimeSpec(std::string_view text, std::string_view flag) {
  auto bad = [&] {
    return Status::InvalidArgument(
        "{} \"{}\" is not an RFC 3339 time (like 2026-11-26T10:00:00Z) or a duration ago "
        "(like 30s, 10m, 2h, 1d, 1w)",
        flag, text);
  };
  if (auto t = ParseRfc3339(text)) return TimeSpec{false, *t};
  if (text.size() < 2) return bad();
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size() - 1, n);
  if (ec != std::errc() || end != text.data() + text.size() - 1 || n < 0) return bad();
  Micros unit = 0;
  switch (text.back()) {
    case 's':
      unit = 1'000'000;
      break;
    case 'm':
      unit = 60'000'000;
      break;
    case 'h':
      unit = 3'600'000'000;
      break;
    case 'd':
      unit = 86'400'000'000;
      break;
    case 'w':
      unit = 7 * 86'400'000'000;
      break;
    default:
      return bad();
  }
  if (n > 100'000 * 86'400'000'000 / unit) return bad();  // beyond ~270 years
  return TimeSpec{true, n * unit};
}

Status CheckRunId(std::string_view id) {
  if (IsUuid(id)) return Status::Ok();
  return Status::InvalidArgument(
      "\"{}\" is not a run id: runs are named by UUIDs, as printed by kagzictl start", id);
}

Status ValidateReason(std::string_view reason) {
  if (reason.empty()) return Status::InvalidArgument("--reason must not be empty");
  if (!IsValidUtf8(reason)) return Status::InvalidArgument("--reason is not valid UTF-8");
  if (reason.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument("--reason contains a NUL byte");
  }
  if (reason.size() > kMaxReasonBytes) {
    return Status::InvalidArgument("--reason is {} bytes long; the limit is {}", reason.size(),
                                   kMaxReasonBytes);
  }
  return Status::Ok();
}

namespace {

// Reads at most max_bytes + 1 bytes of `in` into *text: one byte more than
// allowed tells that the input is too large, without reading all of it
// (`--input-file /dev/zero` must not exhaust memory).
void ReadBounded(std::istream& in, std::int64_t max_bytes, std::string* text) {
  const auto cap = static_cast<std::size_t>(std::max<std::int64_t>(0, max_bytes)) + 1;
  char chunk[64 * 1024];
  while (text->size() < cap && in) {
    const std::size_t want = std::min(sizeof chunk, cap - text->size());
    in.read(chunk, static_cast<std::streamsize>(want));
    text->append(chunk, static_cast<std::size_t>(in.gcount()));
  }
}

Status TooLarge(std::string_view what, std::int64_t max_bytes, std::string_view limit_name) {
  return Status::InvalidArgument("{} is larger than the limit of {} bytes ({})", what, max_bytes,
                                 limit_name);
}

}  // namespace

Result<std::string> ReadInputFile(const std::string& path, std::int64_t max_bytes,
                                  std::string_view limit_name) {
  std::string text;
  if (path == "-") {
    ReadBounded(std::cin, max_bytes, &text);
    if (std::cin.bad()) return Status::InvalidArgument("cannot read the input from stdin");
    if (static_cast<std::int64_t>(text.size()) > max_bytes) {
      return TooLarge("the input on stdin", max_bytes, limit_name);
    }
    return text;
  }
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return Status::InvalidArgument("cannot read input file \"{}\": it is a directory", path);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::InvalidArgument("cannot read input file \"{}\": {}", path, std::strerror(errno));
  }
  ReadBounded(in, max_bytes, &text);
  if (in.bad()) return Status::InvalidArgument("cannot read input file \"{}\"", path);
  if (static_cast<std::int64_t>(text.size()) > max_bytes) {
    return TooLarge(fmt::format("input file \"{}\"", path), max_bytes, limit_name);
  }
  return text;
}

std::string BatchSourceName(const std::string& path) {
  return path == "-" ? std::string("--batch - (stdin)") : fmt::format("--batch \"{}\"", path);
}

Result<std::vector<BatchRun>> ParseBatch(std::string_view text, const BatchOptions& o) {
  if (o.id_prefix) {
    KAGZI_RETURN_IF_ERROR(
        ValidateIdempotencyKey(*o.id_prefix, "the idempotency key prefix (--id-prefix)"));
  }
  // A byte order mark may open the file (editors on Windows write one); it
  // is not part of the first run's input. Elsewhere it is refused below:
  // RapidJSON skips a leading one, but PostgreSQL's json type does not.
  constexpr std::string_view kBom = "\xef\xbb\xbf";
  if (text.starts_with(kBom)) text.remove_prefix(kBom.size());
  std::vector<BatchRun> runs;
  int line = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view input = text.substr(pos, end - pos);
    pos = end + 1;
    ++line;
    if (input.ends_with('\r')) input.remove_suffix(1);  // CRLF line ends
    if (input.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    if (runs.size() >= o.max_runs) {
      return Status::InvalidArgument(
          "{}: more than {} runs (line {} is run {}); one call starts at most {}: split the "
          "file",
          o.source, o.max_runs, line, o.max_runs + 1, o.max_runs);
    }
    if (input.starts_with(kBom)) {
      return Status::InvalidArgument(
          "{}: line {}: the run input begins with a byte order mark (U+FEFF), which is not "
          "JSON",
          o.source, line);
    }
    if (Status st = ValidateJson(input, "the run input", o.max_payload_bytes); !st.ok()) {
      return st.WithContext(fmt::format("{}: line {}", o.source, line));
    }
    BatchRun run;
    run.line = line;
    run.input = std::string(input);
    if (o.id_prefix) {
      run.idempotency_key = fmt::format("{}-{}", *o.id_prefix, line);
      if (Status st =
              ValidateIdempotencyKey(*run.idempotency_key, "its idempotency key (--id-prefix)");
          !st.ok()) {
        return st.WithContext(fmt::format("{}: line {}", o.source, line));
      }
    }
    runs.push_back(std::move(run));
  }
  return runs;
}

Result<StartPlan> CheckStart(const StartOptions& o, const Config& config, const FileReader& read) {
  const std::string context = fmt::format("cannot start workflow \"{}\"", o.workflow);
  KAGZI_RETURN_IF_ERROR(ValidateName(o.workflow, "the workflow name"));
  if (o.idempotency_key) {
    if (Status st = ValidateIdempotencyKey(*o.idempotency_key, "the idempotency key (--id)");
        !st.ok()) {
      return st.WithContext(context);
    }
  }
  StartPlan plan;
  // --timeout: the run's deadline, and (without --wait-timeout) the wait's
  // limit, plus a grace period for the daemon to record the timeout.
  if (o.timeout) {
    auto t = ParseTimeout(*o.timeout);
    if (!t.ok()) return t.status().WithContext(context);
    if (t->count() <= 0) {
      return Status::InvalidArgument("--timeout \"{}\" must be more than 0", *o.timeout)
          .WithContext(context);
    }
    plan.deadline = *t;
  }
  if (o.wait_timeout) {
    auto t = ParseTimeout(*o.wait_timeout, "--wait-timeout");
    if (!t.ok()) return t.status().WithContext(context);
    plan.wait_limit = *t;
  } else if (plan.deadline) {
    plan.wait_limit = *plan.deadline + kDeadlineGrace;
  }
  if (o.batch) {
    // The command line refuses these combinations already; callers that
    // build StartOptions themselves get the same answer.
    if (o.input || o.input_file || o.idempotency_key || o.wait) {
      return Status::InvalidArgument(
                 "--batch cannot be combined with --input, --input-file, --id or --wait")
          .WithContext(context);
    }
    BatchOptions batch;
    batch.source = BatchSourceName(*o.batch);
    batch.id_prefix = o.id_prefix;
    batch.max_payload_bytes = config.max_payload_bytes;
    auto text = read(*o.batch, kMaxBatchBytes, kBatchBytesLimitName);
    if (!text.ok()) return text.status().WithContext(context);
    auto runs = ParseBatch(*text, batch);
    if (!runs.ok()) return runs.status().WithContext(context);
    plan.batch = std::move(runs).value();
    return plan;
  }
  if (o.id_prefix) {
    return Status::InvalidArgument("--id-prefix needs --batch (use --id for a single run)")
        .WithContext(context);
  }
  plan.input = "{}";
  std::string what = "input (--input)";
  if (o.input) {
    plan.input = *o.input;
  } else if (o.input_file) {
    auto text = read(*o.input_file, config.max_payload_bytes, "max_payload_bytes");
    if (!text.ok()) return text.status().WithContext(context);
    plan.input = std::move(text).value();
    what = fmt::format("input file \"{}\"", *o.input_file);
  }
  if (Status st = ValidateJson(plan.input, what, config.max_payload_bytes); !st.ok()) {
    return st.WithContext(context);
  }
  return plan;
}

Result<std::string> CheckSignal(const SignalOptions& o, const Config& config) {
  KAGZI_RETURN_IF_ERROR(CheckRunId(o.run_id));
  const std::string context = fmt::format("cannot signal run {}", o.run_id);
  if (Status st = ValidateName(o.name, "the event name"); !st.ok()) {
    return st.WithContext(context);
  }
  std::string data = o.data.value_or("null");
  if (Status st = ValidateJson(data, "event data (--data)", config.max_payload_bytes); !st.ok()) {
    return st.WithContext(context);
  }
  return data;
}

Result<ListPlan> CheckList(const ListOptions& o) {
  ListPlan plan;
  ListFilter& filter = plan.filter;
  if (o.status) {
    filter.status = ParseRunStatus(*o.status);
    if (!filter.status) {
      return Status::InvalidArgument(
          "--status \"{}\" is not a run status (allowed, in any case: PENDING, RUNNING, "
          "SLEEPING, COMPLETED, FAILED, CANCELLED)",
          *o.status);
    }
  }
  if (o.workflow) {
    KAGZI_RETURN_IF_ERROR(ValidateName(*o.workflow, "--workflow"));
    filter.workflow = o.workflow;
  }
  if (o.version) {
    if (*o.version < 1) {
      return Status::InvalidArgument(
          "--version {} is not a workflow version (versions are 1 or more)", *o.version);
    }
    filter.version = o.version;
  }
  if (o.since) {
    auto t = ParseTimeSpec(*o.since, "--since");
    if (!t.ok()) return t.status();
    plan.since = *t;
  }
  if (o.until) {
    auto t = ParseTimeSpec(*o.until, "--until");
    if (!t.ok()) return t.status();
    plan.until = *t;
  }
  if (o.parent) {
    if (Status st = CheckRunId(*o.parent); !st.ok()) {
      return Status::InvalidArgument("--parent: {}", st.message());
    }
    filter.parent_run_id = o.parent;
  }
  if (o.limit < 1 || o.limit > kMaxListLimit) {
    return Status::InvalidArgument("--limit {} is out of range (1..{})", o.limit, kMaxListLimit);
  }
  filter.limit = o.limit;
  if (plan.since && !plan.since->relative) filter.created_after = plan.since->value;
  if (plan.until && !plan.until->relative) filter.created_before = plan.until->value;
  return plan;
}

Result<std::string> CheckCancel(const CancelOptions& o) {
  KAGZI_RETURN_IF_ERROR(CheckRunId(o.run_id));
  if (o.reason) KAGZI_RETURN_IF_ERROR(ValidateReason(*o.reason));
  return o.reason.value_or(kDefaultCancelReason);
}

Result<std::optional<milliseconds>> CheckWait(const WaitOptions& o) {
  KAGZI_RETURN_IF_ERROR(CheckRunId(o.run_id));
  if (!o.timeout) return std::optional<milliseconds>();
  auto t = ParseTimeout(*o.timeout);
  if (!t.ok()) return t.status();
  return std::optional<milliseconds>(*t);
}

}  // namespace kagzi::ctl
