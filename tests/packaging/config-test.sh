#!/usr/bin/env bash
# The default configuration file (packaging/kagzid.toml, the package's
# conffile) lists every key kagzid knows, commented out, with its real
# default: its "#key = value" lines, uncommented, are exactly what
# `kagzid --check-config` prints for an empty file, and kagzid accepts them.
#
# Usage: tests/packaging/config-test.sh KAGZID_BINARY
set -euo pipefail

kagzid="${1:?usage: config-test.sh KAGZID_BINARY}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
conf="$here/../../packaging/kagzid.toml"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Nothing is set: every key is a comment.
if grep -nE '^[[:space:]]*[a-z_]+[[:space:]]*=' "$conf"; then
  fail "kagzid.toml sets a key; the default file must only show defaults, commented"
fi
sed -n 's/^#\([a-z_][a-z_]* = .*\)$/\1/p' "$conf" >"$tmp/listed.toml"
# A clean environment: KAGZI_* variables would change the effective values.
env -i "$kagzid" -c /dev/null --check-config >"$tmp/defaults.out" || fail "kagzid --check-config failed"
grep -v '^#' "$tmp/defaults.out" >"$tmp/defaults.toml"
diff <(sort "$tmp/listed.toml") <(sort "$tmp/defaults.toml") >"$tmp/diff" ||
  fail "kagzid.toml's commented defaults differ from kagzid's (< file, > kagzid):
$(cat "$tmp/diff")"
echo "ok: kagzid.toml shows all $(wc -l <"$tmp/defaults.toml") keys with kagzid's defaults"

env -i "$kagzid" -c "$tmp/listed.toml" --check-config >"$tmp/check.out" ||
  fail "kagzid refuses the uncommented defaults: $(cat "$tmp/check.out")"
diff <(grep -v '^#' "$tmp/check.out") "$tmp/defaults.toml" >/dev/null ||
  fail "uncommented, the file does not give the defaults"
env -i "$kagzid" -c "$conf" --check-config >/dev/null || fail "kagzid refuses packaging/kagzid.toml"
echo "ok: kagzid accepts the file and the uncommented defaults"
echo "config-test: PASS"
