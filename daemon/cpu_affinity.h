// Keeping a worker process on one CPU (worker_cpu_affinity = "auto").
//
// A worker's executor threads and its group committer hand every step to
// one another: the executor wakes the committer, the committer wakes each
// executor of the group it committed. Woken on another CPU, each of those
// wake-ups is an inter-processor interrupt, costly on a virtual machine;
// on the waker's own CPU it is a queue insertion, and the woken threads
// run once the committer waits for PostgreSQL. Measured on a 2-vCPU VM:
// about a third less kagzid CPU per workflow (docs/benchmarks.md). The
// price: a worker's steps get at most one CPU, whatever is idle elsewhere,
// and a burst of runs waking together queues behind it (sleep lateness p95
// up to 6.8 ms against 2-3 ms unpinned); hence off unless asked for.
#pragma once

#include <string>
#include <vector>

#include "kagzi/core/status.h"

namespace kagzi::daemon {

// The CPUs the calling thread may run on, ascending (sched_getaffinity:
// kagzid's own affinity, as systemd's CPUAffinity= or taskset set it).
Result<std::vector<int>> AllowedCpus();

// The CPU of worker `index` (1-based): the ((index - 1) mod n)-th of the n
// `allowed`. Workers beyond n share CPUs, round robin. `allowed` is not
// empty.
int CpuForWorker(const std::vector<int>& allowed, int index);

// Keeps the calling thread, and every thread it starts from now on, on
// `cpu`.
Status PinCallingThreadToCpu(int cpu);

// Keeps every thread of this process on `cpu`: the calling thread (and so
// every thread started from now on) and those already running, as a
// sanitizer's runtime starts before main() and again after fork().
Status PinProcessToCpu(int cpu);

// "0-3,6" for logs.
std::string FormatCpuList(const std::vector<int>& cpus);

}  // namespace kagzi::daemon
