// Database faults, end to end: a real kagzid against a PostgreSQL of the
// test's own (each test starts one under <build>/db-faults/<test>, because
// these tests stop, crash and lock it; never the shared kagzi_pg server).
//
//   (a) kagzid started before PostgreSQL waits with backoff, says so in its
//       log and in systemd's STATUS=, and serves once the database is up;
//   (b) a step whose result cannot be written because PostgreSQL is down
//       (pg_ctl stop -m immediate) is not treated as recorded: it runs again
//       later, and every step is recorded exactly once; and the converse, a
//       write that committed but whose reply was lost (a proxy drops it),
//       harms nothing: for a claim, a step record, a park, an event
//       consume and a completion;
//   (c) terminated backends (pg_terminate_backend) mid-run: runs complete;
//   (d) a step write that hits a statement timeout (statement_timeout set
//       through the daemon's connection options; the write blocked by a row
//       lock, or by an uncommitted journal row, of the test's) or is chosen
//       as a deadlock victim is retried and not treated as recorded
//       meanwhile; past the write budget the step is abandoned and runs
//       again.
// The workflow is the "chaos" fixture (tests/plugins/chaos): every step
// execution leaves a tagged ledger line and records its tag, so a test
// knows which execution was recorded. docs/chaos.md has the table.
//
// These tests found three daemon bugs, now fixed (docs/chaos.md, "Bugs
// these tests found"): abandoned runs renewed forever by the heartbeat, and
// a step record or event consume retried after a lost reply failing the run.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <regex>

#include <fmt/format.h>

#include "chaos/chaos_support.h"
#include "e2e/e2e_support.h"

namespace kagzi::testing::chaos {
namespace {

// Collects what kagzid sends to $NOTIFY_SOCKET (sd_notify datagrams).
class NotifySocket {
 public:
  explicit NotifySocket(std::string path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    EXPECT_LT(path_.size(), sizeof(addr.sun_path)) << path_;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path_.c_str());
    ::unlink(path_.c_str());
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
        << std::strerror(errno);
  }
  ~NotifySocket() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  const std::string& path() const { return path_; }
  // Every message received so far.
  const std::vector<std::string>& Messages() {
    char buffer[4096];
    while (true) {
      ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
      if (n < 0) break;
      messages_.emplace_back(buffer, static_cast<std::size_t>(n));
    }
    return messages_;
  }
  bool Received(const std::string& text) {
    for (const auto& m : Messages()) {
      if (m.find(text) != std::string::npos) return true;
    }
    return false;
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::vector<std::string> messages_;
};

// A proxy on a Unix socket in front of the server's socket, for the daemon
// to connect through. Armed with a prepared statement's name, it lets the
// next execution of that statement (its Bind message) through to the server
// and then drops the server's reply, closing both sides: the statement
// committed, and the client only sees a lost connection. Armed with
// kClaimCommit, it does that to the next claim that claimed a run: the
// reply to its pipeline held a row of kagzi_claim, and it is dropped up to
// and including its ReadyForQuery, so the claim has committed.
class ReplyDroppingProxy {
 public:
  static constexpr const char* kClaimCommit = "claim_commit";

  ReplyDroppingProxy(const std::string& listen_dir, const std::string& upstream_dir, int port)
      : listen_path_(listen_dir + "/.s.PGSQL." + std::to_string(port)),
        upstream_path_(upstream_dir + "/.s.PGSQL." + std::to_string(port)) {
    std::filesystem::create_directories(listen_dir);
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr = Address(listen_path_);
    ::unlink(listen_path_.c_str());
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
        << listen_path_ << ": " << std::strerror(errno);
    EXPECT_EQ(::listen(listen_fd_, 64), 0);
    EXPECT_EQ(::pipe2(wake_, O_CLOEXEC), 0);
    thread_ = std::thread([this] { Loop(); });
  }
  ~ReplyDroppingProxy() {
    stop_ = true;
    (void)!::write(wake_[1], "x", 1);
    thread_.join();
    for (auto& c : conns_) {
      ::close(c.client);
      ::close(c.server);
    }
    ::close(listen_fd_);
    ::close(wake_[0]);
    ::close(wake_[1]);
    ::unlink(listen_path_.c_str());
  }
  ReplyDroppingProxy(const ReplyDroppingProxy&) = delete;
  ReplyDroppingProxy& operator=(const ReplyDroppingProxy&) = delete;

  void Arm(const std::string& statement) {
    std::lock_guard lock(mu_);
    armed_ = statement;
  }
  int dropped() const { return dropped_; }

 private:
  struct Conn {
    int client = -1;
    int server = -1;
    bool doomed = false;         // drop the server's next bytes
    bool claim_pending = false;  // kagzi_claim sent, reply not yet seen
    bool claimed = false;        // its reply held a row: drop it up to 'Z'
  };

  static sockaddr_un Address(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    return addr;
  }

  static bool WriteAll(int fd, const char* data, std::size_t n) {
    while (n > 0) {
      ssize_t w = ::write(fd, data, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      data += w;
      n -= static_cast<std::size_t>(w);
    }
    return true;
  }

  // A Bind message ('B', length, empty portal name) naming the statement.
  bool IsBindOf(const std::string& data, const std::string& statement) const {
    const std::string name = statement + std::string(1, '\0');
    for (auto pos = data.find(name); pos != std::string::npos; pos = data.find(name, pos + 1)) {
      if (pos >= 6 && data[pos - 1] == '\0' && data[pos - 6] == 'B') return true;
    }
    return false;
  }

  // Whether the server's bytes (whole messages: type, length, body) hold a
  // message of this type: 'D' DataRow, 'Z' ReadyForQuery.
  static bool HasMessage(const std::string& data, char type) {
    std::size_t i = 0;
    while (i + 5 <= data.size()) {
      if (data[i] == type) return true;
      std::uint32_t len = 0;
      for (int k = 1; k <= 4; ++k) len = (len << 8) | static_cast<unsigned char>(data[i + k]);
      i += 1 + len;
    }
    return false;
  }

  void Loop() {
    char buffer[65536];
    while (!stop_) {
      std::vector<pollfd> fds = {{wake_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
      for (const auto& c : conns_) {
        fds.push_back({c.client, POLLIN, 0});
        fds.push_back({c.server, POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), 1000) <= 0) continue;
      if (fds[1].revents & POLLIN) {
        int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        int server = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un up = Address(upstream_path_);
        if (client >= 0 && ::connect(server, reinterpret_cast<sockaddr*>(&up), sizeof(up)) == 0) {
          conns_.push_back({client, server, false});
        } else {
          ::close(client);
          ::close(server);
        }
        continue;  // fds no longer matches conns_
      }
      std::vector<std::size_t> gone;
      for (std::size_t i = 0; i < conns_.size(); ++i) {
        Conn& c = conns_[i];
        const short from_client = fds[2 + 2 * i].revents;
        const short from_server = fds[3 + 2 * i].revents;
        bool closed = false;
        if (from_client & (POLLIN | POLLHUP | POLLERR)) {
          ssize_t n = ::read(c.client, buffer, sizeof buffer);
          if (n <= 0 || !WriteAll(c.server, buffer, static_cast<std::size_t>(n))) {
            closed = true;
          } else {
            std::lock_guard lock(mu_);
            const std::string data(buffer, static_cast<std::size_t>(n));
            if (armed_ == kClaimCommit) {
              if (IsBindOf(data, "kagzi_claim")) {
                c.claim_pending = true;
                c.claimed = false;
              }
            } else if (!armed_.empty() && IsBindOf(data, armed_)) {
              c.doomed = true;
              armed_.clear();
            }
          }
        }
        if (!closed && (from_server & (POLLIN | POLLHUP | POLLERR))) {
          ssize_t n = ::read(c.server, buffer, sizeof buffer);
          const std::string data(buffer, static_cast<std::size_t>(n > 0 ? n : 0));
          if (n > 0 && c.claim_pending) {
            std::lock_guard lock(mu_);
            if (armed_ == kClaimCommit && HasMessage(data, 'D')) {
              c.claimed = true;
              armed_.clear();
            }
            if (HasMessage(data, 'Z')) c.claim_pending = false;
          }
          if (n <= 0 || c.doomed) {
            if (c.doomed) ++dropped_;
            closed = true;
          } else if (c.claimed) {
            // Swallowed; once the ReadyForQuery has gone by, the claim has
            // committed and the connection is cut.
            if (HasMessage(data, 'Z')) {
              ++dropped_;
              closed = true;
            }
          } else if (!WriteAll(c.client, buffer, static_cast<std::size_t>(n))) {
            closed = true;
          }
        }
        if (closed) gone.push_back(i);
      }
      for (auto it = gone.rbegin(); it != gone.rend(); ++it) {
        ::close(conns_[*it].client);
        ::close(conns_[*it].server);
        conns_.erase(conns_.begin() + static_cast<std::ptrdiff_t>(*it));
      }
    }
  }

  std::string listen_path_;
  std::string upstream_path_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  std::atomic<bool> stop_{false};
  std::atomic<int> dropped_{0};
  std::mutex mu_;
  std::string armed_;        // guarded by mu_
  std::vector<Conn> conns_;  // the proxy thread's
  std::thread thread_;
};

class DbFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    const std::string name = std::string(info->test_suite_name()) + "." + info->name();
    // Short: the server's socket path must stay under 108 bytes.
    std::string tag;
    for (char ch : std::string(info->name())) {
      if (std::isupper(static_cast<unsigned char>(ch))) tag += static_cast<char>(std::tolower(ch));
    }
    tag = tag.substr(0, 10) + fmt::format("-{:04x}", std::hash<std::string>{}(name) % 0x10000);
    dir_ = RequiredEnv("KAGZI_TEST_BINARY_DIR") + "/db-faults/" + tag;
    const int port = 56000 + static_cast<int>(std::hash<std::string>{}(name) % 1000);
    pg_ = std::make_unique<PrivatePostgres>(dir_ + "/pg", port);
    // What an earlier run of this test left behind if it was killed.
    KillStrayDaemons(dir_ + "/plugins");
    ASSERT_TRUE(pg_->Purge());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ + "/marks");
    ::chmod(dir_.c_str(), 0755);
    ledger_ = dir_ + "/ledger.txt";
    plugin_dir_ = dir_ + "/plugins";
    FillPluginDir(plugin_dir_, {FixturePluginPath("chaos.so")});
    url_ = pg_->Url("kagzi");
  }

  void TearDown() override {
    for (auto& d : daemons_) {
      if (d->running()) d->KillGroup();
    }
    daemons_.clear();
    pg_.reset();
  }

  // Starts the server, creates the database and migrates it.
  void StartDatabase() {
    ASSERT_TRUE(pg_->Start());
    ASSERT_TRUE(pg_->CreateDatabase("kagzi"));
    PgStore store(PgStoreOptions{url_, "kagzi-test", 1});
    auto m = store.Migrate();
    ASSERT_TRUE(m.ok()) << m.status().message();
  }

  DaemonGroup& StartDaemon(const DaemonSettings& settings, const std::string& url = "",
                           std::map<std::string, std::string> env = {}) {
    daemons_.push_back(std::make_unique<DaemonGroup>(
        url.empty() ? url_ : url, plugin_dir_,
        dir_ + "/kagzid-" + std::to_string(daemons_.size()) + ".log", settings, std::move(env)));
    EXPECT_TRUE(daemons_.back()->Start());
    return *daemons_.back();
  }
  DaemonGroup& StartReadyDaemon(const DaemonSettings& settings, const std::string& url = "") {
    DaemonGroup& d = StartDaemon(settings, url);
    EXPECT_TRUE(d.WaitForLog("ready: instance", seconds(60))) << d.LogSince();
    return d;
  }

  std::string StartRun(const ChaosInput& input) {
    PgStore store(PgStoreOptions{url_, "kagzi-test", 1});
    auto r = store.StartRun(StartRequest{"chaos", input.Json(), std::nullopt, 0, std::nullopt});
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? r->run_id : "";
  }

  ChaosInput Input() const {
    ChaosInput in;
    in.ledger = ledger_;
    in.event = "";
    return in;
  }

  std::int64_t OpenRuns() {
    return Sql(url_,
               "SELECT count(*) FROM kagzi_runs WHERE status NOT IN "
               "('COMPLETED', 'FAILED', 'CANCELLED')")
        .Int();
  }

  // Waits until no run is open; on timeout fails with the open runs.
  bool WaitAllTerminal(milliseconds timeout) {
    bool done = Eventually([&] { return Sql(url_, "SELECT 1").ok && OpenRuns() == 0; }, timeout);
    EXPECT_TRUE(done) << "runs still open after " << timeout.count() << " ms:\n"
                      << DescribeOpenRuns(url_);
    return done;
  }

  // Every run COMPLETED with its whole journal, each journal entry once, and
  // the ledger: every recorded step executed, none executed after its record.
  LedgerVerdict VerifyRuns(const std::map<std::string, ChaosInput>& runs) {
    auto journals = ReadJournals(url_);
    std::set<std::string> ids;
    for (const auto& [id, input] : runs) {
      ids.insert(id);
      EXPECT_EQ(MustSql(url_, "SELECT status FROM kagzi_runs WHERE id = $1::uuid", {id}).Value(),
                "COMPLETED")
          << id;
      EXPECT_EQ(JournalProblem(journals[id], input), "") << "run " << id;
    }
    EXPECT_EQ(MustSql(url_,
                      "SELECT count(*) FROM (SELECT run_id, step_id FROM kagzi_steps "
                      "GROUP BY 1, 2 HAVING count(*) > 1) x")
                  .Int(),
              0);
    LedgerVerdict v = AnalyzeLedger(ReadLedger(ledger_), journals, ids,
                                    [&](const std::string& run, const std::string& step) {
                                      return step == "flaky" && !runs.at(run).marks.empty() ? 1 : 0;
                                    });
    std::string problems;
    for (const auto& p : v.problems) problems += p + "\n";
    EXPECT_EQ(v.duplicated_recorded, 0) << problems;
    EXPECT_EQ(v.recorded_without_execution, 0) << problems;
    EXPECT_EQ(v.executed_but_missing_from_journal, 0) << problems;
    return v;
  }

  std::vector<Execution> Executions(const std::string& run, const std::string& step) {
    Ledger l = ReadLedger(ledger_);
    auto it = l.find({run, step});
    return it == l.end() ? std::vector<Execution>{} : it->second;
  }

  JournalEntry Entry(const std::string& run, const std::string& step) {
    auto journals = ReadJournals(url_);
    for (const auto& e : journals[run]) {
      if (e.step_id == step) return e;
    }
    ADD_FAILURE() << "run " << run << " has no journal entry " << step;
    return {};
  }

  void StopDaemonsCleanly() {
    for (auto& d : daemons_) {
      EXPECT_TRUE(d->running()) << d->log_path();
      d->Signal(SIGTERM);
    }
    for (auto& d : daemons_) EXPECT_EQ(d->Wait(seconds(60)), 0) << d->log_path();
  }

  std::string dir_, ledger_, plugin_dir_, url_;
  std::unique_ptr<PrivatePostgres> pg_;
  std::vector<std::unique_ptr<DaemonGroup>> daemons_;
};

std::size_t Count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

// Lines of `text` that contain every one of `parts`.
std::size_t CountLines(const std::string& text, const std::vector<std::string>& parts) {
  std::size_t n = 0;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (std::all_of(parts.begin(), parts.end(),
                    [&](const std::string& p) { return line.find(p) != std::string::npos; })) {
      ++n;
    }
  }
  return n;
}

// (a)
TEST_F(DbFaults, DaemonStartedBeforeTheDatabaseWaitsWithBackoffThenServes) {
  // A database that exists but whose server is down when kagzid starts.
  ASSERT_TRUE(pg_->Start());
  ASSERT_TRUE(pg_->CreateDatabase("kagzi"));
  ASSERT_TRUE(pg_->Stop());

  NotifySocket notify(dir_ + "/notify");
  DaemonGroup& d = StartDaemon(DaemonSettings{}, "", {{"NOTIFY_SOCKET", notify.path()}});
  ASSERT_TRUE(d.WaitForLog("waiting for the database", seconds(30))) << d.LogSince();
  // It retries, more slowly each time (250 ms, 500 ms, 1 s, ...).
  ASSERT_TRUE(
      Eventually([&] { return Count(d.LogSince(), "waiting for the database") >= 3; }, seconds(60)))
      << d.LogSince();
  std::vector<long> delays;
  const std::string log = d.LogSince();
  std::regex retrying("retrying in ([0-9]+) ms");
  for (auto it = std::sregex_iterator(log.begin(), log.end(), retrying);
       it != std::sregex_iterator(); ++it) {
    delays.push_back(std::stol((*it)[1]));
  }
  ASSERT_GE(delays.size(), 3u) << "no \"retrying in N ms\" in the waiting lines:\n" << log;
  EXPECT_TRUE(std::is_sorted(delays.begin(), delays.end())) << log;
  EXPECT_GT(delays.back(), delays.front()) << "no backoff:\n" << log;
  EXPECT_TRUE(d.running());
  EXPECT_EQ(log.find("ready: instance"), std::string::npos) << log;
  // systemd hears it too, and is not told READY.
  EXPECT_TRUE(
      Eventually([&] { return notify.Received("STATUS=waiting for the database"); }, seconds(10)));
  EXPECT_FALSE(notify.Received("READY=1"));

  // The database comes up: the daemon becomes ready by itself and serves.
  ASSERT_TRUE(pg_->Start());
  ASSERT_TRUE(d.WaitForLog("ready: instance", seconds(60))) << d.LogSince();
  EXPECT_TRUE(Eventually([&] { return notify.Received("READY=1"); }, seconds(30)));
  ChaosInput input = Input();
  input.marks = dir_ + "/marks";
  auto r =
      Ctl(url_, {"start", "chaos", "--input", input.Json(), "--wait", "--wait-timeout", "120"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << d.LogSince();
  const std::string id = FirstLine(r.out);
  EXPECT_NE(r.out.find("\"run\":\"" + id + "\""), std::string::npos) << r.out;
  VerifyRuns({{id, input}});
  StopDaemonsCleanly();
}

// (b)
TEST_F(DbFaults, StepWhoseWriteFailsWhileTheDatabaseIsDownRunsAgainAndIsRecordedOnce) {
  StartDatabase();
  DaemonSettings settings;  // lease_ttl 2s: writes are retried for 1 s
  DaemonGroup& d = StartReadyDaemon(settings);
  std::map<std::string, ChaosInput> runs;
  // The target: its step s-1 takes 2.5 s and PostgreSQL goes down while it
  // runs, so its result cannot be written.
  ChaosInput target = Input();
  target.marks = dir_ + "/marks";
  target.pre = 3;
  target.slow = "s-1";
  target.slow_ms = 2500;
  const std::string target_id = StartRun(target);
  runs[target_id] = target;
  // Others, busy with short steps at the same moment.
  ChaosInput other = Input();
  other.marks = dir_ + "/marks";
  other.pre = 4;
  other.post = 4;
  other.step_ms = 200;
  for (int i = 0; i < 12; ++i) runs[StartRun(other)] = other;

  ASSERT_TRUE(Eventually([&] { return !Executions(target_id, "s-1").empty(); }, seconds(60)))
      << d.LogSince();
  const auto step_started = std::chrono::steady_clock::now();
  ASSERT_TRUE(pg_->StopMode("immediate"));
  // Down until well after the step finished and its write gave up (2.5 s of
  // step, 1 s of write retries, plus margin).
  std::this_thread::sleep_until(step_started + seconds(7));
  ASSERT_TRUE(pg_->Start());

  ASSERT_TRUE(WaitAllTerminal(seconds(180)));
  LedgerVerdict v = VerifyRuns(runs);
  auto executions = Executions(target_id, "s-1");
  ASSERT_GE(executions.size(), 2u) << "the step whose write failed did not run again";
  JournalEntry recorded = Entry(target_id, "s-1");
  EXPECT_NE(recorded.tag, executions.front().tag)
      << "the execution whose write failed was treated as recorded";
  EXPECT_GE(v.reexecuted_unrecorded, 1);
  EXPECT_TRUE(d.running());
  StopDaemonsCleanly();
}

// (b) the other side of a lost connection: a fenced write committed, but
// its reply never arrived. The daemon retries the write, and the run must go
// on as if the first reply had arrived: not fail, not lose the event, not
// run a recorded step again. One test per statement: the claim, a step's
// record, a park (the durable sleep), the event wait's consume, the
// completion.
class DbFaultsLostReply : public DbFaults, public ::testing::WithParamInterface<std::string> {};

TEST_P(DbFaultsLostReply, WriteWhoseReplyIsLostAfterCommitDoesNotHarmTheRun) {
  StartDatabase();
  ReplyDroppingProxy proxy(dir_ + "/proxy", pg_->socket_dir(), pg_->port());
  const std::string via_proxy =
      "postgresql://postgres@/kagzi?host=" + dir_ + "/proxy&port=" + std::to_string(pg_->port());
  DaemonGroup& d = StartReadyDaemon(DaemonSettings{}, via_proxy);
  ChaosInput input = Input();
  input.marks = dir_ + "/marks";
  input.pre = 3;
  input.slow = "s-1";
  input.slow_ms = 1000;
  input.sleep_ms = 300;
  input.event = "go";
  // The claim: armed before the run exists, so that the first claim that
  // takes a row is this run's first claim.
  if (GetParam() == ReplyDroppingProxy::kClaimCommit) proxy.Arm(GetParam());
  const std::string id = StartRun(input);
  {
    PgStore store(PgStoreOptions{url_, "kagzi-test", 1});
    Status sent = store.SendEvent(id, "go", "{\"run\":\"" + id + "\"}");
    ASSERT_TRUE(sent.ok()) << sent.message();
  }
  if (GetParam() != ReplyDroppingProxy::kClaimCommit) {
    ASSERT_TRUE(Eventually([&] { return !Executions(id, "s-1").empty(); }, seconds(60)))
        << d.LogSince();
    // Only this run is in flight: the next execution of the statement is its
    // s-1 record, its sleep's park, its event consume or its completion.
    proxy.Arm(GetParam());
  }
  ASSERT_TRUE(WaitAllTerminal(seconds(120)));
  EXPECT_EQ(proxy.dropped(), 1) << "the armed statement never ran";
  EXPECT_EQ(MustSql(url_,
                    "SELECT status || ' ' || coalesce(error, '') FROM kagzi_runs "
                    "WHERE id = $1::uuid",
                    {id})
                .Value(),
            "COMPLETED ")
      << d.LogSince();
  VerifyRuns({{id, input}});
  for (const char* step : {"s-0", "s-1", "s-2", "t-0", "t-1"}) {
    EXPECT_EQ(Executions(id, step).size(), 1u) << step << ": recorded, must not run again";
  }
  EXPECT_EQ(
      MustSql(url_, "SELECT output::jsonb->'payload'->>'run' FROM kagzi_runs WHERE id = $1::uuid",
              {id})
          .Value(),
      id)
      << "the event's payload is not the run's output";
  StopDaemonsCleanly();
}

INSTANTIATE_TEST_SUITE_P(Statements, DbFaultsLostReply,
                         ::testing::Values("claim_commit", "kagzi_record_step", "kagzi_park",
                                           "kagzi_consume_event", "kagzi_end_runs"),
                         [](const auto& statement) { return statement.param; });

// (c)
TEST_F(DbFaults, TerminatedBackendsMidRunReconnectAndRunsComplete) {
  StartDatabase();
  DaemonGroup& a = StartReadyDaemon(DaemonSettings{});
  DaemonGroup& b = StartReadyDaemon(DaemonSettings{});
  std::map<std::string, ChaosInput> runs;
  ChaosInput input = Input();
  input.marks = dir_ + "/marks";
  input.pre = 4;
  input.post = 4;
  input.step_ms = 150;
  input.sleep_ms = 500;
  for (int i = 0; i < 30; ++i) runs[StartRun(input)] = input;
  ASSERT_TRUE(Eventually(
      [&] { return MustSql(url_, "SELECT count(*) FROM kagzi_steps").Int() > 20; }, seconds(60)));
  std::int64_t terminated = 0;
  for (int round = 0; round < 3; ++round) {
    terminated += MustSql(url_,
                          "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM "
                          "pg_stat_activity WHERE application_name LIKE 'kagzid%'")
                      .Int();
    std::this_thread::sleep_for(seconds(1));
  }
  EXPECT_GE(terminated, 6) << "each round should find both daemons' connections";
  const std::int64_t after_us = WallMicros();
  const std::size_t a_offset = a.LogSize(), b_offset = b.LogSize();
  ASSERT_TRUE(WaitAllTerminal(seconds(180)));

  // Both reconnected by themselves: every process of each heartbeats again,
  // and each claims new work (runs are started until both have).
  for (DaemonGroup* d : {&a, &b}) {
    EXPECT_TRUE(Eventually(
        [&] {
          SqlRows r = Sql(url_,
                          "SELECT count(*) FILTER (WHERE heartbeat_at > kagzi_ts($2::bigint)), "
                          "count(*) FROM kagzi_daemons WHERE pid = ANY($1::int[])",
                          {PidArray(d->GroupPids()), std::to_string(after_us)});
          return r.ok && r.Int(0, 1) > 0 && r.Int(0, 0) == r.Int(0, 1);
        },
        seconds(60)))
        << d->log_path();
  }
  ChaosInput more = Input();
  more.step_ms = 100;
  auto claimed_since = [](DaemonGroup& d, std::size_t offset) {
    return d.LogSince(offset).find("claimed ") != std::string::npos;
  };
  for (int i = 0; i < 300 && !(claimed_since(a, a_offset) && claimed_since(b, b_offset)); ++i) {
    runs[StartRun(more)] = more;
    std::this_thread::sleep_for(milliseconds(200));
  }
  EXPECT_TRUE(claimed_since(a, a_offset)) << a.LogSince(a_offset);
  EXPECT_TRUE(claimed_since(b, b_offset)) << b.LogSince(b_offset);
  ASSERT_TRUE(WaitAllTerminal(seconds(180)));
  VerifyRuns(runs);
  StopDaemonsCleanly();
}

// (d) statement timeout, within the write budget: the write is retried, and
// the workflow goes on only once it succeeded.
TEST_F(DbFaults, StepWriteHittingStatementTimeoutIsRetriedAndNotTreatedAsRecorded) {
  StartDatabase();
  DaemonSettings settings;
  settings.lease_ttl = "20s";  // writes are retried for 10 s
  settings.heartbeat_interval = "1s";
  DaemonGroup& d =
      StartReadyDaemon(settings, pg_->Url("kagzi", "options=-c%20statement_timeout%3D500"));
  ChaosInput input = Input();
  input.pre = 3;
  input.slow = "s-1";
  input.slow_ms = 1500;
  const std::string id = StartRun(input);
  ASSERT_TRUE(Eventually([&] { return !Executions(id, "s-1").empty(); }, seconds(60)))
      << d.LogSince();

  // Lock the run's row while s-1 runs: its fenced write blocks on the lock
  // and is cancelled by the 500 ms statement timeout, again and again.
  SqlSession lock(url_);
  ASSERT_TRUE(lock.connected()) << lock.connect_error();
  ASSERT_TRUE(lock.Exec("BEGIN").ok);
  auto locked = lock.Exec("SELECT id FROM kagzi_runs WHERE id = $1::uuid FOR UPDATE", {id});
  ASSERT_TRUE(locked.ok) << locked.error;
  ASSERT_TRUE(Eventually(
      [&] {
        return CountLines(d.LogSince(), {"write failed, retrying", "statement timeout"}) >= 2;
      },
      seconds(30)))
      << d.LogSince();
  // Meanwhile the workflow did not go on to s-2.
  EXPECT_TRUE(Executions(id, "s-2").empty()) << "s-2 ran while s-1's write was failing";
  ASSERT_TRUE(lock.Exec("COMMIT").ok);

  ASSERT_TRUE(WaitAllTerminal(seconds(120)));
  VerifyRuns({{id, input}});
  auto executions = Executions(id, "s-1");
  EXPECT_EQ(executions.size(), 1u) << "the write was retried: the step need not run again";
  JournalEntry s1 = Entry(id, "s-1");
  auto s2 = Executions(id, "s-2");
  ASSERT_EQ(s2.size(), 1u);
  EXPECT_GT(s2.front().start_us, s1.finished_us) << "s-2 started before s-1 was recorded";
  EXPECT_NE(d.LogSince().find("write failed, retrying"), std::string::npos) << d.LogSince();
  StopDaemonsCleanly();
}

// (d) statement timeout for longer than the write budget: the step's result
// is abandoned (never treated as recorded) and the step runs again later.
// The write is blocked by an uncommitted journal row of the test's with the
// same key, not by a lock on the run's row, so heartbeats go on meanwhile.
TEST_F(DbFaults, StepWriteTimingOutPastTheWriteBudgetIsAbandonedAndRunsAgain) {
  StartDatabase();
  DaemonSettings settings;  // lease_ttl 2s: writes are retried for 1 s
  DaemonGroup& d =
      StartReadyDaemon(settings, pg_->Url("kagzi", "options=-c%20statement_timeout%3D300"));
  ChaosInput input = Input();
  input.pre = 3;
  input.slow = "s-1";
  input.slow_ms = 1000;
  const std::string id = StartRun(input);
  ASSERT_TRUE(Eventually([&] { return !Executions(id, "s-1").empty(); }, seconds(60)))
      << d.LogSince();
  SqlSession tx(url_);
  ASSERT_TRUE(tx.connected()) << tx.connect_error();
  ASSERT_TRUE(tx.Exec("BEGIN").ok);
  auto ins = tx.Exec(
      "INSERT INTO kagzi_steps (run_id, step_id, seq, kind, status) "
      "VALUES ($1::uuid, 's-1', 999, 'step', 'COMPLETED')",
      {id});
  ASSERT_TRUE(ins.ok) << ins.error;
  ASSERT_TRUE(Eventually(
      [&] {
        return CountLines(d.LogSince(), {id, "abandoned"}) > 0;
      },
      seconds(60)))
      << d.LogSince();
  EXPECT_TRUE(Executions(id, "s-2").empty()) << "s-2 ran although s-1 was never recorded";
  ASSERT_TRUE(tx.Exec("ROLLBACK").ok);

  ASSERT_TRUE(WaitAllTerminal(seconds(120)));
  VerifyRuns({{id, input}});
  auto executions = Executions(id, "s-1");
  ASSERT_EQ(executions.size(), 2u) << "the abandoned step must run again, once";
  EXPECT_EQ(Entry(id, "s-1").tag, executions.back().tag);
  EXPECT_EQ(MustSql(url_, "SELECT count(*) FROM kagzi_steps WHERE seq = 999").Int(), 0);
  StopDaemonsCleanly();
}

// (d) a deadlock: the daemon's step write is chosen as the victim (SQLSTATE
// 40P01), is retried, and the step is recorded once, by its one execution.
TEST_F(DbFaults, StepWriteChosenAsDeadlockVictimIsRetriedAndRecordedOnce) {
  StartDatabase();
  DaemonSettings settings;
  settings.lease_ttl = "20s";
  settings.heartbeat_interval = "1s";
  // The daemon's backends look for deadlocks after 5 s, the test's session
  // after 30 s: so the daemon's write, which waits first, is the victim.
  DaemonGroup& d =
      StartReadyDaemon(settings, pg_->Url("kagzi", "options=-c%20deadlock_timeout%3D5000"));
  ChaosInput input = Input();
  input.pre = 3;
  input.slow = "s-1";
  input.slow_ms = 1000;
  const std::string id = StartRun(input);
  ASSERT_TRUE(Eventually([&] { return !Executions(id, "s-1").empty(); }, seconds(60)))
      << d.LogSince();

  // The test's transaction takes the journal key (run, "s-1") first; the
  // daemon's write locks the run row and waits for that key; the test then
  // asks for the run row: a cycle.
  SqlSession tx(url_);
  ASSERT_TRUE(tx.connected()) << tx.connect_error();
  ASSERT_TRUE(tx.Exec("SET deadlock_timeout = '30s'").ok);
  ASSERT_TRUE(tx.Exec("BEGIN").ok);
  auto ins = tx.Exec(
      "INSERT INTO kagzi_steps (run_id, step_id, seq, kind, status) "
      "VALUES ($1::uuid, 's-1', 999, 'step', 'COMPLETED')",
      {id});
  ASSERT_TRUE(ins.ok) << ins.error;
  ASSERT_TRUE(Eventually(
      [&] {
        return Sql(url_,
                   "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE "
                   "'kagzid%' AND wait_event_type = 'Lock'")
                   .Int() > 0;
      },
      seconds(30)))
      << "the daemon's write never waited for the test's journal row";
  ASSERT_TRUE(tx.Send("SELECT id FROM kagzi_runs WHERE id = $1::uuid FOR UPDATE", {id}));
  ASSERT_TRUE(d.WaitForLog("deadlock detected", seconds(60))) << d.LogSince();
  auto got = tx.Finish();
  EXPECT_TRUE(got.ok) << "the test's session was the victim: " << got.error;
  ASSERT_TRUE(tx.Exec("ROLLBACK").ok);

  ASSERT_TRUE(WaitAllTerminal(seconds(120)));
  VerifyRuns({{id, input}});
  auto executions = Executions(id, "s-1");
  ASSERT_EQ(executions.size(), 1u);
  EXPECT_EQ(Entry(id, "s-1").tag, executions.front().tag);
  EXPECT_EQ(MustSql(url_, "SELECT count(*) FROM kagzi_steps WHERE seq = 999").Int(), 0);
  EXPECT_NE(d.LogSince().find("write failed, retrying"), std::string::npos) << d.LogSince();
  StopDaemonsCleanly();
}

}  // namespace
}  // namespace kagzi::testing::chaos
