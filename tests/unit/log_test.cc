// The journal sink and the per-thread log context (core/src/log.cc): which
// fields each entry carries, how scopes nest and restore, that the context
// is per thread, and how the log target is chosen from the environment.
#include "kagzi/core/log.h"

#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kagzi {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

using Entry = std::map<std::string, std::string>;

// Collects what the sink would have sent to journald, one map per entry.
struct FakeJournal {
  std::mutex mu;
  std::vector<Entry> entries;
  int result = 0;

  JournalSender Sender() {
    return [this](const struct iovec* iov, int n) {
      Entry entry;
      for (int i = 0; i < n; ++i) {
        std::string field(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
        auto eq = field.find('=');
        EXPECT_NE(eq, std::string::npos) << field;
        EXPECT_EQ(entry.count(field.substr(0, eq)), 0U) << "duplicate field " << field;
        entry[field.substr(0, eq)] = field.substr(eq + 1);
      }
      std::lock_guard lock(mu);
      entries.push_back(std::move(entry));
      return result;
    };
  }
};

std::shared_ptr<spdlog::logger> TestLogger(const std::string& name, FakeJournal& journal) {
  auto logger =
      std::make_shared<spdlog::logger>(name, MakeJournalSink(journal.Sender(), "kagzid-test"));
  logger->set_level(spdlog::level::trace);
  return logger;
}

std::vector<std::string> Keys(const Entry& e) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : e) keys.push_back(k);
  return keys;
}

TEST(JournalSink, SendsMessagePriorityIdentifierAndSubsystem) {
  FakeJournal journal;
  auto log = TestLogger("scheduler", journal);
  log->info("claimed {} run(s)", 3);
  ASSERT_EQ(journal.entries.size(), 1U);
  const Entry& e = journal.entries[0];
  EXPECT_EQ(e.at("MESSAGE"), "[scheduler] claimed 3 run(s)");
  EXPECT_EQ(e.at("PRIORITY"), "6");
  EXPECT_EQ(e.at("SYSLOG_IDENTIFIER"), "kagzid-test");
  EXPECT_EQ(e.at("KAGZI_SUBSYSTEM"), "scheduler");
  EXPECT_FALSE(e.at("TID").empty());
  // No context outside a scope: no run fields at all.
  EXPECT_THAT(Keys(e), Not(Contains("KAGZI_RUN_ID")));
  EXPECT_THAT(Keys(e), Not(Contains("KAGZI_WORKFLOW")));
  EXPECT_THAT(Keys(e), Not(Contains("KAGZI_WORKFLOW_VERSION")));
  EXPECT_THAT(Keys(e), Not(Contains("KAGZI_STEP")));
}

TEST(JournalSink, MapsLevelsToSyslogPriorities) {
  FakeJournal journal;
  auto log = TestLogger("executor", journal);
  log->trace("t");
  log->debug("d");
  log->info("i");
  log->warn("w");
  log->error("e");
  log->critical("c");
  std::vector<std::string> priorities;
  for (const auto& e : journal.entries) priorities.push_back(e.at("PRIORITY"));
  EXPECT_EQ(priorities, (std::vector<std::string>{"7", "7", "6", "4", "3", "2"}));
}

TEST(JournalSink, AttachesTheRunAndStepContextAndRestoresIt) {
  FakeJournal journal;
  auto log = TestLogger("executor", journal);
  {
    ScopedLogContext run_ctx({.run_id = "0190a0b0-0000-7000-8000-000000000001",
                              .workflow = "welcome_email",
                              .version = 2});
    log->info("replaying");
    {
      ScopedLogContext step_ctx({.step = "send-email"});
      log->warn("write failed, retrying");
      EXPECT_EQ(CurrentLogContext().step, "send-email");
      EXPECT_EQ(CurrentLogContext().workflow, "welcome_email");
    }
    log->info("parked");
  }
  log->info("idle");
  ASSERT_EQ(journal.entries.size(), 4U);

  const Entry& replaying = journal.entries[0];
  EXPECT_EQ(replaying.at("KAGZI_RUN_ID"), "0190a0b0-0000-7000-8000-000000000001");
  EXPECT_EQ(replaying.at("KAGZI_WORKFLOW"), "welcome_email");
  EXPECT_EQ(replaying.at("KAGZI_WORKFLOW_VERSION"), "2");
  EXPECT_THAT(Keys(replaying), Not(Contains("KAGZI_STEP")));

  const Entry& in_step = journal.entries[1];
  EXPECT_EQ(in_step.at("KAGZI_RUN_ID"), "0190a0b0-0000-7000-8000-000000000001");
  EXPECT_EQ(in_step.at("KAGZI_WORKFLOW"), "welcome_email");
  EXPECT_EQ(in_step.at("KAGZI_STEP"), "send-email");
  EXPECT_EQ(in_step.at("PRIORITY"), "4");

  const Entry& after_step = journal.entries[2];
  EXPECT_EQ(after_step.at("KAGZI_RUN_ID"), "0190a0b0-0000-7000-8000-000000000001");
  EXPECT_THAT(Keys(after_step), Not(Contains("KAGZI_STEP")));

  const Entry& idle = journal.entries[3];
  EXPECT_THAT(Keys(idle), Not(Contains("KAGZI_RUN_ID")));
  EXPECT_THAT(Keys(idle), Not(Contains("KAGZI_WORKFLOW")));
  EXPECT_TRUE(CurrentLogContext().run_id.empty());
}

TEST(JournalSink, InnerScopeOverridesOnlyTheFieldsItSets) {
  ScopedLogContext outer({.run_id = "run-a", .workflow = "wf-a", .step = "s1"});
  {
    ScopedLogContext inner({.run_id = "run-b"});
    EXPECT_EQ(CurrentLogContext().run_id, "run-b");
    EXPECT_EQ(CurrentLogContext().workflow, "wf-a");
    EXPECT_EQ(CurrentLogContext().step, "s1");
  }
  EXPECT_EQ(CurrentLogContext().run_id, "run-a");
}

TEST(JournalSink, ContextBelongsToTheThreadThatSetIt) {
  FakeJournal journal;
  auto log = TestLogger("executor", journal);
  ScopedLogContext mine({.run_id = "run-main", .workflow = "hello"});
  std::thread other([&] {
    log->info("from another thread");
    ScopedLogContext theirs({.run_id = "run-other"});
    log->info("other run");
  });
  other.join();
  log->info("from the main thread");
  ASSERT_EQ(journal.entries.size(), 3U);
  EXPECT_THAT(Keys(journal.entries[0]), Not(Contains("KAGZI_RUN_ID")));
  EXPECT_EQ(journal.entries[1].at("KAGZI_RUN_ID"), "run-other");
  EXPECT_THAT(Keys(journal.entries[1]), Not(Contains("KAGZI_WORKFLOW")));
  EXPECT_EQ(journal.entries[2].at("KAGZI_RUN_ID"), "run-main");
  EXPECT_EQ(journal.entries[2].at("KAGZI_WORKFLOW"), "hello");
}

TEST(JournalSink, KeepsMultiLineMessagesInOneEntry) {
  FakeJournal journal;
  auto log = TestLogger("workflow", journal);
  log->error("first line\nsecond line");
  ASSERT_EQ(journal.entries.size(), 1U);
  EXPECT_EQ(journal.entries[0].at("MESSAGE"), "[workflow] first line\nsecond line");
}

TEST(JournalSink, FallsBackToStderrWhenTheJournalRefuses) {
  FakeJournal journal;
  journal.result = -111;  // -ECONNREFUSED
  auto log = TestLogger("lease", journal);
  testing::internal::CaptureStderr();
  log->warn("heartbeat failed");
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(journal.entries.size(), 1U);
  EXPECT_THAT(err, HasSubstr("<4>[lease] heartbeat failed"));
}

// DetectLogTarget with a fake environment.
LogTarget Detect(std::map<std::string, std::string> env) {
  return DetectLogTarget([env = std::move(env)](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

std::string StderrStreamId() {
  struct stat st {};
  EXPECT_EQ(fstat(STDERR_FILENO, &st), 0);
  return fmt::format("{}:{}", static_cast<std::uintmax_t>(st.st_dev),
                     static_cast<std::uintmax_t>(st.st_ino));
}

TEST(LogTarget, StderrWithoutJournalStream) { EXPECT_EQ(Detect({}), LogTarget::kStderr); }

TEST(LogTarget, JournalWhenJournalStreamNamesStderr) {
  EXPECT_EQ(Detect({{"JOURNAL_STREAM", StderrStreamId()}}), LogTarget::kJournal);
}

TEST(LogTarget, StderrWhenJournalStreamNamesAnotherStream) {
  // Inherited by a process whose stderr was redirected: not the journal.
  struct stat st {};
  ASSERT_EQ(fstat(STDERR_FILENO, &st), 0);
  const std::string other = fmt::format("{}:{}", static_cast<std::uintmax_t>(st.st_dev),
                                        static_cast<std::uintmax_t>(st.st_ino) + 1);
  EXPECT_EQ(Detect({{"JOURNAL_STREAM", other}}), LogTarget::kStderr);
  EXPECT_EQ(Detect({{"JOURNAL_STREAM", "garbage"}}), LogTarget::kStderr);
  EXPECT_EQ(Detect({{"JOURNAL_STREAM", StderrStreamId() + "x"}}), LogTarget::kStderr);
}

TEST(LogTarget, KagziLogTargetForcesEitherWay) {
  EXPECT_EQ(Detect({{"KAGZI_LOG_TARGET", "journal"}}), LogTarget::kJournal);
  EXPECT_EQ(Detect({{"KAGZI_LOG_TARGET", "stderr"}, {"JOURNAL_STREAM", StderrStreamId()}}),
            LogTarget::kStderr);
  // Anything else means automatic.
  EXPECT_EQ(Detect({{"KAGZI_LOG_TARGET", "auto"}, {"JOURNAL_STREAM", StderrStreamId()}}),
            LogTarget::kJournal);
}

}  // namespace
}  // namespace kagzi
