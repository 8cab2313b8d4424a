// libpq wrapper: connections, prepared statements, LISTEN, and a pool.
#include "kagzi/core/pg.h"

#include <poll.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>

#include "kagzi/core/config.h"
#include "kagzi/core/log.h"

namespace kagzi {
namespace {

// SQLSTATEs after which retrying on a fresh connection or transaction can
// succeed.
bool IsRetryableSqlState(std::string_view state) {
  return state.starts_with("08") ||               // connection exception
         state == "57P01" || state == "57P02" ||  // admin / crash shutdown
         state == "57P03" ||                      // cannot connect now
         state == "40001" || state == "40P01" ||  // serialization, deadlock
         state == "53300" ||                      // too many connections
         state == "57014";                        // statement timeout / cancel
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// libpq's arrays for one statement's parameters: values, and lengths and
// formats once one of them is binary.
struct ParamArrays {
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;
  bool binary = false;

  void Set(const std::vector<PgParam>& params) {
    values.clear();
    lengths.clear();
    formats.clear();
    binary = false;
    for (const auto& p : params) {
      values.push_back(p.value() ? p.value()->data() : nullptr);
      lengths.push_back(p.value() ? static_cast<int>(p.value()->size()) : 0);
      formats.push_back(p.binary() ? 1 : 0);
      binary = binary || p.binary();
    }
  }
  int count() const { return static_cast<int>(values.size()); }
  const int* lengths_or_null() const { return binary ? lengths.data() : nullptr; }
  const int* formats_or_null() const { return binary ? formats.data() : nullptr; }
};

// Network byte order, as the binary format wants.
void PutInt32(std::string& out, std::uint32_t v) {
  const char bytes[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                         static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(bytes, 4);
}

void PutInt64(std::string& out, std::uint64_t v) {
  PutInt32(out, static_cast<std::uint32_t>(v >> 32));
  PutInt32(out, static_cast<std::uint32_t>(v));
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Appends one element (its length, then its bytes); false if `text` is not
// the plain text of `type`.
bool AppendBinaryElement(std::string& out, std::string_view text, PgElement type) {
  switch (type) {
    case PgElement::kText:
      PutInt32(out, static_cast<std::uint32_t>(text.size()));
      out.append(text);
      return true;
    case PgElement::kInt4:
    case PgElement::kInt8: {
      std::int64_t v = 0;
      const char* end = text.data() + text.size();
      auto [ptr, ec] = std::from_chars(text.data(), end, v);
      if (ec != std::errc() || ptr != end) return false;
      if (type == PgElement::kInt8) {
        PutInt32(out, 8);
        PutInt64(out, static_cast<std::uint64_t>(v));
        return true;
      }
      if (v < INT32_MIN || v > INT32_MAX) return false;
      PutInt32(out, 4);
      PutInt32(out, static_cast<std::uint32_t>(static_cast<std::int32_t>(v)));
      return true;
    }
    case PgElement::kUuid: {
      if (text.size() != 36) return false;
      char bytes[16];
      std::size_t n = 0;
      for (std::size_t i = 0; i < text.size();) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
          if (text[i] != '-') return false;
          ++i;
          continue;
        }
        const int hi = HexDigit(text[i]);
        const int lo = HexDigit(text[i + 1]);
        if (hi < 0 || lo < 0) return false;
        bytes[n++] = static_cast<char>(hi << 4 | lo);
        i += 2;
      }
      PutInt32(out, 16);
      out.append(bytes, 16);
      return true;
    }
  }
  return false;
}

// The type's OID, as pg_type has it.
std::uint32_t ElementOid(PgElement type) {
  switch (type) {
    case PgElement::kText:
      return 25;
    case PgElement::kInt4:
      return 23;
    case PgElement::kInt8:
      return 20;
    case PgElement::kUuid:
      return 2950;
  }
  return 0;
}

std::string QuoteArrayElement(std::string_view item) {
  std::string out = "\"";
  for (char ch : item) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  out += '"';
  return out;
}

}  // namespace

std::string PgTextArray(const std::vector<std::string>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += QuoteArrayElement(items[i]);
  }
  return out + "}";
}

std::string PgArray(const std::vector<std::optional<std::string>>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += items[i] ? QuoteArrayElement(*items[i]) : std::string("NULL");
  }
  return out + "}";
}

std::vector<PgParam> PgColumns(const std::vector<std::vector<PgParam>>& rows) {
  return PgColumns(rows, {});  // no types: every column as text
}

std::optional<std::string> PgBinaryArray(const std::vector<std::optional<std::string>>& items,
                                         PgElement type) {
  // array_send's layout: dimensions, a has-nulls flag, the element type,
  // each dimension's length and lower bound, then each element as its
  // length (-1: NULL) and bytes. No dimension at all for an empty array.
  bool nulls = false;
  std::size_t size = 20;  // the header
  for (const auto& item : items) {
    nulls = nulls || !item;
    size += 4 + (item ? std::max<std::size_t>(item->size(), 8) : 0);
  }
  std::string out;
  out.reserve(size);
  PutInt32(out, items.empty() ? 0 : 1);
  PutInt32(out, nulls ? 1 : 0);
  PutInt32(out, ElementOid(type));
  if (items.empty()) return out;
  PutInt32(out, static_cast<std::uint32_t>(items.size()));
  PutInt32(out, 1);
  for (const auto& item : items) {
    if (!item) {
      PutInt32(out, static_cast<std::uint32_t>(-1));
    } else if (!AppendBinaryElement(out, *item, type)) {
      return std::nullopt;
    }
  }
  return out;
}

std::vector<PgParam> PgColumns(const std::vector<std::vector<PgParam>>& rows,
                               const std::vector<PgElement>& types) {
  std::vector<PgParam> out;
  if (rows.empty()) return out;
  out.reserve(rows.front().size());
  std::vector<std::optional<std::string>> column(rows.size());
  for (std::size_t k = 0; k < rows.front().size(); ++k) {
    for (std::size_t i = 0; i < rows.size(); ++i) column[i] = rows[i].at(k).value();
    auto binary = k < types.size() ? PgBinaryArray(column, types[k]) : std::nullopt;
    out.push_back(binary ? PgParam::Binary(std::move(*binary)) : PgParam(PgArray(column)));
  }
  return out;
}

std::string PgIntArray(const std::vector<std::int64_t>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(items[i]);
  }
  return out + "}";
}

std::optional<std::string> PgResult::GetOptional(int row, int col) const {
  if (IsNull(row, col)) return std::nullopt;
  return GetString(row, col);
}

std::int64_t PgResult::GetInt(int row, int col) const {
  std::string_view v = Get(row, col);
  std::int64_t out = 0;
  bool neg = false;
  std::size_t i = 0;
  if (!v.empty() && v[0] == '-') {
    neg = true;
    i = 1;
  }
  for (; i < v.size() && v[i] >= '0' && v[i] <= '9'; ++i) out = out * 10 + (v[i] - '0');
  return neg ? -out : out;
}

std::optional<std::int64_t> PgResult::GetOptionalInt(int row, int col) const {
  if (IsNull(row, col)) return std::nullopt;
  return GetInt(row, col);
}

std::int64_t PgResult::Affected() const {
  if (!res_) return 0;
  const char* n = PQcmdTuples(res_.get());
  return (n && *n) ? std::atoll(n) : 0;
}

Result<std::unique_ptr<PgConnection>> PgConnection::Connect(const std::string& url,
                                                            std::string_view application_name) {
  std::string app(application_name);
  // Defaults first: values expanded from the URL (dbname) override them.
  const char* keys[] = {"connect_timeout", "application_name", "dbname", nullptr};
  const char* values[] = {"10", app.c_str(), url.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (conn == nullptr) return Status::Unavailable("cannot allocate a libpq connection");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string err = RedactLibpqError(url, Trim(PQerrorMessage(conn)));
    PQfinish(conn);
    return Status::Unavailable("cannot connect to database_url \"{}\": {}", RedactDatabaseUrl(url),
                               err);
  }
  // Server NOTICEs (e.g. "already exists, skipping") go to the debug log,
  // not raw to stderr.
  PQsetNoticeProcessor(
      conn,
      [](void*, const char* message) {
        Logger("store")->debug("server notice: {}", Trim(message ? message : ""));
      },
      nullptr);
  // Times are exchanged as epoch microseconds; keep the session in UTC anyway
  // so any text timestamps are unambiguous. Every statement of the Store
  // is written for READ COMMITTED (a fenced write that finds its run row
  // updated re-checks the new version), whatever the server's default. No
  // JIT: its compile time (100+ ms) is paid by a statement that runs in
  // under a millisecond.
  PGresult* r = PQexec(conn,
                       "SET TIME ZONE 'UTC'; SET default_transaction_isolation = 'read committed';"
                       " SET jit = off");
  PQclear(r);
  return std::unique_ptr<PgConnection>(new PgConnection(conn));
}

PgConnection::~PgConnection() { PQfinish(conn_); }

Status PgConnection::StatusFromResult(const PGresult* res, std::string_view what) {
  if (res == nullptr) {
    broken_ = true;
    return Status::Unavailable("{}: {}", what, Trim(PQerrorMessage(conn_)));
  }
  ExecStatusType st = PQresultStatus(res);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY) {
    return Status::Ok();
  }
  const char* state_c = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  std::string state = state_c ? state_c : "";
  std::string msg = Trim(PQresultErrorMessage(res));
  if (msg.empty()) msg = Trim(PQerrorMessage(conn_));
  if (PQstatus(conn_) != CONNECTION_OK || state.empty() || IsRetryableSqlState(state)) {
    if (PQstatus(conn_) != CONNECTION_OK || state.starts_with("08") || state.starts_with("57P")) {
      broken_ = true;
    }
    return Status::Unavailable("{}: {}", what, msg);
  }
  if (state == "23505") return Status::Conflict("{}: {}", what, msg);
  if (state.starts_with("22") || state.starts_with("23")) {
    return Status::InvalidArgument("{}: {}", what, msg);
  }
  return Status::Internal("{}: {} (SQLSTATE {})", what, msg, state);
}

Result<PgResult> PgConnection::Exec(std::string_view sql) {
  std::string q(sql);
  PGresult* raw = PQexec(conn_, q.c_str());
  Status st = StatusFromResult(raw, "query failed");
  PgResult res(raw);
  if (!st.ok()) return st;
  return res;
}

Result<PgResult> PgConnection::ExecPrepared(const Statement& stmt,
                                            std::initializer_list<PgParam> params) {
  return ExecPrepared(stmt, std::vector<PgParam>(params));
}

Status PgConnection::Prepare(const Statement& stmt) {
  if (prepared_.contains(stmt.name)) return Status::Ok();
  PGresult* raw = PQprepare(conn_, stmt.name, stmt.sql, 0, nullptr);
  Status st = StatusFromResult(raw, fmt::format("preparing statement {}", stmt.name));
  PQclear(raw);
  if (st.ok()) prepared_.insert(stmt.name);
  return st;
}

Status PgConnection::EnterPipeline() {
  if (PQenterPipelineMode(conn_) != 1) {
    return Status::Internal("cannot enter pipeline mode: {}", Trim(PQerrorMessage(conn_)));
  }
  return Status::Ok();
}

Status PgConnection::SendSync() {
  if (PQpipelineSync(conn_) != 1) {
    broken_ = true;
    return Status::Unavailable("pipeline sync: {}", Trim(PQerrorMessage(conn_)));
  }
  return Status::Ok();
}

Status PgConnection::LeavePipeline() {
  if (PQexitPipelineMode(conn_) != 1) {
    broken_ = true;
    return Status::Internal("cannot leave pipeline mode: {}", Trim(PQerrorMessage(conn_)));
  }
  return Status::Ok();
}

Status PgConnection::PrepareAll(const std::vector<const Statement*>& stmts) {
  std::vector<const Statement*> todo;
  for (const Statement* stmt : stmts) {
    if (!prepared_.contains(stmt->name)) todo.push_back(stmt);
  }
  if (todo.empty()) return Status::Ok();
  KAGZI_RETURN_IF_ERROR(EnterPipeline());
  for (const Statement* stmt : todo) {
    if (PQsendPrepare(conn_, stmt->name, stmt->sql, 0, nullptr) != 1) {
      broken_ = true;
      return Status::Unavailable("preparing statement {}: {}", stmt->name,
                                 Trim(PQerrorMessage(conn_)));
    }
  }
  KAGZI_RETURN_IF_ERROR(SendSync());
  Status first_error;
  for (const Statement* stmt : todo) {
    auto res = TakePipelinedResult(*stmt);
    if (!res.ok()) return res.status();
    if (PQresultStatus(res->raw()) == PGRES_PIPELINE_ABORTED) continue;
    Status st = StatusFromResult(res->raw(), fmt::format("preparing statement {}", stmt->name));
    if (st.ok()) {
      prepared_.insert(stmt->name);
    } else if (first_error.ok()) {
      first_error = st;
    }
  }
  if (!TakePipelineSync()) {
    return Status::Unavailable("preparing statements: {}", Trim(PQerrorMessage(conn_)));
  }
  KAGZI_RETURN_IF_ERROR(LeavePipeline());
  return first_error;
}

namespace {

// The number of parameters of a statement: its highest $n.
int ParamCount(std::string_view sql) {
  int count = 0;
  for (std::size_t i = 0; i < sql.size(); ++i) {
    if (sql[i] != '$') continue;
    int n = 0;
    while (i + 1 < sql.size() && sql[i + 1] >= '0' && sql[i + 1] <= '9')
      n = n * 10 + (sql[++i] - '0');
    count = std::max(count, n);
  }
  return count;
}

}  // namespace

std::string ExplainExecuteSql(std::string_view name, int params) {
  std::string sql = fmt::format("EXPLAIN EXECUTE {}", name);
  for (int i = 1; i <= params; ++i) sql += i == 1 ? "(NULL" : ", NULL";
  return params > 0 ? sql + ")" : sql;
}

Status PgConnection::PlanAhead(const std::vector<const Statement*>& stmts,
                               const Statement* settings) {
  KAGZI_RETURN_IF_ERROR(PrepareAll(stmts));
  std::vector<std::string> explains;
  for (const Statement* stmt : stmts) {
    explains.push_back(ExplainExecuteSql(stmt->name, ParamCount(stmt->sql)));
  }
  std::vector<Unnamed> calls;
  if (settings != nullptr) calls.push_back({*settings, {}});
  for (std::size_t i = 0; i < stmts.size(); ++i) {
    calls.push_back({{stmts[i]->name, explains[i].c_str()}, {}});
  }
  return ExecUnnamed(calls).status();
}

Result<std::vector<PgResult>> PgConnection::ExecUnnamed(const std::vector<Unnamed>& calls) {
  KAGZI_RETURN_IF_ERROR(EnterPipeline());
  ParamArrays params;
  for (const Unnamed& call : calls) {
    params.Set(call.params);
    if (PQsendQueryParams(conn_, call.stmt.sql, params.count(), nullptr, params.values.data(),
                          params.lengths_or_null(), params.formats_or_null(), 0) != 1) {
      broken_ = true;
      return Status::Unavailable("statement {}: {}", call.stmt.name, Trim(PQerrorMessage(conn_)));
    }
  }
  KAGZI_RETURN_IF_ERROR(SendSync());
  std::vector<PgResult> results;
  Status first_error;
  for (const Unnamed& call : calls) {
    auto res = TakePipelinedResult(call.stmt);
    if (!res.ok()) return res.status();
    if (first_error.ok() && PQresultStatus(res->raw()) != PGRES_PIPELINE_ABORTED) {
      first_error = StatusFromResult(res->raw(), fmt::format("statement {}", call.stmt.name));
    }
    results.push_back(*res);
  }
  if (!TakePipelineSync()) {
    return Status::Unavailable("statement {}: no sync: {}", calls.back().stmt.name,
                               Trim(PQerrorMessage(conn_)));
  }
  KAGZI_RETURN_IF_ERROR(LeavePipeline());
  if (!first_error.ok()) return first_error;
  return results;
}

Result<std::vector<PgResult>> PgConnection::ExecTransaction(const std::vector<Call>& calls,
                                                            const Call* after) {
  std::vector<PgResult> results;
  results.reserve(calls.size());
  KAGZI_RETURN_IF_ERROR(ExecTransaction(
      calls, [&](std::size_t, const PgResult& r) { results.push_back(r); }, after));
  return results;
}

Status PgConnection::ExecTransaction(const std::vector<Call>& calls,
                                     const std::function<void(std::size_t, const PgResult&)>& each,
                                     const Call* after) {
  for (const auto& call : calls) KAGZI_RETURN_IF_ERROR(Prepare(*call.stmt));
  if (after != nullptr) KAGZI_RETURN_IF_ERROR(Prepare(*after->stmt));
  KAGZI_RETURN_IF_ERROR(EnterPipeline());
  // Between two Syncs the server runs the statements of a pipeline as one
  // implicit transaction: committed at the Sync, rolled back as a whole
  // (and the rest skipped) at the first error.
  ParamArrays params;
  auto send = [&](const Call& call) {
    params.Set(call.params);
    if (PQsendQueryPrepared(conn_, call.stmt->name, params.count(), params.values.data(),
                            params.lengths_or_null(), params.formats_or_null(), 0) != 1) {
      broken_ = true;
      return Status::Unavailable("statement {}: {}", call.stmt->name, Trim(PQerrorMessage(conn_)));
    }
    return Status::Ok();
  };
  for (const auto& call : calls) KAGZI_RETURN_IF_ERROR(send(call));
  KAGZI_RETURN_IF_ERROR(SendSync());
  if (after != nullptr) {
    KAGZI_RETURN_IF_ERROR(send(*after));
    KAGZI_RETURN_IF_ERROR(SendSync());
  }
  Status first_error;
  for (std::size_t i = 0; i < calls.size(); ++i) {
    auto res = TakePipelinedResult(*calls[i].stmt);
    if (!res.ok()) return res.status();
    if (PQresultStatus(res->raw()) != PGRES_PIPELINE_ABORTED && first_error.ok()) {
      first_error = StatusFromResult(res->raw(), fmt::format("statement {}", calls[i].stmt->name));
    }
    if (first_error.ok()) each(i, *res);
  }
  if (!TakePipelineSync()) {
    // No answer to the Sync: the commit's outcome is unknown.
    return Status::Unavailable("commit of a pipelined transaction: {}",
                               Trim(PQerrorMessage(conn_)));
  }
  if (after != nullptr) {
    // The transaction's outcome is known by now; whatever happens to
    // `after` is only logged (a broken connection is still marked, so
    // the pool replaces it).
    if (Status st = TakeAfterCommit(*after); !st.ok()) {
      Logger("pg")->warn("{} (after the commit; the transaction's outcome stands)", st.message());
      if (broken_) return first_error;
    }
  }
  KAGZI_RETURN_IF_ERROR(LeavePipeline());
  return first_error;
}

Result<PgResult> PgConnection::TakePipelinedResult(const Statement& stmt) {
  PGresult* raw = PQgetResult(conn_);
  if (raw == nullptr) {
    broken_ = true;
    return Status::Unavailable("statement {}: no result: {}", stmt.name,
                               Trim(PQerrorMessage(conn_)));
  }
  PgResult res(raw);
  // Each statement's results end with a NULL.
  if (PGresult* extra = PQgetResult(conn_); extra != nullptr) {
    PQclear(extra);
    broken_ = true;
    return Status::Unavailable("statement {}: unexpected extra result", stmt.name);
  }
  return res;
}

bool PgConnection::TakePipelineSync() {
  PGresult* sync = PQgetResult(conn_);
  const bool synced = sync != nullptr && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
  PQclear(sync);
  if (!synced) broken_ = true;
  return synced;
}

Status PgConnection::TakeAfterCommit(const Call& after) {
  auto res = TakePipelinedResult(*after.stmt);
  if (!res.ok()) return res.status();
  Status st = StatusFromResult(res->raw(), fmt::format("statement {}", after.stmt->name));
  if (!TakePipelineSync()) {
    return Status::Unavailable("statement {}: no sync: {}", after.stmt->name,
                               Trim(PQerrorMessage(conn_)));
  }
  return st;
}

Result<PgResult> PgConnection::ExecPrepared(const Statement& stmt,
                                            const std::vector<PgParam>& params) {
  KAGZI_RETURN_IF_ERROR(Prepare(stmt));
  ParamArrays arrays;
  arrays.Set(params);
  PGresult* raw = PQexecPrepared(conn_, stmt.name, arrays.count(), arrays.values.data(),
                                 arrays.lengths_or_null(), arrays.formats_or_null(), 0);
  Status st = StatusFromResult(raw, fmt::format("statement {}", stmt.name));
  PgResult res(raw);
  if (!st.ok()) return st;
  return res;
}

Result<PgResult> PgConnection::ExecUnprepared(const Statement& stmt,
                                              const std::vector<PgParam>& params) {
  // In one implicit transaction, after a setting that makes its plan a
  // custom one, for these values, whatever the session's plan_cache_mode
  // (force_generic_plan on a daemon's connections would plan an unnamed
  // statement without its values too).
  static const Statement kCustomPlan = {
      "custom_plan", "SELECT set_config('plan_cache_mode', 'force_custom_plan', true)"};
  auto results = ExecUnnamed({{kCustomPlan, {}}, {stmt, params}});
  if (!results.ok()) return results.status();
  return (*results)[1];
}

Status PgConnection::Listen(std::string_view channel) {
  // Channel names are our own constants, never user input; quote anyway.
  char* ident = PQescapeIdentifier(conn_, channel.data(), channel.size());
  if (ident == nullptr) return Status::Internal("cannot quote channel {}", channel);
  std::string sql = fmt::format("LISTEN {}", ident);
  PQfreemem(ident);
  auto r = Exec(sql);
  return r.ok() ? Status::Ok() : r.status();
}

Status PgConnection::ConsumeInput() {
  if (PQconsumeInput(conn_) == 0) {
    broken_ = true;
    return Status::Unavailable("connection lost: {}", Trim(PQerrorMessage(conn_)));
  }
  return Status::Ok();
}

std::vector<PgNotification> PgConnection::TakeNotifications() {
  std::vector<PgNotification> out;
  while (PGnotify* n = PQnotifies(conn_)) {
    out.push_back({n->relname ? n->relname : "", n->extra ? n->extra : ""});
    PQfreemem(n);
  }
  return out;
}

Result<std::vector<PgNotification>> PgConnection::WaitForNotifications(
    std::chrono::milliseconds timeout) {
  KAGZI_RETURN_IF_ERROR(ConsumeInput());
  auto ready = TakeNotifications();
  if (!ready.empty()) return ready;
  pollfd pfd{socket(), POLLIN, 0};
  int rc = ::poll(&pfd, 1, static_cast<int>(std::max<std::int64_t>(0, timeout.count())));
  if (rc < 0 && errno != EINTR) return Status::Internal("poll: {}", std::strerror(errno));
  if (rc > 0) KAGZI_RETURN_IF_ERROR(ConsumeInput());
  return TakeNotifications();
}

struct PgPool::State {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::unique_ptr<PgConnection>> idle;
  int open = 0;  // idle + leased
};

PgPool::PgPool(std::string url, std::string application_name, int size, Setup setup)
    : url_(std::move(url)),
      application_name_(std::move(application_name)),
      size_(size),
      setup_(std::move(setup)),
      state_(std::make_unique<State>()) {}

PgPool::~PgPool() = default;

PgPool::Lease::~Lease() {
  if (conn_) pool_->Release(std::move(conn_));
}

Result<PgPool::Lease> PgPool::Acquire() {
  {
    std::unique_lock lock(state_->mu);
    state_->cv.wait(lock, [&] { return !state_->idle.empty() || state_->open < size_; });
    if (!state_->idle.empty()) {
      auto conn = std::move(state_->idle.back());
      state_->idle.pop_back();
      return Lease(this, std::move(conn));
    }
    ++state_->open;  // reserve a slot, connect outside the lock
  }
  auto conn = Open();
  if (!conn.ok()) return conn.status();
  return Lease(this, std::move(conn).value());
}

Status PgPool::Warm(int count, const std::function<Status(PgConnection&)>& warm) {
  // Holding them all at once makes Acquire open the missing ones.
  std::vector<Lease> held;
  for (int i = 0; i < std::min(count, size_); ++i) {
    auto lease = Acquire();
    if (!lease.ok()) return lease.status();
    held.push_back(std::move(lease).value());
    KAGZI_RETURN_IF_ERROR(warm(*held.back()));
  }
  return Status::Ok();
}

Result<std::unique_ptr<PgConnection>> PgPool::Open() {
  auto conn = PgConnection::Connect(url_, application_name_);
  Status st = conn.ok() ? Status::Ok() : conn.status();
  if (st.ok() && setup_) st = setup_(**conn);
  if (!st.ok()) {
    std::lock_guard lock(state_->mu);
    --state_->open;
    state_->cv.notify_one();
    return st;
  }
  return conn;
}

void PgPool::Release(std::unique_ptr<PgConnection> conn) {
  std::lock_guard lock(state_->mu);
  if (conn->broken()) {
    --state_->open;
  } else {
    state_->idle.push_back(std::move(conn));
  }
  state_->cv.notify_one();
}

}  // namespace kagzi
