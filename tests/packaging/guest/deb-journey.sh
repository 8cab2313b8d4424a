#!/bin/bash
# The user's journey with the .deb, inside a freshly booted Debian 12 whose
# PID 1 is systemd and which runs PostgreSQL 15 (the default cluster, started
# by its own unit). Run by scripts/e2e-systemd.sh as root in the container;
# /e2e is the read-only share (packages/, upgrade/, sdk_plugin/, version).
source /e2e/guest/lib.sh
version="$(cat /e2e/version)"
upgrade_version="$(cat /e2e/upgrade-version)"

step "install kagzi and kagzi-examples with apt (dependencies from the mirror)"
check "the runtime libraries are not installed yet" bash -c '! dpkg -s libspdlog1.10 >/dev/null 2>&1'
apt_install /e2e/packages/kagzi_"$version"-1_amd64.deb /e2e/packages/kagzi-examples_"$version"-1_amd64.deb
for lib in libpq5 libfmt9 libspdlog1.10 libtomlplusplus3; do
  check "apt pulled in $lib" dpkg -s "$lib" >/dev/null
done
expect_eq "package version" "$(dpkg-query -W -f='${Version}' kagzi)" "$version-1"
expect_contains "kagzid --version (agrees with the package)" "$(kagzid --version)" "kagzid $version "
check "kagzi user and group exist" id kagzi
expect_eq "kagzi's shell" "$(getent passwd kagzi | cut -d: -f7)" /usr/sbin/nologin
expect_eq "/var/lib/kagzi owner and mode" "$(stat -c '%U:%G %a' /var/lib/kagzi)" "kagzi:kagzi 750"
expect_contains "conffiles" "$(dpkg-query -W -f='${Conffiles}' kagzi)" /etc/kagzi/kagzid.toml
expect_eq "database kagzi owner (created by postinst)" \
  "$(psql_postgres -c "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'kagzi'")" kagzi
expect_eq "unit state after install (not enabled, not started)" \
  "$(systemctl is-enabled kagzid || true) $(systemctl is-active kagzid || true)" "disabled inactive"
out="$(systemd-analyze verify kagzid.service 2>&1)" || fail "systemd-analyze verify: $out"
[[ -z $out ]] || fail "systemd-analyze verify warned: $out"
passed "systemd-analyze verify kagzid.service (with its man pages installed)"
echo "    $(systemd-analyze security kagzid.service --no-pager | tail -n 1)"
out="$(bash -c 'source /usr/share/bash-completion/completions/kagzictl
  COMP_WORDS=(kagzictl st); COMP_CWORD=1; _kagzictl; echo "${COMPREPLY[*]}"')"
expect_eq "bash completion of 'kagzictl st'" "$out" "start status"
for page in kagzid.8 kagzictl.1 kagzi-db-init.8; do
  expect_contains "man ${page%.*} (section ${page##*.})" "$(MANWIDTH=80 man "${page##*.}" "${page%.*}" 2>&1 | head -n 4)" "NAME"
done

step "systemctl start kagzid (Type=notify: returns once migrated and loaded)"
systemctl start kagzid
expect_eq "kagzid is" "$(systemctl is-active kagzid)" active
expect_eq "kagzid runs as" "$(ps -o user= -p "$(main_pid)")" kagzi
loaded="$(kctl workflows --json | jq '[.workflows[] | select(.daemons | length > 0)] | length')"
((loaded >= 2)) || fail "kagzictl workflows lists $loaded loaded workflow(s), want hello, welcome_email, ..."
wait_for "STATUS= shows the $loaded loaded workflows" 5 \
  bash -c "systemctl show -p StatusText --value kagzid | grep -q '$loaded workflow(s) loaded'"
expect_contains "systemctl status" "$(systemctl status kagzid --no-pager)" "workflow(s) loaded"

step "kagzictl start hello --wait"
out="$(kctl start hello --input '{"name":"e2e"}' --wait --wait-timeout 60)"
echo "$out" | sed 's/^/    | /'
hello_id="$(head -n1 <<<"$out")"
expect_eq "hello's output" "$(tail -n1 <<<"$out")" '{"greeting":"Hello, e2e!"}'
check "kagzi-db-init --grant root lets root use kagzictl" kagzi-db-init --grant root --quiet
expect_eq "kagzictl as root: status" "$(kagzictl status --json "$hello_id" | jq -r .status)" COMPLETED

step "build plugins out of tree with only kagzi-dev (CMake package and pkg-config)"
apt_install /e2e/packages/kagzi-dev_"$version"-1_all.deb
check "apt pulled in rapidjson-dev (kagzi.hpp needs it)" dpkg -s rapidjson-dev >/dev/null
rm -rf /tmp/myflows && cp -r /e2e/sdk_plugin /tmp/myflows
cmake -S /tmp/myflows -B /tmp/myflows/build -DGREET_VERSION=1 >/tmp/myflows.log 2>&1 ||
  fail "cmake configure: $(cat /tmp/myflows.log)"
cmake --build /tmp/myflows/build >>/tmp/myflows.log 2>&1 || fail "cmake build: $(cat /tmp/myflows.log)"
expect_contains "CMake found" "$(grep KagziPlugin_DIR /tmp/myflows/build/CMakeCache.txt)" \
  /usr/share/cmake/KagziPlugin
# shellcheck disable=SC2046 # pkg-config prints words
c++ -std=c++20 -O2 -DGREET_VERSION=2 /tmp/myflows/greet_later.cc \
  $(pkg-config --cflags --libs kagzi-plugin) -o /tmp/myflows/greet_later-2.so ||
  fail "c++ with pkg-config"
for so in /tmp/myflows/build/greet_later.so /tmp/myflows/greet_later-2.so; do
  expect_eq "symbols exported by $(basename "$so")" \
    "$(nm -D --defined-only "$so" | awk '{print $NF}' | sort -u | tr '\n' ' ')" "kagzi_plugin_entry "
done

# install_plugin SRC NAME: the safe way (write beside, rename into place).
install_plugin() {
  install -m 0644 -o root -g root "$1" "/usr/lib/kagzi/plugins/.$2.tmp"
  mv "/usr/lib/kagzi/plugins/.$2.tmp" "/usr/lib/kagzi/plugins/$2"
}

step "drop a new plugin in, systemctl reload kagzid, run it"
pid="$(main_pid)"
install_plugin /tmp/myflows/build/greet_later.so greet_later-1.so
systemctl reload kagzid
wait_for "greet_later v1 is loaded after the reload" 10 workflow_loaded greet_later 1
expect_eq "same process after the reload" "$(main_pid)" "$pid"
out="$(kctl start greet_later --input '{"name":"ada"}' --wait --wait-timeout 60 | tail -n1)"
expect_eq "greet_later v1 output" "$(jq -c . <<<"$out")" '{"greeting":"v1: hello, user-ada","version":1}'
out="$(kctl start net_check --input '{"host":"localhost","port":"5432"}' --wait --wait-timeout 60 | tail -n1)"
expect_eq "a plugin's network call from inside the sandbox" "$(jq -c . <<<"$out")" \
  '{"resolved":true,"connected":true}'

step "a new version while a run of the old one sleeps: the old run keeps its code"
old_id="$(kctl start greet_later --input '{"name":"old","sleep_ms":4000}')"
wait_for "run $old_id of v1 is parked" 20 run_is "$old_id" SLEEPING
install_plugin /tmp/myflows/greet_later-2.so greet_later-2.so
systemctl reload kagzid
wait_for "greet_later v2 is loaded" 10 workflow_loaded greet_later 2
out="$(kctl start greet_later --input '{"name":"new"}' --wait --wait-timeout 60 | tail -n1)"
expect_eq "a new run takes v2" "$(jq -c . <<<"$out")" '{"greeting":"v2: hello, user-new","version":2}'
out="$(kctl wait "$old_id" --timeout 60)"
expect_eq "the old run finished on v1" "$(jq -c . <<<"$out")" '{"greeting":"v1: hello, user-old","version":1}'

step "systemctl restart kagzid while a run sleeps: the run still completes"
email_id="$(kctl start welcome_email --input '{"email":"a@b.c","name":"A","sleep_ms":3000}')"
wait_for "run $email_id is parked in its sleep" 20 run_is "$email_id" SLEEPING
pid="$(main_pid)"
systemctl restart kagzid
expect_eq "kagzid is" "$(systemctl is-active kagzid)" active
[[ "$(main_pid)" != "$pid" ]] || fail "restart did not replace the process"
passed "a new kagzid process ($pid -> $(main_pid))"
out="$(kctl wait "$email_id" --timeout 60)"
expect_eq "welcome_email output" "$(jq -c '{onboarded, email}' <<<"$out")" '{"onboarded":true,"email":"a@b.c"}'
expect_eq "create-user ran once (recorded before the restart)" \
  "$(kctl show --json "$email_id" | jq -c '[.steps[] | select(.step_id == "create-user") | .attempts]')" "[1]"

step "the database is down: systemctl start fails, naming database_url"
systemctl stop kagzid
systemctl stop postgresql
mkdir -p /run/systemd/system/kagzid.service.d
printf '[Service]\nTimeoutStartSec=6s\nRestart=no\n' >/run/systemd/system/kagzid.service.d/e2e-timeout.conf
systemctl daemon-reload
systemctl start --no-block kagzid
wait_for "STATUS= says it waits for the database" 10 \
  bash -c 'systemctl show -p StatusText --value kagzid | grep -q "waiting for the database (database_url)"'
expect_contains "systemctl status while waiting" "$(systemctl status kagzid --no-pager -l || true)" \
  "waiting for the database (database_url)"
rc=0
systemctl start kagzid 2>/tmp/start.err || rc=$?
((rc != 0)) || fail "systemctl start succeeded without a database"
passed "systemctl start failed (exit $rc): $(head -n1 /tmp/start.err)"
expect_contains "systemctl status after the failure" "$(systemctl status kagzid --no-pager -l || true)" \
  "database_url"
rm /run/systemd/system/kagzid.service.d/e2e-timeout.conf
systemctl daemon-reload
systemctl reset-failed kagzid || true
systemctl start postgresql
systemctl start kagzid
expect_eq "kagzid once PostgreSQL is back" "$(systemctl is-active kagzid)" active

step "a bad configuration: start fails at once, naming the key, and is not retried"
cp /etc/kagzi/kagzid.toml /tmp/kagzid.toml.good
echo 'concurrency = 0' >>/etc/kagzi/kagzid.toml
systemctl stop kagzid
rc=0
systemctl start kagzid 2>/dev/null || rc=$?
((rc != 0)) || fail "systemctl start succeeded with concurrency = 0"
sleep 3 # longer than RestartSec=2s
expect_eq "state and restarts" "$(systemctl show -p ActiveState,NRestarts,ExecMainStatus kagzid | sort | tr '\n' ' ')" \
  "ActiveState=failed ExecMainStatus=2 NRestarts=0 "
expect_contains "systemctl status" "$(systemctl status kagzid --no-pager -l || true)" "concurrency"
cp /tmp/kagzid.toml.good /etc/kagzi/kagzid.toml
systemctl reset-failed kagzid
systemctl start kagzid
expect_eq "kagzid with the config fixed" "$(systemctl is-active kagzid)" active

step "the watchdog restarts a wedged kagzid"
printf '[Service]\nWatchdogSec=3s\nTimeoutAbortSec=2s\nEnvironment=KAGZI_POLL_INTERVAL=500ms\n' \
  >/run/systemd/system/kagzid.service.d/e2e-watchdog.conf
systemctl daemon-reload
systemctl restart kagzid
sleep 4 # longer than WatchdogSec: a healthy daemon is not killed
expect_eq "restarts of a healthy kagzid" "$(systemctl show -p NRestarts --value kagzid)" 0
pid="$(main_pid)"
kill -STOP "$pid"
wait_for "systemd killed the wedged kagzid and started a new one" 20 \
  bash -c "[[ \$(systemctl show -p NRestarts --value kagzid) == 1 && \$(systemctl is-active kagzid) == active ]]"
check "the journal says why" bash -c "journalctl -u kagzid --no-pager | grep -q \"Failed with result 'watchdog'\""
rm /run/systemd/system/kagzid.service.d/e2e-watchdog.conf
systemctl daemon-reload
systemctl restart kagzid

step "the journal has the runs' lines with their fields"
json="$(journalctl -u kagzid -o json --no-pager KAGZI_RUN_ID="$hello_id")"
expect_contains "entries of run $hello_id" "$(jq -r .MESSAGE <<<"$json")" "completed"
expect_eq "their workflow" "$(jq -r .KAGZI_WORKFLOW <<<"$json" | sort -u)" hello
expect_eq "their identifier" "$(jq -r .SYSLOG_IDENTIFIER <<<"$json" | sort -u)" kagzid
json="$(journalctl -u kagzid -o json --no-pager KAGZI_RUN_ID="$email_id" KAGZI_STEP=send-email)"
expect_contains "run $email_id, step send-email" "$(jq -r .MESSAGE <<<"$json")" "sent welcome email"
expect_eq "its subsystem" "$(jq -r .KAGZI_SUBSYSTEM <<<"$json" | sort -u)" workflow
expect_eq "its workflow and version" "$(jq -r '"\(.KAGZI_WORKFLOW) v\(.KAGZI_WORKFLOW_VERSION)"' <<<"$json" | sort -u)" \
  "welcome_email v1"
journalctl -u kagzid -o json --no-pager KAGZI_RUN_ID="$email_id" |
  jq -r '"    | \(.KAGZI_SUBSYSTEM) \(.KAGZI_STEP // "-") \(.MESSAGE)"' | head -n 8

step "systemctl stop kagzid exits cleanly"
systemctl stop kagzid
expect_eq "state, result, exit status" \
  "$(systemctl show -p ActiveState,Result,ExecMainStatus kagzid | sort | tr '\n' ' ')" \
  "ActiveState=inactive ExecMainStatus=0 Result=success "
last="$(journalctl -u kagzid --no-pager -n 6)"
expect_contains "the journal" "$last" "[kagzid] stopped"
expect_contains "the journal" "$last" "kagzid.service: Deactivated successfully"

step "upgrade to $upgrade_version keeps the configuration and the database"
echo 'concurrency = 4' >>/etc/kagzi/kagzid.toml
systemctl start kagzid
pid="$(main_pid)"
runs_before="$(kctl list --json --limit 1000 | jq '.runs | length')"
apt_install /e2e/upgrade/kagzi_"$upgrade_version"-1_amd64.deb /e2e/upgrade/kagzi-examples_"$upgrade_version"-1_amd64.deb
expect_eq "package version" "$(dpkg-query -W -f='${Version}' kagzi)" "$upgrade_version-1"
check "the local config change survived" grep -qx 'concurrency = 4' /etc/kagzi/kagzid.toml
check "no .dpkg-dist/.dpkg-old left (the conffile was kept silently)" \
  bash -c '! ls /etc/kagzi/*.dpkg-* 2>/dev/null'
expect_eq "kagzid is" "$(systemctl is-active kagzid)" active
[[ "$(main_pid)" != "$pid" ]] || fail "the upgrade did not restart the running kagzid"
passed "the upgrade restarted kagzid ($pid -> $(main_pid))"
expect_eq "runs kept" "$(kctl list --json --limit 1000 | jq '.runs | length')" "$runs_before"
expect_eq "hello's run from before" "$(kctl status --json "$hello_id" | jq -r .status)" COMPLETED
# kagzid is a supervisor whose workers split its concurrency; the workers of
# an instance that just stopped may still be listed until their heartbeat
# ages out, so add up only the workers of the current main process.
current_concurrency() {
  local main total=0 pid conc
  main="$(main_pid)"
  while read -r pid conc; do
    [[ -r "/proc/$pid/stat" ]] || continue
    [[ "$(awk '{print $4}' "/proc/$pid/stat")" == "$main" ]] && total=$((total + conc))
  done < <(kctl workers --json | jq -r '.workers[] | select(.alive) | "\(.pid) \(.concurrency)"')
  echo "$total"
}
expect_eq "the daemon uses the kept config (its workers' concurrency adds up to it)" \
  "$(current_concurrency)" 4
out="$(kctl start hello --input '{"name":"after upgrade"}' --wait --wait-timeout 60 | tail -n1)"
expect_eq "hello after the upgrade" "$out" '{"greeting":"Hello, after upgrade!"}'
runs_before="$(kctl list --json --limit 1000 | jq '.runs | length')"

step "apt remove stops the service and keeps data and config; purge removes config"
apt-get remove -y -q kagzi >/tmp/apt.log 2>&1 || fail "apt-get remove: $(cat /tmp/apt.log)"
expect_eq "package state" "$(dpkg-query -W -f='${db:Status-Abbrev}' kagzi)" "rc "
check "kagzid is no longer running" bash -c '! pgrep -x kagzid'
expect_eq "unit" "$(systemctl is-active kagzid || true)" inactive
check "the config is kept" grep -qx 'concurrency = 4' /etc/kagzi/kagzid.toml
expect_eq "runs kept in the database" \
  "$(runuser -u postgres -- psql -X -At -d kagzi -c 'SELECT count(*) FROM kagzi_runs')" "$runs_before"
check "the kagzi user is kept" id kagzi
apt-get purge -y -q kagzi >/tmp/apt.log 2>&1 || fail "apt-get purge: $(cat /tmp/apt.log)"
check "purge removed /etc/kagzi" test ! -e /etc/kagzi
state="$(dpkg-query -W -f='${db:Status-Abbrev}' kagzi 2>/dev/null || true)"
[[ -z $state || $state == "un " ]] || fail "kagzi is still known to dpkg after purge: '$state'"
passed "dpkg no longer knows kagzi"
expect_eq "the database is kept (dropping it is the operator's call)" \
  "$(psql_postgres -c "SELECT count(*) FROM pg_database WHERE datname = 'kagzi'")" 1
step_end
journey_passed "deb journey"
