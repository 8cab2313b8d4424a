// GroupCommitter: gathers the fenced writes of many runs (step results,
// completions, failures) and commits them together, so a worker makes one
// commit, not one per step, however many runs it executes at once.
//
// An executor thread calls Write() and blocks until its write is durable
// (or refused): a step is acknowledged to the workflow only once its result
// is committed, exactly as with a write of its own. The committer thread
// takes every write waiting, up to max_batch, and hands them to
// Store::ApplyWrites (PgStore: one pipelined transaction). There is no
// timer: writes that arrive while a group is being committed form the next
// group, so an idle daemon commits at once and a busy one in large groups.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "kagzi/core/store.h"
#include "wake_flag.h"

namespace kagzi::daemon {

class GroupCommitter {
 public:
  GroupCommitter(Store& store, int max_batch);
  ~GroupCommitter();  // Stop()
  GroupCommitter(const GroupCommitter&) = delete;
  GroupCommitter& operator=(const GroupCommitter&) = delete;

  void Start();
  // Commits what is queued, then ends the thread; later writes are made
  // by the calling thread on its own.
  void Stop();

  // Applies `write` (filling in its result and feedback) and returns once
  // it is durable or refused.
  void Write(FencedWrite& write);

  // Figures for logs and benchmarks.
  std::int64_t groups() const;
  std::int64_t writes() const;

 private:
  // A waiting writer, on its stack. A committed group wakes its own
  // writers, not every writer waiting, after releasing mu_ (see WakeFlag).
  struct Pending {
    FencedWrite* write = nullptr;
    WakeFlag done;
  };
  void ThreadMain();

  Store& store_;
  const std::size_t max_batch_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // the committer: writes are waiting
  std::deque<Pending*> queue_;
  bool running_ = false;
  bool stopping_ = false;
  std::int64_t groups_ = 0;
  std::int64_t writes_ = 0;
  std::thread thread_;
};

}  // namespace kagzi::daemon
