#!/bin/bash
# The .rpm on a second, fresh boot of the same Debian 12 guest. Debian's rpm
# database is empty, so the rpm is installed with --nodeps after apt has
# installed the runtime libraries its Requires name (taken from the .deb's
# Depends, which name the same sonames). Its scriptlets (%post, %preun,
# %postun) run for real. Run by scripts/e2e-systemd.sh inside the container.
source /e2e/guest/lib.sh
version="$(cat /e2e/version)"
rpm_pkg=/e2e/packages/kagzi-"$version"-1.x86_64.rpm
rpm_examples=/e2e/packages/kagzi-examples-"$version"-1.x86_64.rpm

step "install the runtime libraries with apt, then rpm -i --nodeps"
check "rpm is available in the guest" command -v rpm
mapfile -t libs < <(dpkg-deb -f /e2e/packages/kagzi_"$version"-1_amd64.deb Depends |
  tr ',' '\n' | sed 's/(.*)//; s/|.*//; s/ //g' | grep -v '^$')
apt_install "${libs[@]}"
# rpm expects /var/lib/rpm (its database); Debian's rpm package creates it.
rpm -i --nodeps "$rpm_pkg" "$rpm_examples" 2>&1 | sed 's/^/    | /'
expect_eq "rpm -q" "$(rpm -q kagzi kagzi-examples | tr '\n' ' ')" \
  "kagzi-$version-1.x86_64 kagzi-examples-$version-1.x86_64 "
expect_eq "config file" "$(rpm -qc kagzi)" /etc/kagzi/kagzid.toml
check "%post made the kagzi user" id kagzi
expect_eq "%post made /var/lib/kagzi" "$(stat -c '%U:%G %a' /var/lib/kagzi)" "kagzi:kagzi 750"
expect_eq "%post created database kagzi" \
  "$(psql_postgres -c "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'kagzi'")" kagzi
expect_contains "kagzid --version" "$(kagzid --version)" "kagzid $version "

step "systemctl start kagzid; kagzictl start hello --wait"
systemctl start kagzid
expect_eq "kagzid is" "$(systemctl is-active kagzid)" active
out="$(kctl start hello --input '{"name":"rpm"}' --wait --wait-timeout 60)"
echo "$out" | sed 's/^/    | /'
expect_eq "hello's output" "$(tail -n1 <<<"$out")" '{"greeting":"Hello, rpm!"}'

step "rpm -e: %preun stops kagzid; the database and a changed config are kept"
echo 'log_level = "debug"' >>/etc/kagzi/kagzid.toml
rpm -e kagzi-examples kagzi 2>&1 | sed 's/^/    | /'
check "kagzid is no longer running" bash -c '! pgrep -x kagzid'
check "rpm kept the changed config as .rpmsave" grep -qx 'log_level = "debug"' /etc/kagzi/kagzid.toml.rpmsave
expect_eq "the database is kept" "$(psql_postgres -c "SELECT count(*) FROM pg_database WHERE datname = 'kagzi'")" 1
step_end
journey_passed "rpm journey"
