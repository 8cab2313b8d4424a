// KagzidProcess (see kagzid_process.h): fork/exec, sd_notify readiness,
// SIGTERM and wait4().
#include "kagzid_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "proc_stats.h"

extern char** environ;

namespace kagzi::bench {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

double Seconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

int ExitCode(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return -WTERMSIG(wait_status);
  return -1;
}

}  // namespace

KagzidProcess::KagzidProcess(KagzidOptions options) : options_(std::move(options)) {}

KagzidProcess::~KagzidProcess() {
  CloseNotifySocket();
  if (pid_ > 0 && !exited_) {
    kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

Status KagzidProcess::Start() {
  // The notify socket first, so that no READY=1 can be sent before it exists.
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (options_.notify_socket_path.size() >= sizeof(addr.sun_path)) {
    return Status::InvalidArgument(
        "the notify socket path {} is longer than a Unix socket path may be ({} bytes); "
        "use a shorter --work-dir",
        options_.notify_socket_path, sizeof(addr.sun_path) - 1);
  }
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", options_.notify_socket_path.c_str());
  ::unlink(options_.notify_socket_path.c_str());
  notify_fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (notify_fd_ < 0 || ::bind(notify_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Status::Internal("cannot bind the notify socket {}: {}", options_.notify_socket_path,
                            std::strerror(errno));
  }

  std::vector<std::string> args = {options_.binary,
                                   "-c",
                                   "/dev/null",
                                   "--database-url",
                                   options_.conninfo,
                                   "--plugin-dir",
                                   options_.plugin_dir,
                                   "--concurrency",
                                   std::to_string(options_.concurrency),
                                   "--log-level",
                                   options_.log_level};
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "NOTIFY_SOCKET=", 14) != 0) env.emplace_back(*e);
  }
  env.push_back("NOTIFY_SOCKET=" + options_.notify_socket_path);
  // Everything the child needs is prepared before fork(): after it, only
  // async-signal-safe calls (the bench may have threads).
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const int log_fd =
      ::open(options_.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return Status::Internal("cannot open the kagzid log {}: {}", options_.log_path,
                            std::strerror(errno));
  }
  const pid_t parent = getpid();
  started_at_ = steady_clock::now();
  const pid_t pid = fork();
  if (pid < 0) {
    ::close(log_fd);
    return Status::Internal("cannot start {}: fork: {}", options_.binary, std::strerror(errno));
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execve(argv[0], argv.data(), envp.data());
    const char msg[] = "kagzi-bench: execve of kagzid failed\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(127);
  }
  ::close(log_fd);
  pid_ = pid;
  return Status::Ok();
}

void KagzidProcess::CloseNotifySocket() {
  if (notify_fd_ < 0) return;
  ::close(notify_fd_);
  notify_fd_ = -1;
  ::unlink(options_.notify_socket_path.c_str());
}

std::string KagzidProcess::LogTail() const {
  std::ifstream in(options_.log_path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (text.size() > 2000) text = "..." + text.substr(text.size() - 2000);
  return text;
}

Status KagzidProcess::CheckAlive() {
  if (!exited_) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      wait_status_ = status;
    }
  }
  if (!exited_) return Status::Ok();
  return Status::Unavailable("kagzid (pid {}) exited with status {}; its log {} ends:\n{}", pid_,
                             ExitCode(wait_status_), options_.log_path, LogTail());
}

Status KagzidProcess::WaitReady(milliseconds timeout, const std::atomic<bool>& interrupted) {
  const auto deadline = steady_clock::now() + timeout;
  while (true) {
    char buffer[4096];
    while (true) {
      const ssize_t n = ::recv(notify_fd_, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      std::string message(buffer, static_cast<std::size_t>(n));
      if (("\n" + message + "\n").find("\nREADY=1\n") != std::string::npos) {
        // kagzid sends STATUS= and WATCHDOG=1 from now on; with nobody
        // reading, a full socket queue could block it. A closed socket
        // makes its sd_notify() fail at once, which kagzid ignores.
        CloseNotifySocket();
        return Status::Ok();
      }
    }
    KAGZI_RETURN_IF_ERROR(CheckAlive());
    if (interrupted.load()) return Status::Unavailable("interrupted");
    if (steady_clock::now() > deadline) {
      return Status::Unavailable("kagzid (pid {}) not ready after {} ms; its log {} ends:\n{}",
                                 pid_, timeout.count(), options_.log_path, LogTail());
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
}

std::vector<std::int64_t> KagzidProcess::PeakRssKiB() const {
  std::vector<std::int64_t> peaks;
  if (pid_ <= 0 || exited_) return peaks;
  if (auto kib = kagzi::bench::PeakRssKiB(pid_)) peaks.push_back(*kib);
  for (pid_t worker : ChildrenOf(pid_)) {
    if (auto kib = kagzi::bench::PeakRssKiB(worker)) peaks.push_back(*kib);
  }
  return peaks;
}

std::optional<std::int64_t> KagzidProcess::PssKiB() const {
  if (pid_ <= 0 || exited_) return std::nullopt;
  auto sum = kagzi::bench::PssKiB(pid_);
  if (!sum) return std::nullopt;
  for (pid_t worker : ChildrenOf(pid_)) *sum += kagzi::bench::PssKiB(worker).value_or(0);
  return sum;
}

std::optional<double> KagzidProcess::CpuSecondsSoFar() const {
  if (pid_ <= 0 || exited_) return std::nullopt;
  return TreeCpuSeconds(pid_);
}

Result<KagzidUsage> KagzidProcess::Stop(milliseconds timeout) {
  CloseNotifySocket();
  if (pid_ <= 0) return Status::Internal("kagzid was never started");
  if (exited_) {
    return Status::Unavailable("kagzid (pid {}) had already exited with status {}; see {}", pid_,
                               ExitCode(wait_status_), options_.log_path);
  }
  kill(pid_, SIGTERM);
  const auto deadline = steady_clock::now() + timeout;
  bool killed = false;
  while (true) {
    int status = 0;
    rusage usage{};
    const pid_t r = wait4(pid_, &status, WNOHANG, &usage);
    if (r == pid_) {
      exited_ = true;
      wait_status_ = status;
      KagzidUsage u;
      u.cpu_seconds = Seconds(usage.ru_utime) + Seconds(usage.ru_stime);
      u.lifetime_seconds = std::chrono::duration<double>(steady_clock::now() - started_at_).count();
      u.exit_code = ExitCode(status);
      if (killed) {
        return Status::Unavailable("kagzid (pid {}) did not stop within {} ms of SIGTERM; killed",
                                   pid_, timeout.count());
      }
      return u;
    }
    if (r < 0 && errno != EINTR) {
      return Status::Internal("waiting for kagzid (pid {}): {}", pid_, std::strerror(errno));
    }
    if (!killed && steady_clock::now() > deadline) {
      kill(pid_, SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(milliseconds(2));
  }
}

}  // namespace kagzi::bench
