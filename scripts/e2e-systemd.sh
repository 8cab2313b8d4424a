#!/usr/bin/env bash
# The packaged user journey under a real systemd: build the deb and rpm
# packages, boot a clean Debian 12 with systemd as PID 1 (systemd-nspawn),
# and run tests/packaging/guest/*.sh inside it:
#   boot 1  apt install the .deb (pulling its dependencies from the mirror),
#           PostgreSQL access, systemctl start, kagzictl start hello --wait,
#           a plugin built with kagzi-dev (CMake and pkg-config) dropped in and
#           loaded by systemctl reload, a new workflow version while a run of
#           the old one sleeps, systemctl restart during a sleeping run, the
#           database down, the journal's fields, systemctl stop, upgrade,
#           remove, purge
#   boot 2  rpm -i --nodeps the .rpm, its scriptlets, kagzictl start hello
# Each boot starts from the pristine root filesystem (--volatile=overlay).
# The root filesystem is made once with debootstrap and cached under
# $KAGZI_E2E_CACHE (default /var/cache/kagzi-e2e); delete it to rebuild.
#
# Usage: scripts/e2e-systemd.sh          (as root; CI runs it from .ci/run)
# Env:   KAGZI_E2E_CACHE      rootfs cache directory
#        KAGZI_E2E_BUILD_DIR  build tree for the packages (default build/package)
#        KAGZI_E2E_KEEP=1     leave the work directory (logs) in place
# Needs: systemd-container debootstrap rpm (scripts/bootstrap.sh installs them)
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$script_dir/.." && pwd)"
cache="${KAGZI_E2E_CACHE:-/var/cache/kagzi-e2e}"
build_dir="${KAGZI_E2E_BUILD_DIR:-$repo/build/package}"
work="$build_dir/e2e-systemd"
suite=bookworm
# Bump when the rootfs recipe changes in a way the package list does not show.
rootfs_recipe=1
rootfs_packages=(systemd systemd-sysv dbus postgresql jq g++ make cmake pkg-config binutils procps rpm man-db)

die() {
  echo "e2e-systemd: error: $*" >&2
  exit 1
}
log() { echo "e2e-systemd: $*"; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
declare -a timings=()
phase_start=""
phase_name=""
phase() {
  phase_end
  phase_name="$1"
  phase_start="$(now)"
  echo
  echo "=== e2e-systemd: $phase_name"
}
phase_end() {
  if [[ -n $phase_name ]]; then
    local t
    t="$(elapsed "$phase_start")"
    timings+=("$(printf '%-64s %7ss' "$phase_name" "$t")")
    echo "=== e2e-systemd: $phase_name: done in ${t}s"
  fi
  phase_name=""
}

((EUID == 0)) || die "run as root (it boots a container with systemd-nspawn)"
for tool in systemd-nspawn debootstrap rpmbuild nsenter cmake cpack dpkg-deb flock; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$tool not found; install the missing tools with scripts/bootstrap.sh"
done

total_start="$(now)"

# ---------------------------------------------------------------------------
# Containers: boot, run commands inside, always clean up.
# ---------------------------------------------------------------------------
machine=""
nspawn_pid=""
leader=""
guest_pid=""
cgroup_dirs=()

# The cgroup layout decides where the launching shell gets its own cgroup.
if [[ -d /sys/fs/cgroup/unified && -d /sys/fs/cgroup/systemd ]]; then
  cgroup_roots=(/sys/fs/cgroup/systemd /sys/fs/cgroup/unified) # hybrid
  nspawn_env=(SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1)
elif [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
  cgroup_roots=(/sys/fs/cgroup) # unified only
  nspawn_env=()
else
  die "unsupported cgroup layout (need cgroup v2, or the hybrid v1+v2 layout)"
fi

# Kills whatever is left in our cgroups and removes them (deepest first).
remove_cgroups() {
  local dir pid
  for dir in "${cgroup_dirs[@]}"; do
    [[ -d $dir ]] || continue
    for _ in 1 2 3; do
      while read -r pid; do
        [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null || true
      done < <(find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null)
      find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null && break
      sleep 0.2
    done
    [[ -d $dir ]] && echo "e2e-systemd: warning: could not remove cgroup $dir" >&2
  done
  cgroup_dirs=()
}

stop_container() {
  [[ -n $nspawn_pid ]] || return 0
  if kill -0 "$nspawn_pid" 2>/dev/null; then
    if [[ -n $leader ]]; then
      guest systemctl poweroff --no-block >/dev/null 2>&1 || true
    fi
    for _ in $(seq 1 150); do
      kill -0 "$nspawn_pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$nspawn_pid" 2>/dev/null; then
      echo "e2e-systemd: warning: $machine did not power off; killing it" >&2
      kill -TERM "$nspawn_pid" 2>/dev/null || true
      sleep 2
      kill -KILL "$nspawn_pid" 2>/dev/null || true
    fi
  fi
  wait "$nspawn_pid" 2>/dev/null || true
  remove_cgroups
  rm -rf "/run/systemd/nspawn/propagate/$machine"
  nspawn_pid=""
  leader=""
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -z $guest_pid ]] || kill -TERM "$guest_pid" 2>/dev/null || true
  stop_container
  if ((rc != 0)); then
    echo "e2e-systemd: FAILED (exit $rc); container console log: $work/boot-*.log" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command inside the booted container (all its namespaces, a clean
# environment). stdin is passed through.
guest() {
  nsenter -t "$leader" -a -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    TERM=dumb HOME=/root "$@" 8>&-
}

# The same for a long-running command: in the background, so that a signal
# to this script is handled at once (bash runs traps only between commands).
guest_job() {
  guest "$@" &
  guest_pid=$!
  local rc=0
  wait "$guest_pid" || rc=$?
  guest_pid=""
  return "$rc"
}

# boot NAME ROOTFS: start the container and wait until systemd is up.
boot() {
  local name="$1" rootfs="$2" cg root
  machine="kagzi-e2e-$$-$name"
  for root in "${cgroup_roots[@]}"; do
    cg="$root/$machine"
    mkdir "$cg"
    cgroup_dirs+=("$cg")
  done
  (
    for cg in "${cgroup_dirs[@]}"; do echo "$BASHPID" >"$cg/cgroup.procs"; done
    exec 8>&-
    exec env "${nspawn_env[@]}" systemd-nspawn -D "$rootfs" -M "$machine" --boot \
      --register=no --keep-unit --console=read-only --volatile=overlay \
      --bind-ro="$work/share:/e2e"
  ) >"$work/boot-$name.log" 2>&1 </dev/null &
  nspawn_pid=$!
  local deadline=$((SECONDS + 60))
  until [[ -n $leader ]]; do
    kill -0 "$nspawn_pid" 2>/dev/null || {
      tail -n 20 "$work/boot-$name.log" >&2
      die "systemd-nspawn exited while booting"
    }
    ((SECONDS < deadline)) || die "no systemd in the container after 60 s"
    leader="$(pgrep -P "$nspawn_pid" -x systemd || true)"
    [[ -n $leader ]] || sleep 0.1
  done
  until [[ -S /proc/$leader/root/run/systemd/private ]]; do
    ((SECONDS < deadline)) || die "systemd in the container did not start its manager socket"
    sleep 0.1
  done
  local state
  state="$(guest timeout 60 systemctl is-system-running --wait || true)"
  log "$machine: system is $state"
  if [[ $state != running ]]; then
    guest systemctl --failed --no-pager || true
    [[ $state == degraded ]] || die "the container did not finish booting ($state)"
  fi
}

# ---------------------------------------------------------------------------
# 1. Packages
# ---------------------------------------------------------------------------
phase "build the packages (Release, prefix /usr)"
mkdir -p "$build_dir"
cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX=/usr -DKAGZI_BUILD_TESTS=OFF >"$build_dir/e2e-configure.log" 2>&1 ||
  {
    cat "$build_dir/e2e-configure.log" >&2
    die "configure failed"
  }
cmake --build "$build_dir"
rm -rf "$work"
mkdir -p "$work/share/packages" "$work/share/upgrade"
(cd "$build_dir" && cpack -G "DEB;RPM" -B "$work/cpack" >"$work/cpack.log" 2>&1) ||
  {
    cat "$work/cpack.log" >&2
    die "cpack failed"
  }
cp "$work"/cpack/*.deb "$work"/cpack/*.rpm "$work/share/packages/"
# The same build at a higher version, for the upgrade test (only the package
# version differs: kagzid --version still says the project's version).
version="$(head -n1 "$repo/VERSION")"
upgrade_version="${version}+e2e.upgrade"
(cd "$build_dir" && cpack -G DEB -D CPACK_PACKAGE_VERSION="$upgrade_version" \
  -B "$work/cpack-upgrade" >"$work/cpack-upgrade.log" 2>&1) ||
  {
    cat "$work/cpack-upgrade.log" >&2
    die "cpack (upgrade version) failed"
  }
cp "$work"/cpack-upgrade/*.deb "$work/share/upgrade/"
ls -l "$work/share/packages" "$work/share/upgrade"

phase "check the package files (no boot)"
"$repo/tests/packaging/check-packages.sh" "$work/share/packages" "$version"

# What the guest scripts need, read-only at /e2e.
cp -r "$repo/tests/packaging/guest" "$repo/tests/packaging/sdk_plugin" "$work/share/"
echo "$version" >"$work/share/version"
echo "$upgrade_version" >"$work/share/upgrade-version"

# ---------------------------------------------------------------------------
# 2. The root filesystem (cached)
# ---------------------------------------------------------------------------
phase "root filesystem (debootstrap $suite, cached)"
# The Debian mirror this host uses (deb822 .sources or one-line .list).
mirror_for_suite() {
  local want="$1" f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    awk -v want="$want" '
      function flush() { if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " want " ") && uri != "") { print uri; found = 1; exit } types = suites = uri = "" }
      /^[[:space:]]*$/ { flush(); next }
      tolower($1) == "types:" { $1 = ""; types = $0 }
      tolower($1) == "suites:" { $1 = ""; suites = $0 }
      tolower($1) == "uris:" { uri = $2 }
      END { if (!found) flush() }' "$f"
  done | head -n1
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    awk -v want="$want" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i + 1) == want) { print $i; exit } }' "$f"
  done | head -n1
}
mirror="$(mirror_for_suite "$suite" | head -n1)"
mirror="${mirror:-http://deb.debian.org/debian}"
security="$(mirror_for_suite "$suite-security" | head -n1)"
security="${security:-http://security.debian.org/debian-security}"
log "mirror $mirror, security $security"

key="$(printf '%s\n' "$rootfs_recipe" "$suite" "$mirror" "$security" "${rootfs_packages[@]}" |
  sha256sum | cut -c1-12)"
rootfs="$cache/rootfs-$suite-$key"
mkdir -p "$cache"
# Held until this script exits: one e2e run at a time per machine (and no
# run deletes a root another one has booted).
exec 8>"$cache/.lock"
flock -n 8 || {
  log "waiting for another e2e run on this machine to finish"
  flock 8
}
if [[ -f $rootfs/.kagzi-e2e-complete ]]; then
  log "cached: $rootfs"
else
  log "not cached: building $rootfs (a few minutes, once per machine)"
  tmp="$rootfs.tmp"
  rm -rf "$tmp"
  include="$(
    IFS=,
    echo "${rootfs_packages[*]}"
  )"
  debootstrap --variant=minbase --include="$include" "$suite" "$tmp" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    die "debootstrap failed (log: $work/debootstrap.log)"
  }
  cat >"$tmp/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
EOF
  # Snapshot mirrors serve Release files past their Valid-Until.
  echo 'Acquire::Check-Valid-Until "false";' >"$tmp/etc/apt/apt.conf.d/99kagzi-e2e"
  echo 'APT::Install-Recommends "false";' >>"$tmp/etc/apt/apt.conf.d/99kagzi-e2e"
  cp /etc/resolv.conf "$tmp/etc/resolv.conf"
  chroot "$tmp" apt-get update -q >"$work/rootfs-apt.log" 2>&1 || {
    tail -n 20 "$work/rootfs-apt.log" >&2
    die "apt-get update in the new rootfs failed"
  }
  chroot "$tmp" apt-get clean
  echo "kagzi-e2e" >"$tmp/etc/hostname"
  touch "$tmp/.kagzi-e2e-complete"
  mv "$tmp" "$rootfs"
  log "built $rootfs ($(du -sh "$rootfs" | cut -f1))"
fi
# Roots of older recipes are of no more use (about 1 GB each).
for old in "$cache"/rootfs-*; do
  [[ $old == "$rootfs" || ! -d $old ]] || {
    log "removing the outdated $old"
    rm -rf "$old"
  }
done

# ---------------------------------------------------------------------------
# 3. Boot 1: the .deb journey
# ---------------------------------------------------------------------------
phase "boot 1: boot Debian $suite with systemd (deb)"
boot deb "$rootfs"
phase "boot 1: the deb journey (tests/packaging/guest/deb-journey.sh)"
guest_job bash /e2e/guest/deb-journey.sh > >(tee "$work/deb-journey.log")
phase "boot 1: power off"
stop_container

# ---------------------------------------------------------------------------
# 4. Boot 2: the .rpm
# ---------------------------------------------------------------------------
phase "boot 2: boot Debian $suite with systemd (rpm)"
boot rpm "$rootfs"
phase "boot 2: the rpm journey (tests/packaging/guest/rpm-journey.sh)"
guest_job bash /e2e/guest/rpm-journey.sh > >(tee "$work/rpm-journey.log")
phase "boot 2: power off"
stop_container
phase_end

echo
echo "=== e2e-systemd: timings"
printf '  %s\n' "${timings[@]}"
printf '  %-64s %7ss\n' "total" "$(elapsed "$total_start")"
# The plain closing line: checks passed inside the guests.
checks="$(cat "$work"/*-journey.log | sed -n 's/^[a-z]* journey: PASS, \([0-9]*\) checks passed$/\1/p' |
  awk '{ n += $1 } END { print n + 0 }')"
((checks > 0)) || die "no checks counted in the journeys' logs"
[[ ${KAGZI_E2E_KEEP:-0} == 1 ]] || rm -rf "$work/cpack" "$work/cpack-upgrade"
echo "e2e-systemd: PASS"
echo "e2e-systemd: $checks passed, 0 failed"
