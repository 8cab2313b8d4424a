#include "group_commit.h"

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

void GroupCommitter::Write(FencedWrite& write) {
  Pending pending;
  pending.write = &write;
  bool queued = false;
  {
    std::lock_guard lock(mu_);
    if (running_) {
      queue_.push_back(&pending);
      queued = true;
    }
  }
  if (!queued) {
    store_.ApplyWrites({&write});  // not started, or stopped
    return;
  }
  work_cv_.notify_one();
  pending.done.Wait();
}

std::int64_t GroupCommitter::groups() const {
  std::lock_guard lock(mu_);
  return groups_;
}

std::int64_t GroupCommitter::writes() const {
  std::lock_guard lock(mu_);
  return writes_;
}

void GroupCommitter::ThreadMain() {
  std::vector<Pending*> group;
  std::vector<FencedWrite*> writes;
  std::unique_lock lock(mu_);
  while (true) {
    work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
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
    lock.unlock();
    store_.ApplyWrites(writes);
    lock.lock();
    ++groups_;
    writes_ += static_cast<std::int64_t>(group.size());
    lock.unlock();
    for (Pending* p : group) WakeFlag::Set(&p->done);  // p may be gone after this
    lock.lock();
  }
}

}  // namespace kagzi::daemon
