// StartGroup::CommitGroup: how a group of concurrent StartRun calls is
// answered when its one transaction fails (core/src/start_group.h), against
// a fake insert: a statement failure sends each request again on its own;
// a lost connection, whose outcome is unknown, is every member's answer and
// nothing is sent again (that could start a run twice).
#include "start_group.h"

#include <deque>

#include <gtest/gtest.h>

namespace kagzi::pg_internal {
namespace {

class CommitGroupTest : public ::testing::Test {
 protected:
  // `size` requests of workflows w0, w1, ... and their Pendings.
  void MakeGroup(int size) {
    requests_.resize(static_cast<std::size_t>(size));
    pending_.clear();
    for (int i = 0; i < size; ++i) {
      requests_[static_cast<std::size_t>(i)].workflow = "w" + std::to_string(i);
      pending_.emplace_back().request = &requests_[static_cast<std::size_t>(i)];
    }
    group_.clear();
    for (auto& p : pending_) group_.push_back(&p);
  }

  // An insert that records each call's workflows and answers with
  // `answer(call)`.
  StartGroup::Insert FakeInsert(
      std::function<Result<std::vector<Result<StartResult>>>(const std::vector<std::string>&)>
          answer) {
    return [this, answer](const std::vector<const StartRequest*>& requests) {
      std::vector<std::string> call;
      for (const StartRequest* r : requests) call.push_back(r->workflow);
      calls_.push_back(call);
      return answer(call);
    };
  }

  static std::vector<Result<StartResult>> Started(const std::vector<std::string>& call) {
    std::vector<Result<StartResult>> out;
    for (const auto& wf : call) out.emplace_back(StartResult{"id-" + wf, true});
    return out;
  }

  std::vector<StartRequest> requests_;
  std::deque<StartGroup::Pending> pending_;  // not movable (each has its own wake-up)
  std::vector<StartGroup::Pending*> group_;
  std::vector<std::vector<std::string>> calls_;
};

TEST_F(CommitGroupTest, AGroupIsOneInsertAndEachMemberGetsItsOwnAnswer) {
  MakeGroup(3);
  StartGroup::CommitGroup(group_, FakeInsert([](const auto& call) { return Started(call); }));
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_[0], (std::vector<std::string>{"w0", "w1", "w2"}));
  for (int i = 0; i < 3; ++i) {
    const auto& r = pending_[static_cast<std::size_t>(i)].result;
    ASSERT_TRUE(r.has_value() && r->ok());
    EXPECT_EQ((*r)->run_id, "id-w" + std::to_string(i));
  }
}

TEST_F(CommitGroupTest, AFailedStatementSendsEachRequestAgainAndOnlyTheBadOneFails) {
  MakeGroup(3);
  StartGroup::CommitGroup(
      group_, FakeInsert([](const auto& call) -> Result<std::vector<Result<StartResult>>> {
        for (const auto& wf : call) {
          if (wf == "w1") return Status::InvalidArgument("w1 is bad");
        }
        return Started(call);
      }));
  ASSERT_EQ(calls_.size(), 4u);  // the group, then each on its own
  EXPECT_TRUE(pending_[0].result->ok());
  EXPECT_EQ(pending_[1].result->status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(pending_[1].result->status().message(), "w1 is bad");
  EXPECT_TRUE(pending_[2].result->ok());
  EXPECT_EQ((*pending_[2].result)->run_id, "id-w2");
}

TEST_F(CommitGroupTest, ALostConnectionIsEveryMembersAnswerAndNothingIsSentAgain) {
  MakeGroup(3);
  StartGroup::CommitGroup(
      group_, FakeInsert([](const auto&) -> Result<std::vector<Result<StartResult>>> {
        return Status::Unavailable("connection lost; the commit may have happened");
      }));
  ASSERT_EQ(calls_.size(), 1u) << "a group whose outcome is unknown was started again";
  for (const auto& p : pending_) {
    ASSERT_TRUE(p.result.has_value());
    EXPECT_EQ(p.result->status().code(), StatusCode::kUnavailable);
  }
}

TEST_F(CommitGroupTest, ALoneStartsFailureIsItsAnswer) {
  MakeGroup(1);
  StartGroup::CommitGroup(group_,
                          FakeInsert([](const auto&) -> Result<std::vector<Result<StartResult>>> {
                            return Status::InvalidArgument("bad");
                          }));
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(pending_[0].result->status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kagzi::pg_internal
