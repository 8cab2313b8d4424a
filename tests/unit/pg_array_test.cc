// Array parameters in PostgreSQL's binary format (PgBinaryArray,
// core/include/kagzi/core/pg.h): the bytes array_recv reads, and the
// elements that are refused so that the text form is sent instead.
// tests/integration/pool_test.cc sends them to a real server.
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kagzi/core/pg.h"

namespace kagzi {
namespace {

using Items = std::vector<std::optional<std::string>>;

// Big-endian 32-bit words, as the format writes them.
std::string Words(std::initializer_list<std::uint32_t> words) {
  std::string out;
  for (std::uint32_t w : words) {
    out.push_back(static_cast<char>(w >> 24));
    out.push_back(static_cast<char>(w >> 16));
    out.push_back(static_cast<char>(w >> 8));
    out.push_back(static_cast<char>(w));
  }
  return out;
}

TEST(PgBinaryArrayTest, LaysOutDimensionsNullFlagTypeThenEachElement) {
  // One dimension, has nulls, int4 (OID 23), 3 elements from 1; then
  // length 4 and 7, NULL (-1), length 4 and -2.
  auto bytes = PgBinaryArray({"7", std::nullopt, "-2"}, PgElement::kInt4);
  ASSERT_TRUE(bytes);
  EXPECT_EQ(*bytes, Words({1, 1, 23, 3, 1, 4, 7, 0xffffffff, 4, 0xfffffffe}));
}

TEST(PgBinaryArrayTest, AnEmptyArrayHasNoDimension) {
  auto bytes = PgBinaryArray({}, PgElement::kUuid);
  ASSERT_TRUE(bytes);
  EXPECT_EQ(*bytes, Words({0, 0, 2950}));
}

TEST(PgBinaryArrayTest, TextIsSentAsItsBytesWithNothingQuoted) {
  auto bytes = PgBinaryArray({"a\"b\\c,{}", ""}, PgElement::kText);
  ASSERT_TRUE(bytes);
  EXPECT_EQ(*bytes, Words({1, 0, 25, 2, 1, 8}) + "a\"b\\c,{}" + Words({0}));
}

TEST(PgBinaryArrayTest, Int8IsEightBytes) {
  auto bytes = PgBinaryArray({"-1", "4294967296"}, PgElement::kInt8);
  ASSERT_TRUE(bytes);
  EXPECT_EQ(*bytes, Words({1, 0, 20, 2, 1, 8, 0xffffffff, 0xffffffff, 8, 1, 0}));
}

TEST(PgBinaryArrayTest, UuidIsItsSixteenBytesInEitherCase) {
  auto lower = PgBinaryArray({"0190f1c2-3b4a-7d5e-8f60-718293a4b5c6"}, PgElement::kUuid);
  auto upper = PgBinaryArray({"0190F1C2-3B4A-7D5E-8F60-718293A4B5C6"}, PgElement::kUuid);
  ASSERT_TRUE(lower);
  ASSERT_TRUE(upper);
  EXPECT_EQ(*lower, Words({1, 0, 2950, 1, 1, 16, 0x0190f1c2, 0x3b4a7d5e, 0x8f607182, 0x93a4b5c6}));
  EXPECT_EQ(*upper, *lower);
}

// Anything but an integer in plain decimal or a uuid as 8-4-4-4-12 hex
// digits is left to the server's parser, which names what is wrong.
TEST(PgBinaryArrayTest, RefusesWhatIsNotThePlainTextOfItsType) {
  for (const char* bad :
       {"", " 1", "1 ", "+1", "1.0", "0x10", "2147483648", "-2147483649", "one"}) {
    EXPECT_FALSE(PgBinaryArray({"1", bad}, PgElement::kInt4)) << '"' << bad << '"';
  }
  EXPECT_TRUE(PgBinaryArray({"2147483647", "-2147483648"}, PgElement::kInt4));
  EXPECT_FALSE(PgBinaryArray({"9223372036854775808"}, PgElement::kInt8));
  EXPECT_TRUE(PgBinaryArray({"9223372036854775807", "-9223372036854775808"}, PgElement::kInt8));
  for (const char* bad :
       {"", "0190f1c2-3b4a-7d5e-8f60-718293a4b5c", "0190f1c2-3b4a-7d5e-8f60-718293a4b5c6a",
        "0190f1c23b4a7d5e8f60718293a4b5c6", "{0190f1c2-3b4a-7d5e-8f60-718293a4b5c6}",
        "0190f1c2-3b4a-7d5e-8f60_718293a4b5c6", "0190f1c2-3b4a-7d5e-8f60-718293a4b5g6"}) {
    EXPECT_FALSE(PgBinaryArray({bad}, PgElement::kUuid)) << '"' << bad << '"';
  }
}

TEST(PgColumnsTest, SendsEachColumnBinaryWhereItCanAndAsTextWhereNot) {
  std::vector<std::vector<PgParam>> rows = {{"0190f1c2-3b4a-7d5e-8f60-718293a4b5c6", 1, "x"},
                                            {"not a uuid", 2, std::nullopt}};
  auto cols = PgColumns(rows, {PgElement::kUuid, PgElement::kInt4, PgElement::kText});
  ASSERT_EQ(cols.size(), 3u);
  EXPECT_FALSE(cols[0].binary());
  EXPECT_EQ(cols[0].value(), R"({"0190f1c2-3b4a-7d5e-8f60-718293a4b5c6","not a uuid"})");
  EXPECT_TRUE(cols[1].binary());
  EXPECT_EQ(cols[1].value(), PgBinaryArray({"1", "2"}, PgElement::kInt4));
  EXPECT_TRUE(cols[2].binary());
  EXPECT_EQ(cols[2].value(), PgBinaryArray({"x", std::nullopt}, PgElement::kText));
}

}  // namespace
}  // namespace kagzi
