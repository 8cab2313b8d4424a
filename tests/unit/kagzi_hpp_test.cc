// tests/unit/kagzi_hpp_test.cc -- the C++ wrapper (kagzi/kagzi.hpp) against a
// fake host.
//
// FakeRun below implements the host side of plugin.h in memory: a journal of
// recorded steps and sleeps replayed in order, SUSPEND on the first sleep,
// MISUSE for calls after SUSPEND or from inside a step function,
// NONDETERMINISM when a replay diverges. Workflows defined here with
// KAGZI_WORKFLOW are found through kagzi_plugin_entry(), as the daemon would.
// Single-threaded; the global counters below are only touched by the tests.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <kagzi/kagzi.hpp>

namespace {

using kagzi::Json;
using kagzi::Status;

// ---------------------------------------------------------------------------
// User types with their own codecs
// ---------------------------------------------------------------------------

struct User {
  std::string name;
  int age = 0;
  bool operator==(const User&) const = default;
};

struct Point {
  int x = 0;
  int y = 0;
  bool operator==(const Point&) const = default;
};

}  // namespace

// Text-level codec (the documented customization point).
template <>
struct kagzi::Codec<User> {
  static std::string encode(const User& user) {
    return kagzi::Json{{"name", user.name}, {"age", user.age}}.dump();
  }
  static User decode(std::string_view text) {
    const kagzi::Json json = kagzi::Json::parse(text);
    return User{json.at("name").as<std::string>(), json.at("age").as<int>()};
  }
};

// Value-level conversion (the optional, cheaper one).
template <>
struct kagzi::JsonConvert<Point> {
  static kagzi::Json to_json(const Point& p) { return {{"x", p.x}, {"y", p.y}}; }
  static Point from_json(const kagzi::Json& json) {
    return Point{json.at("x").as<int>(), json.at("y").as<int>()};
  }
};

namespace {

// ---------------------------------------------------------------------------
// The fake host
// ---------------------------------------------------------------------------

enum class Kind { kStep, kSleep };

struct Recorded {
  Kind kind;
  kagzi_status status;
  std::string text;  // result or message
};

struct StepBuffer {
  std::string bytes;
  std::size_t limit;
};

class FakeRun {
 public:
  explicit FakeRun(std::string input) : input_(std::move(input)) {}

  // One invocation of run() (a claim by a daemon).
  kagzi_status invoke(kagzi_run_fn run) {
    cursor_ = 0;
    suspended_ = false;
    in_step_ = false;
    output_.reset();
    error_.reset();
    const kagzi_status status = run(&kTable, reinterpret_cast<kagzi_context*>(this), nullptr);
    // The host's bookkeeping: output and error only count with the matching status.
    if (status != KAGZI_OK) output_.reset();
    return status;
  }

  // Knobs.
  std::string run_id = "4f2b1c3e-0000-4000-8000-0000000000aa";
  std::optional<std::string> lose_lease_at;  // step() returns SUSPEND for this id
  std::size_t result_limit = 1 << 20;

  // Observations.
  std::map<std::string, Recorded> journal;
  std::vector<std::string> order;  // ids in recorded order
  int calls_after_suspend = 0;
  std::optional<std::string> output() const { return output_; }
  std::optional<std::string> error() const { return error_; }
  std::vector<std::pair<std::int32_t, std::string>> logs;

 private:
  static FakeRun& self(kagzi_context* ctx) { return *reinterpret_cast<FakeRun*>(ctx); }

  static bool refuse(FakeRun& run, const char** out, std::size_t* out_len, const char* why) {
    run.reason_ = why;
    if (out != nullptr) *out = run.reason_.c_str();
    if (out_len != nullptr) *out_len = run.reason_.size();
    return true;
  }

  // Replays the next journal entry if any. Returns true when it decided the
  // outcome (status stored in *status).
  bool replay(const char* id, Kind kind, kagzi_status* status, const char** out,
              std::size_t* out_len) {
    if (cursor_ >= order.size()) {
      if (journal.count(id) != 0) {
        refuse(*this, out, out_len, "duplicate step id");
        *status = KAGZI_ERR_MISUSE;
        return true;
      }
      return false;
    }
    const std::string& expected = order[cursor_];
    const Recorded& recorded = journal.at(expected);
    if (expected != id || recorded.kind != kind) {
      refuse(*this, out, out_len, "journal mismatch");
      *status = KAGZI_ERR_NONDETERMINISM;
      return true;
    }
    ++cursor_;
    if (out != nullptr) *out = recorded.text.c_str();
    if (out_len != nullptr) *out_len = recorded.text.size();
    *status = recorded.status;
    return true;
  }

  static kagzi_status write(const kagzi_writer* writer, const char* data, std::size_t len) {
    auto& buffer = *static_cast<StepBuffer*>(writer->host_data);
    if (buffer.bytes.size() + len > buffer.limit) return KAGZI_ERR_PERMANENT;
    buffer.bytes.append(data, len);
    return KAGZI_OK;
  }

  static kagzi_status get_input(kagzi_context* ctx, const char** data, std::size_t* len) {
    FakeRun& run = self(ctx);
    if (run.suspended_ || run.in_step_) return KAGZI_ERR_MISUSE;
    *data = run.input_.c_str();
    *len = run.input_.size();
    return KAGZI_OK;
  }

  static kagzi_status step(kagzi_context* ctx, const char* id, kagzi_step_fn fn, void* user,
                           const char** out, std::size_t* out_len) {
    FakeRun& run = self(ctx);
    if (run.suspended_) {
      ++run.calls_after_suspend;
      refuse(run, out, out_len, "context used after SUSPEND");
      return KAGZI_ERR_MISUSE;
    }
    if (run.in_step_) {
      refuse(run, out, out_len, "context used inside a step function");
      return KAGZI_ERR_MISUSE;
    }
    kagzi_status status = KAGZI_OK;
    if (run.replay(id, Kind::kStep, &status, out, out_len)) return status;
    if (run.lose_lease_at && *run.lose_lease_at == id) {
      run.suspended_ = true;
      return KAGZI_SUSPEND;
    }
    StepBuffer buffer{std::string(), run.result_limit};
    kagzi_writer writer{sizeof(kagzi_writer), KAGZI_ABI_MAJOR, KAGZI_ABI_MINOR, &buffer, &write};
    run.in_step_ = true;
    status = fn(user, &writer);
    run.in_step_ = false;
    if (status == KAGZI_OK) {
      if (buffer.bytes.empty()) buffer.bytes = "null";
      try {
        static_cast<void>(Json::parse(buffer.bytes));
      } catch (const kagzi::CodecError&) {
        refuse(run, out, out_len, "step result is not JSON");
        return KAGZI_ERR_MISUSE;
      }
    }
    Recorded& recorded = run.journal[id] = Recorded{Kind::kStep, status, buffer.bytes};
    run.order.emplace_back(id);
    ++run.cursor_;
    *out = recorded.text.c_str();
    *out_len = recorded.text.size();
    return status;
  }

  static kagzi_status sleep(kagzi_context* ctx, const char* id, std::uint64_t duration_ms) {
    FakeRun& run = self(ctx);
    if (run.suspended_) {
      ++run.calls_after_suspend;
      return KAGZI_ERR_MISUSE;
    }
    if (run.in_step_) return KAGZI_ERR_MISUSE;
    kagzi_status status = KAGZI_OK;
    // A recorded sleep has always expired by the next invocation here.
    if (run.replay(id, Kind::kSleep, &status, nullptr, nullptr)) return status;
    run.journal[id] = Recorded{Kind::kSleep, KAGZI_OK, std::to_string(duration_ms)};
    run.order.emplace_back(id);
    run.suspended_ = true;
    return KAGZI_SUSPEND;
  }

  static kagzi_status set_output(kagzi_context* ctx, const char* json, std::size_t len) {
    FakeRun& run = self(ctx);
    if (run.suspended_) {
      ++run.calls_after_suspend;
      return KAGZI_ERR_MISUSE;
    }
    run.output_ = std::string(json, len);
    return KAGZI_OK;
  }

  static kagzi_status set_error(kagzi_context* ctx, const char* message, std::size_t len) {
    FakeRun& run = self(ctx);
    if (run.suspended_) {
      ++run.calls_after_suspend;
      return KAGZI_ERR_MISUSE;
    }
    run.error_ = std::string(message, len);
    return KAGZI_OK;
  }

  static void log(kagzi_context* ctx, std::int32_t level, const char* message, std::size_t len) {
    FakeRun& run = self(ctx);
    if (run.suspended_) {
      ++run.calls_after_suspend;
      return;
    }
    run.logs.emplace_back(level, std::string(message, len));
  }

  static const void* get_extension(kagzi_context*, const char*) { return nullptr; }

  static kagzi_status get_run_id(kagzi_context* ctx, const char** id, std::size_t* len) {
    FakeRun& run = self(ctx);
    *id = run.run_id.c_str();
    *len = run.run_id.size();
    return KAGZI_OK;
  }

  // An ABI 1.0 host table: struct_size ends at get_run_id, abi_minor 0, so the
  // 1.0 API of the wrapper is proven against a 1.0 host (the wrapper must not
  // look past get_run_id). kagzi_hpp_1_1_test.cc covers 1.1 hosts.
  static constexpr std::uint32_t kHostSizeAbi10 = offsetof(kagzi_host, step_with_policy);
  static constexpr kagzi_host kTable{.struct_size = kHostSizeAbi10,
                                     .abi_major = KAGZI_ABI_MAJOR,
                                     .abi_minor = 0,
                                     .get_input = &get_input,
                                     .step = &step,
                                     .sleep = &sleep,
                                     .set_output = &set_output,
                                     .set_error = &set_error,
                                     .log = &log,
                                     .get_extension = &get_extension,
                                     .get_run_id = &get_run_id,
                                     .step_with_policy = nullptr,
                                     .wait_for_event = nullptr,
                                     .call_child = nullptr,
                                     .parallel = nullptr,
                                     .now_ms = nullptr,
                                     .random_u64 = nullptr};

  std::string input_;
  std::size_t cursor_ = 0;
  bool suspended_ = false;
  bool in_step_ = false;
  std::string reason_;
  std::optional<std::string> output_;
  std::optional<std::string> error_;
};

// Finds a workflow of this test binary through the plugin entry, as a host would.
kagzi_run_fn FindWorkflow(std::string_view name, std::uint32_t version) {
  const kagzi_plugin* plugin = kagzi_plugin_entry(KAGZI_ABI_MAJOR, KAGZI_ABI_MINOR);
  if (plugin == nullptr) return nullptr;
  for (std::uint32_t i = 0; i < plugin->workflow_count; ++i) {
    const kagzi_workflow& workflow = plugin->workflows[i];
    if (workflow.name == name && workflow.version == version) return workflow.run;
  }
  return nullptr;
}

// Counters bumped by step functions, to tell "ran" from "replayed".
std::map<std::string, int> g_calls;
void ResetCalls() { g_calls.clear(); }

kagzi_status StatusOf(Status status) { return static_cast<kagzi_status>(status); }

}  // namespace

// ---------------------------------------------------------------------------
// Workflows under test
// ---------------------------------------------------------------------------

// Every supported type as a step result, echoed into the output.
KAGZI_WORKFLOW(typed, 1, ctx, input) {
  const auto i = ctx.step("int", [] {
    ++g_calls["int"];
    return -42;
  });
  const auto big = ctx.step("uint64", [] { return std::numeric_limits<std::uint64_t>::max(); });
  const auto flag = ctx.step("bool", [] { return true; });
  const auto real = ctx.step("double", [] { return 0.1; });
  const auto text = ctx.step("string", [] { return std::string("h\u00e9llo \"q\"\n"); });
  const auto literal = ctx.step("c-string", [] { return "plain"; });
  const auto list = ctx.step("vector", [] { return std::vector<int>{1, 2, 3}; });
  const auto none = ctx.step("optional", [] { return std::optional<std::string>(); });
  const auto some = ctx.step("optional-some", [] { return std::optional<int>(7); });
  const auto table = ctx.step("map", [] { return std::map<std::string, int>{{"a", 1}, {"b", 2}}; });
  const auto doc = ctx.step("json", [] { return Json{{"k", Json::array({1, "two"})}}; });
  const auto user = ctx.step("user", [] { return User{"Ada", 36}; });
  const auto users = ctx.step("users", [] { return std::vector<User>{{"A", 1}, {"B", 2}}; });
  const auto point = ctx.step("point", [] { return Point{3, -4}; });
  ctx.step("void", [] { ++g_calls["void"]; });
  const std::string raw = ctx.step_raw("raw", [] { return "{\"a\": [1, 2]}"; });

  static_assert(std::is_same_v<decltype(i), const int>);
  static_assert(std::is_same_v<decltype(literal), const std::string>);
  static_assert(std::is_same_v<decltype(none), const std::optional<std::string>>);
  static_assert(std::is_same_v<decltype(users), const std::vector<User>>);

  Json out{{"int", i},
           {"uint64", big},
           {"bool", flag},
           {"double", real},
           {"string", text},
           {"c", literal},
           {"vector", list},
           {"optional", none},
           {"some", some},
           {"map", table},
           {"json", doc},
           {"user", Json::from(user)},
           {"users", users.size()},
           {"point", point},
           {"raw", raw},
           {"input", ctx.input()},
           {"run", ctx.run_id()}};
  out["input_text"] = ctx.input_text();
  return out;
}

// Step functions throwing; the workflow catches StepError and reports it.
KAGZI_WORKFLOW(catcher, 1, ctx, input) {
  const auto what = input.at("throw").as<std::string>();
  try {
    ctx.step("throws", [&]() -> int {
      ++g_calls["throws"];
      if (what == "retryable") throw kagzi::RetryableError("try later");
      if (what == "permanent") throw kagzi::PermanentError("never");
      if (what == "runtime") throw std::runtime_error("socket closed");
      if (what == "logic") throw std::logic_error("bug");
      if (what == "int") throw 42;
      if (what == "nan") return 0;  // handled by the next step
      return 1;
    });
    ctx.step("nan", [&] { return what == "nan" ? std::nan("") : 1.0; });
    return Json{{"caught", false}};
  } catch (const kagzi::StepError& e) {
    return Json{
        {"caught", true},         {"step", e.step_id()}, {"status", static_cast<int>(e.status())},
        {"message", e.message()}, {"what", e.what()},    {"retryable", e.retryable()}};
  }
}

// Exceptions escaping the body.
KAGZI_WORKFLOW(thrower, 1, ctx, input) {
  const auto what = input.at("throw").as<std::string>();
  if (what == "step") {
    ctx.step("fails", [] { throw kagzi::PermanentError("boom at 0"); });
  }
  if (what == "retryable-step") ctx.step("flaky", [] { throw std::runtime_error("timeout"); });
  if (what == "retryable") throw kagzi::RetryableError("later");
  if (what == "permanent") throw kagzi::PermanentError("bad input");
  if (what == "runtime") throw std::runtime_error("oops");
  if (what == "int") throw 7;
  if (what == "codec") static_cast<void>(input.at("missing").as<int>());
  return {};
}

// A sleep between two steps; catch (const std::exception&) must not swallow SUSPEND.
KAGZI_WORKFLOW(sleeper, 1, ctx, input) {
  ctx.step("before", [] { ++g_calls["before"]; });
  try {
    ctx.sleep("nap", std::chrono::seconds(2));
  } catch (const std::exception&) {
    ADD_FAILURE() << "the suspension was caught as a std::exception";
  }
  ctx.info("woke up");
  const int after = ctx.step("after", [] {
    ++g_calls["after"];
    return 2;
  });
  return Json{{"after", after}};
}

// Swallows everything, then keeps calling the context: the wrapper must not
// call the host again, and the run must still end with SUSPEND.
KAGZI_WORKFLOW(swallower, 1, ctx, input) {
  try {
    ctx.sleep("nap", std::chrono::milliseconds(10));
  } catch (...) {  // NOLINT: deliberately wrong
  }
  try {
    ctx.step("after", [] { ++g_calls["swallower-after"]; });
  } catch (...) {  // NOLINT: deliberately wrong
  }
  ctx.info("not logged");
  return Json{{"done", true}};
}

// Calls different steps on replay when g_calls["diverge"] is set.
KAGZI_WORKFLOW(diverger, 1, ctx, input) {
  ctx.step(g_calls["diverge"] != 0 ? "b" : "a", [] {});
  ctx.sleep("nap", std::chrono::milliseconds(1));
  return {};
}

// Uses the context inside a step function.
KAGZI_WORKFLOW(nested, 1, ctx, input) {
  ctx.step("outer", [&] {
    ctx.info("inside");  // allowed
    ctx.step("inner", [] {});
  });
  return {};
}

// A huge step result, over the fake host's limit.
KAGZI_WORKFLOW(oversized, 1, ctx, input) {
  ctx.step("big", [] { return std::string(4096, 'x'); });
  return {};
}

// Registered under a name that is not a C identifier, at version 2.
KAGZI_WORKFLOW_NAMED(dashed, "with-dash", 2, ctx, input) { return Json{{"version", 2}}; }

KAGZI_PLUGIN("kagzi-hpp-test", "0.0.1");

namespace {

// ---------------------------------------------------------------------------
// Codecs and Json
// ---------------------------------------------------------------------------

template <class T>
T RoundTrip(const T& value) {
  return kagzi::Codec<T>::decode(kagzi::Codec<T>::encode(value));
}

TEST(Codec, Scalars) {
  EXPECT_EQ(kagzi::Codec<bool>::encode(true), "true");
  EXPECT_EQ(RoundTrip(false), false);
  EXPECT_EQ(kagzi::Codec<int>::encode(-5), "-5");
  EXPECT_EQ(RoundTrip(std::numeric_limits<std::int8_t>::min()),
            std::numeric_limits<std::int8_t>::min());
  EXPECT_EQ(RoundTrip(std::numeric_limits<std::uint8_t>::max()),
            std::numeric_limits<std::uint8_t>::max());
  EXPECT_EQ(RoundTrip(std::numeric_limits<std::int64_t>::min()),
            std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(RoundTrip(std::numeric_limits<std::int64_t>::max()),
            std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(kagzi::Codec<std::uint64_t>::encode(std::numeric_limits<std::uint64_t>::max()),
            "18446744073709551615");
  EXPECT_EQ(RoundTrip(std::numeric_limits<std::uint64_t>::max()),
            std::numeric_limits<std::uint64_t>::max());
  for (double d : {0.1, -0.0, 1e300, 5e-324, 123456789.125, -2.5}) {
    EXPECT_EQ(RoundTrip(d), d) << kagzi::Codec<double>::encode(d);
  }
  EXPECT_EQ(RoundTrip(1.5f), 1.5f);
  EXPECT_EQ(kagzi::Codec<double>::decode("3"), 3.0);
  EXPECT_EQ(kagzi::Codec<std::nullptr_t>::encode(nullptr), "null");
}

TEST(Codec, Strings) {
  const std::string tricky = "quote\" backslash\\ slash/ nl\n tab\t ctl\x01 nul";
  EXPECT_EQ(RoundTrip(tricky), tricky);
  EXPECT_EQ(kagzi::Codec<std::string>::encode("a\"b\n\x01"), R"("a\"b\n\u0001")");
  const std::string with_nul("a\0b", 3);
  EXPECT_EQ(RoundTrip(with_nul), with_nul);
  const std::string utf8 = "h\u00e9llo \u4e16\u754c \U0001F600";
  EXPECT_EQ(RoundTrip(utf8), utf8);
  EXPECT_EQ(kagzi::Codec<std::string>::decode(R"("\u00e9\ud83d\ude00")"), "\u00e9\U0001F600");
  EXPECT_EQ(RoundTrip(std::string()), "");
}

TEST(Codec, Containers) {
  const std::vector<int> ints{1, -2, 3};
  EXPECT_EQ(kagzi::Codec<std::vector<int>>::encode(ints), "[1,-2,3]");
  EXPECT_EQ(RoundTrip(ints), ints);
  EXPECT_EQ(RoundTrip(std::vector<int>()), std::vector<int>());
  const std::vector<std::vector<std::string>> nested{{"a"}, {}, {"b", "c"}};
  EXPECT_EQ(RoundTrip(nested), nested);
  const std::vector<bool> bits{true, false, true};
  EXPECT_EQ(RoundTrip(bits), bits);

  EXPECT_EQ(kagzi::Codec<std::optional<int>>::encode(std::nullopt), "null");
  EXPECT_EQ(RoundTrip(std::optional<int>()), std::nullopt);
  EXPECT_EQ(RoundTrip(std::optional<int>(5)), 5);
  const std::vector<std::optional<std::string>> holes{"x", std::nullopt, "y"};
  EXPECT_EQ(kagzi::Codec<std::vector<std::optional<std::string>>>::encode(holes),
            R"(["x",null,"y"])");
  EXPECT_EQ(RoundTrip(holes), holes);

  const std::map<std::string, int> table{{"b", 2}, {"a", 1}};
  EXPECT_EQ((kagzi::Codec<std::map<std::string, int>>::encode(table)), R"({"a":1,"b":2})");
  EXPECT_EQ(RoundTrip(table), table);
  const std::map<std::string, std::vector<std::optional<double>>> deep{{"k", {1.5, std::nullopt}},
                                                                       {"e", {}}};
  EXPECT_EQ(RoundTrip(deep), deep);
}

TEST(Codec, UserTypes) {
  const User ada{"Ada", 36};
  EXPECT_EQ(kagzi::Codec<User>::encode(ada), R"({"name":"Ada","age":36})");
  EXPECT_EQ(RoundTrip(ada), ada);
  // A Codec specialization makes the containers work too.
  const std::vector<User> users{ada, {"Bob", 1}};
  EXPECT_EQ(RoundTrip(users), users);
  const std::map<std::string, std::optional<User>> maybe{{"a", ada}, {"b", std::nullopt}};
  EXPECT_EQ(RoundTrip(maybe), maybe);
  // A JsonConvert specialization gives a Codec and Json conversions.
  EXPECT_EQ(kagzi::Codec<Point>::encode(Point{1, 2}), R"({"x":1,"y":2})");
  EXPECT_EQ(RoundTrip(std::vector<Point>{{1, 2}, {3, 4}}), (std::vector<Point>{{1, 2}, {3, 4}}));
  EXPECT_EQ(Json(Point{5, 6}).at("y").as<int>(), 6);
  EXPECT_EQ(Json::from(ada).at("name").as<std::string>(), "Ada");
  EXPECT_EQ(Json::parse(R"({"name":"C","age":3})").as<User>(), (User{"C", 3}));
}

TEST(Codec, DecodeErrors) {
  EXPECT_THROW(kagzi::Codec<int>::decode("1.5"), kagzi::CodecError);
  EXPECT_THROW(kagzi::Codec<std::int8_t>::decode("300"), kagzi::CodecError);
  EXPECT_THROW(kagzi::Codec<unsigned>::decode("-1"), kagzi::CodecError);
  EXPECT_THROW(kagzi::Codec<std::int64_t>::decode("18446744073709551615"), kagzi::CodecError);
  EXPECT_THROW(kagzi::Codec<std::int64_t>::decode("1e19"), kagzi::CodecError);
  EXPECT_EQ(kagzi::Codec<std::int64_t>::decode("1e3"), 1000);  // integral double
  EXPECT_EQ(kagzi::Codec<std::uint64_t>::decode("1e19"), 10000000000000000000ULL);
  EXPECT_THROW(kagzi::Codec<std::string>::decode("1"), kagzi::CodecError);
  EXPECT_THROW(kagzi::Codec<bool>::decode("0"), kagzi::CodecError);
  EXPECT_THROW(kagzi::Codec<double>::decode("\"1\""), kagzi::CodecError);
  EXPECT_THROW(kagzi::Codec<std::vector<int>>::decode("{}"), kagzi::CodecError);
  EXPECT_THROW(kagzi::Codec<std::vector<int>>::decode("[1,\"2\"]"), kagzi::CodecError);
  EXPECT_THROW((kagzi::Codec<std::map<std::string, int>>::decode("[]")), kagzi::CodecError);
  EXPECT_THROW(kagzi::Codec<std::nullptr_t>::decode("0"), kagzi::CodecError);
  EXPECT_THROW(kagzi::Codec<User>::decode(R"({"name":"x"})"), kagzi::CodecError);
  // A CodecError is a PermanentError.
  try {
    kagzi::Codec<int>::decode("\"x\"");
    FAIL() << "no exception";
  } catch (const kagzi::PermanentError& e) {
    EXPECT_EQ(e.status(), Status::kPermanent);
    EXPECT_STREQ(e.what(), "expected an integer, got string");
  }
}

TEST(Codec, EncodeErrors) {
  EXPECT_THROW(kagzi::Codec<double>::encode(std::nan("")), kagzi::CodecError);
  EXPECT_THROW(kagzi::Codec<double>::encode(std::numeric_limits<double>::infinity()),
               kagzi::CodecError);
  EXPECT_THROW(kagzi::Codec<std::string>::encode("bad \xff utf-8"), kagzi::CodecError);
  EXPECT_THROW((Json{{"\xc3", 1}}.dump()), kagzi::CodecError);
}

TEST(Json, ParseErrors) {
  for (const char* bad : {"", "{", "[1,]", "1 2", "{\"a\" 1}", "nul", "\"\xff\"", "NaN", "01"}) {
    EXPECT_THROW(Json::parse(bad), kagzi::CodecError) << bad;
  }
  EXPECT_THROW(Json::parse(std::string_view("1\0 2", 4)), kagzi::CodecError);
  try {
    Json::parse("[1, oops]");
    FAIL() << "no exception";
  } catch (const kagzi::CodecError& e) {
    EXPECT_NE(std::string(e.what()).find("offset 4"), std::string::npos) << e.what();
  }
  // Hostile nesting is refused without exhausting the stack.
  EXPECT_THROW(Json::parse(std::string(100000, '[') + std::string(100000, ']')), kagzi::CodecError);
  EXPECT_NO_THROW(
      Json::parse(std::string(Json::kMaxDepth, '[') + std::string(Json::kMaxDepth, ']')));
}

TEST(Json, BuildAndRead) {
  Json user{{"id", 42}, {"name", "Ada"}, {"tags", Json::array({"a", "b"})}, {"ok", true}};
  user["score"] = 1.5;
  user["nested"]["deeper"] = nullptr;  // null member becomes an object
  EXPECT_EQ(user.dump(), R"({"id":42,"name":"Ada","tags":["a","b"],"ok":true,"score":1.5,)"
                         R"("nested":{"deeper":null}})");
  EXPECT_TRUE(user.is_object());
  EXPECT_EQ(user.size(), 6u);
  EXPECT_EQ(user["id"].as<int>(), 42);
  EXPECT_EQ(user["tags"][1].as<std::string>(), "b");
  EXPECT_TRUE(std::as_const(user)["tags"][7].is_null());
  EXPECT_TRUE(std::as_const(user)["missing"].is_null());
  EXPECT_FALSE(user.contains("missing"));  // the const lookup did not insert
  EXPECT_THROW(user.at("missing"), kagzi::CodecError);
  EXPECT_THROW(user.at("tags").at(2), kagzi::CodecError);
  EXPECT_EQ(user.value("name", "?"), "Ada");
  EXPECT_EQ(user.value("nickname", "?"), "?");
  EXPECT_EQ(user.value<int>("id", 0), 42);
  EXPECT_EQ(user.value<int>("absent", 9), 9);
  EXPECT_THROW(user.value<int>("name", 0), kagzi::CodecError);
  EXPECT_TRUE(user.erase("ok"));
  EXPECT_FALSE(user.erase("ok"));
  EXPECT_THROW(user["id"]["x"], kagzi::CodecError);  // not an object
  EXPECT_THROW(user["id"].push_back(1), kagzi::CodecError);

  Json list;
  list.push_back(1);
  list.push_back("two");
  list.push_back(Json{{"three", 3}});
  EXPECT_EQ(list.dump(), R"([1,"two",{"three":3}])");
  list[std::size_t{0}] = false;
  EXPECT_EQ(list.array_items().front(), Json(false));
  EXPECT_THROW(list.object_items(), kagzi::CodecError);

  EXPECT_EQ(Json().dump(), "null");
  EXPECT_EQ(Json::object().dump(), "{}");
  EXPECT_EQ(Json::array().dump(), "[]");
  EXPECT_EQ(Json(std::vector<int>{1, 2}).dump(), "[1,2]");
  EXPECT_EQ(Json(std::optional<int>()).dump(), "null");
  EXPECT_EQ(Json(std::numeric_limits<std::uint64_t>::max()).as<std::uint64_t>(),
            std::numeric_limits<std::uint64_t>::max());
}

TEST(Json, ObjectsKeepOneValuePerKey) {
  EXPECT_EQ(Json::parse(R"({"a":1,"b":2,"a":3})").dump(), R"({"a":3,"b":2})");
  EXPECT_EQ(Json({{"a", 1}, {"a", 2}}).dump(), R"({"a":2})");
}

TEST(Json, Equality) {
  EXPECT_EQ(Json::parse(R"({"a":[1,2.0,"x"],"b":null})"),
            Json::parse(R"({"b":null,"a":[1.0,2,"x"]})"));
  EXPECT_NE(Json(1), Json("1"));
  EXPECT_NE(Json::parse("[1,2]"), Json::parse("[2,1]"));
  EXPECT_NE(Json::parse(R"({"a":1})"), Json::parse(R"({"a":1,"b":2})"));
  EXPECT_EQ(Json(std::numeric_limits<std::uint64_t>::max()), Json::parse("18446744073709551615"));
  EXPECT_NE(Json(-1), Json(std::numeric_limits<std::uint64_t>::max()));
}

TEST(Json, DumpParseRoundTrip) {
  const std::string text = R"({"s":"\u0000\"\\\/\b\f\n\r\t",)"
                           R"("n":[0,-1,1.25,1e-7,18446744073709551615,-9223372036854775808],)"
                           R"("o":{"x":[[],{}]},"t":true,"f":false,"z":null})";
  const Json parsed = Json::parse(text);
  EXPECT_EQ(Json::parse(parsed.dump()), parsed);
  EXPECT_EQ(parsed.at("s").as<std::string>(), std::string("\0\"\\/\b\f\n\r\t", 9));
}

// ---------------------------------------------------------------------------
// The step trampoline, called directly with a host-like writer
// ---------------------------------------------------------------------------

struct WriterFixture {
  StepBuffer buffer{std::string(), 1 << 20};
  kagzi_writer writer{sizeof(kagzi_writer), KAGZI_ABI_MAJOR, KAGZI_ABI_MINOR, &buffer,
                      [](const kagzi_writer* w, const char* data, std::size_t len) {
                        auto& b = *static_cast<StepBuffer*>(w->host_data);
                        if (b.bytes.size() + len > b.limit) return kagzi_status{3};
                        b.bytes.append(data, len);
                        return kagzi_status{0};
                      }};

  template <class F>
  kagzi_status call(F fn) {
    buffer.bytes.clear();
    return kagzi::detail::StepTrampoline<F>::call(&fn, &writer);
  }
};

TEST(StepTrampoline, EncodesResults) {
  WriterFixture w;
  EXPECT_EQ(w.call([] { return 5; }), StatusOf(Status::kOk));
  EXPECT_EQ(w.buffer.bytes, "5");
  EXPECT_EQ(w.call([] { return std::string("x\"y"); }), StatusOf(Status::kOk));
  EXPECT_EQ(w.buffer.bytes, R"("x\"y")");
  EXPECT_EQ(w.call([] { return User{"U", 1}; }), StatusOf(Status::kOk));
  EXPECT_EQ(w.buffer.bytes, R"({"name":"U","age":1})");
  EXPECT_EQ(w.call([] {}), StatusOf(Status::kOk));
  EXPECT_EQ(w.buffer.bytes, "null");  // void records null
  int calls = 0;
  auto counting = [&calls] { return ++calls; };
  EXPECT_EQ(w.call(counting), StatusOf(Status::kOk));
  EXPECT_EQ(calls, 1);
}

TEST(StepTrampoline, MapsExceptionsToStatuses) {
  WriterFixture w;
  EXPECT_EQ(w.call([]() -> int { throw kagzi::RetryableError("503 from api"); }),
            StatusOf(Status::kRetryable));
  EXPECT_EQ(w.buffer.bytes, "503 from api");
  EXPECT_EQ(w.call([]() -> int { throw kagzi::PermanentError("card declined"); }),
            StatusOf(Status::kPermanent));
  EXPECT_EQ(w.buffer.bytes, "card declined");
  EXPECT_EQ(w.call([]() -> int { throw std::runtime_error("connection reset"); }),
            StatusOf(Status::kRetryable));
  EXPECT_EQ(w.buffer.bytes, "connection reset");
  EXPECT_EQ(w.call([]() -> int { throw 42; }), StatusOf(Status::kPermanent));
  EXPECT_EQ(w.buffer.bytes, "unknown exception (not a std::exception)");
  EXPECT_EQ(w.call([] { return std::nan(""); }), StatusOf(Status::kPermanent));
  EXPECT_EQ(w.buffer.bytes, "cannot encode NaN or infinity as JSON");
}

TEST(StepTrampoline, ResultOverTheHostLimitIsPermanent) {
  WriterFixture w;
  w.buffer.limit = 60;
  EXPECT_EQ(w.call([] { return std::string(100, 'x'); }), StatusOf(Status::kPermanent));
  EXPECT_EQ(w.buffer.bytes.substr(0, 6), "step r");  // the message, not half a result
}

// ---------------------------------------------------------------------------
// Whole workflows against the fake host
// ---------------------------------------------------------------------------

TEST(Workflow, FirstRunAndReplaySeeTheSameValues) {
  ResetCalls();
  kagzi_run_fn run = FindWorkflow("typed", 1);
  ASSERT_NE(run, nullptr);
  FakeRun fake(R"({"who": "tester"})");
  ASSERT_EQ(fake.invoke(run), KAGZI_OK) << fake.error().value_or("");
  ASSERT_TRUE(fake.output());
  const std::string first = *fake.output();
  EXPECT_EQ(g_calls["int"], 1);
  EXPECT_EQ(g_calls["void"], 1);

  const Json out = Json::parse(first);
  EXPECT_EQ(out.at("int").as<int>(), -42);
  EXPECT_EQ(out.at("uint64").as<std::uint64_t>(), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(out.at("bool"), Json(true));
  EXPECT_EQ(out.at("double").as<double>(), 0.1);
  EXPECT_EQ(out.at("string").as<std::string>(), "h\u00e9llo \"q\"\n");
  EXPECT_EQ(out.at("c").as<std::string>(), "plain");
  EXPECT_EQ(out.at("vector").dump(), "[1,2,3]");
  EXPECT_TRUE(out.at("optional").is_null());
  EXPECT_EQ(out.at("some").as<int>(), 7);
  EXPECT_EQ(out.at("map").dump(), R"({"a":1,"b":2})");
  EXPECT_EQ(out.at("json").dump(), R"({"k":[1,"two"]})");
  EXPECT_EQ(out.at("user").as<User>(), (User{"Ada", 36}));
  EXPECT_EQ(out.at("users").as<int>(), 2);
  EXPECT_EQ(out.at("point").as<Point>(), (Point{3, -4}));
  EXPECT_EQ(out.at("raw").as<std::string>(), "{\"a\": [1, 2]}");
  EXPECT_EQ(out.at("input").at("who").as<std::string>(), "tester");
  EXPECT_EQ(out.at("input_text").as<std::string>(), R"({"who": "tester"})");
  EXPECT_EQ(out.at("run").as<std::string>(), fake.run_id);

  // What the host recorded.
  EXPECT_EQ(fake.journal.at("void").text, "null");
  EXPECT_EQ(fake.journal.at("string").text, "\"h\u00e9llo \\\"q\\\"\\n\"");
  EXPECT_EQ(fake.journal.at("raw").text, "{\"a\": [1, 2]}");  // verbatim
  EXPECT_EQ(fake.journal.at("optional").text, "null");
  EXPECT_EQ(fake.journal.at("user").text, R"({"name":"Ada","age":36})");

  // Replay: nothing runs again, and the output is identical.
  ASSERT_EQ(fake.invoke(run), KAGZI_OK);
  EXPECT_EQ(g_calls["int"], 1);
  EXPECT_EQ(g_calls["void"], 1);
  EXPECT_EQ(*fake.output(), first);
}

TEST(Workflow, ReplayDecodesRecordedValuesNotFreshOnes) {
  ResetCalls();
  kagzi_run_fn run = FindWorkflow("typed", 1);
  FakeRun fake("{}");
  ASSERT_EQ(fake.invoke(run), KAGZI_OK);
  // Tamper with the journal: replay must return what is recorded.
  fake.journal.at("int").text = "7";
  fake.journal.at("vector").text = "[9]";
  ASSERT_EQ(fake.invoke(run), KAGZI_OK);
  const Json out = Json::parse(*fake.output());
  EXPECT_EQ(out.at("int").as<int>(), 7);
  EXPECT_EQ(out.at("vector").dump(), "[9]");
  EXPECT_EQ(g_calls["int"], 1);

  // A recorded value that no longer decodes as the step's type fails the run.
  fake.journal.at("int").text = "\"seven\"";
  EXPECT_EQ(fake.invoke(run), KAGZI_ERR_PERMANENT);
  EXPECT_NE(fake.error()->find("step 'int': recorded result does not decode"), std::string::npos)
      << *fake.error();
}

TEST(Workflow, StepFailuresReachTheWorkflowAsStepError) {
  kagzi_run_fn run = FindWorkflow("catcher", 1);
  struct Case {
    const char* what;
    Status status;
    const char* message;
    const char* step;
  };
  for (const Case& c :
       {Case{"retryable", Status::kRetryable, "try later", "throws"},
        Case{"permanent", Status::kPermanent, "never", "throws"},
        Case{"runtime", Status::kRetryable, "socket closed", "throws"},
        Case{"logic", Status::kRetryable, "bug", "throws"},
        Case{"int", Status::kPermanent, "unknown exception (not a std::exception)", "throws"},
        Case{"nan", Status::kPermanent, "cannot encode NaN or infinity as JSON", "nan"}}) {
    SCOPED_TRACE(c.what);
    ResetCalls();
    FakeRun fake(Json{{"throw", c.what}}.dump());
    ASSERT_EQ(fake.invoke(run), KAGZI_OK) << fake.error().value_or("");
    const Json out = Json::parse(*fake.output());
    EXPECT_EQ(out.at("caught"), Json(true));
    EXPECT_EQ(out.at("step").as<std::string>(), c.step);
    EXPECT_EQ(out.at("status").as<int>(), static_cast<int>(c.status));
    EXPECT_EQ(out.at("message").as<std::string>(), c.message);
    EXPECT_EQ(out.at("what").as<std::string>(),
              std::string("step '") + c.step + "' failed: " + c.message);
    EXPECT_EQ(out.at("retryable").as<bool>(), c.status == Status::kRetryable);
    EXPECT_EQ(fake.journal.at(c.step).status, StatusOf(c.status));
    EXPECT_EQ(fake.journal.at(c.step).text, c.message);
    // On replay the recorded failure is thrown again; the step does not run.
    ASSERT_EQ(fake.invoke(run), KAGZI_OK);
    EXPECT_EQ(*fake.output(), out.dump());
    EXPECT_EQ(g_calls["throws"], 1);
  }
}

TEST(Workflow, ExceptionsEscapingTheBodyFailTheRun) {
  kagzi_run_fn run = FindWorkflow("thrower", 1);
  struct Case {
    const char* what;
    kagzi_status status;
    const char* error;
  };
  for (const Case& c :
       {Case{"step", KAGZI_ERR_PERMANENT, "step 'fails' failed: boom at 0"},
        Case{"retryable-step", KAGZI_ERR_RETRYABLE, "step 'flaky' failed: timeout"},
        Case{"retryable", KAGZI_ERR_RETRYABLE, "later"},
        Case{"permanent", KAGZI_ERR_PERMANENT, "bad input"},
        Case{"runtime", KAGZI_ERR_PERMANENT, "oops"},
        Case{"int", KAGZI_ERR_PERMANENT, "unknown exception (not a std::exception)"},
        Case{"codec", KAGZI_ERR_PERMANENT, "missing member 'missing'"}}) {
    SCOPED_TRACE(c.what);
    FakeRun fake(Json{{"throw", c.what}}.dump());
    EXPECT_EQ(fake.invoke(run), c.status);
    EXPECT_EQ(fake.error(), std::optional<std::string>(c.error));
    EXPECT_FALSE(fake.output());
  }
  FakeRun ok(R"({"throw": "nothing"})");
  EXPECT_EQ(ok.invoke(run), KAGZI_OK);
  EXPECT_EQ(ok.output(), std::optional<std::string>("null"));
}

TEST(Workflow, BadInputFailsPermanently) {
  FakeRun fake("{not json");
  EXPECT_EQ(fake.invoke(FindWorkflow("thrower", 1)), KAGZI_ERR_PERMANENT);
  EXPECT_EQ(fake.error()->rfind("run input: invalid JSON", 0), 0u) << *fake.error();
}

TEST(Workflow, SleepSuspendsThenResumes) {
  ResetCalls();
  kagzi_run_fn run = FindWorkflow("sleeper", 1);
  FakeRun fake("{}");
  EXPECT_EQ(fake.invoke(run), KAGZI_SUSPEND);
  EXPECT_EQ(g_calls["before"], 1);
  EXPECT_EQ(g_calls["after"], 0);
  EXPECT_FALSE(fake.output());
  EXPECT_EQ(fake.calls_after_suspend, 0);
  EXPECT_EQ(fake.journal.at("nap").text, "2000");  // milliseconds
  EXPECT_TRUE(fake.logs.empty());                  // "woke up" was never reached

  EXPECT_EQ(fake.invoke(run), KAGZI_OK);
  EXPECT_EQ(g_calls["before"], 1);
  EXPECT_EQ(g_calls["after"], 1);
  EXPECT_EQ(fake.output(), std::optional<std::string>(R"({"after":2})"));
  ASSERT_EQ(fake.logs.size(), 1u);
  EXPECT_EQ(fake.logs[0], std::make_pair(std::int32_t{KAGZI_LOG_INFO}, std::string("woke up")));
  EXPECT_EQ(fake.order, (std::vector<std::string>{"before", "nap", "after"}));
}

TEST(Workflow, SwallowedSuspensionStillSuspends) {
  ResetCalls();
  FakeRun fake("{}");
  EXPECT_EQ(fake.invoke(FindWorkflow("swallower", 1)), KAGZI_SUSPEND);
  EXPECT_EQ(fake.calls_after_suspend, 0);  // the wrapper refused to call the host again
  EXPECT_EQ(g_calls["swallower-after"], 0);
  EXPECT_FALSE(fake.output());
}

TEST(Workflow, LostLeaseOnAStepSuspends) {
  ResetCalls();
  FakeRun fake("{}");
  fake.lose_lease_at = "after";
  EXPECT_EQ(fake.invoke(FindWorkflow("sleeper", 1)), KAGZI_SUSPEND);  // sleeps first
  EXPECT_EQ(fake.invoke(FindWorkflow("sleeper", 1)), KAGZI_SUSPEND);  // loses the lease
  EXPECT_EQ(g_calls["after"], 0);
  EXPECT_EQ(fake.calls_after_suspend, 0);
}

TEST(Workflow, NondeterminismEndsTheRun) {
  ResetCalls();
  kagzi_run_fn run = FindWorkflow("diverger", 1);
  FakeRun fake("{}");
  EXPECT_EQ(fake.invoke(run), KAGZI_SUSPEND);
  g_calls["diverge"] = 1;
  EXPECT_EQ(fake.invoke(run), KAGZI_ERR_NONDETERMINISM);
  EXPECT_FALSE(fake.output());
  EXPECT_FALSE(fake.error());
}

TEST(Workflow, ContextInsideAStepIsMisuse) {
  FakeRun fake("{}");
  EXPECT_EQ(fake.invoke(FindWorkflow("nested", 1)), KAGZI_ERR_MISUSE);
  ASSERT_EQ(fake.logs.size(), 1u);  // logging from a step is allowed
  EXPECT_EQ(fake.logs[0].second, "inside");
  EXPECT_FALSE(fake.journal.count("inner"));
}

TEST(Workflow, OversizedResultFailsTheStep) {
  FakeRun fake("{}");
  fake.result_limit = 100;
  EXPECT_EQ(fake.invoke(FindWorkflow("oversized", 1)), KAGZI_ERR_PERMANENT);
  EXPECT_EQ(fake.journal.at("big").status, KAGZI_ERR_PERMANENT);
  EXPECT_EQ(fake.error()->rfind("step 'big' failed: step result refused", 0), 0u) << *fake.error();
}

// ---------------------------------------------------------------------------
// The plugin entry
// ---------------------------------------------------------------------------

TEST(PluginEntry, ListsEveryWorkflowOnce) {
  const kagzi_plugin* plugin = kagzi_plugin_entry(1, 0);
  ASSERT_NE(plugin, nullptr);
  EXPECT_EQ(plugin->struct_size, sizeof(kagzi_plugin));
  EXPECT_EQ(plugin->abi_major, KAGZI_ABI_MAJOR);
  EXPECT_EQ(plugin->abi_minor, KAGZI_ABI_MINOR);
  EXPECT_STREQ(plugin->name, "kagzi-hpp-test");
  EXPECT_STREQ(plugin->version, "0.0.1");
  EXPECT_EQ(plugin->reserved0, 0u);
  EXPECT_EQ(plugin->init, nullptr);
  EXPECT_EQ(plugin->deinit, nullptr);
  EXPECT_EQ(plugin->get_extension, nullptr);
  std::vector<std::string> names;
  for (std::uint32_t i = 0; i < plugin->workflow_count; ++i) {
    const kagzi_workflow& w = plugin->workflows[i];
    EXPECT_EQ(w.struct_size, sizeof(kagzi_workflow));
    EXPECT_EQ(w.abi_major, KAGZI_ABI_MAJOR);
    EXPECT_EQ(w.abi_minor, KAGZI_ABI_MINOR);
    EXPECT_EQ(w.reserved0, 0u);
    EXPECT_EQ(w.timeout_ms, 0u);  // KAGZI_WORKFLOW: no default deadline
    EXPECT_NE(w.run, nullptr);
    names.push_back(std::string(w.name) + "@" + std::to_string(w.version));
  }
  EXPECT_EQ(names, (std::vector<std::string>{"typed@1", "catcher@1", "thrower@1", "sleeper@1",
                                             "swallower@1", "diverger@1", "nested@1", "oversized@1",
                                             "with-dash@2"}));
  // Same descriptor every time, and any 1.x host is accepted.
  EXPECT_EQ(kagzi_plugin_entry(1, 9), plugin);
}

TEST(PluginEntry, RefusesAnotherMajor) {
  EXPECT_EQ(kagzi_plugin_entry(0, 0), nullptr);
  EXPECT_EQ(kagzi_plugin_entry(2, 0), nullptr);
}

TEST(PluginEntry, RunRefusesAHostTableFromAnotherMajor) {
  kagzi_host table{};
  table.struct_size = sizeof(kagzi_host);
  table.abi_major = 2;
  EXPECT_EQ(FindWorkflow("with-dash", 2)(&table, nullptr, nullptr), KAGZI_ERR_PERMANENT);
}

}  // namespace
