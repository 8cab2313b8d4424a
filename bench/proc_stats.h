// What kagzi-bench reads about processes from /proc (Linux): CPU time of a
// process tree, memory peaks, parent and children. Used for kagzid (a
// supervisor and its worker processes) and for PostgreSQL (the postmaster
// and its backends). Every function reads /proc afresh and keeps no state;
// all are thread-safe. A process that is gone (or unreadable) yields
// nullopt, never an error: processes come and go while they are measured.
// Also: running a short helper command for its output (scripts/pg.sh,
// kagzid --version).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kagzi/core/status.h"

namespace kagzi::bench {

// CPU seconds (user + system) of `root`, of its children it has already
// waited for (cutime + cstime: e.g. PostgreSQL backends that have exited),
// and of every live descendant, recursively. Monotonic over the tree's
// life, so the difference of two readings is the CPU the tree used between
// them (a descendant that exits between the readings moves from "live" to
// its parent's "waited for" part).
std::optional<double> TreeCpuSeconds(pid_t root);

// The live children of `parent` (from the ppid field of every /proc/<pid>/stat).
std::vector<pid_t> ChildrenOf(pid_t parent);

// The parent of `pid`.
std::optional<pid_t> ParentOf(pid_t pid);

// The peak resident set size of `pid` (VmHWM), in KiB.
std::optional<std::int64_t> PeakRssKiB(pid_t pid);

// The proportional set size of `pid` (Pss in /proc/<pid>/smaps_rollup), in
// KiB: its private pages plus its share of the pages it shares with other
// processes (a worker shares its libraries' pages with its supervisor), so
// the PSS of several processes add up to the memory they use together.
std::optional<std::int64_t> PssKiB(pid_t pid);

// The process name (/proc/<pid>/comm), e.g. "postgres", "kagzid".
std::optional<std::string> ProcessName(pid_t pid);

// Runs argv (argv[0] a path) with extra NAME=value environment entries and
// returns its stdout; its stderr goes to ours. Fails, naming the command and
// its exit status, unless it exits 0.
Result<std::string> RunForStdout(const std::vector<std::string>& argv,
                                 const std::vector<std::string>& extra_env = {});

}  // namespace kagzi::bench
