// The claim loop. Claims are batched and made for the executor pool's
// ClaimRoom(): its free slots, and while they free up quickly, the few runs
// they will take next. A run claimed ahead that no slot takes in
// kMaxQueued is given back, so a daemon does not sit on leases it cannot
// work on.
#include "scheduler.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kagzi/core/log.h"
#include "kagzi/core/wakeup.h"

namespace kagzi::daemon {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

// How long freed slots wait for company before a claim, with a backlog.
constexpr milliseconds kClaimGather{2};
// How long after a parked run's wake time (as this daemon's clock reckons
// it) the scheduler claims: the reckoning may be early by the time a
// statement takes to reach the server (see the calibration below), and a
// claim made before the run is due finds nothing.
constexpr microseconds kWakeSlack{300};
// How long a run claimed ahead (ExecutorPool::ClaimRoom) may wait in the
// queue for a slot before it is given back for another daemon to run.
constexpr milliseconds kMaxQueued{500};

Scheduler::Scheduler(Store& store, const PluginRegistry& registry, ExecutorPool& executors,
                     SchedulerOptions options)
    : store_(store), registry_(registry), executors_(executors), options_(std::move(options)) {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  steady_at_ = steady_clock::now();
}

Scheduler::~Scheduler() {
  Stop();
  if (wake_fd_ >= 0) close(wake_fd_);
}

void Scheduler::Start() {
  thread_ = std::thread([this] { ThreadMain(); });
}

void Scheduler::Stop() {
  stopping_ = true;
  Wake();
  if (thread_.joinable()) thread_.join();
}

void Scheduler::Wake() {
  std::uint64_t one = 1;
  if (wake_fd_ >= 0) (void)!write(wake_fd_, &one, sizeof(one));
}

void Scheduler::NoteWakeAt(Micros wake_at) {
  {
    std::lock_guard lock(mu_);
    if (!local_wake_ || wake_at < *local_wake_) local_wake_ = wake_at;
  }
  Wake();
}

steady_clock::time_point Scheduler::LocalTime(Micros db_time) const {
  return steady_at_ + std::chrono::microseconds(db_time - db_now_);
}

bool Scheduler::EnsureListener() {
  if (listener_ && listener_->broken()) listener_.reset();
  if (!listener_) {
    listening_ = false;
    auto conn = PgConnection::Connect(options_.database_url, "kagzid-listener");
    if (!conn.ok()) {
      Logger("scheduler")->warn("cannot open the LISTEN connection: {}", conn.status().message());
      return false;
    }
    listener_ = std::move(conn).value();
  }
  if (!listening_) {
    if (Status st = listener_->Listen("kagzi_wakeup"); !st.ok()) {
      Logger("scheduler")->warn("LISTEN kagzi_wakeup failed: {}", st.message());
      return false;
    }
    listening_ = true;
  }
  return true;
}

void Scheduler::StopListening() {
  if (!listener_ || !listening_) return;
  if (!listener_->Exec("UNLISTEN kagzi_wakeup").ok()) listener_.reset();
  listening_ = false;
}

Scheduler::Wakeup Scheduler::WaitForWork(microseconds timeout) {
  pollfd fds[2];
  int n = 0;
  fds[n++] = {wake_fd_, POLLIN, 0};
  if (listener_) fds[n++] = {listener_->socket(), POLLIN, 0};
  // ppoll, not poll: a timer in microseconds, not rounded to milliseconds.
  const std::int64_t us = std::max<std::int64_t>(0, timeout.count());
  const timespec ts{static_cast<time_t>(us / 1'000'000), static_cast<long>(us % 1'000'000) * 1000};
  int rc = ::ppoll(fds, static_cast<nfds_t>(n), &ts, nullptr);
  if (rc <= 0) return {};  // the timer, poll_interval
  Wakeup woke{.due = false, .announced = {}};
  if (fds[0].revents & POLLIN) {
    std::uint64_t v = 0;
    (void)!read(wake_fd_, &v, sizeof(v));
    woke.due = true;
  }
  if (n > 1 && (fds[1].revents & (POLLIN | POLLERR | POLLHUP))) {
    if (!listener_->ConsumeInput().ok()) {
      listener_.reset();
      return {};
    }
    for (const PgNotification& note : listener_->TakeNotifications()) {
      auto ids = AnnouncedRuns(note.payload);
      if (!ids) {
        woke.due = true;
        continue;
      }
      woke.announced.insert(woke.announced.end(), std::make_move_iterator(ids->begin()),
                            std::make_move_iterator(ids->end()));
    }
  }
  if (woke.announced.empty()) woke.due = true;
  return woke;
}

void Scheduler::ThreadMain() {
  auto log = Logger("scheduler");
  auto backoff = milliseconds(100);
  // Calibrate the database clock; every non-empty claim refreshes it. The
  // database's now() is when the statement's transaction began: after it
  // was sent, by about half a round trip, and before its answer came back
  // by the rest of its work (a claim's commit, 0.5 ms and more under
  // load). Reckoned from the send, a wake time comes early by that half
  // round trip (kWakeSlack covers it); reckoned from the answer, it came
  // late by the whole statement, and so did every timed wake-up.
  const auto asked = steady_clock::now();
  if (auto now = store_.Now(); now.ok()) {
    std::lock_guard lock(mu_);
    db_now_ = *now;
    steady_at_ = asked;
  }
  bool backlog = false;
  Wakeup woke;  // what ended the last wait
  auto gather_until = steady_clock::now();
  const int gather_slots = std::min(8, executors_.Slots() / 4);
  while (!stopping_) {
    if (loop_hook_) loop_hook_();
    // Listen first: a NOTIFY sent after our claim query but before LISTEN
    // would otherwise be missed until the next poll. But not with a
    // backlog (the last claim was full): the daemon claims again as slots
    // free up anyway, and while it listens every start wakes its listening
    // backend (a transaction) and this thread for nothing (kagzi-bench
    // bench3, per-start: 1.9 transactions per workflow).
    bool listening = false;
    if (backlog) {
      StopListening();
    } else {
      listening = EnsureListener();
    }
    auto keys = registry_.LoadedKeys();
    auto next_deadline = steady_clock::now() + options_.poll_interval;
    bool more = false;
    if (int stale = executors_.ReleaseStale(kMaxQueued); stale > 0) {
      log->info("gave back {} run(s) claimed ahead that no slot took within {} ms", stale,
                kMaxQueued.count());
    }
    // Runs claimed ahead wait for a slot; the scheduler looks again before
    // they have waited too long.
    if (executors_.Queued() > 0) {
      next_deadline = std::min(next_deadline, steady_clock::now() + kMaxQueued);
    }

    int room = executors_.ClaimRoom();
    // With a backlog (the last claim was full), a slot that frees up does
    // not claim on its own at once: for up to kClaimGather the scheduler
    // lets a few more free up and claims for them together. A claim costs
    // PostgreSQL about as much for one run as for eight (kagzi-bench
    // bench3: 6% more workflows/s, 7% less PostgreSQL CPU). Without a
    // backlog nothing waits.
    if (backlog && room > 0 && room < gather_slots && steady_clock::now() < gather_until) {
      woke = WaitForWork(std::chrono::ceil<microseconds>(gather_until - steady_clock::now()));
      continue;
    }
    // Announced runs, with a slot for each, are claimed by id: nothing
    // else woke this loop, so nothing else is known to be due. A run that
    // became due without a notification has a timer or the poll, and the
    // next-wake read after this claim finds it if it is due already.
    std::vector<std::string> announced;
    if (!woke.due && static_cast<int>(woke.announced.size()) <= room) {
      announced = std::move(woke.announced);
    }
    woke = Wakeup{};
    if (!keys.empty() && room > 0) {
      const bool by_id = !announced.empty();
      const auto claim_sent = steady_clock::now();
      auto batch = store_.ClaimRuns(
          ClaimRequest{options_.owner, keys, room, options_.lease_ttl, std::move(announced)});
      if (!batch.ok()) {
        ++claim_failures_;
        log->warn("claim failed, retrying in {} ms: {}", backoff.count(), batch.status().message());
        (void)WaitForWork(backoff);
        backoff = std::min(backoff * 2, milliseconds(5000));
        continue;
      }
      ++claims_;
      if (by_id) ++claims_by_id_;
      backoff = milliseconds(100);
      {
        std::lock_guard lock(mu_);
        db_now_ = batch->db_now ? batch->db_now : db_now_;
        steady_at_ = batch->db_now ? claim_sent : steady_at_;
      }
      int claimed = static_cast<int>(batch->runs.size());
      if (claimed > 0) {
        log->debug("claimed {} run(s){}", claimed, by_id ? " announced by id" : "");
        executors_.Submit(std::move(batch->runs), batch->db_now);
      }
      more = claimed == room;  // a full batch: there may be more waiting
      backlog = more;
      // The backlog is gone, but runs announced since this daemon stopped
      // listening were not heard: listen, then claim once more.
      if (!more && !listening) more = true;
      gather_until = steady_clock::now() + kClaimGather;
      if (!more) {
        auto next = store_.NextWakeTime(keys);
        if (next.ok() && next->has_value()) {
          std::lock_guard lock(mu_);
          auto when = LocalTime(**next) + kWakeSlack;
          next_deadline = std::min(next_deadline, when);
        }
      }
    }
    {
      std::lock_guard lock(mu_);
      if (local_wake_) {
        next_deadline = std::min(next_deadline, LocalTime(*local_wake_) + kWakeSlack);
        local_wake_.reset();
      }
    }
    if (more && executors_.ClaimRoom() > 0) continue;
    auto wait = std::chrono::ceil<microseconds>(next_deadline - steady_clock::now());
    // A wake time already past (a run locked by another claimer right now)
    // must not spin this loop. One still ahead is waited for to the
    // microsecond: with the 2 ms floor that past times need, a run due
    // sooner than that after a claim (parks committed together are due
    // together, a group after a group) was claimed late by the rest.
    if (wait <= microseconds::zero()) wait = milliseconds(listening ? 2 : 100);
    woke = WaitForWork(wait);
  }
}

}  // namespace kagzi::daemon
