// Shared pages and crash handlers. The handlers are async-signal-safe: they
// only store to lock-free atomics in the shared page, then let the signal
// take its default action.
#include "worker_shared.h"

#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace kagzi::daemon {
namespace {

WorkerShared* g_shared = nullptr;
thread_local int t_slot = -1;
// The step function this thread is inside (its id), for the crash handler.
thread_local const char* t_step = nullptr;
constexpr int kFatalSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS};

void RecordCrash(int sig) {
  if (g_shared == nullptr) return;
  if (t_slot < 0 || t_slot >= kMaxWorkerSlots) return;  // not an executor thread
  // Each thread records its own reason first; then the first thread to
  // crash wins the blame. Two runs of one worker may fail at once (one
  // aborts while another calls exit()): the blamed run is given its own
  // reason, never the other's.
  CrashSlot& slot = g_shared->slots[t_slot];
  slot.crash_signal.store(sig);
  std::int32_t expected = -1;
  if (!g_shared->crashed_slot.compare_exchange_strong(expected, t_slot)) return;
  if (const char* step = t_step; step != nullptr) {
    const std::size_t n = strnlen(step, sizeof(slot.crash_step_id) - 1);
    std::memcpy(slot.crash_step_id, step, n);
    slot.crash_step_id[n] = '\0';
    slot.crash_step_known.store(1);
  }
}

void OnFatalSignal(int sig) {
  RecordCrash(sig);
  // SA_RESETHAND restored the default action: re-raise to die by `sig`, so
  // the supervisor's waitpid sees the real signal.
  raise(sig);
}

void OnExit() {
  if (g_shared == nullptr || g_shared->normal_exit.load() != 0) return;
  // exit() called from plugin code (or anywhere not on purpose). Record it
  // and end the process now: letting exit() go on would run static
  // destructors under the feet of the worker's other threads (a condition
  // variable destroyed while waited on blocks forever).
  RecordCrash(kCrashExitCalled);
  _exit(kExitCalledStatus);
}

void WriteSlotText(char* dst, std::size_t cap, const std::string& text) {
  std::size_t n = std::min(cap - 1, text.size());
  std::memcpy(dst, text.data(), n);
  dst[n] = '\0';
}

CrashSlot* MySlot() {
  if (g_shared == nullptr || t_slot < 0 || t_slot >= kMaxWorkerSlots) return nullptr;
  return &g_shared->slots[t_slot];
}

}  // namespace

std::int64_t MonotonicMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

WorkerShared* MapWorkerShared() {
  void* p = mmap(nullptr, sizeof(WorkerShared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                 -1, 0);
  if (p == MAP_FAILED) return nullptr;
  auto* shared = new (p) WorkerShared();
  ResetWorkerShared(shared);
  return shared;
}

void ResetWorkerShared(WorkerShared* shared) {
  shared->loop_heartbeat_ms = MonotonicMs();
  shared->ready = 0;
  shared->crashed_slot = -1;
  shared->in_flight = 0;
  shared->loaded_workflows = 0;
  shared->normal_exit = 0;
  std::memset(shared->instance_id, 0, sizeof(shared->instance_id));
  for (auto& slot : shared->slots) {
    slot.state = 0;
    slot.version = 0;
    slot.step_started_ms = 0;
    slot.crash_signal = 0;
    slot.crash_step_known = 0;
    std::memset(slot.run_id, 0, sizeof(slot.run_id));
    std::memset(slot.step_id, 0, sizeof(slot.step_id));
    std::memset(slot.crash_step_id, 0, sizeof(slot.crash_step_id));
  }
}

void InstallCrashReporting(WorkerShared* shared) {
  g_shared = shared;
  for (int sig : kFatalSignals) {
    struct sigaction sa {};
    sa.sa_handler = OnFatalSignal;
    sa.sa_flags = SA_RESETHAND | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, nullptr);
  }
  std::atexit(OnExit);
}

void BindThreadToSlot(int index) { t_slot = index; }
int CurrentSlot() { return t_slot; }
void SwapSlotState(int& slot, const char*& step) {
  std::swap(t_slot, slot);
  std::swap(t_step, step);
}
WorkerShared* CurrentWorkerShared() { return g_shared; }

void SlotEnterRun(const std::string& run_id) {
  CrashSlot* s = MySlot();
  if (s == nullptr) return;
  s->version.fetch_add(1);
  WriteSlotText(s->run_id, sizeof(s->run_id), run_id);
  s->step_id[0] = '\0';
  s->state = 1;
  s->version.fetch_add(1);
}

namespace {
void SetSlotStep(const std::string& step_id, std::int64_t started_ms) {
  CrashSlot* s = MySlot();
  if (s == nullptr) return;
  s->version.fetch_add(1);
  WriteSlotText(s->step_id, sizeof(s->step_id), step_id);
  s->step_started_ms = started_ms;
  s->state = 2;
  s->version.fetch_add(1);
}
}  // namespace

void SlotEnterStep(const std::string& step_id) {
  t_step = step_id.c_str();
  SetSlotStep(step_id, MonotonicMs());
}

void SlotLeaveStep() {
  t_step = nullptr;
  CrashSlot* s = MySlot();
  if (s == nullptr) return;
  s->state = 1;
}

void SlotLeaveRun() {
  CrashSlot* s = MySlot();
  if (s == nullptr) return;
  s->state = 0;
}

void SlotStepGroup::Enter(const std::string& step_id) {
  t_step = step_id.c_str();
  std::lock_guard lock(mu_);
  running_.emplace_back(step_id, MonotonicMs());
  if (running_.size() == 1) SetSlotStep(running_.front().first, running_.front().second);
}

void SlotStepGroup::Leave(const std::string& step_id) {
  t_step = nullptr;
  std::lock_guard lock(mu_);
  auto it = std::find_if(running_.begin(), running_.end(),
                         [&](const auto& r) { return r.first == step_id; });
  if (it == running_.end()) return;
  const bool was_oldest = it == running_.begin();
  running_.erase(it);
  if (running_.empty()) {
    SlotLeaveStep();
  } else if (was_oldest) {
    SetSlotStep(running_.front().first, running_.front().second);
  }
}

void MarkNormalExit() {
  if (g_shared != nullptr) g_shared->normal_exit = 1;
}

}  // namespace kagzi::daemon
