// WakeFlag: a one-shot event that one thread waits for and another sets,
// with no mutex between them (Linux futex).
//
// Why not a condition variable: notified under its mutex, every waiter a
// group commit woke ran straight into that mutex, still held by the
// committer, and slept again (kagzi-bench bench3: a quarter of kagzid's
// context switches). Notified after the mutex is released, the waiter could
// see its flag set, return and destroy the condition variable while the
// notification was still using it. Set() here touches the flag's memory
// once, with the store that releases the waiter; what follows is a futex
// wake, for which the kernel uses the address only as a key. So the waiter
// may destroy the flag as soon as Wait() returns, even while Set() is
// still in its system call. Such a late wake can at worst reach another
// futex waiter at the same address, which sees a spurious wake-up (every
// futex waiter, glibc's too, re-checks its condition).
//
// A waiter on a fiber (fiber.h) suspends the fiber instead of its thread,
// and Set() has the fiber's carrier resume it: no system call unless the
// carrier sleeps. The flag stays valid until then, since only the resumed
// waiter can end its life.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

#include "fiber.h"

namespace kagzi::daemon {

class WakeFlag {
 public:
  // Returns once Set() was called (at once if it was already). One waiter.
  void Wait() {
    if (Fiber* fiber = Fiber::Current()) {
      fiber_ = fiber;
      std::uint32_t s = kClear;
      if (!state_.compare_exchange_strong(s, kFiberWaiting, std::memory_order_acq_rel)) return;
      fiber->Suspend();  // until Set() makes it ready
      return;
    }
    std::uint32_t s = kClear;
    // Failing, the flag was not clear: only Set() changes it, so it is set.
    if (!state_.compare_exchange_strong(s, kSleeping, std::memory_order_acquire)) return;
    while (state_.load(std::memory_order_acquire) != kSet) {
      syscall(SYS_futex, &state_, FUTEX_WAIT_PRIVATE, kSleeping, nullptr, nullptr, 0);
    }
  }

  // Sets `flag` and wakes its waiter. `flag` may be destroyed by its waiter
  // while this runs: see above.
  static void Set(WakeFlag* flag) {
    auto* word = &flag->state_;
    const std::uint32_t was = word->exchange(kSet, std::memory_order_acq_rel);
    if (was == kSleeping) {
      syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
    } else if (was == kFiberWaiting) {
      Fiber* fiber = flag->fiber_;  // the waiter is suspended: the flag is still there
      fiber->carrier().MakeReady(fiber);
    }
  }

 private:
  static constexpr std::uint32_t kClear = 0;
  static constexpr std::uint32_t kSleeping = 1;  // a waiter is (about to be) in the kernel
  static constexpr std::uint32_t kSet = 2;
  static constexpr std::uint32_t kFiberWaiting = 3;  // fiber_ is suspended in Wait()
  static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

  std::atomic<std::uint32_t> state_{kClear};
  Fiber* fiber_ = nullptr;  // written by the waiter before state_ says kFiberWaiting
};

}  // namespace kagzi::daemon
