#!/bin/sh
# After installing or upgrading the kagzi package: the deb postinst
# ("configure [OLD-VERSION]") and the rpm %post (1: install, 2+: upgrade).
#   - the kagzi system user and group (sysusers.d/kagzi.conf);
#   - /var/lib/kagzi (tmpfiles.d/kagzi.conf);
#   - the PostgreSQL role and database kagzi, when a local server is running
#     (otherwise the operator runs kagzi-db-init later);
#   - on upgrade, a running kagzid is restarted (it drains first).
# The service is not enabled or started on a fresh install: the operator
# does that (systemctl enable --now kagzid), after checking database_url.
set -e

case "$1" in
  configure) [ -n "${2-}" ] && upgrade=yes || upgrade=no ;;
  [0-9]*) [ "$1" -ge 2 ] && upgrade=yes || upgrade=no ;;
  *) exit 0 ;; # abort-upgrade, abort-remove, ...
esac

if command -v systemd-sysusers >/dev/null 2>&1; then
  systemd-sysusers kagzi.conf
else
  getent group kagzi >/dev/null || groupadd --system kagzi
  getent passwd kagzi >/dev/null ||
    useradd --system --gid kagzi --home-dir /var/lib/kagzi --no-create-home \
      --shell /usr/sbin/nologin --comment "Kagzi workflow daemon" kagzi
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
  systemd-tmpfiles --create kagzi.conf || true
else
  install -d -m 0750 -o kagzi -g kagzi /var/lib/kagzi
fi

kagzi-db-init --if-running ||
  echo "kagzi: could not create the PostgreSQL role and database; run: kagzi-db-init" >&2

if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
  if [ "$upgrade" = yes ]; then
    systemctl try-restart kagzid.service || true
  fi
fi
exit 0
