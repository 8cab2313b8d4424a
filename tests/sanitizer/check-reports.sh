#!/usr/bin/env bash
# Fails if a sanitized process of this ctest invocation wrote a report.
# Usage: check-reports.sh LOG_DIR (see tests/sanitizer/CMakeLists.txt).
set -uo pipefail
dir="${1:?usage: check-reports.sh LOG_DIR}"
shopt -s nullglob
reports=("$dir"/*)
files=()
for f in "${reports[@]}"; do
  [[ -f $f ]] && files+=("$f")
done
if ((${#files[@]} == 0)); then
  echo "no sanitizer reports in $dir"
  exit 0
fi
echo "FAIL: ${#files[@]} sanitizer report(s) in $dir:" >&2
for f in "${files[@]}"; do
  echo "==== $f" >&2
  head -c 20000 "$f" >&2
done
exit 1
