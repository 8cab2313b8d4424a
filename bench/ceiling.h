// The single-row INSERT ceiling: how many transactions per second the
// server commits when each is one INSERT of one row, from many clients at
// once. An engine that commits once per step can make no more steps per
// second than this; bench3's stretch target is to make more (fewer commits
// than steps: group commit). docs/benchmarks.md.
//
// Like `pgbench -n -c <clients> -j <threads> -M prepared` with a script of
// one INSERT: `threads` threads each drive their share of the client
// connections through libpq's asynchronous calls, one statement in flight
// per connection, each statement its own transaction (autocommit).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "kagzi/core/status.h"

namespace kagzi::bench {

// The table the ceiling inserts into: each transaction adds one row, a
// text like a bench3 step's result ({"step":1,"i":1,"s":"x..."}, 64 x's),
// under a bigserial key.
inline constexpr char kCeilingTable[] =
    "CREATE TABLE kagzi_bench_ceiling (id bigserial PRIMARY KEY, v text NOT NULL)";

struct CeilingOptions {
  std::string conninfo;  // the database holding kCeilingTable
  int clients = 32;      // connections, one INSERT in flight on each
  int threads = 2;       // threads driving them
  std::chrono::milliseconds duration{15'000};
};

struct CeilingCount {
  std::int64_t transactions = 0;  // committed, from the start to the last reply
  double seconds = 0;             // from the first INSERT sent to the last reply
};

// Connects the clients and prepares the INSERT on each, then inserts for
// options.duration (or until `interrupted`), and waits for the replies in
// flight. Fails, naming the client and the server's message, if a client
// cannot connect or an INSERT fails.
Result<CeilingCount> MeasureCeiling(const CeilingOptions& options,
                                    const std::atomic<bool>& interrupted);

}  // namespace kagzi::bench
