#!/bin/sh
# Before removing the kagzi package: the deb prerm ("remove", "upgrade", ...)
# and the rpm %preun (0: erase, 1+: upgrade). On removal (not on upgrade)
# kagzid is stopped (a graceful drain: in-flight runs are released to other
# daemons or resumed later) and disabled. Nothing in the database is touched.
set -e

case "$1" in
  remove | deconfigure | 0) ;;
  *) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
  systemctl stop kagzid.service || true
fi
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable --quiet kagzid.service || true
fi
exit 0
