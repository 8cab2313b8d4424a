// RunContext: one invocation of a workflow's run() -- the replay engine.
//
// It implements the host table of plugin.h for one claimed run: step()
// returns journaled results or runs the step function and records its
// result under the run's lease; sleep() parks the run durably; both check
// that calls replay in journal order (non-determinism otherwise) and that
// the plugin follows the ABI's rules (misuse otherwise). Every database
// write is fenced by the run's Lease; a refused write means the lease was
// lost, and the run is abandoned without writing anything more.
//
// Thread safety: a RunContext is used by the executor thread that created
// it; calls from any other thread are refused as misuse.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "in_flight.h"
#include "kagzi/core/store.h"
#include <kagzi/plugin.h>

namespace kagzi::daemon {
class RunContext;
}

// The opaque context of plugin.h, as the host defines it.
struct kagzi_context {
  std::uint64_t magic;
  kagzi::daemon::RunContext* self;
};

namespace kagzi::daemon {

// How a run() invocation ended, decided by RunContext::Finish.
enum class RunOutcome {
  kCompleted,  // output recorded
  kFailed,     // error recorded
  kParked,     // sleeping; already recorded by sleep()
  kReleased,   // drained: lease given back for another daemon
  kAbandoned,  // lease lost or database unreachable: nothing more written
};
std::string_view RunOutcomeName(RunOutcome o);

struct RunContextOptions {
  std::int64_t max_payload_bytes = 16 * 1024 * 1024;
  // How long a fenced write is retried while the database is unreachable
  // before the run is abandoned (its lease then expires and it is resumed).
  std::chrono::milliseconds write_retry_budget{10'000};
};

// Called when a run parks, with its wake time (database clock, micros).
using ParkListener = std::function<void(Micros wake_at)>;

class RunContext {
 public:
  RunContext(Store& store, const ClaimedRun& claim, Micros db_now,
             std::shared_ptr<RunControl> control, RunContextOptions options, ParkListener on_park);
  RunContext(const RunContext&) = delete;
  RunContext& operator=(const RunContext&) = delete;

  // The host table every run() gets (static, shared by all contexts).
  static const kagzi_host* HostTable();
  // The opaque pointer passed to run() for this context.
  kagzi_context* handle() { return &handle_; }

  // Decides and records the outcome after run() returned `status` (or threw,
  // with `exception` describing it).
  RunOutcome Finish(kagzi_status status, std::optional<std::string> exception);

  // A short description of the last error, for logs.
  const std::string& outcome_detail() const { return outcome_detail_; }

  // --- host callbacks (called through HostTable) ---------------------------
  kagzi_status GetInput(const char** data, std::size_t* len);
  kagzi_status Step(const char* step_id, kagzi_step_fn fn, void* user, const char** out,
                    std::size_t* out_len);
  kagzi_status Sleep(const char* step_id, std::uint64_t duration_ms);
  kagzi_status SetOutput(const char* json, std::size_t len);
  kagzi_status SetError(const char* message, std::size_t len);
  void Log(std::int32_t level, const char* message, std::size_t len);
  kagzi_status GetRunId(const char** id, std::size_t* len);

  static RunContext* FromHandle(kagzi_context* ctx);

 private:
  // Checks common to step/sleep; returns non-OK to hand back to the plugin.
  kagzi_status BeginCall(const char* step_id, StepKind kind, const StepRecord** recorded,
                         std::string* id_out);
  kagzi_status HostError(kagzi_status code, std::string message);
  kagzi_status Suspend(RunOutcome why, std::string detail);
  // Runs a fenced write, retrying while the database is unreachable.
  Status Write(const std::function<Status()>& write);
  const char* Keep(std::string s, std::size_t* len);
  Micros DbNow() const;
  bool OnRunThread() const { return std::this_thread::get_id() == thread_; }

  Store& store_;
  const ClaimedRun& claim_;
  std::shared_ptr<RunControl> control_;
  RunContextOptions options_;
  ParkListener on_park_;
  kagzi_context handle_;
  std::atomic<bool> foreign_call_{false};  // a call came from another thread
  std::thread::id thread_;
  Micros db_now_at_claim_;
  std::chrono::steady_clock::time_point claimed_at_;

  std::unordered_map<std::string, const StepRecord*> journal_by_id_;
  std::vector<const StepRecord*> journal_by_seq_;
  std::unordered_set<std::string> used_ids_;
  int next_seq_ = 0;

  bool in_step_ = false;
  std::string current_step_;             // id of the step whose function is running
  std::optional<RunOutcome> suspended_;  // host returned SUSPEND for this reason
  std::optional<std::pair<kagzi_status, std::string>> host_error_;  // misuse/non-determinism
  std::optional<std::string> output_;
  std::optional<std::string> error_;
  std::deque<std::string> kept_;  // strings handed to the plugin (stable addresses)
  std::string outcome_detail_;
};

}  // namespace kagzi::daemon
