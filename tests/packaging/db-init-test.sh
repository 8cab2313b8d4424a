#!/usr/bin/env bash
# kagzi-db-init (packaging/kagzi-db-init) against the suite's private
# PostgreSQL (KAGZI_PG_DIR, KAGZI_PG_PORT; superuser postgres, trust auth):
# creates the role and database, is idempotent, grants membership, refuses
# bad names, and reports an unreachable server (or, with --if-running, notes
# it and succeeds). Roles and databases get names unique to this run and are
# dropped at the end.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
db_init="$here/../../packaging/kagzi-db-init"
: "${KAGZI_PG_DIR:?}" "${KAGZI_PG_PORT:?}"
export PGHOST="$KAGZI_PG_DIR/socket" PGPORT="$KAGZI_PG_PORT" PGUSER=postgres

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
q() { psql -X -At -d postgres -c "$1"; }

suffix="$$_$RANDOM"
role="kagzi_dbinit_$suffix"
db="kagzi_dbinit_db_$suffix"
member="kagzi_dbinit_member_$suffix"
cleanup() {
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "DROP ROLE IF EXISTS $member" \
    -c "DROP ROLE IF EXISTS $role" >/dev/null 2>&1 || true
}
trap cleanup EXIT

out="$("$db_init" --as-current-user --role "$role" --database "$db" 2>&1)" ||
  fail "first run: $out"
echo "$out"
[[ "$(q "SELECT rolcanlogin FROM pg_roles WHERE rolname = '$role'")" == t ]] ||
  fail "role $role missing or cannot log in"
[[ "$(q "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '$db'")" == "$role" ]] ||
  fail "database $db missing or not owned by $role"
echo "ok: role and database created"

out="$("$db_init" --as-current-user --role "$role" --database "$db" 2>&1)" ||
  fail "second run (must be idempotent): $out"
[[ $out != *ERROR* && $out != *NOTICE* ]] || fail "second run complained: $out"
echo "ok: running again changes nothing and succeeds"

out="$("$db_init" --as-current-user --role "$role" --database "$db" --grant "$member" 2>&1)" ||
  fail "--grant: $out"
"$db_init" --as-current-user --role "$role" --database "$db" --grant "$member" --quiet ||
  fail "--grant again"
[[ "$(q "SELECT pg_has_role('$member', '$role', 'MEMBER')")" == t ]] ||
  fail "$member is not a member of $role"
# A member can use what the role owns (the tables kagzid creates).
psql -X -q -d "$db" -c "CREATE TABLE t (x int)" -c "ALTER TABLE t OWNER TO $role" >/dev/null
[[ "$(PGUSER="$member" psql -X -q -At -d "$db" -c "INSERT INTO t VALUES (1) RETURNING x")" == 1 ]] ||
  fail "$member cannot write to a table owned by $role"
echo "ok: --grant lets another role use the database"

rc=0
"$db_init" --as-current-user --role "Not-Valid" >/dev/null 2>&1 || rc=$?
[[ $rc == 2 ]] || fail "a bad role name gave exit $rc, want 2"
echo "ok: bad names are refused (exit 2)"

rc=0
out="$(PGPORT=1 "$db_init" --as-current-user --role "$role" --database "$db" 2>&1)" || rc=$?
[[ $rc == 1 && $out == *"cannot connect"* ]] || fail "unreachable server: exit $rc: $out"
out="$(PGPORT=1 "$db_init" --as-current-user --if-running --role "$role" --database "$db" 2>&1)" ||
  fail "--if-running with no server must succeed: $out"
[[ $out == *"no local PostgreSQL server answers"* ]] || fail "--if-running said: $out"
echo "ok: an unreachable server is reported (exit 1), or noted with --if-running (exit 0)"
echo "db-init-test: PASS"
