// Validation of what crosses a trust boundary: JSON payloads (run input,
// step results, outputs) and names (workflow names, step ids). Errors name
// the thing checked and why it was refused. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kagzi/core/status.h"

namespace kagzi {

// Longest name accepted: workflow names, step ids, event names.
inline constexpr std::size_t kMaxNameBytes = 255;
// Longest idempotency key (kagzictl start --id) accepted.
inline constexpr std::size_t kMaxIdempotencyKeyBytes = 255;
// Idempotency keys that begin with this are Kagzi's own (a child run's key
// is "kagzi:child:<parent run>/<step id>"); users may not start runs with
// them, or they could take the place of a workflow's child run.
inline constexpr std::string_view kReservedKeyPrefix = "kagzi:";
// Deepest nesting of arrays/objects accepted in a JSON payload.
inline constexpr int kMaxJsonDepth = 512;

// `what` names the payload in errors ("input", "output of step \"x\"").
// Accepts exactly one JSON value (surrounding whitespace allowed) in valid
// UTF-8, at most max_bytes long and at most kMaxJsonDepth levels deep.
// `limit_key` names the setting that max_bytes comes from in the size error
// ("... larger than the limit of 1024 bytes (max_payload_bytes)"); empty:
// no setting is named.
Status ValidateJson(std::string_view text, std::string_view what, std::int64_t max_bytes,
                    std::string_view limit_key = "max_payload_bytes");

// 1..255 bytes of valid UTF-8 without control characters (C0, DEL, C1).
Status ValidateName(std::string_view name, std::string_view what);

// An idempotency key: 1..kMaxIdempotencyKeyBytes bytes of valid UTF-8
// without control characters, not starting with kReservedKeyPrefix.
// Quotes, backslashes and SQL text are fine (keys are always bound as
// parameters, never spliced into SQL).
Status ValidateIdempotencyKey(std::string_view key, std::string_view what);

// Text safe for a PostgreSQL text column and a log line: invalid UTF-8
// becomes U+FFFD, NUL bytes are dropped, and the result is cut (on a
// character boundary) to at most max_bytes.
std::string SanitizeText(std::string_view text, std::size_t max_bytes);

// True if text is valid UTF-8.
bool IsValidUtf8(std::string_view text);

// True for a canonical textual UUID (8-4-4-4-12 hex digits).
bool IsUuid(std::string_view text);

}  // namespace kagzi
