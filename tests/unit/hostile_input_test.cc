// Hostile and oversized input (issue 5, section 4), without a database:
// the size limits and the errors that name them and their config key, names
// and idempotency keys with control characters, quotes and SQL, the JSON
// texts RapidJSON lets through that are not Unicode, and kagzictl's checks
// made before it connects (ctl/checks.h), including a bounded --input-file
// and start --batch files (line numbers in errors, the run limit, keys).
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "checks.h"
#include "kagzi/core/config.h"
#include "kagzi/core/validation.h"

namespace kagzi {
namespace {

using std::chrono::milliseconds;

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

constexpr char kSqlName[] = "x'); DROP TABLE kagzi_runs;--";
constexpr char kQuotedKey[] = R"(order "42" it's \ 'quoted')";

// --- limits --------------------------------------------------------------------

TEST(PayloadLimitTest, SizeErrorNamesTheLimitAndItsConfigKey) {
  const std::string big = "\"" + std::string(2000, 'x') + "\"";
  Status st = ValidateJson(big, "event data (--data)", 1024);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(),
            "event data (--data) is 2002 bytes, larger than the limit of 1024 bytes "
            "(max_payload_bytes)");
  st = ValidateJson(big, "the event payload", 1024, "");
  EXPECT_EQ(st.message(), "the event payload is 2002 bytes, larger than the limit of 1024 bytes");
  st = ValidateJson(big, "result of step \"s\"", 1024, "max_payload_bytes");
  EXPECT_TRUE(Contains(st.message(), "(max_payload_bytes)"));
}

TEST(PayloadLimitTest, MaxPayloadBytesIsConfigurableWithinItsRange) {
  Config c;
  EXPECT_EQ(c.max_payload_bytes, 16 * 1024 * 1024);
  ASSERT_TRUE(ApplyValue("max_payload_bytes", "1024", "flag --max-payload-bytes", &c).ok());
  EXPECT_EQ(c.max_payload_bytes, 1024);
  Status st = ApplyValue("max_payload_bytes", "1023", "flag --max-payload-bytes", &c);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(Contains(st.message(), "flag --max-payload-bytes: max_payload_bytes: must be"));
}

TEST(NameLimitTest, NamesAndKeysAreAtMost255Bytes) {
  EXPECT_TRUE(ValidateName(std::string(255, 'n'), "the workflow name").ok());
  Status st = ValidateName(std::string(256, 'n'), "the workflow name");
  EXPECT_EQ(st.message(), "the workflow name is 256 bytes, longer than the limit of 255 bytes");
  EXPECT_TRUE(ValidateIdempotencyKey(std::string(kMaxIdempotencyKeyBytes, 'k'), "the key").ok());
  st = ValidateIdempotencyKey(std::string(kMaxIdempotencyKeyBytes + 1, 'k'), "the key");
  EXPECT_EQ(st.message(), "the key is 256 bytes, longer than the limit of 255 bytes");
  // A 10 MB key is refused by its length, before anything reads it all.
  st = ValidateIdempotencyKey(std::string(10 * 1024 * 1024, 'k'), "the key");
  EXPECT_TRUE(Contains(st.message(), "longer than the limit of 255 bytes"));
}

// --- control characters, quotes, SQL ---------------------------------------------

TEST(NameContentTest, ControlCharactersAreRefusedEverywhere) {
  const std::vector<std::string> bad_names = {
      "a\nb",       "a\rb",    "tab\there",   std::string("nul\0x", 5),
      "esc\x1b[2J", "del\x7f", "nel\xc2\x85", "csi\xc2\x9b"};
  for (const std::string& bad : bad_names) {
    EXPECT_FALSE(ValidateName(bad, "the event name").ok()) << bad;
    EXPECT_FALSE(ValidateIdempotencyKey(bad, "the key").ok()) << bad;
  }
  EXPECT_EQ(ValidateName("a\xc2\x85", "the step id").message(),
            "the step id contains a control character (U+0085)");
  EXPECT_EQ(ValidateName("a\nb", "the step id").message(),
            "the step id contains a control character (0x0a)");
  // U+00A0 and beyond are text, not controls.
  EXPECT_TRUE(ValidateName("nbsp\xc2\xa0ok \xc2\xbfqu\xc3\xa9?", "the step id").ok());
}

TEST(NameContentTest, QuotesAndSqlAreOrdinaryText) {
  EXPECT_TRUE(ValidateName(kSqlName, "the workflow name").ok());
  EXPECT_TRUE(ValidateIdempotencyKey(kQuotedKey, "the key").ok());
  EXPECT_TRUE(ValidateIdempotencyKey(kSqlName, "the key").ok());
}

TEST(NameContentTest, KeysOfKagzisOwnChildRunsAreReserved) {
  Status st = ValidateIdempotencyKey("kagzi:child:00000000-0000-4000-8000-000000000000/charge",
                                     "the idempotency key (--id)");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(),
            "the idempotency key (--id) begins with \"kagzi:\", which is reserved for the keys of "
            "Kagzi's child runs");
  EXPECT_TRUE(ValidateIdempotencyKey("kagzi-order-1", "k").ok());
  EXPECT_TRUE(ValidateIdempotencyKey("Kagzi:child:x", "k").ok());  // prefix is case-sensitive
}

// --- JSON that is not Unicode ----------------------------------------------------

TEST(JsonUnicodeTest, UnpairedSurrogateEscapesAreRefused) {
  // RapidJSON 1.1 decodes a lone low surrogate into invalid UTF-8 instead
  // of refusing it (found by the "json" fuzz target).
  for (const std::string bad : {R"("\ude00")", R"({"\udc00":1})", R"(["a\udfffb"])", R"("\ud83d")",
                                R"("\ud83dx")", R"("\ude00\ud83d")"}) {
    Status st = ValidateJson(bad, "input", 1024);
    EXPECT_FALSE(st.ok()) << bad;
    EXPECT_TRUE(Contains(st.message(), "input is not valid JSON")) << bad;
  }
  EXPECT_TRUE(Contains(ValidateJson(R"("\ude00")", "input", 1024).message(), "surrogate"));
  // Pairs, escaped NULs and other escapes are fine.
  for (const std::string good : {R"("\ud83d\ude00")", R"("\u0000")", R"("\u00e9\uffff")"}) {
    Status st = ValidateJson(good, "input", 1024);
    EXPECT_TRUE(st.ok()) << good << ": " << st.message();
  }
}

TEST(JsonUnicodeTest, ALeadingByteOrderMarkIsRefusedWithItsName) {
  // RapidJSON skips it; PostgreSQL's json type refuses it, so it was only
  // found at the database (kagzictl exit 5).
  Status st = ValidateJson("\xEF\xBB\xBF{\"a\":1}", "the run input", 1024);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(st.message(), "the run input is not valid JSON")) << st.message();
  EXPECT_TRUE(Contains(st.message(), "byte order mark")) << st.message();
  // Inside a string it is an ordinary character.
  EXPECT_TRUE(ValidateJson("\"\xEF\xBB\xBF\"", "the run input", 1024).ok());
}

// --- kagzictl's checks ------------------------------------------------------------

class CtlChecksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("kagzi-hostile-input-test-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    config_.max_payload_bytes = 1024;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }

  std::filesystem::path dir_;
  Config config_;
};

ctl::StartOptions Start(std::string workflow) {
  ctl::StartOptions o;
  o.workflow = std::move(workflow);
  return o;
}

TEST_F(CtlChecksTest, StartAcceptsSqlInNamesAndQuotesInKeys) {
  ctl::StartOptions o = Start(kSqlName);
  o.idempotency_key = kQuotedKey;
  o.input = R"({"q":"'; DROP TABLE kagzi_steps;--"})";
  auto plan = ctl::CheckStart(o, config_, ctl::ReadInputFile);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  EXPECT_EQ(plan->input, *o.input);
  EXPECT_FALSE(plan->deadline.has_value());
}

TEST_F(CtlChecksTest, StartRefusesWhatTheStoreWouldNotHold) {
  struct Case {
    ctl::StartOptions options;
    std::string message;
  };
  std::vector<Case> cases;
  cases.push_back({Start("bad\nname"), "the workflow name contains a control character (0x0a)"});
  cases.push_back({Start(std::string(300, 'w')),
                   "the workflow name is 300 bytes, longer than the limit of 255 bytes"});
  {
    ctl::StartOptions o = Start("w");
    o.idempotency_key = "kagzi:child:x/y";
    cases.push_back({o, "cannot start workflow \"w\": the idempotency key (--id) begins with"});
  }
  {
    ctl::StartOptions o = Start("w");
    o.idempotency_key = std::string(256, 'k');
    cases.push_back({o,
                     "cannot start workflow \"w\": the idempotency key (--id) is 256 bytes, "
                     "longer than the limit of 255 bytes"});
  }
  {
    ctl::StartOptions o = Start("w");
    o.idempotency_key = "line\nbreak";
    cases.push_back({o, "the idempotency key (--id) contains a control character (0x0a)"});
  }
  {
    ctl::StartOptions o = Start("w");
    o.input = "\"" + std::string(1100, 'i') + "\"";
    cases.push_back({o,
                     "cannot start workflow \"w\": input (--input) is 1102 bytes, larger than the "
                     "limit of 1024 bytes (max_payload_bytes)"});
  }
  {
    ctl::StartOptions o = Start("w");
    o.input = R"("\udc00")";
    cases.push_back({o, "input (--input) is not valid JSON"});
  }
  {
    ctl::StartOptions o = Start("w");
    o.timeout = "0";
    cases.push_back({o, "--timeout \"0\" must be more than 0"});
  }
  for (const auto& c : cases) {
    auto plan = ctl::CheckStart(c.options, config_, ctl::ReadInputFile);
    ASSERT_FALSE(plan.ok()) << c.message;
    EXPECT_TRUE(Contains(plan.status().message(), c.message));
  }
}

TEST_F(CtlChecksTest, InputFileIsReadOnlyUpToTheLimit) {
  ctl::StartOptions o = Start("w");
  o.input_file = Write("big.json", "\"" + std::string(5000, 'f') + "\"");
  auto plan = ctl::CheckStart(o, config_, ctl::ReadInputFile);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().message(),
            "cannot start workflow \"w\": input file \"" + *o.input_file +
                "\" is larger than the limit of 1024 bytes (max_payload_bytes)");

  // An endless file is refused after max_payload_bytes + 1 bytes.
  auto endless = ctl::ReadInputFile("/dev/zero", 1024);
  ASSERT_FALSE(endless.ok());
  EXPECT_TRUE(Contains(endless.status().message(), "larger than the limit of 1024 bytes"));

  o.input_file = Write("exact.json", "\"" + std::string(1022, 'f') + "\"");
  plan = ctl::CheckStart(o, config_, ctl::ReadInputFile);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  EXPECT_EQ(plan->input.size(), 1024u);
}

TEST_F(CtlChecksTest, SignalDataIsLimitedAndNamesAreChecked) {
  ctl::SignalOptions o;
  o.run_id = "00000000-0000-4000-8000-000000000000";
  o.name = "approved";
  auto data = ctl::CheckSignal(o, config_);
  ASSERT_TRUE(data.ok()) << data.status().message();
  EXPECT_EQ(*data, "null");

  o.data = "[" + std::string(2000, '1') + "]";
  data = ctl::CheckSignal(o, config_);
  ASSERT_FALSE(data.ok());
  EXPECT_EQ(data.status().message(),
            "cannot signal run 00000000-0000-4000-8000-000000000000: event data (--data) is 2002 "
            "bytes, larger than the limit of 1024 bytes (max_payload_bytes)");

  o.data.reset();
  o.name = std::string(256, 'e');
  data = ctl::CheckSignal(o, config_);
  ASSERT_FALSE(data.ok());
  EXPECT_TRUE(Contains(data.status().message(),
                       "the event name is 256 bytes, longer than the limit of 255 bytes"));
  o.name = "ev\x1b[2J";
  EXPECT_FALSE(ctl::CheckSignal(o, config_).ok());
  o.name = kSqlName;
  EXPECT_TRUE(ctl::CheckSignal(o, config_).ok());
  o.run_id = "x'; --";
  EXPECT_FALSE(ctl::CheckSignal(o, config_).ok());
}

TEST_F(CtlChecksTest, ListAndCancelChecks) {
  ctl::ListOptions list;
  list.workflow = kSqlName;
  list.since = "2026-11-26T10:00:00.5+01:00";
  list.until = "10m";
  auto plan = ctl::CheckList(list);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  EXPECT_EQ(plan->filter.workflow, std::optional<std::string>(kSqlName));
  ASSERT_TRUE(plan->filter.created_after.has_value());
  EXPECT_EQ(*plan->filter.created_after, 1795683600500000);  // 2026-11-26T09:00:00.5Z
  ASSERT_TRUE(plan->until.has_value());
  EXPECT_TRUE(plan->until->relative);
  EXPECT_EQ(plan->until->value, 600'000'000);

  list.workflow = "bad\nname";
  EXPECT_FALSE(ctl::CheckList(list).ok());

  ctl::CancelOptions cancel;
  cancel.run_id = "00000000-0000-4000-8000-000000000000";
  cancel.reason = std::string(ctl::kMaxReasonBytes + 1, 'r');
  auto reason = ctl::CheckCancel(cancel);
  ASSERT_FALSE(reason.ok());
  EXPECT_TRUE(Contains(reason.status().message(), "the limit is 4096"));
  cancel.reason.reset();
  reason = ctl::CheckCancel(cancel);
  ASSERT_TRUE(reason.ok());
  EXPECT_EQ(*reason, ctl::kDefaultCancelReason);
}

// --- start --batch ------------------------------------------------------------------

ctl::BatchOptions Batch(std::int64_t max_payload_bytes = 1024, std::size_t max_runs = 3) {
  ctl::BatchOptions o;
  o.source = "--batch \"b.jsonl\"";
  o.max_payload_bytes = max_payload_bytes;
  o.max_runs = max_runs;
  return o;
}

TEST(BatchTest, OneRunPerLineThatIsNotBlankNumberedByItsLine) {
  ctl::BatchOptions o = Batch();
  o.id_prefix = "p";
  auto runs = ctl::ParseBatch("\n{}\r\n \t\r\n[1, 2]\n\"last\"", o);
  ASSERT_TRUE(runs.ok()) << runs.status().message();
  ASSERT_EQ(runs->size(), 3u);
  EXPECT_EQ((*runs)[0].line, 2);
  EXPECT_EQ((*runs)[0].input, "{}");  // the CR of a CRLF line end is dropped
  EXPECT_EQ((*runs)[0].idempotency_key, std::optional<std::string>("p-2"));
  EXPECT_EQ((*runs)[1].line, 4);
  EXPECT_EQ((*runs)[1].input, "[1, 2]");
  EXPECT_EQ((*runs)[2].line, 5);
  EXPECT_EQ((*runs)[2].input, "\"last\"");
  EXPECT_EQ((*runs)[2].idempotency_key, std::optional<std::string>("p-5"));

  auto none = ctl::ParseBatch("", Batch());
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  none = ctl::ParseBatch("\n\n   \n", Batch());
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  // A byte order mark at the start of the file is skipped (PostgreSQL's
  // json type would refuse it).
  auto bom = ctl::ParseBatch("\xef\xbb\xbf{}\n", Batch());
  ASSERT_TRUE(bom.ok()) << bom.status().message();
  EXPECT_EQ((*bom)[0].input, "{}");
  auto unkeyed = ctl::ParseBatch("1\n", Batch());
  ASSERT_TRUE(unkeyed.ok());
  EXPECT_FALSE((*unkeyed)[0].idempotency_key.has_value());
}

TEST(BatchTest, MoreRunsThanTheLimitAreRefusedNamingIt) {
  // Blank lines do not count; the fourth run does.
  EXPECT_TRUE(ctl::ParseBatch("1\n\n2\n\n3\n\n", Batch()).ok());
  auto over = ctl::ParseBatch("1\n\n2\n\n3\n\n4\n", Batch());
  ASSERT_FALSE(over.ok());
  EXPECT_TRUE(over.status().IsInvalidArgument());
  EXPECT_EQ(over.status().message(),
            "--batch \"b.jsonl\": more than 3 runs (line 7 is run 4); one call starts at most 3: "
            "split the file");
  EXPECT_EQ(ctl::kMaxBatchRuns, 100'000u);
}

TEST(BatchTest, TheFirstBadLineIsNamed) {
  struct Case {
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"{}\n{}\n{\"a\":\n", "--batch \"b.jsonl\": line 3: the run input is not valid JSON"},
      {"{}\n\"" + std::string(1100, 'x') + "\"\n",
       "--batch \"b.jsonl\": line 2: the run input is 1102 bytes, larger than the limit of 1024 "
       "bytes (max_payload_bytes)"},
      {"\"\xc3\x28\"\n", "line 1: the run input is not valid UTF-8 (at byte 1)"},
      {std::string("{}\n\"a\0b\"\n", 9), "line 2: the run input contains a NUL byte (at byte 2)"},
      {"\"\\udc00\"\n", "line 1: the run input is not valid JSON: a \\u escape"},
      {"1 2\n", "line 1: the run input is not valid JSON"},
      {"\xef\xbb\xbf{}\n\xef\xbb\xbf{}\n",
       "line 2: the run input begins with a byte order mark (U+FEFF), which is not JSON"},
  };
  for (const auto& c : cases) {
    auto runs = ctl::ParseBatch(c.text, Batch());
    ASSERT_FALSE(runs.ok()) << c.message;
    EXPECT_TRUE(Contains(runs.status().message(), c.message));
  }
}

TEST(BatchTest, IdPrefixAndEachKeyAreChecked) {
  ctl::BatchOptions o = Batch();
  o.id_prefix = "kagzi:child:x";
  auto reserved = ctl::ParseBatch("{}\n", o);
  ASSERT_FALSE(reserved.ok());
  EXPECT_TRUE(Contains(reserved.status().message(),
                       "the idempotency key prefix (--id-prefix) begins with \"kagzi:\""));
  o.id_prefix = "a\tb";
  EXPECT_FALSE(ctl::ParseBatch("{}\n", o).ok());
  o.id_prefix = "";
  EXPECT_FALSE(ctl::ParseBatch("{}\n", o).ok());
  // 253 bytes + "-9" fits in 255; line 10's key does not.
  o.id_prefix = std::string(253, 'k');
  o.max_runs = 100;
  EXPECT_TRUE(ctl::ParseBatch("1\n2\n3\n4\n5\n6\n7\n8\n9\n", o).ok());
  auto long_key = ctl::ParseBatch("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", o);
  ASSERT_FALSE(long_key.ok());
  EXPECT_TRUE(Contains(long_key.status().message(),
                       "--batch \"b.jsonl\": line 10: its idempotency key (--id-prefix) is 256 "
                       "bytes, longer than the limit of 255 bytes"));
}

TEST_F(CtlChecksTest, StartBatchReadsTheFileWithItsOwnLimitAndRefusesSingleRunOptions) {
  ctl::StartOptions o = Start("w");
  o.batch = Write("runs.jsonl", "{}\n\n[1]\n");
  o.id_prefix = "nightly";
  o.timeout = "30s";
  auto plan = ctl::CheckStart(o, config_, ctl::ReadInputFile);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  ASSERT_TRUE(plan->batch.has_value());
  ASSERT_EQ(plan->batch->size(), 2u);
  EXPECT_EQ((*plan->batch)[1].line, 3);
  EXPECT_EQ((*plan->batch)[1].idempotency_key, std::optional<std::string>("nightly-3"));
  EXPECT_EQ(plan->deadline, std::optional<milliseconds>(30'000));

  // The file is read up to kMaxBatchBytes, and the limit is named as such.
  std::int64_t asked = 0;
  std::string limit_name;
  auto too_big = [&](const std::string& path, std::int64_t max_bytes,
                     std::string_view name) -> Result<std::string> {
    asked = max_bytes;
    limit_name = std::string(name);
    return ctl::ReadInputFile(path, 4, name);
  };
  plan = ctl::CheckStart(o, config_, too_big);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(asked, ctl::kMaxBatchBytes);
  EXPECT_EQ(limit_name, ctl::kBatchBytesLimitName);
  EXPECT_EQ(plan.status().message(),
            "cannot start workflow \"w\": input file \"" + *o.batch +
                "\" is larger than the limit of 4 bytes (128 MiB, the most one --batch file "
                "may hold)");

  // Combinations the command line refuses are refused here too.
  for (int i = 0; i < 4; ++i) {
    ctl::StartOptions bad = o;
    if (i == 0) bad.input = "{}";
    if (i == 1) bad.input_file = *o.batch;
    if (i == 2) bad.idempotency_key = "k";
    if (i == 3) bad.wait = true;
    auto refused = ctl::CheckStart(bad, config_, ctl::ReadInputFile);
    ASSERT_FALSE(refused.ok()) << i;
    EXPECT_TRUE(Contains(refused.status().message(), "--batch cannot be combined"));
  }
  ctl::StartOptions prefix_alone = Start("w");
  prefix_alone.id_prefix = "p";
  auto refused = ctl::CheckStart(prefix_alone, config_, ctl::ReadInputFile);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(Contains(refused.status().message(), "--id-prefix needs --batch"));
}

}  // namespace
}  // namespace kagzi
