// Process spawning with posix_spawn; output captured to files.
#include "support/process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>

#include "support/test_db.h"

extern char** environ;

namespace kagzi::testing {
namespace {

std::vector<std::string> MergedEnv(const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> all;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string::npos) all[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : extra) all[k] = v;
  std::vector<std::string> out;
  for (const auto& [k, v] : all) out.push_back(k + "=" + v);
  return out;
}

pid_t Spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
            const std::string& out_path, const std::string& err_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0644);
  if (err_path == out_path) {
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
  } else {
    posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                     0644);
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  auto env_strings = MergedEnv(env);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

std::optional<int> WaitPid(pid_t pid, std::chrono::milliseconds timeout, int* raw_status) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      *raw_status = status;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return -WTERMSIG(status);
      return -1;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    usleep(5000);
  }
}

std::string TempPath(const std::string& tag) {
  std::random_device rd;
  std::filesystem::path dir =
      std::filesystem::path(RequiredEnv("KAGZI_TEST_BINARY_DIR")) / "test-tmp";
  std::filesystem::create_directories(dir);
  return (dir / (tag + std::to_string(rd()) + std::to_string(getpid()))).string();
}

}  // namespace

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void KeepSanitizerReport(const std::string& output, const std::string& what) {
  const char* dir = std::getenv("KAGZI_SANITIZER_LOG_DIR");
  if (dir == nullptr || *dir == '\0') return;
  static const std::regex kReport(
      R"((ERROR|WARNING): (AddressSanitizer|LeakSanitizer|ThreadSanitizer)|)"
      R"(\.(c|cc|cpp|h|hpp):[0-9]+:[0-9]+: runtime error: )");
  if (!std::regex_search(output, kReport)) return;
  std::random_device rd;
  std::string name = what.substr(what.find_last_of('/') + 1);
  std::ofstream(std::string(dir) + "/stderr." + name + "." + std::to_string(getpid()) + "." +
                std::to_string(rd()))
      << "output of " << what << " (test pid " << getpid() << "):\n"
      << output;
}

CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::map<std::string, std::string>& env,
                         std::chrono::milliseconds timeout) {
  CommandResult result;
  std::string out = TempPath("out-"), err = TempPath("err-");
  pid_t pid = Spawn(argv, env, out, err);
  if (pid < 0) {
    result.err = "cannot spawn " + argv[0];
    return result;
  }
  int raw = 0;
  auto code = WaitPid(pid, timeout, &raw);
  if (!code) {
    kill(pid, SIGKILL);
    waitpid(pid, &raw, 0);
    result.timed_out = true;
  } else if (*code >= 0) {
    result.exit_code = *code;
  } else {
    result.signal = -*code;
  }
  result.out = ReadFile(out);
  result.err = ReadFile(err);
  KeepSanitizerReport(result.err + result.out, argv[0]);
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return result;
}

Process::Process(std::vector<std::string> argv, std::map<std::string, std::string> env,
                 std::string log_path)
    : argv_(std::move(argv)), env_(std::move(env)), log_path_(std::move(log_path)) {}

Process::~Process() {
  if (pid_ > 0 && !status_) {
    kill(pid_, SIGKILL);
    int raw = 0;
    waitpid(pid_, &raw, 0);
  }
  if (pid_ > 0) KeepSanitizerReport(Log(), argv_[0]);
}

bool Process::Start() {
  status_.reset();
  pid_ = Spawn(argv_, env_, log_path_, log_path_);
  return pid_ > 0;
}

void Process::Signal(int sig) {
  if (pid_ > 0 && !status_) kill(pid_, sig);
}

std::optional<int> Process::Wait(std::chrono::milliseconds timeout) {
  if (status_) return status_;
  if (pid_ <= 0) return std::nullopt;
  int raw = 0;
  status_ = WaitPid(pid_, timeout, &raw);
  return status_;
}

bool Process::running() {
  if (pid_ <= 0 || status_) return false;
  return !Wait(std::chrono::milliseconds(0)).has_value();
}

std::string Process::Log() const { return ReadFile(log_path_); }

bool Process::WaitForLog(const std::string& text, std::chrono::milliseconds timeout) const {
  return Eventually([&] { return Log().find(text) != std::string::npos; }, timeout);
}

TempDir::TempDir() : path_(TempPath("dir-")) { std::filesystem::create_directories(path_); }
TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace kagzi::testing
