// JSON and name validation (RapidJSON for JSON; a small UTF-8 decoder).
#include "kagzi/core/validation.h"

#include <optional>

#include <rapidjson/encodedstream.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

namespace kagzi {

namespace {
// Length of the valid UTF-8 sequence at s[i], or 0 if it is invalid.
std::size_t Utf8SequenceLength(const unsigned char* s, std::size_t n, std::size_t i) {
  unsigned char c = s[i];
  std::size_t len = 0;
  std::uint32_t cp = 0;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) {
    len = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > n) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    if ((s[i + k] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i + k] & 0x3F);
  }
  // Overlong forms, surrogates and out-of-range code points.
  if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
      cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return len;
}
}  // namespace

std::string SanitizeText(std::string_view text, std::size_t max_bytes) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  std::string out;
  out.reserve(std::min(text.size(), max_bytes));
  for (std::size_t i = 0; i < text.size();) {
    std::size_t len = Utf8SequenceLength(s, text.size(), i);
    std::string_view piece = len == 0 ? std::string_view("\xEF\xBF\xBD") : text.substr(i, len);
    i += len == 0 ? 1 : len;
    if (piece.size() == 1 && piece[0] == '\0') continue;
    if (out.size() + piece.size() > max_bytes) break;
    out.append(piece);
  }
  return out;
}

namespace {

// Offset of the first byte that does not start a well-formed UTF-8 sequence,
// or nullopt when all of text is valid.
std::optional<std::size_t> FirstInvalidUtf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  for (std::size_t i = 0; i < text.size();) {
    std::size_t len = Utf8SequenceLength(s, text.size(), i);
    if (len == 0) return i;
    i += len;
  }
  return std::nullopt;
}

}  // namespace

bool IsValidUtf8(std::string_view text) { return !FirstInvalidUtf8(text).has_value(); }

namespace {
// Accepts every value; refuses nesting deeper than kMaxJsonDepth, which
// PostgreSQL's json functions and most consumers cannot handle, and strings
// that are not Unicode text: RapidJSON 1.1 decodes an unpaired low
// surrogate escape ("\udc00") into the UTF-8 form of a surrogate instead of
// refusing it, and such a string cannot be printed, re-encoded or read by
// a plugin as UTF-8.
struct DepthLimitedHandler : rapidjson::BaseReaderHandler<rapidjson::UTF8<>, DepthLimitedHandler> {
  int depth = 0;
  bool too_deep = false;
  bool not_unicode = false;
  bool Default() { return true; }
  bool String(const char* s, rapidjson::SizeType length, bool /*copy*/) {
    if (IsValidUtf8(std::string_view(s, length))) return true;
    not_unicode = true;
    return false;
  }
  bool Key(const char* s, rapidjson::SizeType length, bool copy) { return String(s, length, copy); }
  bool Open() {
    if (++depth > kMaxJsonDepth) too_deep = true;
    return !too_deep;
  }
  bool StartObject() { return Open(); }
  bool StartArray() { return Open(); }
  bool EndObject(rapidjson::SizeType) {
    --depth;
    return true;
  }
  bool EndArray(rapidjson::SizeType) {
    --depth;
    return true;
  }
};
}  // namespace

Status ValidateJson(std::string_view text, std::string_view what, std::int64_t max_bytes,
                    std::string_view limit_key) {
  if (static_cast<std::int64_t>(text.size()) > max_bytes) {
    if (limit_key.empty()) {
      return Status::InvalidArgument("{} is {} bytes, larger than the limit of {} bytes", what,
                                     text.size(), max_bytes);
    }
    return Status::InvalidArgument("{} is {} bytes, larger than the limit of {} bytes ({})", what,
                                   text.size(), max_bytes, limit_key);
  }
  if (auto bad = FirstInvalidUtf8(text)) {
    return Status::InvalidArgument("{} is not valid UTF-8 (at byte {})", what, *bad);
  }
  // RapidJSON skips a leading byte order mark, PostgreSQL's json type
  // refuses it (and JSON texts must not carry one, RFC 8259 8.1).
  if (text.starts_with("\xEF\xBB\xBF")) {
    return Status::InvalidArgument(
        "{} is not valid JSON: it begins with a byte order mark (U+FEFF); save it as UTF-8 "
        "without one",
        what);
  }
  // RapidJSON reads a NUL as the end of the text, and libpq would cut the
  // text there: refuse it instead of storing a truncated payload.
  if (auto nul = text.find('\0'); nul != std::string_view::npos) {
    return Status::InvalidArgument("{} contains a NUL byte (at byte {})", what, nul);
  }
  rapidjson::MemoryStream ms(text.data(), text.size());
  rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> is(ms);
  DepthLimitedHandler handler;
  rapidjson::Reader reader;
  rapidjson::ParseResult ok =
      reader.Parse<rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag>(is,
                                                                                           handler);
  if (handler.too_deep) {
    return Status::InvalidArgument("{} nests deeper than {} levels (at byte {})", what,
                                   kMaxJsonDepth, ok.Offset());
  }
  if (handler.not_unicode) {
    return Status::InvalidArgument(
        "{} is not valid JSON: a \\u escape in a string is an unpaired UTF-16 surrogate "
        "(string ending before byte {})",
        what, ok.Offset());
  }
  if (!ok) {
    return Status::InvalidArgument("{} is not valid JSON: {} (at byte {})", what,
                                   rapidjson::GetParseError_En(ok.Code()), ok.Offset());
  }
  return Status::Ok();
}

Status ValidateName(std::string_view name, std::string_view what) {
  if (name.empty()) return Status::InvalidArgument("{} is empty", what);
  if (name.size() > kMaxNameBytes) {
    return Status::InvalidArgument("{} is {} bytes, longer than the limit of {} bytes", what,
                                   name.size(), kMaxNameBytes);
  }
  if (auto bad = FirstInvalidUtf8(name)) {
    return Status::InvalidArgument("{} is not valid UTF-8 (at byte {})", what, *bad);
  }
  for (std::size_t i = 0; i < name.size(); ++i) {
    auto c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7F) {
      return Status::InvalidArgument("{} contains a control character (0x{:02x})", what, c);
    }
    // C1 controls, U+0080..U+009F (valid UTF-8 here: 0xC2 0x80..0x9F); some
    // terminals act on them as on ESC sequences.
    if (c == 0xC2 && static_cast<unsigned char>(name[i + 1]) <= 0x9F) {
      return Status::InvalidArgument("{} contains a control character (U+{:04X})", what,
                                     static_cast<unsigned char>(name[i + 1]));
    }
  }
  return Status::Ok();
}

Status ValidateIdempotencyKey(std::string_view key, std::string_view what) {
  if (key.size() > kMaxIdempotencyKeyBytes) {
    return Status::InvalidArgument("{} is {} bytes, longer than the limit of {} bytes", what,
                                   key.size(), kMaxIdempotencyKeyBytes);
  }
  KAGZI_RETURN_IF_ERROR(ValidateName(key, what));
  if (key.starts_with(kReservedKeyPrefix)) {
    return Status::InvalidArgument(
        "{} begins with \"{}\", which is reserved for the keys of Kagzi's child runs", what,
        kReservedKeyPrefix);
  }
  return Status::Ok();
}

bool IsUuid(std::string_view t) {
  if (t.size() != 36) return false;
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (t[i] != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(t[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace kagzi
