// Migration runner. Holds a session-level advisory lock for the whole run so
// concurrent daemons serialize here; the second one finds everything
// recorded and applies nothing.
#include "kagzi/core/migrations.h"

#include <map>

#include "kagzi/core/pg.h"

namespace kagzi::core {
namespace {

// pg_advisory_lock key: "kagzi" in ASCII.
constexpr const char* kLockSql = "SELECT pg_advisory_lock(461195896425)";
constexpr const char* kUnlockSql = "SELECT pg_advisory_unlock(461195896425)";

const Statement kRecordMigration = {
    "kagzi_record_migration",
    "INSERT INTO kagzi_schema_migrations (name, checksum) VALUES ($1, $2)"};

// FNV-1a: a stable checksum that detects a migration edited after release.
std::string Checksum(std::string_view text) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return fmt::format("{:016x}", h);
}

Result<MigrationReport> ApplyLocked(PgConnection& conn,
                                    const std::vector<EmbeddedMigration>& migrations) {
  // Created only when missing: even CREATE TABLE IF NOT EXISTS needs the
  // CREATE privilege, which a least-privilege runtime role does not have
  // (docs/operations.md); it only reads the table. The advisory lock makes
  // check-then-create safe.
  auto exists = conn.Exec("SELECT to_regclass('kagzi_schema_migrations') IS NOT NULL");
  if (!exists.ok()) return exists.status();
  if (exists->rows() != 1 || !exists->GetBool(0, 0)) {
    auto created = conn.Exec(
        "CREATE TABLE IF NOT EXISTS kagzi_schema_migrations ("
        " name text PRIMARY KEY,"
        " checksum text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())");
    if (!created.ok()) return created.status();
  }
  auto recorded = conn.Exec("SELECT name, checksum FROM kagzi_schema_migrations ORDER BY name");
  if (!recorded.ok()) return recorded.status();
  std::map<std::string, std::string> done;
  for (int i = 0; i < recorded->rows(); ++i)
    done[recorded->GetString(i, 0)] = recorded->GetString(i, 1);

  MigrationReport report;
  std::map<std::string, const EmbeddedMigration*> known;
  for (const auto& m : migrations) known[std::string(m.name)] = &m;
  for (const auto& [name, sum] : done) {
    auto it = known.find(name);
    if (it == known.end()) {
      return Status::Permanent(
          "database schema has migration {} which this kagzi does not know: the database was "
          "migrated by a newer kagzi; upgrade this one",
          name);
    }
    if (Checksum(it->second->sql) != sum) {
      return Status::Permanent("migration {} differs from the one applied to the database", name);
    }
  }
  for (const auto& m : migrations) {
    std::string name(m.name);
    if (done.contains(name)) {
      ++report.already;
      report.latest = name;
      continue;
    }
    auto begin = conn.Exec("BEGIN");
    if (!begin.ok()) return begin.status();
    auto applied = conn.Exec(m.sql);
    if (!applied.ok()) {
      (void)conn.Exec("ROLLBACK");
      return applied.status().WithContext(fmt::format("applying migration {}", name));
    }
    auto rec = conn.ExecPrepared(kRecordMigration, {name, Checksum(m.sql)});
    if (!rec.ok()) {
      (void)conn.Exec("ROLLBACK");
      return rec.status();
    }
    auto commit = conn.Exec("COMMIT");
    if (!commit.ok())
      return commit.status().WithContext(fmt::format("committing migration {}", name));
    ++report.applied;
    report.latest = name;
  }
  return report;
}

}  // namespace

Result<MigrationReport> ApplyMigrations(PgConnection& conn,
                                        const std::vector<EmbeddedMigration>& migrations) {
  auto locked = conn.Exec(kLockSql);
  if (!locked.ok()) return locked.status().WithContext("taking the migration lock");
  auto report = ApplyLocked(conn, migrations);
  if (!conn.broken()) (void)conn.Exec(kUnlockSql);
  return report;
}

}  // namespace kagzi::core
