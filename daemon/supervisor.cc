// The supervisor loop and the worker process body.
#include "supervisor.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "cpu_affinity.h"
#include "daemon.h"
#include "kagzi/core/log.h"

namespace kagzi::daemon {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr auto kRestartBackoffMin = milliseconds(500);
constexpr auto kRestartBackoffMax = milliseconds(30'000);
constexpr auto kStableUptime = std::chrono::seconds(60);

std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev != nullptr ? std::string("SIG") + abbrev : fmt::format("signal {}", sig);
}

// A notifier for worker processes: only the supervisor talks to systemd.
class SilentNotifier final : public Notifier {
 public:
  void Ready() override {}
  void Status(std::string_view) override {}
  void Stopping() override {}
  void Watchdog() override {}
};

sigset_t SupervisorSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&set, sig);
  return set;
}

}  // namespace

Supervisor::Supervisor(Config config, std::unique_ptr<Notifier> notifier)
    : config_(std::move(config)), notifier_(std::move(notifier)), id_(NewUuid()) {}

Supervisor::~Supervisor() {
  if (signal_fd_ >= 0) close(signal_fd_);
}

Config Supervisor::WorkerConfig(int index) const {
  // Split concurrency across workers; the first ones take the remainder.
  const int n = static_cast<int>(workers_.size());
  Config c = config_;
  c.concurrency = config_.concurrency / n + (index <= config_.concurrency % n ? 1 : 0);
  return c;
}

int Supervisor::Run() {
  auto log = Logger("supervisor");
  sigset_t set = SupervisorSignals();
  sigprocmask(SIG_BLOCK, &set, nullptr);
  signal_fd_ = signalfd(-1, &set, SFD_CLOEXEC);
  if (signal_fd_ < 0) {
    log->critical("signalfd: {}", std::strerror(errno));
    return 1;
  }

  // The database first: migrations run here, once, before any worker.
  store_ = std::make_unique<PgStore>(PgStoreOptions{config_.database_url, "kagzid-supervisor", 2});
  Status db = WaitForDatabaseAndMigrate(*store_, *notifier_, [this] {
    pollfd p{signal_fd_, POLLIN, 0};
    return (::poll(&p, 1, 0) > 0 && !HandleSignals()) || stopping_;
  });
  if (!db.ok()) {
    if (stopping_) {
      log->info("stopped before start-up finished: {}", db.message());
      return 0;
    }
    log->critical("cannot start: {}", db.message());
    return 1;
  }

  const int n = std::max(1, std::min(config_.workers, config_.concurrency));
  workers_.resize(n);
  for (int i = 0; i < n; ++i) {
    workers_[i].index = i + 1;
    workers_[i].shared = MapWorkerShared();
    if (workers_[i].shared == nullptr) {
      log->critical("cannot map the shared page of worker {}: {}", i + 1, std::strerror(errno));
      return 1;
    }
  }
  log->info("starting {} worker(s), {} concurrent run(s) in all, max_crashes {}, step_timeout {}",
            n, config_.concurrency, config_.max_crashes, FormatDuration(config_.step_timeout));
  for (auto& w : workers_) Spawn(w);

  while (true) {
    pollfd p{signal_fd_, POLLIN, 0};
    ::poll(&p, 1, 250);
    if (!HandleSignals()) break;
    Reap();
    if (stopping_) {
      if (AllStopped()) break;
      if (steady_clock::now() > stop_deadline_) {
        for (auto& w : workers_) {
          if (w.pid > 0) {
            log->warn("worker {} (pid {}) did not stop in time; killing it", w.index, w.pid);
            kill(w.pid, SIGKILL);
          }
        }
        stop_deadline_ = steady_clock::now() + std::chrono::hours(1);
      }
      continue;
    }
    Supervise();
  }
  log->info("stopped");
  return 0;
}

bool Supervisor::HandleSignals() {
  auto log = Logger("supervisor");
  signalfd_siginfo info{};
  while (true) {
    pollfd p{signal_fd_, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) break;
    if (read(signal_fd_, &info, sizeof(info)) != sizeof(info)) break;
    const int sig = static_cast<int>(info.ssi_signo);
    if (sig == SIGCHLD) continue;  // Reap() looks at every child
    if (sig == SIGHUP) {
      log->info("SIGHUP: asking the workers to rescan \"{}\"", config_.plugin_dir);
      for (auto& w : workers_) {
        if (w.pid > 0) kill(w.pid, SIGHUP);
      }
      continue;
    }
    if (!stopping_) {
      log->info("{}: stopping; workers drain their runs (up to {})", SignalName(sig),
                FormatDuration(config_.drain_timeout));
      notifier_->Stopping();
      stopping_ = true;
      stop_deadline_ = steady_clock::now() + config_.drain_timeout + std::chrono::seconds(15);
      for (auto& w : workers_) {
        w.restart_at.reset();
        if (w.pid > 0) kill(w.pid, SIGTERM);
      }
    }
  }
  return true;
}

bool Supervisor::AllStopped() const {
  for (const auto& w : workers_) {
    if (w.pid > 0) return false;
  }
  return true;
}

void Supervisor::Spawn(Worker& w) {
  auto log = Logger("supervisor");
  ResetWorkerShared(w.shared);
  w.kill_reason.reset();
  w.kill_blamed_run.reset();
  w.restart_at.reset();
  const pid_t parent = getpid();
  fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    log->error("cannot fork worker {}: {}; retrying", w.index, std::strerror(errno));
    w.restart_at = steady_clock::now() + kRestartBackoffMax;
    return;
  }
  if (pid == 0) {
    // The worker: dies with the supervisor, never touches its connections.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    close(signal_fd_);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    std::string name = fmt::format("kagzid-w{}", w.index);
    prctl(PR_SET_NAME, name.c_str());
    WorkerIdentity identity;
    identity.index = w.index;
    identity.supervisor_id = id_;
    identity.restarts = w.restarts;
    identity.shared = w.shared;
    identity.migrate = false;
    int code = RunWorker(WorkerConfig(w.index), identity);
    MarkNormalExit();
    fflush(nullptr);
    _exit(code);
  }
  w.pid = pid;
  w.started_at = steady_clock::now();
  log->info("worker {} started (pid {}{})", w.index, pid,
            w.restarts > 0 ? fmt::format(", restart {}", w.restarts) : std::string());
}

void Supervisor::Reap() {
  while (true) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    for (auto& w : workers_) {
      if (w.pid == pid) {
        w.pid = -1;
        OnWorkerDeath(w, status);
      }
    }
  }
}

void Supervisor::OnWorkerDeath(Worker& w, int wait_status) {
  auto log = Logger("supervisor");
  WorkerShared& sh = *w.shared;
  const bool clean = WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0 &&
                     sh.normal_exit.load() != 0 && !w.kill_reason;
  if (stopping_ && clean) {
    log->info("worker {} stopped", w.index);
    return;
  }

  WorkerDeath death;
  death.worker_id = sh.instance_id;
  death.max_crashes = config_.max_crashes;
  std::string what = WIFSIGNALED(wait_status)
                         ? fmt::format("worker killed by {}", SignalName(WTERMSIG(wait_status)))
                         : fmt::format("worker exited with status {}", WEXITSTATUS(wait_status));
  if (w.kill_reason) {
    death.reason = *w.kill_reason;
    death.blamed_run_id = w.kill_blamed_run;
  } else if (int slot = sh.crashed_slot.load(); slot >= 0 && slot < kMaxWorkerSlots) {
    const CrashSlot& s = sh.slots[slot];
    std::string run(s.run_id, strnlen(s.run_id, sizeof(s.run_id)));
    // The step the crashing thread was in; step_id is the oldest running
    // member when a parallel group shares the slot.
    const bool step_known = s.crash_step_known.load() != 0;
    std::string step =
        step_known ? std::string(s.crash_step_id, strnlen(s.crash_step_id, sizeof(s.crash_step_id)))
                   : std::string(s.step_id, strnlen(s.step_id, sizeof(s.step_id)));
    // The blamed thread's own reason: the worker may have died of another
    // thread's fault a moment later (whose run is not blamed).
    if (const int sig = s.crash_signal.load(); sig == kCrashExitCalled) {
      what = "worker called exit()";
    } else if (sig > 0) {
      what = fmt::format("worker killed by {}", SignalName(sig));
    }
    if (!run.empty()) {
      death.blamed_run_id = run;
      death.reason = step_known || s.state.load() == 2
                         ? fmt::format("{} while running step \"{}\"", what, step)
                         : fmt::format("{} while running the workflow's code", what);
    } else {
      death.reason = what;
    }
  } else {
    death.reason = what;  // e.g. SIGKILL from outside: nobody to blame
  }

  if (death.worker_id.empty()) {
    log->error("worker {} died before it registered: {}", w.index, death.reason);
  } else {
    Result<WorkerRecovery> rec = Status::Unavailable("not tried");
    for (int attempt = 0; attempt < 5 && !rec.ok(); ++attempt) {
      if (attempt > 0) std::this_thread::sleep_for(milliseconds(200 * attempt));
      rec = store_->RecoverWorker(death);
    }
    if (!rec.ok()) {
      log->error(
          "worker {} ({}) died: {}; could not release its runs ({}), they resume when their "
          "leases expire",
          w.index, death.worker_id, death.reason, rec.status().message());
    } else if (death.blamed_run_id && rec->blamed_crashes) {
      log->error("worker {} died: {}; run {} {} ({} of {} crashes); {} other run(s) released",
                 w.index, death.reason, *death.blamed_run_id,
                 rec->blamed_failed ? "failed" : "will be retried", *rec->blamed_crashes,
                 config_.max_crashes, rec->released);
    } else {
      log->error("worker {} died: {}; {} run(s) released", w.index, death.reason, rec->released);
    }
  }
  if (stopping_) return;

  // Restart with backoff; a worker that stayed up a while starts afresh.
  if (steady_clock::now() - w.started_at > kStableUptime) w.failures_in_a_row = 0;
  auto backoff =
      std::min(kRestartBackoffMin * (1 << std::min(w.failures_in_a_row, 10)), kRestartBackoffMax);
  ++w.failures_in_a_row;
  ++w.restarts;
  w.restart_at = steady_clock::now() + backoff;
  log->info("worker {} restarts in {} ms", w.index, backoff.count());
}

void Supervisor::Kill(Worker& w, std::string reason, std::optional<std::string> blamed_run) {
  if (w.pid <= 0 || w.kill_reason) return;
  Logger("supervisor")->error("killing worker {} (pid {}): {}", w.index, w.pid, reason);
  w.kill_reason = std::move(reason);
  w.kill_blamed_run = std::move(blamed_run);
  kill(w.pid, SIGKILL);
}

void Supervisor::Supervise() {
  auto log = Logger("supervisor");
  const auto now = steady_clock::now();
  const std::int64_t now_ms = MonotonicMs();
  const std::int64_t step_limit = config_.step_timeout.count();
  const std::int64_t wedged_ms = std::max<std::int64_t>(60'000, 4 * config_.poll_interval.count());
  bool all_ready = true, all_beating = true;
  int in_flight = 0, live = 0, loaded = 0;
  for (auto& w : workers_) {
    if (w.pid <= 0) {
      all_ready = false;
      if (w.restart_at && now >= *w.restart_at) Spawn(w);
      continue;
    }
    ++live;
    WorkerShared& sh = *w.shared;
    if (sh.ready.load() == 0) {
      all_ready = false;
      continue;
    }
    // Every worker loads the same plugins; report what the fullest has.
    loaded = std::max(loaded, static_cast<int>(sh.loaded_workflows.load()));
    for (int i = 0; i < kMaxWorkerSlots; ++i) {
      const CrashSlot& s = sh.slots[i];
      const std::uint32_t state = s.state.load();
      if (state == 0) continue;
      ++in_flight;
      if (state == 2 && now_ms - s.step_started_ms.load() > step_limit) {
        const std::uint32_t v = s.version.load();
        std::string run(s.run_id, strnlen(s.run_id, sizeof(s.run_id)));
        std::string step(s.step_id, strnlen(s.step_id, sizeof(s.step_id)));
        if ((v & 1) != 0 || v != s.version.load()) continue;  // being rewritten
        Kill(w,
             fmt::format("step \"{}\" ran past its timeout of {}", step,
                         FormatDuration(config_.step_timeout)),
             run);
        break;
      }
    }
    if (now_ms - sh.loop_heartbeat_ms.load() > wedged_ms) {
      all_beating = false;
      Kill(w,
           fmt::format("its scheduler loop has not run for {} ms",
                       now_ms - sh.loop_heartbeat_ms.load()),
           std::nullopt);
    }
  }
  if (all_ready && !ready_sent_) {
    ready_sent_ = true;
    last_status_ = {};  // report STATUS= right away
    notifier_->Ready();
    log->info("kagzid {} ready: instance {}, {} worker(s)", KAGZI_VERSION, id_, workers_.size());
  }
  if (ready_sent_ && all_beating && live == static_cast<int>(workers_.size())) {
    notifier_->Watchdog();
  }
  if (now - last_status_ > std::chrono::seconds(2)) {
    last_status_ = now;
    notifier_->Status(
        fmt::format("{} run(s) in flight, {} workflow(s) loaded, {} of {} worker(s) up", in_flight,
                    loaded, live, workers_.size()));
  }
}

namespace {
std::mutex g_mu;
std::condition_variable g_cv;
std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};

void WorkerSignalThread(sigset_t set) {
  while (true) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGHUP) {
      g_reload = true;
    } else {
      g_stop = true;
    }
    std::lock_guard lock(g_mu);
    g_cv.notify_all();
  }
}

// worker_cpu_affinity = "auto": this worker's CPU (cpu_affinity.h). A
// worker that cannot be pinned runs unpinned, and says why.
void PinWorker(int index) {
  auto log = Logger("kagzid");
  auto allowed = AllowedCpus();
  if (!allowed.ok()) {
    log->warn("worker {}: worker_cpu_affinity = \"auto\" ignored: {}", index,
              allowed.status().message());
    return;
  }
  const int cpu = CpuForWorker(*allowed, index);
  if (Status st = PinProcessToCpu(cpu); !st.ok()) {
    log->warn("worker {}: worker_cpu_affinity = \"auto\" ignored: {}", index, st.message());
    return;
  }
  log->info("worker {} runs on CPU {} (worker_cpu_affinity = \"auto\"; CPUs allowed: {})", index,
            cpu, FormatCpuList(*allowed));
}
}  // namespace

int RunWorker(const Config& config, WorkerIdentity identity) {
  auto log = Logger("kagzid");
  // First, before the worker starts a thread: every thread it starts
  // keeps the CPU (and any a sanitizer's runtime started is pinned too).
  if (config.worker_cpu_affinity == Config::CpuAffinity::kAuto) PinWorker(identity.index);
  InstallCrashReporting(identity.shared);
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  std::thread(WorkerSignalThread, set).detach();

  Daemon daemon(config, std::make_unique<SilentNotifier>(), identity);
  if (Status st = daemon.Start(g_stop); !st.ok()) {
    if (g_stop) {
      daemon.Shutdown();
      return 0;
    }
    log->critical("worker {} cannot start: {}", identity.index, st.message());
    return 1;
  }
  while (true) {
    std::unique_lock lock(g_mu);
    g_cv.wait(lock, [] { return g_stop.load() || g_reload.load(); });
    if (g_stop) break;
    g_reload = false;
    lock.unlock();
    daemon.Reload();
  }
  daemon.Shutdown();
  spdlog::shutdown();
  return 0;
}

}  // namespace kagzi::daemon
