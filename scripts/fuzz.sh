#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/, clang, ASan + UBSan) into
# build/fuzz and runs them for a fixed time each. See docs/fuzzing.md.
#
# Usage: scripts/fuzz.sh [TARGET|all] [SECONDS]  fuzz TARGET (default: all, one
#                                               after the other) for SECONDS each
#                                               (default 60); prints the figures
#        scripts/fuzz.sh build                  configure and build only
#        scripts/fuzz.sh merge TARGET           copy into tests/fuzz/corpus/TARGET
#                                               the inputs of the work corpus that
#                                               reach coverage the stored one lacks
#        scripts/fuzz.sh list                   the target names
# Env:   KAGZI_FUZZ_ARGS  extra libFuzzer flags (e.g. "-jobs=2 -workers=2")
#
# New inputs go to the work corpus build/fuzz/corpus/TARGET (the stored seed
# corpus tests/fuzz/corpus/TARGET is read, never written); crashes to
# build/fuzz/artifacts/TARGET/, the full log to build/fuzz/logs/TARGET.log.
# Exits 1 if any target found a crash, a leak or a broken property.
#
# Needs clang and libFuzzer (Debian: clang, libclang-rt-14-dev) besides the
# build dependencies of scripts/bootstrap.sh; installs the two with apt-get
# (through sudo when not root) when they are missing.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/.." && pwd)"
build_dir="$repo_root/build/fuzz"
targets=(json config ctl_args ctl_render plugin_descriptor)

die() {
  echo "fuzz.sh: $*" >&2
  exit 2
}

usage() {
  sed -n '5,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

is_target() {
  local t
  for t in "${targets[@]}"; do [[ "$t" == "$1" ]] && return 0; done
  return 1
}

# clang and the libFuzzer runtime, installed when missing.
ensure_toolchain() {
  local runtime=""
  if command -v clang >/dev/null && command -v clang++ >/dev/null; then
    runtime="$(clang --print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null || true)"
  fi
  if [[ -n "$runtime" && -f "$runtime" ]]; then return 0; fi
  echo "fuzz.sh: installing clang and libFuzzer (clang libclang-rt-14-dev)" >&2
  local sudo=()
  if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null || die "clang and libclang-rt-14-dev are missing and sudo is not available"
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get install -y --no-install-recommends clang libclang-rt-14-dev >&2
  runtime="$(clang --print-file-name=libclang_rt.fuzzer-x86_64.a)"
  [[ -f "$runtime" ]] || die "libFuzzer runtime not found after installing (looked for $runtime)"
}

build() {
  ensure_toolchain
  if [[ ! -f "$build_dir/build.ninja" ]]; then
    CC=clang CXX=clang++ cmake -S "$repo_root/tests/fuzz" -B "$build_dir" -G Ninja \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
  fi
  cmake --build "$build_dir" >&2
}

# One target for $2 seconds; prints one line of figures.
run_target() {
  local t="$1" seconds="$2"
  local work="$build_dir/corpus/$t" artifacts="$build_dir/artifacts/$t" log="$build_dir/logs/$t.log"
  mkdir -p "$work" "$artifacts" "$build_dir/logs"
  local args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=8192
    -print_final_stats=1 -artifact_prefix="$artifacts/")
  local dict="$repo_root/tests/fuzz/dict/$t.dict"
  [[ -f "$dict" ]] && args+=(-dict="$dict")
  # shellcheck disable=SC2206 # word splitting of the extra flags is wanted
  args+=(${KAGZI_FUZZ_ARGS:-})
  echo "fuzz.sh: $t for ${seconds}s (log: ${log#"$repo_root"/})" >&2
  local rc=0
  # ASan's leak check stays on: a leak is a finding too.
  (cd "$build_dir" && "./fuzz_$t" "${args[@]}" "$work" "$repo_root/tests/fuzz/corpus/$t") \
    >"$log" 2>&1 || rc=$?
  local execs rate cov ft corpus
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | cut -d' ' -f2)"
  ft="$(grep -o 'ft: [0-9]*' "$log" | tail -n1 | cut -d' ' -f2)"
  corpus="$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -n1 | cut -d' ' -f2)"
  local found
  found="$(find "$artifacts" -type f | wc -l)"
  printf '%-18s execs %-10s exec/s %-7s cov %-6s ft %-6s corpus %-12s findings %s\n' \
    "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corpus:-?}" "$found"
  if [[ $rc -ne 0 || $found -ne 0 ]]; then
    echo "fuzz.sh: $t: libFuzzer exited $rc; $found artifact(s) in ${artifacts#"$repo_root"/}" >&2
    grep -m5 -E 'ERROR|fuzz property broken|runtime error' "$log" >&2 || true
    return 1
  fi
}

merge() {
  local t="$1"
  local work="$build_dir/corpus/$t" stored="$repo_root/tests/fuzz/corpus/$t"
  [[ -d "$work" ]] || die "no work corpus for $t yet: run scripts/fuzz.sh $t first"
  (cd "$build_dir" && "./fuzz_$t" -merge=1 -max_len=8192 "$stored" "$work") \
    >"$build_dir/logs/$t.merge.log" 2>&1
  grep -E 'MERGE-OUTER: [0-9]+ new files' "$build_dir/logs/$t.merge.log" >&2 || true
}

main() {
  local what="${1:-all}" seconds="${2:-60}"
  case "$what" in
    -h | --help | help) usage ;;
    list)
      printf '%s\n' "${targets[@]}"
      return 0
      ;;
    build)
      build
      return 0
      ;;
    merge)
      if [[ $# -lt 2 ]] || ! is_target "$2"; then die "merge needs a target: ${targets[*]}"; fi
      build
      merge "$2"
      return 0
      ;;
  esac
  [[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] ||
    die "SECONDS must be a positive integer, not \"$seconds\""
  local run=()
  if [[ "$what" == all ]]; then
    run=("${targets[@]}")
  else
    is_target "$what" || die "unknown target \"$what\" (targets: ${targets[*]})"
    run=("$what")
  fi
  build
  local failed=0 t
  for t in "${run[@]}"; do run_target "$t" "$seconds" || failed=1; done
  return $failed
}

main "$@"
