// tests/plugins/ledger/ledger.cc -- fixture: a workflow whose steps leave a
// trace outside the database, so tests can count how often each step ran.
//
// Workflow "ledger", version 1. Input (all but "ledger" optional):
//   {"ledger": "/abs/path", "steps": N = 3, "step_ms": M = 0,
//    "sleep_ms": S = 0, "sleep_after": K = 0, "fail_at": F = none}
// For k in 0..N-1, step "step-<k>" sleeps M ms, then appends the line
// "<run_id> step-<k>\n" to the ledger file (open with O_APPEND, one write(),
// close), and returns {"k": k}. When F == k, that step appends its line and
// then throws PermanentError("boom at k"), so the run fails permanently after
// exactly one execution of step-F. When S > 0, after step K the run sleeps
// durably ("nap", S ms). Output: {"steps": N, "run": "<run_id>"}.
// A step whose result is recorded never appends again: one line per (run,
// step) unless a daemon died between a step's write and its record.
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include "../common/ledger_file.h"
#include <kagzi/kagzi.hpp>

namespace {}  // namespace

KAGZI_WORKFLOW(ledger, 1, ctx, input) {
  const std::string ledger = input.value("ledger", "");
  if (ledger.empty() || ledger.front() != '/') {
    throw kagzi::PermanentError(R"(input needs "ledger": an absolute file path)");
  }
  const auto steps = input.value<std::int64_t>("steps", 3);
  const auto step_ms = input.value<std::int64_t>("step_ms", 0);
  const auto sleep_ms = input.value<std::int64_t>("sleep_ms", 0);
  const auto sleep_after = input.value<std::int64_t>("sleep_after", 0);
  const auto fail_at = input.value<std::int64_t>("fail_at", -1);

  for (std::int64_t k = 0; k < steps; ++k) {
    const std::string id = "step-" + std::to_string(k);
    ctx.step(id, [&] {
      if (step_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(step_ms));
      kagzi_fixture::AppendLedgerLine(ledger, std::string(ctx.run_id()) + " " + id + "\n");
      if (k == fail_at) throw kagzi::PermanentError("boom at " + std::to_string(k));
      return kagzi::Json{{"k", k}};
    });
    if (sleep_ms > 0 && k == sleep_after) ctx.sleep("nap", std::chrono::milliseconds(sleep_ms));
  }
  return kagzi::Json{{"steps", steps}, {"run", ctx.run_id()}};
}

KAGZI_PLUGIN("ledger", "1.0.0");
