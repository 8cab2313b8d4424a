#!/usr/bin/env bash
# A throwaway, private PostgreSQL for development, the demo and the tests.
#
# It owns one directory, $KAGZI_PG_DIR (default <repo>/.kagzi/pg):
#   data/    the cluster (initdb --auth=trust, superuser "postgres", UTF8)
#   socket/  its Unix socket; no TCP listener at all (listen_addresses = '')
#   log/     postgresql.log
# The server keeps PostgreSQL's durable defaults (fsync, full_page_writes,
# synchronous_commit): the crash tests depend on them. Run as root, every
# PostgreSQL command runs as the `postgres` system user.
#
# Usage: scripts/pg.sh start          start if needed; prints the URL last
#        scripts/pg.sh stop [--purge] fast shutdown; --purge deletes the dir
#        scripts/pg.sh status         exit 0 if running
#        scripts/pg.sh url [DBNAME]   the libpq URI (DBNAME defaults to postgres)
#        scripts/pg.sh psql [ARGS]    psql against it (database postgres unless -d DB)
# Env:   KAGZI_PG_DIR (default <repo>/.kagzi/pg), KAGZI_PG_PORT (default 55432)
#
# start and stop are serialised by a lock, so concurrent callers are safe.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/.." && pwd)"

pg_dir="${KAGZI_PG_DIR:-$repo_root/.kagzi/pg}"
[[ "$pg_dir" == /* ]] || pg_dir="$PWD/$pg_dir"
pg_dir="${pg_dir%/}"
port="${KAGZI_PG_PORT:-55432}"
data_dir="$pg_dir/data"
socket_dir="$pg_dir/socket"
log_dir="$pg_dir/log"
log_file="$log_dir/postgresql.log"
marker="$pg_dir/.kagzi-pg"
lock_file="$pg_dir/.pgsh.lock"

die() {
  echo "pg.sh: error: $*" >&2
  exit 1
}

note() {
  echo "pg.sh: $*" >&2
}

if [[ ! "$port" =~ ^[1-9][0-9]{0,4}$ ]] || ((port > 65535)); then
  die "KAGZI_PG_PORT must be a port number (1-65535), got '$port'"
fi
[[ "$pg_dir" != "" && "$pg_dir" != "/" ]] || die "KAGZI_PG_DIR must not be /"
# These characters would need quoting in postgresql.conf or the URL.
[[ "$pg_dir" != *[\'\",\ \\\&\?\#%]* ]] ||
  die "KAGZI_PG_DIR must not contain quotes, commas, spaces or any of \\&?#%: '$pg_dir'"

as_root=0
((EUID == 0)) && as_root=1

# Runs a command as the PostgreSQL owner: `postgres` when we are root, else
# ourselves. The working directory is the instance dir, which that user can
# always enter (the caller's may not be). fd 9 (our lock) is closed so that a
# postmaster started from here does not hold the lock for its whole life.
as_pg() {
  if ((as_root)); then
    (cd "$pg_dir" && runuser -u postgres -- "$@" 9>&-)
  else
    (cd "$pg_dir" && "$@" 9>&-)
  fi
}

pg_bin=""
find_pg_bin() {
  local dir best=""
  for dir in /usr/lib/postgresql/*/bin; do
    [[ -x "$dir/pg_ctl" && -x "$dir/initdb" && -x "$dir/postgres" ]] || continue
    if [[ -z "$best" ]] || [[ "$(printf '%s\n%s\n' "$best" "$dir" | sort -V | tail -n1)" == "$dir" ]]; then
      best="$dir"
    fi
  done
  [[ -n "$best" ]] ||
    die "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (run scripts/bootstrap.sh)"
  pg_bin="$best"
}

url_encode() {
  local s="$1" out="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c="${s:i:1}"
    case "$c" in
      [A-Za-z0-9/._~-]) out+="$c" ;;
      *) out+="$(printf '%%%02X' "'$c")" ;;
    esac
  done
  printf '%s' "$out"
}

url_for() {
  local db="${1:-postgres}"
  printf 'postgresql://postgres@/%s?host=%s&port=%s\n' \
    "$(url_encode "$db")" "$(url_encode "$socket_dir")" "$port"
}

# The postmaster's pid if this instance is running, else nothing. A pid file
# alone proves nothing after a crash or a reboot: the pid must be alive, be a
# postgres process, and have this data directory as its working directory.
running_pid() {
  local pid comm cwd
  [[ -r "$data_dir/postmaster.pid" ]] || return 0
  pid="$(head -n1 "$data_dir/postmaster.pid" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  [[ -e "/proc/$pid" ]] || return 0
  comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
  [[ "$comm" == postgres || "$comm" == postmaster ]] || return 0
  cwd="$(readlink "/proc/$pid/cwd" 2>/dev/null || true)"
  [[ -n "$cwd" && "$cwd" -ef "$data_dir" ]] || return 0
  echo "$pid"
}

# Pids of postgres processes still working in our data dir although no
# postmaster is: backends orphaned by a crashed (kill -9) postmaster. They
# exit by themselves within moments; while they live, the shared memory block
# stays in use and a new postmaster refuses to start.
orphan_pids() {
  local p comm
  for p in /proc/[0-9]*; do
    comm="$(cat "$p/comm" 2>/dev/null || true)"
    [[ "$comm" == postgres ]] || continue
    [[ "$(readlink "$p/cwd" 2>/dev/null || true)" -ef "$data_dir" ]] || continue
    echo "${p#/proc/}"
  done
}

# After a crash: wait for orphaned backends to go (asking them to quit after a
# few seconds), then remove lock files whose pid is dead or was reused by an
# unrelated process, which PostgreSQL would otherwise take for a live server.
clear_stale_state() {
  local i orphans
  [[ -e "$data_dir/postmaster.pid" ]] || return 0
  for ((i = 0; i < 100; i++)); do
    mapfile -t orphans < <(orphan_pids)
    ((${#orphans[@]} == 0)) && break
    if ((i == 30)); then
      note "asking orphaned backends ${orphans[*]} to quit"
      kill -QUIT "${orphans[@]}" 2>/dev/null || true
    elif ((i == 80)); then
      kill -KILL "${orphans[@]}" 2>/dev/null || true
    fi
    sleep 0.1
  done
  mapfile -t orphans < <(orphan_pids)
  ((${#orphans[@]} == 0)) ||
    die "processes ${orphans[*]} of a crashed server still use $data_dir; stop them and retry"
  note "removing the stale postmaster.pid left by a server that is gone"
  rm -f "$data_dir/postmaster.pid" "$socket_dir"/.s.PGSQL.*
}

# The postgres user must be able to walk down to the instance directory.
check_traversable() {
  local d="$pg_dir"
  while [[ "$d" != "/" && -n "$d" ]]; do
    d="$(dirname "$d")"
    if ! runuser -u postgres -- test -x "$d" 2>/dev/null; then
      die "the postgres user cannot enter $d (needed to reach $pg_dir); run 'chmod o+x $d' or set KAGZI_PG_DIR to a path it can reach"
    fi
  done
}

check_socket_path() {
  local path="$socket_dir/.s.PGSQL.$port"
  ((${#path} <= 107)) ||
    die "socket path $path is ${#path} bytes, over the 107-byte Unix limit; set KAGZI_PG_DIR to a shorter path"
}

lock() {
  mkdir -p "$pg_dir"
  exec 9>>"$lock_file"
  flock -w 120 9 || die "another pg.sh has held $lock_file for 2 minutes; giving up"
}

write_conf() {
  local conf="$data_dir/kagzi.conf"
  local tmp="$conf.tmp"
  cat >"$tmp" <<EOF
# Written by scripts/pg.sh at every start; edits are overwritten.
listen_addresses = ''
port = $port
unix_socket_directories = '$socket_dir'
max_connections = 200
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  ((as_root)) && chown postgres:postgres "$tmp"
  mv -f "$tmp" "$conf"
  grep -qx "include = 'kagzi.conf'" "$data_dir/postgresql.conf" ||
    echo "include = 'kagzi.conf'" >>"$data_dir/postgresql.conf"
}

cmd_start() {
  local pid
  find_pg_bin
  check_socket_path
  lock
  if [[ -n "$(running_pid)" ]]; then
    url_for
    return 0
  fi
  mkdir -p "$socket_dir" "$log_dir"
  touch "$marker" "$log_file"
  if ((as_root)); then
    chown postgres:postgres "$pg_dir" "$socket_dir" "$log_dir" "$log_file" "$marker" "$lock_file"
    if [[ -e "$data_dir" && "$(stat -c %U "$data_dir")" != postgres ]]; then
      chown -R postgres:postgres "$data_dir"
    fi
    check_traversable
  fi
  chmod 0755 "$pg_dir" "$socket_dir"
  if [[ ! -s "$data_dir/PG_VERSION" ]]; then
    [[ ! -e "$data_dir" ]] || die "$data_dir exists but is not a cluster; run '$0 stop --purge'"
    note "initialising a cluster in $data_dir ($("$pg_bin/postgres" --version))"
    as_pg "$pg_bin/initdb" --auth=trust -U postgres -E UTF8 --no-locale --no-instructions \
      -D "$data_dir" >>"$log_file" 2>&1 ||
      die "initdb failed; see $log_file:$(printf '\n'; tail -n 20 "$log_file")"
  fi
  write_conf
  clear_stale_state
  if ! as_pg "$pg_bin/pg_ctl" -D "$data_dir" -l "$log_file" -w -t 60 start >/dev/null; then
    echo "pg.sh: error: PostgreSQL did not start; last lines of $log_file:" >&2
    tail -n 20 "$log_file" >&2 || true
    exit 1
  fi
  pid="$(running_pid)"
  note "PostgreSQL running (pid ${pid:-?}, socket $socket_dir, port $port)"
  url_for
}

cmd_stop() {
  local purge=0
  case "${1:-}" in
    "") ;;
    --purge) purge=1 ;;
    *) die "unknown option for stop: $1 (expected --purge)" ;;
  esac
  if [[ ! -d "$pg_dir" ]]; then
    note "nothing at $pg_dir"
    return 0
  fi
  if ((purge)) && [[ ! -e "$marker" ]] && [[ -n "$(ls -A "$pg_dir")" ]]; then
    die "$pg_dir was not made by pg.sh (no .kagzi-pg marker); not deleting it"
  fi
  find_pg_bin
  lock
  if [[ -n "$(running_pid)" ]]; then
    as_pg "$pg_bin/pg_ctl" -D "$data_dir" -m fast -w -t 60 stop >/dev/null ||
      die "pg_ctl stop failed; see $log_file"
    note "stopped PostgreSQL at $pg_dir"
  else
    note "PostgreSQL at $pg_dir is not running"
  fi
  if ((purge)); then
    rm -rf "$pg_dir"
    note "deleted $pg_dir"
  fi
}

cmd_status() {
  local pid
  pid="$(running_pid)"
  if [[ -n "$pid" ]]; then
    echo "running (pid $pid): $(url_for)"
    return 0
  fi
  echo "not running ($pg_dir)"
  return 3
}

# Connection settings go through the environment, so the caller may still
# name a database: `pg.sh psql -d kagzi_demo -c 'select 1'`.
cmd_psql() {
  [[ -n "$(running_pid)" ]] || die "PostgreSQL at $pg_dir is not running; run '$0 start'"
  PGHOST="$socket_dir" PGPORT="$port" PGUSER=postgres PGDATABASE="${PGDATABASE:-postgres}" \
    exec psql "$@"
}

usage() {
  cat >&2 <<EOF
usage: scripts/pg.sh start          start if needed; prints the URL last
       scripts/pg.sh stop [--purge] fast shutdown; --purge deletes the dir
       scripts/pg.sh status         exit 0 if running
       scripts/pg.sh url [DBNAME]   the libpq URI (DBNAME defaults to postgres)
       scripts/pg.sh psql [ARGS]    psql against it (database postgres unless -d DB)
env:   KAGZI_PG_DIR (now $pg_dir)
       KAGZI_PG_PORT (now $port)
EOF
  exit 2
}

main() {
  local cmd="${1:-}"
  (($# > 0)) && shift
  case "$cmd" in
    start) (($# == 0)) || usage; cmd_start ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status ;;
    url) (($# <= 1)) || usage; url_for "${1:-postgres}" ;;
    psql) cmd_psql "$@" ;;
    -h | --help | help) usage ;;
    *) usage ;;
  esac
}

main "$@"
