// Fuzz target "json": run input and payload validation (core/validation.h).
//
// The whole input is the text checked. Properties:
//   - ValidateJson accepts exactly what a full JSON parser accepts, minus
//     NUL bytes, invalid UTF-8, nesting deeper than kMaxJsonDepth and text
//     over the limit; a smaller limit never accepts more; the size error
//     names the limit and its config key;
//   - an accepted text, re-serialised, is accepted again;
//   - ValidateName / ValidateIdempotencyKey accept only 1..255 bytes of
//     valid UTF-8 without control characters (keys: not "kagzi:...");
//   - SanitizeText always returns valid UTF-8 without NUL, within its
//     bound, and leaves clean text that fits unchanged;
//   - IsUuid accepts only 36-character texts.
#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/encodedstream.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "fuzz_support.h"
#include "kagzi/core/validation.h"

namespace {

using kagzi::fuzz::HasControlBytes;

// Parses with a full DOM parser (iterative: no recursion on deep input).
// Numbers are kept as their text: JSON allows numbers beyond a double's
// range ("1e400"), which RapidJSON would read as infinity and then refuse
// to write.
bool DomParses(std::string_view text, std::string* reserialised) {
  rapidjson::Document doc;
  rapidjson::MemoryStream ms(text.data(), text.size());
  rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> is(ms);
  doc.ParseStream<rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag |
                  rapidjson::kParseNumbersAsStringsFlag>(is);
  if (doc.HasParseError()) return false;
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  doc.Accept(writer);
  reserialised->assign(buffer.GetString(), buffer.GetSize());
  return true;
}

void CheckJson(std::string_view text) {
  constexpr std::int64_t kBig = 1 << 20;
  const kagzi::Status big = kagzi::ValidateJson(text, "input", kBig);
  const std::int64_t small_limit = static_cast<std::int64_t>(text.size() / 2);
  const kagzi::Status small = kagzi::ValidateJson(text, "input", small_limit, "max_payload_bytes");
  FUZZ_CHECK(big.ok() || big.IsInvalidArgument(), big.message());
  FUZZ_CHECK(!small.ok() || big.ok(), "a smaller limit accepted more");
  if (!text.empty()) {
    FUZZ_CHECK(!small.ok(), "text over the limit accepted");
    const std::string want =
        fmt::format("larger than the limit of {} bytes (max_payload_bytes)", small_limit);
    FUZZ_CHECK(small.message().find(want) != std::string::npos, small.message());
  }
  if (!big.ok()) {
    FUZZ_CHECK(big.message().starts_with("input "), big.message());
    return;
  }
  FUZZ_CHECK(text.find('\0') == std::string_view::npos, "a NUL byte accepted");
  FUZZ_CHECK(kagzi::IsValidUtf8(text), "invalid UTF-8 accepted");
  std::string again;
  FUZZ_CHECK(DomParses(text, &again), "accepted text a DOM parser refuses");
  const kagzi::Status st = kagzi::ValidateJson(again, "re-serialised input", kBig);
  FUZZ_CHECK(st.ok(), st.message() + "\nre-serialised: " + again);
}

void CheckNames(std::string_view text) {
  const kagzi::Status name = kagzi::ValidateName(text, "the name");
  if (name.ok()) {
    FUZZ_CHECK(!text.empty() && text.size() <= kagzi::kMaxNameBytes, "bad length accepted");
    FUZZ_CHECK(kagzi::IsValidUtf8(text), "invalid UTF-8 name accepted");
    FUZZ_CHECK(!HasControlBytes(text), "control character in a name accepted");
  } else {
    FUZZ_CHECK(name.message().starts_with("the name "), name.message());
  }
  const kagzi::Status key = kagzi::ValidateIdempotencyKey(text, "the key");
  FUZZ_CHECK(!key.ok() || name.ok(), "a key accepted that is not a valid name");
  FUZZ_CHECK(!key.ok() || !text.starts_with(kagzi::kReservedKeyPrefix), "reserved key accepted");
  if (name.ok() && !text.starts_with(kagzi::kReservedKeyPrefix)) {
    FUZZ_CHECK(key.ok(), key.message());
  }
}

void CheckSanitize(std::string_view text) {
  for (std::size_t bound : {std::size_t{0}, std::size_t{1}, std::size_t{3}, std::size_t{255},
                            text.size(), text.size() + 8}) {
    const std::string out = kagzi::SanitizeText(text, bound);
    FUZZ_CHECK(out.size() <= bound, fmt::format("{} bytes over a bound of {}", out.size(), bound));
    FUZZ_CHECK(kagzi::IsValidUtf8(out), "SanitizeText returned invalid UTF-8");
    FUZZ_CHECK(out.find('\0') == std::string::npos, "SanitizeText kept a NUL");
    if (kagzi::IsValidUtf8(text) && text.find('\0') == std::string_view::npos &&
        text.size() <= bound) {
      FUZZ_CHECK(out == text, "clean text was changed");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  CheckJson(text);
  CheckNames(text);
  CheckSanitize(text);
  if (kagzi::IsUuid(text)) FUZZ_CHECK(text.size() == 36, "IsUuid accepted a bad length");
  return 0;
}
