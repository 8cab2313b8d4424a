#!/usr/bin/env bash
# Checks the built .deb and .rpm files without installing them: names,
# versions, dependencies, conffiles, maintainer scripts and file lists; then
# prints each .deb's file list (dpkg -c). Run by scripts/e2e-systemd.sh.
#
# Usage: tests/packaging/check-packages.sh PACKAGE_DIR VERSION
set -euo pipefail

dir="${1:?usage: check-packages.sh PACKAGE_DIR VERSION}"
version="${2:?usage: check-packages.sh PACKAGE_DIR VERSION}"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
ok() { echo "ok: $*"; }
has() { # has DESCRIPTION TEXT NEEDLE...
  local what="$1" text="$2" n
  shift 2
  for n in "$@"; do [[ $text == *"$n"* ]] || fail "$what lacks '$n': $text"; done
}

deb="$dir/kagzi_${version}-1_amd64.deb"
deb_dev="$dir/kagzi-dev_${version}-1_all.deb"
deb_ex="$dir/kagzi-examples_${version}-1_amd64.deb"
rpm="$dir/kagzi-${version}-1.x86_64.rpm"
rpm_dev="$dir/kagzi-devel-${version}-1.noarch.rpm"
rpm_ex="$dir/kagzi-examples-${version}-1.x86_64.rpm"
for f in "$deb" "$deb_dev" "$deb_ex" "$rpm" "$rpm_dev" "$rpm_ex"; do
  [[ -f $f ]] || fail "missing $f (have: $(ls "$dir"))"
done
ok "all six packages at version $version-1"

# --- deb: control fields ---------------------------------------------------
depends="$(dpkg-deb -f "$deb" Depends)"
has "kagzi Depends" "$depends" libpq5 libspdlog libfmt libsystemd0 libtomlplusplus libstdc++6 libc6
[[ "$(dpkg-deb -f "$deb" Recommends)" == *postgresql* ]] || fail "kagzi does not recommend postgresql"
[[ "$(dpkg-deb -f "$deb_dev" Depends)" == *rapidjson-dev* ]] || fail "kagzi-dev does not depend on rapidjson-dev"
[[ "$(dpkg-deb -f "$deb_dev" Architecture)" == all ]] || fail "kagzi-dev is not Architecture: all"
[[ "$(dpkg-deb -f "$deb_ex" Depends)" == *"kagzi (= ${version}-1)"* ]] ||
  fail "kagzi-examples does not depend on kagzi (= ${version}-1)"
ok "deb Depends: $depends"

ctl="$(mktemp -d)"
trap 'rm -rf "$ctl"' EXIT
dpkg-deb -e "$deb" "$ctl"
[[ "$(cat "$ctl/conffiles")" == /etc/kagzi/kagzid.toml ]] || fail "conffiles: $(cat "$ctl/conffiles")"
for s in postinst prerm postrm; do
  [[ -x $ctl/$s ]] || fail "no executable $s in kagzi.deb"
  sh -n "$ctl/$s" || fail "$s is not valid sh"
done
ok "kagzi.deb: conffile /etc/kagzi/kagzid.toml, postinst/prerm/postrm"

# --- deb: file lists -------------------------------------------------------
files() { dpkg-deb -c "$1" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }' | sort; }
expect_files() { # expect_files PACKAGE FILE...
  local pkg="$1" list
  shift
  list="$(files "$pkg")"
  for f in "$@"; do grep -qx -- "$f" <<<"$list" || fail "$(basename "$pkg") lacks $f"; done
}
expect_files "$deb" /usr/bin/kagzid /usr/bin/kagzictl /usr/sbin/kagzi-db-init \
  /etc/kagzi/kagzid.toml /usr/lib/systemd/system/kagzid.service /usr/lib/sysusers.d/kagzi.conf \
  /usr/lib/tmpfiles.d/kagzi.conf /usr/share/bash-completion/completions/kagzictl \
  /usr/share/man/man1/kagzictl.1.gz /usr/share/man/man8/kagzid.8.gz \
  /usr/share/man/man8/kagzi-db-init.8.gz /usr/share/doc/kagzi/operations.md
listing="$(dpkg-deb -c "$deb")"
grep -q ' \./usr/lib/kagzi/plugins/$' <<<"$listing" || fail "kagzi.deb lacks /usr/lib/kagzi/plugins/"
expect_files "$deb_dev" /usr/include/kagzi/plugin.h /usr/include/kagzi/kagzi.hpp \
  /usr/share/cmake/KagziPlugin/KagziPluginConfig.cmake /usr/share/pkgconfig/kagzi-plugin.pc \
  /usr/share/kagzi/kagzi-plugin.map /usr/share/man/man7/kagzi-plugin.7.gz \
  /usr/share/doc/kagzi-dev/plugin-guide.md
expect_files "$deb_ex" /usr/lib/kagzi/plugins/hello.so /usr/lib/kagzi/plugins/welcome_email.so \
  /usr/lib/kagzi/plugins/order_saga.so
# The conffile is the source tree's (tests/packaging/config-test.sh checks
# that it shows every key with its default).
conf="$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./etc/kagzi/kagzid.toml)"
[[ $conf == "$(cat "$(dirname "${BASH_SOURCE[0]}")/../../packaging/kagzid.toml")" ]] ||
  fail "the packaged /etc/kagzi/kagzid.toml is not packaging/kagzid.toml"
ok "deb file lists"

# --- rpm -------------------------------------------------------------------
command -v rpm >/dev/null || fail "rpm not found (apt install rpm)"
rq() { rpm -qp "$@" 2>/dev/null; }
[[ "$(rq --qf '%{NAME} %{VERSION}-%{RELEASE}' "$rpm")" == "kagzi $version-1" ]] || fail "kagzi.rpm name/version"
[[ "$(rq -c "$rpm")" == /etc/kagzi/kagzid.toml ]] || fail "kagzi.rpm config files: $(rq -c "$rpm")"
[[ "$(rq --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" | grep kagzid.toml)" == "cn /etc/kagzi/kagzid.toml" ]] ||
  fail "kagzid.toml is not %config(noreplace) in kagzi.rpm"
has "kagzi.rpm Requires" "$(rq -R "$rpm")" 'libpq.so.5()(64bit)' 'libspdlog.so' 'libfmt.so' 'libsystemd.so.0'
has "kagzi-devel.rpm Requires" "$(rq -R "$rpm_dev")" rapidjson-devel
has "kagzi-examples.rpm Requires" "$(rq -R "$rpm_ex")" "kagzi = $version"
scripts="$(rq --scripts "$rpm")"
has "kagzi.rpm scriptlets" "$scripts" "postinstall scriptlet" "preuninstall scriptlet" \
  "postuninstall scriptlet" "systemd-sysusers kagzi.conf" "kagzi-db-init --if-running"
# Same files (not directories) as the debs.
rpm_files() { rq --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$1" | awk '$1 !~ /^d/ { print $2 }' | sort; }
for pair in "$deb:$rpm" "$deb_dev:$rpm_dev" "$deb_ex:$rpm_ex"; do
  d="${pair%%:*}" r="${pair##*:}"
  difference="$(diff <(files "$d") <(rpm_files "$r"))" ||
    fail "$(basename "$r") and $(basename "$d") hold different files: $difference"
done
ok "rpm: names, %config(noreplace), Requires, scriptlets, same files as the debs"

echo
for f in "$deb" "$deb_dev" "$deb_ex"; do
  echo "dpkg -c $(basename "$f"):"
  dpkg -c "$f" | sed 's/^/  /'
done
echo "check-packages: PASS"
