#!/usr/bin/env bash
# The man pages (packaging/man/): they render without groff warnings, and
# they document what the binaries offer: every kagzictl command, every
# kagzid option and every configuration key of packaging/kagzid.toml.
#
# Usage: tests/packaging/man-test.sh KAGZID_BINARY KAGZICTL_BINARY
set -euo pipefail

kagzid="${1:?usage: man-test.sh KAGZID KAGZICTL}"
kagzictl="${2:?usage: man-test.sh KAGZID KAGZICTL}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
man_dir="$here/../../packaging/man"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
command -v groff >/dev/null || fail "groff not found (apt install groff-base)"

for page in "$man_dir"/*.[1-8]; do
  warnings="$(sed 's/@[A-Z_]*@/0/g' "$page" | groff -man -Tutf8 -ww -z 2>&1)"
  [[ -z $warnings ]] || fail "$(basename "$page"): groff warnings: $warnings"
  echo "ok: $(basename "$page") renders cleanly"
done

# roff escapes dashes: \- in the page is - in the text.
plain() { sed 's/\\-/-/g; s/\\f[BIRP]//g' "$1"; }

# Every command of kagzictl --help is a .B entry under COMMANDS.
commands="$(plain "$man_dir/kagzictl.1" | sed -n '/^\.SH COMMANDS/,/^\.SH /p')"
mapfile -t listed < <("$kagzictl" --help | awk '/^Subcommands:/ { s = 1; next } /^[^ ]/ { s = 0 } s && /^  [^ ]/ { print $1 }')
((${#listed[@]} > 0)) || fail "no commands in kagzictl --help"
for c in "${listed[@]}"; do
  grep -qE "^\.B $c( |$)" <<<"$commands" ||
    fail "kagzictl.1 does not document command '$c' (add it under COMMANDS in packaging/man/kagzictl.1)"
done
echo "ok: kagzictl.1 documents ${listed[*]}"

# Every long option of kagzid --help appears in kagzid.8.
kagzid_page="$(plain "$man_dir/kagzid.8")"
mapfile -t options < <("$kagzid" --help | grep -oE '^  (-[a-z],)?--[a-z-]+' | sed 's/.*--/--/')
((${#options[@]} > 0)) || fail "no options in kagzid --help"
for o in "${options[@]}"; do
  grep -qF -- "$o" <<<"$kagzid_page" || fail "kagzid.8 does not mention option $o"
done
echo "ok: kagzid.8 mentions ${options[*]}"

# Every key of the default config is a .B entry under CONFIGURATION.
config="$(sed -n '/^\.SH CONFIGURATION/,/^\.SH /p' <<<"$kagzid_page")"
mapfile -t keys < <(sed -n 's/^#\([a-z_]*\) = .*/\1/p' "$here/../../packaging/kagzid.toml")
((${#keys[@]} > 0)) || fail "no keys in packaging/kagzid.toml"
for k in "${keys[@]}"; do
  grep -qx "\.B $k" <<<"$config" || fail "kagzid.8 does not document config key $k"
done
echo "ok: kagzid.8 documents ${keys[*]}"
echo "man-test: PASS"
