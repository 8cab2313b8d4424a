#include "ceiling.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <libpq-fe.h>

namespace kagzi::bench {
namespace {

using std::chrono::steady_clock;

constexpr char kStatement[] = "kagzi_bench_ceiling_insert";
constexpr char kInsert[] = "INSERT INTO kagzi_bench_ceiling (v) VALUES ($1)";

// The row each transaction inserts: a bench3 step's result.
std::string CeilingRow() { return R"({"step":1,"i":1,"s":")" + std::string(64, 'x') + "\"}"; }

std::string ErrorText(const PGconn* conn) {
  std::string text = PQerrorMessage(conn);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// One client: its connection, and whether an INSERT is in flight on it.
struct Client {
  int index = 0;
  PGconn* conn = nullptr;
  bool busy = false;
};

// What the threads share: the start signal and the window.
struct Window {
  std::atomic<int> ready{0};          // threads connected and prepared (or failed)
  std::atomic<bool> go{false};        // start inserting
  std::atomic<bool> stop{false};      // a thread failed, or interrupted: stop at once
  steady_clock::time_point deadline;  // written before `go`
};

// What one thread did.
struct Driven {
  Status status;
  std::int64_t transactions = 0;
  steady_clock::time_point last_reply{};
};

Status Connect(const CeilingOptions& options, Client& c) {
  c.conn = PQconnectdb(options.conninfo.c_str());
  if (c.conn == nullptr || PQstatus(c.conn) != CONNECTION_OK) {
    return Status::Unavailable("ceiling client {}: cannot connect: {}", c.index,
                               c.conn == nullptr ? "out of memory" : ErrorText(c.conn));
  }
  PGresult* r = PQprepare(c.conn, kStatement, kInsert, 1, nullptr);
  const bool prepared = r != nullptr && PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  if (!prepared) {
    return Status::Unavailable("ceiling client {}: cannot prepare the INSERT: {}", c.index,
                               ErrorText(c.conn));
  }
  return Status::Ok();
}

// Reads what arrived for a busy client; counts each INSERT that committed.
Status Receive(Client& c, Driven& out) {
  if (PQconsumeInput(c.conn) == 0) {
    return Status::Unavailable("ceiling client {}: connection lost: {}", c.index,
                               ErrorText(c.conn));
  }
  while (PQisBusy(c.conn) == 0) {
    PGresult* r = PQgetResult(c.conn);
    if (r == nullptr) {
      c.busy = false;  // the statement's results are all in
      return Status::Ok();
    }
    const bool committed = PQresultStatus(r) == PGRES_COMMAND_OK;
    std::string error = committed ? std::string() : PQresultErrorMessage(r);
    PQclear(r);
    if (!committed) {
      while (!error.empty() && error.back() == '\n') error.pop_back();
      return Status::Unavailable("ceiling client {}: INSERT failed: {}", c.index, error);
    }
    ++out.transactions;
    out.last_reply = steady_clock::now();
  }
  return Status::Ok();
}

// Sends an INSERT on every idle client until the deadline, and reads the
// replies, until none is in flight.
Status Drive(std::vector<Client>& clients, Window& window, const std::atomic<bool>& interrupted,
             Driven& out) {
  const std::string row = CeilingRow();
  const char* values[1] = {row.c_str()};
  std::vector<pollfd> fds;
  std::vector<Client*> polled;
  while (true) {
    const bool sending =
        !window.stop.load() && !interrupted.load() && steady_clock::now() < window.deadline;
    fds.clear();
    polled.clear();
    for (Client& c : clients) {
      if (!c.busy && sending) {
        if (PQsendQueryPrepared(c.conn, kStatement, 1, values, nullptr, nullptr, 0) == 0) {
          return Status::Unavailable("ceiling client {}: cannot send the INSERT: {}", c.index,
                                     ErrorText(c.conn));
        }
        c.busy = true;
      }
      if (c.busy) {
        fds.push_back(pollfd{PQsocket(c.conn), POLLIN, 0});
        polled.push_back(&c);
      }
    }
    if (fds.empty()) return Status::Ok();
    if (::poll(fds.data(), fds.size(), 100) < 0 && errno != EINTR) {
      return Status::Unavailable("ceiling: poll failed: {}", std::strerror(errno));
    }
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      KAGZI_RETURN_IF_ERROR(Receive(*polled[i], out));
    }
  }
}

}  // namespace

Result<CeilingCount> MeasureCeiling(const CeilingOptions& options,
                                    const std::atomic<bool>& interrupted) {
  if (options.clients < 1 || options.threads < 1) {
    return Status::InvalidArgument("ceiling: {} clients on {} threads: both must be at least 1",
                                   options.clients, options.threads);
  }
  const int threads = std::min(options.threads, options.clients);
  std::vector<std::vector<Client>> shares(threads);
  for (int i = 0; i < options.clients; ++i) shares[i % threads].push_back(Client{i + 1});
  Window window;
  std::vector<Driven> driven(threads);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      Driven& out = driven[t];
      for (Client& c : shares[t]) {
        out.status = Connect(options, c);
        if (!out.status.ok()) break;
      }
      if (!out.status.ok()) window.stop = true;
      ++window.ready;
      while (!window.go.load() && !window.stop.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      if (out.status.ok()) out.status = Drive(shares[t], window, interrupted, out);
      if (!out.status.ok()) window.stop = true;
      for (Client& c : shares[t]) PQfinish(c.conn);
    });
  }
  while (window.ready.load() < threads) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const auto start = steady_clock::now();
  window.deadline = start + options.duration;
  window.go = true;
  for (auto& w : workers) w.join();
  CeilingCount count;
  auto last = start;
  for (const Driven& d : driven) {
    if (!d.status.ok()) return d.status;
    count.transactions += d.transactions;
    last = std::max(last, d.last_reply);
  }
  count.seconds = std::chrono::duration<double>(last - start).count();
  if (interrupted.load()) return Status::Unavailable("interrupted");
  return count;
}

}  // namespace kagzi::bench
