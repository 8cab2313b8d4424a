// tests/plugins/chaos/chaos.cc -- fixture: the workflow the chaos test
// (tests/chaos) and the database fault tests (tests/e2e/db_faults_test.cc)
// run while daemons are killed and PostgreSQL restarts.
//
// Workflow "chaos", version 1. Input (all but "ledger" optional):
//   {"ledger": "/abs/file", "marks": "/abs/dir", "pre": P = 2, "post": Q = 2,
//    "step_ms": M = 0, "slow": "<step id>", "slow_ms": L = 0,
//    "sleep_ms": S = 0, "retry_ms": R = 100, "event": "go"}
// In order:
//   steps "s-0" .. "s-<P-1>"                  (each sleeps M ms)
//   durable sleep "nap" of S ms               (only when S > 0)
//   step "flaky" under RetryPolicy{5 attempts, R ms initial, multiplier 2,
//     max 8*R ms, jitter 0}: with "marks", the first execution of the run's
//     flaky step fails RETRYABLY (it creates "<marks>/<run id>" with O_EXCL,
//     so "first" survives a change of daemon); later executions succeed
//   event wait "wait" for the event named E, no timeout   (only when E != "")
//   steps "t-0" .. "t-<Q-1>"                  (each sleeps M ms)
// The step whose id equals "slow" sleeps L ms instead of M.
// Output: {"run": "<run id>", "payload": <the event's payload or null>}.
//
// Side-effect ledger. Every execution of a step function starts by appending
// one line "<run id> <step id> <tag>\n" to the ledger (O_APPEND, one write(),
// close: atomic between processes for a line this short), then does its
// work. The tag "<unix us>:<pid>:<n>" names the execution: its start time on
// the wall clock (the host's clock, which the database's now() also reads),
// the process and a per-process counter. Each step returns {"tag": "<tag>"},
// so the journal says which execution was recorded, and a test can tell an
// execution that started before its step was recorded (at-least-once: the
// daemon died or lost its lease before the record) from one that started
// after (a recorded step executed again: a bug).
//
// Plain functions and one atomic counter: safe on any thread.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

#include "../common/ledger_file.h"
#include <kagzi/kagzi.hpp>

namespace {

std::atomic<std::uint64_t> g_executions{0};

std::string AbsolutePath(const kagzi::Json& input, const char* key, bool required) {
  std::string path = input.value(key, "");
  if (path.empty() && !required) return path;
  if (path.empty() || path.front() != '/') {
    throw kagzi::PermanentError(std::string("input needs \"") + key + "\": an absolute path");
  }
  return path;
}

std::string NewTag() {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  return std::to_string(us) + ":" + std::to_string(::getpid()) + ":" +
         std::to_string(g_executions.fetch_add(1) + 1);
}

// Appends "<run> <step> <tag>\n" with one write().
void Record(const std::string& path, std::string_view run_id, std::string_view step_id,
            const std::string& tag) {
  std::string line;
  line.reserve(run_id.size() + step_id.size() + tag.size() + 3);
  line.append(run_id).append(" ").append(step_id).append(" ").append(tag).append("\n");
  kagzi_fixture::AppendLedgerLine(path, line);
}

// True the first time it is called for this run (creates the mark file).
bool FirstExecution(const std::string& marks, std::string_view run_id) {
  const std::string path = marks + "/" + std::string(run_id);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd >= 0) {
    ::close(fd);
    return true;
  }
  if (errno == EEXIST) return false;
  throw kagzi::RetryableError("create " + path + ": " + std::generic_category().message(errno));
}

void SleepMs(std::int64_t ms) {
  if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

}  // namespace

KAGZI_WORKFLOW(chaos, 1, ctx, input) {
  const std::string ledger = AbsolutePath(input, "ledger", true);
  const std::string marks = AbsolutePath(input, "marks", false);
  const auto pre = input.value<std::int64_t>("pre", 2);
  const auto post = input.value<std::int64_t>("post", 2);
  const auto step_ms = input.value<std::int64_t>("step_ms", 0);
  const std::string slow = input.value("slow", "");
  const auto slow_ms = input.value<std::int64_t>("slow_ms", 0);
  const auto sleep_ms = input.value<std::int64_t>("sleep_ms", 0);
  const auto retry_ms = input.value<std::int64_t>("retry_ms", 100);
  const std::string event = input.value("event", "go");
  const std::string_view run_id = ctx.run_id();

  const auto work = [&](const std::string& id) {
    return ctx.step(id, [&] {
      std::string tag = NewTag();
      Record(ledger, run_id, id, tag);
      SleepMs(id == slow ? slow_ms : step_ms);
      return kagzi::Json{{"tag", tag}};
    });
  };

  for (std::int64_t k = 0; k < pre; ++k) work("s-" + std::to_string(k));
  if (sleep_ms > 0) ctx.sleep("nap", std::chrono::milliseconds(sleep_ms));
  const kagzi::RetryPolicy policy{.max_attempts = 5,
                                  .initial_interval = std::chrono::milliseconds(retry_ms),
                                  .max_interval = std::chrono::milliseconds(8 * retry_ms),
                                  .multiplier = 2.0,
                                  .jitter = 0.0};
  ctx.step(
      "flaky",
      [&] {
        std::string tag = NewTag();
        Record(ledger, run_id, "flaky", tag);
        if (!marks.empty() && FirstExecution(marks, run_id)) {
          throw kagzi::RetryableError("first attempt fails by design (" + tag + ")");
        }
        SleepMs(std::string_view("flaky") == slow ? slow_ms : step_ms);
        return kagzi::Json{{"tag", tag}};
      },
      policy);
  std::optional<kagzi::Json> payload;
  if (!event.empty()) payload = ctx.wait_for_event("wait", event);
  for (std::int64_t k = 0; k < post; ++k) work("t-" + std::to_string(k));
  return kagzi::Json{{"run", std::string(run_id)}, {"payload", payload.value_or(kagzi::Json())}};
}

KAGZI_PLUGIN("chaos", "1.0.0");
