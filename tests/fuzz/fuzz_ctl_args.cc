// Fuzz target "ctl_args": kagzictl's command line and the checks it makes
// before contacting the database (ctl/cli.h, ctl/checks.h), with no
// database: the parsed command's Check* function runs with a config whose
// max_payload_bytes is small, and --input-file and --batch read a fake
// file whose content comes from the input.
//
// Input: NUL-separated arguments (at most 24); the last one doubles as the
// content of any --input-file or --batch file. Properties:
//   - parsing ends in a command, or in exit 0 (help, version) or exit 2
//     with one "kagzictl: " message free of terminal control bytes;
//   - whatever start accepts is a valid name, key and JSON input within
//     max_payload_bytes, with a positive deadline; with --batch, every run
//     is such an input, in line order, keyed "<--id-prefix>-<line>" when a
//     prefix is given, and no single-run option came with it; signal's
//     data is valid JSON within the limit; list's filters are in range;
//   - every argument is also tried as a time (--since), a timeout and a run
//     id: an RFC 3339 time that parses prints (FormatRfc3339) as one that
//     parses back to the same instant; relative times are not negative.
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "checks.h"
#include "cli.h"
#include "fuzz_support.h"
#include "kagzi/core/validation.h"
#include "render.h"

namespace {

using kagzi::fuzz::HasControlBytes;
namespace ctl = kagzi::ctl;

constexpr std::int64_t kMaxPayload = 1024;
// 0000-01-01T00:00:00Z and 10000-01-01T00:00:00Z in micros: the range of
// four-digit years that FormatRfc3339 prints and ParseRfc3339 reads.
constexpr kagzi::Micros kYear0 = -62167219200LL * 1'000'000;
constexpr kagzi::Micros kYear10000 = 253402300800LL * 1'000'000;

void CheckArgument(const std::string& arg) {
  if (auto t = ctl::ParseRfc3339(arg); t && *t >= kYear0 && *t < kYear10000) {
    const std::string printed = ctl::FormatRfc3339(*t);
    auto back = ctl::ParseRfc3339(printed);
    FUZZ_CHECK(back && *back == *t, arg + " -> " + printed);
  }
  auto spec = ctl::ParseTimeSpec(arg, "--since");
  if (spec.ok() && spec->relative) FUZZ_CHECK(spec->value >= 0, arg);
  if (!spec.ok()) FUZZ_CHECK(spec.status().message().starts_with("--since \""), arg);
  auto timeout = ctl::ParseTimeout(arg);
  if (timeout.ok()) FUZZ_CHECK(timeout->count() >= 0, arg);
  if (ctl::CheckRunId(arg).ok()) FUZZ_CHECK(arg.size() == 36, arg);
}

void CheckCommand(const ctl::CommandLine& line, const std::string& file_content) {
  kagzi::Config config;
  config.max_payload_bytes = kMaxPayload;
  switch (line.command) {
    case ctl::Command::kStart: {
      auto read = [&](const std::string& path, std::int64_t max_bytes,
                      std::string_view /*limit_name*/) -> kagzi::Result<std::string> {
        if (path.empty() || path[0] == '!') {
          return kagzi::Status::InvalidArgument("cannot read input file \"{}\"", path);
        }
        if (static_cast<std::int64_t>(file_content.size()) > max_bytes) {
          return kagzi::Status::InvalidArgument("input file is larger than the limit");
        }
        return file_content;
      };
      auto plan = ctl::CheckStart(line.start, config, read);
      if (!plan.ok()) break;
      FUZZ_CHECK(kagzi::ValidateName(line.start.workflow, "w").ok(), line.start.workflow);
      if (line.start.idempotency_key) {
        FUZZ_CHECK(kagzi::ValidateIdempotencyKey(*line.start.idempotency_key, "k").ok(),
                   *line.start.idempotency_key);
      }
      if (plan->batch) {
        FUZZ_CHECK(line.start.batch.has_value(), "a batch plan without --batch");
        FUZZ_CHECK(plan->batch->size() <= ctl::kMaxBatchRuns, "too many runs");
        int last_line = 0;
        for (const auto& run : *plan->batch) {
          FUZZ_CHECK(run.line > last_line, "batch lines out of order");
          last_line = run.line;
          FUZZ_CHECK(kagzi::ValidateJson(run.input, "input", kMaxPayload).ok(), run.input);
          FUZZ_CHECK(!run.input.starts_with("\xef\xbb\xbf"), run.input);
          FUZZ_CHECK(run.idempotency_key.has_value() == line.start.id_prefix.has_value(),
                     "a key without --id-prefix, or none with it");
          if (run.idempotency_key) {
            FUZZ_CHECK(
                *run.idempotency_key == *line.start.id_prefix + "-" + std::to_string(run.line),
                *run.idempotency_key);
            FUZZ_CHECK(kagzi::ValidateIdempotencyKey(*run.idempotency_key, "k").ok(),
                       *run.idempotency_key);
          }
        }
        FUZZ_CHECK(!line.start.input && !line.start.input_file && !line.start.idempotency_key &&
                       !line.start.wait,
                   "--batch accepted with a single-run option");
      } else {
        FUZZ_CHECK(!line.start.id_prefix, "--id-prefix accepted without --batch");
        FUZZ_CHECK(kagzi::ValidateJson(plan->input, "input", kMaxPayload).ok(), plan->input);
      }
      if (plan->deadline) FUZZ_CHECK(plan->deadline->count() > 0, "deadline not positive");
      if (plan->wait_limit) FUZZ_CHECK(plan->wait_limit->count() >= 0, "negative wait");
      break;
    }
    case ctl::Command::kSignal: {
      auto data = ctl::CheckSignal(line.signal, config);
      if (!data.ok()) break;
      FUZZ_CHECK(kagzi::ValidateJson(*data, "data", kMaxPayload).ok(), *data);
      FUZZ_CHECK(kagzi::ValidateName(line.signal.name, "n").ok(), line.signal.name);
      FUZZ_CHECK(kagzi::IsUuid(line.signal.run_id), line.signal.run_id);
      break;
    }
    case ctl::Command::kList: {
      auto plan = ctl::CheckList(line.list);
      if (!plan.ok()) break;
      FUZZ_CHECK(plan->filter.limit >= 1 && plan->filter.limit <= ctl::kMaxListLimit,
                 "limit out of range");
      if (plan->filter.version) FUZZ_CHECK(*plan->filter.version >= 1, "version < 1");
      break;
    }
    case ctl::Command::kCancel: {
      auto reason = ctl::CheckCancel(line.cancel);
      if (reason.ok()) FUZZ_CHECK(kagzi::IsValidUtf8(*reason), *reason);
      break;
    }
    case ctl::Command::kWait:
      (void)ctl::CheckWait(line.wait);
      break;
    case ctl::Command::kStatus:
    case ctl::Command::kShow:
    case ctl::Command::kResult:
    case ctl::Command::kRetry:
      (void)ctl::CheckRunId(line.run.run_id);
      break;
    case ctl::Command::kWorkflows:
    case ctl::Command::kWorkers:
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::string> args = {"kagzictl"};
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (std::size_t pos = 0; pos <= text.size() && args.size() < 25;) {
    std::size_t end = text.find('\0', pos);
    if (end == std::string_view::npos) end = text.size();
    args.emplace_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());

  ctl::CommandLine line;
  std::ostringstream out, err;
  std::optional<int> done =
      ctl::ParseCommandLine(static_cast<int>(argv.size()), argv.data(), &line, out, err);
  if (done) {
    FUZZ_CHECK(*done == 0 || *done == 2, "exit code " + std::to_string(*done));
    if (*done == 2) {
      FUZZ_CHECK(err.str().starts_with("kagzictl: "), err.str());
      FUZZ_CHECK(!HasControlBytes(err.str(), "\n\t"), err.str());
      FUZZ_CHECK(out.str().empty(), out.str());
    }
  } else {
    FUZZ_CHECK(err.str().empty(), err.str());
    CheckCommand(line, args.back());
  }
  for (std::size_t i = 1; i < args.size(); ++i) CheckArgument(args[i]);
  return 0;
}
