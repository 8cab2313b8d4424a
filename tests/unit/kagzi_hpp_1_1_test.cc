// tests/unit/kagzi_hpp_1_1_test.cc -- the ABI 1.1 parts of the C++ wrapper
// (kagzi/kagzi.hpp) against a fake 1.1 host: retry policies, cancellation,
// events, child workflows, parallel steps, deterministic helpers, workflow
// timeouts, and the refusal of every 1.1 call by a 1.0 host.
//
// FakeHost implements the host side of plugin.h 1.1 in memory. Its journal
// holds one entry per id, replayed in order; an entry may be pending (a retry
// not yet due, an event not yet sent, a child not yet finished), in which case
// the call parks the run (KAGZI_SUSPEND) and the next invoke() replays it.
// parallel() runs the group's unfinished steps on real threads, so the
// wrapper's trampolines are exercised concurrently. Knobs make the next call
// return KAGZI_ERR_CANCELLED (or any status), as the daemon would.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include <kagzi/kagzi.hpp>

namespace {

using kagzi::Json;
using kagzi::Status;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------
// The fake host
// ---------------------------------------------------------------------------

enum class Kind { kStep, kSleep, kEvent, kChild, kNow, kRandom };

struct Entry {
  Kind kind = Kind::kStep;
  bool done = false;
  kagzi_status status = KAGZI_OK;
  std::string text;  // result, message or payload
  int attempts = 0;  // executions of a step function
  std::string via;   // "step", "step_with_policy" or "parallel"
  std::optional<kagzi_retry_policy> policy;
  std::int64_t timeout_ms = 0;  // event waits
  std::string name;             // event name, child workflow
  std::string input;            // child input
  std::int64_t clock = 0;       // now_ms
  std::uint64_t random = 0;     // random_u64
};

struct StepBuffer {
  std::string bytes;
};

class FakeHost {
 public:
  explicit FakeHost(std::string input, bool abi_1_0 = false)
      : input_(std::move(input)), table_(abi_1_0 ? &kTable10 : &kTable11) {}

  // One invocation of run() (a claim by a daemon).
  kagzi_status invoke(kagzi_run_fn run) {
    cursor_ = 0;
    suspended_ = false;
    in_step_ = false;
    output_.reset();
    error_.reset();
    thread_ = std::this_thread::get_id();
    const kagzi_status status = run(table_, reinterpret_cast<kagzi_context*>(this), nullptr);
    if (status != KAGZI_OK) output_.reset();
    return status;
  }

  // Knobs.
  std::string run_id = "7d1c2b3a-0000-4000-8000-0000000000bb";
  std::optional<std::string> cancel_at;  // that id's next call returns CANCELLED
  bool cancel_on_get_input = false;      // get_input returns CANCELLED once
  std::string cancel_reason;
  std::optional<std::pair<std::string, kagzi_status>> force;  // that id returns that status
  std::uint32_t default_attempts = 1;                         // plain step()'s policy
  bool timeouts_expire = true;  // a pending wait with a timeout times out on replay
  std::int64_t clock_ms = 1700000000123;
  std::uint64_t next_random = 0xfedcba9876543210ULL;
  std::map<std::string, std::deque<std::string>> events;
  void finish_child(const std::string& id, kagzi_status status, std::string text) {
    Entry& entry = journal.at(id);
    entry.done = true;
    entry.status = status;
    entry.text = std::move(text);
  }

  // Observations.
  std::map<std::string, Entry> journal;
  std::vector<std::string> order;
  int calls_after_suspend = 0;
  int wrong_thread_calls = 0;  // context calls from a thread other than run()'s
  int forbidden_calls = 0;     // 1.1 callbacks called through a 1.0 table
  std::uint32_t last_max_concurrency = 99;
  int parallel_calls = 0;
  std::atomic<int> running{0};
  std::atomic<int> max_running{0};
  std::optional<std::string> output() const { return output_; }
  std::optional<std::string> error() const { return error_; }
  std::vector<std::string> logs() const {
    std::lock_guard<std::mutex> lock(log_mutex_);
    return logs_;
  }

 private:
  static FakeHost& self(kagzi_context* ctx) { return *reinterpret_cast<FakeHost*>(ctx); }

  static void put(const std::string& text, const char** out, std::size_t* out_len) {
    if (out != nullptr) *out = text.c_str();
    if (out_len != nullptr) *out_len = text.size();
  }

  kagzi_status refuse(kagzi_status status, const char* why, const char** out,
                      std::size_t* out_len) {
    reason_ = why;
    put(reason_, out, out_len);
    return status;
  }

  // The checks every journal call starts with. Returns a status to return at
  // once, or nullopt to go on.
  std::optional<kagzi_status> gate(const char* id, const char** out, std::size_t* out_len) {
    if (std::this_thread::get_id() != thread_) {
      ++wrong_thread_calls;
      return refuse(KAGZI_ERR_MISUSE, "context used from another thread", out, out_len);
    }
    if (suspended_) {
      ++calls_after_suspend;
      return refuse(KAGZI_ERR_MISUSE, "context used after SUSPEND", out, out_len);
    }
    if (in_step_) return refuse(KAGZI_ERR_MISUSE, "context used inside a step", out, out_len);
    if (cancel_at && *cancel_at == id) {
      cancel_at.reset();
      // Delivered at a replayed entry that never finished (a parked wait, a
      // pending retry or child): the entry is abandoned, so the cleanup calls
      // that follow are new entries rather than a divergence from the journal.
      if (cursor_ < order.size() && order[cursor_] == id && !journal.at(id).done) {
        journal.erase(id);
        order.erase(order.begin() + static_cast<std::ptrdiff_t>(cursor_));
      }
      put(cancel_reason, out, out_len);
      return KAGZI_ERR_CANCELLED;
    }
    if (force && force->first == id) {
      const kagzi_status status = force->second;
      force.reset();
      suspended_ = status == KAGZI_SUSPEND;
      return refuse(status, "forced", out, out_len);
    }
    return std::nullopt;
  }

  // The journal entry for this call: the next one on replay (checked against
  // id and kind), or a new one. nullptr with *status set on a refusal.
  Entry* entry_for(const char* id, Kind kind, kagzi_status* status, const char** out,
                   std::size_t* out_len) {
    if (cursor_ < order.size()) {
      const std::string& expected = order[cursor_];
      Entry& entry = journal.at(expected);
      if (expected != id || entry.kind != kind) {
        *status = refuse(KAGZI_ERR_NONDETERMINISM, "journal mismatch", out, out_len);
        return nullptr;
      }
      ++cursor_;
      return &entry;
    }
    if (journal.count(id) != 0) {
      *status = refuse(KAGZI_ERR_MISUSE, "duplicate step id", out, out_len);
      return nullptr;
    }
    Entry& entry = journal[id];
    entry.kind = kind;
    order.emplace_back(id);
    ++cursor_;
    return &entry;
  }

  static kagzi_status write(const kagzi_writer* writer, const char* data, std::size_t len) {
    static_cast<StepBuffer*>(writer->host_data)->bytes.append(data, len);
    return KAGZI_OK;
  }

  // Runs a step function once for `entry`; thread-safe as long as entries differ.
  kagzi_status execute(Entry& entry, kagzi_step_fn fn, void* user, std::uint32_t max_attempts) {
    StepBuffer buffer;
    kagzi_writer writer{sizeof(kagzi_writer), KAGZI_ABI_MAJOR, KAGZI_ABI_MINOR, &buffer, &write};
    const int now_running = ++running;
    int seen = max_running.load();
    while (now_running > seen && !max_running.compare_exchange_weak(seen, now_running)) {
    }
    const kagzi_status status = fn(user, &writer);
    --running;
    ++entry.attempts;
    entry.text = buffer.bytes;
    if (status == KAGZI_OK) {
      if (entry.text.empty()) entry.text = "null";
      try {
        static_cast<void>(Json::parse(entry.text));
      } catch (const kagzi::CodecError&) {
        entry.done = true;
        entry.status = KAGZI_ERR_MISUSE;
        return KAGZI_ERR_MISUSE;
      }
    }
    if (status == KAGZI_ERR_RETRYABLE &&
        static_cast<std::uint32_t>(entry.attempts) < max_attempts) {
      return KAGZI_SUSPEND;  // pending: the next attempt is due later
    }
    entry.done = true;
    entry.status = status;
    return status;
  }

  kagzi_status run_step(const char* id, kagzi_step_fn fn, void* user,
                        const kagzi_retry_policy* policy, const char* via, const char** out,
                        std::size_t* out_len) {
    if (auto early = gate(id, out, out_len)) return *early;
    kagzi_status status = KAGZI_OK;
    Entry* entry = entry_for(id, Kind::kStep, &status, out, out_len);
    if (entry == nullptr) return status;
    entry->via = via;
    if (policy != nullptr) {
      if (policy->struct_size != sizeof(kagzi_retry_policy)) {
        return refuse(KAGZI_ERR_MISUSE, "bad policy", out, out_len);
      }
      entry->policy = *policy;
    }
    if (!entry->done) {
      in_step_ = true;
      status =
          execute(*entry, fn, user, policy != nullptr ? policy->max_attempts : default_attempts);
      in_step_ = false;
      if (status == KAGZI_SUSPEND) {
        suspended_ = true;
        return KAGZI_SUSPEND;
      }
    }
    put(entry->text, out, out_len);
    return entry->status;
  }

  // --- the callbacks ---

  static kagzi_status get_input(kagzi_context* ctx, const char** data, std::size_t* len) {
    FakeHost& host = self(ctx);
    if (host.cancel_on_get_input) {
      host.cancel_on_get_input = false;
      return KAGZI_ERR_CANCELLED;
    }
    *data = host.input_.c_str();
    *len = host.input_.size();
    return KAGZI_OK;
  }

  static kagzi_status step(kagzi_context* ctx, const char* id, kagzi_step_fn fn, void* user,
                           const char** out, std::size_t* out_len) {
    return self(ctx).run_step(id, fn, user, nullptr, "step", out, out_len);
  }

  static kagzi_status step_with_policy(kagzi_context* ctx, const char* id, kagzi_step_fn fn,
                                       void* user, const kagzi_retry_policy* policy,
                                       const char** out, std::size_t* out_len) {
    return self(ctx).run_step(id, fn, user, policy, "step_with_policy", out, out_len);
  }

  static kagzi_status sleep(kagzi_context* ctx, const char* id, std::uint64_t duration_ms) {
    FakeHost& host = self(ctx);
    if (auto early = host.gate(id, nullptr, nullptr)) return *early;
    kagzi_status status = KAGZI_OK;
    Entry* entry = host.entry_for(id, Kind::kSleep, &status, nullptr, nullptr);
    if (entry == nullptr) return status;
    if (entry->done) return KAGZI_OK;  // a recorded sleep has always expired here
    entry->done = true;
    entry->text = std::to_string(duration_ms);
    host.suspended_ = true;
    return KAGZI_SUSPEND;
  }

  static kagzi_status wait_for_event(kagzi_context* ctx, const char* id, const char* name,
                                     std::int64_t timeout_ms, const char** payload,
                                     std::size_t* payload_len) {
    FakeHost& host = self(ctx);
    if (auto early = host.gate(id, payload, payload_len)) return *early;
    kagzi_status status = KAGZI_OK;
    Entry* entry = host.entry_for(id, Kind::kEvent, &status, payload, payload_len);
    if (entry == nullptr) return status;
    const bool fresh = entry->name.empty();
    if (fresh) {
      entry->name = name;
      entry->timeout_ms = timeout_ms;
    } else if (entry->name != name) {
      return host.refuse(KAGZI_ERR_NONDETERMINISM, "event name changed", payload, payload_len);
    }
    if (!entry->done) {
      auto& queue = host.events[entry->name];
      if (!queue.empty()) {
        entry->done = true;
        entry->status = KAGZI_OK;
        entry->text = queue.front();
        queue.pop_front();
      } else if (timeout_ms == 0 || (timeout_ms > 0 && !fresh && host.timeouts_expire)) {
        entry->done = true;
        entry->status = KAGZI_ERR_TIMEOUT;
        entry->text.clear();
      } else {
        host.suspended_ = true;
        return KAGZI_SUSPEND;
      }
    }
    if (entry->status == KAGZI_OK) put(entry->text, payload, payload_len);
    return entry->status;
  }

  static kagzi_status call_child(kagzi_context* ctx, const char* id, const char* workflow,
                                 const char* input, std::size_t input_len, const char** out,
                                 std::size_t* out_len) {
    FakeHost& host = self(ctx);
    if (auto early = host.gate(id, out, out_len)) return *early;
    kagzi_status status = KAGZI_OK;
    Entry* entry = host.entry_for(id, Kind::kChild, &status, out, out_len);
    if (entry == nullptr) return status;
    if (entry->name.empty()) {
      entry->name = workflow;
      entry->input = std::string(input, input_len);
    }
    if (!entry->done) {
      host.suspended_ = true;
      return KAGZI_SUSPEND;
    }
    put(entry->text, out, out_len);
    return entry->status;
  }

  static kagzi_status parallel(kagzi_context* ctx, kagzi_parallel_step* steps, std::size_t count,
                               std::uint32_t max_concurrency) {
    FakeHost& host = self(ctx);
    ++host.parallel_calls;
    host.last_max_concurrency = max_concurrency;
    const char* group = count > 0 ? steps[0].step_id : "";
    if (auto early = host.gate(group, nullptr, nullptr)) return *early;
    std::vector<std::pair<kagzi_parallel_step*, Entry*>> todo;
    for (std::size_t i = 0; i < count; ++i) {
      kagzi_parallel_step& step = steps[i];
      if (step.struct_size != sizeof(kagzi_parallel_step) || step.reserved0 != 0) {
        return KAGZI_ERR_MISUSE;
      }
      kagzi_status status = KAGZI_OK;
      Entry* entry = host.entry_for(step.step_id, Kind::kStep, &status, nullptr, nullptr);
      if (entry == nullptr) return status;
      entry->via = "parallel";
      if (step.policy != nullptr) entry->policy = *step.policy;
      if (!entry->done) todo.emplace_back(&step, entry);
    }
    // Run the unfinished ones on threads, max_concurrency at a time.
    const std::size_t batch = max_concurrency == 0 ? todo.size() : max_concurrency;
    bool pending = false;
    for (std::size_t first = 0; first < todo.size(); first += batch) {
      std::vector<std::thread> threads;
      std::vector<kagzi_status> results(std::min(batch, todo.size() - first));
      for (std::size_t k = 0; k < results.size(); ++k) {
        auto [step, entry] = todo[first + k];
        const std::uint32_t attempts =
            step->policy != nullptr ? step->policy->max_attempts : host.default_attempts;
        threads.emplace_back([&host, &results, k, step = step, entry = entry, attempts] {
          results[k] = host.execute(*entry, step->fn, step->user, attempts);
        });
      }
      for (std::thread& thread : threads) thread.join();
      for (kagzi_status status : results) pending = pending || status == KAGZI_SUSPEND;
    }
    if (pending) {
      host.suspended_ = true;
      return KAGZI_SUSPEND;
    }
    for (std::size_t i = 0; i < count; ++i) {
      const Entry& entry = host.journal.at(steps[i].step_id);
      steps[i].status = entry.status;
      steps[i].out = entry.text.c_str();
      steps[i].out_len = entry.text.size();
    }
    return KAGZI_OK;
  }

  static kagzi_status now_ms(kagzi_context* ctx, const char* id, std::int64_t* unix_ms) {
    FakeHost& host = self(ctx);
    if (auto early = host.gate(id, nullptr, nullptr)) return *early;
    kagzi_status status = KAGZI_OK;
    Entry* entry = host.entry_for(id, Kind::kNow, &status, nullptr, nullptr);
    if (entry == nullptr) return status;
    if (!entry->done) {
      entry->done = true;
      entry->clock = host.clock_ms;
    }
    *unix_ms = entry->clock;
    return KAGZI_OK;
  }

  static kagzi_status random_u64(kagzi_context* ctx, const char* id, std::uint64_t* value) {
    FakeHost& host = self(ctx);
    if (auto early = host.gate(id, nullptr, nullptr)) return *early;
    kagzi_status status = KAGZI_OK;
    Entry* entry = host.entry_for(id, Kind::kRandom, &status, nullptr, nullptr);
    if (entry == nullptr) return status;
    if (!entry->done) {
      entry->done = true;
      entry->random = host.next_random;
    }
    *value = entry->random;
    return KAGZI_OK;
  }

  static kagzi_status set_output(kagzi_context* ctx, const char* json, std::size_t len) {
    FakeHost& host = self(ctx);
    if (host.suspended_) {
      ++host.calls_after_suspend;
      return KAGZI_ERR_MISUSE;
    }
    host.output_ = std::string(json, len);
    return KAGZI_OK;
  }

  static kagzi_status set_error(kagzi_context* ctx, const char* message, std::size_t len) {
    FakeHost& host = self(ctx);
    if (host.suspended_) {
      ++host.calls_after_suspend;
      return KAGZI_ERR_MISUSE;
    }
    host.error_ = std::string(message, len);
    return KAGZI_OK;
  }

  // Allowed from step functions, so from parallel worker threads too.
  static void log(kagzi_context* ctx, std::int32_t, const char* message, std::size_t len) {
    FakeHost& host = self(ctx);
    std::lock_guard<std::mutex> lock(host.log_mutex_);
    host.logs_.emplace_back(message, len);
  }

  static const void* get_extension(kagzi_context*, const char*) { return nullptr; }

  static kagzi_status get_run_id(kagzi_context* ctx, const char** id, std::size_t* len) {
    FakeHost& host = self(ctx);
    *id = host.run_id.c_str();
    *len = host.run_id.size();
    return KAGZI_OK;
  }

  // What a 1.0 host's table would hold beyond its end: never to be called.
  static kagzi_status forbidden_step(kagzi_context* ctx, const char*, kagzi_step_fn, void*,
                                     const kagzi_retry_policy*, const char**, std::size_t*) {
    ++self(ctx).forbidden_calls;
    return KAGZI_ERR_MISUSE;
  }
  static kagzi_status forbidden_wait(kagzi_context* ctx, const char*, const char*, std::int64_t,
                                     const char**, std::size_t*) {
    ++self(ctx).forbidden_calls;
    return KAGZI_ERR_MISUSE;
  }
  static kagzi_status forbidden_child(kagzi_context* ctx, const char*, const char*, const char*,
                                      std::size_t, const char**, std::size_t*) {
    ++self(ctx).forbidden_calls;
    return KAGZI_ERR_MISUSE;
  }
  static kagzi_status forbidden_parallel(kagzi_context* ctx, kagzi_parallel_step*, std::size_t,
                                         std::uint32_t) {
    ++self(ctx).forbidden_calls;
    return KAGZI_ERR_MISUSE;
  }
  static kagzi_status forbidden_now(kagzi_context* ctx, const char*, std::int64_t*) {
    ++self(ctx).forbidden_calls;
    return KAGZI_ERR_MISUSE;
  }
  static kagzi_status forbidden_random(kagzi_context* ctx, const char*, std::uint64_t*) {
    ++self(ctx).forbidden_calls;
    return KAGZI_ERR_MISUSE;
  }

 public:
  static constexpr kagzi_host kTable11{.struct_size = sizeof(kagzi_host),
                                       .abi_major = KAGZI_ABI_MAJOR,
                                       .abi_minor = 1,
                                       .get_input = &get_input,
                                       .step = &step,
                                       .sleep = &sleep,
                                       .set_output = &set_output,
                                       .set_error = &set_error,
                                       .log = &log,
                                       .get_extension = &get_extension,
                                       .get_run_id = &get_run_id,
                                       .step_with_policy = &step_with_policy,
                                       .wait_for_event = &wait_for_event,
                                       .call_child = &call_child,
                                       .parallel = &parallel,
                                       .now_ms = &now_ms,
                                       .random_u64 = &random_u64};
  // A 1.0 host: struct_size ends at get_run_id and abi_minor is 0. The slots
  // past the end hold functions that count calls, so reading them would show.
  static constexpr kagzi_host kTable10{.struct_size = offsetof(kagzi_host, step_with_policy),
                                       .abi_major = KAGZI_ABI_MAJOR,
                                       .abi_minor = 0,
                                       .get_input = &get_input,
                                       .step = &step,
                                       .sleep = &sleep,
                                       .set_output = &set_output,
                                       .set_error = &set_error,
                                       .log = &log,
                                       .get_extension = &get_extension,
                                       .get_run_id = &get_run_id,
                                       .step_with_policy = &forbidden_step,
                                       .wait_for_event = &forbidden_wait,
                                       .call_child = &forbidden_child,
                                       .parallel = &forbidden_parallel,
                                       .now_ms = &forbidden_now,
                                       .random_u64 = &forbidden_random};
  // Runs with an arbitrary table (for malformed tables).
  kagzi_status invoke_with(const kagzi_host* table, kagzi_run_fn run) {
    const kagzi_host* saved = table_;
    table_ = table;
    const kagzi_status status = invoke(run);
    table_ = saved;
    return status;
  }

 private:
  std::string input_;
  const kagzi_host* table_;
  std::thread::id thread_;
  std::size_t cursor_ = 0;
  bool suspended_ = false;
  bool in_step_ = false;
  std::string reason_;
  std::optional<std::string> output_;
  std::optional<std::string> error_;
  mutable std::mutex log_mutex_;
  std::vector<std::string> logs_;
};

// Finds a workflow of this test binary through the plugin entry, as a host would.
const kagzi_workflow* FindDescriptor(std::string_view name, std::uint32_t version) {
  const kagzi_plugin* plugin = kagzi_plugin_entry(KAGZI_ABI_MAJOR, KAGZI_ABI_MINOR);
  if (plugin == nullptr) return nullptr;
  for (std::uint32_t i = 0; i < plugin->workflow_count; ++i) {
    const kagzi_workflow& workflow = plugin->workflows[i];
    if (workflow.name == name && workflow.version == version) return &workflow;
  }
  return nullptr;
}

kagzi_run_fn FindWorkflow(std::string_view name) {
  const kagzi_workflow* workflow = FindDescriptor(name, 1);
  return workflow != nullptr ? workflow->run : nullptr;
}

// Counters bumped by step functions (some on parallel worker threads).
std::mutex g_mutex;
std::map<std::string, int> g_calls;
int Bump(const std::string& key) {
  std::lock_guard<std::mutex> lock(g_mutex);
  return ++g_calls[key];
}
int Calls(const std::string& key) {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_calls[key];
}
void ResetCalls() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_calls.clear();
}

Json Output(const FakeHost& host) {
  EXPECT_TRUE(host.output().has_value()) << host.error().value_or("(no error)");
  return Json::parse(host.output().value_or("null"));
}

}  // namespace

// ---------------------------------------------------------------------------
// Workflows under test
// ---------------------------------------------------------------------------

// A step under a retry policy that fails "fail" times first (retryably, or
// permanently with "permanent").
KAGZI_WORKFLOW(policy_step, 1, ctx, input) {
  const auto fail = input.value<int>("fail", 0);
  const bool permanent = input.value("permanent", false);
  const kagzi::RetryPolicy policy{.max_attempts = input.value<std::uint32_t>("attempts", 3),
                                  .initial_interval = 250ms,
                                  .max_interval = 4s,
                                  .multiplier = 3.0,
                                  .jitter = 0.0};
  try {
    const int value = ctx.step(
        "flaky",
        [&] {
          const int attempt = Bump("flaky");
          if (attempt <= fail) {
            if (permanent) throw kagzi::PermanentError("no " + std::to_string(attempt));
            throw kagzi::RetryableError("fail " + std::to_string(attempt));
          }
          return attempt;
        },
        policy);
    const std::string raw = ctx.step_raw(
        "raw", [] { return "[1]"; }, kagzi::RetryPolicy{});
    return Json{{"value", value}, {"raw", raw}};
  } catch (const kagzi::StepError& e) {
    return Json{{"error", e.message()}, {"retryable", e.retryable()}, {"step", e.step_id()}};
  }
}

// A plain step: host->step, never step_with_policy.
KAGZI_WORKFLOW(plain_step, 1, ctx, input) {
  return Json{{"v", ctx.step("plain", [] { return 5; })}};
}

// An invalid retry policy, chosen by input "which".
KAGZI_WORKFLOW(bad_policy, 1, ctx, input) {
  const auto which = input.at("which").as<std::string>();
  kagzi::RetryPolicy policy;
  if (which == "attempts") policy.max_attempts = 0;
  if (which == "initial") policy.initial_interval = 0ms;
  if (which == "max") policy.max_interval = 10ms;
  if (which == "multiplier") policy.multiplier = 0.5;
  if (which == "jitter") policy.jitter = 1.5;
  ctx.step(
      "p", [] {}, policy);
  return {};
}

// Cleanup on cancellation: steps a and b, and on Cancelled a cleanup step.
KAGZI_WORKFLOW(cancel_cleanup, 1, ctx, input) {
  try {
    ctx.step("a", [] { Bump("a"); });
    ctx.step("b", [] { Bump("b"); });
    return Json{{"finished", true}};
  } catch (const kagzi::Cancelled& e) {
    {
      std::lock_guard<std::mutex> lock(g_mutex);
      g_calls["reason:" + e.reason()] = 1;
    }
    EXPECT_EQ(e.status(), Status::kCancelled);
    EXPECT_TRUE(ctx.cancelled());
    ctx.step("cleanup", [] { Bump("cleanup"); });
    throw;
  }
}

// Swallows Cancelled and completes: the run still ends CANCELLED.
KAGZI_WORKFLOW(cancel_swallow, 1, ctx, input) {
  try {
    ctx.step("a", [] { Bump("a"); });
  } catch (const std::exception&) {  // Cancelled is a std::exception
    Bump("swallowed");
  }
  ctx.step("after", [] { Bump("after"); });
  return Json{{"done", true}};
}

// Cancellation delivered by each kind of context call ("kind" in the input).
KAGZI_WORKFLOW(cancel_kinds, 1, ctx, input) {
  const auto kind = input.at("kind").as<std::string>();
  try {
    if (kind == "sleep") ctx.sleep("x", 1s);
    if (kind == "policy")
      ctx.step(
          "x", [] {}, kagzi::RetryPolicy{});
    if (kind == "wait") static_cast<void>(ctx.wait_for_event("x", "go", 1s));
    if (kind == "now") static_cast<void>(ctx.now("x"));
    if (kind == "random") static_cast<void>(ctx.random("x"));
    if (kind == "parallel") ctx.parallel(kagzi::Par("x", [] { Bump("x-ran"); }));
    if (kind == "map") ctx.parallel_map("x", std::vector<int>{1}, [](int) {});
  } catch (const kagzi::Cancelled& e) {
    Bump("cancelled:" + kind);
    throw;
  }
  return {};
}

// Waits for event "go" with input "timeout_ms" (absent: forever), typed as
// input "type" ("json" or "int").
KAGZI_WORKFLOW(waiter, 1, ctx, input) {
  ctx.step("before", [] { Bump("before"); });
  Json payload;
  bool timed_out = false;
  if (input.value("type", "json") == "int") {
    const std::optional<int> value = ctx.wait_for_event<int>("wait", "go");
    payload = value ? Json(*value) : Json();
  } else {
    std::optional<Json> value;
    if (const Json* ms = input.find("timeout_ms")) {
      value = ctx.wait_for_event("wait", "go", std::chrono::milliseconds(ms->as<std::int64_t>()));
    } else {
      value = ctx.wait_for_event("wait", "go");
    }
    timed_out = !value.has_value();
    payload = value.value_or(Json());
  }
  ctx.step("after", [] { Bump("after"); });
  return Json{{"payload", payload}, {"timed_out", timed_out}};
}

// Calls child "child" with input "input"; reports a failure.
KAGZI_WORKFLOW(parent, 1, ctx, input) {
  try {
    const Json output = ctx.call_child("kid", input.at("child").as<std::string>(), input["input"]);
    return Json{{"child", output}};
  } catch (const kagzi::StepError& e) {
    return Json{{"error", e.message()},
                {"status", static_cast<int>(e.status())},
                {"cancelled", e.cancelled()},
                {"step", e.step_id()}};
  }
}

// Typed children: a braced object input, a string input, typed outputs.
KAGZI_WORKFLOW(typed_parent, 1, ctx, input) {
  const int doubled = ctx.call_child<int>("kid-int", "double", {{"n", 21}});
  const std::string echoed = ctx.call_child<std::string>("kid-str", "echo", "hi \"there\"");
  const Json nothing = ctx.call_child("kid-null", "noop");
  return Json{{"doubled", doubled}, {"echoed", echoed}, {"nothing", nothing}};
}

// Per-element outcomes: a value, a retried failure, a permanent failure, void.
KAGZI_WORKFLOW(par_outcomes, 1, ctx, input) {
  const auto fail_b = input.value<int>("fail_b", 0);
  const kagzi::RetryPolicy twice{.max_attempts = 2, .initial_interval = 10ms, .jitter = 0.0};
  auto [a, b, c, d] = ctx.parallel_outcomes(
      kagzi::Par("a",
                 [&] {
                   Bump("a");
                   ctx.info("a on a worker");  // logging is allowed in any step
                   return std::string("A");
                 }),
      kagzi::Par(
          "b",
          [&] {
            if (Bump("b") <= fail_b) throw kagzi::RetryableError("b down");
            return 2;
          },
          twice),
      kagzi::Par("c",
                 []() -> int {
                   Bump("c");
                   throw kagzi::PermanentError("c broke");
                 }),
      kagzi::Par("d", [] { Bump("d"); }));
  static_assert(std::is_same_v<decltype(a), kagzi::Outcome<std::string>>);
  static_assert(std::is_same_v<decltype(b), kagzi::Outcome<int>>);
  static_assert(std::is_same_v<decltype(d), kagzi::Outcome<void>>);
  Json out{{"a", a.value()}, {"d_ok", d.ok()}};
  out["b"] = b ? Json(b.value()) : Json(b.error()->message());
  out["b_retryable"] = b ? false : b.error()->retryable();
  out["c_error"] = c.error() != nullptr ? Json(c.error()->what()) : Json();
  return out;
}

// parallel() throws the first failed element's StepError after all ran.
KAGZI_WORKFLOW(par_throw, 1, ctx, input) {
  try {
    ctx.parallel(kagzi::MaxConcurrency{2}, kagzi::Par("ok", [] { return Bump("ok"); }),
                 kagzi::Par("bad1",
                            [] {
                              Bump("bad1");
                              throw kagzi::PermanentError("one");
                            }),
                 kagzi::Par("bad2", [] {
                   Bump("bad2");
                   throw kagzi::PermanentError("two");
                 }));
    return Json{{"thrown", false}};
  } catch (const kagzi::StepError& e) {
    return Json{{"thrown", true}, {"step", e.step_id()}, {"message", e.message()}};
  }
}

// parallel() values, including a Par held in a variable and a void element.
KAGZI_WORKFLOW(par_values, 1, ctx, input) {
  const auto make = kagzi::Par("made", [] { return std::vector<int>{1, 2}; });
  auto [x, y, z] =
      ctx.parallel(kagzi::Par("x", [] { return 1; }), make, kagzi::Par("z", [] { Bump("z"); }));
  static_assert(std::is_same_v<decltype(x), int>);
  static_assert(std::is_same_v<decltype(y), std::vector<int>>);
  static_assert(std::is_same_v<decltype(z), std::monostate>);
  return Json{{"x", x}, {"y", y}};
}

// parallel_map over input "n" items, squaring, with "fail_index", "limit",
// "sleep_ms" and "policy".
KAGZI_WORKFLOW(squares, 1, ctx, input) {
  const auto n = input.value<int>("n", 4);
  const auto fail_index = input.value<int>("fail_index", -1);
  const auto limit = input.value<std::uint32_t>("limit", 0);
  const auto sleep_ms = input.value<int>("sleep_ms", 0);
  std::vector<int> items;
  for (int i = 0; i < n; ++i) items.push_back(i);
  const auto square = [&](int i) {
    Bump("sq-" + std::to_string(i));
    if (sleep_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
    if (i == fail_index) throw kagzi::PermanentError("bad " + std::to_string(i));
    return i * i;
  };
  if (input.value("outcomes", false)) {
    const auto outcomes =
        input.value("policy", false)
            ? ctx.parallel_map_outcomes("sq", items, square, limit, kagzi::RetryPolicy{})
            : ctx.parallel_map_outcomes("sq", items, square, limit);
    Json out = Json::array();
    for (const auto& outcome : outcomes) {
      out.push_back(outcome ? Json(outcome.value()) : Json(outcome.error()->what()));
    }
    return Json{{"outcomes", out}};
  }
  try {
    return Json{{"squares", ctx.parallel_map("sq", items, square, limit)}};
  } catch (const kagzi::StepError& e) {
    return Json{{"error", e.what()}};
  }
}

// A parallel step that uses the context: refused on the worker thread.
KAGZI_WORKFLOW(par_misuse, 1, ctx, input) {
  auto [inner] = ctx.parallel_outcomes(kagzi::Par("outer", [&] { ctx.step("inner", [] {}); }));
  return Json{{"error", inner.error() != nullptr ? Json(inner.error()->message()) : Json()}};
}

// Deterministic helpers across a sleep.
KAGZI_WORKFLOW(helpers, 1, ctx, input) {
  const auto t0 = ctx.now("t0");
  const std::uint64_t r = ctx.random("r");
  ctx.sleep("nap", 1s);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(t0.time_since_epoch()).count();
  return Json{{"t0", ms}, {"r", std::to_string(r)}};
}

// Workflow default timeouts.
KAGZI_WORKFLOW_WITH_TIMEOUT(timed, 1, 1500, ctx, input) { return {}; }
KAGZI_WORKFLOW_NAMED_WITH_TIMEOUT(timed_chrono, "timed.chrono", 1, std::chrono::minutes(2), ctx,
                                  input) {
  return {};
}
KAGZI_WORKFLOW_WITH_TIMEOUT(timed_round, 1, std::chrono::microseconds(1500), ctx, input) {
  return {};
}

KAGZI_PLUGIN("kagzi-hpp-1.1-test", "0.0.1");

namespace {

// ---------------------------------------------------------------------------
// Value types
// ---------------------------------------------------------------------------

TEST(RetryPolicy, DefaultsAreTheDaemonDefaults) {
  const kagzi::RetryPolicy policy;
  EXPECT_EQ(policy.max_attempts, 3u);
  EXPECT_EQ(policy.initial_interval, 1s);
  EXPECT_EQ(policy.max_interval, 60s);
  EXPECT_EQ(policy.multiplier, 2.0);
  EXPECT_EQ(policy.jitter, 0.2);
  const kagzi_retry_policy native = policy.to_native();
  EXPECT_EQ(native.struct_size, sizeof(kagzi_retry_policy));
  EXPECT_EQ(native.max_attempts, 3u);
  EXPECT_EQ(native.initial_interval_ms, 1000u);
  EXPECT_EQ(native.max_interval_ms, 60000u);
  EXPECT_EQ(native.multiplier, 2.0);
  EXPECT_EQ(native.jitter, 0.2);
  EXPECT_EQ(kagzi::RetryPolicy::no_retry().max_attempts, 1u);
  // Designated initializers, durations of any unit that converts exactly.
  const kagzi::RetryPolicy custom{.max_attempts = 7, .initial_interval = 2s, .max_interval = 1min};
  EXPECT_EQ(custom.to_native().initial_interval_ms, 2000u);
  EXPECT_EQ(custom.to_native().max_interval_ms, 60000u);
  EXPECT_EQ(custom.multiplier, 2.0);
}

TEST(Outcome, ValueOrError) {
  kagzi::Outcome<int> good(5);
  EXPECT_TRUE(good.ok());
  EXPECT_TRUE(static_cast<bool>(good));
  EXPECT_EQ(good.value(), 5);
  EXPECT_EQ(good.error(), nullptr);
  const kagzi::Outcome<int> bad(kagzi::StepError("s", Status::kRetryable, "m"));
  EXPECT_FALSE(bad.ok());
  ASSERT_NE(bad.error(), nullptr);
  EXPECT_EQ(bad.error()->step_id(), "s");
  EXPECT_THROW(static_cast<void>(bad.value()), kagzi::StepError);
  const kagzi::Outcome<void> done;
  EXPECT_TRUE(done.ok());
  EXPECT_NO_THROW(done.value());
  const kagzi::Outcome<void> failed(kagzi::StepError("v", Status::kPermanent, "x"));
  EXPECT_THROW(failed.throw_if_failed(), kagzi::StepError);
  kagzi::Outcome<std::string> text(std::string("moved"));
  EXPECT_EQ(std::move(text).value(), "moved");
}

TEST(Errors, CancelledAndStepErrorStatuses) {
  const kagzi::Cancelled cancelled("by ops");
  EXPECT_EQ(cancelled.status(), Status::kCancelled);
  EXPECT_EQ(cancelled.reason(), "by ops");
  EXPECT_STREQ(cancelled.what(), "run cancelled: by ops");
  EXPECT_STREQ(kagzi::Cancelled("").what(), "run cancelled");
  const kagzi::Error& as_error = cancelled;
  const std::exception& as_std = cancelled;
  EXPECT_EQ(as_error.status(), Status::kCancelled);
  EXPECT_STREQ(as_std.what(), "run cancelled: by ops");
  const kagzi::StepError child("kid", Status::kCancelled, "gone");
  EXPECT_TRUE(child.cancelled());
  EXPECT_FALSE(child.retryable());
  EXPECT_EQ(static_cast<kagzi_status>(Status::kTimeout), KAGZI_ERR_TIMEOUT);
  EXPECT_EQ(static_cast<kagzi_status>(Status::kCancelled), KAGZI_ERR_CANCELLED);
}

// ---------------------------------------------------------------------------
// Retry policies
// ---------------------------------------------------------------------------

TEST(Retry, RetryableFailuresParkThenSucceed) {
  ResetCalls();
  const kagzi_run_fn run = FindWorkflow("policy_step");
  FakeHost host(R"({"fail": 2, "attempts": 3})");
  EXPECT_EQ(host.invoke(run), KAGZI_SUSPEND);  // attempt 1 failed: parked like a sleep
  EXPECT_EQ(host.calls_after_suspend, 0);
  EXPECT_FALSE(host.journal.at("flaky").done);
  EXPECT_EQ(host.invoke(run), KAGZI_SUSPEND);  // attempt 2
  EXPECT_EQ(host.invoke(run), KAGZI_OK);       // attempt 3 succeeds
  EXPECT_EQ(Output(host), (Json{{"value", 3}, {"raw", "[1]"}}));
  const Entry& flaky = host.journal.at("flaky");
  EXPECT_EQ(flaky.via, "step_with_policy");
  EXPECT_EQ(flaky.attempts, 3);
  ASSERT_TRUE(flaky.policy.has_value());
  EXPECT_EQ(flaky.policy->struct_size, sizeof(kagzi_retry_policy));
  EXPECT_EQ(flaky.policy->max_attempts, 3u);
  EXPECT_EQ(flaky.policy->initial_interval_ms, 250u);
  EXPECT_EQ(flaky.policy->max_interval_ms, 4000u);
  EXPECT_EQ(flaky.policy->multiplier, 3.0);
  EXPECT_EQ(flaky.policy->jitter, 0.0);
  EXPECT_EQ(host.journal.at("raw").via, "step_with_policy");
  EXPECT_EQ(host.journal.at("raw").policy->max_attempts, 3u);  // RetryPolicy{} = defaults
  // Replay: recorded, nothing runs again.
  EXPECT_EQ(host.invoke(run), KAGZI_OK);
  EXPECT_EQ(Calls("flaky"), 3);
  EXPECT_EQ(Output(host), (Json{{"value", 3}, {"raw", "[1]"}}));
}

TEST(Retry, ExhaustedAttemptsThrowStepErrorWithTheLastMessage) {
  ResetCalls();
  const kagzi_run_fn run = FindWorkflow("policy_step");
  FakeHost host(R"({"fail": 5, "attempts": 2})");
  EXPECT_EQ(host.invoke(run), KAGZI_SUSPEND);
  EXPECT_EQ(host.invoke(run), KAGZI_OK);
  EXPECT_EQ(Output(host), (Json{{"error", "fail 2"}, {"retryable", true}, {"step", "flaky"}}));
  EXPECT_EQ(Calls("flaky"), 2);
  EXPECT_EQ(host.invoke(run), KAGZI_OK);  // replayed failure, no third attempt
  EXPECT_EQ(Calls("flaky"), 2);
}

TEST(Retry, PermanentFailureIsNotRetried) {
  ResetCalls();
  FakeHost host(R"({"fail": 5, "attempts": 4, "permanent": true})");
  EXPECT_EQ(host.invoke(FindWorkflow("policy_step")), KAGZI_OK);
  EXPECT_EQ(Output(host), (Json{{"error", "no 1"}, {"retryable", false}, {"step", "flaky"}}));
  EXPECT_EQ(Calls("flaky"), 1);
}

TEST(Retry, PlainStepUsesHostStep) {
  FakeHost host("{}");
  EXPECT_EQ(host.invoke(FindWorkflow("plain_step")), KAGZI_OK);
  EXPECT_EQ(host.journal.at("plain").via, "step");
  EXPECT_FALSE(host.journal.at("plain").policy.has_value());
}

TEST(Retry, InvalidPoliciesFailTheRunBeforeCallingTheHost) {
  for (const auto& [which, message] : std::vector<std::pair<std::string, std::string>>{
           {"attempts", "max_attempts must be >= 1"},
           {"initial", "initial_interval must be >= 1 ms"},
           {"max", "max_interval must be >= initial_interval"},
           {"multiplier", "multiplier must be a finite number >= 1.0"},
           {"jitter", "jitter must be between 0.0 and 1.0"}}) {
    SCOPED_TRACE(which);
    FakeHost host(Json{{"which", which}}.dump());
    EXPECT_EQ(host.invoke(FindWorkflow("bad_policy")), KAGZI_ERR_PERMANENT);
    EXPECT_EQ(host.error(), "step 'p': invalid retry policy: " + message);
    EXPECT_TRUE(host.journal.empty());
  }
}

// ---------------------------------------------------------------------------
// Cancellation
// ---------------------------------------------------------------------------

TEST(Cancel, CaughtCancelledRunsCleanupStepsThenEndsCancelled) {
  ResetCalls();
  FakeHost host("{}");
  host.cancel_at = "b";
  host.cancel_reason = "operator said so";
  EXPECT_EQ(host.invoke(FindWorkflow("cancel_cleanup")), KAGZI_ERR_CANCELLED);
  EXPECT_EQ(host.order, (std::vector<std::string>{"a", "cleanup"}));  // b never ran
  EXPECT_EQ(Calls("a"), 1);
  EXPECT_EQ(Calls("b"), 0);
  EXPECT_EQ(Calls("cleanup"), 1);
  EXPECT_EQ(Calls("reason:operator said so"), 1);
  EXPECT_EQ(host.error(), "run cancelled: operator said so");
  EXPECT_FALSE(host.output());
}

TEST(Cancel, CancelledAtAParkedWaitRunsCleanup) {
  ResetCalls();
  const kagzi_run_fn run = FindWorkflow("cancel_kinds");
  FakeHost host(R"({"kind": "wait"})");
  EXPECT_EQ(host.invoke(run), KAGZI_SUSPEND);  // parked in the wait
  host.cancel_at = "x";
  EXPECT_EQ(host.invoke(run), KAGZI_ERR_CANCELLED);
  EXPECT_EQ(Calls("cancelled:wait"), 1);
}

TEST(Cancel, CancelledBeforeTheBodyIsDeliveredAtTheFirstCall) {
  ResetCalls();
  FakeHost host("{}");
  host.cancel_on_get_input = true;
  EXPECT_EQ(host.invoke(FindWorkflow("cancel_cleanup")), KAGZI_ERR_CANCELLED);
  EXPECT_EQ(host.order, (std::vector<std::string>{"cleanup"}));
  EXPECT_EQ(Calls("a"), 0);
  EXPECT_EQ(Calls("reason:"), 1);
}

TEST(Cancel, SwallowedCancelledStillEndsCancelled) {
  ResetCalls();
  FakeHost host("{}");
  host.cancel_at = "a";
  EXPECT_EQ(host.invoke(FindWorkflow("cancel_swallow")), KAGZI_ERR_CANCELLED);
  EXPECT_EQ(Calls("swallowed"), 1);
  EXPECT_EQ(Calls("after"), 1);  // later calls work again
  EXPECT_FALSE(host.output());
}

TEST(Cancel, EveryKindOfCallDeliversIt) {
  for (const char* kind : {"sleep", "policy", "wait", "now", "random", "parallel", "map"}) {
    SCOPED_TRACE(kind);
    ResetCalls();
    FakeHost host(Json{{"kind", kind}}.dump());
    host.cancel_at = std::string(kind) == "map" ? "x-0" : "x";
    EXPECT_EQ(host.invoke(FindWorkflow("cancel_kinds")), KAGZI_ERR_CANCELLED);
    EXPECT_EQ(Calls(std::string("cancelled:") + kind), 1);
    EXPECT_EQ(Calls("x-ran"), 0);
    EXPECT_TRUE(host.journal.empty());
  }
}

// plugin.h: a cancelled child reports KAGZI_ERR_PERMANENT with a message;
// the parent goes on.
TEST(Cancel, AChildsCancellationIsAPermanentStepError) {
  FakeHost host(R"({"child": "c", "input": null})");
  const kagzi_run_fn run = FindWorkflow("parent");
  EXPECT_EQ(host.invoke(run), KAGZI_SUSPEND);
  host.finish_child("kid", KAGZI_ERR_PERMANENT, "child run c was cancelled: by ops");
  EXPECT_EQ(host.invoke(run), KAGZI_OK);
  EXPECT_EQ(Output(host), (Json{{"error", "child run c was cancelled: by ops"},
                                {"status", KAGZI_ERR_PERMANENT},
                                {"cancelled", false},
                                {"step", "kid"}}));
}

// KAGZI_ERR_CANCELLED from call_child means this run was cancelled: it is
// kagzi::Cancelled (not a StepError), and the run ends CANCELLED.
TEST(Cancel, CancelledFromACallChildCancelsThisRun) {
  FakeHost host(R"({"child": "c", "input": null})");
  const kagzi_run_fn run = FindWorkflow("parent");
  EXPECT_EQ(host.invoke(run), KAGZI_SUSPEND);
  host.finish_child("kid", KAGZI_ERR_CANCELLED, "by ops");
  EXPECT_EQ(host.invoke(run), KAGZI_ERR_CANCELLED);
}

// ---------------------------------------------------------------------------
// Other host statuses
// ---------------------------------------------------------------------------

TEST(Statuses, UnexpectedStatusesUnwindLikeSuspend) {
  ResetCalls();
  // The host ends the invocation with TIMEOUT at a step (a run deadline):
  // not catchable as std::exception, returned from run() as is.
  FakeHost host("{}");
  host.force = std::make_pair(std::string("a"), KAGZI_ERR_TIMEOUT);
  EXPECT_EQ(host.invoke(FindWorkflow("cancel_swallow")), KAGZI_ERR_TIMEOUT);
  EXPECT_EQ(Calls("swallowed"), 0);
  EXPECT_EQ(Calls("after"), 0);
  EXPECT_EQ(host.calls_after_suspend, 0);
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

TEST(Events, AnEventSentBeforeTheWaitIsKept) {
  ResetCalls();
  FakeHost host("{}");
  host.events["go"].push_back(R"({"x":1})");
  EXPECT_EQ(host.invoke(FindWorkflow("waiter")), KAGZI_OK);
  EXPECT_EQ(Output(host), (Json{{"payload", Json{{"x", 1}}}, {"timed_out", false}}));
  EXPECT_TRUE(host.events["go"].empty());  // consumed once
  EXPECT_EQ(host.journal.at("wait").timeout_ms, -1);
}

TEST(Events, WaitParksUntilTheEventArrives) {
  ResetCalls();
  const kagzi_run_fn run = FindWorkflow("waiter");
  FakeHost host(R"({"timeout_ms": 60000})");
  host.timeouts_expire = false;
  EXPECT_EQ(host.invoke(run), KAGZI_SUSPEND);
  EXPECT_EQ(host.journal.at("wait").timeout_ms, 60000);
  EXPECT_EQ(host.journal.at("wait").name, "go");
  EXPECT_EQ(host.invoke(run), KAGZI_SUSPEND);  // still nothing
  host.events["go"].push_back("[1,2]");
  EXPECT_EQ(host.invoke(run), KAGZI_OK);
  EXPECT_EQ(Output(host), (Json{{"payload", Json::array({1, 2})}, {"timed_out", false}}));
  EXPECT_EQ(Calls("before"), 1);
  EXPECT_EQ(Calls("after"), 1);
  host.events["go"].push_back("[3]");  // a second event is not consumed by a replay
  EXPECT_EQ(host.invoke(run), KAGZI_OK);
  EXPECT_EQ(Output(host), (Json{{"payload", Json::array({1, 2})}, {"timed_out", false}}));
  EXPECT_EQ(host.events["go"].size(), 1u);
}

TEST(Events, TimeoutReturnsNullopt) {
  ResetCalls();
  const kagzi_run_fn run = FindWorkflow("waiter");
  FakeHost host(R"({"timeout_ms": 1500})");
  EXPECT_EQ(host.invoke(run), KAGZI_SUSPEND);
  EXPECT_EQ(host.invoke(run), KAGZI_OK);
  EXPECT_EQ(Output(host), (Json{{"payload", nullptr}, {"timed_out", true}}));
  EXPECT_EQ(host.journal.at("wait").status, KAGZI_ERR_TIMEOUT);
  EXPECT_EQ(host.invoke(run), KAGZI_OK);  // replayed timeout
  EXPECT_EQ(Output(host), (Json{{"payload", nullptr}, {"timed_out", true}}));
}

TEST(Events, ZeroAndNegativeTimeoutsPoll) {
  for (const char* input : {R"({"timeout_ms": 0})", R"({"timeout_ms": -5})"}) {
    SCOPED_TRACE(input);
    FakeHost host(input);
    EXPECT_EQ(host.invoke(FindWorkflow("waiter")), KAGZI_OK);  // no park
    EXPECT_EQ(host.journal.at("wait").timeout_ms, 0);
    EXPECT_EQ(Output(host).at("timed_out"), Json(true));
  }
}

TEST(Events, NoTimeoutWaitsForever) {
  FakeHost host("{}");
  const kagzi_run_fn run = FindWorkflow("waiter");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(host.invoke(run), KAGZI_SUSPEND);
  host.events["go"].push_back("null");
  EXPECT_EQ(host.invoke(run), KAGZI_OK);
  EXPECT_EQ(Output(host), (Json{{"payload", nullptr}, {"timed_out", false}}));
}

TEST(Events, TypedPayloads) {
  FakeHost good(R"({"type": "int"})");
  good.events["go"].push_back("42");
  EXPECT_EQ(good.invoke(FindWorkflow("waiter")), KAGZI_OK);
  EXPECT_EQ(Output(good).at("payload"), Json(42));

  FakeHost bad(R"({"type": "int"})");
  bad.events["go"].push_back(R"("forty-two")");
  EXPECT_EQ(bad.invoke(FindWorkflow("waiter")), KAGZI_ERR_PERMANENT);
  EXPECT_EQ(bad.error()->rfind("event wait 'wait': payload does not decode: ", 0), 0u)
      << *bad.error();
}

// ---------------------------------------------------------------------------
// Child workflows
// ---------------------------------------------------------------------------

TEST(Child, ParksUntilTheChildFinishesAndReturnsItsOutput) {
  const kagzi_run_fn run = FindWorkflow("parent");
  FakeHost host(R"({"child": "child_ok", "input": {"n": 4}})");
  EXPECT_EQ(host.invoke(run), KAGZI_SUSPEND);
  EXPECT_EQ(host.journal.at("kid").name, "child_ok");
  EXPECT_EQ(host.journal.at("kid").input, R"({"n":4})");
  EXPECT_EQ(host.invoke(run), KAGZI_SUSPEND);  // still running
  host.finish_child("kid", KAGZI_OK, R"({"doubled":8})");
  EXPECT_EQ(host.invoke(run), KAGZI_OK);
  EXPECT_EQ(Output(host), (Json{{"child", Json{{"doubled", 8}}}}));
  EXPECT_EQ(host.order, (std::vector<std::string>{"kid"}));  // started once
}

TEST(Child, FailureIsAStepErrorWithTheChildsMessage) {
  const kagzi_run_fn run = FindWorkflow("parent");
  FakeHost host(R"({"child": "child_fail"})");
  EXPECT_EQ(host.invoke(run), KAGZI_SUSPEND);
  EXPECT_EQ(host.journal.at("kid").input, "null");
  host.finish_child("kid", KAGZI_ERR_PERMANENT, "step 'work' failed: child says no");
  EXPECT_EQ(host.invoke(run), KAGZI_OK);
  EXPECT_EQ(Output(host), (Json{{"error", "step 'work' failed: child says no"},
                                {"status", KAGZI_ERR_PERMANENT},
                                {"cancelled", false},
                                {"step", "kid"}}));
}

TEST(Child, TypedInputsAndOutputs) {
  const kagzi_run_fn run = FindWorkflow("typed_parent");
  FakeHost host("{}");
  EXPECT_EQ(host.invoke(run), KAGZI_SUSPEND);
  EXPECT_EQ(host.journal.at("kid-int").input, R"({"n":21})");
  host.finish_child("kid-int", KAGZI_OK, "42");
  EXPECT_EQ(host.invoke(run), KAGZI_SUSPEND);
  EXPECT_EQ(host.journal.at("kid-str").input, R"("hi \"there\"")");
  host.finish_child("kid-str", KAGZI_OK, R"("back")");
  EXPECT_EQ(host.invoke(run), KAGZI_SUSPEND);
  EXPECT_EQ(host.journal.at("kid-null").input, "null");
  host.finish_child("kid-null", KAGZI_OK, "");  // empty output reads as null
  EXPECT_EQ(host.invoke(run), KAGZI_OK);
  EXPECT_EQ(Output(host), (Json{{"doubled", 42}, {"echoed", "back"}, {"nothing", nullptr}}));

  FakeHost bad("{}");
  EXPECT_EQ(bad.invoke(run), KAGZI_SUSPEND);
  bad.finish_child("kid-int", KAGZI_OK, R"({"not":"an int"})");
  EXPECT_EQ(bad.invoke(run), KAGZI_ERR_PERMANENT);
  EXPECT_EQ(bad.error()->rfind("child 'kid-int': output does not decode: ", 0), 0u) << *bad.error();
}

// ---------------------------------------------------------------------------
// Parallel steps
// ---------------------------------------------------------------------------

TEST(Parallel, OutcomesPerElementWithRetriesAndReplay) {
  ResetCalls();
  const kagzi_run_fn run = FindWorkflow("par_outcomes");
  FakeHost host(R"({"fail_b": 1})");
  // b fails once under its policy (2 attempts): the group parks.
  EXPECT_EQ(host.invoke(run), KAGZI_SUSPEND);
  EXPECT_EQ(Calls("a"), 1);
  EXPECT_EQ(Calls("b"), 1);
  EXPECT_EQ(Calls("c"), 1);
  EXPECT_EQ(Calls("d"), 1);
  EXPECT_EQ(host.calls_after_suspend, 0);
  // Replay: only b runs again.
  EXPECT_EQ(host.invoke(run), KAGZI_OK);
  EXPECT_EQ(Calls("a"), 1);
  EXPECT_EQ(Calls("b"), 2);
  EXPECT_EQ(Calls("c"), 1);
  EXPECT_EQ(Calls("d"), 1);
  const Json expected{{"a", "A"},
                      {"d_ok", true},
                      {"b", 2},
                      {"b_retryable", false},
                      {"c_error", "step 'c' failed: c broke"}};
  EXPECT_EQ(Output(host), expected);
  EXPECT_EQ(host.journal.at("a").via, "parallel");
  EXPECT_FALSE(host.journal.at("a").policy.has_value());  // daemon default
  ASSERT_TRUE(host.journal.at("b").policy.has_value());
  EXPECT_EQ(host.journal.at("b").policy->max_attempts, 2u);
  EXPECT_EQ(host.journal.at("b").policy->initial_interval_ms, 10u);
  EXPECT_EQ(host.last_max_concurrency, 0u);
  EXPECT_EQ(host.wrong_thread_calls, 0);
  const auto logs = host.logs();
  EXPECT_NE(std::find(logs.begin(), logs.end(), "a on a worker"), logs.end());
  // Everything recorded: nothing runs on another replay.
  EXPECT_EQ(host.invoke(run), KAGZI_OK);
  EXPECT_EQ(Output(host), expected);
  EXPECT_EQ(Calls("a") + Calls("b") + Calls("c") + Calls("d"), 5);
}

TEST(Parallel, ExhaustedRetriesInAnElement) {
  ResetCalls();
  const kagzi_run_fn run = FindWorkflow("par_outcomes");
  FakeHost host(R"({"fail_b": 9})");
  EXPECT_EQ(host.invoke(run), KAGZI_SUSPEND);
  EXPECT_EQ(host.invoke(run), KAGZI_OK);
  EXPECT_EQ(Output(host).at("b"), Json("b down"));
  EXPECT_EQ(Output(host).at("b_retryable"), Json(true));
}

TEST(Parallel, ParallelThrowsTheFirstFailureAfterAllRan) {
  ResetCalls();
  FakeHost host("{}");
  EXPECT_EQ(host.invoke(FindWorkflow("par_throw")), KAGZI_OK);
  EXPECT_EQ(Output(host), (Json{{"thrown", true}, {"step", "bad1"}, {"message", "one"}}));
  EXPECT_EQ(Calls("ok"), 1);
  EXPECT_EQ(Calls("bad1"), 1);
  EXPECT_EQ(Calls("bad2"), 1);
  EXPECT_EQ(host.last_max_concurrency, 2u);
}

TEST(Parallel, ValuesInATuple) {
  ResetCalls();
  FakeHost host("{}");
  EXPECT_EQ(host.invoke(FindWorkflow("par_values")), KAGZI_OK);
  EXPECT_EQ(Output(host), (Json{{"x", 1}, {"y", Json::array({1, 2})}}));
  EXPECT_EQ(host.order, (std::vector<std::string>{"x", "made", "z"}));
  EXPECT_EQ(host.journal.at("z").text, "null");
}

TEST(Parallel, MapRunsConcurrentlyAndKeepsOrder) {
  ResetCalls();
  FakeHost host(R"({"n": 4, "sleep_ms": 100})");
  EXPECT_EQ(host.invoke(FindWorkflow("squares")), KAGZI_OK);
  EXPECT_EQ(Output(host), (Json{{"squares", Json::array({0, 1, 4, 9})}}));
  EXPECT_EQ(host.order, (std::vector<std::string>{"sq-0", "sq-1", "sq-2", "sq-3"}));
  EXPECT_GE(host.max_running.load(), 2);  // the trampolines really ran side by side
  EXPECT_EQ(host.parallel_calls, 1);
}

TEST(Parallel, MapHonoursMaxConcurrency) {
  ResetCalls();
  FakeHost host(R"({"n": 3, "limit": 1, "sleep_ms": 20})");
  EXPECT_EQ(host.invoke(FindWorkflow("squares")), KAGZI_OK);
  EXPECT_EQ(host.last_max_concurrency, 1u);
  EXPECT_EQ(host.max_running.load(), 1);
}

TEST(Parallel, MapFailuresAndOutcomes) {
  ResetCalls();
  FakeHost thrown(R"({"n": 4, "fail_index": 2})");
  EXPECT_EQ(thrown.invoke(FindWorkflow("squares")), KAGZI_OK);
  EXPECT_EQ(Output(thrown), (Json{{"error", "step 'sq-2' failed: bad 2"}}));
  EXPECT_EQ(Calls("sq-3"), 1);  // every element ran

  FakeHost outcomes(R"({"n": 3, "fail_index": 1, "outcomes": true, "policy": true})");
  EXPECT_EQ(outcomes.invoke(FindWorkflow("squares")), KAGZI_OK);
  EXPECT_EQ(Output(outcomes),
            (Json{{"outcomes", Json::array({0, "step 'sq-1' failed: bad 1", 4})}}));
  ASSERT_TRUE(outcomes.journal.at("sq-0").policy.has_value());
  EXPECT_EQ(outcomes.journal.at("sq-2").policy->max_attempts, 3u);
}

TEST(Parallel, EmptyMapDoesNotCallTheHost) {
  FakeHost host(R"({"n": 0})");
  EXPECT_EQ(host.invoke(FindWorkflow("squares")), KAGZI_OK);
  EXPECT_EQ(Output(host), (Json{{"squares", Json::array()}}));
  EXPECT_EQ(host.parallel_calls, 0);
}

TEST(Parallel, ContextUseOnAWorkerThreadIsRefusedInTheWrapper) {
  FakeHost host("{}");
  EXPECT_EQ(host.invoke(FindWorkflow("par_misuse")), KAGZI_OK);
  EXPECT_EQ(Output(host), (Json{{"error", "the run context was used inside a step function"}}));
  EXPECT_EQ(host.wrong_thread_calls, 0);  // never reached the host
  EXPECT_EQ(host.journal.count("inner"), 0u);
}

// ---------------------------------------------------------------------------
// Deterministic helpers
// ---------------------------------------------------------------------------

TEST(Helpers, NowAndRandomAreRecordedAndReplayed) {
  const kagzi_run_fn run = FindWorkflow("helpers");
  FakeHost host("{}");
  EXPECT_EQ(host.invoke(run), KAGZI_SUSPEND);  // the sleep
  host.clock_ms += 60000;                      // a later claim: the clock moved on
  host.next_random = 1;
  EXPECT_EQ(host.invoke(run), KAGZI_OK);
  EXPECT_EQ(Output(host), (Json{{"t0", std::int64_t{1700000000123}},
                                {"r", std::to_string(0xfedcba9876543210ULL)}}));
  EXPECT_EQ(host.order, (std::vector<std::string>{"t0", "r", "nap"}));
}

// ---------------------------------------------------------------------------
// An ABI 1.0 host
// ---------------------------------------------------------------------------

TEST(Abi10Host, EveryNewCallIsRefusedWithAClearError) {
  struct Case {
    const char* workflow;
    const char* input;
    const char* error;
  };
  for (const Case& c : {
           Case{"policy_step", "{}", "host ABI 1.0 lacks step_with_policy (retry policies)"},
           Case{"waiter", "{}", "host ABI 1.0 lacks wait_for_event (events)"},
           Case{"parent", R"({"child": "c"})", "host ABI 1.0 lacks call_child (child workflows)"},
           Case{"par_values", "{}", "host ABI 1.0 lacks parallel (parallel steps)"},
           Case{"squares", R"({"n": 0})", "host ABI 1.0 lacks parallel (parallel steps)"},
           Case{"helpers", "{}", "host ABI 1.0 lacks now_ms (deterministic time)"},
       }) {
    SCOPED_TRACE(c.workflow);
    FakeHost host(c.input, /*abi_1_0=*/true);
    EXPECT_EQ(host.invoke(FindWorkflow(c.workflow)), KAGZI_ERR_PERMANENT);
    EXPECT_EQ(host.error(), std::optional<std::string>(c.error));
    EXPECT_EQ(host.forbidden_calls, 0);
  }
}

TEST(Abi10Host, PlainCallsStillWork) {
  ResetCalls();
  FakeHost host("{}", /*abi_1_0=*/true);
  EXPECT_EQ(host.invoke(FindWorkflow("plain_step")), KAGZI_OK);
  EXPECT_EQ(Output(host), (Json{{"v", 5}}));
  FakeHost cancel("{}", /*abi_1_0=*/true);
  EXPECT_EQ(cancel.invoke(FindWorkflow("cancel_cleanup")), KAGZI_OK);
  EXPECT_EQ(cancel.forbidden_calls, 0);
}

TEST(Abi10Host, MalformedTablesAreReadOnlyAsFarAsTheyReach) {
  // Claims 1.1 but is only as large as 1.0: the 1.1 calls are refused.
  kagzi_host short_table = FakeHost::kTable10;
  short_table.abi_minor = 1;
  FakeHost a("{}");
  EXPECT_EQ(a.invoke_with(&short_table, FindWorkflow("helpers")), KAGZI_ERR_PERMANENT);
  EXPECT_EQ(a.error(), "host ABI 1.1 lacks now_ms (deterministic time)");
  EXPECT_EQ(a.forbidden_calls, 0);
  // Claims 1.1, full size, but a callback is missing.
  kagzi_host holey = FakeHost::kTable11;
  holey.random_u64 = nullptr;
  FakeHost b("{}");
  EXPECT_EQ(b.invoke_with(&holey, FindWorkflow("helpers")), KAGZI_ERR_PERMANENT);
  EXPECT_EQ(b.error(), "host ABI 1.1 lacks random_u64 (deterministic random numbers)");
  // Smaller than a 1.0 table: refused before anything.
  kagzi_host tiny = FakeHost::kTable10;
  tiny.struct_size = offsetof(kagzi_host, get_run_id);
  FakeHost c("{}");
  EXPECT_EQ(c.invoke_with(&tiny, FindWorkflow("plain_step")), KAGZI_ERR_PERMANENT);
  EXPECT_TRUE(c.journal.empty());
}

// ---------------------------------------------------------------------------
// Descriptors
// ---------------------------------------------------------------------------

TEST(Descriptors, AbiOneOneWithTimeouts) {
  const kagzi_plugin* plugin = kagzi_plugin_entry(1, 0);  // any 1.x host gets the same table
  ASSERT_NE(plugin, nullptr);
  EXPECT_EQ(plugin->abi_minor, 1);
  for (std::uint32_t i = 0; i < plugin->workflow_count; ++i) {
    const kagzi_workflow& w = plugin->workflows[i];
    SCOPED_TRACE(w.name);
    EXPECT_EQ(w.struct_size, sizeof(kagzi_workflow));
    EXPECT_EQ(w.struct_size, 48u);
    EXPECT_EQ(w.abi_minor, 1);
  }
  ASSERT_NE(FindDescriptor("timed", 1), nullptr);
  EXPECT_EQ(FindDescriptor("timed", 1)->timeout_ms, 1500u);
  ASSERT_NE(FindDescriptor("timed.chrono", 1), nullptr);
  EXPECT_EQ(FindDescriptor("timed.chrono", 1)->timeout_ms, 120000u);
  EXPECT_EQ(FindDescriptor("timed_round", 1)->timeout_ms, 2u);  // rounded up
  EXPECT_EQ(FindDescriptor("policy_step", 1)->timeout_ms, 0u);
}

}  // namespace
