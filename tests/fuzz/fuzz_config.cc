// Fuzz target "config": the config file and value parsers (core/config.h).
//
// The first byte picks what the rest is fed to:
//   0: ApplyToml (a config file);
//   1: ApplyValue (an environment variable or flag), the next byte picking
//      the key among ConfigKeys() (or an unknown key);
//   2: ParseDuration;
//   3: RedactDatabaseUrl, checked against libpq's own parser.
// Properties: errors name their origin (and key); a config read from TOML
// is described by DescribeConfig as TOML that parses back to the same
// description (what --check-config prints is a valid config file); durations
// print (FormatDuration) as text that parses back to the same value;
// redaction changes exactly the passwords libpq would read, into "***".
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <libpq-fe.h>

#include "fuzz_support.h"
#include "kagzi/core/config.h"
#include "kagzi/core/validation.h"

namespace {

void CheckRoundTrip(const kagzi::Config& config) {
  const std::string described = kagzi::DescribeConfig(config);
  kagzi::Config again;
  const kagzi::Status st = kagzi::ApplyToml(described, "described", &again);
  FUZZ_CHECK(st.ok(), st.message() + "\n--- described:\n" + described);
  // The URL comes back as it was printed, redacted; everything else as it
  // was set.
  const std::string printed_url = kagzi::RedactDatabaseUrl(config.database_url);
  FUZZ_CHECK(again.database_url == printed_url, again.database_url + "\n" + printed_url);
  again.database_url = config.database_url;
  const std::string twice = kagzi::DescribeConfig(again);
  FUZZ_CHECK(twice == described, "--- first:\n" + described + "--- second:\n" + twice);
}

void FuzzToml(std::string_view text) {
  kagzi::Config config;
  const kagzi::Status st = kagzi::ApplyToml(text, "fuzz.toml", &config);
  if (!st.ok()) {
    FUZZ_CHECK(st.IsInvalidArgument(), st.message());
    FUZZ_CHECK(st.message().starts_with("fuzz.toml"), st.message());
    return;
  }
  (void)kagzi::ValidateConfig(config);
  CheckRoundTrip(config);
}

void FuzzValue(kagzi::fuzz::FuzzInput& in) {
  const auto& keys = kagzi::ConfigKeys();
  const std::size_t pick = in.Byte();
  const std::string key = pick < keys.size() ? std::string(keys[pick]) : "no_such_key";
  const std::string value = in.Rest();
  kagzi::Config config;
  const kagzi::Status st = kagzi::ApplyValue(key, value, "environment KAGZI_X", &config);
  if (!st.ok()) {
    FUZZ_CHECK(st.message().starts_with("environment KAGZI_X: "), st.message());
    FUZZ_CHECK(st.message().find(key) != std::string::npos, st.message());
    return;
  }
  // Values set from the environment are plain bytes; the description is
  // valid TOML when they are valid UTF-8 (TOML strings cannot hold other
  // bytes).
  if (kagzi::IsValidUtf8(value)) CheckRoundTrip(config);
}

void FuzzDuration(std::string_view text) {
  auto d = kagzi::ParseDuration(text);
  if (!d.ok()) {
    FUZZ_CHECK(d.status().message().find('"') != std::string::npos, d.status().message());
    return;
  }
  FUZZ_CHECK(d->count() >= 0, "negative duration");
  const std::string printed = kagzi::FormatDuration(*d);
  auto back = kagzi::ParseDuration(printed);
  FUZZ_CHECK(back.ok() && *back == *d, printed);
}

// What libpq reads from a connection string: keyword -> value.
std::optional<std::map<std::string, std::string>> ParseConninfo(const std::string& text) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(text.c_str(), &error);
  if (error != nullptr) PQfreemem(error);
  if (options == nullptr) return std::nullopt;
  std::map<std::string, std::string> values;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val != nullptr) values[o->keyword] = o->val;
  }
  PQconninfoFree(options);
  return values;
}

bool IsUriWithAtAfterColonAndSlash(const std::string& text) {
  for (std::string_view prefix : {"postgresql://", "postgres://"}) {
    if (!std::string_view(text).starts_with(prefix)) continue;
    const std::size_t end = text.find('?');
    const std::size_t stop = text.find_first_of("@/", prefix.size());
    const std::size_t at = text.rfind('@', end);
    return stop != std::string::npos && text[stop] == '/' && at != std::string::npos && at > stop &&
           text.find(':', prefix.size()) < stop;
  }
  return false;
}

// Redaction hides exactly the passwords: read by libpq, the redacted text
// has the same options as the original, except that every password is
// "***".
void FuzzRedact(std::string_view url) {
  const std::string text(url.substr(0, url.find('\0')));
  const auto before = ParseConninfo(text);
  if (!before) return;  // libpq refuses it: it connects nowhere
  const std::string redacted = kagzi::RedactDatabaseUrl(text);
  const auto after = ParseConninfo(redacted);
  const std::string where = "\n" + text + "\n" + redacted;
  // "postgresql://u:pa/ss@h": libpq reads host "u", port "pa" and dbname
  // "ss@h", but it is a password with an unencoded '/', and RedactUri hides
  // from the ':' to the last '@': the other keys change, and the result may
  // not parse at all.
  const bool reread = IsUriWithAtAfterColonAndSlash(text);
  if (reread && !after) return;
  FUZZ_CHECK(after.has_value(), "the redacted text does not parse:" + where);
  for (const char* key : {"password", "sslpassword"}) {
    const auto it = after->find(key);
    if (it == after->end()) continue;
    FUZZ_CHECK(it->second == "***" || it->second.empty(),
               std::string(key) + " \"" + it->second + "\" shown:" + where);
  }
  if (reread) return;
  for (const auto& [key, value] : *before) {
    if (key == "password" || key == "sslpassword") continue;
    const auto it = after->find(key);
    const std::string got = it == after->end() ? "(absent)" : it->second;
    FUZZ_CHECK(got == value, key + " \"" + value + "\" became \"" + got + "\":" + where);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  kagzi::fuzz::FuzzInput in(data, size);
  switch (in.Byte() % 4) {
    case 0:
      FuzzToml(in.Rest());
      break;
    case 1:
      FuzzValue(in);
      break;
    case 2:
      FuzzDuration(in.Rest());
      break;
    default:
      FuzzRedact(in.Rest());
      break;
  }
  return 0;
}
