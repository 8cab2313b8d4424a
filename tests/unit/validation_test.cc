// Validation of what crosses a trust boundary (JSON payloads, names, run
// ids), durations, and the names of run statuses and step kinds.
#include "kagzi/core/validation.h"

#include <chrono>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kagzi/core/config.h"
#include "kagzi/core/store.h"

namespace kagzi {
namespace {

using std::chrono::milliseconds;

constexpr std::int64_t kLimit = 1024 * 1024;

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

::testing::AssertionResult Matches(const std::string& text, const std::string& pattern) {
  if (std::regex_search(text, std::regex(pattern))) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not match /" << pattern << "/";
}

TEST(ValidateJsonTest, AcceptsEveryValueType) {
  const std::vector<std::string> ok = {
      "null",
      "true",
      "false",
      "0",
      "-0",
      "42",
      "-1.5e-10",
      "1E+300",
      "\"\"",
      "\"text\"",
      "\"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\ud83d\\ude00\"",
      "\"caf\xc3\xa9 \xe6\xad\xa5\xe9\xaa\xa4 \xf0\x9f\x98\x80\"",
      "[]",
      "{}",
      "[1, \"two\", 3.0, true, false, null, [], {}]",
      "{\"a\": {\"b\": [1, {\"c\": null}]}, \"d\": \"e\"}",
      "  \n\t{\"padded\": true}\r\n ",
      " 7 ",
  };
  for (const auto& text : ok) {
    Status st = ValidateJson(text, "input", kLimit);
    EXPECT_TRUE(st.ok()) << text << ": " << st.message();
  }
}

TEST(ValidateJsonTest, RefusesTrailingGarbage) {
  for (const std::string text :
       {"{} x", "1 2", "{}{}", "[1] ]", "null,", "\"a\" \"b\"", "tru", "nul", "[1,]", "{\"a\":1,}",
        "{'a':1}", "01", "NaN", "+1", "[1 2]"}) {
    Status st = ValidateJson(text, "input", kLimit);
    EXPECT_FALSE(st.ok()) << text;
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << text;
  }
}

TEST(ValidateJsonTest, RefusesEmptyText) {
  for (const std::string text : {"", " ", "\n\t "}) {
    Status st = ValidateJson(text, "input", kLimit);
    EXPECT_FALSE(st.ok()) << "\"" << text << "\"";
    EXPECT_TRUE(Contains(st.message(), "input"));
  }
}

TEST(ValidateJsonTest, RefusesNulBytes) {
  // A NUL would cut the text short on its way to the database.
  for (const std::string& text :
       {std::string("{}\0garbage", 10), std::string("\"a\0b\"", 5), std::string("\0", 1)}) {
    Status st = ValidateJson(text, "input", kLimit);
    EXPECT_FALSE(st.ok()) << "a NUL byte was accepted at size " << text.size();
  }
}

TEST(ValidateJsonTest, ErrorNamesWhatAndByteOffset) {
  Status st = ValidateJson("[1,2,x]", "output of step \"fetch\"", kLimit);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(st.message(), "output of step \"fetch\""));
  EXPECT_TRUE(Contains(st.message(), "byte 5"));

  st = ValidateJson("{\"a\": tru}", "input", kLimit);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(Contains(st.message(), "input"));
  EXPECT_TRUE(Matches(st.message(), "byte [0-9]+"));
}

TEST(ValidateJsonTest, RefusesInvalidUtf8) {
  struct Case {
    const char* name;
    std::string text;
    std::size_t offset;  // of the first bad byte
  };
  const std::vector<Case> cases = {
      {"overlong 2-byte '/'", "\"\xc0\xaf\"", 1},
      {"overlong 3-byte '/'", "\"\xe0\x80\xaf\"", 1},
      {"overlong 4-byte", "\"\xf0\x80\x80\xaf\"", 1},
      {"overlong NUL", "\"ab\xc0\x80\"", 3},
      {"UTF-16 high surrogate", "\"\xed\xa0\x80\"", 1},
      {"UTF-16 low surrogate", "\"x\xed\xbf\xbf\"", 2},
      {"truncated 3-byte", "\"\xe2\x82\"", 1},
      {"truncated at end", "\"\xe2\x82", 1},
      {"lone continuation byte", "[\"\x80\"]", 2},
      {"beyond U+10FFFF", "\"\xf4\x90\x80\x80\"", 1},
      {"0xFF byte", "\"\xff\"", 1},
      {"0xFE byte", "[1, \"\xfe\"]", 5},
      {"bad byte outside a string", "[1]\xc3", 3},
  };
  for (const auto& tc : cases) {
    EXPECT_FALSE(IsValidUtf8(tc.text)) << tc.name;
    Status st = ValidateJson(tc.text, "input", kLimit);
    ASSERT_FALSE(st.ok()) << tc.name;
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << tc.name;
    EXPECT_TRUE(Contains(st.message(), "input")) << tc.name;
    EXPECT_TRUE(Contains(st.message(), "UTF-8")) << tc.name;
    EXPECT_TRUE(Contains(st.message(), "byte " + std::to_string(tc.offset))) << tc.name;
  }
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9 \xe6\xad\xa5 \xf4\x8f\xbf\xbf \xef\xbf\xbf"));
  EXPECT_TRUE(IsValidUtf8(""));
}

TEST(ValidateJsonTest, RefusesOversizedPayloadNamingTheLimit) {
  std::string big = "\"" + std::string(2000, 'a') + "\"";
  Status st = ValidateJson(big, "input", 1024);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(st.message(), "input"));
  EXPECT_TRUE(Contains(st.message(), "1024"));
  EXPECT_TRUE(Contains(st.message(), "2002"));

  std::string exact = "\"" + std::string(1022, 'a') + "\"";
  ASSERT_EQ(exact.size(), 1024u);
  EXPECT_TRUE(ValidateJson(exact, "input", 1024).ok());
  EXPECT_FALSE(ValidateJson(exact + " ", "input", 1024).ok());
}

TEST(ValidateJsonTest, DeepNestingDoesNotCrash) {
  const std::string open(100000, '[');
  Status st = ValidateJson(open, "input", kLimit);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(st.message(), "input"));

  std::string objects;
  for (int i = 0; i < 50000; ++i) objects += "{\"a\":";
  st = ValidateJson(objects, "input", kLimit);
  EXPECT_FALSE(st.ok());

  // Balanced but absurdly deep: refused by the depth limit, not by a stack
  // overflow.
  const std::string balanced = open + std::string(100000, ']');
  st = ValidateJson(balanced, "input", kLimit);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(Contains(st.message(), "nests deeper than 512 levels")) << st.message();
}

TEST(ValidateJsonTest, DepthLimitIs512Levels) {
  auto nested = [](int depth) { return std::string(depth, '[') + "1" + std::string(depth, ']'); };
  EXPECT_TRUE(ValidateJson(nested(kMaxJsonDepth), "input", kLimit).ok());
  Status st = ValidateJson(nested(kMaxJsonDepth + 1), "input", kLimit);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(st.message(), "input nests deeper than 512 levels")) << st.message();
  // Depth, not size: many shallow siblings are fine.
  std::string wide = "[";
  for (int i = 0; i < 10000; ++i) wide += (i ? ",[1]" : "[1]");
  EXPECT_TRUE(ValidateJson(wide + "]", "input", kLimit).ok());
}

TEST(ValidateNameTest, AcceptsOrdinaryAndUtf8Names) {
  for (const std::string name : {"hello", "welcome_email", "step-1", "a", "with space",
                                 "caf\xc3\xa9-\xe6\xad\xa5\xe9\xaa\xa4", "\xf0\x9f\x98\x80"}) {
    Status st = ValidateName(name, "workflow name");
    EXPECT_TRUE(st.ok()) << name << ": " << st.message();
  }
}

TEST(ValidateNameTest, LengthLimitIs255Bytes) {
  EXPECT_TRUE(ValidateName(std::string(255, 'a'), "step id").ok());
  Status st = ValidateName(std::string(256, 'a'), "step id");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(st.message(), "step id"));
  EXPECT_TRUE(Contains(st.message(), "255"));

  // Bytes, not characters: 85 three-byte characters are 255 bytes.
  std::string wide;
  for (int i = 0; i < 85; ++i) wide += "\xe6\xad\xa5";
  ASSERT_EQ(wide.size(), 255u);
  EXPECT_TRUE(ValidateName(wide, "step id").ok());
  EXPECT_FALSE(ValidateName(wide + "\xe6\xad\xa5", "step id").ok());
}

TEST(ValidateNameTest, RefusesEmptyControlCharsAndBadUtf8) {
  Status st = ValidateName("", "workflow name");
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(Contains(st.message(), "workflow name"));

  for (const std::string& name :
       {std::string("line\nbreak"), std::string("a\x01"), std::string("del\x7f"),
        std::string("tab\t"), std::string("nul\0x", 5), std::string("\r")}) {
    st = ValidateName(name, "step id");
    EXPECT_FALSE(st.ok()) << "control character accepted in a name of size " << name.size();
    EXPECT_TRUE(Contains(st.message(), "step id"));
  }
  for (const std::string name : {"\xff", "ab\xc0\xaf", "\xed\xa0\x80", "x\xe2\x82"}) {
    st = ValidateName(name, "step id");
    EXPECT_FALSE(st.ok());
    EXPECT_TRUE(Contains(st.message(), "UTF-8"));
  }
}

TEST(SanitizeTextTest, MakesAnyBytesSafeText) {
  EXPECT_EQ(SanitizeText("plain text", 100), "plain text");
  EXPECT_EQ(SanitizeText("caf\xc3\xa9", 100), "caf\xc3\xa9");
  // Invalid UTF-8 becomes U+FFFD; NUL bytes are dropped.
  EXPECT_EQ(SanitizeText("a\xff"
                         "b",
                         100),
            "a\xef\xbf\xbd"
            "b");
  EXPECT_EQ(SanitizeText(std::string("a\0b", 3), 100), "ab");
  std::string mixed = SanitizeText("\xc0\xaf\xed\xa0\x80ok", 100);
  EXPECT_TRUE(IsValidUtf8(mixed));
  EXPECT_NE(mixed.find("ok"), std::string::npos);
  // Cut to max_bytes on a character boundary.
  std::string cut = SanitizeText("ab\xe6\xad\xa5", 4);
  EXPECT_EQ(cut, "ab");
  EXPECT_EQ(SanitizeText(std::string(1000, 'x'), 10).size(), 10u);
  EXPECT_EQ(SanitizeText("", 10), "");
}

TEST(IsUuidTest, CanonicalFormOnly) {
  EXPECT_TRUE(IsUuid("123e4567-e89b-12d3-a456-426614174000"));
  EXPECT_TRUE(IsUuid("00000000-0000-0000-0000-000000000000"));
  EXPECT_TRUE(IsUuid("ABCDEF01-2345-6789-ABCD-EF0123456789"));
  for (const char* bad :
       {"", "123e4567e89b12d3a456426614174000", "123e4567-e89b-12d3-a456-42661417400",
        "123e4567-e89b-12d3-a456-4266141740000", "{123e4567-e89b-12d3-a456-426614174000}",
        "123e4567-e89b-12d3-a456_426614174000", "123e4567-e89b-12d3-a4567-26614174000",
        "g23e4567-e89b-12d3-a456-426614174000", " 23e4567-e89b-12d3-a456-426614174000",
        "not-a-uuid"}) {
    EXPECT_FALSE(IsUuid(bad)) << bad;
  }
}

TEST(DurationTest, ParsesUnits) {
  struct Case {
    const char* text;
    std::int64_t ms;
  };
  for (const Case& tc : std::vector<Case>{{"250ms", 250},
                                          {"30s", 30'000},
                                          {"5m", 300'000},
                                          {"2min", 120'000},
                                          {"87600h", 315'360'000'000},
                                          {"1h", 3'600'000},
                                          {"45", 45'000},
                                          {"0", 0},
                                          {" 30s ", 30'000}}) {
    auto d = ParseDuration(tc.text);
    ASSERT_TRUE(d.ok()) << tc.text << ": " << d.status().message();
    EXPECT_EQ(d->count(), tc.ms) << tc.text;
  }
}

TEST(DurationTest, RefusesNonsense) {
  for (const char* text :
       {"", "abc", "10 parsecs", "-5s", "1.5s", "5 s", "s", "ms", "5sec", "99999999999999999999s",
        "2000000000000h", "+3s", "87601h", "315360000001ms"}) {
    auto d = ParseDuration(text);
    EXPECT_FALSE(d.ok()) << text;
    if (!d.ok()) {
      EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument) << text;
      EXPECT_TRUE(Contains(d.status().message(), text)) << text;
    }
  }
}

TEST(DurationTest, FormatAndParseRoundTrip) {
  for (std::int64_t ms : {0LL, 1LL, 250LL, 999LL, 1'000LL, 1'500LL, 30'000LL, 90'000LL, 300'000LL,
                          3'600'000LL, 5'400'000LL, 86'400'000LL, 123'456'789LL}) {
    std::string text = FormatDuration(milliseconds(ms));
    auto back = ParseDuration(text);
    ASSERT_TRUE(back.ok()) << ms << " -> " << text << ": " << back.status().message();
    EXPECT_EQ(back->count(), ms) << text;
  }
  EXPECT_EQ(FormatDuration(milliseconds(250)), "250ms");
  EXPECT_EQ(FormatDuration(milliseconds(30'000)), "30s");
  EXPECT_EQ(FormatDuration(milliseconds(300'000)), "5m");
  EXPECT_EQ(FormatDuration(milliseconds(3'600'000)), "1h");
}

TEST(NamesTest, RunStatusRoundTrip) {
  for (RunStatus s : {RunStatus::kPending, RunStatus::kRunning, RunStatus::kSleeping,
                      RunStatus::kCompleted, RunStatus::kFailed, RunStatus::kCancelled}) {
    std::string name(RunStatusName(s));
    EXPECT_EQ(ParseRunStatus(name), s) << name;
    std::string lower = name;
    for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    EXPECT_EQ(ParseRunStatus(lower), s) << lower;
  }
  EXPECT_EQ(RunStatusName(RunStatus::kPending), "PENDING");
  EXPECT_EQ(RunStatusName(RunStatus::kCompleted), "COMPLETED");
  EXPECT_EQ(ParseRunStatus("DONE"), std::nullopt);
  EXPECT_EQ(ParseRunStatus(""), std::nullopt);
  EXPECT_TRUE(IsTerminal(RunStatus::kCompleted));
  EXPECT_TRUE(IsTerminal(RunStatus::kFailed));
  EXPECT_TRUE(IsTerminal(RunStatus::kCancelled));
  EXPECT_FALSE(IsTerminal(RunStatus::kPending));
  EXPECT_FALSE(IsTerminal(RunStatus::kRunning));
  EXPECT_FALSE(IsTerminal(RunStatus::kSleeping));
}

TEST(NamesTest, StepKindRoundTrip) {
  for (StepKind k : {StepKind::kStep, StepKind::kSleep, StepKind::kEvent, StepKind::kChild}) {
    std::string name(StepKindName(k));
    EXPECT_EQ(ParseStepKind(name), k) << name;
  }
  EXPECT_EQ(StepKindName(StepKind::kSleep), "sleep");
  EXPECT_EQ(ParseStepKind("nap"), std::nullopt);
  EXPECT_EQ(ParseStepKind(""), std::nullopt);
}

TEST(NamesTest, StatusCodeNames) {
  EXPECT_EQ(StatusCodeName(StatusCode::kOk), "ok");
  EXPECT_EQ(StatusCodeName(StatusCode::kConflict), "conflict");
  EXPECT_EQ(StatusCodeName(StatusCode::kUnavailable), "unavailable");
  Status st = Status::Conflict("run {} lost", 7).WithContext("recording");
  EXPECT_EQ(st.code(), StatusCode::kConflict);
  EXPECT_EQ(st.message(), "recording: run 7 lost");
  EXPECT_TRUE(Status::Ok().WithContext("x").ok());
}

}  // namespace
}  // namespace kagzi
