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
// KAGZI_ERR_MISUSE. Json, the codecs and the exception types are ordinary
// value types with no shared state.
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
// SUSPENSION. When the host says the invocation must stop (KAGZI_SUSPEND after a
// sleep, a lost lease or a drain; KAGZI_ERR_NONDETERMINISM; KAGZI_ERR_MISUSE),
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
static_assert(static_cast<std::int32_t>(LogLevel::kDebug) == KAGZI_LOG_DEBUG);
static_assert(static_cast<std::int32_t>(LogLevel::kInfo) == KAGZI_LOG_INFO);
static_assert(static_cast<std::int32_t>(LogLevel::kWarn) == KAGZI_LOG_WARN);
static_assert(static_cast<std::int32_t>(LogLevel::kError) == KAGZI_LOG_ERROR);

// ---------------------------------------------------------------------------
// Exceptions
// ---------------------------------------------------------------------------

// Base of the wrapper's exceptions; status() is kRetryable or kPermanent.
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
// earlier invocation as recorded in the journal. what() reads
// "step '<id>' failed: <message>". Copying never throws.
class StepError : public Error {
 public:
  StepError(std::string step_id, Status status, std::string message)
      : Error(status, "step '" + step_id + "' failed: " + message),
        detail_(std::make_shared<const Detail>(Detail{std::move(step_id), std::move(message)})) {}

  const std::string& step_id() const noexcept { return detail_->step_id; }
  // The step's own message, as the step function wrote it.
  const std::string& message() const noexcept { return detail_->message; }
  bool retryable() const noexcept { return status() == Status::kRetryable; }

 private:
  struct Detail {
    std::string step_id;
    std::string message;
  };
  std::shared_ptr<const Detail> detail_;
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
// a status this wrapper does not know). Deliberately not a std::exception.
struct Unwind {
  Status status;
};

constexpr kagzi_status ToC(Status status) noexcept { return static_cast<kagzi_status>(status); }

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

// The kagzi_step_fn for a step whose function has type F: one instantiation
// per lambda type. user points at the F.
template <class F>
struct StepTrampoline {
  static kagzi_status call(void* user, const kagzi_writer* result) noexcept {
    try {
      F& fn = *static_cast<F*>(user);
      using V = StepValue<F>;
      if constexpr (std::is_void_v<V>) {
        fn();
        return WriteResult(result, "null");
      } else {
        return WriteResult(result, Codec<V>::encode(fn()));
      }
    } catch (...) {
      return FailStep(result);
    }
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

template <class Rep, class Period>
std::uint64_t ToMilliseconds(std::chrono::duration<Rep, Period> duration) {
  const double ms = std::ceil(
      std::chrono::duration_cast<std::chrono::duration<double, std::milli>>(duration).count());
  if (!(ms > 0)) return 0;  // also NaN
  if (ms >= 18446744073709551615.0) return std::numeric_limits<std::uint64_t>::max();
  return static_cast<std::uint64_t>(ms);
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
  // recorded result does not decode as the result type, and the internal
  // unwind exception when the host ends the invocation (see SUSPENSION).
  // `id` must be unique within the run (1..255 bytes UTF-8, no control chars).
  template <class F>
  detail::StepValue<F> step(std::string_view id, F&& fn);

  // Like step(), for JSON text: fn returns the result's JSON text (anything
  // convertible to std::string; empty means null), written verbatim; returns
  // the recorded JSON text.
  template <class F>
  std::string step_raw(std::string_view id, F&& fn);

  // Durable sleep: the first time, records a wake time `duration` from now and
  // suspends the invocation (the body is unwound; the run is parked holding no
  // thread); once the wake time has passed, the replayed call returns at once.
  // Negative durations sleep 0 ms; sub-millisecond parts round up.
  template <class Rep, class Period>
  void sleep(std::string_view id, std::chrono::duration<Rep, Period> duration) {
    sleep_for_ms(id, detail::ToMilliseconds(duration));
  }

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

  // The raw C handles, for what the wrapper does not cover. Calls made through
  // them bypass the wrapper's bookkeeping (see SUSPENSION).
  const kagzi_host* native_host() const noexcept { return host_; }
  kagzi_context* native_context() const noexcept { return native_; }

 private:
  friend struct detail::ContextAccess;

  Context(const kagzi_host* host, kagzi_context* native) noexcept : host_(host), native_(native) {}

  void load();
  std::string step_key(std::string_view id) const;
  std::string_view run_step(const std::string& key, kagzi_step_fn fn, void* user);
  void sleep_for_ms(std::string_view id, std::uint64_t milliseconds);
  [[noreturn]] void interrupt(Status status);
  void check_live() const;
  template <class... Args>
  void log_parts(LogLevel level, const Args&... args) const {
    if (!interrupted_) log(level, detail::Concat(args...));
  }

  const kagzi_host* host_;
  kagzi_context* native_;
  std::string_view input_text_;
  std::string_view run_id_;
  Json input_;
  std::optional<Status> interrupted_;
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

inline void Context::check_live() const {
  if (interrupted_) throw detail::Unwind{*interrupted_};
}

inline std::string Context::step_key(std::string_view id) const {
  if (id.find('\0') != std::string_view::npos) {
    throw PermanentError("step id '" + std::string(id.data()) + "...' contains a NUL byte");
  }
  return std::string(id);
}

inline void Context::load() {
  const char* data = nullptr;
  std::size_t size = 0;
  kagzi_status status = host_->get_input(native_, &data, &size);
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
  if (status != detail::ToC(Status::kOk)) interrupt(static_cast<Status>(status));
  run_id_ = id != nullptr ? std::string_view(id, size) : std::string_view();
}

inline std::string_view Context::run_step(const std::string& key, kagzi_step_fn fn, void* user) {
  check_live();
  const char* out = nullptr;
  std::size_t out_len = 0;
  const auto status =
      static_cast<Status>(host_->step(native_, key.c_str(), fn, user, &out, &out_len));
  // The step function misused the context: the host has already failed the run.
  if (interrupted_) throw detail::Unwind{*interrupted_};
  const std::string_view text =
      out != nullptr ? std::string_view(out, out_len) : std::string_view();
  switch (status) {
    case Status::kOk:
      return text.empty() ? std::string_view("null") : text;
    case Status::kRetryable:
    case Status::kPermanent:
      throw StepError(key, status, std::string(text));
    default:
      interrupt(status);
  }
}

inline void Context::sleep_for_ms(std::string_view id, std::uint64_t milliseconds) {
  check_live();
  const std::string key = step_key(id);
  const auto status = static_cast<Status>(host_->sleep(native_, key.c_str(), milliseconds));
  switch (status) {
    case Status::kOk:
      return;
    case Status::kRetryable:
    case Status::kPermanent:
      throw StepError(key, status, "the host could not record the sleep");
    default:
      interrupt(status);
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
    try {
      return Codec<V>::decode(recorded);
    } catch (const CodecError& e) {
      throw CodecError("step '" + key + "': recorded result does not decode: " + e.what());
    }
  }
}

template <class F>
std::string Context::step_raw(std::string_view id, F&& fn) {
  using Fn = std::remove_reference_t<F>;
  const std::string key = step_key(id);
  void* user = const_cast<void*>(static_cast<const void*>(std::addressof(fn)));
  return std::string(run_step(key, &detail::RawStepTrampoline<Fn>::call, user));
}

// ---------------------------------------------------------------------------
// Generated entry points (internal; used by the macros below)
// ---------------------------------------------------------------------------

namespace detail {

using WorkflowBody = Json (*)(Context&, const Json&);

struct ContextAccess {
  static kagzi_status fail(const Context& ctx, Status status, const char* message) noexcept {
    if (ctx.interrupted_) return ToC(*ctx.interrupted_);
    if (status != Status::kRetryable) status = Status::kPermanent;
    ctx.host_->set_error(ctx.native_, message, std::strlen(message));
    return ToC(status);
  }

  // The body of every generated run function.
  static kagzi_status run(const kagzi_host* host, kagzi_context* native,
                          WorkflowBody body) noexcept {
    if (host == nullptr || host->abi_major != KAGZI_ABI_MAJOR ||
        host->struct_size < sizeof(kagzi_host)) {
      return ToC(Status::kPermanent);
    }
    Context ctx(host, native);
    try {
      ctx.load();
      const Json output = body(ctx, ctx.input_);
      // A body that swallowed the unwind exception still ends as the host said.
      if (ctx.interrupted_) return ToC(*ctx.interrupted_);
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
  WorkflowRegistration(const char* name, std::uint32_t version, kagzi_run_fn run) noexcept;

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
    return workflow;
  }
  const WorkflowRegistration* next() const noexcept { return next_; }

 private:
  const char* name_;
  std::uint32_t version_;
  kagzi_run_fn run_;
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
                                                  kagzi_run_fn run) noexcept
    : name_(name), version_(version), run_(run) {
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

// The same with a registered name that is not a C identifier:
// KAGZI_WORKFLOW_NAMED(send_invoice, "billing.send-invoice", 2, ctx, input) { ... }
#define KAGZI_WORKFLOW_NAMED(kagzi_ident, kagzi_name, kagzi_version, kagzi_ctx, kagzi_input)      \
  static_assert((kagzi_version) >= 1, "KAGZI_WORKFLOW: version must be >= 1");                    \
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
          &kagzi_run_##kagzi_ident##_v##kagzi_version);                                           \
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
