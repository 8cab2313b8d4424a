// kagzid: the Kagzi daemon. Parses flags and config, then runs the
// Supervisor (supervisor.h), which forks the worker processes that load the
// plugins and run workflows. SIGTERM/SIGINT drain and stop; SIGHUP rescans
// the plugin directory.
#include <signal.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <thread>

#include <CLI/CLI.hpp>

#include "kagzi/core/log.h"
#include "supervisor.h"

int main(int argc, char** argv) {
  CLI::App app{"kagzid: the Kagzi durable workflow daemon", "kagzid"};
  app.footer(
      "Every key can also come from the config file (TOML) and from KAGZI_<KEY> environment\n"
      "variables; precedence: flags > environment > file > defaults.\n"
      "Signals: SIGTERM/SIGINT drain and stop; SIGHUP loads new plugins from plugin_dir.\n"
      "Exit codes: 0 stopped cleanly, 1 runtime failure, 2 bad flags or configuration.");
  std::optional<std::string> config_path;
  std::map<std::string, std::string> flags;
  bool version = false, check = false;
  app.add_option("-c,--config", config_path,
                 "config file (default: $KAGZI_CONFIG or /etc/kagzi/kagzid.toml)");
  for (auto key : kagzi::ConfigKeys()) {
    std::string name = "--" + std::string(key);
    std::replace(name.begin(), name.end(), '_', '-');
    app.add_option_function<std::string>(
        name, [&flags, k = std::string(key)](const std::string& v) { flags[k] = v; },
        fmt::format("overrides config key {} (env {})", key, kagzi::EnvVarForKey(key)));
  }
  app.add_flag("--version", version, "print the version and exit");
  app.add_flag("--check-config", check, "validate the configuration, print it and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (version) {
    std::printf("kagzid %s (plugin ABI %d.%d)\n", KAGZI_VERSION, KAGZI_ABI_MAJOR, KAGZI_ABI_MINOR);
    return 0;
  }

  auto config = kagzi::LoadConfig({config_path, flags, {}});
  if (!config.ok()) {
    std::fprintf(stderr, "kagzid: %s\n", config.status().message().c_str());
    return 2;
  }
  if (check) {
    std::printf("%s", kagzi::DescribeConfig(*config).c_str());
    std::printf("# configuration OK\n");
    return 0;
  }
  if (auto st = kagzi::InitLogging(config->log_level); !st.ok()) {
    std::fprintf(stderr, "kagzid: %s\n", st.message().c_str());
    return 2;
  }

  auto log = kagzi::Logger("kagzid");
  log->info("kagzid {} starting (pid {}): config {}, database_url \"{}\", plugin_dir \"{}\"",
            KAGZI_VERSION, getpid(),
            config->source_file.empty() ? "(none: defaults)" : config->source_file,
            kagzi::RedactDatabaseUrl(config->database_url), config->plugin_dir);
  signal(SIGPIPE, SIG_IGN);
  kagzi::daemon::Supervisor supervisor(*config, std::make_unique<kagzi::daemon::SdNotifier>());
  int code = supervisor.Run();
  spdlog::shutdown();
  return code;
}
