// Schema migrations: numbered SQL files from migrations/, embedded into the
// binaries at build time, applied in order at kagzid start.
//
// ApplyMigrations holds a session advisory lock while it works, so two
// daemons starting at once migrate once; each migration runs in its own
// transaction together with its row in kagzi_schema_migrations, so a crash
// leaves either all or none of it. Not thread-safe per connection.
#pragma once

#include <string_view>
#include <vector>

#include "kagzi/core/status.h"

namespace kagzi {
class PgConnection;
}

namespace kagzi::core {

struct EmbeddedMigration {
  std::string_view name;  // "0001_initial.sql"
  std::string_view sql;
};

// The migrations compiled into this binary, sorted by name.
const std::vector<EmbeddedMigration>& EmbeddedMigrations();

struct MigrationReport {
  int applied = 0;     // newly applied now
  int already = 0;     // found recorded
  std::string latest;  // name of the newest migration recorded
};

// Applies the not-yet-recorded migrations. Refuses (kPermanent) a database
// that records a migration this binary does not know (a newer kagzi
// migrated it) or whose recorded checksum differs.
Result<MigrationReport> ApplyMigrations(PgConnection& conn,
                                        const std::vector<EmbeddedMigration>& migrations);

}  // namespace kagzi::core
