// Fibers (daemon/fiber.h): work runs on the fiber until it is done or
// suspends; each fiber keeps its own log context, crash slot and
// caught-exception stack across switches, and the carrier's are left as
// they were; a WakeFlag waited for on a fiber suspends the fiber, and Set()
// from another thread has the carrier resume it.
#include "fiber.h"

#include <atomic>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "kagzi/core/log.h"
#include "wake_flag.h"
#include "worker_shared.h"

namespace kagzi::daemon {
namespace {

constexpr std::size_t kStack = 256 * 1024;

TEST(Fiber, RunsItsWorkUntilDoneAndCanBeReused) {
  FiberCarrier carrier;
  Fiber fiber(carrier, kStack, -1);
  EXPECT_TRUE(fiber.Idle());
  Fiber* seen = nullptr;
  int runs = 0;
  fiber.Assign([&] {
    seen = Fiber::Current();
    ++runs;
  });
  EXPECT_FALSE(fiber.Idle());
  fiber.Resume();
  EXPECT_TRUE(fiber.Idle());
  EXPECT_EQ(seen, &fiber);
  EXPECT_EQ(Fiber::Current(), nullptr) << "the carrier is not a fiber";
  fiber.Assign([&] { ++runs; });
  fiber.Resume();
  EXPECT_EQ(runs, 2);
}

TEST(Fiber, SuspendReturnsToTheCarrierAndResumeGoesOnWhereItStopped) {
  FiberCarrier carrier;
  Fiber fiber(carrier, kStack, -1);
  std::vector<std::string> events;
  fiber.Assign([&] {
    int on_stack = 1;
    events.push_back("a");
    fiber.Suspend();
    ++on_stack;
    events.push_back("b" + std::to_string(on_stack));
    fiber.Suspend();
    events.push_back("c");
  });
  fiber.Resume();
  events.push_back("carrier 1");
  EXPECT_FALSE(fiber.Idle());
  fiber.Resume();
  events.push_back("carrier 2");
  fiber.Resume();
  EXPECT_TRUE(fiber.Idle());
  EXPECT_EQ(events, (std::vector<std::string>{"a", "carrier 1", "b2", "carrier 2", "c"}));
}

TEST(Fiber, EachFiberKeepsItsLogContextAndCrashSlot) {
  FiberCarrier carrier;
  Fiber one(carrier, kStack, 7);
  Fiber two(carrier, kStack, 8);
  BindThreadToSlot(-1);
  ScopedLogContext carrier_ctx({.run_id = "carrier"});
  std::vector<std::string> seen;
  auto work = [&](Fiber& me, const std::string& id) {
    return [&, id] {
      ScopedLogContext ctx({.run_id = id});
      seen.push_back(CurrentLogContext().run_id + "@" + std::to_string(CurrentSlot()));
      me.Suspend();
      seen.push_back(CurrentLogContext().run_id + "@" + std::to_string(CurrentSlot()));
    };
  };
  one.Assign(work(one, "run-1"));
  two.Assign(work(two, "run-2"));
  one.Resume();
  EXPECT_EQ(CurrentLogContext().run_id, "carrier");
  EXPECT_EQ(CurrentSlot(), -1);
  two.Resume();
  one.Resume();
  two.Resume();
  EXPECT_EQ(CurrentLogContext().run_id, "carrier");
  EXPECT_EQ(CurrentSlot(), -1);
  EXPECT_EQ(seen, (std::vector<std::string>{"run-1@7", "run-2@8", "run-1@7", "run-2@8"}));
}

// A saga's compensation: a step committed inside a catch block suspends
// the fiber there. Another fiber's exceptions, caught and ended meanwhile,
// must not touch the first one's (the runtime keeps them in a per-thread
// stack).
TEST(Fiber, ACatchBlockSpanningASuspensionKeepsItsException) {
  FiberCarrier carrier;
  Fiber one(carrier, kStack, -1);
  Fiber two(carrier, kStack, -1);
  std::string one_saw, two_saw;
  one.Assign([&] {
    try {
      throw std::runtime_error("one");
    } catch (const std::exception&) {
      one.Suspend();  // inside the handler
      try {
        throw;  // the exception being handled: still "one"
      } catch (const std::exception& again) {
        one_saw = again.what();
      }
    }
  });
  two.Assign([&] {
    try {
      throw std::logic_error("two");
    } catch (const std::exception&) {
      two.Suspend();
      try {
        throw;
      } catch (const std::exception& again) {
        two_saw = again.what();
      }
    }
  });
  one.Resume();
  two.Resume();
  EXPECT_EQ(std::current_exception(), nullptr) << "the carrier handles no exception";
  one.Resume();  // ends its handler while two's is still open
  two.Resume();
  EXPECT_TRUE(one.Idle());
  EXPECT_TRUE(two.Idle());
  EXPECT_EQ(one_saw, "one");
  EXPECT_EQ(two_saw, "two");
  EXPECT_EQ(std::current_exception(), nullptr);
}

TEST(Fiber, AWaitOnAFiberSuspendsItUntilAnotherThreadSetsTheFlag) {
  FiberCarrier carrier;
  Fiber fiber(carrier, kStack, -1);
  WakeFlag flag;
  int value = 0;
  int seen = 0;
  fiber.Assign([&] {
    flag.Wait();
    seen = value;
  });
  fiber.Resume();
  EXPECT_FALSE(fiber.Idle()) << "Wait() returned before Set()";
  EXPECT_EQ(carrier.PopReady(), nullptr);
  std::thread setter([&] {
    value = 42;
    WakeFlag::Set(&flag);
  });
  carrier.Wait();  // returns once Set() made the fiber ready
  Fiber* ready = carrier.PopReady();
  setter.join();
  ASSERT_EQ(ready, &fiber);
  ready->Resume();
  EXPECT_TRUE(fiber.Idle());
  EXPECT_EQ(seen, 42);
}

TEST(Fiber, AFlagSetBeforeTheWaitDoesNotSuspend) {
  FiberCarrier carrier;
  Fiber fiber(carrier, kStack, -1);
  WakeFlag flag;
  WakeFlag::Set(&flag);
  fiber.Assign([&] { flag.Wait(); });
  fiber.Resume();
  EXPECT_TRUE(fiber.Idle());
  EXPECT_EQ(carrier.PopReady(), nullptr);
}

TEST(FiberCarrier, APokeEndsTheNextWaitOnce) {
  FiberCarrier carrier;
  carrier.Poke();
  carrier.Wait();                          // at once: poked
  EXPECT_EQ(carrier.PopReady(), nullptr);  // consumes the poke
  std::atomic<bool> woke{false};
  std::thread waiter([&] {
    carrier.Wait();
    woke = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(woke) << "Wait() returned with no poke and nothing ready";
  carrier.Poke();
  waiter.join();
  EXPECT_TRUE(woke);
}

}  // namespace
}  // namespace kagzi::daemon
