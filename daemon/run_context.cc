// The replay engine. The rules it enforces are the ABI's (plugin.h) and the
// invariants of docs/ARCHITECTURE.md: a recorded step is returned, never
// re-run; a new step is recorded under the lease before its result is
// returned to the workflow; a refused (fenced) write abandons the run.
#include "run_context.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <mutex>

#include "group_commit.h"
#include "kagzi/core/log.h"
#include "kagzi/core/validation.h"
#include "worker_shared.h"

namespace kagzi::daemon {
namespace {

constexpr std::uint64_t kContextMagic = 0x6b61677a69637478ULL;  // "kagzictx"
constexpr std::size_t kMaxMessageBytes = 64 * 1024;
constexpr std::uint64_t kMaxSleepMs = 100ULL * 365 * 24 * 3600 * 1000;  // 100 years
std::mutex g_rng_mu;  // guards every RunContext::rng_ use (parallel workers)

struct StepWriter {
  std::string buffer;
  std::size_t limit = 0;
  bool overflow = false;
};

kagzi_status WriterWrite(const kagzi_writer* writer, const char* data, std::size_t len) {
  if (writer == nullptr || writer->host_data == nullptr) return KAGZI_ERR_MISUSE;
  auto* w = static_cast<StepWriter*>(writer->host_data);
  if (len == 0) return KAGZI_OK;
  if (data == nullptr) return KAGZI_ERR_MISUSE;
  if (w->buffer.size() + len > w->limit) {
    w->overflow = true;
    return KAGZI_ERR_PERMANENT;
  }
  w->buffer.append(data, len);
  return KAGZI_OK;
}

RunContext* Ctx(kagzi_context* ctx) { return RunContext::FromHandle(ctx); }

kagzi_status HostGetInput(kagzi_context* ctx, const char** data, std::size_t* len) {
  auto* rc = Ctx(ctx);
  return rc ? rc->GetInput(data, len) : KAGZI_ERR_MISUSE;
}
kagzi_status HostStep(kagzi_context* ctx, const char* id, kagzi_step_fn fn, void* user,
                      const char** out, std::size_t* out_len) {
  auto* rc = Ctx(ctx);
  return rc ? rc->Step(id, fn, user, nullptr, out, out_len) : KAGZI_ERR_MISUSE;
}
kagzi_status HostSleep(kagzi_context* ctx, const char* id, std::uint64_t ms) {
  auto* rc = Ctx(ctx);
  return rc ? rc->Sleep(id, ms) : KAGZI_ERR_MISUSE;
}
kagzi_status HostSetOutput(kagzi_context* ctx, const char* json, std::size_t len) {
  auto* rc = Ctx(ctx);
  return rc ? rc->SetOutput(json, len) : KAGZI_ERR_MISUSE;
}
kagzi_status HostSetError(kagzi_context* ctx, const char* msg, std::size_t len) {
  auto* rc = Ctx(ctx);
  return rc ? rc->SetError(msg, len) : KAGZI_ERR_MISUSE;
}
void HostLog(kagzi_context* ctx, std::int32_t level, const char* msg, std::size_t len) {
  if (auto* rc = Ctx(ctx)) rc->Log(level, msg, len);
}
const void* HostGetExtension(kagzi_context*, const char*) { return nullptr; }
kagzi_status HostGetRunId(kagzi_context* ctx, const char** id, std::size_t* len) {
  auto* rc = Ctx(ctx);
  return rc ? rc->GetRunId(id, len) : KAGZI_ERR_MISUSE;
}
kagzi_status HostStepWithPolicy(kagzi_context* ctx, const char* id, kagzi_step_fn fn, void* user,
                                const kagzi_retry_policy* policy, const char** out,
                                std::size_t* out_len) {
  auto* rc = Ctx(ctx);
  return rc ? rc->Step(id, fn, user, policy, out, out_len) : KAGZI_ERR_MISUSE;
}
kagzi_status HostWaitForEvent(kagzi_context* ctx, const char* id, const char* name,
                              std::int64_t timeout_ms, const char** payload, std::size_t* len) {
  auto* rc = Ctx(ctx);
  return rc ? rc->WaitForEvent(id, name, timeout_ms, payload, len) : KAGZI_ERR_MISUSE;
}
kagzi_status HostCallChild(kagzi_context* ctx, const char* id, const char* workflow,
                           const char* input, std::size_t input_len, const char** out,
                           std::size_t* out_len) {
  auto* rc = Ctx(ctx);
  return rc ? rc->CallChild(id, workflow, input, input_len, out, out_len) : KAGZI_ERR_MISUSE;
}
kagzi_status HostParallel(kagzi_context* ctx, kagzi_parallel_step* steps, std::size_t count,
                          std::uint32_t max_concurrency) {
  auto* rc = Ctx(ctx);
  return rc ? rc->Parallel(steps, count, max_concurrency) : KAGZI_ERR_MISUSE;
}
kagzi_status HostNowMs(kagzi_context* ctx, const char* id, std::int64_t* unix_ms) {
  auto* rc = Ctx(ctx);
  return rc ? rc->NowMs(id, unix_ms) : KAGZI_ERR_MISUSE;
}
kagzi_status HostRandomU64(kagzi_context* ctx, const char* id, std::uint64_t* value) {
  auto* rc = Ctx(ctx);
  return rc ? rc->RandomU64(id, value) : KAGZI_ERR_MISUSE;
}

const kagzi_host kHostTable = {
    sizeof(kagzi_host),
    KAGZI_ABI_MAJOR,
    KAGZI_ABI_MINOR,
    HostGetInput,
    HostStep,
    HostSleep,
    HostSetOutput,
    HostSetError,
    HostLog,
    HostGetExtension,
    HostGetRunId,
    // ABI 1.1
    HostStepWithPolicy,
    HostWaitForEvent,
    HostCallChild,
    HostParallel,
    HostNowMs,
    HostRandomU64,
};

std::string_view KindName(StepKind k) { return StepKindName(k); }

bool IsFinal(const StepRecord& r) {
  return r.status == StepStatus::kCompleted || r.status == StepStatus::kFailed;
}

}  // namespace

std::string_view RunOutcomeName(RunOutcome o) {
  switch (o) {
    case RunOutcome::kCompleted:
      return "completed";
    case RunOutcome::kFailed:
      return "failed";
    case RunOutcome::kCancelled:
      return "cancelled";
    case RunOutcome::kTimedOut:
      return "timed out";
    case RunOutcome::kParked:
      return "parked";
    case RunOutcome::kReleased:
      return "released";
    case RunOutcome::kAbandoned:
      return "abandoned";
  }
  return "unknown";
}

const kagzi_host* RunContext::HostTable() { return &kHostTable; }

RunContext* RunContext::FromHandle(kagzi_context* ctx) {
  if (ctx == nullptr || ctx->magic != kContextMagic) return nullptr;
  return ctx->self;
}

RunContext::RunContext(Store& store, const ClaimedRun& claim, Micros db_now,
                       std::shared_ptr<RunControl> control, RunContextOptions options,
                       ParkListener on_park)
    : store_(store),
      claim_(claim),
      control_(std::move(control)),
      options_(std::move(options)),
      on_park_(std::move(on_park)),
      handle_{kContextMagic, this},
      thread_(std::this_thread::get_id()),
      db_now_at_claim_(db_now),
      claimed_at_(std::chrono::steady_clock::now()) {
  for (const auto& step : claim_.journal) {
    journal_by_id_[step.step_id] = &step;
    if (step.seq >= 0) {
      if (static_cast<std::size_t>(step.seq) >= journal_by_seq_.size()) {
        journal_by_seq_.resize(step.seq + 1, nullptr);
      }
      journal_by_seq_[step.seq] = &step;
    }
  }
  cancel_requested_ = claim_.run.cancel_requested;
  cancel_reason_ = claim_.run.cancel_reason.value_or("cancelled");
}

Micros RunContext::DbNow() const {
  auto elapsed = std::chrono::steady_clock::now() - claimed_at_;
  return db_now_at_claim_ + std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count();
}

bool RunContext::DeadlinePassed() const {
  return claim_.run.deadline_at && DbNow() >= *claim_.run.deadline_at;
}

bool RunContext::CheckThread() {
  if (OnRunThread()) return true;
  foreign_call_ = true;
  return false;
}

void RunContext::GiveText(std::string text, const char** out, std::size_t* out_len) {
  std::size_t n = 0;
  const char* p = Keep(std::move(text), &n);
  if (out) *out = p;
  if (out_len) *out_len = n;
}

const char* RunContext::Keep(std::string s, std::size_t* len) {
  kept_.push_back(std::move(s));
  if (len) *len = kept_.back().size();
  return kept_.back().c_str();
}

kagzi_status RunContext::HostError(kagzi_status code, std::string message) {
  if (!host_error_) {
    Logger("executor")
        ->error("run {} ({} v{}): {}", claim_.run.id, claim_.run.workflow,
                claim_.run.version.value_or(0), message);
    host_error_ = {code, std::move(message)};
  }
  return host_error_->first;
}

kagzi_status RunContext::Suspend(RunOutcome why, std::string detail) {
  suspended_ = why;
  outcome_detail_ = std::move(detail);
  return KAGZI_SUSPEND;
}

kagzi_status RunContext::WriteFailed(const Status& st) {
  if (st.IsConflict() || st.IsUnavailable()) return Suspend(RunOutcome::kAbandoned, st.message());
  if (st.code() == StatusCode::kPermanent) return Suspend(RunOutcome::kTimedOut, st.message());
  return HostError(KAGZI_ERR_NONDETERMINISM, st.message());
}

Status RetryWhileUnavailable(const RunControl& control, std::chrono::milliseconds budget,
                             const std::function<Status()>& write) {
  auto deadline = std::chrono::steady_clock::now() + budget;
  auto backoff = std::chrono::milliseconds(50);
  while (true) {
    Status st = write();
    if (st.ok() || !st.IsUnavailable()) return st;
    if (std::chrono::steady_clock::now() + backoff > deadline || control.lease_lost) return st;
    Logger("executor")
        ->warn("run {}: write failed, retrying in {} ms: {}", control.lease.run_id, backoff.count(),
               st.message());
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
}

RunOutcome RunEnd::Written() {
  if (write->result.ok()) return outcome;
  detail = write->result.message();
  return RunOutcome::kAbandoned;
}

Status RunContext::Write(const std::function<Status()>& write) {
  return RetryWhileUnavailable(*control_, options_.write_retry_budget, write);
}

FencedWrite RunContext::MakeFenced(FencedWrite::Kind kind, const StepRecord* step,
                                   std::string value) const {
  FencedWrite w;
  w.kind = kind;
  w.lease = control_->lease;
  if (step) w.step = *step;
  w.value = std::move(value);
  if (kind == FencedWrite::Kind::kFailRun) w.failed_call_seq = last_call_seq_;
  if (kind != FencedWrite::Kind::kRecordStep) w.parent_run_id = claim_.run.parent_run_id;
  return w;
}

Status RunContext::Fenced(FencedWrite::Kind kind, const StepRecord* step, std::string value,
                          WriteFeedback* feedback, bool new_entry) {
  FencedWrite w = MakeFenced(kind, step, std::move(value));
  w.new_entry = new_entry;
  Status st = Apply(w);
  if (feedback) *feedback = w.feedback;
  return st;
}

Status RunContext::Apply(FencedWrite& w) {
  return Write([&] {
    if (options_.writer) {
      options_.writer->Write(w);
    } else {
      store_.ApplyWrites({&w});
    }
    // Tried again (the database was unreachable), the write may find the
    // entry this try wrote: an upsert from now on.
    w.new_entry = false;
    return w.result;
  });
}

Status RunContext::Record(const StepRecord& record, bool new_entry) {
  WriteFeedback feedback;
  Status st = Fenced(FencedWrite::Kind::kRecordStep, &record, {}, &feedback, new_entry);
  if (st.ok() && feedback.cancel_requested && !cancel_requested_) {
    cancel_requested_ = true;
    cancel_reason_ = feedback.cancel_reason.value_or("cancelled");
  }
  return st;
}

kagzi_status RunContext::Park(const std::optional<StepRecord>& step, const ParkOptions& options,
                              std::string detail) {
  // Through the group committer, like a step's record: a park commits
  // with the other runs' writes.
  FencedWrite park;
  park.kind = FencedWrite::Kind::kPark;
  park.lease = control_->lease;
  park.park = options;
  if (step) {
    park.step = *step;
    park.park_step = true;
  }
  Status w = Apply(park);
  const std::optional<Micros> wake = park.parked_until;
  if (!w.ok()) return WriteFailed(w);
  if (wake && on_park_) on_park_(*wake);
  return Suspend(RunOutcome::kParked, std::move(detail));
}

kagzi_status RunContext::BeginCall(const char* step_id, StepKind kind, const StepRecord** recorded,
                                   std::string* id_out, int* seq_out) {
  *recorded = nullptr;
  if (in_step_) {
    return HostError(
        KAGZI_ERR_MISUSE,
        fmt::format("{} \"{}\" called from inside the step function of \"{}\"", KindName(kind),
                    SanitizeText(step_id ? step_id : "(null)", 80), current_step_));
  }
  if (suspended_) {
    return HostError(KAGZI_ERR_MISUSE, "context called after the host returned KAGZI_SUSPEND");
  }
  if (host_error_) return host_error_->first;
  if (step_id == nullptr) return HostError(KAGZI_ERR_MISUSE, "step id is NULL");
  std::string id(step_id, strnlen(step_id, kMaxNameBytes + 1));
  if (Status st = ValidateName(id, "step id"); !st.ok()) {
    return HostError(KAGZI_ERR_MISUSE,
                     fmt::format("{} \"{}\"", st.message(), SanitizeText(id, 80)));
  }
  if (!used_ids_.insert(id).second) {
    return HostError(KAGZI_ERR_MISUSE,
                     fmt::format("step id \"{}\" is used twice in one run; step ids must be "
                                 "unique within a run",
                                 id));
  }
  const int seq = next_seq_++;
  last_call_seq_ = seq;
  auto found = journal_by_id_.find(id);
  const StepRecord* at_seq =
      static_cast<std::size_t>(seq) < journal_by_seq_.size() ? journal_by_seq_[seq] : nullptr;
  if (at_seq != nullptr && at_seq->step_id != id) {
    return HostError(
        KAGZI_ERR_NONDETERMINISM,
        fmt::format("non-determinism: call #{} is {} \"{}\" but the journal "
                    "recorded {} \"{}\" there",
                    seq + 1, KindName(kind), id, KindName(at_seq->kind), at_seq->step_id));
  }
  if (found != journal_by_id_.end()) {
    const StepRecord* r = found->second;
    if (r->seq != seq) {
      return HostError(KAGZI_ERR_NONDETERMINISM,
                       fmt::format("non-determinism: {} \"{}\" was recorded as call #{} but is "
                                   "replayed as call #{}",
                                   KindName(kind), id, r->seq + 1, seq + 1));
    }
    if (r->kind != kind) {
      return HostError(KAGZI_ERR_NONDETERMINISM,
                       fmt::format("non-determinism: \"{}\" was recorded as a {} but is "
                                   "replayed as a {}",
                                   id, KindName(r->kind), KindName(kind)));
    }
    *recorded = r;
  }
  *id_out = std::move(id);
  *seq_out = seq;
  return KAGZI_OK;
}

kagzi_status RunContext::CheckInterrupts(const std::string& id, int seq, StepKind kind) {
  if (control_->lease_lost) return Suspend(RunOutcome::kAbandoned, "lease lost");
  if (DeadlinePassed()) return Suspend(RunOutcome::kTimedOut, "deadline exceeded");
  if (cancel_requested_ && !cancel_delivered_) {
    // Journaled, so a replay delivers the cancellation at the same call.
    StepRecord rec;
    rec.step_id = id;
    rec.seq = seq;
    rec.kind = kind;
    rec.status = StepStatus::kFailed;
    rec.error = cancel_reason_;
    rec.error_kind = ErrorKind::kCancelled;
    rec.started_at = DbNow();
    if (Status w = Record(rec); !w.ok()) return WriteFailed(w);
    cancel_delivered_ = true;
    Logger("executor")
        ->info("run {}: cancellation delivered at {} \"{}\": {}", claim_.run.id, KindName(kind), id,
               cancel_reason_);
    return KAGZI_ERR_CANCELLED;
  }
  if (control_->drain) return Suspend(RunOutcome::kReleased, "daemon is draining");
  return KAGZI_OK;
}

kagzi_status RunContext::RecordedStatus(const StepRecord& r) {
  if (r.status == StepStatus::kCompleted) return KAGZI_OK;
  switch (r.error_kind) {
    case ErrorKind::kRetryable:
      return KAGZI_ERR_RETRYABLE;
    case ErrorKind::kPermanent:
      return KAGZI_ERR_PERMANENT;
    case ErrorKind::kTimeout:
      return KAGZI_ERR_TIMEOUT;
    case ErrorKind::kCancelled:
      cancel_requested_ = true;
      cancel_delivered_ = true;
      cancel_reason_ = r.error.value_or(cancel_reason_);
      return KAGZI_ERR_CANCELLED;
  }
  return KAGZI_ERR_PERMANENT;
}

Status RunContext::ParsePolicy(const kagzi_retry_policy* p, RetryPolicy* out) const {
  if (p == nullptr) {
    *out = options_.default_retry;
    return Status::Ok();
  }
  if (p->struct_size < sizeof(kagzi_retry_policy)) {
    return Status::InvalidArgument("retry policy struct_size {} is smaller than {}", p->struct_size,
                                   sizeof(kagzi_retry_policy));
  }
  if (p->max_attempts < 1 || p->max_attempts > 1000) {
    return Status::InvalidArgument("retry policy max_attempts {} is not 1..1000", p->max_attempts);
  }
  if (p->initial_interval_ms < 1 || p->max_interval_ms < p->initial_interval_ms ||
      p->max_interval_ms > kMaxSleepMs) {
    return Status::InvalidArgument(
        "retry policy intervals {} ms .. {} ms are not 1 <= initial <= max", p->initial_interval_ms,
        p->max_interval_ms);
  }
  if (!(p->multiplier >= 1.0 && p->multiplier <= 100.0) ||
      !(p->jitter >= 0.0 && p->jitter <= 1.0)) {
    return Status::InvalidArgument(
        "retry policy multiplier {} (1..100) or jitter {} (0..1) is out of range", p->multiplier,
        p->jitter);
  }
  out->max_attempts = static_cast<int>(p->max_attempts);
  out->initial_interval = std::chrono::milliseconds(p->initial_interval_ms);
  out->max_interval = std::chrono::milliseconds(p->max_interval_ms);
  out->multiplier = p->multiplier;
  out->jitter = p->jitter;
  return Status::Ok();
}

std::mt19937_64& RunContext::Rng() const {
  if (!rng_) rng_.emplace(std::random_device{}());
  return *rng_;
}

std::chrono::milliseconds RunContext::Backoff(const RetryPolicy& policy, int attempt) const {
  double base = static_cast<double>(policy.initial_interval.count()) *
                std::pow(policy.multiplier, std::max(0, attempt - 1));
  base = std::min(base, static_cast<double>(policy.max_interval.count()));
  double factor = 1.0;
  if (policy.jitter > 0) {
    std::lock_guard lock(g_rng_mu);
    std::uniform_real_distribution<double> d(1.0 - policy.jitter, 1.0 + policy.jitter);
    factor = d(Rng());
  }
  return std::chrono::milliseconds(std::max<std::int64_t>(1, std::llround(base * factor)));
}

RunContext::Attempt RunContext::RunStepFunction(kagzi_step_fn fn, void* user, const std::string& id,
                                                SlotStepGroup* group) const {
  ScopedLogContext log_ctx({.step = id});
  StepWriter sink;
  sink.limit = static_cast<std::size_t>(options_.max_payload_bytes);
  kagzi_writer writer{sizeof(kagzi_writer), KAGZI_ABI_MAJOR, KAGZI_ABI_MINOR, &sink, WriterWrite};
  Attempt a;
  if (group != nullptr) {
    group->Enter(id);
  } else {
    SlotEnterStep(id);
  }
  try {
    a.status = fn(user, &writer);
  } catch (const std::exception& e) {
    a.status = KAGZI_ERR_PERMANENT;
    sink.buffer = fmt::format("step function threw a C++ exception across the C ABI: {}", e.what());
  } catch (...) {
    a.status = KAGZI_ERR_PERMANENT;
    sink.buffer = "step function threw a C++ exception across the C ABI";
  }
  if (group != nullptr) {
    group->Leave(id);
  } else {
    SlotLeaveStep();
  }
  a.overflow = sink.overflow;
  a.text = std::move(sink.buffer);
  return a;
}

RunContext::StepPlan RunContext::PlanStep(const std::string& id, int seq, int attempt,
                                          const RetryPolicy& policy, Attempt a,
                                          Micros started) const {
  StepPlan plan;
  StepRecord& rec = plan.record;
  rec.step_id = id;
  rec.seq = seq;
  rec.kind = StepKind::kStep;
  rec.started_at = started;
  rec.attempts = attempt;
  if (a.overflow) {
    rec.status = StepStatus::kFailed;
    rec.error = fmt::format("step result is larger than max_payload_bytes ({} bytes)",
                            options_.max_payload_bytes);
    plan.result = KAGZI_ERR_PERMANENT;
  } else if (a.status == KAGZI_OK) {
    std::string text = a.text.empty() ? std::string("null") : std::move(a.text);
    if (Status v = ValidateJson(text, fmt::format("result of step \"{}\"", id),
                                options_.max_payload_bytes);
        !v.ok()) {
      plan.result = KAGZI_ERR_MISUSE;
      plan.text = v.message();
      return plan;
    }
    rec.status = StepStatus::kCompleted;
    rec.output = std::move(text);
    plan.result = KAGZI_OK;
  } else if (a.status == KAGZI_ERR_RETRYABLE || a.status == KAGZI_ERR_PERMANENT) {
    std::string msg = a.text.empty() ? fmt::format("step \"{}\" failed (status {})", id, a.status)
                                     : SanitizeText(a.text, kMaxMessageBytes);
    rec.status = StepStatus::kFailed;
    rec.error_kind =
        a.status == KAGZI_ERR_RETRYABLE ? ErrorKind::kRetryable : ErrorKind::kPermanent;
    if (a.status == KAGZI_ERR_RETRYABLE && attempt < policy.max_attempts) {
      rec.status = StepStatus::kRetrying;
      plan.retry_in = Backoff(policy, attempt);
      plan.result = KAGZI_SUSPEND;
    } else {
      if (a.status == KAGZI_ERR_RETRYABLE && attempt > 1) {
        msg = fmt::format("{} (gave up after {} attempts)", msg, attempt);
      }
      plan.result = a.status;
    }
    rec.error = msg;
  } else {
    rec.status = StepStatus::kFailed;
    rec.error = fmt::format("step function returned invalid status {}", a.status);
    plan.result = KAGZI_ERR_PERMANENT;
  }
  plan.text = rec.status == StepStatus::kCompleted ? *rec.output : *rec.error;
  return plan;
}

kagzi_status RunContext::GetInput(const char** data, std::size_t* len) {
  if (!CheckThread()) return KAGZI_ERR_MISUSE;
  if (in_step_) return HostError(KAGZI_ERR_MISUSE, "get_input called from inside a step");
  if (suspended_) return HostError(KAGZI_ERR_MISUSE, "get_input called after KAGZI_SUSPEND");
  if (data == nullptr) return KAGZI_ERR_MISUSE;
  *data = claim_.run.input.c_str();
  if (len) *len = claim_.run.input.size();
  return KAGZI_OK;
}

kagzi_status RunContext::GetRunId(const char** id, std::size_t* len) {
  if (id == nullptr) return KAGZI_ERR_MISUSE;
  *id = claim_.run.id.c_str();
  if (len) *len = claim_.run.id.size();
  return KAGZI_OK;
}

kagzi_status RunContext::Step(const char* step_id, kagzi_step_fn fn, void* user,
                              const kagzi_retry_policy* policy, const char** out,
                              std::size_t* out_len) {
  if (!CheckThread()) return KAGZI_ERR_MISUSE;
  auto give = [&](std::string text) { GiveText(std::move(text), out, out_len); };
  const StepRecord* recorded = nullptr;
  std::string id;
  int seq = 0;
  if (kagzi_status st = BeginCall(step_id, StepKind::kStep, &recorded, &id, &seq); st != KAGZI_OK) {
    give(host_error_ ? host_error_->second : std::string());
    return st;
  }
  RetryPolicy retry;
  if (Status p = ParsePolicy(policy, &retry); !p.ok()) {
    give(p.message());
    return HostError(KAGZI_ERR_MISUSE, fmt::format("step \"{}\": {}", id, p.message()));
  }
  int attempt = 1;
  if (recorded != nullptr) {
    if (IsFinal(*recorded)) {
      give(recorded->status == StepStatus::kCompleted ? recorded->output.value_or("null")
                                                      : recorded->error.value_or("step failed"));
      return RecordedStatus(*recorded);
    }
    if (recorded->status != StepStatus::kRetrying) {
      return HostError(KAGZI_ERR_NONDETERMINISM, fmt::format("step \"{}\" has a {} journal entry",
                                                             id, StepStatusName(recorded->status)));
    }
    Micros due = recorded->wake_at.value_or(0);
    if (due > DbNow()) {
      // A pending cancellation (which keeps the run claimable) is delivered
      // here rather than parking again until the retry is due.
      if (cancel_requested_ && !cancel_delivered_) {
        kagzi_status st = CheckInterrupts(id, seq, StepKind::kStep);
        if (st == KAGZI_ERR_CANCELLED) give(cancel_reason_);
        return st;
      }
      return Park(std::nullopt, ParkOptions{std::nullopt, due, std::nullopt},
                  fmt::format("step \"{}\": attempt {} is due later", id, recorded->attempts + 1));
    }
    attempt = recorded->attempts + 1;
  }
  if (fn == nullptr) {
    give("step function is NULL");
    return HostError(KAGZI_ERR_MISUSE, fmt::format("step \"{}\": step function is NULL", id));
  }
  if (kagzi_status st = CheckInterrupts(id, seq, StepKind::kStep); st != KAGZI_OK) {
    if (st == KAGZI_ERR_CANCELLED) give(cancel_reason_);
    return st;
  }

  const Micros started = DbNow();
  in_step_ = true;
  current_step_ = id;
  Attempt a = RunStepFunction(fn, user, id);
  in_step_ = false;
  if (host_error_) {
    give(host_error_->second);
    return host_error_->first;  // the step function misused the context
  }
  StepPlan plan = PlanStep(id, seq, attempt, retry, std::move(a), started);
  if (plan.result == KAGZI_ERR_MISUSE) {
    give(plan.text);
    return HostError(KAGZI_ERR_MISUSE, plan.text);
  }
  if (plan.retry_in) {
    Logger("executor")
        ->info("run {}: step \"{}\" attempt {}/{} failed, retrying in {} ms: {}", claim_.run.id, id,
               attempt, retry.max_attempts, plan.retry_in->count(), *plan.record.error);
    return Park(plan.record, ParkOptions{*plan.retry_in, std::nullopt, std::nullopt},
                fmt::format("step \"{}\" attempt {} failed; retry in {} ms", id, attempt,
                            plan.retry_in->count()));
  }
  if (Status w = Record(plan.record, /*new_entry=*/recorded == nullptr); !w.ok()) {
    give(w.message());
    return WriteFailed(w);
  }
  give(std::move(plan.text));
  return plan.result;
}

kagzi_status RunContext::Sleep(const char* step_id, std::uint64_t duration_ms) {
  if (!CheckThread()) return KAGZI_ERR_MISUSE;
  const StepRecord* recorded = nullptr;
  std::string id;
  int seq = 0;
  if (kagzi_status st = BeginCall(step_id, StepKind::kSleep, &recorded, &id, &seq);
      st != KAGZI_OK) {
    return st;
  }
  if (duration_ms > kMaxSleepMs) {
    return HostError(KAGZI_ERR_MISUSE,
                     fmt::format("sleep \"{}\": {} ms is longer than 100 years", id, duration_ms));
  }
  if (recorded != nullptr) {
    if (recorded->status == StepStatus::kFailed) return RecordedStatus(*recorded);
    Micros wake = recorded->wake_at.value_or(0);
    if (wake <= DbNow()) return KAGZI_OK;
    // Woken early (an event for another wait, a cancellation, a manual
    // resume): deliver a pending cancellation, or park again until the
    // recorded time. (The sleep's entry is final, so this delivery is not
    // journaled; the run ends CANCELLED in this invocation.)
    if (control_->lease_lost) return Suspend(RunOutcome::kAbandoned, "lease lost");
    if (DeadlinePassed()) return Suspend(RunOutcome::kTimedOut, "deadline exceeded");
    if (cancel_requested_ && !cancel_delivered_) {
      cancel_delivered_ = true;
      return KAGZI_ERR_CANCELLED;
    }
    return Park(std::nullopt, ParkOptions{std::nullopt, wake, std::nullopt},
                fmt::format("sleep \"{}\"", id));
  }
  if (kagzi_status st = CheckInterrupts(id, seq, StepKind::kSleep); st != KAGZI_OK) return st;

  StepRecord rec;
  rec.step_id = id;
  rec.seq = seq;
  rec.kind = StepKind::kSleep;
  rec.started_at = DbNow();
  if (duration_ms == 0) {
    rec.wake_at = rec.started_at;
    if (Status w = Record(rec); !w.ok()) return WriteFailed(w);
    return KAGZI_OK;
  }
  return Park(rec,
              ParkOptions{std::chrono::milliseconds(static_cast<std::int64_t>(duration_ms)),
                          std::nullopt, std::nullopt},
              fmt::format("sleep \"{}\" for {} ms", id, duration_ms));
}

kagzi_status RunContext::WaitForEvent(const char* step_id, const char* event_name,
                                      std::int64_t timeout_ms, const char** payload,
                                      std::size_t* payload_len) {
  if (!CheckThread()) return KAGZI_ERR_MISUSE;
  auto give = [&](std::string text) { GiveText(std::move(text), payload, payload_len); };
  const StepRecord* recorded = nullptr;
  std::string id;
  int seq = 0;
  if (kagzi_status st = BeginCall(step_id, StepKind::kEvent, &recorded, &id, &seq);
      st != KAGZI_OK) {
    return st;
  }
  std::string name(event_name ? event_name : "", event_name ? strnlen(event_name, 256) : 0);
  if (Status v = ValidateName(name, "event name"); !v.ok()) {
    return HostError(KAGZI_ERR_MISUSE, fmt::format("wait \"{}\": {}", id, v.message()));
  }
  if (recorded != nullptr) {
    if (IsFinal(*recorded)) {
      give(recorded->status == StepStatus::kCompleted ? recorded->output.value_or("null")
                                                      : recorded->error.value_or(""));
      return RecordedStatus(*recorded);
    }
    if (recorded->event_name.value_or("") != name) {
      return HostError(KAGZI_ERR_NONDETERMINISM,
                       fmt::format("non-determinism: wait \"{}\" was recorded for event \"{}\" "
                                   "but is replayed for \"{}\"",
                                   id, recorded->event_name.value_or(""), name));
    }
  }
  if (kagzi_status st = CheckInterrupts(id, seq, StepKind::kEvent); st != KAGZI_OK) {
    if (st == KAGZI_ERR_CANCELLED) give(cancel_reason_);
    return st;
  }

  StepRecord wait;
  wait.step_id = id;
  wait.seq = seq;
  wait.kind = StepKind::kEvent;
  wait.status = StepStatus::kWaiting;
  wait.event_name = name;
  wait.started_at = recorded ? recorded->started_at : std::optional<Micros>(DbNow());
  std::optional<std::string> got;
  Status c = Write([&] {
    auto r = store_.ConsumeEvent(control_->lease, wait);
    if (!r.ok()) return r.status();
    got = *r;
    return Status::Ok();
  });
  if (!c.ok()) return WriteFailed(c);
  if (got) {
    give(*got);
    return KAGZI_OK;
  }
  // Nothing yet: time out, or park until an event or the timeout.
  std::optional<Micros> due = recorded ? recorded->wake_at : std::nullopt;
  bool timed_out = recorded ? (due && *due <= DbNow()) : timeout_ms == 0;
  if (timed_out) {
    StepRecord rec = wait;
    rec.status = StepStatus::kFailed;
    rec.error_kind = ErrorKind::kTimeout;
    rec.error = fmt::format("no event \"{}\" arrived before the wait's timeout", name);
    if (Status w = Record(rec); !w.ok()) return WriteFailed(w);
    give(*rec.error);
    return KAGZI_ERR_TIMEOUT;
  }
  ParkOptions park;
  park.expected_wake_seq = claim_.run.wake_seq;
  if (recorded) {
    park.until = due;
    return Park(std::nullopt, park, fmt::format("waiting for event \"{}\"", name));
  }
  if (timeout_ms > 0) park.delay = std::chrono::milliseconds(timeout_ms);
  return Park(wait, park, fmt::format("waiting for event \"{}\"", name));
}

kagzi_status RunContext::CallChild(const char* step_id, const char* workflow, const char* input,
                                   std::size_t input_len, const char** out, std::size_t* out_len) {
  if (!CheckThread()) return KAGZI_ERR_MISUSE;
  auto give = [&](std::string text) { GiveText(std::move(text), out, out_len); };
  const StepRecord* recorded = nullptr;
  std::string id;
  int seq = 0;
  if (kagzi_status st = BeginCall(step_id, StepKind::kChild, &recorded, &id, &seq);
      st != KAGZI_OK) {
    return st;
  }
  std::string wf(workflow ? workflow : "", workflow ? strnlen(workflow, kMaxNameBytes + 1) : 0);
  if (Status v = ValidateName(wf, "child workflow name"); !v.ok()) {
    return HostError(KAGZI_ERR_MISUSE, fmt::format("child call \"{}\": {}", id, v.message()));
  }
  if (recorded != nullptr) {
    if (IsFinal(*recorded)) {
      give(recorded->status == StepStatus::kCompleted ? recorded->output.value_or("null")
                                                      : recorded->error.value_or(""));
      return RecordedStatus(*recorded);
    }
    const std::string child_id = recorded->child_run_id.value_or("");
    auto found = claim_.children.find(child_id);
    if (found != claim_.children.end() && IsTerminal(found->second.status)) {
      const ChildOutcome& child = found->second;
      StepRecord rec = *recorded;
      if (child.status == RunStatus::kCompleted) {
        rec.status = StepStatus::kCompleted;
        rec.output = child.output.value_or("null");
      } else {
        // Permanent even for a cancelled child: KAGZI_ERR_CANCELLED from a
        // context call always means this run was cancelled.
        rec.status = StepStatus::kFailed;
        rec.error_kind = ErrorKind::kPermanent;
        rec.error = fmt::format("child run {} ({}) {}: {}", child_id, wf,
                                child.status == RunStatus::kCancelled ? "was cancelled" : "failed",
                                child.error.value_or("no error message"));
      }
      if (Status w = Record(rec); !w.ok()) return WriteFailed(w);
      give(rec.status == StepStatus::kCompleted ? *rec.output : *rec.error);
      return rec.status == StepStatus::kCompleted ? KAGZI_OK : KAGZI_ERR_PERMANENT;
    }
    if (kagzi_status st = CheckInterrupts(id, seq, StepKind::kChild); st != KAGZI_OK) {
      if (st == KAGZI_ERR_CANCELLED) give(cancel_reason_);
      return st;
    }
    return Park(std::nullopt, ParkOptions{std::nullopt, std::nullopt, claim_.run.wake_seq},
                fmt::format("waiting for child run {}", child_id));
  }
  std::string in = input_len == 0 ? std::string("null") : std::string(input, input_len);
  if (input == nullptr && input_len > 0) {
    return HostError(KAGZI_ERR_MISUSE, fmt::format("child call \"{}\": input is NULL", id));
  }
  if (Status v = ValidateJson(in, fmt::format("input of child call \"{}\"", id),
                              options_.max_payload_bytes);
      !v.ok()) {
    return HostError(KAGZI_ERR_MISUSE, v.message());
  }
  if (kagzi_status st = CheckInterrupts(id, seq, StepKind::kChild); st != KAGZI_OK) {
    if (st == KAGZI_ERR_CANCELLED) give(cancel_reason_);
    return st;
  }
  StepRecord entry;
  entry.step_id = id;
  entry.seq = seq;
  entry.kind = StepKind::kChild;
  entry.status = StepStatus::kWaiting;
  entry.started_at = DbNow();
  StartRequest child;
  child.workflow = wf;
  child.input = std::move(in);
  child.idempotency_key = fmt::format("kagzi:child:{}/{}", claim_.run.id, id);
  std::string child_id;
  Status w = Write([&] {
    auto r = store_.StartChild(control_->lease, entry, child);
    if (!r.ok()) return r.status();
    child_id = *r;
    return Status::Ok();
  });
  if (!w.ok()) return WriteFailed(w);
  Logger("executor")
      ->info("run {}: child call \"{}\" started run {} of \"{}\"", claim_.run.id, id, child_id, wf);
  return Park(std::nullopt, ParkOptions{std::nullopt, std::nullopt, claim_.run.wake_seq},
              fmt::format("waiting for child run {}", child_id));
}

kagzi_status RunContext::Parallel(kagzi_parallel_step* steps, std::size_t count,
                                  std::uint32_t max_concurrency) {
  if (!CheckThread()) return KAGZI_ERR_MISUSE;
  if (count == 0) return KAGZI_OK;
  if (steps == nullptr) return HostError(KAGZI_ERR_MISUSE, "parallel: steps is NULL");
  if (count > 10'000) {
    return HostError(KAGZI_ERR_MISUSE, fmt::format("parallel: {} steps is too many", count));
  }
  struct Slot {
    kagzi_parallel_step* item;
    std::string id;
    int seq = 0;
    int attempt = 1;
    bool journaled = false;  // the journal has an entry of its id (a retry)
    RetryPolicy policy;
    bool run = false;
    std::optional<Micros> retry_due;  // a retry not due yet
    kagzi_status result = KAGZI_OK;
    std::string text;
    // Filled by the worker:
    std::optional<StepPlan> plan;
    Status write;
    WriteFeedback feedback;
  };
  std::vector<Slot> slots(count);
  // Phase 1, on the run thread: journal bookkeeping in item order.
  for (std::size_t i = 0; i < count; ++i) {
    Slot& s = slots[i];
    s.item = &steps[i];
    if (s.item->struct_size < sizeof(kagzi_parallel_step)) {
      return HostError(KAGZI_ERR_MISUSE,
                       fmt::format("parallel: step #{} has struct_size {}, smaller than {}", i,
                                   s.item->struct_size, sizeof(kagzi_parallel_step)));
    }
    const StepRecord* recorded = nullptr;
    if (kagzi_status st = BeginCall(s.item->step_id, StepKind::kStep, &recorded, &s.id, &s.seq);
        st != KAGZI_OK) {
      return st;
    }
    if (Status p = ParsePolicy(s.item->policy, &s.policy); !p.ok()) {
      return HostError(KAGZI_ERR_MISUSE, fmt::format("step \"{}\": {}", s.id, p.message()));
    }
    s.journaled = recorded != nullptr;
    if (recorded != nullptr && IsFinal(*recorded)) {
      s.result = RecordedStatus(*recorded);
      s.text = recorded->status == StepStatus::kCompleted ? recorded->output.value_or("null")
                                                          : recorded->error.value_or("");
      continue;
    }
    if (recorded != nullptr) {
      if (recorded->wake_at.value_or(0) > DbNow()) {
        s.retry_due = recorded->wake_at;
        continue;
      }
      s.attempt = recorded->attempts + 1;
    }
    if (s.item->fn == nullptr) {
      return HostError(KAGZI_ERR_MISUSE, fmt::format("step \"{}\": step function is NULL", s.id));
    }
    s.run = true;
  }
  if (count > 0) last_call_seq_ = slots.front().seq;  // the group is one call
  std::vector<Slot*> to_run;
  Slot* first_unfinished = nullptr;
  for (auto& s : slots) {
    if (s.run) to_run.push_back(&s);
    if ((s.run || s.retry_due) && first_unfinished == nullptr) first_unfinished = &s;
  }
  if (first_unfinished != nullptr) {
    kagzi_status st = CheckInterrupts(first_unfinished->id, first_unfinished->seq, StepKind::kStep);
    if (st == KAGZI_ERR_CANCELLED) {
      // Every unfinished member receives the cancellation, journaled.
      for (std::size_t k = 0; k < slots.size(); ++k) {
        Slot& s = slots[k];
        if (!s.run && !s.retry_due) continue;
        if (&s != first_unfinished) {
          StepRecord rec;
          rec.step_id = s.id;
          rec.seq = s.seq;
          rec.status = StepStatus::kFailed;
          rec.error = cancel_reason_;
          rec.error_kind = ErrorKind::kCancelled;
          rec.started_at = DbNow();
          if (Status w = Record(rec); !w.ok()) return WriteFailed(w);
        }
        s.result = KAGZI_ERR_CANCELLED;
        s.text = cancel_reason_;
      }
      for (auto& s : slots) {
        s.item->status = s.result;
        s.item->out = Keep(s.text, &s.item->out_len);
      }
      return KAGZI_ERR_CANCELLED;
    }
    if (st != KAGZI_OK) return st;
  }
  if (!to_run.empty()) {
    // Phase 2: the step functions, on worker threads; each records its own
    // outcome as soon as it has one.
    std::size_t limit = static_cast<std::size_t>(options_.parallel_limit);
    if (max_concurrency > 0) limit = std::min<std::size_t>(limit, max_concurrency);
    limit = std::min(limit, to_run.size());
    std::atomic<std::size_t> next{0};
    in_step_ = true;
    current_step_ = "parallel group";
    const int slot = CurrentSlot();  // parallel members are blamed on this run
    SlotStepGroup slot_group;
    auto worker = [&] {
      BindThreadToSlot(slot);
      ScopedLogContext log_ctx({.run_id = claim_.run.id, .workflow = claim_.run.workflow});
      for (std::size_t k = next++; k < to_run.size(); k = next++) {
        Slot& s = *to_run[k];
        const Micros started = DbNow();
        Attempt a = RunStepFunction(s.item->fn, s.item->user, s.id, &slot_group);
        StepPlan plan = PlanStep(s.id, s.seq, s.attempt, s.policy, std::move(a), started);
        if (plan.result != KAGZI_ERR_MISUSE) {
          if (plan.retry_in) {
            plan.record.wake_at =
                DbNow() +
                std::chrono::duration_cast<std::chrono::microseconds>(*plan.retry_in).count();
          }
          s.write = Fenced(FencedWrite::Kind::kRecordStep, &plan.record, {}, &s.feedback,
                           /*new_entry=*/!s.journaled);
        }
        s.plan = std::move(plan);
      }
    };
    std::vector<std::thread> threads;
    for (std::size_t t = 1; t < limit; ++t) threads.emplace_back(worker);
    worker();  // the run thread works too
    for (auto& t : threads) t.join();
    in_step_ = false;
    if (host_error_) return host_error_->first;  // a step function misused the context

    // Phase 3, on the run thread: merge.
    for (Slot* s : to_run) {
      if (s->feedback.cancel_requested && !cancel_requested_) {
        cancel_requested_ = true;
        cancel_reason_ = s->feedback.cancel_reason.value_or("cancelled");
      }
    }
    for (Slot* s : to_run) {
      if (s->plan->result == KAGZI_ERR_MISUSE) return HostError(KAGZI_ERR_MISUSE, s->plan->text);
      if (!s->write.ok()) return WriteFailed(s->write);
      if (s->plan->retry_in) {
        s->retry_due = s->plan->record.wake_at;
      } else {
        s->result = s->plan->result;
        s->text = s->plan->text;
      }
    }
  }
  std::optional<Micros> earliest;
  for (auto& s : slots) {
    if (s.retry_due && (!earliest || *s.retry_due < *earliest)) earliest = s.retry_due;
  }
  if (earliest) {
    return Park(std::nullopt, ParkOptions{std::nullopt, *earliest, std::nullopt},
                "parallel group: a retry is pending");
  }
  for (auto& s : slots) {
    s.item->status = s.result;
    s.item->out = Keep(s.text, &s.item->out_len);
  }
  return KAGZI_OK;
}

kagzi_status RunContext::RecordHelper(const char* step_id, const std::function<std::string()>& make,
                                      std::string* value) {
  if (!CheckThread()) return KAGZI_ERR_MISUSE;
  const StepRecord* recorded = nullptr;
  std::string id;
  int seq = 0;
  if (kagzi_status st = BeginCall(step_id, StepKind::kHelper, &recorded, &id, &seq);
      st != KAGZI_OK) {
    return st;
  }
  if (recorded != nullptr) {
    if (recorded->status != StepStatus::kCompleted) return RecordedStatus(*recorded);
    *value = recorded->output.value_or("0");
    return KAGZI_OK;
  }
  if (kagzi_status st = CheckInterrupts(id, seq, StepKind::kHelper); st != KAGZI_OK) return st;
  StepRecord rec;
  rec.step_id = id;
  rec.seq = seq;
  rec.kind = StepKind::kHelper;
  rec.started_at = DbNow();
  rec.output = make();
  if (Status w = Record(rec); !w.ok()) return WriteFailed(w);
  *value = *rec.output;
  return KAGZI_OK;
}

kagzi_status RunContext::NowMs(const char* step_id, std::int64_t* unix_ms) {
  if (unix_ms == nullptr) return HostError(KAGZI_ERR_MISUSE, "now_ms: unix_ms is NULL");
  std::string text;
  kagzi_status st = RecordHelper(
      step_id,
      [] {
        return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count());
      },
      &text);
  if (st != KAGZI_OK) return st;
  std::from_chars(text.data(), text.data() + text.size(), *unix_ms);
  return KAGZI_OK;
}

kagzi_status RunContext::RandomU64(const char* step_id, std::uint64_t* value) {
  if (value == nullptr) return HostError(KAGZI_ERR_MISUSE, "random_u64: value is NULL");
  std::string text;
  kagzi_status st = RecordHelper(
      step_id,
      [this] {
        std::lock_guard lock(g_rng_mu);
        return std::to_string(Rng()());
      },
      &text);
  if (st != KAGZI_OK) return st;
  std::from_chars(text.data(), text.data() + text.size(), *value);
  return KAGZI_OK;
}

kagzi_status RunContext::SetOutput(const char* json, std::size_t len) {
  if (!CheckThread()) return KAGZI_ERR_MISUSE;
  if (in_step_) return HostError(KAGZI_ERR_MISUSE, "set_output called from inside a step");
  if (suspended_) return HostError(KAGZI_ERR_MISUSE, "set_output called after KAGZI_SUSPEND");
  if (json == nullptr && len > 0) return HostError(KAGZI_ERR_MISUSE, "set_output: json is NULL");
  std::string text = len == 0 ? std::string("null") : std::string(json, len);
  if (Status v = ValidateJson(text, "workflow output", options_.max_payload_bytes); !v.ok()) {
    return HostError(KAGZI_ERR_MISUSE, v.message());
  }
  output_ = std::move(text);
  return KAGZI_OK;
}

kagzi_status RunContext::SetError(const char* message, std::size_t len) {
  if (!CheckThread()) return KAGZI_ERR_MISUSE;
  if (in_step_) return HostError(KAGZI_ERR_MISUSE, "set_error called from inside a step");
  if (message == nullptr && len > 0) return HostError(KAGZI_ERR_MISUSE, "set_error: NULL");
  error_ = SanitizeText(std::string_view(message ? message : "", len), kMaxMessageBytes);
  return KAGZI_OK;
}

void RunContext::Log(std::int32_t level, const char* message, std::size_t len) {
  if (message == nullptr) return;
  std::string text = SanitizeText(std::string_view(message, len), 8192);
  for (auto& ch : text) {
    if (static_cast<unsigned char>(ch) < 0x20 && ch != '\t') ch = ' ';
  }
  auto lvl = level <= KAGZI_LOG_DEBUG  ? spdlog::level::debug
             : level == KAGZI_LOG_INFO ? spdlog::level::info
             : level == KAGZI_LOG_WARN ? spdlog::level::warn
                                       : spdlog::level::err;
  Logger("workflow")
      ->log(lvl, "run {} ({} v{}): {}", claim_.run.id, claim_.run.workflow,
            claim_.run.version.value_or(0), text);
}

RunOutcome RunContext::Finish(kagzi_status status, std::optional<std::string> exception) {
  RunEnd end = Conclude(status, std::move(exception));
  if (!end.write) return end.outcome;
  (void)Apply(*end.write);
  RunOutcome outcome = end.Written();
  outcome_detail_ = end.detail;
  return outcome;
}

RunEnd RunContext::Conclude(kagzi_status status, std::optional<std::string> exception) {
  RunEnd end;
  // The run's completion or failure, written by the caller.
  auto last_write = [&](FencedWrite::Kind kind, std::string value, RunOutcome outcome,
                        std::string detail) {
    end.write = std::make_unique<FencedWrite>(MakeFenced(kind, nullptr, std::move(value)));
    end.outcome = outcome;
    end.detail = std::move(detail);
  };
  auto log = Logger("executor");
  const auto& run = claim_.run;
  if (suspended_) {
    end.detail = outcome_detail_;
    switch (*suspended_) {
      case RunOutcome::kParked:
        if (status != KAGZI_SUSPEND) {
          log->warn(
              "run {} ({}): workflow returned status {} after the host returned "
              "KAGZI_SUSPEND; ignored, the run stays parked",
              run.id, run.workflow, status);
        }
        end.outcome = RunOutcome::kParked;
        return end;
      case RunOutcome::kReleased: {
        Status st = Write([&] { return store_.ReleaseRun(control_->lease); });
        end.outcome = st.ok() ? RunOutcome::kReleased : RunOutcome::kAbandoned;
        return end;
      }
      case RunOutcome::kTimedOut: {
        std::string why = "deadline exceeded: the run did not finish in time";
        outcome_detail_ = why;
        last_write(FencedWrite::Kind::kFailRun, why, RunOutcome::kTimedOut, why);
        return end;
      }
      default:
        end.outcome = RunOutcome::kAbandoned;
        return end;
    }
  }
  if (cancel_delivered_) {
    // However run() ended (cleanup steps done, or the exception unhandled),
    // a delivered cancellation ends the run CANCELLED.
    Status st = Write([&] { return store_.CancelRun(control_->lease, cancel_reason_); });
    outcome_detail_ = cancel_reason_;
    end.detail = cancel_reason_;
    end.outcome = st.ok() ? RunOutcome::kCancelled : RunOutcome::kAbandoned;
    return end;
  }
  if (foreign_call_ && !host_error_) {
    HostError(KAGZI_ERR_MISUSE, "the context was called from a thread other than the run's");
  }
  std::optional<std::string> failure;
  if (host_error_) {
    failure = host_error_->second;
  } else if (exception) {
    failure = fmt::format("workflow threw a C++ exception across the C ABI: {}", *exception);
  } else if (status == KAGZI_OK) {
    last_write(FencedWrite::Kind::kCompleteRun, output_.value_or("null"), RunOutcome::kCompleted,
               {});
    outcome_detail_.clear();
    return end;
  } else if (status == KAGZI_SUSPEND) {
    failure = "workflow returned KAGZI_SUSPEND although the host never suspended it";
  } else if (status == KAGZI_ERR_RETRYABLE || status == KAGZI_ERR_PERMANENT ||
             status == KAGZI_ERR_TIMEOUT || status == KAGZI_ERR_NONDETERMINISM ||
             status == KAGZI_ERR_MISUSE) {
    failure =
        error_.value_or(fmt::format("workflow failed with status {} and no error message", status));
  } else if (status == KAGZI_ERR_CANCELLED) {
    failure =
        error_.value_or("workflow returned KAGZI_ERR_CANCELLED although the run was not cancelled");
  } else {
    failure = fmt::format("workflow returned unknown status {}", status);
  }
  outcome_detail_ = *failure;
  last_write(FencedWrite::Kind::kFailRun, *failure, RunOutcome::kFailed, *failure);
  return end;
}

}  // namespace kagzi::daemon
