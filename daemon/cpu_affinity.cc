// See cpu_affinity.h.
#include "cpu_affinity.h"

#include <sched.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include <fmt/format.h>

namespace kagzi::daemon {
namespace {

// A CPU set of `cpus` CPUs, freed with CPU_FREE.
struct CpuSetDeleter {
  void operator()(cpu_set_t* set) const { CPU_FREE(set); }
};
using CpuSet = std::unique_ptr<cpu_set_t, CpuSetDeleter>;

// Pins thread `tid` (0: the calling thread) to `cpu`. ESRCH (the thread
// has ended) counts as done.
Status PinThread(pid_t tid, int cpu) {
  if (cpu < 0) return Status::InvalidArgument("no CPU {}", cpu);
  const int cpus = cpu + 1;
  CpuSet set(CPU_ALLOC(cpus));
  if (!set) return Status::Internal("cannot allocate a CPU set of {} CPUs", cpus);
  const std::size_t size = CPU_ALLOC_SIZE(cpus);
  CPU_ZERO_S(size, set.get());
  CPU_SET_S(cpu, size, set.get());
  if (sched_setaffinity(tid, size, set.get()) != 0 && !(tid != 0 && errno == ESRCH)) {
    return Status::Internal("sched_setaffinity of thread {} to CPU {}: {}", tid, cpu,
                            std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace

Result<std::vector<int>> AllowedCpus() {
  // The kernel refuses (EINVAL) a set smaller than its own CPU mask; grow
  // until it fits.
  for (int cpus = 1024; cpus <= (1 << 20); cpus *= 2) {
    CpuSet set(CPU_ALLOC(cpus));
    if (!set) return Status::Internal("cannot allocate a CPU set of {} CPUs", cpus);
    const std::size_t size = CPU_ALLOC_SIZE(cpus);
    CPU_ZERO_S(size, set.get());
    if (sched_getaffinity(0, size, set.get()) != 0) {
      if (errno == EINVAL) continue;
      return Status::Internal("sched_getaffinity: {}", std::strerror(errno));
    }
    std::vector<int> allowed;
    for (int cpu = 0; cpu < cpus; ++cpu) {
      if (CPU_ISSET_S(cpu, size, set.get())) allowed.push_back(cpu);
    }
    if (allowed.empty()) return Status::Internal("sched_getaffinity gave no CPU");
    return allowed;
  }
  return Status::Internal("sched_getaffinity: the CPU mask is larger than 1048576 CPUs");
}

int CpuForWorker(const std::vector<int>& allowed, int index) {
  const int n = static_cast<int>(allowed.size());
  return allowed[static_cast<std::size_t>(((index - 1) % n + n) % n)];
}

Status PinCallingThreadToCpu(int cpu) { return PinThread(0, cpu); }

Status PinProcessToCpu(int cpu) {
  KAGZI_RETURN_IF_ERROR(PinThread(0, cpu));
  // Advanced with an error code: a failed read is a Status (the worker then
  // runs unpinned, with a warning), never an exception out of the worker.
  std::error_code ec;
  for (std::filesystem::directory_iterator task("/proc/self/task", ec), end; !ec && task != end;
       task.increment(ec)) {
    const std::string name = task->path().filename();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    KAGZI_RETURN_IF_ERROR(PinThread(static_cast<pid_t>(std::stol(name)), cpu));
  }
  if (ec) return Status::Internal("reading /proc/self/task: {}", ec.message());
  return Status::Ok();
}

std::string FormatCpuList(const std::vector<int>& cpus) {
  std::string out;
  for (std::size_t i = 0; i < cpus.size();) {
    std::size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += j == i ? fmt::format("{}", cpus[i]) : fmt::format("{}-{}", cpus[i], cpus[j]);
    i = j + 1;
  }
  return out;
}

}  // namespace kagzi::daemon
