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
  {
    std::unique_lock lock(mu_);
    if (running_) {
      queue_.push_back(&pending);
      work_cv_.notify_one();
      pending.done_cv.wait(lock, [&] { return pending.done; });
      return;
    }
  }
  store_.ApplyWrites({&write});  // not started, or stopped
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
    for (Pending* p : group) {
      p->done = true;
      p->done_cv.notify_one();
    }
  }
}

}  // namespace kagzi::daemon
