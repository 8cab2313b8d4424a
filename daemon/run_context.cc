// The replay engine. The rules it enforces are the ABI's (plugin.h) and the
// invariants of docs/ARCHITECTURE.md: a recorded step is returned, never
// re-run; a new step is recorded under the lease before its result is
// returned to the workflow; a refused (fenced) write abandons the run.
#include "run_context.h"

#include <algorithm>

#include "kagzi/core/log.h"
#include "kagzi/core/validation.h"

namespace kagzi::daemon {
namespace {

constexpr std::uint64_t kContextMagic = 0x6b61677a69637478ULL;  // "kagzictx"
constexpr std::size_t kMaxMessageBytes = 64 * 1024;
constexpr std::uint64_t kMaxSleepMs = 100ULL * 365 * 24 * 3600 * 1000;  // 100 years

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
  return rc ? rc->Step(id, fn, user, out, out_len) : KAGZI_ERR_MISUSE;
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

const kagzi_host kHostTable = {
    sizeof(kagzi_host), KAGZI_ABI_MAJOR, KAGZI_ABI_MINOR, HostGetInput,     HostStep,     HostSleep,
    HostSetOutput,      HostSetError,    HostLog,         HostGetExtension, HostGetRunId,
};

std::string_view KindName(StepKind k) { return StepKindName(k); }

}  // namespace

std::string_view RunOutcomeName(RunOutcome o) {
  switch (o) {
    case RunOutcome::kCompleted:
      return "completed";
    case RunOutcome::kFailed:
      return "failed";
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
      options_(options),
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
}

Micros RunContext::DbNow() const {
  auto elapsed = std::chrono::steady_clock::now() - claimed_at_;
  return db_now_at_claim_ + std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count();
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

Status RunContext::Write(const std::function<Status()>& write) {
  auto deadline = std::chrono::steady_clock::now() + options_.write_retry_budget;
  auto backoff = std::chrono::milliseconds(50);
  while (true) {
    Status st = write();
    if (st.ok() || !st.IsUnavailable()) return st;
    if (std::chrono::steady_clock::now() + backoff > deadline || control_->lease_lost) return st;
    Logger("executor")
        ->warn("run {}: write failed, retrying in {} ms: {}", claim_.run.id, backoff.count(),
               st.message());
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
}

kagzi_status RunContext::BeginCall(const char* step_id, StepKind kind, const StepRecord** recorded,
                                   std::string* id_out) {
  *recorded = nullptr;
  if (in_step_) {
    return HostError(KAGZI_ERR_MISUSE,
                     fmt::format("{} \"{}\" called from inside the step function of \"{}\"",
                                 kind == StepKind::kSleep ? "sleep" : "step",
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
  return KAGZI_OK;
}

kagzi_status RunContext::GetInput(const char** data, std::size_t* len) {
  if (!OnRunThread()) {
    foreign_call_ = true;
    return KAGZI_ERR_MISUSE;
  }
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

kagzi_status RunContext::Step(const char* step_id, kagzi_step_fn fn, void* user, const char** out,
                              std::size_t* out_len) {
  if (!OnRunThread()) {
    foreign_call_ = true;
    return KAGZI_ERR_MISUSE;
  }
  auto give = [&](std::string text) {
    std::size_t n = 0;
    const char* p = Keep(std::move(text), &n);
    if (out) *out = p;
    if (out_len) *out_len = n;
  };
  const StepRecord* recorded = nullptr;
  std::string id;
  if (kagzi_status st = BeginCall(step_id, StepKind::kStep, &recorded, &id); st != KAGZI_OK) {
    give(host_error_ ? host_error_->second : std::string());
    return st;
  }
  if (recorded != nullptr) {
    if (recorded->status == StepStatus::kCompleted) {
      give(recorded->output.value_or("null"));
      return KAGZI_OK;
    }
    give(recorded->error.value_or("step failed"));
    return recorded->error_kind == ErrorKind::kRetryable ? KAGZI_ERR_RETRYABLE
                                                         : KAGZI_ERR_PERMANENT;
  }
  if (fn == nullptr) {
    give("step function is NULL");
    return HostError(KAGZI_ERR_MISUSE, fmt::format("step \"{}\": step function is NULL", id));
  }
  if (control_->lease_lost) return Suspend(RunOutcome::kAbandoned, "lease lost");
  if (control_->drain) return Suspend(RunOutcome::kReleased, "daemon is draining");

  StepWriter sink;
  sink.limit = static_cast<std::size_t>(options_.max_payload_bytes);
  kagzi_writer writer{sizeof(kagzi_writer), KAGZI_ABI_MAJOR, KAGZI_ABI_MINOR, &sink, WriterWrite};
  const Micros started = DbNow();
  kagzi_status st = KAGZI_ERR_PERMANENT;
  in_step_ = true;
  current_step_ = id;
  try {
    st = fn(user, &writer);
  } catch (const std::exception& e) {
    st = KAGZI_ERR_PERMANENT;
    sink.buffer = fmt::format("step function threw a C++ exception across the C ABI: {}", e.what());
  } catch (...) {
    st = KAGZI_ERR_PERMANENT;
    sink.buffer = "step function threw a C++ exception across the C ABI";
  }
  in_step_ = false;
  if (host_error_) {
    give(host_error_->second);
    return host_error_->first;  // the step function misused the context
  }

  StepRecord rec;
  rec.step_id = id;
  rec.seq = next_seq_ - 1;
  rec.kind = StepKind::kStep;
  rec.started_at = started;
  kagzi_status result = st;
  if (sink.overflow) {
    rec.status = StepStatus::kFailed;
    rec.error = fmt::format("step result is larger than max_payload_bytes ({} bytes)",
                            options_.max_payload_bytes);
    result = KAGZI_ERR_PERMANENT;
  } else if (st == KAGZI_OK) {
    std::string text = sink.buffer.empty() ? std::string("null") : std::move(sink.buffer);
    if (Status v = ValidateJson(text, fmt::format("result of step \"{}\"", id),
                                options_.max_payload_bytes);
        !v.ok()) {
      give(v.message());
      return HostError(KAGZI_ERR_MISUSE, v.message());
    }
    rec.status = StepStatus::kCompleted;
    rec.output = std::move(text);
  } else if (st == KAGZI_ERR_RETRYABLE || st == KAGZI_ERR_PERMANENT) {
    rec.status = StepStatus::kFailed;
    rec.error_kind = st == KAGZI_ERR_RETRYABLE ? ErrorKind::kRetryable : ErrorKind::kPermanent;
    rec.error = sink.buffer.empty() ? fmt::format("step \"{}\" failed (status {})", id, st)
                                    : SanitizeText(sink.buffer, kMaxMessageBytes);
  } else {
    rec.status = StepStatus::kFailed;
    rec.error = fmt::format("step function returned invalid status {}", st);
    result = KAGZI_ERR_PERMANENT;
  }

  Status w = Write([&] { return store_.RecordStep(control_->lease, rec); });
  if (w.IsConflict() || w.IsUnavailable()) {
    return Suspend(RunOutcome::kAbandoned, w.message());
  }
  if (!w.ok()) {
    give(w.message());
    return HostError(KAGZI_ERR_NONDETERMINISM, w.message());
  }
  give(rec.status == StepStatus::kCompleted ? *rec.output : *rec.error);
  return result;
}

kagzi_status RunContext::Sleep(const char* step_id, std::uint64_t duration_ms) {
  if (!OnRunThread()) {
    foreign_call_ = true;
    return KAGZI_ERR_MISUSE;
  }
  const StepRecord* recorded = nullptr;
  std::string id;
  if (kagzi_status st = BeginCall(step_id, StepKind::kSleep, &recorded, &id); st != KAGZI_OK) {
    return st;
  }
  if (duration_ms > kMaxSleepMs) {
    return HostError(KAGZI_ERR_MISUSE,
                     fmt::format("sleep \"{}\": {} ms is longer than 100 years", id, duration_ms));
  }
  if (recorded != nullptr) {
    Micros wake = recorded->wake_at.value_or(0);
    Micros now = DbNow();
    if (wake <= now) return KAGZI_OK;
    // Woken early (e.g. resumed by hand): park again until the recorded time.
    if (control_->lease_lost) return Suspend(RunOutcome::kAbandoned, "lease lost");
    auto delay = std::chrono::milliseconds((wake - now + 999) / 1000);
    auto parked = store_.ParkRun(control_->lease, std::nullopt, delay);
    if (!parked.ok()) return Suspend(RunOutcome::kAbandoned, parked.status().message());
    if (on_park_) on_park_(*parked);
    return Suspend(RunOutcome::kParked, fmt::format("sleep \"{}\"", id));
  }
  if (control_->lease_lost) return Suspend(RunOutcome::kAbandoned, "lease lost");
  if (control_->drain) return Suspend(RunOutcome::kReleased, "daemon is draining");

  StepRecord rec;
  rec.step_id = id;
  rec.seq = next_seq_ - 1;
  rec.kind = StepKind::kSleep;
  rec.started_at = DbNow();
  if (duration_ms == 0) {
    rec.wake_at = rec.started_at;
    Status w = Write([&] { return store_.RecordStep(control_->lease, rec); });
    if (w.IsConflict() || w.IsUnavailable()) return Suspend(RunOutcome::kAbandoned, w.message());
    if (!w.ok()) return HostError(KAGZI_ERR_NONDETERMINISM, w.message());
    return KAGZI_OK;
  }
  Micros wake = 0;
  Status w = Write([&] {
    auto parked = store_.ParkRun(control_->lease, rec,
                                 std::chrono::milliseconds(static_cast<std::int64_t>(duration_ms)));
    if (!parked.ok()) return parked.status();
    wake = *parked;
    return Status::Ok();
  });
  if (w.IsConflict() || w.IsUnavailable()) return Suspend(RunOutcome::kAbandoned, w.message());
  if (!w.ok()) return HostError(KAGZI_ERR_NONDETERMINISM, w.message());
  if (on_park_) on_park_(wake);
  return Suspend(RunOutcome::kParked, fmt::format("sleep \"{}\" for {} ms", id, duration_ms));
}

kagzi_status RunContext::SetOutput(const char* json, std::size_t len) {
  if (!OnRunThread()) {
    foreign_call_ = true;
    return KAGZI_ERR_MISUSE;
  }
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
  if (!OnRunThread()) {
    foreign_call_ = true;
    return KAGZI_ERR_MISUSE;
  }
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
  auto log = Logger("executor");
  const auto& run = claim_.run;
  if (suspended_) {
    switch (*suspended_) {
      case RunOutcome::kParked:
        if (status != KAGZI_SUSPEND) {
          log->warn(
              "run {} ({}): workflow returned status {} after the host returned "
              "KAGZI_SUSPEND; ignored, the run stays parked",
              run.id, run.workflow, status);
        }
        return RunOutcome::kParked;
      case RunOutcome::kReleased: {
        Status st = Write([&] { return store_.ReleaseRun(control_->lease); });
        return st.ok() ? RunOutcome::kReleased : RunOutcome::kAbandoned;
      }
      default:
        return RunOutcome::kAbandoned;
    }
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
    std::string out = output_.value_or("null");
    Status st = Write([&] { return store_.CompleteRun(control_->lease, out); });
    if (st.ok()) return RunOutcome::kCompleted;
    outcome_detail_ = st.message();
    return RunOutcome::kAbandoned;
  } else if (status == KAGZI_SUSPEND) {
    failure = "workflow returned KAGZI_SUSPEND although the host never suspended it";
  } else if (status == KAGZI_ERR_RETRYABLE || status == KAGZI_ERR_PERMANENT) {
    failure =
        error_.value_or(fmt::format("workflow failed with status {} and no error message", status));
  } else {
    failure = fmt::format("workflow returned unknown status {}", status);
  }
  outcome_detail_ = *failure;
  Status st = Write([&] { return store_.FailRun(control_->lease, *failure); });
  if (st.ok()) return RunOutcome::kFailed;
  outcome_detail_ = st.message();
  return RunOutcome::kAbandoned;
}

}  // namespace kagzi::daemon
