// /proc readers for kagzi-bench (see proc_stats.h).
#include "proc_stats.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

extern char** environ;

namespace kagzi::bench {
namespace {

// The fields of /proc/<pid>/stat after the command name, which is in
// parentheses and may itself hold spaces and parentheses: fields[0] is the
// state (field 3 in proc(5)), so field n of proc(5) is fields[n - 3].
std::optional<std::vector<std::string>> StatFields(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  const auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 1));
  std::vector<std::string> fields;
  std::string field;
  while (rest >> field) fields.push_back(field);
  if (fields.size() < 15) return std::nullopt;
  return fields;
}

constexpr std::size_t Field(int proc5_number) { return static_cast<std::size_t>(proc5_number - 3); }

}  // namespace

std::optional<pid_t> ParentOf(pid_t pid) {
  auto fields = StatFields(pid);
  if (!fields) return std::nullopt;
  return static_cast<pid_t>(std::atol((*fields)[Field(4)].c_str()));
}

std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> children;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return children;
  while (dirent* entry = readdir(dir)) {
    char* end = nullptr;
    const long pid = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || pid <= 0) continue;
    auto ppid = ParentOf(static_cast<pid_t>(pid));
    if (ppid && *ppid == parent) children.push_back(static_cast<pid_t>(pid));
  }
  closedir(dir);
  return children;
}

std::optional<double> TreeCpuSeconds(pid_t root) {
  auto fields = StatFields(root);
  if (!fields) return std::nullopt;
  static const auto kTicks = static_cast<double>(sysconf(_SC_CLK_TCK));
  double ticks = 0;
  for (int f : {14, 15, 16, 17}) ticks += std::atof((*fields)[Field(f)].c_str());  // u/s/cu/cs
  double seconds = ticks / kTicks;
  for (pid_t child : ChildrenOf(root)) seconds += TreeCpuSeconds(child).value_or(0);
  return seconds;
}

std::optional<std::int64_t> PeakRssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return std::nullopt;
}

std::optional<std::int64_t> PssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Pss:", 0) == 0) return std::atoll(line.c_str() + 4);
  }
  return std::nullopt;
}

std::optional<std::string> ProcessName(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  if (!in || !std::getline(in, name)) return std::nullopt;
  return name;
}

Result<std::string> RunForStdout(const std::vector<std::string>& argv,
                                 const std::vector<std::string>& extra_env) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  env_strings.insert(env_strings.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> envp;
  envp.reserve(env_strings.size() + 1);
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> argp;
  argp.reserve(args.size() + 1);
  for (auto& a : args) argp.push_back(a.data());
  argp.push_back(nullptr);

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    return Status::Internal("cannot run {}: pipe: {}", argv[0], std::strerror(errno));
  }
  const pid_t pid = fork();
  if (pid < 0) {
    close(out[0]);
    close(out[1]);
    return Status::Internal("cannot run {}: fork: {}", argv[0], std::strerror(errno));
  }
  if (pid == 0) {
    dup2(out[1], 1);
    execve(argp[0], argp.data(), envp.data());
    _exit(127);
  }
  close(out[1]);
  std::string text;
  char buffer[4096];
  while (true) {
    const ssize_t n = read(out[0], buffer, sizeof buffer);
    if (n > 0) {
      text.append(buffer, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  close(out[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Status::Unavailable("{} {} failed (exit status {}); see its messages above", argv[0],
                               argv.size() > 1 ? argv[1] : "",
                               WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  }
  return text;
}

}  // namespace kagzi::bench
