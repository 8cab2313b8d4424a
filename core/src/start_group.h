// StartGroup: concurrent PgStore::StartRun calls of one process share a
// transaction, the client's side of group commit. Internal to core/.
//
// A caller queues its request. If no commit is in progress it commits
// everything queued (up to max_batch, itself included) in one transaction;
// otherwise it waits, and the requests that arrive meanwhile form the next
// group. There is no timer: a lone start (kagzictl start) commits at once,
// and each caller returns only once its own run is durable, or refused.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include "kagzi/core/store.h"

namespace kagzi::pg_internal {

class StartGroup {
 public:
  struct Pending {
    const StartRequest* request = nullptr;
    std::optional<Result<StartResult>> result;  // set by the committing caller
    bool done = false;                          // under the mutex, once `result` is final
    // Woken, under the mutex, when `done` is set or when this caller is
    // next in line to commit; each caller waits on its own, so a committed
    // group wakes its members and the next in line, not every caller.
    std::condition_variable wake;
  };
  // Commits a group: sets the result of every Pending it is given.
  using Commit = std::function<void(const std::vector<Pending*>&)>;
  // Makes requests in one transaction (PgStore::InsertRuns).
  using Insert = std::function<Result<std::vector<Result<StartResult>>>(
      const std::vector<const StartRequest*>&)>;

  // A Commit made of an Insert: the whole group in one transaction. If that
  // fails, a statement failed and nothing was started, so each request goes
  // again on its own and only the one at fault gets the error. But a lost
  // connection (kUnavailable: the outcome is unknown) is every member's
  // answer, as it would be for a lone start: starting them again could
  // start a run twice.
  static void CommitGroup(const std::vector<Pending*>& group, const Insert& insert) {
    std::vector<const StartRequest*> requests;
    requests.reserve(group.size());
    for (const Pending* p : group) requests.push_back(p->request);
    auto results = insert(requests);
    if (results.ok() && results->size() == group.size()) {
      for (std::size_t i = 0; i < group.size(); ++i) group[i]->result = std::move((*results)[i]);
      return;
    }
    Status failure =
        results.ok() ? Status::Internal("{} answers for {} starts", results->size(), group.size())
                     : results.status();
    if (group.size() == 1 || failure.code() == StatusCode::kUnavailable) {
      for (Pending* p : group) p->result = failure;
      return;
    }
    for (Pending* p : group) {
      auto one = insert({p->request});
      p->result = one.ok() && one->size() == 1 ? std::move((*one)[0])
                  : one.ok() ? Result<StartResult>(Status::Internal("no answer for a start"))
                             : Result<StartResult>(one.status());
    }
  }

  explicit StartGroup(std::size_t max_batch) : max_batch_(max_batch) {}

  Result<StartResult> Start(const StartRequest& request, const Commit& commit) {
    Pending me;
    me.request = &request;
    std::unique_lock lock(mu_);
    queue_.push_back(&me);
    while (!me.done) {
      if (committing_) {
        me.wake.wait(lock);
        continue;
      }
      committing_ = true;
      std::vector<Pending*> group;
      while (!queue_.empty() && group.size() < max_batch_) {
        group.push_back(queue_.front());
        queue_.pop_front();
      }
      lock.unlock();
      // Hands the results over and the turn on, however commit() returns.
      struct Done {
        StartGroup* self;
        std::unique_lock<std::mutex>* lock;
        const std::vector<Pending*>* group;
        ~Done() {
          lock->lock();
          for (Pending* p : *group) {
            if (!p->result) p->result = Status::Internal("the start's group commit ended early");
            p->done = true;
            p->wake.notify_one();
          }
          self->committing_ = false;
          if (!self->queue_.empty()) self->queue_.front()->wake.notify_one();
        }
      } done{this, &lock, &group};
      commit(group);
    }
    return std::move(*me.result);
  }

 private:
  const std::size_t max_batch_;
  std::mutex mu_;
  std::deque<Pending*> queue_;
  bool committing_ = false;
};

}  // namespace kagzi::pg_internal
