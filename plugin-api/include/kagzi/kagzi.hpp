// kagzi/kagzi.hpp -- header-only C++20 wrapper over the Kagzi plugin ABI (kagzi/plugin.h).
//
// Purpose: write a durable workflow as ordinary C++. The wrapper turns the C
// callbacks of plugin.h into a Context object, JSON text into typed values, and
// exceptions into status codes, and generates the C entry points:
//
//   #include <kagzi/kagzi.hpp>
//
//   KAGZI_WORKFLOW(welcome_email, 1, ctx, input) {
//     const auto email = input.at("email").as<std::string>();
//     auto user_id = ctx.step("create-user", [&] { return create_user(email); });
//     ctx.sleep("wait", std::chrono::seconds(5));
//     ctx.step("send-email", [&] { send_email(user_id); });
//     return kagzi::Json{{"user_id", user_id}};
//   }
//
//   KAGZI_PLUGIN("welcome", "1.0.0");
//
// The replay rules of plugin.h apply unchanged (read its EXECUTION MODEL): the
// workflow body runs from the top every time a daemon claims the run, so code
// outside steps must be deterministic, step ids must be unique within a run,
// and step functions run at least once. docs/plugin-guide.md is the tutorial.
//
// THREADS. A workflow body runs on a host executor thread; different runs of
// the same workflow run concurrently, so anything shared between runs must be
// thread-safe. A Context belongs to one invocation of one run: use it only on
// the thread that runs the body, never store it, never hand it to another
// thread. Inside a step function only Context::log*, run_id(), input() and
// input_text() may be used; step() and sleep() there end the run with
// KAGZI_ERR_MISUSE. The step functions of parallel(), parallel_outcomes() and
// parallel_map() run on host worker threads, at the same time: they must not
// share unsynchronized mutable state (parallel_map() calls one function object
// from several threads, through a const reference). A context call from such a
// thread is refused by the wrapper (the step fails PERMANENT) without reaching
// the host. Json, the codecs and the exception types are ordinary value types
// with no shared state; the wrapper itself keeps none.
//
// OWNERSHIP. Everything the wrapper hands out is owned by the caller (values are
// decoded into fresh objects) except the std::string_view / const Json&
// accessors of Context, which borrow host memory or the Context and are valid
// until the workflow body returns.
//
// ERRORS. Inside a step function, throw RetryableError or PermanentError to
// fail the step with that status and message. Any other std::exception fails
// it as RETRYABLE (steps do I/O, and most I/O failures are transient; whether
// a retryable failure is retried is the host's policy); an exception not
// derived from std::exception fails it as PERMANENT. Context::step() throws
// StepError when the step failed (now, or as recorded by an earlier
// invocation); the workflow may catch it and go on. An exception escaping the
// workflow body fails the run: Error subclasses (StepError included) with
// their own status, anything else PERMANENT (workflow code is deterministic,
// so retrying it would fail again). No exception ever crosses the C ABI: the
// generated run functions and step trampolines are noexcept and catch
// everything, and kagzi_plugin_entry() calls only noexcept code.
//
// CANCELLATION (ABI 1.1). When the run is cancelled (kagzictl cancel), the next
// context call throws kagzi::Cancelled, an Error (so also a std::exception).
// Catch it to run cleanup steps (further context calls work again), then
// rethrow. However the body ends after that, the run ends CANCELLED: the
// generated run function returns KAGZI_ERR_CANCELLED (unless the host ended
// the invocation meanwhile, e.g. SUSPEND in a cleanup step's retry).
//
// ABI 1.1 FEATURES. step(id, fn, RetryPolicy), wait_for_event(), call_child(),
// parallel() / parallel_outcomes() / parallel_map(), now(), random() and
// KAGZI_WORKFLOW_WITH_TIMEOUT need a host of ABI 1.1 or newer. Against a 1.0
// host table they call nothing and throw PermanentError("host ABI 1.0 lacks
// <callback> (<feature>)"); everything else works with any 1.x host.
//
// SUSPENSION. When the host says the invocation must stop (KAGZI_SUSPEND after a
// sleep, an event or child wait, a pending retry, a lost lease or a drain;
// KAGZI_ERR_NONDETERMINISM; KAGZI_ERR_MISUSE; any status this wrapper does not
// expect from that call),
// Context throws an internal exception that is NOT derived from std::exception,
// so `catch (const std::exception&)` never swallows it. It unwinds to the
// generated run function, which returns that status. A `catch (...)` in
// workflow code MUST rethrow (`catch (...) { cleanup(); throw; }`). Should one
// swallow it anyway, the Context remembers the status, refuses every further
// host call, and the run still ends with it.
//
// CODECS. Values cross the ABI as JSON text. kagzi::Codec<T> (text level:
// encode(const T&) -> std::string, decode(std::string_view) -> T) is the
// customization point for user types; kagzi::JsonConvert<T> (value level:
// to_json(const T&) -> Json, from_json(const Json&) -> T) is an optional,
// cheaper one. Either makes T usable as a step result and inside std::vector,
// std::optional and std::map<std::string, T>. Built in: bool, integer types
// (not the character types), floating-point types, std::string, std::nullptr_t,
// Json, std::vector<T>, std::optional<T> (nullopt <-> null) and
// std::map<std::string, T>. Decoding errors throw CodecError (a PermanentError).
//
// REGISTRATION. KAGZI_WORKFLOW registers into a list private to the shared
// object (its accessor has hidden visibility, so two plugins never share it,
// whatever the build flags); KAGZI_PLUGIN defines kagzi_plugin_entry(), which
// turns that list into the static descriptor the host reads. Use KAGZI_PLUGIN
// in exactly one source file of a plugin.
//
// The JSON parser and writer are RapidJSON's (header-only; Debian: rapidjson-dev).
#ifndef KAGZI_KAGZI_HPP
#define KAGZI_KAGZI_HPP

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "kagzi/kagzi.hpp needs C++20 (-std=c++20); C plugins include kagzi/plugin.h only"
#endif
#if !defined(__cpp_exceptions)
#error "kagzi/kagzi.hpp needs C++ exceptions (do not build with -fno-exceptions)"
#endif

#include <array>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <kagzi/plugin.h>

#if defined(__GNUC__) || defined(__clang__)
#define KAGZI_HIDDEN __attribute__((visibility("hidden")))
#else
#define KAGZI_HIDDEN
#endif

namespace kagzi {

// ---------------------------------------------------------------------------
// Status codes and log levels (the values of plugin.h, as enum classes)
// ---------------------------------------------------------------------------

enum class Status : std::int32_t {
  kOk = 0,              // KAGZI_OK
  kSuspend = 1,         // KAGZI_SUSPEND
  kRetryable = 2,       // KAGZI_ERR_RETRYABLE
  kPermanent = 3,       // KAGZI_ERR_PERMANENT
  kNondeterminism = 4,  // KAGZI_ERR_NONDETERMINISM
  kMisuse = 5,          // KAGZI_ERR_MISUSE
  kTimeout = 6,         // KAGZI_ERR_TIMEOUT (ABI 1.1)
  kCancelled = 7,       // KAGZI_ERR_CANCELLED (ABI 1.1)
};

enum class LogLevel : std::int32_t {
  kDebug = 0,  // KAGZI_LOG_DEBUG
  kInfo = 1,   // KAGZI_LOG_INFO
  kWarn = 2,   // KAGZI_LOG_WARN
  kError = 3,  // KAGZI_LOG_ERROR
};

static_assert(static_cast<kagzi_status>(Status::kOk) == KAGZI_OK);
static_assert(static_cast<kagzi_status>(Status::kSuspend) == KAGZI_SUSPEND);
static_assert(static_cast<kagzi_status>(Status::kRetryable) == KAGZI_ERR_RETRYABLE);
static_assert(static_cast<kagzi_status>(Status::kPermanent) == KAGZI_ERR_PERMANENT);
static_assert(static_cast<kagzi_status>(Status::kNondeterminism) == KAGZI_ERR_NONDETERMINISM);
static_assert(static_cast<kagzi_status>(Status::kMisuse) == KAGZI_ERR_MISUSE);
static_assert(static_cast<kagzi_status>(Status::kTimeout) == KAGZI_ERR_TIMEOUT);
static_assert(static_cast<kagzi_status>(Status::kCancelled) == KAGZI_ERR_CANCELLED);
static_assert(static_cast<std::int32_t>(LogLevel::kDebug) == KAGZI_LOG_DEBUG);
static_assert(static_cast<std::int32_t>(LogLevel::kInfo) == KAGZI_LOG_INFO);
static_assert(static_cast<std::int32_t>(LogLevel::kWarn) == KAGZI_LOG_WARN);
static_assert(static_cast<std::int32_t>(LogLevel::kError) == KAGZI_LOG_ERROR);

// ---------------------------------------------------------------------------
// Exceptions
// ---------------------------------------------------------------------------

// Base of the wrapper's exceptions; status() is kRetryable or kPermanent, or
// for Cancelled and some StepErrors kCancelled.
class Error : public std::runtime_error {
 public:
  Status status() const noexcept { return status_; }

 protected:
  Error(Status status, const std::string& message) : std::runtime_error(message), status_(status) {}

 private:
  Status status_;
};

// Throw from a step function (or the workflow body) for a failure that may
// succeed if tried again: a timeout, a refused connection, HTTP 503.
class RetryableError : public Error {
 public:
  explicit RetryableError(const std::string& message) : Error(Status::kRetryable, message) {}
};

// Throw for a failure that will not succeed if tried again: bad input, a
// refused payment, a missing account.
class PermanentError : public Error {
 public:
  explicit PermanentError(const std::string& message) : Error(Status::kPermanent, message) {}
};

// A value does not encode to JSON (NaN, invalid UTF-8) or JSON text does not
// decode to the requested type. Permanent: the same bytes fail the same way.
class CodecError : public PermanentError {
 public:
  explicit CodecError(const std::string& message) : PermanentError(message) {}
};

// Thrown by Context::step() (and sleep()) when the step failed, now or in an
// earlier invocation as recorded in the journal; with a RetryPolicy, once its
// attempts are exhausted (status kRetryable, the last attempt's message) or at
// once on a permanent failure. Also thrown by call_child() when the child run
// failed (kPermanent, the child's error) or was cancelled (kCancelled), and for
// each failed element of parallel(). what() reads
// "step '<id>' failed: <message>". Copying never throws.
class StepError : public Error {
 public:
  StepError(std::string step_id, Status status, std::string message)
      : Error(status, "step '" + step_id + "' failed: " + message),
        detail_(std::make_shared<const Detail>(Detail{std::move(step_id), std::move(message)})) {}

  const std::string& step_id() const noexcept { return detail_->step_id; }
  // The step's own message, as the step function wrote it (for a child: the
  // child run's error).
  const std::string& message() const noexcept { return detail_->message; }
  bool retryable() const noexcept { return status() == Status::kRetryable; }
  // call_child(): the child run was cancelled (this run was not).
  bool cancelled() const noexcept { return status() == Status::kCancelled; }

 private:
  struct Detail {
    std::string step_id;
    std::string message;
  };
  std::shared_ptr<const Detail> detail_;
};

// Thrown by the context call at which the host reports that this run was
// cancelled (ABI 1.1, kagzictl cancel). Catch it to run cleanup steps (every
// later context call works again), then rethrow; whatever the body does after
// it, the run ends CANCELLED. reason() is the host's text, possibly empty.
class Cancelled : public Error {
 public:
  explicit Cancelled(std::string reason)
      : Error(Status::kCancelled,
              reason.empty() ? std::string("run cancelled") : "run cancelled: " + reason),
        reason_(std::make_shared<const std::string>(std::move(reason))) {}

  const std::string& reason() const noexcept { return *reason_; }

 private:
  std::shared_ptr<const std::string> reason_;
};

// ---------------------------------------------------------------------------
// Codec customization points
// ---------------------------------------------------------------------------

class Json;

// Value-level conversion, specialized for the built-in types. Specialize it for
// your own type when you like building Json better than writing text:
//   template <> struct kagzi::JsonConvert<Point> {
//     static kagzi::Json to_json(const Point& p) { return {{"x", p.x}, {"y", p.y}}; }
//     static Point from_json(const kagzi::Json& j) {
//       return {j.at("x").as<int>(), j.at("y").as<int>()};
//     }
//   };
template <class T>
struct JsonConvert;

// Text-level codec: the customization point the step machinery uses. Defined
// for every type with a JsonConvert; specialize it for your own type:
//   template <> struct kagzi::Codec<User> {
//     static std::string encode(const User& u);      // one JSON value
//     static User decode(std::string_view json);     // throw CodecError on bad input
//   };
template <class T>
struct Codec;

namespace detail {

template <class T>
concept HasJsonConvert = requires(const T& value, const Json& json) {
  { JsonConvert<T>::to_json(value) } -> std::convertible_to<Json>;
  { JsonConvert<T>::from_json(json) } -> std::convertible_to<T>;
};

template <class T>
concept HasCodec = requires(const T& value, std::string_view text) {
  { Codec<T>::encode(value) } -> std::convertible_to<std::string>;
  { Codec<T>::decode(text) } -> std::convertible_to<T>;
};

// T can be a step result, and an element of the built-in containers.
template <class T>
concept JsonValue = HasJsonConvert<T> || HasCodec<T>;

template <class T>
concept CharLike = std::same_as < std::remove_cv_t<T>,
char > || std::same_as<std::remove_cv_t<T>, wchar_t> ||
    std::same_as<std::remove_cv_t<T>, char8_t> || std::same_as<std::remove_cv_t<T>, char16_t> ||
    std::same_as<std::remove_cv_t<T>, char32_t>;

// The integer types JSON numbers convert to (not bool, not the character types).
template <class T>
concept JsonInteger = std::integral<T> && !std::same_as<std::remove_cv_t<T>, bool> && !CharLike<T>;

// Class types Json converts from implicitly through JsonConvert.
template <class T>
concept JsonConvertibleClass =
    !std::same_as<T, Json> && !std::is_arithmetic_v<T> && !std::is_pointer_v<T> &&
    !std::same_as<T, std::nullptr_t> && !std::is_convertible_v<const T&, std::string_view> &&
    HasJsonConvert<T>;

struct JsonAccess;

}  // namespace detail

// ---------------------------------------------------------------------------
// Json: a small owning JSON value
// ---------------------------------------------------------------------------

// A JSON value with value semantics: null, bool, number, string, array or
// object. Objects keep their members in insertion order and their keys unique
// (a repeated key replaces the earlier value, as in PostgreSQL jsonb). Numbers
// keep their kind: integers that fit std::int64_t (or std::uint64_t) stay
// exact, everything else is a double.
//
//   kagzi::Json user{{"id", 42}, {"name", "Ada"}, {"tags", kagzi::Json::array({"a", "b"})}};
//   user["verified"] = true;
//   int id = user.at("id").as<int>();
//   std::string text = user.dump();   // {"id":42,"name":"Ada","tags":["a","b"],"verified":true}
//
// Reading never inserts: the const operator[] returns a null Json for a
// missing key or index; at() throws CodecError naming what is missing. Not
// thread-safe for concurrent writes (like std::vector).
class Json {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  struct Member;  // {std::string key; Json value;}, defined below.
  using Array = std::vector<Json>;
  using Object = std::vector<Member>;

  // Nesting deeper than this is refused by parse() and dump() (CodecError),
  // so hostile input cannot exhaust the executor thread's stack.
  static constexpr int kMaxDepth = 512;

  Json() noexcept;                // null
  Json(std::nullptr_t) noexcept;  // NOLINT(google-explicit-constructor)
  Json(bool value) noexcept;      // NOLINT(google-explicit-constructor)
  template <detail::JsonInteger T>
  Json(T value) noexcept;  // NOLINT(google-explicit-constructor)
  template <std::floating_point T>
  Json(T value) noexcept;            // NOLINT(google-explicit-constructor)
  Json(const char* value);           // NOLINT(google-explicit-constructor)
  Json(std::string_view value);      // NOLINT(google-explicit-constructor)
  Json(std::string value) noexcept;  // NOLINT(google-explicit-constructor)
  // An object: Json{{"a", 1}, {"b", "two"}}.
  Json(std::initializer_list<Member> members);
  // Any type with a JsonConvert (std::vector<int>, std::optional<std::string>, ...).
  template <detail::JsonConvertibleClass T>
  Json(const T& value);  // NOLINT(google-explicit-constructor)
  // Stray pointers would silently become bool, and characters would become
  // numbers or bool: refuse both at compile time.
  Json(const void*) = delete;
  template <detail::CharLike T>
  Json(T) = delete;

  Json(const Json& other);
  Json(Json&& other) noexcept;
  Json& operator=(const Json& other);
  Json& operator=(Json&& other) noexcept;
  ~Json();

  static Json array(std::initializer_list<Json> items = {});
  static Json array(Array items);
  static Json object();

  // Parses one JSON value (RFC 8259, UTF-8). Throws CodecError with the
  // offset and reason on invalid text, trailing content or deep nesting.
  static Json parse(std::string_view text);
  // Converts any value with a JsonConvert or a Codec.
  template <class T>
  static Json from(const T& value);
  // Compact JSON text. Throws CodecError for NaN/infinity or invalid UTF-8.
  std::string dump() const;

  Type type() const noexcept;
  bool is_null() const noexcept { return type() == Type::kNull; }
  bool is_bool() const noexcept { return type() == Type::kBool; }
  bool is_number() const noexcept { return type() == Type::kNumber; }
  // A number held exactly as an integer (1 is, 1.0 and 1e3 are not).
  bool is_integer() const noexcept {
    return std::holds_alternative<std::int64_t>(value_) ||
           std::holds_alternative<std::uint64_t>(value_);
  }
  bool is_string() const noexcept { return type() == Type::kString; }
  bool is_array() const noexcept { return type() == Type::kArray; }
  bool is_object() const noexcept { return type() == Type::kObject; }
  // "null", "bool", "number", "string", "array" or "object".
  const char* type_name() const noexcept;

  // Decodes this value as T (JsonConvert or Codec). Throws CodecError.
  template <class T>
  T as() const;
  // Member `key` as T, or `fallback` when this is not an object, the member is
  // missing, or it is null. Throws CodecError when present but not a T.
  template <class T>
  T value(std::string_view key, const T& fallback) const;
  std::string value(std::string_view key, const char* fallback) const;

  // Objects. The const forms never insert.
  bool contains(std::string_view key) const noexcept { return find(key) != nullptr; }
  const Json* find(std::string_view key) const noexcept;
  Json* find(std::string_view key) noexcept;
  const Json& operator[](std::string_view key) const noexcept;  // null if absent
  const Json& at(std::string_view key) const;                   // CodecError if absent
  // Inserts a null member if absent; a null Json becomes an empty object first.
  // Throws CodecError when this is neither null nor an object.
  Json& operator[](std::string_view key);
  // Removes member `key`; returns whether it was there.
  bool erase(std::string_view key);

  // Arrays.
  const Json& operator[](std::size_t index) const noexcept;  // null if out of range
  const Json& at(std::size_t index) const;                   // CodecError if out of range
  Json& operator[](std::size_t index);  // CodecError if not an array or out of range
  // Appends; a null Json becomes an empty array first. CodecError otherwise.
  void push_back(Json item);

  // Elements of an array or members of an object; 0 for the other types.
  std::size_t size() const noexcept;
  bool empty() const noexcept { return size() == 0; }
  // The array's elements / the object's members; CodecError for another type.
  const Array& array_items() const;
  Array& array_items();
  const Object& object_items() const;
  Object& object_items();

  // Structural equality; object member order does not matter, numbers compare
  // by value (1 == 1.0).
  friend bool operator==(const Json& a, const Json& b) noexcept;

 private:
  friend struct detail::JsonAccess;
  using Value = std::variant<std::nullptr_t, bool, std::int64_t, std::uint64_t, double, std::string,
                             Array, Object>;

  Json& set(std::string_view key, Json value);
  template <class Writer>
  void write(Writer& writer, int depth) const;

  Value value_;
};

struct Json::Member {
  std::string key;
  Json value;
};

// Json's constructors and special members are defined here, where Member is
// complete (some compilers instantiate std::variant's members eagerly).
inline Json::Json() noexcept = default;
inline Json::Json(std::nullptr_t) noexcept {}
inline Json::Json(bool value) noexcept : value_(std::in_place_type<bool>, value) {}
// emplace<std::uint64_t> cannot throw.
template <detail::JsonInteger T>
Json::Json(T value) noexcept  // NOLINT(bugprone-exception-escape)
    : value_(std::in_place_type<std::int64_t>, static_cast<std::int64_t>(value)) {
  if constexpr (std::is_unsigned_v<T>) {
    // Above INT64_MAX, keep the exact value as a uint64.
    if (!std::in_range<std::int64_t>(value)) {
      value_.emplace<std::uint64_t>(static_cast<std::uint64_t>(value));
    }
  }
}
template <std::floating_point T>
Json::Json(T value) noexcept : value_(std::in_place_type<double>, static_cast<double>(value)) {}
inline Json::Json(const char* value) : value_(std::in_place_type<std::string>, value) {}
inline Json::Json(std::string_view value) : value_(std::in_place_type<std::string>, value) {}
inline Json::Json(std::string value) noexcept
    : value_(std::in_place_type<std::string>, std::move(value)) {}
inline Json::Json(const Json& other) = default;
inline Json::Json(Json&& other) noexcept = default;
inline Json& Json::operator=(const Json& other) = default;
inline Json& Json::operator=(Json&& other) noexcept = default;
inline Json::~Json() = default;

inline Json Json::array(std::initializer_list<Json> items) { return array(Array(items)); }
inline Json Json::array(Array items) {
  Json json;
  json.value_ = std::move(items);
  return json;
}
inline Json Json::object() {
  Json json;
  json.value_ = Object();
  return json;
}

namespace detail {

struct JsonAccess {
  static const Json::Value& value(const Json& json) noexcept { return json.value_; }
  static bool numbers_equal(const Json::Value& a, const Json::Value& b) noexcept {
    const auto* ai = std::get_if<std::int64_t>(&a);
    const auto* au = std::get_if<std::uint64_t>(&a);
    const auto* bi = std::get_if<std::int64_t>(&b);
    const auto* bu = std::get_if<std::uint64_t>(&b);
    if ((ai || au) && (bi || bu)) {
      // Integers are normalized: a uint64 alternative is always > INT64_MAX.
      if (ai && bi) return *ai == *bi;
      if (au && bu) return *au == *bu;
      return false;
    }
    auto to_double = [](const Json::Value& v) {
      if (const auto* i = std::get_if<std::int64_t>(&v)) return static_cast<double>(*i);
      if (const auto* u = std::get_if<std::uint64_t>(&v)) return static_cast<double>(*u);
      return *std::get_if<double>(&v);
    };
    return to_double(a) == to_double(b);
  }
};

// The shared null returned by the const lookups.
KAGZI_HIDDEN inline const Json& NullJson() noexcept {
  static const Json kNull;
  return kNull;
}

// SAX handler for rapidjson::Reader that builds a Json without recursion.
class JsonBuilder {
 public:
  using Ch = char;

  bool Null() { return add(Json()); }
  bool Bool(bool b) { return add(Json(b)); }
  bool Int(int i) { return add(Json(i)); }
  bool Uint(unsigned u) { return add(Json(u)); }
  bool Int64(std::int64_t i) { return add(Json(i)); }
  bool Uint64(std::uint64_t u) { return add(Json(u)); }
  bool Double(double d) { return add(Json(d)); }
  bool RawNumber(const Ch*, rapidjson::SizeType, bool) { return false; }  // not requested
  bool String(const Ch* str, rapidjson::SizeType length, bool) {
    return add(Json(std::string(str, length)));
  }
  bool Key(const Ch* str, rapidjson::SizeType length, bool) {
    keys_.emplace_back(str, length);
    return true;
  }
  bool StartObject() { return open(Json::object()); }
  bool EndObject(rapidjson::SizeType) { return close(); }
  bool StartArray() { return open(Json::array()); }
  bool EndArray(rapidjson::SizeType) { return close(); }

  bool too_deep() const noexcept { return too_deep_; }
  Json take() { return std::move(root_); }

 private:
  bool open(Json container) {
    if (open_.size() >= static_cast<std::size_t>(Json::kMaxDepth)) {
      too_deep_ = true;
      return false;
    }
    open_.push_back(std::move(container));
    return true;
  }
  bool close() {
    Json done = std::move(open_.back());
    open_.pop_back();
    return add(std::move(done));
  }
  bool add(Json value) {
    if (open_.empty()) {
      root_ = std::move(value);
    } else if (open_.back().is_array()) {
      open_.back().push_back(std::move(value));
    } else {
      open_.back()[keys_.back()] = std::move(value);
      keys_.pop_back();
    }
    return true;
  }

  std::vector<Json> open_;         // containers being filled, innermost last
  std::vector<std::string> keys_;  // pending member names, innermost last
  Json root_;
  bool too_deep_ = false;
};

using JsonTextWriter =
    rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>,
                      rapidjson::CrtAllocator, rapidjson::kWriteValidateEncodingFlag>;

}  // namespace detail

inline Json::Json(std::initializer_list<Member> members) : value_(Object()) {
  for (const Member& member : members) set(member.key, member.value);
}

inline Json::Type Json::type() const noexcept {
  switch (value_.index()) {
    case 0:
      return Type::kNull;
    case 1:
      return Type::kBool;
    case 2:
    case 3:
    case 4:
      return Type::kNumber;
    case 5:
      return Type::kString;
    case 6:
      return Type::kArray;
    default:
      return Type::kObject;
  }
}

inline const char* Json::type_name() const noexcept {
  switch (type()) {
    case Type::kNull:
      return "null";
    case Type::kBool:
      return "bool";
    case Type::kNumber:
      return "number";
    case Type::kString:
      return "string";
    case Type::kArray:
      return "array";
    case Type::kObject:
      return "object";
  }
  return "unknown";
}

inline const Json* Json::find(std::string_view key) const noexcept {
  if (const auto* object = std::get_if<Object>(&value_)) {
    for (const Member& member : *object) {
      if (member.key == key) return &member.value;
    }
  }
  return nullptr;
}

inline Json* Json::find(std::string_view key) noexcept {
  return const_cast<Json*>(static_cast<const Json&>(*this).find(key));
}

inline const Json& Json::operator[](std::string_view key) const noexcept {
  const Json* found = find(key);
  return found != nullptr ? *found : detail::NullJson();
}

inline const Json& Json::at(std::string_view key) const {
  if (!is_object()) {
    throw CodecError("expected an object with member '" + std::string(key) + "', got " +
                     type_name());
  }
  const Json* found = find(key);
  if (found == nullptr) throw CodecError("missing member '" + std::string(key) + "'");
  return *found;
}

inline Json& Json::operator[](std::string_view key) {
  if (is_null()) value_ = Object();
  if (!is_object()) {
    throw CodecError("cannot set member '" + std::string(key) + "' on a " + type_name());
  }
  if (Json* found = find(key)) return *found;
  auto& object = std::get<Object>(value_);
  object.push_back(Member{std::string(key), Json()});
  return object.back().value;
}

inline Json& Json::set(std::string_view key, Json value) {
  Json& slot = (*this)[key];
  slot = std::move(value);
  return slot;
}

inline bool Json::erase(std::string_view key) {
  auto* object = std::get_if<Object>(&value_);
  if (object == nullptr) return false;
  for (auto it = object->begin(); it != object->end(); ++it) {
    if (it->key == key) {
      object->erase(it);
      return true;
    }
  }
  return false;
}

inline const Json& Json::operator[](std::size_t index) const noexcept {
  const auto* array = std::get_if<Array>(&value_);
  return array != nullptr && index < array->size() ? (*array)[index] : detail::NullJson();
}

inline const Json& Json::at(std::size_t index) const {
  const Array& array = array_items();
  if (index >= array.size()) {
    throw CodecError("index " + std::to_string(index) + " out of range for an array of " +
                     std::to_string(array.size()));
  }
  return array[index];
}

inline Json& Json::operator[](std::size_t index) {
  static_cast<void>(static_cast<const Json&>(*this).at(index));  // checks type and range
  return std::get<Array>(value_)[index];
}

inline void Json::push_back(Json item) {
  if (is_null()) value_ = Array();
  auto* array = std::get_if<Array>(&value_);
  if (array == nullptr) throw CodecError(std::string("cannot append to a ") + type_name());
  array->push_back(std::move(item));
}

inline std::size_t Json::size() const noexcept {
  if (const auto* array = std::get_if<Array>(&value_)) return array->size();
  if (const auto* object = std::get_if<Object>(&value_)) return object->size();
  return 0;
}

inline const Json::Array& Json::array_items() const {
  if (const auto* array = std::get_if<Array>(&value_)) return *array;
  throw CodecError(std::string("expected an array, got ") + type_name());
}

inline Json::Array& Json::array_items() {
  return const_cast<Array&>(static_cast<const Json&>(*this).array_items());
}

inline const Json::Object& Json::object_items() const {
  if (const auto* object = std::get_if<Object>(&value_)) return *object;
  throw CodecError(std::string("expected an object, got ") + type_name());
}

inline Json::Object& Json::object_items() {
  return const_cast<Object&>(static_cast<const Json&>(*this).object_items());
}

inline bool operator==(const Json& a, const Json& b) noexcept {  // NOLINT(misc-no-recursion)
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case Json::Type::kNull:
      return true;
    case Json::Type::kBool:
      return *std::get_if<bool>(&a.value_) == *std::get_if<bool>(&b.value_);
    case Json::Type::kNumber:
      return detail::JsonAccess::numbers_equal(a.value_, b.value_);
    case Json::Type::kString:
      return *std::get_if<std::string>(&a.value_) == *std::get_if<std::string>(&b.value_);
    case Json::Type::kArray:
      return *std::get_if<Json::Array>(&a.value_) == *std::get_if<Json::Array>(&b.value_);
    case Json::Type::kObject: {
      const auto& members = *std::get_if<Json::Object>(&a.value_);
      if (members.size() != b.size()) return false;
      for (const Json::Member& member : members) {
        const Json* other = b.find(member.key);
        if (other == nullptr || !(*other == member.value)) return false;
      }
      return true;
    }
  }
  return false;
}

inline Json Json::parse(std::string_view text) {
  if (text.empty()) throw CodecError("invalid JSON: empty text");
  // A raw NUL cannot appear in JSON text, and RapidJSON would read it as the end.
  if (std::memchr(text.data(), '\0', text.size()) != nullptr) {
    throw CodecError("invalid JSON: contains a NUL byte");
  }
  constexpr unsigned kFlags = rapidjson::kParseIterativeFlag | rapidjson::kParseFullPrecisionFlag |
                              rapidjson::kParseValidateEncodingFlag;
  detail::JsonBuilder builder;
  rapidjson::MemoryStream stream(text.data(), text.size());
  rapidjson::Reader reader;
  const rapidjson::ParseResult result = reader.Parse<kFlags>(stream, builder);
  if (!result) {
    if (builder.too_deep()) {
      throw CodecError("invalid JSON: nesting deeper than " + std::to_string(kMaxDepth));
    }
    throw CodecError("invalid JSON at offset " + std::to_string(result.Offset()) + ": " +
                     rapidjson::GetParseError_En(result.Code()));
  }
  return builder.take();
}

// Recursion is bounded by kMaxDepth.
template <class Writer>
void Json::write(Writer& writer, int depth) const {  // NOLINT(misc-no-recursion)
  if (depth > kMaxDepth) throw CodecError("cannot encode JSON nested deeper than 512");
  auto checked_size = [](const std::string& s) {
    if (s.size() > std::numeric_limits<rapidjson::SizeType>::max()) {
      throw CodecError("cannot encode a JSON string of 4 GiB or more");
    }
    return static_cast<rapidjson::SizeType>(s.size());
  };
  bool ok = true;
  switch (value_.index()) {
    case 0:
      ok = writer.Null();
      break;
    case 1:
      ok = writer.Bool(std::get<bool>(value_));
      break;
    case 2:
      ok = writer.Int64(std::get<std::int64_t>(value_));
      break;
    case 3:
      ok = writer.Uint64(std::get<std::uint64_t>(value_));
      break;
    case 4:
      if (!std::isfinite(std::get<double>(value_))) {
        throw CodecError("cannot encode NaN or infinity as JSON");
      }
      ok = writer.Double(std::get<double>(value_));
      break;
    case 5: {
      const auto& s = std::get<std::string>(value_);
      if (!writer.String(s.data(), checked_size(s))) {
        throw CodecError("cannot encode a string that is not valid UTF-8");
      }
      break;
    }
    case 6:
      writer.StartArray();
      for (const Json& item : std::get<Array>(value_)) item.write(writer, depth + 1);
      ok = writer.EndArray();
      break;
    default:
      writer.StartObject();
      for (const Member& member : std::get<Object>(value_)) {
        if (!writer.Key(member.key.data(), checked_size(member.key))) {
          throw CodecError("cannot encode an object key that is not valid UTF-8");
        }
        member.value.write(writer, depth + 1);
      }
      ok = writer.EndObject();
      break;
  }
  if (!ok) throw CodecError("cannot encode value as JSON");
}

inline std::string Json::dump() const {
  rapidjson::StringBuffer buffer;
  detail::JsonTextWriter writer(buffer);
  write(writer, 1);
  return std::string(buffer.GetString(), buffer.GetSize());
}

// ---------------------------------------------------------------------------
// Built-in conversions
// ---------------------------------------------------------------------------

namespace detail {

template <class T>
Json ToJson(const T& value) {
  if constexpr (HasJsonConvert<T>) {
    return JsonConvert<T>::to_json(value);
  } else {
    static_assert(HasCodec<T>, "kagzi: no codec for this type; specialize kagzi::Codec<T>");
    return Json::parse(Codec<T>::encode(value));
  }
}

template <class T>
T FromJson(const Json& json) {
  if constexpr (HasJsonConvert<T>) {
    return JsonConvert<T>::from_json(json);
  } else {
    static_assert(HasCodec<T>, "kagzi: no codec for this type; specialize kagzi::Codec<T>");
    return Codec<T>::decode(json.dump());
  }
}

// Narrows an integer to T, or throws CodecError naming the value.
template <class T, class Integer>
T NarrowInteger(Integer value) {
  if (!std::in_range<T>(value)) {
    throw CodecError("integer " + std::to_string(value) +
                     " is out of range for the requested type");
  }
  return static_cast<T>(value);
}

template <class T>
T JsonToInteger(const Json& json) {
  const auto& value = JsonAccess::value(json);
  if (const auto* i = std::get_if<std::int64_t>(&value)) return NarrowInteger<T>(*i);
  if (const auto* u = std::get_if<std::uint64_t>(&value)) return NarrowInteger<T>(*u);
  if (const auto* d = std::get_if<double>(&value)) {
    // Accept an integral double (3.0, 1e3) when it fits exactly.
    constexpr double kTwo63 = 9223372036854775808.0;
    constexpr double kTwo64 = 18446744073709551616.0;
    if (std::isfinite(*d) && std::trunc(*d) == *d) {
      if (*d >= -kTwo63 && *d < kTwo63) return NarrowInteger<T>(static_cast<std::int64_t>(*d));
      if (*d >= 0 && *d < kTwo64) return NarrowInteger<T>(static_cast<std::uint64_t>(*d));
    }
    throw CodecError("expected an integer, got " + Json(*d).dump());
  }
  throw CodecError(std::string("expected an integer, got ") + json.type_name());
}

}  // namespace detail

template <>
struct JsonConvert<Json> {
  static Json to_json(const Json& value) { return value; }
  static Json from_json(const Json& json) { return json; }
};

template <>
struct JsonConvert<std::nullptr_t> {
  static Json to_json(std::nullptr_t) { return Json(); }
  static std::nullptr_t from_json(const Json& json) {
    if (!json.is_null()) throw CodecError(std::string("expected null, got ") + json.type_name());
    return nullptr;
  }
};

template <>
struct JsonConvert<bool> {
  static Json to_json(bool value) { return Json(value); }
  static bool from_json(const Json& json) {
    if (const auto* b = std::get_if<bool>(&detail::JsonAccess::value(json))) return *b;
    throw CodecError(std::string("expected a bool, got ") + json.type_name());
  }
};

template <detail::JsonInteger T>
struct JsonConvert<T> {
  static Json to_json(T value) { return Json(value); }
  static T from_json(const Json& json) { return detail::JsonToInteger<T>(json); }
};

template <std::floating_point T>
struct JsonConvert<T> {
  static Json to_json(T value) { return Json(value); }
  static T from_json(const Json& json) {
    const auto& value = detail::JsonAccess::value(json);
    if (const auto* d = std::get_if<double>(&value)) return static_cast<T>(*d);
    if (const auto* i = std::get_if<std::int64_t>(&value)) return static_cast<T>(*i);
    if (const auto* u = std::get_if<std::uint64_t>(&value)) return static_cast<T>(*u);
    throw CodecError(std::string("expected a number, got ") + json.type_name());
  }
};

template <>
struct JsonConvert<std::string> {
  static Json to_json(const std::string& value) { return Json(value); }
  static std::string from_json(const Json& json) {
    if (const auto* s = std::get_if<std::string>(&detail::JsonAccess::value(json))) return *s;
    throw CodecError(std::string("expected a string, got ") + json.type_name());
  }
};

template <detail::JsonValue T>
struct JsonConvert<std::vector<T>> {
  static Json to_json(const std::vector<T>& values) {
    Json::Array items;
    items.reserve(values.size());
    for (const auto& value : values) items.push_back(detail::ToJson<T>(value));
    return Json::array(std::move(items));
  }
  static std::vector<T> from_json(const Json& json) {
    std::vector<T> values;
    values.reserve(json.array_items().size());
    for (const Json& item : json.array_items()) values.push_back(detail::FromJson<T>(item));
    return values;
  }
};

template <detail::JsonValue T>
struct JsonConvert<std::optional<T>> {
  static Json to_json(const std::optional<T>& value) {
    return value.has_value() ? detail::ToJson<T>(*value) : Json();
  }
  static std::optional<T> from_json(const Json& json) {
    if (json.is_null()) return std::nullopt;
    return detail::FromJson<T>(json);
  }
};

template <detail::JsonValue T>
struct JsonConvert<std::map<std::string, T>> {
  static Json to_json(const std::map<std::string, T>& values) {
    Json json = Json::object();
    for (const auto& [key, value] : values) json[key] = detail::ToJson<T>(value);
    return json;
  }
  static std::map<std::string, T> from_json(const Json& json) {
    std::map<std::string, T> values;
    for (const Json::Member& member : json.object_items()) {
      values.insert_or_assign(member.key, detail::FromJson<T>(member.value));
    }
    return values;
  }
};

// Every type with a JsonConvert has a text codec.
template <detail::HasJsonConvert T>
struct Codec<T> {
  static std::string encode(const T& value) { return JsonConvert<T>::to_json(value).dump(); }
  static T decode(std::string_view text) { return JsonConvert<T>::from_json(Json::parse(text)); }
};

template <>
struct Codec<Json> {
  static std::string encode(const Json& value) { return value.dump(); }
  static Json decode(std::string_view text) { return Json::parse(text); }
};

template <detail::JsonConvertibleClass T>
Json::Json(const T& value) : Json(JsonConvert<T>::to_json(value)) {}

template <class T>
Json Json::from(const T& value) {
  return detail::ToJson<T>(value);
}

template <class T>
T Json::as() const {
  return detail::FromJson<T>(*this);
}

template <class T>
T Json::value(std::string_view key, const T& fallback) const {
  const Json* found = find(key);
  if (found == nullptr || found->is_null()) return fallback;
  try {
    return found->as<T>();
  } catch (const CodecError& e) {
    throw CodecError("member '" + std::string(key) + "': " + e.what());
  }
}

inline std::string Json::value(std::string_view key, const char* fallback) const {
  return value<std::string>(key, std::string(fallback));
}

// ---------------------------------------------------------------------------
// Step machinery (internal)
// ---------------------------------------------------------------------------

class Context;

namespace detail {

// Thrown when the host ends this invocation (SUSPEND, NONDETERMINISM, MISUSE or
// a status this wrapper does not expect). Deliberately not a std::exception.
struct Unwind {
  Status status;
};

constexpr kagzi_status ToC(Status status) noexcept { return static_cast<kagzi_status>(status); }

// The size of an ABI 1.0 host table (it ends with get_run_id). A host table at
// least this large is accepted; the 1.1 callbacks are used only when the table
// says abi_minor >= 1 and is large enough to hold them.
inline constexpr std::size_t kHostSizeAbi10 =
    offsetof(kagzi_host, get_run_id) + sizeof(kagzi_host::get_run_id);

// What a step returns to the workflow for a function returning R.
template <class R>
struct StepValueOf {
  using type = std::conditional_t<std::is_same_v<std::decay_t<R>, const char*> ||
                                      std::is_same_v<std::decay_t<R>, char*> ||
                                      std::is_same_v<std::decay_t<R>, std::string_view>,
                                  std::string, std::decay_t<R>>;
};
template <>
struct StepValueOf<void> {
  using type = void;
};
template <class F>
using StepValue = typename StepValueOf<std::invoke_result_t<F&>>::type;

inline kagzi_status WriteError(const kagzi_writer* writer, Status status,
                               const char* message) noexcept {
  if (status != Status::kRetryable) status = Status::kPermanent;
  if (writer != nullptr && writer->write != nullptr && message != nullptr) {
    writer->write(writer, message, std::strlen(message));
  }
  return ToC(status);
}

inline kagzi_status WriteResult(const kagzi_writer* writer, std::string_view json) noexcept {
  if (writer == nullptr || writer->write == nullptr) return ToC(Status::kPermanent);
  // One write, so a result over the host's size limit is refused as a whole.
  if (writer->write(writer, json.data(), json.size()) != ToC(Status::kOk)) {
    return WriteError(writer, Status::kPermanent, "step result refused by the host (too large?)");
  }
  return ToC(Status::kOk);
}

// Maps the exception being handled to a step status and message.
inline kagzi_status FailStep(const kagzi_writer* writer) noexcept {
  try {
    throw;
  } catch (const Unwind&) {
    return WriteError(writer, Status::kPermanent,
                      "the run context was used inside a step function");
  } catch (const Error& e) {
    return WriteError(writer, e.status(), e.what());
  } catch (const std::exception& e) {
    return WriteError(writer, Status::kRetryable, e.what());
  } catch (...) {
    return WriteError(writer, Status::kPermanent, "unknown exception (not a std::exception)");
  }
}

// Calls fn(args...) and writes its encoded result, or its failure, through
// `result`: the body of every trampoline. Touches nothing but fn, args and the
// writer, so it is safe on any thread (parallel steps run on host workers).
template <class G, class... Args>
kagzi_status RunStepFunction(G& fn, const kagzi_writer* result, const Args&... args) noexcept {
  try {
    using V = typename StepValueOf<std::invoke_result_t<G&, const Args&...>>::type;
    if constexpr (std::is_void_v<V>) {
      fn(args...);
      return WriteResult(result, "null");
    } else {
      return WriteResult(result, Codec<V>::encode(fn(args...)));
    }
  } catch (...) {
    return FailStep(result);
  }
}

// The kagzi_step_fn for a step whose function has type F: one instantiation
// per lambda type. user points at the F (const-qualified F: called as const).
template <class F>
struct StepTrampoline {
  static kagzi_status call(void* user, const kagzi_writer* result) noexcept {
    return RunStepFunction(*static_cast<F*>(user), result);
  }
};

// The same for step_raw(): the function returns JSON text, written verbatim.
template <class F>
struct RawStepTrampoline {
  static kagzi_status call(void* user, const kagzi_writer* result) noexcept {
    try {
      F& fn = *static_cast<F*>(user);
      const std::string text(fn());
      return WriteResult(result, text.empty() ? std::string_view("null") : text);
    } catch (...) {
      return FailStep(result);
    }
  }
};

// One element of parallel_map(): the shared function and this element's item.
template <class F, class In>
struct MapCall {
  const F* fn;
  const In* item;
};

template <class F, class In>
using MapValue = typename StepValueOf<std::invoke_result_t<const F&, const In&>>::type;

template <class F, class In>
using MapResult =
    std::conditional_t<std::is_void_v<MapValue<F, In>>, void, std::vector<MapValue<F, In>>>;

// The kagzi_step_fn of parallel_map(): user points at a MapCall<F, In>.
template <class F, class In>
struct MapTrampoline {
  static kagzi_status call(void* user, const kagzi_writer* result) noexcept {
    const auto* map_call = static_cast<const MapCall<F, In>*>(user);
    return RunStepFunction(*map_call->fn, result, *map_call->item);
  }
};

template <class Rep, class Period>
std::uint64_t ToMilliseconds(std::chrono::duration<Rep, Period> duration) {
  const double ms = std::ceil(
      std::chrono::duration_cast<std::chrono::duration<double, std::milli>>(duration).count());
  if (!(ms > 0)) return 0;  // also NaN
  if (ms >= 18446744073709551615.0) return std::numeric_limits<std::uint64_t>::max();
  return static_cast<std::uint64_t>(ms);
}

// An event wait's timeout: rounded up to milliseconds, negative = 0, capped.
template <class Rep, class Period>
std::int64_t ToTimeoutMs(std::chrono::duration<Rep, Period> duration) {
  const std::uint64_t ms = ToMilliseconds(duration);
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  return static_cast<std::int64_t>(ms > kMax ? kMax : ms);
}

// A workflow's default timeout in milliseconds, or -1 when negative or out of
// range. Integers are milliseconds; durations are rounded up.
template <std::integral T>
constexpr std::int64_t WorkflowTimeoutMs(T milliseconds) noexcept {
  if constexpr (std::is_same_v<T, bool>) {
    return -1;
  } else {
    return std::in_range<std::int64_t>(milliseconds) && milliseconds >= 0
               ? static_cast<std::int64_t>(milliseconds)
               : -1;
  }
}
template <class Rep, class Period>
constexpr std::int64_t WorkflowTimeoutMs(std::chrono::duration<Rep, Period> duration) noexcept {
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(duration).count();
  return ms >= 0 ? static_cast<std::int64_t>(ms) : -1;
}

inline std::string_view OutText(const char* out, std::size_t len) noexcept {
  return out != nullptr ? std::string_view(out, len) : std::string_view();
}

// `text` as a NUL-terminated string for the host; refuses embedded NULs.
inline std::string CString(std::string_view text, const char* what) {
  if (text.find('\0') != std::string_view::npos) {
    throw PermanentError(std::string(what) + " '" + std::string(text.data()) +
                         "...' contains a NUL byte");
  }
  return std::string(text);
}

// A child run's input as JSON text: strings as JSON strings, anything else
// through its codec.
template <class In>
std::string EncodeInput(const In& input) {
  if constexpr (!JsonValue<In> && std::is_convertible_v<const In&, std::string_view>) {
    return Json(std::string_view(input)).dump();
  } else {
    return Codec<In>::encode(input);
  }
}

template <class... Args>
std::string Concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

struct ContextAccess;

}  // namespace detail

// ---------------------------------------------------------------------------
// ABI 1.1 value types: retry policies, parallel steps, outcomes
// ---------------------------------------------------------------------------

// How a step is retried when its function fails RETRYABLE (ABI 1.1; used with
// Context::step(id, fn, policy) and Par). Each failed attempt is recorded and
// the run is parked until the next attempt is due (no thread is held); after
// max_attempts the step fails with the last attempt's message. A PERMANENT
// failure is never retried. Delay before attempt n+1:
//   min(initial_interval * multiplier^(n-1), max_interval) * (1 +- jitter)
// The defaults are the daemon's defaults (which plain step() also gets).
// An aggregate: kagzi::RetryPolicy{.max_attempts = 5, .initial_interval = 200ms}.
struct RetryPolicy {
  std::uint32_t max_attempts = 3;                                        // >= 1; 1 = no retry
  std::chrono::milliseconds initial_interval = std::chrono::seconds(1);  // >= 1 ms
  std::chrono::milliseconds max_interval = std::chrono::seconds(60);     // >= initial_interval
  double multiplier = 2.0;                                               // >= 1.0
  double jitter = 0.2;                                                   // 0.0 .. 1.0

  // One attempt, no retry.
  static constexpr RetryPolicy no_retry() noexcept {
    RetryPolicy policy;
    policy.max_attempts = 1;
    return policy;
  }

  // The C struct. Throws PermanentError naming the first invalid field.
  kagzi_retry_policy to_native() const;
};

inline kagzi_retry_policy RetryPolicy::to_native() const {
  auto invalid = [](const char* why) {
    return PermanentError(std::string("invalid retry policy: ") + why);
  };
  if (max_attempts < 1) throw invalid("max_attempts must be >= 1");
  if (initial_interval.count() < 1) throw invalid("initial_interval must be >= 1 ms");
  if (max_interval < initial_interval) throw invalid("max_interval must be >= initial_interval");
  if (!std::isfinite(multiplier) || !(multiplier >= 1.0)) {
    throw invalid("multiplier must be a finite number >= 1.0");
  }
  if (!(jitter >= 0.0 && jitter <= 1.0)) throw invalid("jitter must be between 0.0 and 1.0");
  kagzi_retry_policy native{};
  native.struct_size = sizeof(kagzi_retry_policy);
  native.max_attempts = max_attempts;
  native.initial_interval_ms = static_cast<std::uint64_t>(initial_interval.count());
  native.max_interval_ms = static_cast<std::uint64_t>(max_interval.count());
  native.multiplier = multiplier;
  native.jitter = jitter;
  return native;
}

// The outcome of one step of a parallel group: its value, or the StepError it
// failed with (ABI 1.1; parallel_outcomes(), parallel_map_outcomes()).
//   auto [a, b] = ctx.parallel_outcomes(kagzi::Par("a", fa), kagzi::Par("b", fb));
//   if (a) use(a.value()); else ctx.warn(a.error()->what());
template <class T>
class Outcome {
  static_assert(!std::is_same_v<T, StepError>, "Outcome<StepError> is not supported");

 public:
  explicit Outcome(T value) : state_(std::in_place_index<0>, std::move(value)) {}
  explicit Outcome(StepError error) : state_(std::in_place_index<1>, std::move(error)) {}

  bool ok() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  // The value; throws the StepError when the step failed.
  const T& value() const& {
    throw_if_failed();
    return std::get<0>(state_);
  }
  T& value() & {
    throw_if_failed();
    return std::get<0>(state_);
  }
  T&& value() && {
    throw_if_failed();
    return std::get<0>(std::move(state_));
  }
  // The failure, or nullptr when the step succeeded.
  const StepError* error() const noexcept { return std::get_if<1>(&state_); }
  void throw_if_failed() const {
    if (const StepError* failure = error()) throw StepError(*failure);
  }

 private:
  std::variant<T, StepError> state_;
};

// The outcome of a step whose function returns void.
template <>
class Outcome<void> {
 public:
  Outcome() noexcept = default;
  explicit Outcome(StepError error) : error_(std::move(error)) {}

  bool ok() const noexcept { return !error_.has_value(); }
  explicit operator bool() const noexcept { return ok(); }
  void value() const { throw_if_failed(); }
  const StepError* error() const noexcept { return error_ ? &*error_ : nullptr; }
  void throw_if_failed() const {
    if (error_) throw StepError(*error_);
  }

 private:
  std::optional<StepError> error_;
};

// One step of a parallel group: its id, its function (held by value) and an
// optional retry policy (without one: the daemon's default policy).
//   ctx.parallel(kagzi::Par("email", send_email), kagzi::Par("sms", send_sms, policy));
template <class F>
struct Par {
  Par(std::string_view step_id, F function) : id(step_id), fn(std::move(function)) {}
  Par(std::string_view step_id, F function, const RetryPolicy& retry)
      : id(step_id), fn(std::move(function)), policy(retry) {}

  std::string id;
  F fn;
  std::optional<RetryPolicy> policy;
};

// The first argument of parallel() / parallel_outcomes() to bound how many of
// the group's steps run at once (default: the host's limit).
struct MaxConcurrency {
  std::uint32_t value = 0;
};

namespace detail {

template <class T>
struct IsParT : std::false_type {};
template <class F>
struct IsParT<Par<F>> : std::true_type {};
template <class P>
concept ParArg = IsParT<std::remove_cvref_t<P>>::value;

// The function type of a Par argument, const when the Par is.
template <class P>
using ParFn = std::remove_reference_t<decltype((std::declval<P&>().fn))>;
template <class P>
using ParValue = StepValue<ParFn<P>>;
// parallel() returns std::monostate for a void step.
template <class V>
using TupleValue = std::conditional_t<std::is_void_v<V>, std::monostate, V>;

template <class T>
T TakeValue(Outcome<T>&& outcome) {
  return std::move(outcome).value();
}
inline std::monostate TakeValue(Outcome<void>&& outcome) {
  outcome.value();
  return {};
}

}  // namespace detail

// ---------------------------------------------------------------------------
// Context: one invocation of one run
// ---------------------------------------------------------------------------

// The workflow's handle on its run. Created by the generated run function for
// one invocation and destroyed when it returns; not copyable. Use it only on
// the thread running the workflow body (see THREADS above).
class Context {
 public:
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // The run's id (a UUID), stable across replays and daemons: the natural
  // idempotency key for side effects. Valid in step functions too.
  std::string_view run_id() const noexcept { return run_id_; }
  // The run's input as JSON text, and parsed. Both borrow from the Context.
  std::string_view input_text() const noexcept { return input_text_; }
  const Json& input() const noexcept { return input_; }

  // Runs fn() once for this run under `id`, records its result, and returns
  // it decoded; on replay returns the recorded result without calling fn. The
  // result type is fn's return type (decayed; const char* and std::string_view
  // become std::string), encoded with Codec; a void fn records null and step()
  // returns void. First run and replay both decode the host's recorded bytes,
  // so user code sees the same value either way.
  // Throws StepError if the step failed (now or as recorded), CodecError if the
  // recorded result does not decode as the result type, Cancelled when the host
  // reports the run cancelled, and the internal unwind exception when the host
  // ends the invocation (see SUSPENSION). With an ABI 1.1 host a retryable
  // failure is retried under the daemon's default policy first.
  // `id` must be unique within the run (1..255 bytes UTF-8, no control chars).
  template <class F>
  detail::StepValue<F> step(std::string_view id, F&& fn);

  // ABI 1.1. step() under an explicit retry policy (host->step_with_policy).
  // While a retry is pending the run is parked: the body unwinds as for a
  // sleep and is replayed when the next attempt is due. Exhausted attempts
  // throw StepError (retryable(), the last attempt's message), a permanent
  // failure throws it at once.
  template <class F>
  detail::StepValue<F> step(std::string_view id, F&& fn, const RetryPolicy& policy);

  // Like step(), for JSON text: fn returns the result's JSON text (anything
  // convertible to std::string; empty means null), written verbatim; returns
  // the recorded JSON text.
  template <class F>
  std::string step_raw(std::string_view id, F&& fn);
  // ABI 1.1. step_raw() under an explicit retry policy.
  template <class F>
  std::string step_raw(std::string_view id, F&& fn, const RetryPolicy& policy);

  // Durable sleep: the first time, records a wake time `duration` from now and
  // suspends the invocation (the body is unwound; the run is parked holding no
  // thread); once the wake time has passed, the replayed call returns at once.
  // Negative durations sleep 0 ms; sub-millisecond parts round up.
  template <class Rep, class Period>
  void sleep(std::string_view id, std::chrono::duration<Rep, Period> duration) {
    sleep_for_ms(id, detail::ToMilliseconds(duration));
  }

  // ABI 1.1. Waits durably for an event named `event_name` sent to this run
  // (kagzictl signal RUN NAME --data JSON), at most `timeout` (rounded up to
  // milliseconds; negative = 0, which only takes an event already sent). The
  // run is parked while it waits. Returns the event's payload decoded as T, or
  // std::nullopt when the timeout passed first. Events sent before the wait are
  // kept; each is consumed by one wait. Recorded under `id` like a step.
  template <class T = Json, class Rep, class Period>
  std::optional<T> wait_for_event(std::string_view id, std::string_view event_name,
                                  std::chrono::duration<Rep, Period> timeout);
  // The same without a timeout: waits as long as it takes.
  template <class T = Json>
  std::optional<T> wait_for_event(std::string_view id, std::string_view event_name);

  // ABI 1.1. Starts a child run of `workflow` with `input` (any encodable value:
  // Json, a braced object {{"n", 2}}, a string, a type with a codec) once, parks
  // this run until the child finishes, and returns the child's output decoded
  // as T. Replay never starts a second child. Throws StepError (status
  // kPermanent, message = the child's error) when the child failed or was
  // cancelled, and Cancelled when this run is cancelled. Cancelling this run
  // cancels the child.
  template <class T = Json, class In = Json>
  T call_child(std::string_view id, std::string_view workflow, const In& input = In());

  // ABI 1.1. Runs the group's steps at the same time (on host worker threads;
  // see THREADS), each memoized on its own under its Par id, and waits for all
  // of them. On replay, finished steps return their recorded outcomes and only
  // unfinished ones run. parallel_outcomes() returns every step's Outcome;
  // parallel() returns a tuple of the values (std::monostate for a void step)
  // and, after all have finished, throws the StepError of the first failed
  // step in argument order. A pending retry parks the run (the body unwinds).
  //   auto [user, plan] = ctx.parallel(kagzi::Par("user", load_user),
  //                                    kagzi::Par("plan", load_plan, policy));
  template <detail::ParArg... Ps>
  std::tuple<Outcome<detail::ParValue<Ps>>...> parallel_outcomes(Ps&&... steps) {
    return parallel_outcomes(MaxConcurrency{}, std::forward<Ps>(steps)...);
  }
  template <detail::ParArg... Ps>
  std::tuple<Outcome<detail::ParValue<Ps>>...> parallel_outcomes(MaxConcurrency limit,
                                                                 Ps&&... steps);
  template <detail::ParArg... Ps>
  std::tuple<detail::TupleValue<detail::ParValue<Ps>>...> parallel(Ps&&... steps) {
    return parallel(MaxConcurrency{}, std::forward<Ps>(steps)...);
  }
  template <detail::ParArg... Ps>
  std::tuple<detail::TupleValue<detail::ParValue<Ps>>...> parallel(MaxConcurrency limit,
                                                                   Ps&&... steps);

  // ABI 1.1. fn(item) for every item, as parallel steps "<id_prefix>-<index>",
  // at most max_concurrency at once (0: the host's limit), optionally under a
  // retry policy. fn is called through a const reference from several threads
  // at once. parallel_map() returns the results in item order (void for a void
  // fn) or throws the first failed step's StepError after all have finished;
  // parallel_map_outcomes() returns every Outcome.
  template <class In, class F>
  requires std::invocable<const F&, const In&> std::vector<Outcome<detail::MapValue<F, In>>>
  parallel_map_outcomes(std::string_view id_prefix, const std::vector<In>& items, const F& fn,
                        std::uint32_t max_concurrency = 0) {
    return map_outcomes(id_prefix, items, fn, max_concurrency, nullptr);
  }
  template <class In, class F>
  requires std::invocable<const F&, const In&> std::vector<Outcome<detail::MapValue<F, In>>>
  parallel_map_outcomes(std::string_view id_prefix, const std::vector<In>& items, const F& fn,
                        std::uint32_t max_concurrency, const RetryPolicy& policy) {
    return map_outcomes(id_prefix, items, fn, max_concurrency, &policy);
  }
  template <class In, class F>
  requires std::invocable<const F&, const In&> detail::MapResult<F, In> parallel_map(
      std::string_view id_prefix, const std::vector<In>& items, const F& fn,
      std::uint32_t max_concurrency = 0) {
    return map_values(map_outcomes(id_prefix, items, fn, max_concurrency, nullptr));
  }
  template <class In, class F>
  requires std::invocable<const F&, const In&> detail::MapResult<F, In> parallel_map(
      std::string_view id_prefix, const std::vector<In>& items, const F& fn,
      std::uint32_t max_concurrency, const RetryPolicy& policy) {
    return map_values(map_outcomes(id_prefix, items, fn, max_concurrency, &policy));
  }

  // ABI 1.1. Deterministic helpers: the wall-clock time (millisecond precision)
  // and a random 64-bit number, recorded under `id` the first time, so every
  // replay sees the same value. Use them instead of system_clock::now() and
  // std::random_device in workflow code.
  std::chrono::system_clock::time_point now(std::string_view id);
  std::uint64_t random(std::string_view id);

  // A log line tagged with the run id. Allowed in step functions. Dropped once
  // the invocation has been told to stop. The variadic forms stream their
  // arguments: ctx.info("created user ", id, " in ", ms, " ms").
  void log(LogLevel level, std::string_view message) const noexcept;
  template <class... Args>
  void debug(const Args&... args) const {
    log_parts(LogLevel::kDebug, args...);
  }
  template <class... Args>
  void info(const Args&... args) const {
    log_parts(LogLevel::kInfo, args...);
  }
  template <class... Args>
  void warn(const Args&... args) const {
    log_parts(LogLevel::kWarn, args...);
  }
  template <class... Args>
  void error(const Args&... args) const {
    log_parts(LogLevel::kError, args...);
  }

  // The host extension named `id` (e.g. "kagzi.events/1"), or nullptr.
  const void* extension(const char* id) const noexcept;

  // Set once the host has ended this invocation: every later step()/sleep()
  // throws the unwind exception again without calling the host.
  std::optional<Status> interruption() const noexcept { return interrupted_; }

  // ABI 1.1. Whether the host has reported this run cancelled (the run ends
  // CANCELLED however the body ends).
  bool cancelled() const noexcept { return cancelled_; }

  // The host table's ABI minor: 0 for a 1.0 host, which lacks every ABI 1.1
  // call (they throw PermanentError there).
  std::uint16_t host_abi_minor() const noexcept { return host_->abi_minor; }

  // The raw C handles, for what the wrapper does not cover. Calls made through
  // them bypass the wrapper's bookkeeping (see SUSPENSION).
  const kagzi_host* native_host() const noexcept { return host_; }
  kagzi_context* native_context() const noexcept { return native_; }

 private:
  friend struct detail::ContextAccess;

  Context(const kagzi_host* host, kagzi_context* native) noexcept
      : host_(host), native_(native), owner_(std::this_thread::get_id()) {}

  void load();
  std::string step_key(std::string_view id) const;
  void enter();
  template <auto Member>
  auto host_fn(std::size_t offset, const char* what) const;
  kagzi_retry_policy native_policy(const std::string& key, const RetryPolicy& policy) const;
  std::string_view finish_step(const std::string& key, kagzi_status status, const char* out,
                               std::size_t out_len);
  std::string_view run_step(const std::string& key, kagzi_step_fn fn, void* user);
  std::string_view run_step_with_policy(const std::string& key, kagzi_step_fn fn, void* user,
                                        const RetryPolicy& policy);
  void sleep_for_ms(std::string_view id, std::uint64_t milliseconds);
  template <class T>
  std::optional<T> wait_decoded(std::string_view id, std::string_view event_name,
                                std::int64_t timeout_ms);
  std::optional<std::string_view> wait_event_raw(const std::string& key,
                                                 std::string_view event_name,
                                                 std::int64_t timeout_ms);
  std::string_view call_child_raw(const std::string& key, std::string_view workflow,
                                  const std::string& input);
  template <class Fn>
  void fill_parallel_step(kagzi_parallel_step& native, const std::string& key,
                          std::optional<kagzi_retry_policy>& policy_slot, Fn& fn,
                          const std::optional<RetryPolicy>& policy) const;
  void run_parallel(kagzi_parallel_step* steps, std::size_t count, std::uint32_t max_concurrency);
  template <class V>
  Outcome<V> take_outcome(const kagzi_parallel_step& step);
  template <class In, class F>
  std::vector<Outcome<detail::MapValue<F, In>>> map_outcomes(std::string_view id_prefix,
                                                             const std::vector<In>& items,
                                                             const F& fn,
                                                             std::uint32_t max_concurrency,
                                                             const RetryPolicy* policy);
  template <class V>
  static auto map_values(std::vector<Outcome<V>> outcomes);
  void finish_value(const std::string& key, kagzi_status status);
  template <class V>
  static V decode_as(std::string_view text, const std::string& what);
  [[noreturn]] void interrupt(Status status);
  [[noreturn]] void cancel(std::string_view reason);
  void check_live() const;
  template <class... Args>
  void log_parts(LogLevel level, const Args&... args) const {
    if (!interrupted_) log(level, detail::Concat(args...));
  }

  const kagzi_host* host_;
  kagzi_context* native_;
  std::thread::id owner_;  // the thread running the body
  std::string_view input_text_;
  std::string_view run_id_;
  Json input_;
  std::optional<Status> interrupted_;
  bool cancelled_ = false;       // the host reported the run cancelled
  bool cancel_pending_ = false;  // ... during load(): deliver at the next context call
};

inline void Context::log(LogLevel level, std::string_view message) const noexcept {
  if (interrupted_) return;
  host_->log(native_, static_cast<std::int32_t>(level), message.data(), message.size());
}

inline const void* Context::extension(const char* id) const noexcept {
  return interrupted_ ? nullptr : host_->get_extension(native_, id);
}

inline void Context::interrupt(Status status) {
  if (!interrupted_) interrupted_ = status;
  throw detail::Unwind{*interrupted_};
}

inline void Context::cancel(std::string_view reason) {
  cancelled_ = true;
  throw Cancelled(std::string(reason));
}

inline void Context::check_live() const {
  if (interrupted_) throw detail::Unwind{*interrupted_};
}

// Every call that reaches a journal entry starts here.
inline void Context::enter() {
  // From a parallel step's worker thread (or any other): refused without
  // touching the host or this object; the step fails PERMANENT.
  if (std::this_thread::get_id() != owner_) throw detail::Unwind{Status::kMisuse};
  check_live();
  if (cancel_pending_) {
    cancel_pending_ = false;
    throw Cancelled(std::string());
  }
}

// The ABI 1.1 callback `Member`, or PermanentError when the host table does
// not have it (a 1.0 host). The table is read only as far as it reaches.
template <auto Member>
auto Context::host_fn(std::size_t offset, const char* what) const {
  if (host_->abi_minor >= 1 && host_->struct_size >= offset + sizeof(host_->*Member)) {
    if (auto fn = host_->*Member; fn != nullptr) return fn;
  }
  throw PermanentError("host ABI " + std::to_string(host_->abi_major) + "." +
                       std::to_string(host_->abi_minor) + " lacks " + what);
}

inline std::string Context::step_key(std::string_view id) const {
  return detail::CString(id, "step id");
}

inline kagzi_retry_policy Context::native_policy(const std::string& key,
                                                 const RetryPolicy& policy) const {
  try {
    return policy.to_native();
  } catch (const PermanentError& e) {
    throw PermanentError("step '" + key + "': " + e.what());
  }
}

template <class V>
V Context::decode_as(std::string_view text, const std::string& what) {
  try {
    return Codec<V>::decode(text);
  } catch (const CodecError& e) {
    throw CodecError(what + e.what());
  }
}

inline void Context::load() {
  const char* data = nullptr;
  std::size_t size = 0;
  kagzi_status status = host_->get_input(native_, &data, &size);
  if (status == KAGZI_ERR_CANCELLED) {
    // Cancelled before the body started: deliver it at the body's first call.
    cancelled_ = cancel_pending_ = true;
    status = host_->get_input(native_, &data, &size);
  }
  if (status != detail::ToC(Status::kOk)) interrupt(static_cast<Status>(status));
  input_text_ = data != nullptr ? std::string_view(data, size) : std::string_view();
  try {
    input_ = input_text_.empty() ? Json() : Json::parse(input_text_);
  } catch (const CodecError& e) {
    throw CodecError(std::string("run input: ") + e.what());
  }
  const char* id = nullptr;
  size = 0;
  status = host_->get_run_id(native_, &id, &size);
  if (status == KAGZI_ERR_CANCELLED) {
    cancelled_ = cancel_pending_ = true;
    status = host_->get_run_id(native_, &id, &size);
  }
  if (status != detail::ToC(Status::kOk)) interrupt(static_cast<Status>(status));
  run_id_ = id != nullptr ? std::string_view(id, size) : std::string_view();
}

// The outcome of step() / step_with_policy() as the workflow sees it.
inline std::string_view Context::finish_step(const std::string& key, kagzi_status status,
                                             const char* out, std::size_t out_len) {
  // The step function misused the context: the host has already failed the run.
  if (interrupted_) throw detail::Unwind{*interrupted_};
  const std::string_view text = detail::OutText(out, out_len);
  switch (static_cast<Status>(status)) {
    case Status::kOk:
      return text.empty() ? std::string_view("null") : text;
    case Status::kRetryable:
    case Status::kPermanent:
      throw StepError(key, static_cast<Status>(status), std::string(text));
    case Status::kCancelled:
      cancel(text);
    default:
      interrupt(static_cast<Status>(status));
  }
}

inline std::string_view Context::run_step(const std::string& key, kagzi_step_fn fn, void* user) {
  enter();
  const char* out = nullptr;
  std::size_t out_len = 0;
  const kagzi_status status = host_->step(native_, key.c_str(), fn, user, &out, &out_len);
  return finish_step(key, status, out, out_len);
}

inline std::string_view Context::run_step_with_policy(const std::string& key, kagzi_step_fn fn,
                                                      void* user, const RetryPolicy& policy) {
  enter();
  const auto call = host_fn<&kagzi_host::step_with_policy>(offsetof(kagzi_host, step_with_policy),
                                                           "step_with_policy (retry policies)");
  const kagzi_retry_policy native = native_policy(key, policy);
  const char* out = nullptr;
  std::size_t out_len = 0;
  const kagzi_status status = call(native_, key.c_str(), fn, user, &native, &out, &out_len);
  return finish_step(key, status, out, out_len);
}

inline void Context::sleep_for_ms(std::string_view id, std::uint64_t milliseconds) {
  const std::string key = step_key(id);
  enter();
  const auto status = static_cast<Status>(host_->sleep(native_, key.c_str(), milliseconds));
  switch (status) {
    case Status::kOk:
      return;
    case Status::kRetryable:
    case Status::kPermanent:
      throw StepError(key, status, "the host could not record the sleep");
    case Status::kCancelled:
      cancel({});
    default:
      interrupt(status);
  }
}

// now() and random(): the host's status for a recorded value.
inline void Context::finish_value(const std::string& key, kagzi_status status) {
  switch (static_cast<Status>(status)) {
    case Status::kOk:
      return;
    case Status::kRetryable:
    case Status::kPermanent:
      throw StepError(key, static_cast<Status>(status), "the host could not record the value");
    case Status::kCancelled:
      cancel({});
    default:
      interrupt(static_cast<Status>(status));
  }
}

inline std::chrono::system_clock::time_point Context::now(std::string_view id) {
  const std::string key = step_key(id);
  enter();
  const auto call =
      host_fn<&kagzi_host::now_ms>(offsetof(kagzi_host, now_ms), "now_ms (deterministic time)");
  std::int64_t unix_ms = 0;
  finish_value(key, call(native_, key.c_str(), &unix_ms));
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::milliseconds(unix_ms)));
}

inline std::uint64_t Context::random(std::string_view id) {
  const std::string key = step_key(id);
  enter();
  const auto call = host_fn<&kagzi_host::random_u64>(offsetof(kagzi_host, random_u64),
                                                     "random_u64 (deterministic random numbers)");
  std::uint64_t value = 0;
  finish_value(key, call(native_, key.c_str(), &value));
  return value;
}

inline std::optional<std::string_view> Context::wait_event_raw(const std::string& key,
                                                               std::string_view event_name,
                                                               std::int64_t timeout_ms) {
  const std::string name = detail::CString(event_name, "event name");
  enter();
  const auto call = host_fn<&kagzi_host::wait_for_event>(offsetof(kagzi_host, wait_for_event),
                                                         "wait_for_event (events)");
  const char* payload = nullptr;
  std::size_t payload_len = 0;
  const auto status = static_cast<Status>(
      call(native_, key.c_str(), name.c_str(), timeout_ms, &payload, &payload_len));
  const std::string_view text = detail::OutText(payload, payload_len);
  switch (status) {
    case Status::kOk:
      return text.empty() ? std::string_view("null") : text;
    case Status::kTimeout:
      return std::nullopt;
    case Status::kRetryable:
    case Status::kPermanent:
      throw StepError(key, status,
                      text.empty() ? std::string("the host could not record the event wait")
                                   : std::string(text));
    case Status::kCancelled:
      cancel(text);
    default:
      interrupt(status);
  }
}

template <class T>
std::optional<T> Context::wait_decoded(std::string_view id, std::string_view event_name,
                                       std::int64_t timeout_ms) {
  const std::string key = step_key(id);
  const std::optional<std::string_view> payload = wait_event_raw(key, event_name, timeout_ms);
  if (!payload) return std::nullopt;
  return decode_as<T>(*payload, "event wait '" + key + "': payload does not decode: ");
}

template <class T, class Rep, class Period>
std::optional<T> Context::wait_for_event(std::string_view id, std::string_view event_name,
                                         std::chrono::duration<Rep, Period> timeout) {
  return wait_decoded<T>(id, event_name, detail::ToTimeoutMs(timeout));
}

template <class T>
std::optional<T> Context::wait_for_event(std::string_view id, std::string_view event_name) {
  return wait_decoded<T>(id, event_name, -1);
}

inline std::string_view Context::call_child_raw(const std::string& key, std::string_view workflow,
                                                const std::string& input) {
  const std::string name = detail::CString(workflow, "workflow name");
  enter();
  const auto call = host_fn<&kagzi_host::call_child>(offsetof(kagzi_host, call_child),
                                                     "call_child (child workflows)");
  const char* out = nullptr;
  std::size_t out_len = 0;
  const auto status = static_cast<Status>(
      call(native_, key.c_str(), name.c_str(), input.data(), input.size(), &out, &out_len));
  const std::string_view text = detail::OutText(out, out_len);
  switch (status) {
    case Status::kOk:
      return text.empty() ? std::string_view("null") : text;
    case Status::kRetryable:
    case Status::kPermanent:
      throw StepError(key, status, std::string(text));
    case Status::kCancelled:
      // This run was cancelled (plugin.h: a cancelled child reports
      // KAGZI_ERR_PERMANENT, so CANCELLED always means this run).
      cancel(text);
    default:
      interrupt(status);
  }
}

template <class T, class In>
T Context::call_child(std::string_view id, std::string_view workflow, const In& input) {
  const std::string key = step_key(id);
  const std::string text = detail::EncodeInput(input);
  const std::string_view output = call_child_raw(key, workflow, text);
  return decode_as<T>(output, "child '" + key + "': output does not decode: ");
}

template <class Fn>
void Context::fill_parallel_step(kagzi_parallel_step& native, const std::string& key,
                                 std::optional<kagzi_retry_policy>& policy_slot, Fn& fn,
                                 const std::optional<RetryPolicy>& policy) const {
  native = kagzi_parallel_step{};
  native.struct_size = sizeof(kagzi_parallel_step);
  native.step_id = key.c_str();
  native.fn = &detail::StepTrampoline<Fn>::call;
  native.user = const_cast<void*>(static_cast<const void*>(std::addressof(fn)));
  if (policy) {
    policy_slot = native_policy(key, *policy);
    native.policy = &*policy_slot;
  }
  native.status = -1;  // no outcome until the host fills one in
}

inline void Context::run_parallel(kagzi_parallel_step* steps, std::size_t count,
                                  std::uint32_t max_concurrency) {
  enter();
  const auto call =
      host_fn<&kagzi_host::parallel>(offsetof(kagzi_host, parallel), "parallel (parallel steps)");
  if (count == 0) return;
  const auto status = static_cast<Status>(call(native_, steps, count, max_concurrency));
  switch (status) {
    case Status::kOk:
      return;
    case Status::kCancelled:
      cancel({});
    default:
      interrupt(status);
  }
}

template <class V>
Outcome<V> Context::take_outcome(const kagzi_parallel_step& step) {
  const std::string key(step.step_id);
  const std::string_view text = detail::OutText(step.out, step.out_len);
  const auto status = static_cast<Status>(step.status);
  switch (status) {
    case Status::kOk:
      if constexpr (std::is_void_v<V>) {
        return Outcome<V>();
      } else {
        return Outcome<V>(decode_as<V>(text.empty() ? std::string_view("null") : text,
                                       "step '" + key + "': recorded result does not decode: "));
      }
    case Status::kRetryable:
    case Status::kPermanent:
    case Status::kCancelled:
      return Outcome<V>(StepError(key, status, std::string(text)));
    case Status::kSuspend:
    case Status::kNondeterminism:
    case Status::kMisuse:
      interrupt(status);
    default:
      return Outcome<V>(StepError(
          key, Status::kPermanent,
          "the host reported status " + std::to_string(step.status) + " for this parallel step"));
  }
}

template <detail::ParArg... Ps>
std::tuple<Outcome<detail::ParValue<Ps>>...> Context::parallel_outcomes(MaxConcurrency limit,
                                                                        Ps&&... steps) {
  constexpr std::size_t kCount = sizeof...(Ps);
  const std::array<std::string, kCount> keys{step_key(steps.id)...};
  std::array<std::optional<kagzi_retry_policy>, kCount> policies{};
  std::array<kagzi_parallel_step, kCount> natives{};
  [[maybe_unused]] std::size_t i = 0;
  ((fill_parallel_step(natives[i], keys[i], policies[i], steps.fn, steps.policy), ++i), ...);
  run_parallel(natives.data(), kCount, limit.value);
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    return std::tuple<Outcome<detail::ParValue<Ps>>...>{
        take_outcome<detail::ParValue<Ps>>(natives[I])...};
  }
  (std::index_sequence_for<Ps...>{});
}

template <detail::ParArg... Ps>
std::tuple<detail::TupleValue<detail::ParValue<Ps>>...> Context::parallel(MaxConcurrency limit,
                                                                          Ps&&... steps) {
  auto outcomes = parallel_outcomes(limit, std::forward<Ps>(steps)...);
  std::apply([](const auto&... outcome) { (outcome.throw_if_failed(), ...); }, outcomes);
  return std::apply(
      [](auto&... outcome) {
        return std::tuple<detail::TupleValue<detail::ParValue<Ps>>...>{
            detail::TakeValue(std::move(outcome))...};
      },
      outcomes);
}

template <class In, class F>
std::vector<Outcome<detail::MapValue<F, In>>> Context::map_outcomes(std::string_view id_prefix,
                                                                    const std::vector<In>& items,
                                                                    const F& fn,
                                                                    std::uint32_t max_concurrency,
                                                                    const RetryPolicy* policy) {
  static_assert(!std::is_same_v<In, bool>, "parallel_map over std::vector<bool> is not supported");
  using V = detail::MapValue<F, In>;
  const std::string prefix = step_key(id_prefix);
  std::optional<kagzi_retry_policy> native_retry;
  if (policy != nullptr) native_retry = native_policy(prefix + "-*", *policy);
  std::vector<std::string> keys;
  std::vector<detail::MapCall<F, In>> calls;
  std::vector<kagzi_parallel_step> natives(items.size());
  keys.reserve(items.size());
  calls.reserve(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    keys.push_back(prefix + "-" + std::to_string(i));
    calls.push_back(detail::MapCall<F, In>{&fn, &items[i]});
  }
  for (std::size_t i = 0; i < items.size(); ++i) {
    kagzi_parallel_step& native = natives[i];
    native.struct_size = sizeof(kagzi_parallel_step);
    native.step_id = keys[i].c_str();
    native.fn = &detail::MapTrampoline<F, In>::call;
    native.user = &calls[i];
    native.policy = native_retry ? &*native_retry : nullptr;
    native.status = -1;
  }
  run_parallel(natives.data(), natives.size(), max_concurrency);
  std::vector<Outcome<V>> outcomes;
  outcomes.reserve(natives.size());
  for (const kagzi_parallel_step& native : natives) outcomes.push_back(take_outcome<V>(native));
  return outcomes;
}

template <class V>
auto Context::map_values(std::vector<Outcome<V>> outcomes) {
  for (const Outcome<V>& outcome : outcomes) outcome.throw_if_failed();
  if constexpr (!std::is_void_v<V>) {
    std::vector<V> values;
    values.reserve(outcomes.size());
    for (Outcome<V>& outcome : outcomes) values.push_back(std::move(outcome).value());
    return values;
  }
}

template <class F>
detail::StepValue<F> Context::step(std::string_view id, F&& fn) {
  using Fn = std::remove_reference_t<F>;
  using V = detail::StepValue<F>;
  const std::string key = step_key(id);
  void* user = const_cast<void*>(static_cast<const void*>(std::addressof(fn)));
  const std::string_view recorded = run_step(key, &detail::StepTrampoline<Fn>::call, user);
  if constexpr (!std::is_void_v<V>) {
    return decode_as<V>(recorded, "step '" + key + "': recorded result does not decode: ");
  }
}

template <class F>
detail::StepValue<F> Context::step(std::string_view id, F&& fn, const RetryPolicy& policy) {
  using Fn = std::remove_reference_t<F>;
  using V = detail::StepValue<F>;
  const std::string key = step_key(id);
  void* user = const_cast<void*>(static_cast<const void*>(std::addressof(fn)));
  const std::string_view recorded =
      run_step_with_policy(key, &detail::StepTrampoline<Fn>::call, user, policy);
  if constexpr (!std::is_void_v<V>) {
    return decode_as<V>(recorded, "step '" + key + "': recorded result does not decode: ");
  }
}

template <class F>
std::string Context::step_raw(std::string_view id, F&& fn) {
  using Fn = std::remove_reference_t<F>;
  const std::string key = step_key(id);
  void* user = const_cast<void*>(static_cast<const void*>(std::addressof(fn)));
  return std::string(run_step(key, &detail::RawStepTrampoline<Fn>::call, user));
}

template <class F>
std::string Context::step_raw(std::string_view id, F&& fn, const RetryPolicy& policy) {
  using Fn = std::remove_reference_t<F>;
  const std::string key = step_key(id);
  void* user = const_cast<void*>(static_cast<const void*>(std::addressof(fn)));
  return std::string(run_step_with_policy(key, &detail::RawStepTrampoline<Fn>::call, user, policy));
}

// ---------------------------------------------------------------------------
// Generated entry points (internal; used by the macros below)
// ---------------------------------------------------------------------------

namespace detail {

using WorkflowBody = Json (*)(Context&, const Json&);

struct ContextAccess {
  static kagzi_status fail(const Context& ctx, Status status, const char* message) noexcept {
    if (ctx.interrupted_) return ToC(*ctx.interrupted_);
    // A cancelled run ends CANCELLED whatever escapes its cleanup.
    if (ctx.cancelled_) status = Status::kCancelled;
    if (status != Status::kRetryable && status != Status::kCancelled) status = Status::kPermanent;
    ctx.host_->set_error(ctx.native_, message, std::strlen(message));
    return ToC(status);
  }

  // The body of every generated run function. Accepts any 1.x host table at
  // least as large as ABI 1.0's (see Context::host_fn for the 1.1 calls).
  static kagzi_status run(const kagzi_host* host, kagzi_context* native,
                          WorkflowBody body) noexcept {
    if (host == nullptr || host->abi_major != KAGZI_ABI_MAJOR ||
        host->struct_size < kHostSizeAbi10) {
      return ToC(Status::kPermanent);
    }
    Context ctx(host, native);
    try {
      ctx.load();
      const Json output = body(ctx, ctx.input_);
      // A body that swallowed the unwind exception still ends as the host said.
      if (ctx.interrupted_) return ToC(*ctx.interrupted_);
      // So does a cancelled run that swallowed Cancelled (or never saw it).
      if (ctx.cancelled_) return ToC(Status::kCancelled);
      const std::string text = output.dump();
      return host->set_output(native, text.data(), text.size());
    } catch (const Unwind& unwind) {
      return ToC(ctx.interrupted_ ? *ctx.interrupted_ : unwind.status);
    } catch (const Error& e) {
      return fail(ctx, e.status(), e.what());
    } catch (const std::exception& e) {
      return fail(ctx, Status::kPermanent, e.what());
    } catch (...) {
      return fail(ctx, Status::kPermanent, "unknown exception (not a std::exception)");
    }
  }
};

// One KAGZI_WORKFLOW. Static storage in the plugin; linked into the plugin's
// list by its constructor (no allocation, so it cannot fail at load time).
class WorkflowRegistration {
 public:
  WorkflowRegistration(const char* name, std::uint32_t version, kagzi_run_fn run,
                       std::uint64_t timeout_ms = 0) noexcept;

  kagzi_workflow descriptor() const noexcept {
    kagzi_workflow workflow{};
    workflow.struct_size = sizeof(kagzi_workflow);
    workflow.abi_major = KAGZI_ABI_MAJOR;
    workflow.abi_minor = KAGZI_ABI_MINOR;
    workflow.name = name_;
    workflow.version = version_;
    workflow.reserved0 = 0;
    workflow.run = run_;
    workflow.user_data = nullptr;
    workflow.timeout_ms = timeout_ms_;
    return workflow;
  }
  const WorkflowRegistration* next() const noexcept { return next_; }

 private:
  const char* name_;
  std::uint32_t version_;
  kagzi_run_fn run_;
  std::uint64_t timeout_ms_;
  WorkflowRegistration* next_ = nullptr;
};

struct WorkflowList {
  WorkflowRegistration* head = nullptr;
  WorkflowRegistration* tail = nullptr;
};

// The plugin's registrations. Constant-initialized (no static-init-order
// problem) and hidden, so every shared object has its own list.
KAGZI_HIDDEN inline WorkflowList& Registrations() noexcept {
  static WorkflowList list;
  return list;
}

inline WorkflowRegistration::WorkflowRegistration(const char* name, std::uint32_t version,
                                                  kagzi_run_fn run,
                                                  std::uint64_t timeout_ms) noexcept
    : name_(name), version_(version), run_(run), timeout_ms_(timeout_ms) {
  WorkflowList& list = Registrations();
  if (list.tail != nullptr) {
    list.tail->next_ = this;
  } else {
    list.head = this;
  }
  list.tail = this;
}

// The descriptor kagzi_plugin_entry() returns; built once, never destroyed
// (the host may read it until the process ends, after static destructors).
class PluginTable {
 public:
  PluginTable(const char* name, const char* version) {
    for (const WorkflowRegistration* r = Registrations().head; r != nullptr; r = r->next()) {
      workflows_.push_back(r->descriptor());
    }
    plugin_.struct_size = sizeof(kagzi_plugin);
    plugin_.abi_major = KAGZI_ABI_MAJOR;
    plugin_.abi_minor = KAGZI_ABI_MINOR;
    plugin_.name = name;
    plugin_.version = version;
    plugin_.workflow_count = static_cast<std::uint32_t>(workflows_.size());
    plugin_.reserved0 = 0;
    plugin_.workflows = workflows_.empty() ? nullptr : workflows_.data();
    plugin_.init = nullptr;
    plugin_.deinit = nullptr;
    plugin_.get_extension = nullptr;
  }
  const kagzi_plugin* plugin() const noexcept { return &plugin_; }

 private:
  std::vector<kagzi_workflow> workflows_;
  kagzi_plugin plugin_{};
};

KAGZI_HIDDEN inline const kagzi_plugin* PluginEntry(std::uint16_t host_abi_major, const char* name,
                                                    const char* version) noexcept {
  if (host_abi_major != KAGZI_ABI_MAJOR) return nullptr;
  try {
    static const PluginTable* const kTable = new PluginTable(name, version);
    return kTable->plugin();
  } catch (...) {
    return nullptr;
  }
}

}  // namespace detail
}  // namespace kagzi

// ---------------------------------------------------------------------------
// Macros
// ---------------------------------------------------------------------------

// KAGZI_WORKFLOW(name, version, ctx, input) { ...; return kagzi::Json(...); }
//
// Defines workflow `name` (a C identifier, also its registered name) at
// `version` (a positive integer literal), and registers it with the plugin.
// The body sees `ctx` (kagzi::Context&) and `input` (const kagzi::Json&, the
// run's input) and returns the run's output as a kagzi::Json (`return {};` is
// null). Use at namespace scope, once per (name, version) per plugin; several
// versions of one workflow may live in one plugin or in several.
#define KAGZI_WORKFLOW(name, version, ctx, input) \
  KAGZI_WORKFLOW_NAMED(name, #name, version, ctx, input)

// KAGZI_WORKFLOW_WITH_TIMEOUT(name, version, timeout, ctx, input) { ... }
//
// ABI 1.1. The same with a default deadline for every run of the workflow,
// counted from the run's start (kagzictl start --timeout overrides it): a
// constant expression, either an integer of milliseconds (1500) or a
// std::chrono duration (std::chrono::minutes(5), rounded up to milliseconds).
// 0 means none. The deadline is the daemon's to enforce; the run fails once it
// passes, while running or parked.
#define KAGZI_WORKFLOW_WITH_TIMEOUT(name, version, timeout, ctx, input) \
  KAGZI_WORKFLOW_NAMED_WITH_TIMEOUT(name, #name, version, timeout, ctx, input)

// The same with a registered name that is not a C identifier:
// KAGZI_WORKFLOW_NAMED(send_invoice, "billing.send-invoice", 2, ctx, input) { ... }
#define KAGZI_WORKFLOW_NAMED(kagzi_ident, kagzi_name, kagzi_version, kagzi_ctx, kagzi_input) \
  KAGZI_WORKFLOW_NAMED_WITH_TIMEOUT(kagzi_ident, kagzi_name, kagzi_version, 0, kagzi_ctx,    \
                                    kagzi_input)

// Both: KAGZI_WORKFLOW_NAMED_WITH_TIMEOUT(ident, "registered.name", version, timeout, ctx, input)
#define KAGZI_WORKFLOW_NAMED_WITH_TIMEOUT(kagzi_ident, kagzi_name, kagzi_version, kagzi_timeout,  \
                                          kagzi_ctx, kagzi_input)                                 \
  static_assert((kagzi_version) >= 1, "KAGZI_WORKFLOW: version must be >= 1");                    \
  static_assert(::kagzi::detail::WorkflowTimeoutMs(kagzi_timeout) >= 0,                           \
                "KAGZI_WORKFLOW_WITH_TIMEOUT: the timeout must be a non-negative constant "       \
                "(milliseconds, or a std::chrono duration)");                                     \
  static ::kagzi::Json kagzi_body_##kagzi_ident##_v##kagzi_version(::kagzi::Context&,             \
                                                                   const ::kagzi::Json&);         \
  extern "C" {                                                                                    \
  static kagzi_status kagzi_run_##kagzi_ident##_v##kagzi_version(                                 \
      const kagzi_host* kagzi_host_table, kagzi_context* kagzi_native_ctx, void*) noexcept {      \
    return ::kagzi::detail::ContextAccess::run(kagzi_host_table, kagzi_native_ctx,                \
                                               &kagzi_body_##kagzi_ident##_v##kagzi_version);     \
  }                                                                                               \
  }                                                                                               \
  static const ::kagzi::detail::WorkflowRegistration                                              \
      kagzi_registration_##kagzi_ident##_v##kagzi_version(                                        \
          (kagzi_name), static_cast<std::uint32_t>(kagzi_version),                                \
          &kagzi_run_##kagzi_ident##_v##kagzi_version,                                            \
          static_cast<std::uint64_t>(::kagzi::detail::WorkflowTimeoutMs(kagzi_timeout)));         \
  static ::kagzi::Json kagzi_body_##kagzi_ident##_v##kagzi_version(                               \
      [[maybe_unused]] ::kagzi::Context& kagzi_ctx,      /* NOLINT(bugprone-macro-parentheses) */ \
      [[maybe_unused]] const ::kagzi::Json& kagzi_input) /* NOLINT(bugprone-macro-parentheses) */

// KAGZI_PLUGIN("plugin-name", "1.2.0");
//
// Defines kagzi_plugin_entry(), the plugin's one exported symbol, listing every
// KAGZI_WORKFLOW of the shared object. Use in exactly one source file. Returns
// NULL (refusing to load) when the host's ABI major differs from this header's.
// Both arguments must be string literals (or otherwise live for the process).
#define KAGZI_PLUGIN(kagzi_plugin_name, kagzi_plugin_version)                               \
  extern "C" KAGZI_EXPORT const kagzi_plugin* kagzi_plugin_entry(uint16_t host_abi_major,   \
                                                                 uint16_t host_abi_minor) { \
    static_cast<void>(host_abi_minor);                                                      \
    return ::kagzi::detail::PluginEntry(host_abi_major, (kagzi_plugin_name),                \
                                        (kagzi_plugin_version));                            \
  }                                                                                         \
  static_assert(true, "KAGZI_PLUGIN(...) takes a trailing semicolon")

#endif  // KAGZI_KAGZI_HPP
