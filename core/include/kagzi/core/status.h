// Status and Result<T>: how errors cross module boundaries in Kagzi.
//
// A Status is a cheap value: a code whose categories match durable semantics
// (retryable vs permanent, not found, conflict = lease lost) plus a message
// that names the object and the reason. Result<T> holds either a T or a
// non-OK Status. Nothing here throws; no exception crosses a module boundary.
// Thread safety: plain values, safe to copy between threads.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace kagzi {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // bad input or config: the caller must change something
  kNotFound,         // the named object does not exist
  kConflict,         // lost a race: lease lost, stale epoch, duplicate
  kUnavailable,      // retryable: database unreachable, connection lost
  kPermanent,        // a permanent failure that is not the caller's input
  kInternal,         // a bug or an impossible state
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  template <typename... Args>
  static Status InvalidArgument(fmt::format_string<Args...> f, Args&&... args) {
    return {StatusCode::kInvalidArgument, fmt::format(f, std::forward<Args>(args)...)};
  }
  template <typename... Args>
  static Status NotFound(fmt::format_string<Args...> f, Args&&... args) {
    return {StatusCode::kNotFound, fmt::format(f, std::forward<Args>(args)...)};
  }
  template <typename... Args>
  static Status Conflict(fmt::format_string<Args...> f, Args&&... args) {
    return {StatusCode::kConflict, fmt::format(f, std::forward<Args>(args)...)};
  }
  template <typename... Args>
  static Status Unavailable(fmt::format_string<Args...> f, Args&&... args) {
    return {StatusCode::kUnavailable, fmt::format(f, std::forward<Args>(args)...)};
  }
  template <typename... Args>
  static Status Permanent(fmt::format_string<Args...> f, Args&&... args) {
    return {StatusCode::kPermanent, fmt::format(f, std::forward<Args>(args)...)};
  }
  template <typename... Args>
  static Status Internal(fmt::format_string<Args...> f, Args&&... args) {
    return {StatusCode::kInternal, fmt::format(f, std::forward<Args>(args)...)};
  }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  bool IsUnavailable() const { return code_ == StatusCode::kUnavailable; }
  bool IsConflict() const { return code_ == StatusCode::kConflict; }
  bool IsNotFound() const { return code_ == StatusCode::kNotFound; }
  bool IsInvalidArgument() const { return code_ == StatusCode::kInvalidArgument; }

  // "<message>" for errors, "OK" for success.
  std::string ToString() const { return ok() ? std::string("OK") : message_; }

  // Returns a copy whose message is "<context>: <message>".
  Status WithContext(std::string_view context) const {
    if (ok()) return *this;
    return {code_, fmt::format("{}: {}", context, message_)};
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (std::get<Status>(v_).ok()) v_ = Status::Internal("Result constructed from an OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace kagzi

// Returns the status from the enclosing function if it is not OK.
#define KAGZI_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::kagzi::Status kagzi_status_ = (expr);        \
    if (!kagzi_status_.ok()) return kagzi_status_; \
  } while (0)
