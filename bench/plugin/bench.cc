// bench/plugin/bench.cc -- the workflows kagzi-bench runs (bench/kagzi_bench.cc).
//
// Built into <build>/bench-plugins/bench.so. Each workflow is as small as its
// workload allows, so that the figures measure Kagzi (claims, journal writes,
// parks, completions), not the workflow's own work:
//   bench0       version 1: no steps; returns its input.
//   bench3       version 1: three sequential steps "s1".."s3", step k returning
//                {"step":k,"i":i,"s":"xxxx..."} (64 x's), i from the input
//                {"i":N}; returns the last step's result.
//   bench_sleep  version 1: step "before", a durable 1 s sleep "nap", step
//                "after"; returns {"i":i}. kagzi-bench reads the wake lateness
//                from the journal: "after".started_at - "nap".wake_at.
// No state is shared between runs.
#include <chrono>
#include <cstdint>
#include <string>

#include <kagzi/kagzi.hpp>

namespace {

// The 64-byte payload every bench3 step records, so that a journal entry has
// the size of a small real result rather than a few bytes.
const std::string kPayload(64, 'x');

kagzi::Json StepResult(int step, std::int64_t i) {
  return kagzi::Json{{"step", step}, {"i", i}, {"s", kPayload}};
}

}  // namespace

KAGZI_WORKFLOW(bench0, 1, ctx, input) {
  (void)ctx;
  return input;
}

KAGZI_WORKFLOW(bench3, 1, ctx, input) {
  const auto i = input.value<std::int64_t>("i", 0);
  ctx.step("s1", [&] { return StepResult(1, i); });
  ctx.step("s2", [&] { return StepResult(2, i); });
  return ctx.step("s3", [&] { return StepResult(3, i); });
}

KAGZI_WORKFLOW(bench_sleep, 1, ctx, input) {
  const auto i = input.value<std::int64_t>("i", 0);
  ctx.step("before", [&] { return StepResult(1, i); });
  // Parks the run: no thread, connection or lease is held while it sleeps.
  ctx.sleep("nap", std::chrono::seconds(1));
  ctx.step("after", [&] { return StepResult(2, i); });
  return kagzi::Json{{"i", i}};
}

KAGZI_PLUGIN("bench", "1.0.0");
