#!/bin/sh
# After removing the kagzi package: the deb postrm ("remove", "purge", ...)
# and the rpm %postun (0: erase, 1+: upgrade).
#   remove: data is kept (the database, the kagzi user, /var/lib/kagzi) and
#           so is the configuration (/etc/kagzi/kagzid.toml).
#   purge:  the configuration goes too: /etc/kagzi and /etc/default/kagzid,
#           and the empty /var/lib/kagzi. The PostgreSQL database and the
#           kagzi user are kept (drop them by hand, see kagzi-db-init(8)).
set -e

case "$1" in
  purge)
    rm -rf /etc/kagzi
    rm -f /etc/default/kagzid
    rmdir /var/lib/kagzi 2>/dev/null || true
    ;;
esac

case "$1" in
  remove | purge | [0-9]*)
    if [ -d /run/systemd/system ]; then
      systemctl daemon-reload || true
    fi
    ;;
esac
exit 0
