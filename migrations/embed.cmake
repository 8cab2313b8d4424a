# Writes OUTPUT: a C++ source defining kagzi::core::kEmbeddedMigrations from
# the numbered SQL files given in SOURCES (a ;-separated list, sorted).
set(body "")
foreach(f IN LISTS SOURCES)
  get_filename_component(name "${f}" NAME)
  file(READ "${f}" sql)
  string(APPEND body "    {\"${name}\", R\"kagzi_sql(${sql})kagzi_sql\"},\n")
endforeach()
file(WRITE "${OUTPUT}.tmp"
"// Generated from migrations/*.sql by migrations/embed.cmake. Do not edit.
#include \"kagzi/core/migrations.h\"

namespace kagzi::core {
const std::vector<EmbeddedMigration>& EmbeddedMigrations() {
  static const std::vector<EmbeddedMigration> kMigrations = {
${body}  };
  return kMigrations;
}
}  // namespace kagzi::core
")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
