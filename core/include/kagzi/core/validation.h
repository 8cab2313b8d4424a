// Validation of what crosses a trust boundary: JSON payloads (run input,
// step results, outputs) and names (workflow names, step ids). Errors name
// the thing checked and why it was refused. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kagzi/core/status.h"

namespace kagzi {

inline constexpr std::size_t kMaxNameBytes = 255;
// Deepest nesting of arrays/objects accepted in a JSON payload.
inline constexpr int kMaxJsonDepth = 512;

// `what` names the payload in errors ("input", "output of step \"x\"").
// Accepts exactly one JSON value (surrounding whitespace allowed) in valid
// UTF-8, at most max_bytes long and at most kMaxJsonDepth levels deep.
Status ValidateJson(std::string_view text, std::string_view what, std::int64_t max_bytes);

// 1..255 bytes of valid UTF-8 without control characters.
Status ValidateName(std::string_view name, std::string_view what);

// Text safe for a PostgreSQL text column and a log line: invalid UTF-8
// becomes U+FFFD, NUL bytes are dropped, and the result is cut (on a
// character boundary) to at most max_bytes.
std::string SanitizeText(std::string_view text, std::size_t max_bytes);

// True if text is valid UTF-8.
bool IsValidUtf8(std::string_view text);

// True for a canonical textual UUID (8-4-4-4-12 hex digits).
bool IsUuid(std::string_view text);

}  // namespace kagzi
