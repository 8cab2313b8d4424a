// LeaseKeeper: renews the leases of all this daemon's in-flight runs, and
// its registry heartbeat, with one statement every heartbeat_interval.
//
// A run that was in flight before a heartbeat and is missing from what the
// heartbeat renewed has lost its lease (another daemon took it over): its
// RunControl is flagged so the executor stops at the next context call. If
// no heartbeat succeeds for a whole lease_ttl, every in-flight run is
// flagged too: others may take them over at any moment. Owns one thread.
#pragma once

#include <condition_variable>
#include <mutex>
#include <thread>

#include "in_flight.h"

namespace kagzi::daemon {

class LeaseKeeper {
 public:
  LeaseKeeper(Store& store, InFlightRuns& in_flight, std::string owner,
              std::chrono::milliseconds interval, std::chrono::milliseconds lease_ttl);
  ~LeaseKeeper();
  void Start();
  void Stop();
  // One heartbeat now (also used by tests). Returns the statement's status.
  Status Beat();

 private:
  void ThreadMain();

  Store& store_;
  InFlightRuns& in_flight_;
  std::string owner_;
  std::chrono::milliseconds interval_;
  std::chrono::milliseconds lease_ttl_;
  std::chrono::steady_clock::time_point last_success_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace kagzi::daemon
