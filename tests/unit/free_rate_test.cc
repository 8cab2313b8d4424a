// FreeRate (daemon/free_rate.h): the prefetch room's estimate of how many
// slots will free soon, from how many freed lately.
#include "free_rate.h"

#include <gtest/gtest.h>

namespace kagzi::daemon {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr milliseconds kWindow{100};
constexpr microseconds kHorizon{10'000};

TEST(FreeRate, NothingFreedExpectsNothing) {
  FreeRate rate(kWindow);
  EXPECT_EQ(rate.Expected(FreeRate::Clock::now(), kHorizon), 0);
}

TEST(FreeRate, ASteadyRateIsProjectedOverTheHorizon) {
  FreeRate rate(kWindow);
  const auto t0 = FreeRate::Clock::time_point{} + std::chrono::hours(1);
  // 2,000 frees a second (one every 500 us) for 350 ms.
  auto t = t0;
  for (int i = 0; i < 700; ++i, t += microseconds(500)) rate.Note(t);
  // 10 ms at 2,000/s: 20, give or take the window edges.
  const std::int64_t expected = rate.Expected(t, kHorizon);
  EXPECT_GE(expected, 18);
  EXPECT_LE(expected, 20);
}

TEST(FreeRate, ABurstAtTheStartCountsOverAWholeWindow) {
  FreeRate rate(kWindow);
  const auto t0 = FreeRate::Clock::time_point{} + std::chrono::hours(1);
  for (int i = 0; i < 50; ++i) rate.Note(t0 + microseconds(i));
  // 50 frees, read over the current window and the (empty) one before:
  // 50 per 100 ms or so, about 5 in 10 ms, not 50 in a few microseconds.
  const std::int64_t expected = rate.Expected(t0 + microseconds(50), kHorizon);
  EXPECT_GE(expected, 4);
  EXPECT_LE(expected, 5);
}

TEST(FreeRate, ItFallsToNothingOnceAWindowPassesWithNoFree) {
  FreeRate rate(kWindow);
  const auto t0 = FreeRate::Clock::time_point{} + std::chrono::hours(1);
  for (int i = 0; i < 200; ++i) rate.Note(t0 + microseconds(500 * i));
  const auto last = t0 + microseconds(500 * 199);
  EXPECT_GT(rate.Expected(last, kHorizon), 0);
  // Later, the same frees over a longer time.
  const std::int64_t later = rate.Expected(last + milliseconds(60), kHorizon);
  EXPECT_GT(later, 0);
  EXPECT_LT(later, rate.Expected(last, kHorizon));
  // Two windows after the last window began: nothing.
  EXPECT_EQ(rate.Expected(last + 2 * kWindow, kHorizon), 0);
  // And a free after a long gap starts afresh, with nothing carried over.
  rate.Note(last + std::chrono::seconds(10));
  EXPECT_EQ(rate.Expected(last + std::chrono::seconds(10), kHorizon), 0);
}

}  // namespace
}  // namespace kagzi::daemon
