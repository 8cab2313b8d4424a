#!/usr/bin/env bash
# `make demo`: builds Kagzi, starts a private PostgreSQL and kagzid with the
# example plugins, runs the `hello` workflow through kagzictl and prints its
# output and its journal. Then it stops everything, unless KEEP=1, which
# leaves both running and prints how to use and stop them.
#
# Usage: scripts/demo.sh          the demo (KEEP=1 to leave it running)
#        scripts/demo.sh stop     stop what KEEP=1 left running (make demo-stop)
#
# Owns <repo>/.kagzi/demo-pg (PostgreSQL on a Unix socket, port 55432,
# database kagzi_demo), <repo>/.kagzi/demo-kagzid.pid and demo-kagzid.log.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$script_dir/.." && pwd)"
state_dir="$repo/.kagzi"
build_dir="$repo/build/dev"
kagzid="$build_dir/daemon/kagzid"
kagzictl="$build_dir/ctl/kagzictl"
pid_file="$state_dir/demo-kagzid.pid"
log_file="$state_dir/demo-kagzid.log"
config="$script_dir/demo-kagzid.toml"
database="kagzi_demo"

export KAGZI_PG_DIR="$repo/.kagzi/demo-pg"
export KAGZI_PG_PORT=55432
pg() { "$script_dir/pg.sh" "$@"; }

say() { printf '\n==> %s\n' "$*"; }
die() {
  echo "demo: error: $*" >&2
  exit 1
}

# The pid of the demo's kagzid if it is running, else nothing.
kagzid_pid() {
  local pid
  [[ -r "$pid_file" ]] || return 0
  pid="$(cat "$pid_file")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" == kagzid ]] || return 0
  echo "$pid"
}

stop_kagzid() {
  local pid i
  pid="$(kagzid_pid)"
  if [[ -n "$pid" ]]; then
    echo "demo: stopping kagzid (pid $pid) with SIGTERM" >&2
    kill -TERM "$pid" 2>/dev/null || true
    # The drain timeout is 30 s by default; give it a little more.
    for ((i = 0; i < 400; i++)); do
      [[ -e "/proc/$pid" ]] || break
      sleep 0.1
    done
    if [[ -e "/proc/$pid" ]]; then
      echo "demo: kagzid did not exit within 40 s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pid_file"
}

stop_all() {
  stop_kagzid
  if pg status >/dev/null 2>&1; then
    pg stop
  fi
}

if [[ "${1:-}" == stop ]]; then
  stop_all
  echo "demo: stopped"
  exit 0
fi
[[ $# -eq 0 ]] || die "usage: scripts/demo.sh [stop]   (KEEP=1 scripts/demo.sh leaves it running)"

finished=0
kagzid_started=0
on_exit() {
  local rc=$?
  if ((!finished)); then
    if ((kagzid_started)) && [[ -s "$log_file" ]]; then
      echo "demo: failed; last lines of $log_file:" >&2
      tail -n 25 "$log_file" >&2 || true
    fi
    stop_all || true
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "Installing missing build dependencies (scripts/bootstrap.sh)"
"$script_dir/bootstrap.sh"

say "Configuring and building (cmake --preset dev)"
cd "$repo"
cmake --preset dev
cmake --build --preset dev
[[ -x "$kagzid" && -x "$kagzictl" ]] || die "the build did not produce $kagzid and $kagzictl"

# A kagzid left over from an earlier KEEP=1 run would serve the old build.
stop_kagzid

say "Starting a private PostgreSQL in $KAGZI_PG_DIR"
pg start >/dev/null
if [[ -z "$(pg psql -XAtc "SELECT 1 FROM pg_database WHERE datname = '$database'")" ]]; then
  pg psql -Xq -c "CREATE DATABASE $database"
fi
KAGZI_DATABASE_URL="$(pg url "$database")"
KAGZI_PLUGIN_DIR="$build_dir/plugins"
export KAGZI_DATABASE_URL KAGZI_PLUGIN_DIR
echo "database: $KAGZI_DATABASE_URL"

say "Starting kagzid (log: $log_file)"
mkdir -p "$state_dir"
: >"$log_file"
"$kagzid" -c "$config" >>"$log_file" 2>&1 </dev/null &
echo $! >"$pid_file"
kagzid_started=1
echo "kagzid -c $config   (pid $!, plugins from $KAGZI_PLUGIN_DIR)"

# Ready when a live daemon has registered the `hello` workflow.
ready=0
for ((i = 0; i < 100; i++)); do
  [[ -n "$(kagzid_pid)" ]] || die "kagzid exited during start-up"
  if "$kagzictl" workflows --json 2>/dev/null | grep -q '"hello"'; then
    ready=1
    break
  fi
  sleep 0.2
done
((ready)) || die "kagzid did not register the hello workflow within 20 s"
"$kagzictl" workflows

say "Running the hello workflow"
echo "\$ kagzictl start hello --input '{\"name\":\"world\"}' --wait"
output="$("$kagzictl" start hello --input '{"name":"world"}' --wait)" ||
  die "kagzictl start --wait failed (exit $?): ${output:-no output}"
printf '%s\n' "$output"
run_id="$(head -n1 <<<"$output")"
[[ "$run_id" =~ ^[0-9a-fA-F-]{36}$ ]] || die "expected a run id on the first line, got '$run_id'"

echo
echo "\$ kagzictl show $run_id"
"$kagzictl" show "$run_id"

finished=1
if [[ "${KEEP:-0}" == 1 ]]; then
  say "Left running (KEEP=1)"
  cat <<EOF
kagzid (pid $(kagzid_pid)) logs to $log_file
PostgreSQL data and socket are in $KAGZI_PG_DIR

Use kagzictl against it:
  export KAGZI_DATABASE_URL='$KAGZI_DATABASE_URL'
  $kagzictl start hello --input '{"name":"you"}' --wait
  $kagzictl list
  $kagzictl workers
  psql "\$KAGZI_DATABASE_URL"        # the tables (kagzi_runs, kagzi_steps, ...)

Stop everything:
  make demo-stop
EOF
else
  say "Stopping kagzid and PostgreSQL (KEEP=1 leaves them running)"
  stop_all
fi
