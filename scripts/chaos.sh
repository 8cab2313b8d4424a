#!/usr/bin/env bash
# The chaos test, long version (docs/chaos.md): three kagzid processes against
# a private PostgreSQL run thousands of runs while daemons are SIGKILLed every
# couple of seconds, PostgreSQL is restarted (pg_ctl -m fast, -m immediate)
# and the daemons' backends are terminated; then it checks that every run
# finished exactly once, that no recorded step ran twice and that every
# daemon reconnected by itself, and prints the figures (table and JSON).
# ctest runs the short version (tests/chaos, label "chaos").
#
# Usage: scripts/chaos.sh [--runs N] [--seconds S] [--daemons N]
#                         [--kill-every MS] [--concurrency N] [--step-ms MS]
#                         [--sleep-ms MS] [--seed N] [--report FILE]
#                         [--executor threads|fibers]
#                         [--build-dir DIR] [--no-build]
#   --runs N         runs to start (default 5000)
#   --seconds S      window over which they are started; the faults fall in
#                    it (default 180)
#   --daemons N      kagzid processes (default 3)
#   --kill-every MS  mean interval between SIGKILLs (default 2000)
#   --concurrency N  per daemon (default 16)
#   --step-ms MS     duration of each step (default 100)
#   --sleep-ms MS    the workflow's durable sleep (default 1000)
#   --seed N         random seed (default: random, printed)
#   --report FILE    JSON figures (default <build>/chaos/chaos-report-<runs>.json)
#   --executor E     kagzid's executor: threads (default) or fibers, over two
#                    carrier threads per worker
#   --build-dir DIR  build tree (default build/dev, configured with the dev
#                    preset if needed)
#   --no-build       use the binaries already built
# Exit status: the test's (0 when every assertion held).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="$repo_root/build/dev"
build=1
runs=5000
seconds=180
daemons=3
kill_every=2000
concurrency=16
step_ms=100
sleep_ms=1000
seed=""
report=""
executor=""

die() {
  echo "chaos.sh: error: $*" >&2
  exit 2
}

need_value() {
  [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"
}

number() {
  [[ "$2" =~ ^[0-9]+$ ]] || die "$1 must be a non-negative integer, got '$2'"
}

while (($# > 0)); do
  case "$1" in
    --runs) need_value "$@"; number "$1" "$2"; runs="$2"; shift 2 ;;
    --seconds) need_value "$@"; number "$1" "$2"; seconds="$2"; shift 2 ;;
    --daemons) need_value "$@"; number "$1" "$2"; daemons="$2"; shift 2 ;;
    --kill-every) need_value "$@"; number "$1" "$2"; kill_every="$2"; shift 2 ;;
    --concurrency) need_value "$@"; number "$1" "$2"; concurrency="$2"; shift 2 ;;
    --step-ms) need_value "$@"; number "$1" "$2"; step_ms="$2"; shift 2 ;;
    --sleep-ms) need_value "$@"; number "$1" "$2"; sleep_ms="$2"; shift 2 ;;
    --seed) need_value "$@"; number "$1" "$2"; seed="$2"; shift 2 ;;
    --report) need_value "$@"; report="$2"; shift 2 ;;
    --executor)
      need_value "$@"
      [[ "$2" == threads || "$2" == fibers ]] || die "--executor must be threads or fibers, got '$2'"
      executor="$2"
      shift 2
      ;;
    --build-dir) need_value "$@"; build_dir="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ "$build_dir" == /* ]] || build_dir="$PWD/$build_dir"

if ((build)); then
  if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
    if [[ "$build_dir" == "$repo_root/build/dev" ]]; then
      (cd "$repo_root" && cmake --preset dev)
    else
      cmake -S "$repo_root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
    fi
  fi
  cmake --build "$build_dir" --target chaos_test kagzid kagzictl chaos
fi
test_binary="$build_dir/tests/chaos/chaos_test"
[[ -x "$test_binary" ]] || die "$test_binary is missing (build it, or drop --no-build)"

export KAGZI_CHAOS_RUNS="$runs"
export KAGZI_CHAOS_START_SECONDS="$seconds"
export KAGZI_CHAOS_DAEMONS="$daemons"
export KAGZI_CHAOS_KILL_EVERY_MS="$kill_every"
export KAGZI_CHAOS_CONCURRENCY="$concurrency"
export KAGZI_CHAOS_STEP_MS="$step_ms"
export KAGZI_CHAOS_SLEEP_MS="$sleep_ms"
[[ -z "$seed" ]] || export KAGZI_CHAOS_SEED="$seed"
[[ -z "$report" ]] || export KAGZI_CHAOS_REPORT="$report"
[[ -z "$executor" ]] || export KAGZI_TEST_EXECUTOR="$executor"
echo "chaos.sh: $runs runs over $seconds s, $daemons daemons, a kill every ~$kill_every ms," \
  "executor ${executor:-threads} ($test_binary)"
exec "$test_binary"
