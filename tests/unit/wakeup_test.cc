// The kagzi_wakeup payload (core/include/kagzi/core/wakeup.h): what a start
// announces and what a daemon reads back, hostile payloads included, and
// the run ids clients make.
#include "kagzi/core/wakeup.h"

#include <chrono>
#include <set>

#include <gtest/gtest.h>

#include "kagzi/core/validation.h"

namespace kagzi {
namespace {

const std::string kA = "0190f1c2-3b4a-7d5e-8f60-718293a4b5c6";
const std::string kB = "0190f1c2-3b4a-7d5e-9f60-718293a4b5c7";

TEST(WakeupPayloadTest, NamesTheWorkflowThenEachRun) {
  EXPECT_EQ(WakeupPayload("orders", {kA, kB}), "orders\t" + kA + "\t" + kB);
  EXPECT_EQ(WakeupPayload("orders", {}), "orders");
  EXPECT_EQ(AnnouncedRuns("orders\t" + kA + "\t" + kB), (std::vector<std::string>{kA, kB}));
  // Spaces and non-ASCII in the name are the name's.
  EXPECT_EQ(AnnouncedRuns(WakeupPayload("pay out ünïcode", {kA})), std::vector<std::string>{kA});
}

TEST(WakeupPayloadTest, TooManyRunsAreAnnouncedByWorkflowAlone) {
  std::vector<std::string> ids(kMaxAnnouncedRuns, kA);
  std::string most = WakeupPayload("wf", ids);
  EXPECT_EQ(AnnouncedRuns(most)->size(), kMaxAnnouncedRuns);
  // A PostgreSQL NOTIFY payload must be shorter than 8,000 bytes.
  EXPECT_LT(WakeupPayload(std::string(kMaxNameBytes, 'w'), ids).size(), 8000u);
  ids.push_back(kB);
  EXPECT_EQ(WakeupPayload("wf", ids), "wf");
  EXPECT_EQ(AnnouncedRuns(most + "\t" + kB), std::nullopt) << "more ids than any client sends";
}

// Whatever is on the channel, a daemon reads either canonical run ids or
// nothing ("claim what is due"): never a string it would send as a uuid.
TEST(WakeupPayloadTest, APayloadWithoutCanonicalIdsNamesNoRuns) {
  const std::vector<std::string> payloads = {"",
                                             "orders",
                                             "orders\t",
                                             "orders\t" + kA + "\t",
                                             "orders\t\t" + kA,
                                             "orders\t" + kA + " ",
                                             "orders\tnot-a-uuid",
                                             "\t" + kA + "x",
                                             "orders\t" + kA.substr(0, 35),
                                             "orders\t" + kA + "\t'); DROP TABLE kagzi_runs; --",
                                             "orders\t" + std::string(36, '-')};
  for (const std::string& payload : payloads) {
    EXPECT_EQ(AnnouncedRuns(payload), std::nullopt) << "payload: " << payload;
  }
  // A name is not checked: the claim filters by the loaded workflows.
  EXPECT_EQ(AnnouncedRuns("\t" + kA), std::vector<std::string>{kA});
}

TEST(NewRunIdTest, IsAVersion7UuidOfTheCurrentMillisecond) {
  auto now_ms = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  const auto before = now_ms();
  const std::string id = NewRunId();
  const auto after = now_ms();
  ASSERT_TRUE(IsUuid(id)) << id;
  EXPECT_EQ(id, [&] {
    std::string lower = id;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return lower;
  }()) << "canonical text is lower case";
  EXPECT_EQ(id[14], '7') << id;                                          // version
  EXPECT_NE(std::string("89ab").find(id[19]), std::string::npos) << id;  // variant 10
  const long long ms = std::stoll(id.substr(0, 8) + id.substr(9, 4), nullptr, 16);
  EXPECT_GE(ms, before);
  EXPECT_LE(ms, after);
}

TEST(NewRunIdTest, IdsAreUniqueAndSortByMillisecond) {
  std::set<std::string> seen;
  std::string last_prefix;
  for (int i = 0; i < 20000; ++i) {
    std::string id = NewRunId();
    ASSERT_TRUE(seen.insert(id).second) << "repeated: " << id;
    std::string prefix = id.substr(0, 13);  // the 48 bits of time
    EXPECT_GE(prefix, last_prefix) << "time went back: " << id;
    last_prefix = prefix;
  }
}

}  // namespace
}  // namespace kagzi
