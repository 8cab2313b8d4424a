// worker_cpu_affinity = "auto": which CPU each worker takes, and the
// calling thread's affinity as the kernel reports it (daemon/cpu_affinity.h).
#include "cpu_affinity.h"

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <future>
#include <thread>

#include <gtest/gtest.h>

namespace kagzi::daemon {
namespace {

TEST(CpuForWorkerTest, WorkersTakeTheAllowedCpusInTurn) {
  const std::vector<int> allowed = {2, 3, 5};
  EXPECT_EQ(CpuForWorker(allowed, 1), 2);
  EXPECT_EQ(CpuForWorker(allowed, 2), 3);
  EXPECT_EQ(CpuForWorker(allowed, 3), 5);
  // More workers than CPUs: round robin.
  EXPECT_EQ(CpuForWorker(allowed, 4), 2);
  EXPECT_EQ(CpuForWorker(allowed, 6), 5);
  EXPECT_EQ(CpuForWorker(allowed, 8), 3);
  EXPECT_EQ(CpuForWorker({7}, 1), 7);
  EXPECT_EQ(CpuForWorker({7}, 64), 7);
}

TEST(FormatCpuListTest, RunsOfCpusAreRanges) {
  EXPECT_EQ(FormatCpuList({0}), "0");
  EXPECT_EQ(FormatCpuList({0, 1}), "0-1");
  EXPECT_EQ(FormatCpuList({0, 1, 2, 3, 6, 8, 9}), "0-3,6,8-9");
  EXPECT_EQ(FormatCpuList({}), "");
}

TEST(AllowedCpusTest, MatchesTheKernelsMaskForThisThread) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  std::vector<int> expected;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) expected.push_back(cpu);
  }
  auto allowed = AllowedCpus();
  ASSERT_TRUE(allowed.ok()) << allowed.status().message();
  EXPECT_EQ(*allowed, expected);
}

// Pinned in a thread of its own, so the test process keeps its mask; a
// thread that thread starts afterwards inherits the one CPU.
TEST(PinCallingThreadToCpuTest, PinsTheThreadAndTheThreadsItStarts) {
  auto allowed = AllowedCpus();
  ASSERT_TRUE(allowed.ok()) << allowed.status().message();
  const int cpu = allowed->back();
  std::vector<int> pinned, inherited;
  std::thread([&] {
    ASSERT_TRUE(PinCallingThreadToCpu(cpu).ok());
    pinned = *AllowedCpus();
    std::thread([&] { inherited = *AllowedCpus(); }).join();
  }).join();
  EXPECT_EQ(pinned, std::vector<int>{cpu});
  EXPECT_EQ(inherited, std::vector<int>{cpu});
  EXPECT_EQ(*AllowedCpus(), *allowed) << "the test's own thread was pinned";
}

// Each test runs in a process of its own (gtest_discover_tests), so this
// one may pin its whole process.
TEST(PinProcessToCpuTest, PinsTheThreadsAlreadyRunningToo) {
  auto allowed = AllowedCpus();
  ASSERT_TRUE(allowed.ok()) << allowed.status().message();
  const int cpu = allowed->back();
  std::promise<pid_t> started;
  std::promise<void> done;
  std::thread running([&] {
    started.set_value(static_cast<pid_t>(syscall(SYS_gettid)));
    done.get_future().wait();
  });
  const pid_t tid = started.get_future().get();
  ASSERT_TRUE(PinProcessToCpu(cpu).ok());
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(tid, sizeof(set), &set), 0);
  EXPECT_EQ(CPU_COUNT(&set), 1);
  EXPECT_TRUE(CPU_ISSET(cpu, &set)) << "the thread started before the pin";
  EXPECT_EQ(*AllowedCpus(), std::vector<int>{cpu}) << "the calling thread";
  done.set_value();
  running.join();
}

TEST(PinCallingThreadToCpuTest, ACpuTheKernelDoesNotHaveIsRefusedByNumber) {
  std::thread([] {
    Status st = PinCallingThreadToCpu(100'000);
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find("CPU 100000"), std::string::npos) << st.message();
    EXPECT_FALSE(PinCallingThreadToCpu(-1).ok());
  }).join();
}

}  // namespace
}  // namespace kagzi::daemon
