// FreeRate: how fast an executor pool's slots have been freeing up, as the
// number of slots expected to free within a coming span (ExecutorPool's
// prefetch room). Frees are counted in fixed windows; the estimate is the
// count of the current window and the one before it over the time since
// that one began, and it is zero once a whole window has passed with no
// free. Not thread-safe: the pool calls it under its mutex.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace kagzi::daemon {

class FreeRate {
 public:
  using Clock = std::chrono::steady_clock;

  explicit FreeRate(std::chrono::milliseconds window) : window_(window) {}

  // A slot freed at `now` (calls come in time order).
  void Note(Clock::time_point now) {
    if (!started_ || now - window_start_ >= window_) {
      // The window that just ended counts as the previous one only if it
      // is the one right before; a longer gap leaves nothing behind.
      before_ = started_ && now - window_start_ < 2 * window_ ? now_ : 0;
      now_ = 0;
      window_start_ = now;
      started_ = true;
    }
    ++now_;
  }

  // The slots expected to free in the `horizon` after `now`, at the rate
  // they freed since the previous window began.
  std::int64_t Expected(Clock::time_point now, std::chrono::microseconds horizon) const {
    if (!started_) return 0;
    const auto since = now - window_start_;
    if (since >= 2 * window_) return 0;  // a whole window with no free
    const auto span = std::chrono::duration_cast<std::chrono::microseconds>(since + window_);
    return (now_ + before_) * horizon.count() /
           std::max<std::int64_t>(span.count(), horizon.count());
  }

 private:
  const std::chrono::milliseconds window_;
  bool started_ = false;
  Clock::time_point window_start_;
  std::int64_t now_ = 0;     // frees in the window that began at window_start_
  std::int64_t before_ = 0;  // frees in the window right before it
};

}  // namespace kagzi::daemon
