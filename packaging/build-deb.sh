#!/usr/bin/env bash
# Builds the Debian package of mqttd from binaries already built:
#   packaging/build-deb.sh [BIN_DIR] [OUT_DIR]
# BIN_DIR holds mqttd, mqtt and mqttd-passwd (default target/release: cargo build --release first;
# CI packages the debug binaries its tests built). The package: /usr/sbin/mqttd, /usr/bin/mqtt,
# /usr/bin/mqttd-passwd, the systemd unit mqttd.service (own user, reload = SIGHUP), the default
# /etc/mqttd/mqttd.conf, the data directory /var/lib/mqttd and the man pages. Needs dpkg-deb only
# (no cargo-deb: one tool fewer to install on a build machine).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
bin_dir="$(realpath "${1:-$root/target/release}")"
out_dir="$(realpath "${2:-$root/target/debian}")"

for b in mqttd mqtt mqttd-passwd; do
    [ -x "$bin_dir/$b" ] || { echo "build-deb: $bin_dir/$b is missing (cargo build --release?)" >&2; exit 1; }
done
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)"
arch="$(dpkg --print-architecture)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
pkg="$stage/mqttd"

install -d "$pkg/DEBIAN" "$pkg/usr/sbin" "$pkg/usr/bin" "$pkg/etc/mqttd/conf.d" "$pkg/lib/systemd/system" \
    "$pkg/usr/share/doc/mqttd" "$pkg/usr/share/man/man1" "$pkg/usr/share/man/man5" "$pkg/usr/share/man/man8" \
    "$pkg/var/lib/mqttd"
install -m 0755 "$bin_dir/mqttd" "$pkg/usr/sbin/mqttd"
install -m 0755 "$bin_dir/mqtt" "$bin_dir/mqttd-passwd" "$pkg/usr/bin/"
# Debug information stays in the build tree; the package carries the code only.
strip --strip-debug "$pkg/usr/sbin/mqttd" "$pkg/usr/bin/mqtt" "$pkg/usr/bin/mqttd-passwd"
install -m 0644 "$here/mqttd.conf" "$pkg/etc/mqttd/mqttd.conf"
install -m 0644 "$here/mqttd.service" "$pkg/lib/systemd/system/mqttd.service"
install -m 0644 "$root/README.md" "$pkg/usr/share/doc/mqttd/README.md"
for page in "$here"/man/*.[158]; do
    section="${page##*.}"
    gzip -9n -c "$page" > "$pkg/usr/share/man/man$section/$(basename "$page").gz"
done
install -m 0755 "$here/debian/postinst" "$here/debian/prerm" "$here/debian/postrm" "$pkg/DEBIAN/"
echo "/etc/mqttd/mqttd.conf" > "$pkg/DEBIAN/conffiles"
size="$(du -sk "$pkg" | cut -f1)"
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: mqttd
Version: $version
Architecture: $arch
Maintainer: mqttd developers <dev@mqttd>
Installed-Size: $size
Depends: adduser, libc6
Section: net
Priority: optional
Homepage: https://github.com/mqttd/mqttd
Description: MQTT broker compatible with Mosquitto, and MQTT command line tools
 mqttd is an MQTT 3.1, 3.1.1 and 5.0 broker that reads Mosquitto's configuration files, password
 files and ACL files. The package runs it as the systemd service mqttd under its own user, and
 installs the mqtt client (publish, subscribe, request/response, load tests) and mqttd-passwd.
CONTROL
mkdir -p "$out_dir"
deb="$out_dir/mqttd_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zgzip -z6 --build "$pkg" "$deb" >/dev/null
echo "$deb"
