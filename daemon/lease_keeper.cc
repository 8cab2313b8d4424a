// Batched heartbeats.
#include "lease_keeper.h"

#include <unordered_set>

#include "kagzi/core/log.h"

namespace kagzi::daemon {

LeaseKeeper::LeaseKeeper(Store& store, InFlightRuns& in_flight, std::string owner,
                         std::chrono::milliseconds interval, std::chrono::milliseconds lease_ttl)
    : store_(store),
      in_flight_(in_flight),
      owner_(std::move(owner)),
      interval_(interval),
      lease_ttl_(lease_ttl),
      last_success_(std::chrono::steady_clock::now()) {}

LeaseKeeper::~LeaseKeeper() { Stop(); }

void LeaseKeeper::Start() {
  thread_ = std::thread([this] { ThreadMain(); });
}

void LeaseKeeper::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status LeaseKeeper::Beat() {
  auto log = Logger("lease");
  auto started = std::chrono::steady_clock::now();
  auto before = in_flight_.Snapshot();
  std::vector<std::string> held;
  for (const auto& c : before) held.push_back(c->lease.run_id);
  auto renewed = store_.Heartbeat(owner_, lease_ttl_, held);
  if (!renewed.ok()) {
    auto silent = std::chrono::steady_clock::now() - last_success_;
    log->warn("heartbeat failed ({} in flight): {}", before.size(), renewed.status().message());
    if (silent >= lease_ttl_) {
      for (const auto& c : before) {
        if (!c->lease_lost.exchange(true)) {
          log->warn("run {}: no heartbeat for a whole lease_ttl; treating its lease as lost",
                    c->lease.run_id);
        }
      }
    }
    return renewed.status();
  }
  last_success_ = started;
  std::unordered_set<std::string> ids(renewed->begin(), renewed->end());
  for (const auto& c : before) {
    if (c->claimed_at < started && !ids.contains(c->lease.run_id) &&
        !c->lease_lost.exchange(true)) {
      log->warn("run {}: lease lost (epoch {}), another daemon may have taken it over",
                c->lease.run_id, c->lease.epoch);
    }
  }
  log->trace("heartbeat renewed {} lease(s)", ids.size());
  return Status::Ok();
}

void LeaseKeeper::ThreadMain() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (cv_.wait_for(lock, interval_, [&] { return stopping_; })) break;
    lock.unlock();
    (void)Beat();
    lock.lock();
  }
}

}  // namespace kagzi::daemon
