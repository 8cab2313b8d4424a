// kagzi-bench's report (bench/report.h): which ceiling and which bench3 a
// result is compared with, the summary of several rounds, and how both
// show in the table and the JSON. No database and no kagzid: the results
// are written by hand.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "report.h"

namespace kagzi::bench {
namespace {

WorkloadResult Ceiling(double tps, int round = 1) {
  WorkloadResult r;
  r.name = "ceiling";
  r.round = round;
  r.ceiling = CeilingFigures{};
  r.ceiling->transactions_per_second = tps;
  return r;
}

WorkloadResult Bench3(double wfs, int round = 1) {
  WorkloadResult r;
  r.name = "bench3";
  r.round = round;
  r.workflows_per_second = wfs;
  r.steps_per_second = 3 * wfs;
  return r;
}

WorkloadResult Backlog(double wfs, int round = 1) {
  WorkloadResult r = Bench3(wfs, round);
  r.name = "backlog";
  return r;
}

// The row of `table` whose first column is `first`, its columns joined by
// "|" (the table pads them with runs of spaces); empty if there is none.
std::string Row(const std::string& table, const std::string& first) {
  std::istringstream lines(table);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(first + "  ", 0) != 0) continue;
    std::string row = first;
    std::size_t at = first.size();
    while (at < line.size()) {
      const std::size_t from = line.find_first_not_of(' ', at);
      if (from == std::string::npos) break;
      std::size_t to = line.find("  ", from);
      if (to == std::string::npos) to = line.size();
      row += "|" + line.substr(from, to - from);
      at = to;
    }
    return row;
  }
  return {};
}

const RoundFigure* Find(const std::vector<RoundFigure>& figures, const std::string& workload,
                        const std::string& figure) {
  for (const auto& f : figures) {
    if (f.workload == workload && f.figure == figure) return &f;
  }
  return nullptr;
}

TEST(BenchReportTest, AResultIsComparedWithTheCeilingAndBench3BeforeIt) {
  std::vector<WorkloadResult> results = {Ceiling(1000),    Bench3(400),    Backlog(300),
                                         Ceiling(2000, 2), Bench3(500, 2), Backlog(600, 2)};
  RelateResults(results);
  ASSERT_TRUE(results[1].steps_of_ceiling);
  EXPECT_DOUBLE_EQ(*results[1].steps_of_ceiling, 1.2);
  EXPECT_DOUBLE_EQ(*results[2].steps_of_ceiling, 0.9);
  EXPECT_DOUBLE_EQ(*results[4].steps_of_ceiling, 0.75);
  ASSERT_TRUE(results[2].of_bench3);
  EXPECT_DOUBLE_EQ(*results[2].of_bench3, 0.75);
  ASSERT_TRUE(results[5].of_bench3);
  EXPECT_DOUBLE_EQ(*results[5].of_bench3, 1.2);
  EXPECT_FALSE(results[0].steps_of_ceiling);  // a ceiling has no steps
  EXPECT_FALSE(results[1].of_bench3);         // only a backlog is compared with bench3
}

TEST(BenchReportTest, WithNoneBeforeItTheFirstAfterItIsUsed) {
  std::vector<WorkloadResult> results = {Backlog(300), Bench3(400), Ceiling(600), Bench3(100),
                                         Ceiling(100)};
  RelateResults(results);
  EXPECT_DOUBLE_EQ(*results[0].of_bench3, 0.75);
  EXPECT_DOUBLE_EQ(*results[0].steps_of_ceiling, 1.5);
  EXPECT_DOUBLE_EQ(*results[1].steps_of_ceiling, 2.0);
  EXPECT_DOUBLE_EQ(*results[3].steps_of_ceiling, 0.5);
}

TEST(BenchReportTest, WithoutACeilingOrBench3NothingIsRelated) {
  WorkloadResult failed_ceiling = Ceiling(0);  // measured nothing
  std::vector<WorkloadResult> results = {failed_ceiling, Backlog(300)};
  RelateResults(results);
  EXPECT_FALSE(results[1].steps_of_ceiling);
  EXPECT_FALSE(results[1].of_bench3);
}

TEST(BenchReportTest, RoundsAreSummarizedByMedianLowestAndHighest) {
  std::vector<WorkloadResult> results;
  const double bench3[] = {400, 300, 500};
  for (int round = 1; round <= 3; ++round) {
    results.push_back(Ceiling(1000, round));
    results.push_back(Bench3(bench3[round - 1], round));
    results.push_back(Backlog(bench3[round - 1] * (round == 2 ? 0.8 : 1.0), round));
  }
  results.back().write_commits_per_workflow = 0.05;  // measured in one round only
  RelateResults(results);
  const auto figures = SummarizeRounds(results);

  const RoundFigure* wfs = Find(figures, "bench3", "workflows_per_second");
  ASSERT_NE(wfs, nullptr);
  EXPECT_EQ(wfs->count, 3);
  EXPECT_DOUBLE_EQ(wfs->median, 400);
  EXPECT_DOUBLE_EQ(wfs->min, 300);
  EXPECT_DOUBLE_EQ(wfs->max, 500);
  EXPECT_EQ(wfs->target, ">= 3700");
  ASSERT_TRUE(wfs->met);
  EXPECT_EQ(*wfs->met, 0);

  const RoundFigure* ratio = Find(figures, "bench3", "steps_of_ceiling");
  ASSERT_NE(ratio, nullptr);
  EXPECT_DOUBLE_EQ(ratio->median, 1.2);
  EXPECT_DOUBLE_EQ(ratio->min, 0.9);
  EXPECT_DOUBLE_EQ(ratio->max, 1.5);
  ASSERT_TRUE(ratio->met);
  EXPECT_EQ(*ratio->met, 2);  // 0.9 is below the ceiling

  const RoundFigure* backlog = Find(figures, "backlog", "of_bench3");
  ASSERT_NE(backlog, nullptr);
  EXPECT_DOUBLE_EQ(backlog->min, 0.8);
  ASSERT_TRUE(backlog->met);
  EXPECT_EQ(*backlog->met, 2);  // 0.8 is not within 10 %

  const RoundFigure* commits = Find(figures, "backlog", "write_commits_per_workflow");
  ASSERT_NE(commits, nullptr);
  EXPECT_EQ(commits->count, 1);
  EXPECT_EQ(Find(figures, "bench3", "write_commits_per_workflow"), nullptr);
  EXPECT_EQ(Find(figures, "ceiling", "steps_per_second"), nullptr);

  // In the order the workloads first ran.
  ASSERT_FALSE(figures.empty());
  EXPECT_EQ(figures.front().workload, "ceiling");
  EXPECT_EQ(figures.back().workload, "backlog");
}

TEST(BenchReportTest, EachTargetOfTheIssueIsCountedOnItsOwnWorkloadOnly) {
  std::vector<WorkloadResult> results;
  const double p50s[] = {3.5, 4.0, 4.5};
  for (double p50 : p50s) {
    WorkloadResult idle_latency;
    idle_latency.name = "idle-latency";
    idle_latency.latency_ms = Percentiles{20, p50, p50, 2 * p50, 2 * p50};
    results.push_back(idle_latency);
    WorkloadResult sleep = Bench3(450);
    sleep.name = "sleep";
    sleep.latency_ms = Percentiles{500, 1000 + p50, 1000, 1000, 1000};
    results.push_back(sleep);
    WorkloadResult bench0 = Bench3(20000);
    bench0.name = "bench0";
    bench0.steps_per_second = 0;
    results.push_back(bench0);
  }
  const auto figures = SummarizeRounds(results);

  const RoundFigure* p50 = Find(figures, "idle-latency", "latency_ms.p50");
  ASSERT_NE(p50, nullptr);
  EXPECT_EQ(p50->target, "<= 4");
  ASSERT_TRUE(p50->met);
  EXPECT_EQ(*p50->met, 2);  // 4.0 meets "at most 4 ms"; 4.5 does not
  const RoundFigure* p99 = Find(figures, "idle-latency", "latency_ms.p99");
  ASSERT_NE(p99, nullptr);
  EXPECT_EQ(*p99->met, 3);

  // The same figure of another workload has no target.
  const RoundFigure* sleep_p50 = Find(figures, "sleep", "latency_ms.p50");
  ASSERT_NE(sleep_p50, nullptr);
  EXPECT_TRUE(sleep_p50->target.empty());
  EXPECT_FALSE(sleep_p50->met);
  const RoundFigure* sleep_wfs = Find(figures, "sleep", "workflows_per_second");
  ASSERT_NE(sleep_wfs, nullptr);
  EXPECT_FALSE(sleep_wfs->met);

  // A workload without steps has no steps per second to summarize.
  EXPECT_EQ(Find(figures, "bench0", "steps_per_second"), nullptr);
  EXPECT_NE(Find(figures, "bench0", "workflows_per_second"), nullptr);
}

TEST(BenchReportTest, AnEvenCountHasTheMeanOfTheMiddleTwoAsItsMedian) {
  std::vector<WorkloadResult> results = {Bench3(100), Bench3(400), Bench3(200), Bench3(1000)};
  const auto figures = SummarizeRounds(results);
  const RoundFigure* wfs = Find(figures, "bench3", "workflows_per_second");
  ASSERT_NE(wfs, nullptr);
  EXPECT_DOUBLE_EQ(wfs->median, 300);
}

TEST(BenchReportTest, AWorkloadMeasuredOnceIsNotSummarized) {
  std::vector<WorkloadResult> results = {Ceiling(1000), Bench3(400), Bench3(500)};
  const auto figures = SummarizeRounds(results);
  EXPECT_EQ(Find(figures, "ceiling", "ceiling.transactions_per_second"), nullptr);
  EXPECT_NE(Find(figures, "bench3", "workflows_per_second"), nullptr);
  EXPECT_TRUE(SummarizeRounds({Ceiling(1000), Bench3(400)}).empty());
}

class BenchReportFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/kagzi-bench-report-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    std::remove((dir_ + "/report.json").c_str());
    ::rmdir(dir_.c_str());
  }
  // Writes the JSON report of `results` and parses it into `doc`; `text`
  // is what was written.
  void WriteAndRead(const RunInfo& info, const std::vector<WorkloadResult>& results,
                    rapidjson::Document& doc, std::string& text) {
    const std::string path = dir_ + "/report.json";
    ASSERT_TRUE(WriteJson(path, info, results).ok());
    std::ifstream in(path);
    std::stringstream read;
    read << in.rdbuf();
    text = read.str();
    doc.Parse(text.c_str());
    ASSERT_FALSE(doc.HasParseError()) << text;
  }

  std::string dir_;
};

TEST_F(BenchReportFileTest, TheTableAndTheJsonShowEachRoundAndTheSummary) {
  RunInfo info;
  info.rounds = 2;
  std::vector<WorkloadResult> results = {Ceiling(1000, 1), Bench3(400, 1), Ceiling(1000, 2),
                                         Bench3(300, 2)};
  RelateResults(results);

  const std::string table = FormatTable(info, results);
  EXPECT_NE(table.find("bench3 #2"), std::string::npos) << table;
  EXPECT_NE(table.find("across 2 rounds:"), std::string::npos) << table;
  EXPECT_EQ(Row(table, "bench3: steps/s over the ceiling"),
            "bench3: steps/s over the ceiling|2|1.05|0.90|1.20|> 1|1 of 2")
      << table;
  EXPECT_EQ(Row(table, "bench3: wf/s"), "bench3: wf/s|2|350|300|400|>= 3700|0 of 2") << table;

  rapidjson::Document doc;
  std::string text;
  ASSERT_NO_FATAL_FAILURE(WriteAndRead(info, results, doc, text));
  EXPECT_EQ(doc["rounds"].GetInt(), 2);
  EXPECT_EQ(doc["workloads"][3]["round"].GetInt(), 2);
  bool found = false;
  for (const auto& f : doc["across_rounds"].GetArray()) {
    if (std::string(f["workload"].GetString()) != "bench3" ||
        std::string(f["figure"].GetString()) != "steps_of_ceiling") {
      continue;
    }
    found = true;
    EXPECT_EQ(f["count"].GetInt(), 2);
    EXPECT_DOUBLE_EQ(f["median"].GetDouble(), 1.05);
    EXPECT_STREQ(f["target"].GetString(), "> 1");
    EXPECT_EQ(f["met"].GetInt(), 1);
  }
  EXPECT_TRUE(found) << text;
}

TEST_F(BenchReportFileTest, OneRoundHasNoSummary) {
  RunInfo info;
  std::vector<WorkloadResult> results = {Ceiling(1000), Bench3(400)};
  RelateResults(results);
  const std::string table = FormatTable(info, results);
  EXPECT_EQ(table.find("across"), std::string::npos) << table;
  EXPECT_EQ(table.find("#1"), std::string::npos) << table;
  rapidjson::Document doc;
  std::string text;
  ASSERT_NO_FATAL_FAILURE(WriteAndRead(info, results, doc, text));
  EXPECT_EQ(doc["rounds"].GetInt(), 1);
  EXPECT_TRUE(doc["across_rounds"].GetArray().Empty());
}

TEST(BenchReportTest, OneRoundThatRanAWorkloadTwiceSummarizesItWithoutRounds) {
  RunInfo info;  // one round: --workload ceiling,bench3,ceiling
  std::vector<WorkloadResult> results = {Ceiling(1000), Bench3(400), Ceiling(1500)};
  RelateResults(results);
  const std::string table = FormatTable(info, results);
  EXPECT_EQ(table.find("across"), std::string::npos) << table;
  EXPECT_NE(table.find("workloads run more than once:"), std::string::npos) << table;
  EXPECT_EQ(Row(table, "ceiling: transactions/s"), "ceiling: transactions/s|2|1250|1000|1500|-|-")
      << table;
  EXPECT_EQ(Row(table, "bench3: wf/s"), "") << table;  // run once
}

TEST_F(BenchReportFileTest, AReportThatCannotBeWrittenNamesItsPath) {
  const std::string path = dir_ + "/missing/report.json";
  const Status s = WriteJson(path, RunInfo{}, {});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
}

}  // namespace
}  // namespace kagzi::bench
