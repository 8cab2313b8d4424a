// Config loading: defaults < TOML file < KAGZI_* environment < flags.
// Every key has one setter that parses text, so the file, environment and
// flags share one validation path and one error format.
#include "kagzi/core/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include <libpq-fe.h>
#include <toml++/toml.h>

namespace kagzi {
namespace {

using std::chrono::milliseconds;

Result<std::int64_t> ParseInt(std::string_view text) {
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty()) {
    return Status::InvalidArgument("\"{}\" is not an integer", text);
  }
  return v;
}

Status SetDuration(std::string_view value, milliseconds* out) {
  auto d = ParseDuration(value);
  if (!d.ok()) return d.status();
  if (d->count() <= 0)
    return Status::InvalidArgument("must be greater than zero, got \"{}\"", value);
  *out = *d;
  return Status::Ok();
}

struct KeySpec {
  std::string_view key;
  Status (*set)(std::string_view value, Config* config);
};

Result<double> ParseDouble(std::string_view text) {
  double v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty()) {
    return Status::InvalidArgument("\"{}\" is not a number", text);
  }
  return v;
}

Status SetIntInRange(std::string_view value, int lo, int hi, int* out) {
  auto n = ParseInt(value);
  if (!n.ok()) return n.status();
  if (*n < lo || *n > hi) return Status::InvalidArgument("must be {}..{}, got {}", lo, hi, *n);
  *out = static_cast<int>(*n);
  return Status::Ok();
}

Status SetDoubleInRange(std::string_view value, double lo, double hi, double* out) {
  auto d = ParseDouble(value);
  if (!d.ok()) return d.status();
  if (!(*d >= lo && *d <= hi)) return Status::InvalidArgument("must be {}..{}, got {}", lo, hi, *d);
  *out = *d;
  return Status::Ok();
}

const std::vector<KeySpec>& Specs() {
  static const std::vector<KeySpec> kSpecs = {
      {"database_url",
       [](std::string_view v, Config* c) {
         if (v.empty()) return Status::InvalidArgument("must not be empty");
         c->database_url = std::string(v);
         return Status::Ok();
       }},
      {"database_password_file",
       [](std::string_view v, Config* c) {
         c->database_password_file = std::string(v);  // empty: no file
         return Status::Ok();
       }},
      {"plugin_dir",
       [](std::string_view v, Config* c) {
         if (v.empty()) return Status::InvalidArgument("must not be empty");
         c->plugin_dir = std::string(v);
         return Status::Ok();
       }},
      {"concurrency",
       [](std::string_view v, Config* c) {
         auto n = ParseInt(v);
         if (!n.ok()) return n.status();
         if (*n < 1 || *n > 1024) return Status::InvalidArgument("must be 1..1024, got {}", *n);
         c->concurrency = static_cast<int>(*n);
         return Status::Ok();
       }},
      {"lease_ttl", [](std::string_view v, Config* c) { return SetDuration(v, &c->lease_ttl); }},
      {"heartbeat_interval",
       [](std::string_view v, Config* c) { return SetDuration(v, &c->heartbeat_interval); }},
      {"poll_interval",
       [](std::string_view v, Config* c) { return SetDuration(v, &c->poll_interval); }},
      {"drain_timeout",
       [](std::string_view v, Config* c) { return SetDuration(v, &c->drain_timeout); }},
      {"log_level",
       [](std::string_view v, Config* c) {
         static const std::vector<std::string_view> kLevels = {"trace", "debug",    "info", "warn",
                                                               "error", "critical", "off"};
         if (std::find(kLevels.begin(), kLevels.end(), v) == kLevels.end()) {
           return Status::InvalidArgument(
               "\"{}\" is not one of trace, debug, info, warn, error, critical, off", v);
         }
         c->log_level = std::string(v);
         return Status::Ok();
       }},
      {"max_payload_bytes",
       [](std::string_view v, Config* c) {
         auto n = ParseInt(v);
         if (!n.ok()) return n.status();
         if (*n < 1024 || *n > (std::int64_t{1} << 30)) {
           return Status::InvalidArgument("must be 1024..1073741824, got {}", *n);
         }
         c->max_payload_bytes = *n;
         return Status::Ok();
       }},
      {"retry_max_attempts",
       [](std::string_view v, Config* c) {
         return SetIntInRange(v, 1, 1000, &c->retry_max_attempts);
       }},
      {"retry_initial_interval",
       [](std::string_view v, Config* c) { return SetDuration(v, &c->retry_initial_interval); }},
      {"retry_max_interval",
       [](std::string_view v, Config* c) { return SetDuration(v, &c->retry_max_interval); }},
      {"retry_multiplier",
       [](std::string_view v, Config* c) {
         return SetDoubleInRange(v, 1.0, 100.0, &c->retry_multiplier);
       }},
      {"retry_jitter", [](std::string_view v,
                          Config* c) { return SetDoubleInRange(v, 0.0, 1.0, &c->retry_jitter); }},
      {"parallel_limit",
       [](std::string_view v, Config* c) { return SetIntInRange(v, 1, 256, &c->parallel_limit); }},
      {"workers",
       [](std::string_view v, Config* c) { return SetIntInRange(v, 1, 64, &c->workers); }},
      {"max_crashes",
       [](std::string_view v, Config* c) { return SetIntInRange(v, 1, 100, &c->max_crashes); }},
      {"step_timeout",
       [](std::string_view v, Config* c) { return SetDuration(v, &c->step_timeout); }},
      {"worker_cpu_affinity",
       [](std::string_view v, Config* c) {
         if (v == "off") {
           c->worker_cpu_affinity = Config::CpuAffinity::kOff;
         } else if (v == "auto") {
           c->worker_cpu_affinity = Config::CpuAffinity::kAuto;
         } else {
           return Status::InvalidArgument("\"{}\" is not one of off, auto", v);
         }
         return Status::Ok();
       }},
      {"executor",
       [](std::string_view v, Config* c) {
         if (v == "threads") {
           c->executor = Config::Executor::kThreads;
         } else if (v == "fibers") {
           c->executor = Config::Executor::kFibers;
         } else {
           return Status::InvalidArgument("\"{}\" is not one of threads, fibers", v);
         }
         return Status::Ok();
       }},
      {"fiber_threads",
       [](std::string_view v, Config* c) { return SetIntInRange(v, 1, 64, &c->fiber_threads); }},
  };
  return kSpecs;
}

const KeySpec* FindSpec(std::string_view key) {
  for (const auto& s : Specs()) {
    if (s.key == key) return &s;
  }
  return nullptr;
}

std::optional<std::string> RealGetenv(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

}  // namespace

const std::vector<std::string_view>& ConfigKeys() {
  static const std::vector<std::string_view> kKeys = [] {
    std::vector<std::string_view> keys;
    for (const auto& s : Specs()) keys.push_back(s.key);
    return keys;
  }();
  return kKeys;
}

std::string EnvVarForKey(std::string_view key) {
  std::string name = "KAGZI_";
  for (char ch : key) name += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return name;
}

Result<milliseconds> ParseDuration(std::string_view text) {
  std::string_view t = text;
  while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  std::size_t digits = 0;
  while (digits < t.size() && std::isdigit(static_cast<unsigned char>(t[digits]))) ++digits;
  if (digits == 0) {
    return Status::InvalidArgument("\"{}\" is not a duration (use e.g. 500ms, 30s, 5m, 1h)", text);
  }
  auto n = ParseInt(t.substr(0, digits));
  if (!n.ok()) return Status::InvalidArgument("\"{}\" is not a duration", text);
  std::string_view unit = t.substr(digits);
  std::int64_t ms_per_unit = 0;
  if (unit.empty() || unit == "s") {
    ms_per_unit = 1000;
  } else if (unit == "ms") {
    ms_per_unit = 1;
  } else if (unit == "m" || unit == "min") {
    ms_per_unit = 60'000;
  } else if (unit == "h") {
    ms_per_unit = 3'600'000;
  } else {
    return Status::InvalidArgument("\"{}\" has an unknown unit \"{}\" (use ms, s, m or h)", text,
                                   unit);
  }
  // Ten years is far beyond any sensible timeout and keeps every interval
  // PostgreSQL computes from it in range.
  constexpr std::int64_t kMaxMs = std::int64_t{10} * 365 * 24 * 3'600'000;
  if (*n > kMaxMs / ms_per_unit) {
    return Status::InvalidArgument("\"{}\" is too large (the limit is ten years)", text);
  }
  return milliseconds(*n * ms_per_unit);
}

std::string FormatDuration(milliseconds d) {
  auto ms = d.count();
  if (ms % 3'600'000 == 0 && ms != 0) return fmt::format("{}h", ms / 3'600'000);
  if (ms % 60'000 == 0 && ms != 0) return fmt::format("{}m", ms / 60'000);
  if (ms % 1000 == 0) return fmt::format("{}s", ms / 1000);
  return fmt::format("{}ms", ms);
}

Status ApplyValue(std::string_view key, std::string_view value, std::string_view origin,
                  Config* config) {
  const KeySpec* spec = FindSpec(key);
  if (spec == nullptr) return Status::InvalidArgument("{}: unknown key \"{}\"", origin, key);
  Status st = spec->set(value, config);
  if (!st.ok()) return Status::InvalidArgument("{}: {}: {}", origin, key, st.message());
  return Status::Ok();
}

Status ApplyToml(std::string_view toml_text, std::string_view origin, Config* config) {
  toml::table table;
  try {
    table = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    return Status::InvalidArgument("{}:{}:{}: {}", origin, where.line, where.column,
                                   e.description());
  }
  for (const auto& [key, node] : table) {
    std::string k(key.str());
    std::string where = fmt::format("{}:{}", origin, node.source().begin.line);
    if (FindSpec(k) == nullptr) {
      return Status::InvalidArgument("{}: unknown key \"{}\" (known keys: {})", where, k,
                                     fmt::join(ConfigKeys(), ", "));
    }
    std::string text;
    if (auto s = node.value<std::string>(); s && node.is_string()) {
      text = *s;
    } else if (node.is_floating_point()) {
      text = fmt::format("{}", *node.value<double>());
    } else if (node.is_integer()) {
      text = std::to_string(*node.value<std::int64_t>());
    } else {
      return Status::InvalidArgument("{}: {}: expected a string or an integer", where, k);
    }
    KAGZI_RETURN_IF_ERROR(ApplyValue(k, text, where, config));
  }
  return Status::Ok();
}

Status ValidateConfig(const Config& config) {
  if (config.heartbeat_interval >= config.lease_ttl) {
    return Status::InvalidArgument(
        "heartbeat_interval ({}) must be shorter than lease_ttl ({}), or leases expire between "
        "heartbeats",
        FormatDuration(config.heartbeat_interval), FormatDuration(config.lease_ttl));
  }
  if (config.retry_max_interval < config.retry_initial_interval) {
    return Status::InvalidArgument(
        "retry_max_interval ({}) must not be shorter than retry_initial_interval ({})",
        FormatDuration(config.retry_max_interval), FormatDuration(config.retry_initial_interval));
  }
  return Status::Ok();
}

Result<Config> LoadConfig(const ConfigLoadOptions& options) {
  auto getenv = options.getenv ? options.getenv : RealGetenv;
  Config config;

  std::optional<std::string> file = options.explicit_file;
  bool required = file.has_value();
  if (!file) {
    if (auto env = getenv("KAGZI_CONFIG"); env && !env->empty()) {
      file = *env;
      required = true;
    } else {
      file = std::string(kDefaultConfigPath);
    }
  }
  std::error_code ec;
  if (std::filesystem::exists(*file, ec)) {
    if (std::filesystem::is_directory(*file, ec)) {
      return Status::InvalidArgument("config file \"{}\" is a directory", *file);
    }
    std::ifstream in(*file);
    if (!in) return Status::InvalidArgument("config file \"{}\": cannot be read", *file);
    std::stringstream buffer;
    buffer << in.rdbuf();
    KAGZI_RETURN_IF_ERROR(ApplyToml(buffer.str(), *file, &config));
    config.source_file = *file;
  } else if (required) {
    return Status::InvalidArgument("config file \"{}\" does not exist", *file);
  }

  for (const auto& key : ConfigKeys()) {
    std::string var = EnvVarForKey(key);
    if (auto v = getenv(var)) {
      KAGZI_RETURN_IF_ERROR(ApplyValue(key, *v, fmt::format("environment {}", var), &config));
    }
  }
  for (const auto& [key, value] : options.flag_values) {
    std::string flag = "--" + key;
    std::replace(flag.begin(), flag.end(), '_', '-');
    KAGZI_RETURN_IF_ERROR(ApplyValue(key, value, fmt::format("flag {}", flag), &config));
  }
  if (!config.database_password_file.empty()) {
    auto password = ReadDatabasePasswordFile(config.database_password_file);
    if (!password.ok()) return password.status();
    auto url = DatabaseUrlWithPassword(config.database_url, *password);
    if (!url.ok()) return url.status();
    config.database_url = std::move(url).value();
  }
  KAGZI_RETURN_IF_ERROR(ValidateConfig(config));
  return config;
}

std::string RedactLibpqError(std::string_view url, std::string_view message) {
  std::string out(message);
  if (RedactDatabaseUrl(url) == url) return out;  // no password to give away
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(std::string(url).c_str(), &err);
  PQconninfoFree(opts);
  if (err == nullptr) return out;  // it parses: libpq quotes no part of it
  PQfreemem(err);
  auto first = out.find('"');
  auto last = out.rfind('"');
  if (first != std::string::npos && last > first) out.replace(first, last - first + 1, "\"***\"");
  return out;
}

Result<std::string> ReadDatabasePasswordFile(const std::string& path) {
  // One descriptor for the checks and the read: the file checked is the one read.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return Status::InvalidArgument("database_password_file \"{}\": cannot be read: {}", path,
                                   std::strerror(errno));
  }
  std::unique_ptr<int, void (*)(int*)> closer(&fd, [](int* f) { ::close(*f); });
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return Status::InvalidArgument("database_password_file \"{}\": not a regular file", path);
  }
  const unsigned mode = st.st_mode & 07777;
  if ((mode & 077) != 0) {
    return Status::InvalidArgument(
        "database_password_file \"{}\": mode {:04o} lets group or others read or write it; "
        "make it readable by kagzid's user alone (chmod 0600 or 0400)",
        path, mode);
  }
  constexpr std::size_t kMaxBytes = 64 * 1024;
  std::string text;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return Status::InvalidArgument("database_password_file \"{}\": cannot be read: {}", path,
                                     std::strerror(errno));
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > kMaxBytes) {
      return Status::InvalidArgument("database_password_file \"{}\": larger than {} bytes", path,
                                     kMaxBytes);
    }
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  if (text.empty()) {
    return Status::InvalidArgument("database_password_file \"{}\": is empty", path);
  }
  if (text.find_first_of(std::string_view("\n\r\0", 3)) != std::string::npos) {
    return Status::InvalidArgument(
        "database_password_file \"{}\": holds a line break or NUL; the file must hold the "
        "password alone (one line)",
        path);
  }
  return text;
}

Result<std::string> DatabaseUrlWithPassword(std::string_view url, std::string_view password) {
  using Options = std::unique_ptr<PQconninfoOption, void (*)(PQconninfoOption*)>;
  auto parse = [](const std::string& text, std::string* error) -> Options {
    char* err = nullptr;
    Options opts(PQconninfoParse(text.c_str(), &err), &PQconninfoFree);
    if (err != nullptr) {
      *error = err;
      while (!error->empty() && (error->back() == '\n' || error->back() == ' ')) error->pop_back();
      PQfreemem(err);
    }
    return opts;
  };
  auto password_of = [](const Options& opts) -> const char* {
    for (const PQconninfoOption* o = opts.get(); o != nullptr && o->keyword != nullptr; ++o) {
      if (std::strcmp(o->keyword, "password") == 0) return o->val;
    }
    return nullptr;
  };
  // A conninfo value: single-quoted, backslashes and quotes escaped.
  auto quote = [](std::string_view v) {
    std::string q = "'";
    for (char ch : v) {
      if (ch == '\\' || ch == '\'') q += '\\';
      q += ch;
    }
    return q + "'";
  };
  const bool uri = url.starts_with("postgresql://") || url.starts_with("postgres://");
  // libpq takes a string without '=' as a bare database name.
  std::string out =
      !uri && url.find('=') == std::string_view::npos ? "dbname=" + quote(url) : std::string(url);
  std::string error;
  Options opts = parse(out, &error);
  if (!opts) {
    return Status::InvalidArgument("database_url \"{}\": {}", RedactDatabaseUrl(url),
                                   RedactLibpqError(url, error));
  }
  if (const char* existing = password_of(opts); existing != nullptr && *existing != '\0') {
    return Status::InvalidArgument(
        "database_password_file is set, but database_url \"{}\" holds a password too; keep the "
        "password in one place",
        RedactDatabaseUrl(url));
  }
  if (uri) {
    // A query parameter, percent-encoding all but the unreserved characters.
    out += url.find('?') == std::string_view::npos ? "?password=" : "&password=";
    for (char ch : password) {
      auto c = static_cast<unsigned char>(ch);
      if (std::isalnum(c) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
        out += ch;
      } else {
        out += fmt::format("%{:02X}", c);
      }
    }
  } else {
    out += " password=" + quote(password);
  }
  // What libpq will read back must be exactly this password.
  Options check = parse(out, &error);
  const char* got = check ? password_of(check) : nullptr;
  if (got == nullptr || std::string_view(got) != password) {
    return Status::InvalidArgument(
        "database_url \"{}\": cannot add the password of database_password_file to it",
        RedactDatabaseUrl(url));
  }
  return out;
}

namespace {

bool IsSpace(char ch) { return std::isspace(static_cast<unsigned char>(ch)) != 0; }

// How hard to look for a password. A text libpq reads is redacted exactly
// as libpq reads it (Exact); a text libpq refuses is only ever printed in an
// error, and there a mistyped keyword ("Password", "passwd") or a misplaced
// '@' may still hold a password, so anything that looks like one is hidden
// (Suspicious).
enum class Strictness { kExact, kSuspicious };

bool IsPasswordKeyword(std::string_view keyword, Strictness strictness) {
  if (keyword == "password" || keyword == "sslpassword") return true;
  if (strictness == Strictness::kExact) return false;
  std::string lower(keyword);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return (lower.find("pass") != std::string::npos || lower.find("pwd") != std::string::npos) &&
         lower != "passfile";
}

// A URI query keyword as libpq reads it (percent-decoded; an invalid
// escape is kept as it is, libpq refuses such a URI anyway).
std::string PercentDecoded(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// postgresql://[user[:password]@][host][/dbname][?keyword=value&...], read
// as libpq reads it: the user part ends at the first '@' (if one comes
// before any '/'), the password at its first ':', query values at '&'
// (there is no fragment: a '#' belongs to the value), and query keywords
// are percent-decoded ("pass%77ord" is a password). When libpq refuses the
// URI, or a ':' comes before the first '/' and an '@' after it, the user
// part is taken to end at the last '@' before the query: in
// "postgresql://u:pa/ss@h" the unencoded '/' is the user's mistake, not the
// end of the password.
std::string RedactUri(std::string out, std::size_t prefix, Strictness strictness) {
  std::size_t pos = prefix;
  std::size_t stop = out.find_first_of("@/", pos);
  // A ':' before the first '/' and an '@' after it: libpq reads "u" as the
  // host and "pa" as the port, and fails only when it connects, but the
  // text is a user and password with an unencoded '/'. Hidden either way.
  const std::size_t at = out.rfind('@', out.find('?', pos));
  const bool slash_first = stop != std::string::npos && out[stop] == '/';
  if (at != std::string::npos && at >= pos &&
      (strictness == Strictness::kSuspicious || (slash_first && out.find(':', pos) < stop))) {
    stop = at;
  }
  if (stop != std::string::npos && out[stop] == '@') {
    if (auto colon = out.find(':', pos); colon < stop) {
      out.replace(colon + 1, stop - colon - 1, "***");
      stop = colon + 4;
    }
    pos = stop + 1;
  }
  const std::size_t query = out.find('?', pos);
  if (query == std::string::npos) return out;
  for (std::size_t i = query + 1; i < out.size();) {
    std::size_t amp = out.find('&', i);
    if (amp == std::string::npos) amp = out.size();
    const std::size_t eq = out.find('=', i);
    if (eq < amp &&
        IsPasswordKeyword(PercentDecoded(std::string_view(out).substr(i, eq - i)), strictness)) {
      out.replace(eq + 1, amp - eq - 1, "***");
      amp = eq + 4;
    }
    i = amp + 1;
  }
  return out;
}

// keyword = value ... read as libpq's conninfo parser reads it: keywords end
// at '=' or a space, spaces may surround '=', a value is quoted ('...',
// with backslash escapes, ending at the closing quote) or runs to the next
// space (with backslash escapes). The values of password keywords become
// "***". From the first thing libpq would refuse (a keyword without '=',
// an unterminated quote) the rest is hidden: it may hold a password.
std::string RedactConninfo(std::string_view in, Strictness strictness) {
  std::string out;
  std::size_t i = 0;
  const std::size_t n = in.size();
  auto spaces = [&] {
    const std::size_t from = i;
    while (i < n && IsSpace(in[i])) ++i;
    out.append(in.substr(from, i - from));
  };
  while (true) {
    spaces();
    if (i >= n) break;
    const std::size_t k = i;
    while (i < n && in[i] != '=' && !IsSpace(in[i])) ++i;
    const std::string_view keyword = in.substr(k, i - k);
    while (i < n && IsSpace(in[i])) ++i;
    if (i >= n || in[i] != '=') {
      // A bare word: libpq refuses the text; the word and what follows
      // may be a password.
      out += "***";
      break;
    }
    out.append(in.substr(k, i - k));
    out += '=';
    ++i;
    spaces();
    const std::size_t v = i;
    bool malformed = false;
    if (i < n && in[i] == '\'') {
      ++i;
      while (i < n && in[i] != '\'') i += in[i] == '\\' ? 2 : 1;
      malformed = i >= n;
      if (!malformed) ++i;
    } else {
      while (i < n && !IsSpace(in[i])) i += in[i] == '\\' ? 2 : 1;
    }
    i = std::min(i, n);
    if (malformed) {
      out += "***";
    } else if (IsPasswordKeyword(keyword, strictness)) {
      // A quoted value stays quoted: libpq reads the next keyword right
      // after the closing quote, without a space.
      out += v < n && in[v] == '\'' ? "'***'" : "***";
    } else {
      out.append(in.substr(v, i - v));
    }
    if (malformed) break;
  }
  return out;
}

}  // namespace

// Mirrors libpq's two forms (see RedactUri and RedactConninfo): a text is a
// URI exactly when it starts with "postgresql://" or "postgres://";
// anything else is a conninfo string, even with "://" in a value.
std::string RedactDatabaseUrl(std::string_view url) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(std::string(url).c_str(), &error);
  PQconninfoFree(options);
  const Strictness strictness = error == nullptr ? Strictness::kExact : Strictness::kSuspicious;
  PQfreemem(error);
  for (std::string_view prefix : {"postgresql://", "postgres://"}) {
    if (url.starts_with(prefix)) return RedactUri(std::string(url), prefix.size(), strictness);
  }
  return RedactConninfo(url, strictness);
}

namespace {

// A TOML basic string: quoted, with backslashes, quotes and control
// characters escaped, so any value prints as TOML that parses back.
std::string TomlString(std::string_view v) {
  std::string out = "\"";
  for (char ch : v) {
    auto c = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c == 0x7F) {
      out += fmt::format("\\u{:04X}", c);
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

}  // namespace

namespace {
// A TOML float: always with a decimal point ("2.0", not "2").
std::string TomlFloat(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}
}  // namespace

std::string DescribeConfig(const Config& c) {
  return fmt::format(
      "# effective configuration{}\n"
      "database_url = {}\ndatabase_password_file = {}\nplugin_dir = {}\nconcurrency = {}\n"
      "lease_ttl = \"{}\"\n"
      "heartbeat_interval = \"{}\"\npoll_interval = \"{}\"\ndrain_timeout = \"{}\"\n"
      "log_level = \"{}\"\nmax_payload_bytes = {}\nretry_max_attempts = {}\n"
      "retry_initial_interval = \"{}\"\nretry_max_interval = \"{}\"\nretry_multiplier = {}\n"
      "retry_jitter = {}\nparallel_limit = {}\nworkers = {}\nmax_crashes = {}\n"
      "step_timeout = \"{}\"\nworker_cpu_affinity = \"{}\"\nexecutor = \"{}\"\n"
      "fiber_threads = {}\n",
      c.source_file.empty() ? " (no config file read)" : " (file: " + c.source_file + ")",
      TomlString(RedactDatabaseUrl(c.database_url)), TomlString(c.database_password_file),
      TomlString(c.plugin_dir), c.concurrency, FormatDuration(c.lease_ttl),
      FormatDuration(c.heartbeat_interval), FormatDuration(c.poll_interval),
      FormatDuration(c.drain_timeout), c.log_level, c.max_payload_bytes, c.retry_max_attempts,
      FormatDuration(c.retry_initial_interval), FormatDuration(c.retry_max_interval),
      TomlFloat(c.retry_multiplier), TomlFloat(c.retry_jitter), c.parallel_limit, c.workers,
      c.max_crashes, FormatDuration(c.step_timeout),
      c.worker_cpu_affinity == Config::CpuAffinity::kAuto ? "auto" : "off",
      c.executor == Config::Executor::kFibers ? "fibers" : "threads", c.fiber_threads);
}

}  // namespace kagzi
