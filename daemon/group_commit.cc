#include "group_commit.h"

#include <memory>

#include "fiber.h"

namespace kagzi::daemon {

GroupCommitter::GroupCommitter(Store& store, int max_batch)
    : store_(store), max_batch_(static_cast<std::size_t>(std::max(1, max_batch))) {}

GroupCommitter::~GroupCommitter() { Stop(); }

void GroupCommitter::Start() {
  std::lock_guard lock(mu_);
  running_ = true;
  thread_ = std::thread([this] { ThreadMain(); });
}

void GroupCommitter::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool GroupCommitter::CommitAlone(FencedWrite& write, std::unique_lock<std::mutex>& lock,
                                 bool if_idle) {
  if (!running_) {
    lock.unlock();
    store_.ApplyWrites({&write});  // not started, or stopped
    return true;
  }
  if (!if_idle || committing_ || !queue_.empty()) return false;
  // Nothing in flight, nobody waiting: a group of one, committed here.
  committing_ = true;
  lock.unlock();
  store_.ApplyWrites({&write});
  lock.lock();
  committing_ = false;
  Count(1);
  ++direct_groups_;
  // The committer waits for this commit: for the writes that came
  // meanwhile, or to stop.
  const bool wake = !queue_.empty() || stopping_;
  lock.unlock();
  if (wake) work_cv_.notify_one();
  return true;
}

void GroupCommitter::Write(FencedWrite& write) {
  std::unique_lock lock(mu_);
  // A fiber whose carrier has other fibers ready, or runs queued, would
  // hold them through the commit: the committer takes its write.
  if (CommitAlone(write, lock, !FiberCarrierBusy())) return;
  Pending pending;
  pending.write = &write;
  queue_.push_back(&pending);
  lock.unlock();
  work_cv_.notify_one();
  pending.done.Wait();
}

void GroupCommitter::WriteAsync(FencedWrite& write, std::function<void()> done,
                                bool may_commit_here) {
  std::unique_lock lock(mu_);
  if (CommitAlone(write, lock, may_commit_here)) {
    done();
    return;
  }
  auto pending = std::make_unique<Pending>();
  pending->write = &write;
  pending->on_done = std::move(done);
  queue_.push_back(pending.get());
  pending.release();  // the committer's now: deleted after on_done
  lock.unlock();
  work_cv_.notify_one();
}

void GroupCommitter::Count(std::size_t writes) {
  ++groups_;
  writes_ += static_cast<std::int64_t>(writes);
}

std::int64_t GroupCommitter::groups() const {
  std::lock_guard lock(mu_);
  return groups_;
}

std::int64_t GroupCommitter::writes() const {
  std::lock_guard lock(mu_);
  return writes_;
}

std::int64_t GroupCommitter::direct_groups() const {
  std::lock_guard lock(mu_);
  return direct_groups_;
}

std::size_t GroupCommitter::waiting() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void GroupCommitter::ThreadMain() {
  std::vector<Pending*> group;
  std::vector<Pending*> queued;  // WriteAsync's, in the group
  std::vector<FencedWrite*> writes;
  std::unique_lock lock(mu_);
  while (true) {
    // A writer's own commit in flight ends first: one commit at a time.
    work_cv_.wait(lock, [&] { return (stopping_ || !queue_.empty()) && !committing_; });
    if (queue_.empty()) {
      running_ = false;  // stopping, with nothing left
      return;
    }
    group.clear();
    writes.clear();
    while (!queue_.empty() && group.size() < max_batch_) {
      group.push_back(queue_.front());
      writes.push_back(queue_.front()->write);
      queue_.pop_front();
    }
    committing_ = true;
    lock.unlock();
    store_.ApplyWrites(writes);
    lock.lock();
    committing_ = false;
    Count(group.size());
    lock.unlock();
    // The waiting writers first; then the callbacks of the writes nobody
    // waits for (sorted out before: a woken writer's Pending may be gone).
    queued.clear();
    for (Pending* p : group) {
      if (p->on_done) {
        queued.push_back(p);
      } else {
        WakeFlag::Set(&p->done);  // p may be gone after this
      }
    }
    for (Pending* p : queued) {
      p->on_done();
      delete p;
    }
    lock.lock();
  }
}

}  // namespace kagzi::daemon
