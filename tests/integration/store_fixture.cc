// StoreTest and helpers.
#include "store_fixture.h"

#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>

#include <fmt/format.h>

namespace kagzi::testing {

std::string NewUuid() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  std::uint64_t hi = rng(), lo = rng();
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // RFC 4122 variant
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xffff,
                     hi & 0xffff, lo >> 48, lo & 0xffffffffffffULL);
}

void SleepFor(std::chrono::milliseconds d) { std::this_thread::sleep_for(d); }

void StoreTest::SetUp() {
  db_ = TestDatabase::Create();
  ASSERT_NE(db_, nullptr);
  store_ = NewStore(4);
  auto migrated = store_->Migrate();
  ASSERT_TRUE(migrated.ok()) << migrated.status().message();
}

std::unique_ptr<PgStore> StoreTest::NewStore(int pool_size) const {
  PgStoreOptions options;
  options.database_url = db_->url();
  options.application_name = "kagzi-integration-test";
  options.pool_size = pool_size;
  return std::make_unique<PgStore>(options);
}

std::string StoreTest::Start(const std::string& workflow, const std::string& input,
                             PgStore* store) {
  StartRequest req;
  req.workflow = workflow;
  req.input = input;
  auto r = (store ? store : store_.get())->StartRun(req);
  EXPECT_TRUE(r.ok()) << r.status().message();
  if (!r.ok()) return "";
  EXPECT_TRUE(r->created);
  return r->run_id;
}

ClaimBatch StoreTest::Claim(const std::string& owner, const std::vector<WorkflowKey>& loaded,
                            int limit, std::chrono::milliseconds ttl, PgStore* store) {
  ClaimRequest req;
  req.owner = owner;
  req.loaded = loaded;
  req.limit = limit;
  req.lease_ttl = ttl;
  auto r = (store ? store : store_.get())->ClaimRuns(req);
  EXPECT_TRUE(r.ok()) << r.status().message();
  if (!r.ok()) return {};
  return std::move(r).value();
}

RunRecord StoreTest::Get(const std::string& run_id) {
  auto r = store_->GetRun(run_id);
  EXPECT_TRUE(r.ok()) << r.status().message();
  if (!r.ok()) return {};
  return std::move(r).value();
}

void StoreTest::WaitUntilDbTime(Micros t) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    auto now = store_->Now();
    ASSERT_TRUE(now.ok()) << now.status().message();
    if (*now > t) return;
    SleepFor(std::chrono::milliseconds(std::max<Micros>(1, (t - *now) / 1000 + 1)));
  }
  FAIL() << "the database clock did not reach " << t << " within 30 s";
}

int StoreTest::Count(const std::string& sql) const { return std::atoi(db_->Query(sql).c_str()); }

std::string StoreTest::WalEnd() const { return db_->Query("SELECT pg_current_wal_flush_lsn()"); }

int StoreTest::SpeculativeInserts(const std::string& table, const std::string& since) const {
  db_->Query("CREATE EXTENSION IF NOT EXISTS pg_walinspect");
  return Count("SELECT count(*) FROM pg_get_wal_records_info('" + since +
               "', pg_current_wal_flush_lsn()) WHERE resource_manager = 'Heap'"
               " AND record_type = 'HEAP_CONFIRM' AND block_ref LIKE '%/' || (SELECT oid FROM"
               " pg_database WHERE datname = current_database()) || '/' || pg_relation_filenode('" +
               table + "') || ' %'");
}

Lease LeaseOf(const ClaimedRun& claimed) {
  return Lease{claimed.run.id, claimed.run.lease_owner.value_or(""), claimed.run.lease_epoch};
}

StepRecord MakeStep(const std::string& id, int seq, const std::string& output_json) {
  StepRecord s;
  s.step_id = id;
  s.seq = seq;
  s.kind = StepKind::kStep;
  s.status = StepStatus::kCompleted;
  s.output = output_json;
  return s;
}

int TopBuffers(const std::string& plan) {
  const auto at = plan.find("Buffers: shared");
  if (at == std::string::npos) return -1;
  const std::string line = plan.substr(at, plan.find('\n', at) - at);
  int total = 0;
  for (const char* what : {"hit=", "read="}) {
    if (auto k = line.find(what); k != std::string::npos) {
      total += std::stoi(line.substr(k + std::strlen(what)));
    }
  }
  return total;
}

}  // namespace kagzi::testing
