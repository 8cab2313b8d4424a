// Notifications after the commit (migration 0005): the busy writers keep
// NOTIFY out of their transactions (a notifying commit holds a
// database-wide lock through its WAL flush) and send the notifications in a
// transaction of their own right after. Each is still sent, once: a start's
// kagzi_wakeup, a batch's one per workflow, a run's kagzi_run_finished, and
// the kagzi_wakeup of a parent its finished child woke. The wake-ups of
// starts and parents name their runs (wakeup.h), so that a daemon can claim
// them by id. Writers that do not defer (a plain UPDATE, kagzictl's) keep
// the trigger's notifications, which name their runs too (migration 0013).
#include <algorithm>
#include <chrono>
#include <map>

#include "kagzi/core/wakeup.h"
#include "store_fixture.h"

namespace kagzi::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

class NotifyTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    auto conn = PgConnection::Connect(db_->url(), "kagzi-test-listener");
    ASSERT_TRUE(conn.ok()) << conn.status().message();
    listener_ = std::move(conn).value();
    ASSERT_TRUE(listener_->Listen("kagzi_wakeup").ok());
    ASSERT_TRUE(listener_->Listen("kagzi_run_finished").ok());
  }

  // Every notification that arrives until `expected` have and then none
  // for a while, as "channel payload", sorted; fails the test if fewer
  // than `expected` arrive within 10 s.
  std::vector<std::string> Heard(std::size_t expected) {
    std::vector<std::string> heard;
    const auto give_up = steady_clock::now() + std::chrono::seconds(10);
    while (true) {
      const bool enough = heard.size() >= expected;
      if (!enough && steady_clock::now() > give_up) {
        ADD_FAILURE() << "heard " << heard.size() << " notifications, expected " << expected;
        break;
      }
      auto got = listener_->WaitForNotifications(milliseconds(enough ? 300 : 100));
      if (!got.ok()) {
        ADD_FAILURE() << got.status().message();
        break;
      }
      if (enough && got->empty()) break;
      for (const auto& n : *got) heard.push_back(n.channel + " " + n.payload);
    }
    std::sort(heard.begin(), heard.end());
    return heard;
  }

  std::unique_ptr<PgConnection> listener_;
};

TEST_F(NotifyTest, AStartIsAnnouncedOnceNamingItsRun) {
  const std::string id = Start("alpha");
  EXPECT_EQ(Heard(1), std::vector<std::string>{"kagzi_wakeup alpha\t" + id});
  EXPECT_EQ(AnnouncedRuns("alpha\t" + id), std::vector<std::string>{id});
}

TEST_F(NotifyTest, ABatchStartAnnouncesEachWorkflowOnceNamingItsRuns) {
  std::vector<StartRequest> requests;
  for (const char* wf : {"alpha", "beta", "alpha", "beta", "alpha"}) {
    StartRequest r;
    r.workflow = wf;
    r.input = "{}";
    requests.push_back(r);
  }
  auto started = store_->StartRuns(requests);
  ASSERT_TRUE(started.ok()) << started.status().message();
  std::map<std::string, std::vector<std::string>> ids;  // by workflow, sorted
  for (std::size_t i = 0; i < requests.size(); ++i) {
    ASSERT_TRUE((*started)[i].ok()) << (*started)[i].status().message();
    ids[requests[i].workflow].push_back((*started)[i]->run_id);
  }
  std::vector<std::string> expected;
  for (auto& [wf, runs] : ids) {
    std::sort(runs.begin(), runs.end());
    expected.push_back("kagzi_wakeup " + WakeupPayload(wf, runs));
  }
  ASSERT_EQ(ids["alpha"].size(), 3u);
  EXPECT_EQ(Heard(2), expected);
}

// A payload holds under 8,000 bytes: more runs than kMaxAnnouncedRuns of
// one workflow are announced by its name alone (and daemons claim what is
// due); the workflow's runs that fit are still named.
TEST_F(NotifyTest, ABatchTooLargeToNameIsAnnouncedByWorkflow) {
  std::vector<StartRequest> requests;
  for (std::size_t i = 0; i < kMaxAnnouncedRuns + 1; ++i) {
    StartRequest r;
    r.workflow = "many";
    r.input = "{}";
    requests.push_back(r);
  }
  StartRequest other;
  other.workflow = "one";
  other.input = "{}";
  requests.push_back(other);
  auto started = store_->StartRuns(requests);
  ASSERT_TRUE(started.ok()) << started.status().message();
  ASSERT_TRUE(started->back().ok()) << started->back().status().message();
  EXPECT_EQ(Heard(2), (std::vector<std::string>{"kagzi_wakeup many",
                                                "kagzi_wakeup one\t" + started->back()->run_id}));
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_runs WHERE workflow = 'many'"),
            static_cast<int>(kMaxAnnouncedRuns) + 1);
}

TEST_F(NotifyTest, AGroupAnnouncesTheRunsItEndsAndNoOthers) {
  for (int i = 0; i < 3; ++i) Start("wf");
  ClaimBatch batch = Claim(NewUuid(), {{"wf", 1}}, 3);
  ASSERT_EQ(batch.runs.size(), 3u);
  (void)Heard(1);  // the starts' wake-up
  FencedWrite done;
  done.kind = FencedWrite::Kind::kCompleteRun;
  done.lease = LeaseOf(batch.runs[0]);
  done.value = "{}";
  FencedWrite failed;
  failed.kind = FencedWrite::Kind::kFailRun;
  failed.lease = LeaseOf(batch.runs[1]);
  failed.value = "it broke";
  FencedWrite step;
  step.kind = FencedWrite::Kind::kRecordStep;
  step.lease = LeaseOf(batch.runs[2]);
  step.step = MakeStep("s", 0, "1");
  store_->ApplyWrites({&done, &failed, &step});
  ASSERT_TRUE(done.result.ok()) << done.result.message();
  ASSERT_TRUE(failed.result.ok()) << failed.result.message();
  ASSERT_TRUE(step.result.ok()) << step.result.message();
  std::vector<std::string> expected = {"kagzi_run_finished " + batch.runs[0].run.id,
                                       "kagzi_run_finished " + batch.runs[1].run.id};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(Heard(2), expected);
}

TEST_F(NotifyTest, AChildThatEndsWakesItsParkedParent) {
  const std::string parent = Start("parent");
  (void)Heard(1);
  db_->Query("UPDATE kagzi_runs SET status = 'SLEEPING', available_at = 'infinity' WHERE id = '" +
             parent + "'");
  const std::string child = NewUuid();
  db_->Query("INSERT INTO kagzi_runs (id, workflow, input, parent_run_id) VALUES ('" + child +
             "', 'child', '{}', '" + parent + "')");
  // The child's start, announced by the trigger, naming it (migration 0013).
  EXPECT_EQ(Heard(1), std::vector<std::string>{"kagzi_wakeup child\t" + child});
  ClaimBatch batch = Claim(NewUuid(), {{"child", 1}}, 1);
  ASSERT_EQ(batch.runs.size(), 1u);
  FencedWrite done;
  done.kind = FencedWrite::Kind::kCompleteRun;
  done.lease = LeaseOf(batch.runs[0]);
  done.value = "{}";
  done.parent_run_id = batch.runs[0].run.parent_run_id;
  ASSERT_EQ(done.parent_run_id, parent);
  store_->ApplyWrites({&done});
  ASSERT_TRUE(done.result.ok()) << done.result.message();
  EXPECT_EQ(Heard(2), (std::vector<std::string>{"kagzi_run_finished " + child,
                                                "kagzi_wakeup parent\t" + parent}));
  EXPECT_EQ(Count("SELECT count(*) FROM kagzi_runs WHERE id = '" + parent +
                  "' AND status = 'SLEEPING' AND available_at <= now()"),
            1);
}

TEST_F(NotifyTest, AWriterThatDoesNotDeferIsAnnouncedByTheTrigger) {
  const std::string id = Start("wf");
  (void)Heard(1);
  db_->Query("UPDATE kagzi_runs SET status = 'SLEEPING', available_at = 'infinity' WHERE id = '" +
             id + "'");
  db_->Query("SELECT kagzi_wake('" + id + "')");
  EXPECT_EQ(Heard(1), std::vector<std::string>{"kagzi_wakeup wf\t" + id});
  db_->Query("UPDATE kagzi_runs SET status = 'CANCELLED', available_at = now() WHERE id = '" + id +
             "'");
  EXPECT_EQ(Heard(1), std::vector<std::string>{"kagzi_run_finished " + id});
}

}  // namespace
}  // namespace kagzi::testing
