// A thin RAII layer over libpq: one PgConnection owns one PGconn.
//
// Every statement with values goes through ExecPrepared: a named, prepared
// statement with parameters, prepared lazily the first time a connection
// uses it. SQL is never built from values. Errors come back as Status:
// connection loss, admin shutdown, serialization failures and deadlocks are
// kUnavailable (retryable; the connection is then marked broken and must be
// replaced); unique violations are kConflict; bad parameter text is
// kInvalidArgument. A PgConnection is used by one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <libpq-fe.h>

#include "kagzi/core/status.h"

namespace kagzi {

// A prepared statement: a stable name and its SQL with $1..$n parameters.
struct Statement {
  const char* name;
  const char* sql;
};

// One parameter value as text, or SQL NULL; or, made by Binary, bytes in
// PostgreSQL's binary format for the parameter's type.
class PgParam {
 public:
  PgParam(std::nullopt_t) {}                                   // NOLINT
  PgParam(const char* s) : value_(std::string(s)) {}           // NOLINT
  PgParam(std::string_view s) : value_(std::string(s)) {}      // NOLINT
  PgParam(const std::string& s) : value_(s) {}                 // NOLINT
  PgParam(std::string&& s) : value_(std::move(s)) {}           // NOLINT
  PgParam(std::int64_t v) : value_(std::to_string(v)) {}       // NOLINT
  PgParam(int v) : value_(std::to_string(v)) {}                // NOLINT
  PgParam(std::uint32_t v) : value_(std::to_string(v)) {}      // NOLINT
  PgParam(bool v) : value_(v ? "true" : "false") {}            // NOLINT
  PgParam(const std::optional<std::string>& v) : value_(v) {}  // NOLINT
  static PgParam Binary(std::string bytes) {
    PgParam p(std::move(bytes));
    p.binary_ = true;
    return p;
  }
  const std::optional<std::string>& value() const { return value_; }
  bool binary() const { return binary_; }

 private:
  std::optional<std::string> value_;
  bool binary_ = false;
};

// The element type of an array parameter sent in binary form.
enum class PgElement { kText, kInt4, kInt8, kUuid };

// Formats a text[] / int[] array literal for a parameter (quotes and
// escapes every element).
std::string PgTextArray(const std::vector<std::string>& items);
std::string PgIntArray(const std::vector<std::int64_t>& items);
// An array literal of any element type from text values, nullopt as NULL:
// column k of many calls' parameters, for one statement over unnest().
std::string PgArray(const std::vector<std::optional<std::string>>& items);
// The parameters of many calls of one statement as one array per parameter
// (PgArray of column k), for the statement that does them all over
// unnest(). Every row has the same number of parameters.
std::vector<PgParam> PgColumns(const std::vector<std::vector<PgParam>>& rows);
// A one-dimensional array of `type` in PostgreSQL's binary format (what
// array_recv reads) from its elements' text, nullopt elements as NULL:
// nothing to quote here and nothing for the server to parse. nullopt if an
// element is not the plain text of its type (an integer in decimal, a uuid
// as 8-4-4-4-12 hex digits): send PgArray then, and the server names it.
std::optional<std::string> PgBinaryArray(const std::vector<std::optional<std::string>>& items,
                                         PgElement type);
// PgColumns with column k sent as a binary array of types[k]
// (PgBinaryArray), or as text where it cannot be or where `types` has no
// entry k.
std::vector<PgParam> PgColumns(const std::vector<std::vector<PgParam>>& rows,
                               const std::vector<PgElement>& types);

// Owns a PGresult. Row/column access returns views valid while it lives.
class PgResult {
 public:
  PgResult() = default;
  explicit PgResult(PGresult* res) : res_(res, &PQclear) {}

  int rows() const { return res_ ? PQntuples(res_.get()) : 0; }
  int columns() const { return res_ ? PQnfields(res_.get()) : 0; }
  bool IsNull(int row, int col) const { return PQgetisnull(res_.get(), row, col) != 0; }
  std::string_view Get(int row, int col) const {
    return {PQgetvalue(res_.get(), row, col),
            static_cast<std::size_t>(PQgetlength(res_.get(), row, col))};
  }
  std::string GetString(int row, int col) const { return std::string(Get(row, col)); }
  std::optional<std::string> GetOptional(int row, int col) const;
  std::int64_t GetInt(int row, int col) const;
  std::optional<std::int64_t> GetOptionalInt(int row, int col) const;
  bool GetBool(int row, int col) const { return Get(row, col) == "t"; }
  int ColumnIndex(const char* name) const { return PQfnumber(res_.get(), name); }
  const PGresult* raw() const { return res_.get(); }
  // Rows affected by INSERT/UPDATE/DELETE.
  std::int64_t Affected() const;

 private:
  std::shared_ptr<PGresult> res_;
};

struct PgNotification {
  std::string channel;
  std::string payload;
};

class PgConnection {
 public:
  // Connects with a libpq URL or conninfo string. application_name shows in
  // pg_stat_activity. Fails with kUnavailable naming the (redacted) URL.
  static Result<std::unique_ptr<PgConnection>> Connect(const std::string& url,
                                                       std::string_view application_name);
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // Simple-protocol query: no parameters; may hold several statements.
  // Only for fixed SQL text (DDL, BEGIN/COMMIT, LISTEN).
  Result<PgResult> Exec(std::string_view sql);

  // Prepares, in one round trip, every statement of `stmts` not prepared
  // on this connection yet.
  Status PrepareAll(const std::vector<const Statement*>& stmts);
  // Has the server plan each of `stmts` (prepared first) without running
  // it: EXPLAIN EXECUTE with every parameter NULL, in one round trip and
  // one transaction that begins with `settings`, if given (a statement
  // without parameters, sent unnamed, that sets the planner's options for
  // the ones after it, as set_config(..., true) does). Under plan_cache_mode =
  // force_generic_plan this builds and keeps each statement's generic
  // plan, so that its first real use does not wait for the planner.
  Status PlanAhead(const std::vector<const Statement*>& stmts, const Statement* settings = nullptr);

  // Prepared statement with parameters (prepared on first use here).
  Result<PgResult> ExecPrepared(const Statement& stmt, std::initializer_list<PgParam> params);
  Result<PgResult> ExecPrepared(const Statement& stmt, const std::vector<PgParam>& params);
  // The same statement, planned afresh on every call for its values (a
  // custom plan, whatever the session's plan_cache_mode; no prepared,
  // cached plan). For a query whose best plan changes as a table grows: a
  // cached generic plan made while the table was nearly empty keeps
  // scanning it sequentially until autovacuum analyzes it (a minute or
  // more).
  Result<PgResult> ExecUnprepared(const Statement& stmt, const std::vector<PgParam>& params);

  // One statement of a pipelined transaction (ExecTransaction).
  struct Call {
    const Statement* stmt;
    std::vector<PgParam> params;
  };
  // Runs every call in one implicit transaction, sent as one libpq
  // pipeline: one round trip and one commit for all of them. Returns each
  // call's result, in order, once the transaction has committed. If any
  // call fails the server rolls the whole transaction back (nothing was
  // written) and its error is returned; kUnavailable with broken() means
  // the connection died and whether it committed is unknown.
  //
  // `after`, if given, goes in the same round trip right after the commit,
  // as a transaction of its own (the notifications of a writer that
  // deferred them: NotifyStarted, NotifyFinished). It runs whether or not
  // the transaction committed, so it must be harmless either way; its
  // failure is logged, not returned.
  Result<std::vector<PgResult>> ExecTransaction(const std::vector<Call>& calls,
                                                const Call* after = nullptr);
  // The same, handing each call's result to `each(index, result)` as it
  // arrives instead of keeping them all (a batch of 100,000 would hold
  // 100,000 PGresults). `each` runs before the commit is known: it may
  // only take what it needs, to be acted on once this returns ok.
  Status ExecTransaction(const std::vector<Call>& calls,
                         const std::function<void(std::size_t, const PgResult&)>& each,
                         const Call* after = nullptr);
  // LISTEN support: subscribe, then wait on socket() and drain.
  Status Listen(std::string_view channel);
  // Reads what arrived on the socket without blocking.
  Status ConsumeInput();
  std::vector<PgNotification> TakeNotifications();
  // Blocks up to timeout for a notification (or input); ok with zero or
  // more notifications.
  Result<std::vector<PgNotification>> WaitForNotifications(std::chrono::milliseconds timeout);

  int socket() const { return PQsocket(conn_); }
  // True once a connection-level failure was seen; replace the connection.
  bool broken() const { return broken_ || PQstatus(conn_) != CONNECTION_OK; }
  PGconn* raw() { return conn_; }

 private:
  explicit PgConnection(PGconn* conn) : conn_(conn) {}
  Status StatusFromResult(const PGresult* res, std::string_view what);
  Status Prepare(const Statement& stmt);
  // Pipeline mode: entering it, sending a Sync (the end of one implicit
  // transaction), leaving it once every result is read.
  Status EnterPipeline();
  Status SendSync();
  Status LeavePipeline();
  // A statement sent unnamed (parsed and planned at each call), with its
  // values; stmt.name only names it in errors.
  struct Unnamed {
    Statement stmt;
    std::vector<PgParam> params;
  };
  // Runs `calls` in one pipelined implicit transaction (one round trip)
  // and returns their results, or the first failure (nothing written).
  Result<std::vector<PgResult>> ExecUnnamed(const std::vector<Unnamed>& calls);
  // Pipeline mode: the next statement's result (and its closing NULL), or
  // kUnavailable with the connection marked broken.
  Result<PgResult> TakePipelinedResult(const Statement& stmt);
  // Pipeline mode: the Sync's answer; false (connection marked broken) if
  // it did not come.
  bool TakePipelineSync();
  // Reads the answer to ExecTransaction's `after` and its Sync.
  Status TakeAfterCommit(const Call& after);

  PGconn* conn_;
  bool broken_ = false;
  std::unordered_set<std::string> prepared_;
};

// EXPLAIN EXECUTE of prepared statement `name` with its `params`
// parameters all NULL: the plan it would run (a cached generic plan as it
// is), without running it.
std::string ExplainExecuteSql(std::string_view name, int params);

// Thread-safe pool of connections to one URL, created lazily up to `size`.
// Acquire blocks while all are in use. A broken connection is discarded on
// release and replaced by the next Acquire. The most recently released
// connection is handed out first, so that a quiet process keeps using the
// few connections whose statements are prepared and planned (and whose
// backends are warm) while the others sit idle.
class PgPool {
 public:
  // Runs on every connection the pool opens, before its first use; a
  // connection it fails on is closed and the failure returned.
  using Setup = std::function<Status(PgConnection&)>;
  PgPool(std::string url, std::string application_name, int size, Setup setup = {});
  ~PgPool();

  class Lease {
   public:
    Lease(PgPool* pool, std::unique_ptr<PgConnection> conn) : pool_(pool), conn_(std::move(conn)) {}
    Lease(Lease&&) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    PgConnection& operator*() { return *conn_; }
    PgConnection* operator->() { return conn_.get(); }

   private:
    PgPool* pool_;
    std::unique_ptr<PgConnection> conn_;
  };

  Result<Lease> Acquire();
  // Runs `warm` on `count` connections (at most the pool's size): the
  // idle ones most recently used, then new ones. `warm` must be harmless on
  // a connection it already ran on.
  Status Warm(int count, const std::function<Status(PgConnection&)>& warm);
  const std::string& url() const { return url_; }

 private:
  void Release(std::unique_ptr<PgConnection> conn);
  // Connects and runs setup_; the caller has reserved the slot.
  Result<std::unique_ptr<PgConnection>> Open();

  struct State;
  std::string url_;
  std::string application_name_;
  int size_;
  Setup setup_;
  std::unique_ptr<State> state_;
};

}  // namespace kagzi
