#!/usr/bin/env bash
# Installs the package built by build-deb.sh with dpkg and checks it as an admin would: the files are
# in place, the mqttd user and the data directory exist, `mqttd -c /etc/mqttd/mqttd.conf` (as root: it
# drops to mqttd) serves a client, SIGHUP reloads, and purging removes it. For a machine of its own (CI):
# it installs into / and needs root.
#   packaging/test-deb.sh PACKAGE.deb
set -euo pipefail
deb="$1"
fail() { echo "test-deb: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i)"

dpkg -i "$deb" >/dev/null
for f in /usr/sbin/mqttd /usr/bin/mqtt /usr/bin/mqttd-passwd /etc/mqttd/mqttd.conf \
    /lib/systemd/system/mqttd.service /usr/share/man/man8/mqttd.8.gz /usr/share/man/man5/mqttd.conf.5.gz \
    /usr/share/man/man1/mqtt.1.gz /usr/share/man/man1/mqttd-passwd.1.gz; do
    [ -e "$f" ] || fail "$f is not installed"
done
getent passwd mqttd >/dev/null || fail "no mqttd user"
[ "$(stat -c %U /var/lib/mqttd)" = mqttd ] || fail "/var/lib/mqttd is not owned by mqttd"
grep -q '^ExecReload=/bin/kill -HUP \$MAINPID' /lib/systemd/system/mqttd.service || fail "no ExecReload"
man -w mqttd.conf >/dev/null 2>&1 || command -v man >/dev/null || true

# The installed broker with the installed config; port 1883 must be free on this machine.
log="$(mktemp)"
/usr/sbin/mqttd -c /etc/mqttd/mqttd.conf 2>"$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do
    if mqtt pub -h 127.0.0.1 -p 1883 -t deb/check -m installed -r -q 1 2>/dev/null; then break; fi
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "mqttd exited"; }
    sleep 0.1
done
got="$(mqtt sub -h 127.0.0.1 -p 1883 -t deb/check --count 1 -W 5)" || { cat "$log" >&2; fail "no message"; }
[ "$got" = installed ] || fail "received '$got'"
[ "$(ps -o user= -p "$pid")" = mqttd ] || fail "mqttd did not switch to the mqttd user"
kill -HUP "$pid"
mqtt pub -h 127.0.0.1 -p 1883 -t deb/check -n -r || fail "not serving after SIGHUP"
kill "$pid"
wait "$pid" || true
trap 'rm -f "$log"' EXIT

dpkg --purge mqttd >/dev/null
[ ! -e /usr/sbin/mqttd ] && ! getent passwd mqttd >/dev/null || fail "purge left mqttd behind"
echo "test-deb: $deb installs, serves, reloads and purges"
