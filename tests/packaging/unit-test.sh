#!/usr/bin/env bash
# packaging/kagzid.service: the directives the service needs, a clean
# `systemd-analyze verify`, and a hardening score of 2.0 or better from
# `systemd-analyze security --offline=yes` (no systemd needs to be running).
#
# Usage: tests/packaging/unit-test.sh KAGZID_BINARY
set -euo pipefail

kagzid="$(realpath "${1:?usage: unit-test.sh KAGZID_BINARY}")"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
unit_src="$here/../../packaging/kagzid.service"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
command -v systemd-analyze >/dev/null || fail "systemd-analyze not found (apt install systemd)"

# verify wants ExecStart= to exist: point it at the built kagzid.
unit="$tmp/kagzid.service"
sed "s|^ExecStart=/usr/bin/kagzid |ExecStart=$kagzid |" "$unit_src" >"$unit"
grep -q "^ExecStart=$kagzid " "$unit" || fail "no 'ExecStart=/usr/bin/kagzid ...' line in the unit"

for directive in 'Type=notify' 'NotifyAccess=main' 'User=kagzi' 'Group=kagzi' \
  'Restart=on-failure' 'ExecReload=/bin/kill -HUP $MAINPID' 'NoNewPrivileges=yes' \
  'ProtectSystem=strict' 'ProtectHome=yes' 'PrivateTmp=yes' 'PrivateDevices=yes' \
  'CapabilityBoundingSet=' 'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' \
  'SystemCallFilter=@system-service' 'StateDirectory=kagzi' 'RuntimeDirectory=kagzi'; do
  grep -qxF -- "$directive" "$unit_src" || fail "kagzid.service lacks '$directive'"
done
echo "ok: the unit has every required directive"

# The daemon pings the watchdog at least every poll_interval (default 5s).
watchdog="$(sed -n 's/^WatchdogSec=\([0-9]*\)s$/\1/p' "$unit_src")"
[[ -n $watchdog ]] || fail "no WatchdogSec=<n>s in the unit"
((watchdog >= 3 * 5)) || fail "WatchdogSec=${watchdog}s is too close to the default poll_interval 5s"
echo "ok: WatchdogSec=${watchdog}s"

# Clean: exit 0 and not a word printed (a bad value is only a warning).
verify_clean() {
  local out
  out="$(systemd-analyze verify --man=no "$1" 2>&1)" && [[ -z $out ]] || {
    echo "$out"
    return 1
  }
}
out="$(verify_clean "$unit")" || fail "systemd-analyze verify: $out"
echo "ok: systemd-analyze verify passes"

# The check is not vacuous: broken copies fail it.
sed 's/^Type=notify$/Type=bogus/' "$unit" >"$tmp/broken.service"
! verify_clean "$tmp/broken.service" >/dev/null || fail "verify accepted Type=bogus"
sed "s|^ExecStart=$kagzid |ExecStart=/nonexistent/kagzid |" "$unit" >"$tmp/broken.service"
! verify_clean "$tmp/broken.service" >/dev/null || fail "verify accepted a missing ExecStart binary"

score_line="$(systemd-analyze security --offline=yes --no-pager "$unit" 2>&1 | tail -n 1)"
echo "$score_line"
score="$(sed -n 's/.*Overall exposure level for kagzid.service: \([0-9.]*\).*/\1/p' <<<"$score_line")"
[[ -n $score ]] || fail "no score from systemd-analyze security: $score_line"
awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || fail "exposure level $score is above 2.0"
echo "ok: exposure level $score <= 2.0"
echo "unit-test: PASS"
