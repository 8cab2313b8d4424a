// GroupCommitter: gathers the fenced writes of many runs (step results,
// parks, completions, failures) and commits them together, so a worker
// makes one commit, not one per step, however many runs it executes at
// once.
//
// An executor thread calls Write() and blocks until its write is durable
// (or refused): a step is acknowledged to the workflow only once its result
// is committed, exactly as with a write of its own. A run's last write (its
// completion or failure) acknowledges nothing to workflow code, so its
// thread need not wait: WriteAsync() queues it and returns, and the
// committer calls back once it is durable. The thread takes the next run at
// once instead of sleeping until the commit and waking another thread for
// that run. The committer thread
// takes every write waiting, up to max_batch, and hands them to
// Store::ApplyWrites (PgStore: one pipelined transaction). There is no
// timer: writes that arrive while a group is being committed form the next
// group, so an idle daemon commits at once and a busy one in large groups.
//
// One commit is in flight at a time. A write that finds none in flight and
// none waiting is committed by its own thread, as a group of one: the
// committer would take it alone too, but only after two thread hand-offs
// (the writer waking the committer, the committer waking the writer), each
// tens of microseconds on an idle machine, on every step of an idle run.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
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

  // Applies `write` like Write(), but the caller does not wait for it:
  // `done` is called once the write is durable or refused (its result
  // filled in). `write` must stay valid until then; `done` usually owns
  // it. `done` runs on the committer's thread after the commit, never
  // under the committer's lock, and must not wait for another write.
  // With `may_commit_here`, a write that finds nothing in flight and
  // nothing waiting is committed on the caller's thread, which returns
  // after `done` (as Write would, without waking the committer: for a
  // caller with nothing else to do); so is every write while the
  // committer is not running.
  void WriteAsync(FencedWrite& write, std::function<void()> done, bool may_commit_here);

  // Figures for logs and benchmarks: commits, writes in them, and the
  // commits made by their writer's own thread.
  std::int64_t groups() const;
  std::int64_t writes() const;
  std::int64_t direct_groups() const;
  // Writes queued for the committer now.
  std::size_t waiting() const;

 private:
  // A waiting writer, on its stack; or, with on_done set, a write queued
  // by WriteAsync, on the heap (the committer deletes it after on_done). A
  // committed group wakes its own writers, not every writer waiting, after
  // releasing mu_ (see WakeFlag).
  struct Pending {
    FencedWrite* write = nullptr;
    WakeFlag done;
    std::function<void()> on_done;
  };
  // Commits `write` on the calling thread, alone, if the committer is not
  // running, or if `if_idle` and nothing is in flight or waiting; false
  // if it must be queued. Takes `lock` (on mu_) and leaves it unlocked
  // when it returns true.
  bool CommitAlone(FencedWrite& write, std::unique_lock<std::mutex>& lock, bool if_idle);
  void ThreadMain();
  // Counts a committed group; mu_ held.
  void Count(std::size_t writes);

  Store& store_;
  const std::size_t max_batch_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // the committer: writes are waiting
  std::deque<Pending*> queue_;
  bool running_ = false;
  bool stopping_ = false;
  bool committing_ = false;  // a commit is in flight (the committer's or a writer's own)
  std::int64_t groups_ = 0;
  std::int64_t writes_ = 0;
  std::int64_t direct_groups_ = 0;
  std::thread thread_;
};

}  // namespace kagzi::daemon
