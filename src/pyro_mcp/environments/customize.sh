#!/bin/sh
# mmdebstrap customize hook: runs on the host with the new rootfs as $1.
set -eu
root="$1"

# The host's resolver config and hostname are not the guest's business.
rm -f "$root/etc/resolv.conf" "$root/etc/hostname"
echo pyro > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost pyro\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
mkdir -p "$root/workspace" "$root/opt/pyro"

# Every exec is a login shell (`/bin/sh -lc`): keep it from forking `id` and `mesg` each time.
# The agent exports PYRO_UID; mesg only matters on a terminal.
sed -i 's/"$(id -u)"/"${PYRO_UID:-$(id -u)}"/g' "$root/etc/profile"
sed -i 's|^mesg n 2> /dev/null \|\| true$|[ -t 0 ] \&\& mesg n 2> /dev/null \|\| true|' \
  "$root/root/.profile"

# CA certificates the host trusts beyond Debian's (corporate proxies, intercepting networks).
if [ -n "${PYRO_HOST_CA_DIR:-}" ] && [ -d "$PYRO_HOST_CA_DIR" ]; then
  dest="$root/usr/local/share/ca-certificates/pyro-host"
  mkdir -p "$dest"
  find "$PYRO_HOST_CA_DIR" -name '*.crt' -type f -exec cp {} "$dest/" \;
  chroot "$root" update-ca-certificates >/dev/null 2>&1
fi
