// WakeFlag (daemon/wake_flag.h): a waiter returns once, and only once, its
// flag is set, sees what the setter wrote before setting it, and may
// destroy the flag at once, while the setter is still in its wake-up.
#include "wake_flag.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace kagzi::daemon {
namespace {

TEST(WakeFlag, ASetFlagDoesNotWait) {
  WakeFlag flag;
  WakeFlag::Set(&flag);
  flag.Wait();  // returns at once; a hang fails the test by its timeout
}

TEST(WakeFlag, AWaiterSleepsUntilSet) {
  WakeFlag flag;
  std::atomic<bool> woke{false};
  std::thread waiter([&] {
    flag.Wait();
    woke = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(woke) << "Wait() returned before Set()";
  WakeFlag::Set(&flag);
  waiter.join();
  EXPECT_TRUE(woke);
}

// The group committer's pattern: each waiter's flag lives on its stack and
// is gone as soon as Wait() returns; the setter hands over a value written
// before Set() with no other synchronisation.
TEST(WakeFlag, WaitersSeeTheSettersWritesAndMayDestroyTheirFlagAtOnce) {
  constexpr int kWaiters = 8;
  constexpr int kRounds = 2000;
  struct Slot {
    std::atomic<WakeFlag*> flag{nullptr};
    int value = 0;  // plain: published by Set(), read after Wait()
  };
  std::vector<Slot> slots(kWaiters);
  std::atomic<int> wrong{0};
  std::vector<std::thread> waiters;
  for (int w = 0; w < kWaiters; ++w) {
    waiters.emplace_back([&, w] {
      for (int round = 1; round <= kRounds; ++round) {
        WakeFlag flag;
        slots[w].flag.store(&flag, std::memory_order_release);
        flag.Wait();
        if (slots[w].value != round) ++wrong;
      }
    });
  }
  std::thread setter([&] {
    for (int round = 1; round <= kRounds; ++round) {
      for (auto& slot : slots) {
        WakeFlag* flag = nullptr;
        while ((flag = slot.flag.exchange(nullptr, std::memory_order_acquire)) == nullptr) {
          std::this_thread::yield();
        }
        slot.value = round;
        WakeFlag::Set(flag);
      }
    }
  });
  setter.join();
  for (auto& t : waiters) t.join();
  EXPECT_EQ(wrong, 0);
}

}  // namespace
}  // namespace kagzi::daemon
