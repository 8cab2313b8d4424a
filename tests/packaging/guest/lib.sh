# Helpers for the journeys that run inside the booted Debian container
# (sourced by deb-journey.sh and rpm-journey.sh; /e2e is the read-only
# share the host prepared: packages/, upgrade/, sdk_plugin/, version).
set -eEuo pipefail
export DEBIAN_FRONTEND=noninteractive

step_name=""
step_start=0
checks=0 # checks passed, for the closing line
passed() {
  checks=$((checks + 1))
  echo "    ok: $*"
}
# The journey's last line; scripts/e2e-systemd.sh adds up the counts.
journey_passed() { echo "$1: PASS, $checks checks passed"; }
step() {
  step_end
  step_name="$*"
  step_start=$(date +%s%N)
  echo "--- $step_name"
}
step_end() {
  if [[ -n $step_name ]]; then
    local ms=$((($(date +%s%N) - step_start) / 1000000))
    printf -- '--- ok (%d.%03ds): %s\n' $((ms / 1000)) $((ms % 1000)) "$step_name"
  fi
  step_name=""
}

# Everything below fails the journey with a message naming what was expected.
fail() {
  echo "FAIL${step_name:+ [$step_name]}: $*" >&2
  echo "--- kagzid status and journal at the failure:" >&2
  systemctl status kagzid --no-pager -l >&2 2>&1 || true
  journalctl -u kagzid --no-pager -n 40 >&2 2>&1 || true
  exit 1
}
# Any other failing command fails the journey too, saying which.
trap 'fail "command failed (exit $?) at ${BASH_SOURCE[0]##*/} line $LINENO: $BASH_COMMAND"' ERR

check() { # check DESCRIPTION COMMAND...
  local what="$1"
  shift
  "$@" || fail "$what (command: $*)"
  passed "$what"
}
expect_eq() { # expect_eq DESCRIPTION ACTUAL EXPECTED
  [[ $2 == "$3" ]] || fail "$1: got '$2', want '$3'"
  passed "$1 = $3"
}
expect_contains() { # expect_contains DESCRIPTION TEXT NEEDLE
  [[ $2 == *"$3"* ]] || fail "$1: '$3' not in: $2"
  passed "$1 contains '$3'"
}
expect_not_contains() {
  [[ $2 != *"$3"* ]] || fail "$1: '$3' unexpectedly in: $2"
  passed "$1 lacks '$3'"
}
# wait_for DESCRIPTION SECONDS COMMAND...: poll every 0.2 s.
wait_for() {
  local what="$1" secs="$2"
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after ${secs}s waiting for: $what"
    sleep 0.2
  done
  passed "$what"
}

apt_install() {
  # The cached package lists may be older than the mirror: refresh once on failure.
  if ! apt-get install -y -q "$@" >/tmp/apt.log 2>&1; then
    echo "    apt-get install failed; refreshing the package lists and retrying"
    apt-get update -q >/tmp/apt-update.log 2>&1 || {
      cat /tmp/apt-update.log
      fail "apt-get update"
    }
    apt-get install -y -q "$@" >/tmp/apt.log 2>&1 || {
      cat /tmp/apt.log
      fail "apt-get install $*"
    }
  fi
  grep -E '^(Setting up|Unpacking|kagzi|Get:)' /tmp/apt.log | sed 's/^/    /' || true
}

# kagzictl as the kagzi user: the default database_url uses peer auth.
kctl() { runuser -u kagzi -- kagzictl "$@"; }

# The status of a run (PENDING, RUNNING, SLEEPING, COMPLETED, ...).
run_status() { kctl status --json "$1" | jq -r .status; }
run_is() { [[ "$(run_status "$1")" == "$2" ]]; }

# psql as the postgres superuser.
psql_postgres() { runuser -u postgres -- psql -X -At "$@"; }

main_pid() { systemctl show -p MainPID --value kagzid; }

# Whether live daemons have loaded WORKFLOW at VERSION.
workflow_loaded() {
  kctl workflows --json |
    jq -e --arg w "$1" --argjson v "$2" '.workflows[] | select(.workflow == $w and .version == $v)'
}
