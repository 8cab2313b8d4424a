// tests/plugins/features/features.cc -- fixture: the ABI 1.1 workflow features
// (retries, events, child workflows, parallel steps, deterministic helpers,
// cancellation, workflow timeouts) for the end-to-end tests. Needs a 1.1 host.
//
// Side-effect ledger. Every step function, whenever it executes, appends one
// line "<run_id> <step_id> <attempt-or-tag>\n" to the file named by the input's
// "ledger" (absolute path; open with O_APPEND, one write(), close), so a test
// counts executions per (run, step) however many daemons took part. The third
// field is the attempt number for "flaky" (retry_step), "exec" otherwise. A
// workflow whose input has no "ledger" writes nothing (except retry_step,
// which needs it).
//
// Workflows (all version 1):
//
//   retry_step   {"ledger", "fail_times": N = 0, "max_attempts": M = 3,
//                 "initial_ms": I = 100, "permanent": false}
//     Step "flaky" under RetryPolicy{M attempts, I ms initial, multiplier 2,
//     max 10*I ms, jitter 0}: its first N executions fail (retryably, or
//     permanently with "permanent": true, message "flaky failure <attempt>");
//     the attempt number is 1 + the ledger lines already written for this
//     (run, "flaky"), so it survives a change of daemon. Output {"ok": true}
//     on success; on StepError a step "compensate" runs and the output is
//     {"compensated": true, "error": <the step's last message>, "step": "flaky"}.
//     With "fail_run": true the StepError fails the run instead. With
//     "fail_later": true, after "compensate" a step "finish" runs that fails
//     permanently on its first execution ("finish failed once"), which fails
//     the run; it succeeds after that.
//
//   wait_event   {"ledger", "name": "go", "timeout_ms": T (optional: forever)}
//     Step "before", wait_for_event("wait", name, T ms), step "after".
//     Output {"payload": <the event's payload, or null>, "timed_out": bool}.
//
//   parent       {"ledger", "child": "child_ok" | "child_fail", "child_input": {...}}
//     Step "before", then call_child("kid", child, child_input). Output
//     {"child": <child output>}, or {"child_error": <the child's error>} when
//     the child failed or was cancelled.
//   child_ok     {"n": K, "sleep_ms": S (optional), "ledger" (optional)}
//     Durable sleep "nap" of S ms when S > 0, then step "work" returning
//     {"doubled": 2*K}, which is the output.
//   child_fail   {"ledger" (optional)}
//     Step "work" throws PermanentError("child says no"); the run fails with
//     "step 'work' failed: child says no".
//
//   fanout       {"ledger", "n": N, "step_ms": S = 0, "fail_index": K (optional),
//                 "max_concurrency": C = 0, "fail_once": false, "fail_run": false}
//     parallel_map over 0..N-1 as steps "sq-<i>": each sleeps S ms (usleep),
//     returns i*i, and fails permanently ("fail at <i>") when i == K (with
//     "fail_once", only at its first execution). Output {"squares": [0, 1, 4,
//     ...]}, or {"error": "step 'sq-<K>' failed: fail at <K>"} (the first
//     failed element, from the per-element outcomes); with "fail_run" that
//     element's StepError fails the run instead.
//
//   helpers      {"ledger", "sleep_ms": S = 0}
//     now("t0"), random("r"), step "s" (records both as it saw them), durable
//     sleep "nap" of S ms when S > 0. Output {"t0": <unix ms>, "r": "<u64 as
//     decimal string>", "same": <true when step "s" recorded the same two
//     values>}. Every replay returns identical values; with S > 0 the output
//     is computed by a replay.
//
//   cancellable  {"ledger", "steps": N = 10, "step_ms": S = 200}
//     Steps "s-0".."s-<N-1>", each sleeping S ms. On kagzi::Cancelled: step
//     "cleanup", then the Cancelled is rethrown (the run ends CANCELLED).
//     Output {"steps": N} if it finishes.
//
//   slow_timeout {"ledger" (optional)}, default workflow timeout 1500 ms
//     Steps "s-0".."s-19", 300 ms each: it cannot finish before its deadline.
//
// Plain functions, no state shared between runs: safe on any thread, and the
// parallel step functions share nothing mutable.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "../common/ledger_file.h"
#include <kagzi/kagzi.hpp>

namespace {

std::string LedgerPath(const kagzi::Json& input, bool required) {
  std::string path = input.value("ledger", "");
  if (path.empty() && !required) return path;
  if (path.empty() || path.front() != '/') {
    throw kagzi::PermanentError(R"(input needs "ledger": an absolute file path)");
  }
  return path;
}

// Appends "<run_id> <step_id> <tag>\n" with one write() (O_APPEND: atomic
// between processes for a line this short). No-op without a ledger.
void Record(const std::string& path, std::string_view run_id, std::string_view step_id,
            std::string_view tag) {
  if (path.empty()) return;
  std::string line;
  line.reserve(run_id.size() + step_id.size() + tag.size() + 3);
  line.append(run_id).append(" ").append(step_id).append(" ").append(tag).append("\n");
  kagzi_fixture::AppendLedgerLine(path, line);
}

// How many lines "<run_id> <step_id> ..." the ledger holds.
int CountLines(const std::string& path, std::string_view run_id, std::string_view step_id) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return 0;
    throw kagzi::RetryableError("open " + path + ": " + std::generic_category().message(errno));
  }
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int read_errno = errno;
      ::close(fd);
      throw kagzi::RetryableError("read " + path + ": " +
                                  std::generic_category().message(read_errno));
    }
    if (got == 0) break;
    text.append(buffer, static_cast<std::size_t>(got));
  }
  ::close(fd);
  std::string prefix;
  prefix.append(run_id).append(" ").append(step_id).append(" ");
  int count = 0;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (std::string_view(text).substr(start, end - start).starts_with(prefix)) ++count;
    start = end + 1;
  }
  return count;
}

void SleepMs(std::int64_t ms) {
  if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

}  // namespace

KAGZI_WORKFLOW(retry_step, 1, ctx, input) {
  const std::string ledger = LedgerPath(input, true);
  const auto fail_times = input.value<std::int64_t>("fail_times", 0);
  const auto max_attempts = input.value<std::uint32_t>("max_attempts", 3);
  const auto initial_ms = input.value<std::int64_t>("initial_ms", 100);
  const bool permanent = input.value("permanent", false);
  // "fail_run": true lets the StepError fail the run (for kagzictl retry).
  const bool fail_run = input.value("fail_run", false);
  const kagzi::RetryPolicy policy{.max_attempts = max_attempts,
                                  .initial_interval = std::chrono::milliseconds(initial_ms),
                                  .max_interval = std::chrono::milliseconds(10 * initial_ms),
                                  .multiplier = 2.0,
                                  .jitter = 0.0};
  try {
    ctx.step(
        "flaky",
        [&] {
          const int attempt = CountLines(ledger, ctx.run_id(), "flaky") + 1;
          Record(ledger, ctx.run_id(), "flaky", std::to_string(attempt));
          if (attempt <= fail_times) {
            const std::string message = "flaky failure " + std::to_string(attempt);
            if (permanent) throw kagzi::PermanentError(message);
            throw kagzi::RetryableError(message);
          }
          return attempt;
        },
        policy);
    return kagzi::Json{{"ok", true}};
  } catch (const kagzi::StepError& e) {
    if (fail_run) throw;
    ctx.step("compensate", [&] { Record(ledger, ctx.run_id(), "compensate", "exec"); });
    if (input.value("fail_later", false)) {
      ctx.step("finish", [&] {
        const bool first = CountLines(ledger, ctx.run_id(), "finish") == 0;
        Record(ledger, ctx.run_id(), "finish", "exec");
        if (first) throw kagzi::PermanentError("finish failed once");
      });
    }
    return kagzi::Json{{"compensated", true}, {"error", e.message()}, {"step", e.step_id()}};
  }
}

KAGZI_WORKFLOW(wait_event, 1, ctx, input) {
  const std::string ledger = LedgerPath(input, false);
  const std::string name = input.value("name", "go");
  ctx.step("before", [&] { Record(ledger, ctx.run_id(), "before", "exec"); });
  std::optional<kagzi::Json> payload;
  if (const kagzi::Json* timeout = input.find("timeout_ms"); timeout && !timeout->is_null()) {
    payload =
        ctx.wait_for_event("wait", name, std::chrono::milliseconds(timeout->as<std::int64_t>()));
  } else {
    payload = ctx.wait_for_event("wait", name);
  }
  ctx.step("after", [&] { Record(ledger, ctx.run_id(), "after", "exec"); });
  return kagzi::Json{{"payload", payload.value_or(kagzi::Json())},
                     {"timed_out", !payload.has_value()}};
}

KAGZI_WORKFLOW(parent, 1, ctx, input) {
  const std::string ledger = LedgerPath(input, false);
  const std::string child = input.value("child", "child_ok");
  ctx.step("before", [&] { Record(ledger, ctx.run_id(), "before", "exec"); });
  try {
    return kagzi::Json{{"child", ctx.call_child("kid", child, input["child_input"])}};
  } catch (const kagzi::StepError& e) {
    return kagzi::Json{{"child_error", e.message()}};
  }
}

KAGZI_WORKFLOW(child_ok, 1, ctx, input) {
  const std::string ledger = LedgerPath(input, false);
  const auto n = input.value<std::int64_t>("n", 0);
  const auto sleep_ms = input.value<std::int64_t>("sleep_ms", 0);
  if (sleep_ms > 0) ctx.sleep("nap", std::chrono::milliseconds(sleep_ms));
  return ctx.step("work", [&] {
    Record(ledger, ctx.run_id(), "work", "exec");
    return kagzi::Json{{"doubled", n * 2}};
  });
}

KAGZI_WORKFLOW(child_fail, 1, ctx, input) {
  const std::string ledger = LedgerPath(input, false);
  ctx.step("work", [&] {
    Record(ledger, ctx.run_id(), "work", "exec");
    throw kagzi::PermanentError("child says no");
  });
  return {};
}

KAGZI_WORKFLOW(fanout, 1, ctx, input) {
  const std::string ledger = LedgerPath(input, false);
  const auto n = input.value<std::int64_t>("n", 4);
  const auto step_ms = input.value<std::int64_t>("step_ms", 0);
  const auto fail_index = input.value<std::int64_t>("fail_index", -1);
  const auto max_concurrency = input.value<std::uint32_t>("max_concurrency", 0);
  const bool fail_once = input.value("fail_once", false);
  std::vector<std::int64_t> items;
  for (std::int64_t i = 0; i < n; ++i) items.push_back(i);
  // Runs on host worker threads: reads only what it captured.
  const std::string_view run_id = ctx.run_id();
  const auto square = [&ledger, run_id, step_ms, fail_index, fail_once](std::int64_t i) {
    SleepMs(step_ms);
    const std::string id = "sq-" + std::to_string(i);
    const bool first = !fail_once || CountLines(ledger, run_id, id) == 0;
    Record(ledger, run_id, id, "exec");
    if (i == fail_index && first) throw kagzi::PermanentError("fail at " + std::to_string(i));
    return i * i;
  };
  const auto outcomes = ctx.parallel_map_outcomes("sq", items, square, max_concurrency);
  kagzi::Json squares = kagzi::Json::array();
  for (const auto& outcome : outcomes) {
    if (const kagzi::StepError* failure = outcome.error()) {
      if (input.value("fail_run", false)) throw *failure;
      return kagzi::Json{{"error", failure->what()}};
    }
    squares.push_back(outcome.value());
  }
  return kagzi::Json{{"squares", squares}};
}

KAGZI_WORKFLOW(helpers, 1, ctx, input) {
  const std::string ledger = LedgerPath(input, false);
  const auto sleep_ms = input.value<std::int64_t>("sleep_ms", 0);
  const std::int64_t t0 =
      std::chrono::duration_cast<std::chrono::milliseconds>(ctx.now("t0").time_since_epoch())
          .count();
  const std::string r = std::to_string(ctx.random("r"));
  const kagzi::Json seen = ctx.step("s", [&] {
    Record(ledger, ctx.run_id(), "s", "exec");
    return kagzi::Json{{"t0", t0}, {"r", r}};
  });
  if (sleep_ms > 0) ctx.sleep("nap", std::chrono::milliseconds(sleep_ms));
  const bool same = seen == kagzi::Json{{"t0", t0}, {"r", r}};
  return kagzi::Json{{"t0", t0}, {"r", r}, {"same", same}};
}

KAGZI_WORKFLOW(cancellable, 1, ctx, input) {
  const std::string ledger = LedgerPath(input, false);
  const auto steps = input.value<std::int64_t>("steps", 10);
  const auto step_ms = input.value<std::int64_t>("step_ms", 200);
  try {
    for (std::int64_t k = 0; k < steps; ++k) {
      const std::string id = "s-" + std::to_string(k);
      ctx.step(id, [&] {
        SleepMs(step_ms);
        Record(ledger, ctx.run_id(), id, "exec");
      });
    }
  } catch (const kagzi::Cancelled& e) {
    ctx.warn("cancelled (", e.reason(), "): cleaning up");
    ctx.step("cleanup", [&] { Record(ledger, ctx.run_id(), "cleanup", "exec"); });
    throw;
  }
  return kagzi::Json{{"steps", steps}};
}

KAGZI_WORKFLOW_WITH_TIMEOUT(slow_timeout, 1, 1500, ctx, input) {
  const std::string ledger = LedgerPath(input, false);
  for (int k = 0; k < 20; ++k) {
    const std::string id = "s-" + std::to_string(k);
    ctx.step(id, [&] {
      SleepMs(300);
      Record(ledger, ctx.run_id(), id, "exec");
    });
  }
  return kagzi::Json{{"finished", true}};
}

KAGZI_PLUGIN("features", "1.1.0");
