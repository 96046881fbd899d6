#!/usr/bin/env bash
# Host set-up for pyro-mcp on Debian 12: engines, image tools, uv, and Node with the pinned
# MCP Inspector CLI that `make check` drives (installed in .ci/inspector, never globally).
# Safe to re-run; prints nothing but a summary line when everything is already there.
set -euo pipefail

log() { printf '[host-setup] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo -n"
else
  SUDO=""
fi

BACKPORTS=/etc/apt/sources.list.d/pyro-bookworm-backports.sources
PKGS=(qemu-system-x86 mmdebstrap e2fsprogs btrfs-progs busybox-static cpio zstd iproute2 ca-certificates)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Node and npm from Debian, unless some node and npm are already there.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

runsc_ok() {
  command -v runsc >/dev/null 2>&1 || return 1
  # bookworm's 2022 build breaks statx; we need the backports build (2024+).
  local v
  v=$(dpkg-query -W -f='${Version}' runsc 2>/dev/null || echo 0)
  dpkg --compare-versions "$v" ge "0.0~20240101" 2>/dev/null
}

need_runsc=0
runsc_ok || need_runsc=1

if [ "${#missing[@]}" -gt 0 ] || [ "$need_runsc" -eq 1 ]; then
  if [ ! -f "$BACKPORTS" ]; then
    log "adding bookworm-backports apt source ($BACKPORTS)"
    $SUDO tee "$BACKPORTS" >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  log "apt-get update"
  $SUDO apt-get update -qq >/dev/null
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if [ "$need_runsc" -eq 1 ]; then
    log "installing runsc from bookworm-backports"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports runsc >/dev/null
  fi
fi

if ! command -v uv >/dev/null 2>&1; then
  log "installing uv from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check uv >/dev/null
  hash -r
fi

# The MCP Inspector CLI at the version .ci/inspector/package-lock.json pins (it runs on
# Debian's Node 18 although it asks for 22: hence --engine-strict=false).
INSPECTOR_DIR="$(cd "$(dirname "$0")/.." && pwd)/.ci/inspector"
STAMP="$INSPECTOR_DIR/node_modules/.pyro-installed-lock"
if ! cmp -s "$INSPECTOR_DIR/package-lock.json" "$STAMP"; then
  log "installing the MCP Inspector CLI into $INSPECTOR_DIR (npm ci)"
  npm ci --prefix "$INSPECTOR_DIR" --no-audit --no-fund --ignore-scripts --engine-strict=false \
    --loglevel=error >/dev/null
  cp "$INSPECTOR_DIR/package-lock.json" "$STAMP"
fi

log "ok: runsc $(dpkg-query -W -f='${Version}' runsc), qemu $(dpkg-query -W -f='${Version}' qemu-system-x86), uv $(uv --version | cut -d' ' -f2), node $(node --version), inspector $(node -p "require('$INSPECTOR_DIR/node_modules/@modelcontextprotocol/inspector/package.json').version")"
