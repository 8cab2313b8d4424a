// Daemon lifecycle: wiring of store, plugins, executors, lease keeper and
// scheduler, plus the graceful drain.
#include "daemon.h"

#include <sys/random.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

#include "kagzi/core/log.h"

namespace kagzi::daemon {

// The most step results, completions and failures committed together. A
// group is what arrived while the previous one was being committed; this
// only bounds one transaction's size (and how long it holds row locks).
constexpr int kMaxWritesPerCommit = 256;

using std::chrono::milliseconds;

std::string NewUuid() {
  unsigned char b[16];
  std::size_t got = 0;
  while (got < sizeof(b)) {
    ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
    if (n > 0) got += static_cast<std::size_t>(n);
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);
  return fmt::format(
      "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-"
      "{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
      b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
      b[15]);
}

Daemon::Daemon(Config config, std::unique_ptr<Notifier> notifier, WorkerIdentity identity)
    : config_(std::move(config)),
      notifier_(std::move(notifier)),
      identity_(std::move(identity)),
      id_(NewUuid()) {
  if (identity_.shared != nullptr) {
    std::snprintf(identity_.shared->instance_id, sizeof(identity_.shared->instance_id), "%s",
                  id_.c_str());
  }
}

Status WaitForDatabaseAndMigrate(PgStore& store, Notifier& notifier,
                                 const std::function<bool()>& stop_requested) {
  auto log = Logger("kagzid");
  auto backoff = milliseconds(250);
  while (true) {
    auto report = store.Migrate();
    if (report.ok()) {
      log->info("database ready: {} migration(s) applied now, {} already applied (latest {})",
                report->applied, report->already, report->latest);
      return Status::Ok();
    }
    if (!report.status().IsUnavailable()) {
      return report.status().WithContext("database migration failed");
    }
    std::string msg = fmt::format(
        "waiting for the database (database_url): {}; retrying in {} ms. Check database_url "
        "(config file, KAGZI_DATABASE_URL or --database-url), that PostgreSQL is running, and "
        "that the role and database exist",
        report.status().message(), backoff.count());
    log->warn("{}", msg);
    notifier.Status(msg);
    auto until = std::chrono::steady_clock::now() + backoff;
    while (std::chrono::steady_clock::now() < until) {
      if (stop_requested()) return Status::Unavailable("stopped while waiting for the database");
      std::this_thread::sleep_for(milliseconds(50));
    }
    backoff = std::min(backoff * 2, milliseconds(10'000));
  }
}

Daemon::~Daemon() = default;

Status Daemon::Start(const std::atomic<bool>& stop_requested) {
  auto log = Logger("kagzid");
  store_ =
      std::make_unique<PgStore>(PgStoreOptions{.database_url = config_.database_url,
                                               .application_name = "kagzid",
                                               .pool_size = std::min(config_.concurrency, 8) + 2,
                                               .generic_plans = true});

  if (identity_.migrate) {
    KAGZI_RETURN_IF_ERROR(
        WaitForDatabaseAndMigrate(*store_, *notifier_, [&] { return stop_requested.load(); }));
  }

  registry_.SetReporting(identity_.index <= 1);
  ScanReport scan = registry_.Scan(config_.plugin_dir);
  auto loaded = registry_.Loaded();
  log->info("plugins: {} workflow(s) loaded from \"{}\", {} plugin(s) refused", loaded.size(),
            config_.plugin_dir, scan.refusals.size());
  if (loaded.empty()) {
    log->warn(
        "no workflows loaded: install plugins into \"{}\" and send SIGHUP "
        "(systemctl reload kagzid)",
        config_.plugin_dir);
  }
  KAGZI_RETURN_IF_ERROR(Register());
  // The connections an idle worker uses for a run (the claim, and the
  // group commit while the scheduler reads its next wake time), ready
  // before the first run arrives. A failure is not fatal: the pool opens
  // and prepares connections on first use as well.
  if (Status st = store_->WarmPool(2); !st.ok()) {
    log->warn("could not prepare database connections ahead: {}", st.message());
  }

  ExecutorOptions exec_options;
  exec_options.slots = config_.concurrency;
  exec_options.run.max_payload_bytes = config_.max_payload_bytes;
  exec_options.run.write_retry_budget = config_.lease_ttl / 2;
  exec_options.run.default_retry =
      RetryPolicy{config_.retry_max_attempts, config_.retry_initial_interval,
                  config_.retry_max_interval, config_.retry_multiplier, config_.retry_jitter};
  exec_options.run.parallel_limit = config_.parallel_limit;
  if (config_.executor == Config::Executor::kFibers) {
    exec_options.fiber_threads = config_.fiber_threads;
  }
  committer_ = std::make_unique<GroupCommitter>(*store_, kMaxWritesPerCommit);
  exec_options.run.writer = committer_.get();
  executors_ = std::make_unique<ExecutorPool>(
      *store_, registry_, in_flight_, exec_options,
      [this] {
        if (scheduler_) scheduler_->Wake();
      },
      [this](Micros wake_at) {
        if (scheduler_) scheduler_->NoteWakeAt(wake_at);
      });
  lease_keeper_ = std::make_unique<LeaseKeeper>(*store_, in_flight_, id_,
                                                config_.heartbeat_interval, config_.lease_ttl);
  scheduler_ = std::make_unique<Scheduler>(
      *store_, registry_, *executors_,
      SchedulerOptions{config_.database_url, id_, config_.lease_ttl, config_.poll_interval});
  scheduler_->SetLoopHook([this] {
    notifier_->Watchdog();
    if (identity_.shared != nullptr) identity_.shared->loop_heartbeat_ms = MonotonicMs();
    UpdateStatus();
  });
  committer_->Start();
  executors_->Start();
  lease_keeper_->Start();
  scheduler_->Start();
  notifier_->Ready();
  UpdateStatus();
  if (identity_.shared != nullptr) {
    identity_.shared->loop_heartbeat_ms = MonotonicMs();
    identity_.shared->ready = 1;
    log->info("worker {} serving: instance {}, concurrency {}, lease_ttl {}, heartbeat {}, poll {}",
              identity_.index, id_, config_.concurrency, FormatDuration(config_.lease_ttl),
              FormatDuration(config_.heartbeat_interval), FormatDuration(config_.poll_interval));
  } else {
    log->info("kagzid {} ready: instance {}, concurrency {}, lease_ttl {}, heartbeat {}, poll {}",
              KAGZI_VERSION, id_, config_.concurrency, FormatDuration(config_.lease_ttl),
              FormatDuration(config_.heartbeat_interval), FormatDuration(config_.poll_interval));
  }
  return Status::Ok();
}

Status Daemon::Register() {
  std::vector<LoadedWorkflow> workflows;
  for (const auto& w : registry_.Loaded()) {
    workflows.push_back({w.key, w.plugin_path, w.plugin_name});
  }
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  DaemonInfo info{id_,
                  host,
                  static_cast<int>(getpid()),
                  KAGZI_VERSION,
                  config_.concurrency,
                  config_.lease_ttl,
                  identity_.supervisor_id,
                  identity_.index,
                  identity_.restarts};
  auto backoff = milliseconds(250);
  for (int attempt = 0;; ++attempt) {
    Status st = store_->RegisterDaemon(info, workflows);
    if (st.ok() || !st.IsUnavailable() || attempt >= 10) return st;
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, milliseconds(5000));
  }
}

void Daemon::Reload() {
  auto log = Logger("kagzid");
  log->info("reload: rescanning \"{}\"", config_.plugin_dir);
  ScanReport scan = registry_.Scan(config_.plugin_dir);
  log->info("reload: {} new plugin(s) loaded, {} refused", scan.loaded_paths.size(),
            scan.refusals.size());
  if (!scan.loaded_paths.empty()) {
    if (Status st = Register(); !st.ok()) log->error("reload: {}", st.message());
    if (scheduler_) scheduler_->Wake();
  }
  UpdateStatus();
}

void Daemon::UpdateStatus() {
  if (identity_.shared != nullptr) {
    identity_.shared->in_flight = static_cast<std::int32_t>(in_flight_.size());
    identity_.shared->loaded_workflows = static_cast<std::int32_t>(registry_.LoadedKeys().size());
  }
  auto now_ms =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count();
  if (now_ms - last_status_ms_.load() < 1000) return;
  last_status_ms_ = now_ms;
  notifier_->Status(fmt::format("{} run(s) in flight, {} workflow(s) loaded", in_flight_.size(),
                                registry_.LoadedKeys().size()));
}

bool Daemon::Shutdown() {
  auto log = Logger("kagzid");
  notifier_->Stopping();
  if (!scheduler_) return true;  // never started
  scheduler_->Stop();
  // Runs claimed ahead that no slot has taken yet are given back at once,
  // for another daemon to run, not started here to be drained.
  if (int queued = executors_->ReleaseStale(milliseconds(0)); queued > 0) {
    log->info("stopping: gave back {} run(s) claimed but not started", queued);
  }
  auto runs = in_flight_.Snapshot();
  log->info("stopping: draining {} in-flight run(s), up to {}", runs.size(),
            FormatDuration(config_.drain_timeout));
  for (const auto& c : runs) c->drain = true;
  bool drained = executors_->WaitIdle(config_.drain_timeout);
  if (!drained) {
    for (const auto& c : in_flight_.Snapshot()) {
      Status st = store_->ReleaseRun(c->lease);
      log->warn("run {}: still running after drain_timeout; lease released ({})", c->lease.run_id,
                st.ok() ? "ok" : st.message());
      c->lease_lost = true;
    }
  }
  lease_keeper_->Stop();
  if (drained) {
    executors_->Stop();
    committer_->Stop();
    log->debug("group commit: {} write(s) in {} commit(s), {} of them by the writer alone",
               committer_->writes(), committer_->groups(), committer_->direct_groups());
    registry_.Deinit();
  }
  if (Status st = store_->UnregisterDaemon(id_); !st.ok()) {
    log->warn("could not unregister instance {}: {}", id_, st.message());
  }
  log->info("stopped{}", drained ? "" : " (some runs were still inside a step)");
  return drained;
}

}  // namespace kagzi::daemon
