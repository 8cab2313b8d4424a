// Config loading: defaults, the TOML file, KAGZI_* variables and flags, their
// precedence, and the errors that name the key and where its value came from.
#include "kagzi/core/config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <regex>
#include <string>

#include <gtest/gtest.h>
#include <libpq-fe.h>

namespace kagzi {
namespace {

using std::chrono::milliseconds;

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

::testing::AssertionResult Lacks(const std::string& text, const std::string& part) {
  if (text.find(part) == std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" contains \"" << part << "\"";
}

::testing::AssertionResult Matches(const std::string& text, const std::string& pattern) {
  if (std::regex_search(text, std::regex(pattern))) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not match /" << pattern << "/";
}

// A fresh directory under the system temp dir, removed at the end of the test.
class ScratchDir {
 public:
  ScratchDir() {
    static std::atomic<int> counter{0};
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("kagzi-config-test-" + std::to_string(getpid()) + "-" + std::to_string(rd()) + "-" +
             std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  // Writes `text` to a file named `name` and returns its path.
  std::string Write(const std::string& name, const std::string& text) const {
    std::string file = (path_ / name).string();
    std::ofstream out(file, std::ios::binary);
    out << text;
    return file;
  }
  std::string Path(const std::string& name) const { return (path_ / name).string(); }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// An injected environment: only what the test puts in it.
struct FakeEnv {
  std::map<std::string, std::string> vars;
  std::function<std::optional<std::string>(const std::string&)> Getenv() const {
    return [vars = vars](const std::string& name) -> std::optional<std::string> {
      auto it = vars.find(name);
      if (it == vars.end()) return std::nullopt;
      return it->second;
    };
  }
};

ConfigLoadOptions Options(const std::optional<std::string>& file, const FakeEnv& env,
                          std::map<std::string, std::string> flags = {}) {
  ConfigLoadOptions o;
  o.explicit_file = file;
  o.flag_values = std::move(flags);
  o.getenv = env.Getenv();
  return o;
}

TEST(ConfigDefaultsTest, BuiltInDefaults) {
  Config c;
  EXPECT_EQ(c.database_url, "postgresql:///kagzi");
  EXPECT_EQ(c.plugin_dir, "/usr/lib/kagzi/plugins");
  EXPECT_EQ(c.concurrency, 16);
  EXPECT_EQ(c.lease_ttl, milliseconds(30'000));
  EXPECT_EQ(c.heartbeat_interval, milliseconds(10'000));
  EXPECT_EQ(c.poll_interval, milliseconds(10'000));
  EXPECT_EQ(c.drain_timeout, milliseconds(30'000));
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.max_payload_bytes, 16 * 1024 * 1024);
  EXPECT_EQ(c.worker_cpu_affinity, Config::CpuAffinity::kOff);
  EXPECT_EQ(c.executor, Config::Executor::kThreads);
  EXPECT_EQ(c.fiber_threads, 2);
  EXPECT_TRUE(c.source_file.empty());
  EXPECT_TRUE(ValidateConfig(c).ok());
}

TEST(ConfigDefaultsTest, EveryDocumentedKeyIsKnown) {
  const auto& keys = ConfigKeys();
  for (std::string_view key : {"database_url", "plugin_dir", "concurrency", "lease_ttl",
                               "heartbeat_interval", "poll_interval", "log_level"}) {
    EXPECT_NE(std::find(keys.begin(), keys.end(), key), keys.end()) << key;
  }
  EXPECT_EQ(EnvVarForKey("lease_ttl"), "KAGZI_LEASE_TTL");
  EXPECT_EQ(EnvVarForKey("database_url"), "KAGZI_DATABASE_URL");
}

TEST(ConfigDefaultsTest, AbsentDefaultFileGivesDefaultsWithoutError) {
  FakeEnv env;  // no KAGZI_CONFIG, nothing else
  auto c = LoadConfig(Options(std::nullopt, env));
  std::error_code ec;
  if (std::filesystem::exists(kDefaultConfigPath, ec)) {
    // An installed machine: the default file is read when it exists.
    ASSERT_TRUE(c.ok()) << c.status().message();
    EXPECT_EQ(c->source_file, kDefaultConfigPath);
  } else {
    ASSERT_TRUE(c.ok()) << c.status().message();
    EXPECT_TRUE(c->source_file.empty());
    EXPECT_EQ(c->concurrency, Config{}.concurrency);
    EXPECT_EQ(c->database_url, Config{}.database_url);
    EXPECT_EQ(c->lease_ttl, Config{}.lease_ttl);
  }
}

TEST(ConfigFileTest, ParsesEveryKey) {
  ScratchDir dir;
  std::string file = dir.Write("kagzid.toml",
                               "# a comment\n"
                               "database_url = \"postgresql://kagzi@db.example/kagzi\"\n"
                               "plugin_dir = \"/opt/kagzi/plugins\"\n"
                               "concurrency = 7\n"
                               "lease_ttl = \"5m\"\n"
                               "heartbeat_interval = \"30s\"\n"
                               "poll_interval = \"250ms\"\n"
                               "drain_timeout = \"1h\"\n"
                               "log_level = \"debug\"\n"
                               "max_payload_bytes = 2048\n"
                               "worker_cpu_affinity = \"auto\"\n"
                               "executor = \"fibers\"\n"
                               "fiber_threads = 3\n");
  FakeEnv env;
  auto c = LoadConfig(Options(file, env));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->database_url, "postgresql://kagzi@db.example/kagzi");
  EXPECT_EQ(c->plugin_dir, "/opt/kagzi/plugins");
  EXPECT_EQ(c->concurrency, 7);
  EXPECT_EQ(c->lease_ttl, milliseconds(5 * 60'000));
  EXPECT_EQ(c->heartbeat_interval, milliseconds(30'000));
  EXPECT_EQ(c->poll_interval, milliseconds(250));
  EXPECT_EQ(c->drain_timeout, milliseconds(3'600'000));
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(c->max_payload_bytes, 2048);
  EXPECT_EQ(c->worker_cpu_affinity, Config::CpuAffinity::kAuto);
  EXPECT_EQ(c->executor, Config::Executor::kFibers);
  EXPECT_EQ(c->fiber_threads, 3);
  EXPECT_EQ(c->source_file, file);
}

TEST(ConfigFileTest, DurationsAsBareSecondsAndStrings) {
  Config c;
  Status st = ApplyToml(
      "lease_ttl = 45\nheartbeat_interval = \"15\"\npoll_interval = \"2s\"\n"
      "drain_timeout = \"1500ms\"\n",
      "inline.toml", &c);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(c.lease_ttl, milliseconds(45'000));
  EXPECT_EQ(c.heartbeat_interval, milliseconds(15'000));
  EXPECT_EQ(c.poll_interval, milliseconds(2'000));
  EXPECT_EQ(c.drain_timeout, milliseconds(1'500));
}

TEST(ConfigFileTest, IntegerKeysAcceptTomlIntegersAndStrings) {
  Config c;
  ASSERT_TRUE(ApplyToml("concurrency = \"12\"\n", "a.toml", &c).ok());
  EXPECT_EQ(c.concurrency, 12);
  ASSERT_TRUE(ApplyToml("concurrency = 1024\n", "a.toml", &c).ok());
  EXPECT_EQ(c.concurrency, 1024);
}

TEST(ConfigFileTest, EmptyFileKeepsDefaults) {
  ScratchDir dir;
  std::string file = dir.Write("empty.toml", "");
  FakeEnv env;
  auto c = LoadConfig(Options(file, env));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->concurrency, Config{}.concurrency);
  EXPECT_EQ(c->source_file, file);
}

TEST(ConfigFileTest, UnknownKeyIsRefusedWithKeyAndFileLine) {
  ScratchDir dir;
  std::string file =
      dir.Write("kagzid.toml", "concurrency = 4\n\nconcurency_typo = 8\nlog_level = \"info\"\n");
  FakeEnv env;
  auto c = LoadConfig(Options(file, env));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(c.status().message(), file + ":3"));
  EXPECT_TRUE(Contains(c.status().message(), "\"concurency_typo\""));
  EXPECT_TRUE(Contains(c.status().message(), "unknown key"));
}

TEST(ConfigFileTest, TablesAreUnknownKeys) {
  Config c;
  Status st = ApplyToml("concurrency = 4\n[server]\nport = 5\n", "nested.toml", &c);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(Contains(st.message(), "\"server\""));
  EXPECT_TRUE(Contains(st.message(), "nested.toml:"));
}

TEST(ConfigFileTest, WrongTomlTypeIsRefusedNamingTheKey) {
  for (const char* text : {"concurrency = true\n", "concurrency = 4.5\n", "concurrency = [4]\n",
                           "lease_ttl = 1979-05-27\n"}) {
    Config c;
    Status st = ApplyToml(text, "typed.toml", &c);
    ASSERT_FALSE(st.ok()) << text;
    EXPECT_TRUE(Contains(st.message(), "typed.toml:1")) << text;
    EXPECT_TRUE(Matches(st.message(), "typed\\.toml:1: (concurrency|lease_ttl): ")) << text;
  }
}

TEST(ConfigFileTest, BadValuesInFileNameKeyAndLine) {
  struct Case {
    std::string text;
    std::string key;
    std::string detail;
  };
  const std::vector<Case> cases = {
      {"concurrency = 0\n", "concurrency", "0"},
      {"concurrency = 1025\n", "concurrency", "1025"},
      {"concurrency = -3\n", "concurrency", "-3"},
      {"concurrency = \"abc\"\n", "concurrency", "abc"},
      {"lease_ttl = \"10 parsecs\"\n", "lease_ttl", "10 parsecs"},
      {"lease_ttl = \"0s\"\n", "lease_ttl", "0s"},
      {"lease_ttl = \"\"\n", "lease_ttl", ""},
      {"poll_interval = \"fast\"\n", "poll_interval", "fast"},
      {"heartbeat_interval = \"1.5s\"\n", "heartbeat_interval", "1.5s"},
      {"log_level = \"loud\"\n", "log_level", "loud"},
      {"database_url = \"\"\n", "database_url", ""},
      {"plugin_dir = \"\"\n", "plugin_dir", ""},
      {"max_payload_bytes = 10\n", "max_payload_bytes", "10"},
      {"worker_cpu_affinity = \"on\"\n", "worker_cpu_affinity", "\"on\" is not one of off, auto"},
      {"executor = \"green\"\n", "executor", "\"green\" is not one of threads, fibers"},
      {"fiber_threads = 0\n", "fiber_threads", "0"},
      {"fiber_threads = 65\n", "fiber_threads", "65"},
  };
  for (const auto& tc : cases) {
    ScratchDir dir;
    std::string file = dir.Write("bad.toml", "# line one\n" + tc.text);
    FakeEnv env;
    auto c = LoadConfig(Options(file, env));
    ASSERT_FALSE(c.ok()) << tc.text;
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << tc.text;
    EXPECT_TRUE(Contains(c.status().message(), file + ":2")) << tc.text;
    EXPECT_TRUE(Contains(c.status().message(), tc.key)) << tc.text;
    EXPECT_TRUE(Contains(c.status().message(), tc.detail)) << tc.text;
  }
}

TEST(ConfigFileTest, SyntaxErrorNamesFileLineAndColumn) {
  ScratchDir dir;
  std::string file = dir.Write("broken.toml", "concurrency = 4\nlog_level = \"info\n");
  FakeEnv env;
  auto c = LoadConfig(Options(file, env));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  // "<file>:<line>:<column>: <description>"
  EXPECT_TRUE(Matches(c.status().message(), ":2:[0-9]+: "));
  EXPECT_TRUE(Contains(c.status().message(), file + ":2:"));
}

TEST(ConfigFileTest, SyntaxErrorColumnIsReported) {
  Config c;
  Status st = ApplyToml("concurrency = = 4\n", "col.toml", &c);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(Matches(st.message(), "^col\\.toml:1:[0-9]+: "));
}

TEST(ConfigFileTest, DuplicateKeyIsRefused) {
  Config c;
  Status st = ApplyToml("concurrency = 4\nconcurrency = 5\n", "dup.toml", &c);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(Contains(st.message(), "dup.toml:2"));
}

TEST(ConfigFileTest, ExplicitMissingFileIsAnErrorNamingThePath) {
  ScratchDir dir;
  std::string missing = dir.Path("nope.toml");
  FakeEnv env;
  auto c = LoadConfig(Options(missing, env));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(c.status().message(), missing));
}

TEST(ConfigFileTest, ExplicitPathThatIsADirectoryIsRefused) {
  ScratchDir dir;
  FakeEnv env;
  auto c = LoadConfig(Options(dir.path(), env));
  ASSERT_FALSE(c.ok()) << "a directory was accepted as the config file";
  EXPECT_TRUE(Contains(c.status().message(), dir.path()));
}

TEST(ConfigFileTest, KagziConfigVariableNamesTheFile) {
  ScratchDir dir;
  std::string file = dir.Write("from-env.toml", "concurrency = 3\n");
  FakeEnv env;
  env.vars["KAGZI_CONFIG"] = file;
  auto c = LoadConfig(Options(std::nullopt, env));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->concurrency, 3);
  EXPECT_EQ(c->source_file, file);
}

TEST(ConfigFileTest, KagziConfigPointingToMissingFileIsAnError) {
  ScratchDir dir;
  std::string missing = dir.Path("missing.toml");
  FakeEnv env;
  env.vars["KAGZI_CONFIG"] = missing;
  auto c = LoadConfig(Options(std::nullopt, env));
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status().message(), missing));
}

TEST(ConfigFileTest, ExplicitFileWinsOverKagziConfig) {
  ScratchDir dir;
  std::string explicit_file = dir.Write("explicit.toml", "concurrency = 5\n");
  FakeEnv env;
  env.vars["KAGZI_CONFIG"] = dir.Path("missing.toml");
  auto c = LoadConfig(Options(explicit_file, env));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->concurrency, 5);
  EXPECT_EQ(c->source_file, explicit_file);
}

TEST(ConfigPrecedenceTest, DefaultsThenFileThenEnvironmentThenFlags) {
  ScratchDir dir;
  std::string file = dir.Write("kagzid.toml",
                               "concurrency = 4\nlog_level = \"warn\"\nlease_ttl = \"40s\"\n"
                               "plugin_dir = \"/from/file\"\n");
  FakeEnv env;
  env.vars["KAGZI_CONCURRENCY"] = "8";
  env.vars["KAGZI_LOG_LEVEL"] = "error";
  env.vars["KAGZI_POLL_INTERVAL"] = "750ms";
  std::map<std::string, std::string> flags = {{"concurrency", "12"}, {"heartbeat_interval", "2s"}};

  auto c = LoadConfig(Options(file, env, flags));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->concurrency, 12);                         // flag > env > file
  EXPECT_EQ(c->log_level, "error");                      // env > file
  EXPECT_EQ(c->lease_ttl, milliseconds(40'000));         // file > default
  EXPECT_EQ(c->plugin_dir, "/from/file");                // file > default
  EXPECT_EQ(c->poll_interval, milliseconds(750));        // env > default
  EXPECT_EQ(c->heartbeat_interval, milliseconds(2000));  // flag > default
  EXPECT_EQ(c->drain_timeout, Config{}.drain_timeout);   // default

  auto no_flags = LoadConfig(Options(file, env));
  ASSERT_TRUE(no_flags.ok()) << no_flags.status().message();
  EXPECT_EQ(no_flags->concurrency, 8);

  auto file_only = LoadConfig(Options(file, FakeEnv{}));
  ASSERT_TRUE(file_only.ok()) << file_only.status().message();
  EXPECT_EQ(file_only->concurrency, 4);
  EXPECT_EQ(file_only->log_level, "warn");
}

TEST(ConfigPrecedenceTest, EveryKeyHasAnEnvironmentVariable) {
  FakeEnv env;
  env.vars["KAGZI_CONFIG"] = "";  // empty: ignored
  env.vars["KAGZI_DATABASE_URL"] = "postgresql://env@h/db";
  env.vars["KAGZI_PLUGIN_DIR"] = "/env/plugins";
  env.vars["KAGZI_CONCURRENCY"] = "2";
  env.vars["KAGZI_LEASE_TTL"] = "1m";
  env.vars["KAGZI_HEARTBEAT_INTERVAL"] = "20s";
  env.vars["KAGZI_POLL_INTERVAL"] = "100ms";
  env.vars["KAGZI_DRAIN_TIMEOUT"] = "7";
  env.vars["KAGZI_LOG_LEVEL"] = "trace";
  env.vars["KAGZI_MAX_PAYLOAD_BYTES"] = "4096";
  ScratchDir dir;
  std::string file = dir.Write("e.toml", "");
  auto c = LoadConfig(Options(file, env));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->database_url, "postgresql://env@h/db");
  EXPECT_EQ(c->plugin_dir, "/env/plugins");
  EXPECT_EQ(c->concurrency, 2);
  EXPECT_EQ(c->lease_ttl, milliseconds(60'000));
  EXPECT_EQ(c->heartbeat_interval, milliseconds(20'000));
  EXPECT_EQ(c->poll_interval, milliseconds(100));
  EXPECT_EQ(c->drain_timeout, milliseconds(7'000));
  EXPECT_EQ(c->log_level, "trace");
  EXPECT_EQ(c->max_payload_bytes, 4096);
}

TEST(ConfigPrecedenceTest, EveryKeyHasAFlag) {
  ScratchDir dir;
  std::string file = dir.Write("f.toml", "");
  std::map<std::string, std::string> flags = {{"database_url", "postgresql://flag@h/db"},
                                              {"plugin_dir", "/flag/plugins"},
                                              {"concurrency", "9"},
                                              {"lease_ttl", "2m"},
                                              {"heartbeat_interval", "10s"},
                                              {"poll_interval", "1s"},
                                              {"drain_timeout", "3s"},
                                              {"log_level", "off"},
                                              {"max_payload_bytes", "1024"}};
  auto c = LoadConfig(Options(file, FakeEnv{}, flags));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->database_url, "postgresql://flag@h/db");
  EXPECT_EQ(c->plugin_dir, "/flag/plugins");
  EXPECT_EQ(c->concurrency, 9);
  EXPECT_EQ(c->lease_ttl, milliseconds(120'000));
  EXPECT_EQ(c->heartbeat_interval, milliseconds(10'000));
  EXPECT_EQ(c->poll_interval, milliseconds(1'000));
  EXPECT_EQ(c->drain_timeout, milliseconds(3'000));
  EXPECT_EQ(c->log_level, "off");
  EXPECT_EQ(c->max_payload_bytes, 1024);
}

TEST(ConfigPrecedenceTest, BadEnvironmentValueNamesTheVariable) {
  ScratchDir dir;
  std::string file = dir.Write("ok.toml", "concurrency = 4\n");
  {
    FakeEnv env;
    env.vars["KAGZI_CONCURRENCY"] = "abc";
    auto c = LoadConfig(Options(file, env));
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(Contains(c.status().message(), "environment KAGZI_CONCURRENCY"));
    EXPECT_TRUE(Contains(c.status().message(), "concurrency"));
    EXPECT_TRUE(Contains(c.status().message(), "abc"));
  }
  {
    FakeEnv env;
    env.vars["KAGZI_LEASE_TTL"] = "10 parsecs";
    auto c = LoadConfig(Options(file, env));
    ASSERT_FALSE(c.ok());
    EXPECT_TRUE(Contains(c.status().message(), "environment KAGZI_LEASE_TTL"));
    EXPECT_TRUE(Contains(c.status().message(), "lease_ttl"));
    EXPECT_TRUE(Contains(c.status().message(), "10 parsecs"));
  }
  {
    FakeEnv env;
    env.vars["KAGZI_LOG_LEVEL"] = "loud";
    auto c = LoadConfig(Options(file, env));
    ASSERT_FALSE(c.ok());
    EXPECT_TRUE(Contains(c.status().message(), "environment KAGZI_LOG_LEVEL"));
    EXPECT_TRUE(Contains(c.status().message(), "loud"));
  }
}

TEST(ConfigPrecedenceTest, BadFlagValueNamesTheFlag) {
  ScratchDir dir;
  std::string file = dir.Write("ok.toml", "");
  {
    auto c = LoadConfig(Options(file, FakeEnv{}, {{"concurrency", "0"}}));
    ASSERT_FALSE(c.ok());
    EXPECT_TRUE(Contains(c.status().message(), "flag --concurrency"));
    EXPECT_TRUE(Contains(c.status().message(), "concurrency"));
  }
  {
    auto c = LoadConfig(Options(file, FakeEnv{}, {{"lease_ttl", "10 parsecs"}}));
    ASSERT_FALSE(c.ok());
    EXPECT_TRUE(Contains(c.status().message(), "flag --lease-ttl"));
    EXPECT_TRUE(Contains(c.status().message(), "10 parsecs"));
  }
  {
    auto c = LoadConfig(Options(file, FakeEnv{}, {{"log_level", "loud"}}));
    ASSERT_FALSE(c.ok());
    EXPECT_TRUE(Contains(c.status().message(), "flag --log-level"));
  }
  {
    auto c = LoadConfig(Options(file, FakeEnv{}, {{"bogus_key", "1"}}));
    ASSERT_FALSE(c.ok());
    EXPECT_TRUE(Contains(c.status().message(), "flag --bogus-key"));
    EXPECT_TRUE(Contains(c.status().message(), "\"bogus_key\""));
  }
}

TEST(ConfigPrecedenceTest, HigherSourceDoesNotHideABadLowerSource) {
  // A bad file value is an error even if a flag would override it: the file
  // is wrong and the operator must hear about it.
  ScratchDir dir;
  std::string file = dir.Write("bad.toml", "concurrency = 0\n");
  auto c = LoadConfig(Options(file, FakeEnv{}, {{"concurrency", "4"}}));
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status().message(), file + ":1"));
}

TEST(ConfigValidateTest, HeartbeatMustBeShorterThanLeaseTtl) {
  ScratchDir dir;
  for (const char* text : {"lease_ttl = \"10s\"\nheartbeat_interval = \"10s\"\n",
                           "lease_ttl = \"10s\"\nheartbeat_interval = \"1m\"\n"}) {
    std::string file = dir.Write("hb.toml", text);
    auto c = LoadConfig(Options(file, FakeEnv{}));
    ASSERT_FALSE(c.ok()) << text;
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(Contains(c.status().message(), "heartbeat_interval"));
    EXPECT_TRUE(Contains(c.status().message(), "lease_ttl"));
  }
  // The check applies to the merged result: a flag can fix a file.
  std::string file = dir.Write("hb.toml", "lease_ttl = \"10s\"\nheartbeat_interval = \"10s\"\n");
  auto fixed = LoadConfig(Options(file, FakeEnv{}, {{"heartbeat_interval", "3s"}}));
  ASSERT_TRUE(fixed.ok()) << fixed.status().message();
  EXPECT_EQ(fixed->heartbeat_interval, milliseconds(3'000));

  Config c;
  c.lease_ttl = milliseconds(1000);
  c.heartbeat_interval = milliseconds(999);
  EXPECT_TRUE(ValidateConfig(c).ok());
}

TEST(ConfigApplyValueTest, OriginAndKeyInEveryError) {
  Config c;
  Status st = ApplyValue("concurrency", "abc", "somewhere", &c);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(Contains(st.message(), "somewhere"));
  EXPECT_TRUE(Contains(st.message(), "concurrency"));
  EXPECT_EQ(c.concurrency, Config{}.concurrency);  // unchanged

  st = ApplyValue("no_such_key", "1", "somewhere", &c);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(Contains(st.message(), "\"no_such_key\""));
}

TEST(RedactDatabaseUrlTest, HidesPasswordInUriUserInfo) {
  std::string r = RedactDatabaseUrl("postgresql://u:secret@h/db");
  EXPECT_TRUE(Lacks(r, "secret"));
  EXPECT_EQ(r, "postgresql://u:***@h/db");
  r = RedactDatabaseUrl("postgres://kagzi:s3cr3t@db.example:5432/kagzi?sslmode=require");
  EXPECT_TRUE(Lacks(r, "s3cr3t"));
  EXPECT_TRUE(Contains(r, "db.example:5432/kagzi?sslmode=require"));
  r = RedactDatabaseUrl("postgresql://u:secret@h");
  EXPECT_TRUE(Lacks(r, "secret"));
}

TEST(RedactDatabaseUrlTest, HidesPasswordInQueryParameter) {
  std::string r = RedactDatabaseUrl("postgresql://u@h/db?password=secret&sslmode=require");
  EXPECT_TRUE(Lacks(r, "secret"));
  EXPECT_TRUE(Contains(r, "sslmode=require"));
  EXPECT_TRUE(Contains(r, "password=***"));
  r = RedactDatabaseUrl("postgresql:///db?host=/tmp&password=secret");
  EXPECT_TRUE(Lacks(r, "secret"));
  EXPECT_TRUE(Contains(r, "host=/tmp"));
}

TEST(RedactDatabaseUrlTest, HidesPasswordInConninfo) {
  std::string r = RedactDatabaseUrl("host=h user=u password=secret dbname=db");
  EXPECT_TRUE(Lacks(r, "secret"));
  EXPECT_TRUE(Contains(r, "dbname=db"));
  EXPECT_TRUE(Contains(r, "user=u"));

  r = RedactDatabaseUrl("host=h password='two words' dbname=db");
  EXPECT_TRUE(Lacks(r, "two"));
  EXPECT_TRUE(Lacks(r, "words"));
  EXPECT_TRUE(Contains(r, "dbname=db"));

  r = RedactDatabaseUrl(R"(host=h password='it\'s secret' dbname=db)");
  EXPECT_TRUE(Lacks(r, "secret"));
  EXPECT_TRUE(Contains(r, "dbname=db"));

  r = RedactDatabaseUrl("password=secret");
  EXPECT_TRUE(Lacks(r, "secret"));
}

TEST(RedactDatabaseUrlTest, HidesPasswordWithSpacesAroundEquals) {
  // libpq accepts whitespace around '=' in conninfo strings.
  std::string r = RedactDatabaseUrl("host=h password = secret dbname=db");
  EXPECT_TRUE(Lacks(r, "secret"));
  EXPECT_TRUE(Contains(r, "dbname=db"));
  r = RedactDatabaseUrl("host=h password= 'quoted secret' dbname=db");
  EXPECT_TRUE(Lacks(r, "secret"));
  EXPECT_TRUE(Contains(r, "dbname=db"));
}

// Shapes the config fuzzer (tests/fuzz/fuzz_config.cc) found leaking.
TEST(RedactDatabaseUrlTest, ReadsTheTextAsLibpqDoes) {
  // A conninfo string is not a URI because a value holds "://".
  std::string r = RedactDatabaseUrl("host=h sslrootcert=x://y password = secret");
  EXPECT_TRUE(Lacks(r, "secret")) << r;
  EXPECT_TRUE(Contains(r, "sslrootcert=x://y")) << r;
  // A '#' in a URI is part of the value, not a fragment.
  r = RedactDatabaseUrl("postgresql://h/db?password=ab#secret&sslmode=require");
  EXPECT_TRUE(Lacks(r, "secret")) << r;
  EXPECT_TRUE(Contains(r, "sslmode=require")) << r;
  // "password" inside another value is not a keyword; the real one is hidden.
  r = RedactDatabaseUrl("application_name=password=x password=secret");
  EXPECT_TRUE(Lacks(r, "secret")) << r;
  EXPECT_TRUE(Contains(r, "application_name=password=x")) << r;
  // Query keywords are percent-decoded by libpq.
  r = RedactDatabaseUrl("postgresql://h/db?pass%77ord=secret");
  EXPECT_TRUE(Lacks(r, "secret")) << r;
  r = RedactDatabaseUrl("postgresql://h/db?%73slpassword=secret");
  EXPECT_TRUE(Lacks(r, "secret")) << r;
}

TEST(RedactDatabaseUrlTest, HidesLikelyPasswordsInTextLibpqRefuses) {
  // An unencoded '/' in the password: libpq sees no user part and refuses
  // the port, and the error would print the URL.
  std::string r = RedactDatabaseUrl("postgresql://u:pa/secret@h/db");
  EXPECT_TRUE(Lacks(r, "secret")) << r;
  EXPECT_TRUE(Contains(r, "postgresql://u:***@h/db")) << r;
  // Mistyped keywords are refused by libpq, but their values hidden.
  for (const char* url : {"host=h Password=secret", "host=h passwd=secret", "host=h pwd=secret",
                          "postgresql://h/db?PASSWORD=secret", "host=h bogus password=secret"}) {
    r = RedactDatabaseUrl(url);
    EXPECT_TRUE(Lacks(r, "secret")) << url << " -> " << r;
  }
  // A keyword without '=' hides the rest, which may be a password.
  r = RedactDatabaseUrl("host=h secret");
  EXPECT_TRUE(Lacks(r, "secret")) << r;
  // An unterminated quote too.
  r = RedactDatabaseUrl("host=h password='secret");
  EXPECT_TRUE(Lacks(r, "secret")) << r;
}

TEST(RedactDatabaseUrlTest, LeavesPasswordlessUrlsUnchanged) {
  for (const char* url :
       {"postgresql:///kagzi", "postgresql://u@h/db", "postgresql://h:5432/db",
        "postgresql://u@h:5432/db?sslmode=require", "postgresql://postgres@/db?host=/tmp&port=5",
        "postgresql://u@[::1]:5432/db", "host=/tmp port=5432 dbname=kagzi user=kagzi", ""}) {
    EXPECT_EQ(RedactDatabaseUrl(url), url);
  }
}

TEST(DescribeConfigTest, NeverContainsThePassword) {
  for (const char* url :
       {"postgresql://u:hunter2@h/db", "postgresql://u@h/db?password=hunter2",
        "host=h password=hunter2 dbname=db", "host=h password='hunter2' dbname=db"}) {
    Config c;
    c.database_url = url;
    std::string text = DescribeConfig(c);
    EXPECT_TRUE(Lacks(text, "hunter2")) << url;
    EXPECT_TRUE(Contains(text, "database_url")) << url;
  }
}

TEST(DescribeConfigTest, ListsEveryKeyAndIsValidToml) {
  ScratchDir dir;
  std::string file =
      dir.Write("d.toml",
                "concurrency = 6\nlease_ttl = \"90s\"\nworker_cpu_affinity = \"auto\"\n"
                "executor = \"fibers\"\nfiber_threads = 5\n");
  auto c = LoadConfig(Options(file, FakeEnv{}));
  ASSERT_TRUE(c.ok()) << c.status().message();
  std::string text = DescribeConfig(*c);
  for (auto key : ConfigKeys()) EXPECT_TRUE(Contains(text, std::string(key) + " = ")) << key;
  EXPECT_TRUE(Contains(text, file));
  // What --check-config prints loads back to the same values.
  Config back;
  Status st = ApplyToml(text, "described", &back);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(back.concurrency, 6);
  EXPECT_EQ(back.lease_ttl, milliseconds(90'000));
  EXPECT_EQ(back.worker_cpu_affinity, Config::CpuAffinity::kAuto);
  EXPECT_EQ(back.executor, Config::Executor::kFibers);
  EXPECT_EQ(back.fiber_threads, 5);
  EXPECT_EQ(back.heartbeat_interval, c->heartbeat_interval);
  EXPECT_EQ(back.database_url, c->database_url);
}

TEST(DescribeConfigTest, QuotesValuesSoTheOutputParses) {
  Config c;
  c.plugin_dir = "/opt/\"odd\" dir\\plugins";
  c.database_url = "host=/tmp dbname=\"kagzi\"";
  std::string text = DescribeConfig(c);
  Config back;
  Status st = ApplyToml(text, "described", &back);
  ASSERT_TRUE(st.ok()) << st.message() << "\n" << text;
  EXPECT_EQ(back.plugin_dir, c.plugin_dir);
  EXPECT_EQ(back.database_url, c.database_url);
}

// --- database_password_file and libpq options ------------------------------

// A file holding `text` with mode `mode`.
std::string WriteSecret(const ScratchDir& dir, const std::string& name, const std::string& text,
                        mode_t mode) {
  std::string file = dir.Write(name, text);
  EXPECT_EQ(chmod(file.c_str(), mode), 0);
  return file;
}

// libpq's reading of a URL or conninfo string: keyword -> value, set ones only.
std::map<std::string, std::string> LibpqOptions(const std::string& url) {
  std::map<std::string, std::string> out;
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(url.c_str(), &err);
  if (err != nullptr) {
    ADD_FAILURE() << "libpq cannot parse \"" << url << "\": " << err;
    PQfreemem(err);
  }
  for (PQconninfoOption* o = opts; o != nullptr && o->keyword != nullptr; ++o) {
    if (o->val != nullptr) out[o->keyword] = o->val;
  }
  PQconninfoFree(opts);
  return out;
}

TEST(PasswordFileTest, ReadsTheFileLessItsTrailingNewline) {
  ScratchDir dir;
  for (const auto& [text, want] : std::vector<std::pair<std::string, std::string>>{
           {"s3cret\n", "s3cret"},
           {"s3cret", "s3cret"},
           {"s3cret\r\n", "s3cret"},
           {"two words & 'quotes' \\ %41 #x\n", "two words & 'quotes' \\ %41 #x"}}) {
    for (mode_t mode : {0600, 0400}) {
      std::string file = WriteSecret(dir, "pw", text, mode);
      auto pw = ReadDatabasePasswordFile(file);
      ASSERT_TRUE(pw.ok()) << pw.status().message();
      EXPECT_EQ(*pw, want);
      std::filesystem::remove(file);
    }
  }
}

TEST(PasswordFileTest, RefusesAFileGroupOrOthersMayRead) {
  ScratchDir dir;
  for (mode_t mode : {0640, 0604, 0644, 0660, 0620, 0602, 0666}) {
    std::string file = WriteSecret(dir, "pw", "hunter2\n", mode);
    auto pw = ReadDatabasePasswordFile(file);
    ASSERT_FALSE(pw.ok()) << std::oct << mode;
    const std::string& msg = pw.status().message();
    EXPECT_TRUE(Contains(msg, "database_password_file"));
    EXPECT_TRUE(Contains(msg, file));
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(mode));
    EXPECT_TRUE(Contains(msg, std::string("mode ") + octal));
    EXPECT_TRUE(Contains(msg, "chmod 0600"));
    EXPECT_TRUE(Lacks(msg, "hunter2"));
    std::filesystem::remove(file);
  }
}

TEST(PasswordFileTest, RefusesMissingEmptyMultiLineAndNonRegularFiles) {
  ScratchDir dir;
  struct Case {
    std::string path;
    std::string error;
  };
  std::vector<Case> cases = {
      {dir.Path("missing"), "cannot be read"},
      {WriteSecret(dir, "empty", "", 0600), "is empty"},
      {WriteSecret(dir, "newline", "\n", 0600), "is empty"},
      {WriteSecret(dir, "two-lines", "hunter2\nhunter3\n", 0600), "line break"},
      {WriteSecret(dir, "nul", std::string("hunter2\0x", 9), 0600), "NUL"},
      {dir.path(), "not a regular file"},
  };
  for (const auto& c : cases) {
    auto pw = ReadDatabasePasswordFile(c.path);
    ASSERT_FALSE(pw.ok()) << c.path;
    EXPECT_TRUE(Contains(pw.status().message(), "database_password_file \"" + c.path + "\""));
    EXPECT_TRUE(Contains(pw.status().message(), c.error));
    EXPECT_TRUE(Lacks(pw.status().message(), "hunter"));
  }
}

TEST(PasswordFileTest, LoadConfigGivesThePasswordToLibpqAndNeverPrintsIt) {
  ScratchDir dir;
  std::string secret = WriteSecret(dir, "pw", "hunter2 'x'\n", 0600);
  // From the file, the environment and a flag.
  std::string toml = dir.Write("k.toml",
                               "database_url = \"postgresql://kagzi@db.example/kagzi\"\n"
                               "database_password_file = \"" +
                                   secret + "\"\n");
  std::vector<ConfigLoadOptions> sources = {
      Options(toml, FakeEnv{}),
      Options(std::nullopt,
              FakeEnv{{{"KAGZI_CONFIG", dir.Write("e.toml", "")},
                       {"KAGZI_DATABASE_URL", "host=db.example user=kagzi dbname=kagzi"},
                       {"KAGZI_DATABASE_PASSWORD_FILE", secret}}}),
      Options(dir.Write("f.toml", ""), FakeEnv{},
              {{"database_url", "kagzi"}, {"database_password_file", secret}}),
  };
  for (const auto& options : sources) {
    auto c = LoadConfig(options);
    ASSERT_TRUE(c.ok()) << c.status().message();
    EXPECT_EQ(c->database_password_file, secret);
    EXPECT_EQ(LibpqOptions(c->database_url)["password"], "hunter2 'x'") << c->database_url;
    EXPECT_EQ(LibpqOptions(c->database_url)["dbname"], "kagzi");
    std::string described = DescribeConfig(*c);
    EXPECT_TRUE(Lacks(described, "hunter2"));
    EXPECT_TRUE(Contains(described, "database_password_file = \"" + secret + "\""));
    EXPECT_TRUE(Lacks(RedactDatabaseUrl(c->database_url), "hunter2"));
  }
  // An empty value (e.g. KAGZI_DATABASE_PASSWORD_FILE= for kagzictl run by
  // another user) means no file.
  auto c = LoadConfig(Options(toml, FakeEnv{{{"KAGZI_DATABASE_PASSWORD_FILE", ""}}}));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->database_url, "postgresql://kagzi@db.example/kagzi");
  EXPECT_EQ(Config{}.database_password_file, "");
}

TEST(PasswordFileTest, LoadConfigRefusesAnOpenFileOrASecondPassword) {
  ScratchDir dir;
  std::string open_file = WriteSecret(dir, "open", "hunter2\n", 0644);
  auto c = LoadConfig(
      Options(dir.Write("a.toml", ""), FakeEnv{}, {{"database_password_file", open_file}}));
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status().message(), "database_password_file"));
  EXPECT_TRUE(Contains(c.status().message(), "mode 0644"));

  std::string secret = WriteSecret(dir, "pw", "hunter2\n", 0600);
  for (const char* url : {"postgresql://u:other@h/db", "postgresql://u@h/db?password=other",
                          "host=h password=other"}) {
    c = LoadConfig(Options(dir.Write("b.toml", ""), FakeEnv{},
                           {{"database_url", url}, {"database_password_file", secret}}));
    ASSERT_FALSE(c.ok()) << url;
    EXPECT_TRUE(Contains(c.status().message(), "holds a password too")) << url;
    EXPECT_TRUE(Lacks(c.status().message(), "other")) << c.status().message();
    EXPECT_TRUE(Lacks(c.status().message(), "hunter2"));
  }
}

TEST(PasswordFileTest, DatabaseUrlWithPasswordKeepsEveryOtherOption) {
  const std::vector<std::string> passwords = {"plain",       "with space",       "q'uo\"te",
                                              "back\\slash", "%41&x=1#frag?/@:", "caf\xc3\xa9"};
  const std::vector<std::string> urls = {
      "postgresql:///kagzi",
      "postgres://kagzi@db.example:5433/kagzi",
      "postgresql://kagzi@db.example/kagzi?sslmode=verify-full&sslrootcert=/etc/kagzi/root.crt",
      "postgresql://kagzi@[::1]:5432/kagzi?connect_timeout=5",
      "host=/run/postgresql dbname=kagzi",
      "host=db.example user=kagzi dbname='my db' sslmode=require",
      "kagzi",
  };
  for (const auto& url : urls) {
    for (const auto& password : passwords) {
      auto with = DatabaseUrlWithPassword(url, password);
      ASSERT_TRUE(with.ok()) << url << ": " << with.status().message();
      auto before = LibpqOptions(url == "kagzi" ? "dbname=kagzi" : url);
      auto after = LibpqOptions(*with);
      EXPECT_EQ(after["password"], password) << *with;
      after.erase("password");
      EXPECT_EQ(after, before) << url << " -> " << *with;
      EXPECT_TRUE(Lacks(RedactDatabaseUrl(*with), password)) << *with;
    }
  }
  auto bad = DatabaseUrlWithPassword("host=h dbname='unterminated", "x");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(Contains(bad.status().message(), "database_url"));
}

// TLS: libpq's sslmode, sslrootcert, sslcert and sslkey (and their
// neighbours) in database_url reach libpq as written, whether the URL comes
// from the file, the environment or a flag, is redacted for a log line or
// gets a password from database_password_file.
TEST(TlsOptionsTest, PassThroughToLibpqUnchanged) {
  const std::map<std::string, std::string> tls = {{"sslmode", "verify-full"},
                                                  {"sslrootcert", "/etc/kagzi/tls/root.crt"},
                                                  {"sslcert", "/etc/kagzi/tls/kagzi.crt"},
                                                  {"sslkey", "/etc/kagzi/tls/kagzi.key"}};
  const std::vector<std::string> urls = {
      "postgresql://kagzi@db.example:5432/kagzi?sslmode=verify-full"
      "&sslrootcert=/etc/kagzi/tls/root.crt&sslcert=/etc/kagzi/tls/kagzi.crt"
      "&sslkey=/etc/kagzi/tls/kagzi.key",
      "host=db.example port=5432 user=kagzi dbname=kagzi sslmode=verify-full "
      "sslrootcert=/etc/kagzi/tls/root.crt sslcert=/etc/kagzi/tls/kagzi.crt "
      "sslkey=/etc/kagzi/tls/kagzi.key",
  };
  ScratchDir dir;
  std::string secret = WriteSecret(dir, "pw", "hunter2\n", 0600);
  for (const auto& url : urls) {
    auto options = LibpqOptions(url);
    for (const auto& [key, value] : tls) EXPECT_EQ(options[key], value) << key;

    std::string toml = dir.Write("t.toml", "database_url = \"" + url + "\"\n");
    for (const auto& load :
         {Options(toml, FakeEnv{}),
          Options(dir.Write("e.toml", ""), FakeEnv{{{"KAGZI_DATABASE_URL", url}}}),
          Options(dir.Write("f.toml", ""), FakeEnv{}, {{"database_url", url}})}) {
      auto c = LoadConfig(load);
      ASSERT_TRUE(c.ok()) << c.status().message();
      EXPECT_EQ(c->database_url, url);
    }
    EXPECT_EQ(RedactDatabaseUrl(url), url);

    auto c = LoadConfig(Options(toml, FakeEnv{}, {{"database_password_file", secret}}));
    ASSERT_TRUE(c.ok()) << c.status().message();
    EXPECT_TRUE(c->database_url.starts_with(url)) << c->database_url;
    auto with = LibpqOptions(c->database_url);
    for (const auto& [key, value] : tls) EXPECT_EQ(with[key], value) << key;
    EXPECT_EQ(with["password"], "hunter2");
    std::string redacted = RedactDatabaseUrl(c->database_url);
    for (const auto& [key, value] : tls) EXPECT_TRUE(Contains(redacted, key + "=" + value));
  }
}

// libpq's parse errors quote what they stumbled on, which can be part of a
// password; what kagzid and kagzictl show of them never holds it.
TEST(RedactLibpqErrorTest, ParseErrorsNeverShowPasswordText) {
  for (const char* url :
       {"postgresql://u:se%zzcret@/db?host=/nonexistent", "host=/nonexistent password=foo secret",
        "postgresql://u@/db?host=/nonexistent&password=se%zzcret",
        "postgresql://u:p%00secret@/db?host=/nonexistent"}) {
    const char* keys[] = {"dbname", nullptr};
    const char* values[] = {url, nullptr};
    PGconn* conn = PQconnectdbParams(keys, values, 1);
    std::string raw = PQerrorMessage(conn);
    PQfinish(conn);
    ASSERT_TRUE(Contains(raw, "cret")) << "libpq no longer quotes the text; adapt the test";
    std::string shown = RedactLibpqError(url, raw);
    EXPECT_TRUE(Lacks(shown, "cret")) << url;
    EXPECT_TRUE(Contains(shown, "\"***\"")) << shown;
  }
  // Without a password, or once the URL parses, libpq's message is kept.
  std::string msg = "invalid URI query parameter: \"bogus\"";
  EXPECT_EQ(RedactLibpqError("postgresql://u@/db?bogus=1", msg), msg);
  msg = "connection to server on socket \"/x/.s.PGSQL.5432\" failed";
  EXPECT_EQ(RedactLibpqError("postgresql://u:secret@/db?host=/x", msg), msg);
}

}  // namespace
}  // namespace kagzi
