// In-flight runs of this daemon: what the lease keeper renews and what
// shutdown drains. Each run has a RunControl whose flags the lease keeper
// (lease lost) and the lifecycle (drain) set and the run's executor thread
// reads at every context call. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "kagzi/core/store.h"

namespace kagzi::daemon {

struct RunControl {
  Lease lease;
  std::chrono::steady_clock::time_point claimed_at;
  std::atomic<bool> lease_lost{false};
  std::atomic<bool> drain{false};
};

class InFlightRuns {
 public:
  std::shared_ptr<RunControl> Add(const Lease& lease) {
    auto control = std::make_shared<RunControl>();
    control->lease = lease;
    control->claimed_at = std::chrono::steady_clock::now();
    std::lock_guard lock(mu_);
    runs_[lease.run_id] = control;
    return control;
  }
  void Remove(const std::string& run_id) {
    std::lock_guard lock(mu_);
    runs_.erase(run_id);
  }
  std::vector<std::shared_ptr<RunControl>> Snapshot() const {
    std::lock_guard lock(mu_);
    std::vector<std::shared_ptr<RunControl>> out;
    out.reserve(runs_.size());
    for (const auto& [id, c] : runs_) out.push_back(c);
    return out;
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return runs_.size();
  }

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<RunControl>> runs_;  // guarded by mu_
};

}  // namespace kagzi::daemon
