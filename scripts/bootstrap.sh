#!/usr/bin/env bash
# Installs the Debian packages Kagzi needs to build and test, and only those
# that are missing. When everything is present it prints one line and exits
# without touching apt (it takes a few milliseconds), so every `make` target
# can call it. `apt-get update` runs only when an install fails, which on a
# fresh machine usually means the package lists are missing or stale.
#
# Usage: scripts/bootstrap.sh            (uses sudo when not root)
set -euo pipefail

readonly PACKAGES=(
  build-essential
  cmake
  ninja-build
  pkg-config
  libpq-dev
  rapidjson-dev
  libspdlog-dev
  libfmt-dev
  libsystemd-dev
  libgtest-dev
  libgmock-dev
  libcli11-dev
  libtomlplusplus-dev
  postgresql # initdb/pg_ctl under /usr/lib/postgresql/<ver>/bin, psql
  util-linux # runuser, flock, nsenter
  # Packaging (make package) and its tests (tests/packaging, scripts/e2e-systemd.sh)
  systemd           # systemd-analyze verify/security
  groff-base        # man page checks
  rpm               # rpmbuild, for cpack -G RPM
  systemd-container # systemd-nspawn, to boot a Debian guest with systemd
  debootstrap       # the guest's root filesystem
  procps            # pgrep
)

die() {
  echo "bootstrap: error: $*" >&2
  exit 1
}

# Prints the packages of $@ that are not fully installed, one per line.
missing_packages() {
  local pkg status
  for pkg in "$@"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    if [[ "$status" != "install ok installed" ]]; then
      echo "$pkg"
    fi
  done
}

command -v dpkg-query >/dev/null 2>&1 ||
  die "dpkg-query not found: this script supports Debian 12 (and derivatives) only"

mapfile -t missing < <(missing_packages "${PACKAGES[@]}")
if ((${#missing[@]} == 0)); then
  echo "bootstrap: all ${#PACKAGES[@]} build and test dependencies are installed"
  exit 0
fi

echo "bootstrap: missing packages: ${missing[*]}" >&2

sudo_cmd=()
if ((EUID != 0)); then
  command -v sudo >/dev/null 2>&1 ||
    die "not root and sudo is not installed; as root run: apt-get install -y --no-install-recommends ${missing[*]}"
  sudo_cmd=(sudo)
fi

apt_install() {
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "$@"
}

if ! apt_install "${missing[@]}"; then
  echo "bootstrap: install failed; refreshing the package lists and retrying" >&2
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update ||
    die "apt-get update failed; could not install: ${missing[*]}"
  apt_install "${missing[@]}" || die "apt-get install failed for: ${missing[*]}"
fi

mapfile -t still_missing < <(missing_packages "${PACKAGES[@]}")
if ((${#still_missing[@]} != 0)); then
  die "still not installed after apt-get: ${still_missing[*]}"
fi
echo "bootstrap: installed ${missing[*]}"
