// Child processes for end-to-end tests: run the real kagzid and kagzictl
// binaries, capture their output to files, send signals, wait with a
// timeout. Not thread-safe; one owner per Process.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kagzi::testing {

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal or timed out
  int signal = 0;
  bool timed_out = false;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs argv[0] (a path) with extra environment variables to completion.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::map<std::string, std::string>& env = {},
                         std::chrono::milliseconds timeout = std::chrono::seconds(60));

// A long-running child (kagzid). Its stdout+stderr go to log_path.
class Process {
 public:
  Process(std::vector<std::string> argv, std::map<std::string, std::string> env,
          std::string log_path);
  ~Process();  // SIGKILLs the child if still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  bool Start();
  void Signal(int sig);
  // Waits for exit; returns the exit code (or -signal), nullopt on timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  bool running();
  pid_t pid() const { return pid_; }
  std::string Log() const;  // everything the child wrote so far
  // Polls the log until it contains `text` or timeout passes.
  bool WaitForLog(const std::string& text, std::chrono::milliseconds timeout) const;

 private:
  std::vector<std::string> argv_;
  std::map<std::string, std::string> env_;
  std::string log_path_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// Polls pred every 20 ms until it is true or timeout passes.
template <typename Pred>
bool Eventually(Pred pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    struct timespec ts {
      0, 20'000'000
    };
    nanosleep(&ts, nullptr);
  }
  return pred();
}

std::string ReadFile(const std::string& path);

// Sanitized builds: when `output` (a child's stdout/stderr) holds a
// sanitizer report, keeps a copy of it in $KAGZI_SANITIZER_LOG_DIR (set by
// the asan and tsan test presets), where the test sanitizer.reports finds
// it. Reports normally go there directly (log_path), but GCC's UBSan, linked
// beside ASan, writes to stderr whatever UBSAN_OPTIONS says; a kagzid worker
// that such a report ends is restarted, and its test might still pass.
// RunCommand and Process call it for every child.
void KeepSanitizerReport(const std::string& output, const std::string& what);

// A fresh empty directory under the test binary dir, removed at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace kagzi::testing
